"""The experiment commands run on tcmalloc when the machine has it (Debian/Ubuntu:
``apt-get install libtcmalloc-minimal4``), and on glibc's malloc otherwise.

Why: XLA:CPU allocates each program call's scratch buffer with malloc from its worker threads,
and at the experiments' sizes that buffer is large (577 MB for three training steps at 300 px,
batch 8). glibc serves an allocation that large from a thread with mmap and unmaps it when the
call ends, so every call faults its scratch memory in afresh, page by page: about 100,000 page
faults per training step at 300 px, a fifth of the CPU time in the kernel. tcmalloc keeps
freed memory for the next call. Measured (experiments/RESULTS.md, "Where the kernel time
went"): training at 300 px 1.4x faster, the README's default job (96 px, 10 seeds) in 10 min
3 s instead of 11 min 56 s, kernel time from 14 % to 3 % of user time, compiles no slower.
glibc's own tunables (one arena, no mmap) removed the faults too but made compiles and 96 px
training slower, so they are not used.

A preload takes effect only when a process starts, so an ``python -m experiments...`` command
re-executes itself once with ``LD_PRELOAD`` set (`apply_to_command`); the re-executed process
then removes the variable, so the programs it starts (a browser, the PyTorch peer) start as
they would have. ``DAL_JAX_SYSTEM_MALLOC=1`` keeps glibc. Importing the library changes
nothing. Only the standard library is imported here: this runs before jax is loaded.
"""

from __future__ import annotations

import ctypes.util
import os
import pathlib
import platform
import sys

OPT_OUT = "DAL_JAX_SYSTEM_MALLOC"
_MARK = "DAL_JAX_PRELOADED"  # set for the re-executed process only: what it preloaded
_allocator = "system"  # what this process runs on (`in_effect`)


def find_tcmalloc() -> str | None:
    """tcmalloc's shared library as the dynamic loader names it, or None when not installed."""
    for name in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def in_effect() -> str:
    """The allocator this process runs on: tcmalloc's library name, or "system"."""
    return _allocator


def preload_env() -> dict[str, str]:
    """The environment entries that start a child process on this process's allocator."""
    return {} if _allocator == "system" else {"LD_PRELOAD": _allocator}


def command_module(orig_argv) -> str | None:
    """The module of a ``python -m experiments...`` command (``orig_argv`` is
    ``sys.orig_argv``), or None for anything else (a script, a notebook, pytest)."""
    args = list(orig_argv[1:])
    if "-m" not in args or args.index("-m") + 1 >= len(args):
        return None
    module = args[args.index("-m") + 1]
    if module == "experiments" or module.startswith("experiments."):
        return module
    return None


def reexec_args(orig_argv, environ, libc: str, find=find_tcmalloc):
    """(arguments to re-execute Python with, the library to preload), or None when not to: not
    an ``python -m experiments...`` command (``orig_argv`` is ``sys.orig_argv``), opted out,
    already preloaded (by this module or by the user), not glibc (the preload replaces glibc's
    malloc), or no tcmalloc. ``find`` (which asks the dynamic loader's cache) runs only when
    everything else says yes, as most imports of the package are not commands."""
    if command_module(orig_argv) is None:
        return None
    if libc != "glibc" or any(environ.get(k) for k in (OPT_OUT, _MARK, "LD_PRELOAD")):
        return None
    library = find()
    return (list(orig_argv[1:]), library) if library else None


def _mapped(library: str) -> bool:
    """Whether ``library`` is loaded in this process (Linux's /proc/self/maps)."""
    try:
        return library in pathlib.Path("/proc/self/maps").read_text()
    except OSError:
        return False


def apply_to_command() -> None:
    """Re-executes an experiment command once on tcmalloc (module docstring); in the
    re-executed process, records the allocator and clears the preload for child processes."""
    global _allocator
    preloaded = os.environ.pop(_MARK, None)
    if preloaded:
        _allocator = preloaded if _mapped(preloaded) else "system"
        if os.environ.get("LD_PRELOAD") == preloaded:
            del os.environ["LD_PRELOAD"]
        return
    plan = reexec_args(getattr(sys, "orig_argv", []), os.environ, platform.libc_ver()[0])
    if plan is None:
        return
    args, library = plan
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ.update({"LD_PRELOAD": library, _MARK: library})
    os.execv(sys.executable, [sys.executable, *args])
