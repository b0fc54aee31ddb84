"""The robot side's import rule: nothing in `dal_jax.robot` imports torch, TensorFlow, TFDS or
the training code, so the robot computer needs none of them. And the other way round: the
dataset builders (`datasets/`) never import the robot side; what both read (depth frame files)
lives below them, in `dal_jax.data.frames`.

Checked twice: at run time (a fresh interpreter imports every module of the package, the CLIs
included, then looks at sys.modules: this catches what the shared modules pull in) and in the
source (every import statement of every file, a lazy one inside a function included, and
``importlib.import_module`` / ``__import__`` calls with a literal name).
"""

import ast
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "dal_jax" / "robot"
FORBIDDEN = (
    "torch",
    "tensorflow",
    "tensorflow_datasets",
    "optax",
    "datasets",  # this repository's dataset builders (TFDS)
    "dal_jax.training.train",
    "dal_jax.experiment.loop",
    "dal_jax.training.fit",
    "dal_jax.strategies",
    "dal_jax.data.pools",
)
#: The project modules the robot side may use (besides its own).
SHARED = {
    "dal_jax.model.models",
    "dal_jax.model.layers",
    "dal_jax.evaluation.postprocess",
    "dal_jax.data.grasp",
    "dal_jax.data.preprocess",
    "dal_jax.data.frames",
    "dal_jax.model.checkpoint",
}


#: dal_jax and its role subpackages: importing one runs an empty __init__ and nothing else.
EMPTY_PACKAGES = {
    ".".join(init.parent.relative_to(REPO).parts)
    for init in (REPO / "dal_jax").glob("**/__init__.py")
    if not init.read_text().strip()
}


def _is_under(name: str, modules) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def _imported_names(path: pathlib.Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file of ``module`` (default: the
    module of ``path`` in the repository); for ``from X import y`` both X and X.y (y may be a
    module)."""
    if module is None:
        parts = path.relative_to(REPO).with_suffix("").parts
        module = ".".join(parts[:-1] if path.name == "__init__.py" else parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.append((node.lineno, base))
            names += [(node.lineno, f"{base}.{a.name}") for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.append((node.lineno, str(node.args[0].value)))
    return names


def test_import_without_torch_or_tensorflow():
    code = (
        "import pkgutil, sys, importlib, dal_jax.robot\n"
        "for m in pkgutil.iter_modules(dal_jax.robot.__path__, 'dal_jax.robot.'):\n"
        "    importlib.import_module(m.name)\n"
        "import dal_jax.model.checkpoint\n"  # imported lazily, by GraspDetector.from_checkpoint
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert 'dal_jax.robot.detect' in sys.modules and 'dal_jax.robot.__main__' in sys.modules\n"
        "print('clean')\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr


def test_no_forbidden_import_in_the_source():
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) > 5, files  # the package is where this test thinks it is
    bad = []
    for path in files:
        for line, name in _imported_names(path):
            # `from dal_jax.data import x` also names the package, whose __init__ is empty.
            project = name not in EMPTY_PACKAGES and _is_under(name, ("dal_jax",))
            project = project and not _is_under(name, ("dal_jax.robot",))
            if _is_under(name, FORBIDDEN) or (project and not _is_under(name, SHARED)):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_source_check_sees_lazy_and_relative_imports(tmp_path):
    # The check itself: an import inside a function, a relative one and import_module count.
    f = tmp_path / "x.py"
    f.write_text(
        "def f():\n"
        "    import torch.nn\n"
        "    from dal_jax.training import train\n"
        "    from ..experiment import loop\n"
        "    importlib.import_module('tensorflow_datasets')\n"
    )
    names = {n for _, n in _imported_names(f, "dal_jax.robot.x")}
    assert {
        "torch.nn",
        "dal_jax.training.train",
        "dal_jax.experiment.loop",
        "tensorflow_datasets",
    } <= names
    assert not _is_under("dal_jax.robot.stream", FORBIDDEN) and _is_under(
        "dal_jax.experiment.loop", FORBIDDEN
    )
    assert not _is_under("dal_jax.datasets_x", FORBIDDEN)


def test_no_dataset_builder_imports_the_robot_side():
    files = sorted((REPO / "datasets").rglob("*.py"))
    assert any(p.parent.name == "frames" for p in files), files  # the builder that reads frames
    bad = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in files
        for line, name in _imported_names(path)
        if _is_under(name, ("dal_jax.robot",))
    ]
    assert not bad, "\n".join(bad)


def test_building_frames_loads_no_robot_module():
    # At run time too: nothing the builders and datasets.prepare import pulls the robot in.
    code = (
        "import sys, datasets\n"
        "from datasets import prepare\n"
        "for name in datasets.NAMES:\n"
        "    datasets.builder_class(name)\n"
        "bad = [m for m in sys.modules if m == 'dal_jax.robot' or m.startswith('dal_jax.robot.')]\n"
        "assert not bad, bad\n"
        "assert 'dal_jax.data.frames' in sys.modules\n"
        "print('clean')\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr
