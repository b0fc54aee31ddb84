"""The experiment commands' compiled programs kept on disk (dal_jax.training.compile_cache): which
commands use which folder, and a command run again loads its programs and writes the same
numbers."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from dal_jax.training import compile_cache as cc
from tests.test_loop import REPO, _smoke_cmd

MAIN = ["python", "-m", "experiments.main", "--seeds=3"]


def test_an_experiment_command_uses_the_users_cache_folder():
    assert cc.folder(MAIN, {"HOME": "/h"}) == pathlib.Path("/h/.cache/dal_jax/xla")
    env = {"HOME": "/h", "XDG_CACHE_HOME": "/x"}
    assert cc.folder(MAIN, env) == pathlib.Path("/x/dal_jax/xla")
    assert cc.folder(MAIN, {**env, cc.ENV: "/data/xla"}) == pathlib.Path("/data/xla")
    assert cc.folder(["python", "-m", "experiments"], env) == pathlib.Path("/x/dal_jax/xla")


def test_no_cache_when_off_timed_not_a_command_or_the_users_own():
    env = {"HOME": "/h"}
    for off in ("off", "OFF", "0", "false", "no", "none"):
        assert cc.folder(MAIN, {**env, cc.ENV: off}) is None, off
    # The benchmark measures compile times; the user's own JAX setting is left alone.
    assert cc.folder(["python", "-m", "experiments.bench", "--peer"], env) is None
    assert cc.folder(MAIN, {**env, cc.JAX_ENV: "/mine"}) is None
    for argv in (["python", "script.py"], ["python", "-m", "pytest"], ["python", "-c", "x"]):
        assert cc.folder(argv, env) is None, argv


def test_a_folder_that_cannot_be_made_is_refused_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert not cc.usable(blocker / "xla")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot use {blocker / 'xla'}" in err and cc.ENV in err
    assert cc.usable(tmp_path / "new" / "xla") and (tmp_path / "new" / "xla").is_dir()


@pytest.mark.slow
def test_a_command_run_again_loads_its_programs_and_writes_the_same_numbers(tmp_path):
    """The first run compiles and keeps its programs; the second, in a new process, loads them
    (JAX says so with JAX_LOG_COMPILES) and every accuracy and pick is the same."""
    env = {
        **os.environ,
        cc.ENV: str(tmp_path / "xla"),
        "JAX_LOG_COMPILES": "1",
    }
    env.pop(cc.JAX_ENV, None)
    runs = []
    for name in ("first", "second"):
        res = subprocess.run(
            _smoke_cmd(tmp_path / name, "--seeds=2"),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        runs.append((res, json.loads((tmp_path / name / "results.json").read_text())))
    (first, first_res), (second, second_res) = runs
    kept = list((tmp_path / "xla").iterdir())
    assert kept, "the first run kept no program"
    assert "Persistent compilation cache hit" not in first.stderr
    hits = second.stderr.count("Persistent compilation cache hit")
    assert hits >= len([p for p in kept if p.name.startswith("jit__steps")]) >= 1
    strip = ("seconds",)

    def numbers(res):
        return [{k: v for k, v in r.items() if k not in strip} for r in res["rounds"]]

    assert numbers(first_res) == numbers(second_res)


def test_the_commands_apply_it_before_jax_is_imported(tmp_path):
    """experiments/__init__.py sets the folder before anything imports jax (JAX reads its
    environment once, on import)."""
    code = (
        "import sys; sys.orig_argv = ['python', '-m', 'experiments.main']\n"
        "import experiments, os\n"
        "print('jax' in sys.modules, os.environ.get('JAX_COMPILATION_CACHE_DIR'))\n"
        "import jax; print(jax.config.jax_compilation_cache_dir)\n"
    )
    where = str(tmp_path / "xla")
    env = {**os.environ, cc.ENV: where, "DAL_JAX_SYSTEM_MALLOC": "1"}
    env.pop(cc.JAX_ENV, None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == [f"False {where}", where]
