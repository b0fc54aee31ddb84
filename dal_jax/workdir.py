"""One writer per workdir: the run that writes a workdir holds a lock on ``workdir/.lock``.

`claim` creates the folder, opens the lock file and takes an exclusive `fcntl.flock` on it
without waiting; the holder writes its pid and command line into the file. The kernel drops
the lock when the holder's file is closed or the process dies (even by kill -9), so a lock file
left behind by a dead run never blocks the next one. A second writer is refused with a
`WorkdirError` naming the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import shlex
import sys
import time

LOCK_NAME = ".lock"


class WorkdirError(ValueError):
    """A workdir that cannot be written: not creatable, not writable, or in use by another run."""


@contextlib.contextmanager
def claim(workdir, exclusive: bool = True, flag: str = "--workdir"):
    """Creates ``workdir`` and holds its lock while the ``with`` block runs; yields the
    resolved path.

    ``exclusive=False`` only creates the folder (the other hosts of a multi-host run, whose
    process 0 holds the lock). ``flag`` names the option in the error messages.
    """
    path = pathlib.Path(workdir).expanduser().resolve()
    _make(path, flag)
    if not exclusive:
        yield path
        return
    fd = _open_lock(path, flag)
    try:
        _lock(fd, path, flag)
        _write_holder(fd)
        yield path
    finally:
        os.close(fd)  # drops the lock


def _make(path: pathlib.Path, flag: str) -> None:
    file = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if file is not None:
        what = f"{flag}={path} is" if file == path else f"{flag}={path}: {file} is"
        raise WorkdirError(f"{what} a file, not a folder; choose another {flag}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(
            f"{flag}={path}: cannot create the folder ({e.strerror}: {e.filename}); "
            f"choose a writable {flag}"
        ) from None


def _open_lock(path: pathlib.Path, flag: str) -> int:
    try:
        return os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WorkdirError(
            f"{flag}={path} is not writable ({e.strerror}); choose a writable {flag}"
        ) from None


def _lock(fd: int, path: pathlib.Path, flag: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise WorkdirError(
            f"{flag}={path} is in use by another run ({holder(path)}); wait for it to end "
            f"or choose another {flag}"
        ) from None


def _write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{shlex.join(sys.orig_argv)}\n".encode(), 0)


def holder(path: pathlib.Path, wait: float = 2.0) -> str:
    """The holder of ``path``'s lock as "pid N: COMMAND", read from the lock file (waiting up
    to ``wait`` seconds for a holder that has just taken the lock to write it)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            text = (path / LOCK_NAME).read_text()
        except OSError:
            text = ""
        pid, _, command = text.partition("\n")
        if pid.strip() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not pid.strip():
        return "its pid is not recorded"
    return f"pid {pid.strip()}: {command.strip()}"
