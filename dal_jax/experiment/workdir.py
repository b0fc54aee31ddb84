"""A run's folder: one writer at a time, and no run overwriting another's.

**Lock.** The run that writes a workdir holds a lock on ``workdir/.lock``.

`claim` creates the folder, opens the lock file and takes an exclusive `fcntl.flock` on it
without waiting; the holder writes its pid and command line into the file. The kernel drops
the lock when the holder's file is closed or the process dies (even by kill -9), so a lock file
left behind by a dead run never blocks the next one. A second writer is refused with a
`WorkdirError` naming the holder.

**Whose run.** `check_workdir` refuses a workdir that holds a run of another config (its
checkpoint's config, or with no checkpoint its results.json files), naming the fields, so a
run is only ever resumed with the settings it started with (except `RESUMABLE_FIELDS`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import shlex
import sys
import time

from dal_jax.experiment import results
from dal_jax.model import checkpoint
from dal_jax.training.runs import Grid, parse_alphas

LOCK_NAME = ".lock"
# Config fields added after runs were first saved, with the value that does what runs did
# before them: a saved config without the field is read with this value.
ADDED_FIELDS = {
    "init_from": "",
    "split_from_seed": False,
    "test_size": 10,
    "supervised_steps": 0,
}
# Config fields that may differ between a run and its resumption.
RESUMABLE_FIELDS = (
    "rounds",
    "expected_accuracy",
    "chunk_steps",
    "annotate_host",
    "annotate_port",
    "shard",
    "seed_form",
    "upper_bound",
)


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
    """The holder of ``path``'s lock as "pid N: COMMAND" on one line, read from the lock file
    (waiting up to ``wait`` seconds for a holder that has just taken the lock to write it)."""
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
    # One line, so a refusal is one line even for a command line with newlines (python -c).
    return f"pid {pid.strip()}: {' '.join(command.split())}"


def saved_config(saved: dict) -> dict:
    """A config dict read from a checkpoint, in today's form: a field added after it was
    written gets its `ADDED_FIELDS` value, and an ``alpha`` saved as text (before resolved
    configs held the weights as numbers) becomes the list of weights. JSON types throughout."""
    saved = {**ADDED_FIELDS, **json.loads(json.dumps(saved))}
    if isinstance(saved.get("alpha"), str):
        saved["alpha"] = list(parse_alphas(saved["alpha"]))
    return saved


def config_diff(saved: dict, current: dict, ignore=RESUMABLE_FIELDS) -> list[str]:
    """Names of the fields (other than ``ignore``) that differ, compared as JSON, with
    ``saved`` read by `saved_config`. The strategy settings section is not named when the
    strategy itself differs."""
    saved = saved_config(saved)
    current = json.loads(json.dumps(current))
    keys = (set(saved) | set(current)) - set(ignore)
    diff = sorted(k for k in keys if saved.get(k) != current.get(k))
    return [k for k in diff if not (k == "strategies" and "strategy" in diff)]


def check_workdir(workdir: pathlib.Path, c) -> None:
    """Refuses (ValueError, one line) a workdir that holds another run: a checkpoint of a
    supervised run or of a different config, or, with no checkpoint, a results.json of another
    strategy, dataset, alpha or seed count (which this run would overwrite)."""
    _, meta = checkpoint.newest_meta(workdir)
    if meta is not None:
        _check_saved_config(workdir, meta, c)
        return
    for path, res in _results_files(workdir).items():
        diff = _results_diff(res, c, path.parent.relative_to(workdir))
        if diff:
            raise ValueError(
                f"{path} belongs to another run ({diff}) and {workdir} has no checkpoint to "
                "resume; refusing to overwrite it. Use another --workdir, or move it away."
            )


def _check_saved_config(workdir, meta, c) -> None:
    meta = meta if isinstance(meta, dict) else {}
    saved, supervised = meta.get("config"), meta.get("kind") == "supervised"
    if supervised or not isinstance(saved, dict):
        what = (
            "a supervised run (experiments.train), not an active-learning one"
            if supervised
            else "a checkpoint with no run config (not written by experiments.main)"
        )
        raise ValueError(f"{workdir} holds {what}; use another --workdir")
    diff = config_diff(saved, c.to_dict())
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {c.get(k)!r}" for k in diff)
        raise ValueError(
            f"{workdir} holds a run with a different config ({detail}); refusing to resume. "
            "Use another --workdir, or the same settings."
        )


def _results_files(workdir: pathlib.Path) -> dict:
    """path -> parsed JSON of every results.json in ``workdir`` (and its alpha_*/ folders);
    ValueError naming a file that does not parse."""
    try:
        return results.read_folder(workdir)
    except results.UnreadableResults as e:
        raise ValueError(
            f"{e} and {workdir} has no checkpoint to resume; move it away or use another --workdir"
        ) from None


def _results_diff(res, c, folder: pathlib.Path) -> str:
    """How a results.json found in ``folder`` (relative to the workdir) differs from what
    this run writes there: "" when it is this run's, else "field: saved -> now"."""
    if not isinstance(res, dict) or res.get("kind") == "supervised":
        return "not an active-learning run of this config"
    alphas = Grid.of(c).alphas
    here = alphas[0] if len(alphas) == 1 else None
    if len(alphas) > 1 and str(folder).startswith("alpha_"):
        here = next((a for a in alphas if f"alpha_{a:g}" == str(folder)), None)
    now = {"strategy": c.strategy, "dataset": c.dataset, "alpha": here, "seeds": c.seeds}
    return ", ".join(f"{k}: {res.get(k)!r} -> {v!r}" for k, v in now.items() if res.get(k) != v)
