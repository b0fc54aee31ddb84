"""The experiment commands keep XLA's compiled programs on disk and load them when the same
program is needed again (JAX's persistent compilation cache).

Why: on a CPU, XLA takes most of a minute to compile a 10-seed training program (35 s for
random sampling's at 96 px, 2-3 minutes for VAAL's), and every new process compiles again: the
README's job run a second time, a study resumed after a stop, one strategy after another run
as separate commands with the same settings. A program found in the cache is loaded instead:
run again, the README job's first round trained in 117 s instead of 177 s
(experiments/RESULTS.md, "Compiled programs kept on disk").

Where: ``$DAL_JAX_COMPILE_CACHE`` names the folder; unset, ``$XDG_CACHE_HOME/dal_jax/xla``
(``~/.cache/dal_jax/xla``); ``off`` turns it off. A ``JAX_COMPILATION_CACHE_DIR`` the user set
is left as it is. Programs that compile in under a second are not kept (JAX's default), and
the folder is capped at ``MAX_BYTES``, the least recently used programs going first.
``experiments.bench`` never uses it: compile time is among what it measures.

Why it is safe: JAX looks a program up by a hash of the computation, its compile options and
flags, and the JAX / XLA versions and device; a program loaded is the program a compile would
have produced, so every number a command writes is the same with or without the cache
(tests/test_compile_cache.py runs a command twice: compiled, then loaded). Only the user's own
folder is used: JAX's warning applies, a cache is code that runs, so it is never shared.

Only the standard library (and `host_memory`, which imports nothing else) is imported here:
this runs before jax is loaded, and what it sets is read by jax when it is imported (and by
every command this one starts).
"""

from __future__ import annotations

import os
import pathlib
import sys

from dal_jax.training import host_memory

ENV = "DAL_JAX_COMPILE_CACHE"
JAX_ENV = "JAX_COMPILATION_CACHE_DIR"
MAX_BYTES = 2 * 1024**3  # the README job keeps 16 programs, 4.5 MB in all
_OFF = ("off", "0", "false", "no", "none")
_NOT_CACHED = ("experiments.bench",)  # commands that time their own compiles


def default_folder(environ) -> pathlib.Path:
    """``$XDG_CACHE_HOME/dal_jax/xla``, or ``~/.cache/dal_jax/xla``."""
    home = environ.get("HOME") or os.path.expanduser("~")
    base = environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return pathlib.Path(base) / "dal_jax" / "xla"


def folder(orig_argv, environ) -> pathlib.Path | None:
    """The cache folder this process should use, or None: not an experiment command, a command
    that times its compiles, the cache turned off, or the user's own JAX setting in place."""
    module = host_memory.command_module(orig_argv)
    if module is None or any(module == m or module.startswith(m + ".") for m in _NOT_CACHED):
        return None
    if environ.get(JAX_ENV):
        return None
    value = environ.get(ENV)
    if value is None or not value.strip():
        return default_folder(environ)
    if value.strip().lower() in _OFF:
        return None
    return pathlib.Path(value).expanduser()


def usable(path: pathlib.Path) -> bool:
    """Creates ``path``; False (after one line on stderr) when it cannot be created or written:
    the command then compiles everything, instead of JAX warning at every program."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        print(
            f"compiled programs are not kept: cannot use {path} ({e.strerror or e}); set {ENV} "
            "to a writable folder, or to off",
            file=sys.stderr,
        )
        return False
    return True


def apply_to_command() -> None:
    """Points JAX at the cache folder for an experiment command (module docstring)."""
    path = folder(getattr(sys, "orig_argv", []), os.environ)
    if path is None or not usable(path):
        return
    os.environ[JAX_ENV] = str(path)
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(MAX_BYTES))
