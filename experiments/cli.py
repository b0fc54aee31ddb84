"""What the experiment commands share: the --config flag (checked before absl reads it), the
config from the flags, one-line flag errors, and leaving on Ctrl-C."""

from __future__ import annotations

import difflib
import importlib.machinery
import importlib.util
import logging
import os
import pathlib
import re
import sys
from typing import NoReturn

from absl import app, flags
from ml_collections import config_flags

from dal_jax.experiment import build
from experiments import configs

CONFIG_DIR = pathlib.Path(configs.__file__).resolve().parent
# Found from any working directory (a --config path is relative to the working directory).
DEFAULT_CONFIG = CONFIG_DIR / "default.py"


def define_config(help_string: str) -> flags.FlagHolder:
    """The --config flag (a config file, ``:variant``, ``--config.FIELD=VALUE`` overrides) of an
    experiment command.

    ml_collections reads --config while the flag is defined and reports a missing file, an
    unknown variant or an unknown field as a traceback, so the command line is checked first
    (`config_problem`): a problem prints one ``error: ...`` line and exits 2.
    """
    problem = config_problem(sys.argv[1:])
    if problem:
        fail(problem)
    return config_flags.DEFINE_config_file("config", str(DEFAULT_CONFIG), help_string)


def run(main) -> None:
    """absl's app.run with flag errors (an unknown flag, a value of the wrong type) as one
    ``error: ...`` line and exit code 2, as the other errors of the commands."""
    app.run(main, flags_parser=parse_flags)


def parse_flags(argv: list[str]) -> list[str]:
    """The arguments left after absl parsed its flags; exits 2 with one line on a flag error."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"{' '.join(str(e).split())} (see --helpshort)")


def fail(message: str) -> NoReturn:
    """Prints ``error: message`` as one line on stderr and exits 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def config_problem(args: list[str]) -> str | None:
    """Why the --config arguments of a command line cannot work, as one line naming the flag
    and the valid choices (the config files; the config file's variants; the close matches
    among its fields, else all of them), or None when they can."""
    spec, fields = config_args(args)
    shown = spec or _shown(DEFAULT_CONFIG)
    path, *variant = shown.split(":", 1)  # as ml_collections splits it
    if not pathlib.Path(path).is_file():
        files = ", ".join(_shown(f) for f in config_files())
        return f"--config={shown}: no such config file; config files: {files}"
    try:
        config = _load_config_module(path).get_config(*variant)
    except ValueError as e:  # the config files refuse an unknown variant, listing the valid
        return f"--config={shown}: {' '.join(str(e).split())}"
    except Exception as e:  # noqa: BLE001 - any error in the user's file, as one line
        return f"--config={shown}: cannot be loaded ({type(e).__name__}: {e})"
    for field, value in fields:
        problem = field_problem(config, field)
        if problem:
            return f"--config.{field}{value}: {path} {problem}"
    return None


def config_args(args: list[str]) -> tuple[str | None, list[tuple[str, str]]]:
    """(the --config value or None, [(FIELD, "=VALUE" or "") of every --config.FIELD]) of a
    command line (flag files expanded; the last --config wins, as in absl)."""
    try:
        args = flags.FLAGS.read_flags_from_files(args, force_gnu=False)
    except flags.Error:
        pass  # absl reports the flag file itself
    spec, fields = None, []
    for i, arg in enumerate(args):
        if arg == "--":
            break
        m = re.match(r"^--?config(?:=(.*))?$", arg)
        if m:
            given = m.group(1) is not None
            spec = m.group(1) if given else (args[i + 1] if i + 1 < len(args) else None)
        m = re.match(r"^--?(?:no)?config\.([^=]+)(=.*)?$", arg)
        if m:
            fields.append((m.group(1), m.group(2) or ""))
    return spec, fields


def field_problem(config, field: str) -> str | None:
    """Why ``config`` has no field at the dotted path ``field`` ("has no field 'x'; did you
    mean: y", else "...; fields: " all of that level's), or None when it has it (or when a part
    of the path is not a ConfigDict, which ml_collections then checks itself)."""
    holder, parent = config, []
    for name in field.split("."):
        if not hasattr(holder, "keys") or "[" in name:
            return None
        keys = sorted(holder.keys())
        if name not in keys:
            where = f"(in {'.'.join(parent)}) " if parent else ""
            close = difflib.get_close_matches(name, keys, n=3)
            choices = f"did you mean: {', '.join(close)}" if close else f"fields: {', '.join(keys)}"
            return f"{where}has no field {name!r}; {choices}"
        holder, parent = holder[name], [*parent, name]
    return None


def config_files() -> list[pathlib.Path]:
    """The config files of experiments/configs (default.py and one per dataset)."""
    return [DEFAULT_CONFIG] + [CONFIG_DIR / f"{n}.py" for n in configs.names()]


def _shown(path: pathlib.Path) -> str:
    """``path`` relative to the working directory when it is under it, else absolute."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def _load_config_module(path: str):
    """The config file as a module (by its path, whatever its suffix, as ml_collections loads
    it), not registered in sys.modules."""
    loader = importlib.machinery.SourceFileLoader("dal_jax_config_check", path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def exit_interrupted(message: str) -> NoReturn:
    """Ctrl-C: prints ``message`` as one line and exits 130 without tearing down the
    interpreter (os._exit).

    A Ctrl-C during an XLA compile abandons the compile half-way (jaxlib raises
    KeyboardInterrupt from inside it), and the interpreter's teardown after that crashed with a
    segmentation fault (exit 139). Nothing is lost by skipping the teardown: saves defer Ctrl-C
    until a round is completely on disk, and the logs are flushed here.
    """
    print(f"\ninterrupted: {message}", file=sys.stderr, flush=True)
    logging.shutdown()
    sys.stdout.flush()
    os._exit(130)


def config_from_flags(config, overrides: dict):
    """The config file's config with the shortcut flags (field -> absl flag) applied, completed
    from the dataset's experiment file (`experiments.configs.complete`).

    ValueError when --dataset names another dataset than a config file that fixes the protocol
    fields (a dataset's experiment file: its numbers would silently run on the other dataset).
    """
    flag = overrides.get("dataset")
    name = None if flag is None else flag.value
    fixed = all(config[f] is not None for f in configs.default.PROTOCOL_FIELDS if f != "initial")
    if name is not None and fixed and configs.get(name).dataset != config.dataset:
        raise ValueError(
            f"--dataset={name} but the config file is {config.dataset}'s experiment; "
            f"use --config=experiments/configs/{name}.py instead"
        )
    for field, flag in overrides.items():
        if flag.value is not None:
            config[field] = flag.value
    build.check_names(config)
    return configs.complete(config)
