"""The folder of an annotation queue on disk: its layout, atomic writes, the writers' lock, and
reading its manifest.

A queue folder holds everything the annotation page shows and everything the labeller saves::

    QUEUE/
      queue.json            manifest, written once by `queue.write_queue` (never by the server)
      state.json            {"current": index, "finished": bool}: where to resume, and Finish
      .lock                 fcntl lock file that serialises writers (threads and processes)
      samples/0000/
        rgb.png             the RGB image (absent when the round has no RGB)
        depth.png           depth, normalised to grey (near = bright, missing = black)
        grasps.json         {"id", "revision", "rects" [G][4][2] (row, col) exact floats}
        cpos.txt            the same rectangles in the Cornell format (x y lines)

Sample folders are named by the sample's position in the queue, never by its id, so an id (which
may contain '/' or '..') is only ever data, never part of a path.

Every file is written whole to a temporary file in the same folder, fsynced, then moved over the
old one with `os.replace`, so a reader or a crash sees either the old or the new file. Writers
hold `queue_lock` (a process-wide ``threading.Lock`` plus ``fcntl.flock`` on ``.lock``). How the
label files are read, saved and checked: `dal_jax.annotate.labels`.

A damaged ``queue.json`` is a ValueError naming the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import tempfile
import threading

import numpy as np
from PIL import Image

MANIFEST = "queue.json"
STATE = "state.json"
LOCK = ".lock"
SAMPLES = "samples"
GRASPS_JSON = "grasps.json"
CPOS = "cpos.txt"
FORMAT = "dal_jax.annotate.queue/1"

_THREAD_LOCK = threading.Lock()


# ----------------------------------------------------------------------------- writing files


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` via a temporary file in the same folder and `os.replace`."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: pathlib.Path, obj) -> None:
    """Writes ``obj`` as indented JSON (no NaN) with `atomic_write_bytes`."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def atomic_write_png(path: pathlib.Path, array: np.ndarray) -> None:
    """Writes an image array as PNG with `atomic_write_bytes`."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def queue_lock(queue_dir):
    """Serialises writers of one queue: threads of this process and other processes."""
    with _THREAD_LOCK:
        try:
            import fcntl
        except ImportError:  # not POSIX: the thread lock alone still protects one server
            yield
            return
        with open(pathlib.Path(queue_dir) / LOCK, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def sample_dir(queue_dir, index: int) -> pathlib.Path:
    """The folder of the queue's ``index``-th sample."""
    # Built from the integer position only (see the module docstring).
    return pathlib.Path(queue_dir) / SAMPLES / f"{int(index):04d}"


# ----------------------------------------------------------------------------- manifest


def load_manifest(queue_dir) -> dict:
    """Reads ``queue.json``; FileNotFoundError when there is none, ValueError naming the file
    when it is damaged or not a dal_jax annotation queue."""
    path = pathlib.Path(queue_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(
            f"{path} is damaged ({e}); restore it, or write the queue again (the active-learning "
            "round writes it again when it resumes)"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a dal_jax annotation queue (format {FORMAT!r} expected)")
    problem = _manifest_problem(manifest)
    if problem:
        raise ValueError(
            f"{path} is damaged ({problem}); restore it, or write the queue again (the "
            "active-learning round writes it again when it resumes)"
        )
    return manifest


def _manifest_problem(m: dict) -> str | None:
    """What is wrong with a parsed manifest, or None."""

    def is_int(v, low):
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    for key, low in (("round", 0), ("height", 1), ("width", 1)):
        if not is_int(m.get(key), low):
            return f"'{key}' must be an integer >= {low}, got {m.get(key)!r}"
    samples = m.get("samples")
    if not isinstance(samples, list):
        return "'samples' must be a list"
    for i, e in enumerate(samples):
        if not isinstance(e, dict) or not isinstance(e.get("id"), str):
            return f"samples[{i}] must be an object with a string 'id'"
        if e.get("rgb") not in (None, "rgb.png") or e.get("depth") != "depth.png":
            return f"samples[{i}] names unexpected image files"
    return None
