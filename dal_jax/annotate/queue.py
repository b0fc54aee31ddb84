"""The on-disk annotation queue of one active-learning round.

A queue folder holds everything the annotation page shows and everything the labeller saves::

    QUEUE/
      queue.json            manifest, written once by `write_queue` (never by the server)
      state.json            {"current": index, "finished": bool}: where to resume, and Finish
      .lock                 fcntl lock file that serialises writers (threads and processes)
      samples/0000/
        rgb.png             the RGB image (absent when the round has no RGB)
        depth.png           depth, normalised to grey (near = bright, missing = black)
        grasps.json         {"id", "revision", "rects" [G][4][2] (row, col) exact floats}
        cpos.txt            the same rectangles in the Cornell format (x y lines)

Sample folders are named by the sample's position in the queue, never by its id, so an id (which
may contain '/' or '..') is only ever data, never part of a path.

Atomicity and concurrency rule (SPEC of issue 8):

* Every file is written whole to a temporary file in the same folder, fsynced, then moved over
  the old one with `os.replace`, so a reader or a crash sees either the old or the new file.
* ``grasps.json`` is the authority (exact floats plus a revision counter); ``cpos.txt`` is written
  right after it. `read_labels` prefers the JSON and falls back to ``cpos.txt``.
* A save names the revision it was based on. Under the queue lock (a process-wide
  ``threading.Lock`` plus ``fcntl.flock`` on ``.lock``) the revision on disk is compared: equal ->
  the whole list is written with revision + 1; different -> `RevisionConflict` (HTTP 409) and
  nothing is written. So two tabs on one sample never overwrite each other silently: the first
  save wins and the other tab is told, shown the saved version, and can redo its edit.
* ``state.json`` (resume position, finished flag) is last-write-wins; it carries no labels.

Damaged files (nothing lost, nothing silently wrong):

* ``grasps.json`` unreadable but ``cpos.txt`` whole: the labels are read from ``cpos.txt`` (a
  note says so); the next save rewrites both.
* no readable copy of the labels (``grasps.json`` unreadable or absent, and ``cpos.txt``
  unreadable, with a damaged rectangle, or absent): `CorruptLabels`. Such a sample is neither
  served nor overwritten; its files stay as they are until the user repairs them or moves them
  aside explicitly (`move_aside_corrupt`, ``python -m dal_jax.annotate --move_aside_corrupt``).
* a damaged ``queue.json`` is a ValueError naming the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pathlib
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from dal_jax import grasp

MANIFEST = "queue.json"
STATE = "state.json"
LOCK = ".lock"
SAMPLES = "samples"
GRASPS_JSON = "grasps.json"
CPOS = "cpos.txt"
FORMAT = "dal_jax.annotate.queue/1"
_LOG = logging.getLogger(__name__)

#: Most grasps one sample may hold; the paper's cluttered scenes have a few dozen at most.
MAX_GRASPS = 100
#: Longest sample id accepted (ids are shown in the page, so keep them readable).
MAX_ID_LENGTH = 300

_THREAD_LOCK = threading.Lock()


class CorruptLabels(ValueError):
    """The saved labels of one or more samples cannot be read (see the module docstring).

    ``problems``: [(sample index, reason)]. The message names the files and says what to do.
    """

    def __init__(self, queue_dir, problems: list[tuple[int, str]]):
        self.queue_dir = pathlib.Path(queue_dir)
        self.problems = list(problems)
        shown = "; ".join(f"sample {i} ({SAMPLES}/{i:04d}): {why}" for i, why in problems[:3])
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        super().__init__(
            f"{self.queue_dir}: the saved labels of {len(problems)} sample(s) cannot be read: "
            f"{shown}{more}. They are neither served nor overwritten. Repair the files by "
            "hand, or move them aside (kept in the sample's corrupt-<time>/ folder) and label "
            f"those samples again with: python -m dal_jax.annotate --queue={self.queue_dir} "
            "--move_aside_corrupt"
        )


class RevisionConflict(Exception):
    """A save was based on an older revision than the one on disk (another tab saved first)."""

    def __init__(self, current_revision: int, current_rects: np.ndarray):
        super().__init__(f"the sample was saved elsewhere (now at revision {current_revision})")
        self.current_revision = current_revision
        self.current_rects = current_rects


# ----------------------------------------------------------------------------- small helpers


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


def _atomic_write_json(path: pathlib.Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def _atomic_write_png(path: pathlib.Path, array: np.ndarray) -> None:
    import io

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


def depth_to_image(depth: np.ndarray) -> np.ndarray:
    """Depth [H, W] metres -> uint8 grey [H, W] for display.

    Near is bright so objects stand out from the table; the 1st..99th percentile of the valid
    (finite, > 0) depths spans the grey range so a few outliers do not wash the image out.
    Missing depth (NaN, inf, <= 0) is black.
    """
    d = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(d) & (d > 0)
    out = np.zeros(d.shape, dtype=np.uint8)
    if not valid.any():
        return out
    lo, hi = np.percentile(d[valid], [1.0, 99.0])
    if hi - lo < 1e-9:
        hi = lo + 1e-9
    g = np.clip((hi - d[valid]) / (hi - lo), 0.0, 1.0)
    out[valid] = np.round(40.0 + 215.0 * g).astype(np.uint8)  # 40: keep valid far != missing
    return out


def validate_rects(obj, height: int, width: int, max_grasps: int = MAX_GRASPS) -> np.ndarray:
    """Checks a label payload and returns it as float64 [G, 4, 2] (row, col).

    ``obj`` is a JSON-like list of rectangles, each 4 corners ``[row, col]`` of finite numbers
    inside ``[0, height] x [0, width]``, at most ``max_grasps`` of them.

    Raises:
      TypeError / ValueError: with a message naming the first offending element.
    """
    if not isinstance(obj, list):
        raise TypeError("'rects' must be a list of rectangles")
    if len(obj) > max_grasps:
        raise ValueError(f"too many grasps: {len(obj)} > {max_grasps} per sample")
    out = np.zeros((len(obj), 4, 2), dtype=np.float64)
    for i, rect in enumerate(obj):
        if not isinstance(rect, list) or len(rect) != 4:
            raise ValueError(f"rects[{i}] must be a list of 4 corners")
        for j, corner in enumerate(rect):
            if not isinstance(corner, list) or len(corner) != 2:
                raise ValueError(f"rects[{i}][{j}] must be a [row, col] pair")
            for k, v in enumerate(corner):
                # bool is an int subclass; true/false are not coordinates.
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise TypeError(f"rects[{i}][{j}][{k}] is not a number")
                if not math.isfinite(v):
                    raise ValueError(f"rects[{i}][{j}][{k}] is not finite")
            r, c = float(corner[0]), float(corner[1])
            if not (0.0 <= r <= height and 0.0 <= c <= width):
                raise ValueError(
                    f"rects[{i}][{j}] = (row {r:g}, col {c:g}) is outside the image "
                    f"[0, {height}] x [0, {width}]"
                )
            out[i, j] = (r, c)
    return out


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


def _sample_dir(queue_dir, index: int) -> pathlib.Path:
    # Built from the integer position only (see the module docstring).
    return pathlib.Path(queue_dir) / SAMPLES / f"{int(index):04d}"


def _check_ids(ids) -> list[str]:
    ids = list(ids)
    for i in ids:
        if not isinstance(i, str) or not i or len(i) > MAX_ID_LENGTH:
            raise ValueError(f"sample ids must be non-empty strings <= {MAX_ID_LENGTH}: {i!r}")
        if any(ord(ch) < 32 for ch in i):
            raise ValueError(f"sample id contains a control character: {i!r}")
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids must be unique")
    return ids


def write_queue(
    queue_dir,
    ids: Sequence[str],
    rgb: np.ndarray | None,
    depth: np.ndarray,
    round_index: int,
    existing_rects: Mapping[str, np.ndarray] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes the queue of one round: images, manifest, and optional starting labels.

    Args:
      queue_dir: folder to create (parents too).
      ids: k unique sample ids (any text; never used in paths).
      rgb: [k, H, W, 3] uint8, or None when the round only has depth.
      depth: [k, H, W] float depth in metres (NaN / <= 0 = missing).
      round_index: the active-learning round, shown in the page.
      existing_rects: optional {id: [G, 4, 2] (row, col)} to start from (e.g. to correct
        labels). Corners are clipped into the image so the page can save them back; non-finite
        rectangles are dropped.
      overwrite: replace a different queue already in ``queue_dir``.

    If ``queue_dir`` already holds a queue with the same ids and round, its labels and resume
    position are kept (a crashed run that writes the queue again resumes); a different queue
    raises FileExistsError unless ``overwrite``.

    Returns:
      The queue folder as a Path.
    """
    queue_dir = pathlib.Path(queue_dir)
    ids = _check_ids(ids)
    depth = np.asarray(depth)
    k = len(ids)
    if depth.ndim != 3 or depth.shape[0] != k:
        raise ValueError(f"depth must be [k={k}, H, W], got {depth.shape}")
    _, height, width = depth.shape
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (k, height, width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8 [{k}, {height}, {width}, 3], got {rgb.shape}")
    existing_rects = dict(existing_rects or {})
    unknown = set(existing_rects) - set(ids)
    if unknown:
        raise ValueError(f"existing_rects has ids not in the queue: {sorted(unknown)[:5]}")

    queue_dir.mkdir(parents=True, exist_ok=True)
    resume = False
    if (queue_dir / MANIFEST).exists():
        try:
            old = load_manifest(queue_dir)
            same = [s["id"] for s in old["samples"]] == ids and old["round"] == int(round_index)
        except (ValueError, KeyError, TypeError):
            same = False
        if same and not overwrite:
            resume = True
        elif not overwrite:
            raise FileExistsError(
                f"{queue_dir} already holds a different queue; pass overwrite=True to replace it"
            )

    samples = []
    with queue_lock(queue_dir):
        for i, sid in enumerate(ids):
            sdir = _sample_dir(queue_dir, i)
            sdir.mkdir(parents=True, exist_ok=True)
            entry = {"id": sid, "dir": f"{SAMPLES}/{i:04d}", "rgb": None, "depth": "depth.png"}
            if rgb is not None:
                _atomic_write_png(sdir / "rgb.png", rgb[i])
                entry["rgb"] = "rgb.png"
            else:
                with contextlib.suppress(FileNotFoundError):
                    (sdir / "rgb.png").unlink()
            _atomic_write_png(sdir / "depth.png", depth_to_image(depth[i]))
            if resume and ((sdir / GRASPS_JSON).exists() or (sdir / CPOS).exists()):
                pass  # keep what the labeller already saved (a damaged sample stays as it is)
            else:
                rects = np.zeros((0, 4, 2))
                if sid in existing_rects:
                    rects = np.asarray(existing_rects[sid], dtype=np.float64).reshape(-1, 4, 2)
                    rects = rects[np.isfinite(rects).all(axis=(1, 2))][:MAX_GRASPS]
                    rects = np.stack(
                        [np.clip(rects[..., 0], 0, height), np.clip(rects[..., 1], 0, width)],
                        axis=-1,
                    )
                _write_sample_files(sdir, sid, rects, revision=0)
            samples.append(entry)
        manifest = {
            "format": FORMAT,
            "round": int(round_index),
            "height": int(height),
            "width": int(width),
            "max_grasps": MAX_GRASPS,
            "samples": samples,
        }
        _atomic_write_json(queue_dir / MANIFEST, manifest)
        if not resume or not (queue_dir / STATE).exists():
            _atomic_write_json(queue_dir / STATE, {"current": 0, "finished": False})
    # Drop folders of a longer queue this one overwrote, so they cannot be mistaken for labels.
    for extra in sorted((queue_dir / SAMPLES).glob("[0-9][0-9][0-9][0-9]")):
        if int(extra.name) >= k:
            shutil.rmtree(extra)
    _LOG.info("annotation queue of %d samples written to %s", k, queue_dir)
    return queue_dir


# ----------------------------------------------------------------------------- labels


def _write_sample_files(sdir: pathlib.Path, sid: str, rects: np.ndarray, revision: int) -> None:
    _atomic_write_json(
        sdir / GRASPS_JSON, {"id": sid, "revision": int(revision), "rects": rects.tolist()}
    )
    atomic_write_bytes(sdir / CPOS, grasp.format_cornell(rects).encode())


def read_sample(queue_dir, index: int, manifest: dict | None = None) -> tuple[np.ndarray, int]:
    """The saved rectangles [G, 4, 2] (row, col) and revision of the queue's ``index``-th sample.

    Reads ``grasps.json`` (exact) or, when it is missing or unreadable, ``cpos.txt``. Raises
    `CorruptLabels` when neither holds a readable copy of the labels (a sample whose two files
    are both absent has no labels yet: empty, revision 0).
    """
    rects, revision, problem, _ = _read_sample_checked(queue_dir, index, manifest)
    if problem:
        raise CorruptLabels(queue_dir, [(index, problem)])
    return rects, revision


def _read_sample_checked(queue_dir, index: int, manifest: dict | None = None):
    """-> (rects, revision, problem or None, note or None); see `read_sample`."""
    manifest = manifest or load_manifest(queue_dir)
    if not 0 <= index < len(manifest["samples"]):
        raise IndexError(index)
    sdir = _sample_dir(queue_dir, index)
    json_problem = None
    try:
        data = json.loads((sdir / GRASPS_JSON).read_text(encoding="utf-8"))
        rects = np.asarray(data["rects"], dtype=np.float64).reshape(-1, 4, 2)
        revision = data["revision"]
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise ValueError(f"revision {revision!r} is not a count")
        if not np.isfinite(rects).all():
            raise ValueError("non-finite coordinates")
        return rects, revision, None, None
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        json_problem = f"{GRASPS_JSON} is unreadable ({type(e).__name__}: {e})"
    try:
        text = (sdir / CPOS).read_text(encoding="utf-8")
    except FileNotFoundError:
        if json_problem:
            return None, 0, f"{json_problem} and there is no {CPOS}", None
        return np.zeros((0, 4, 2)), 0, None, None
    except (OSError, UnicodeDecodeError) as e:
        cpos_problem = f"{CPOS} is unreadable ({type(e).__name__}: {e})"
        return None, 0, f"{json_problem or f'no {GRASPS_JSON}'}; {cpos_problem}", None
    rects, skipped = grasp.parse_cornell(text, round_to_int=False)
    if skipped:
        cpos_problem = f"{CPOS} has {skipped} damaged rectangle(s)"
        return None, 0, f"{json_problem or f'no {GRASPS_JSON}'}; {cpos_problem}", None
    note = f"{json_problem}; its labels are read from {CPOS}" if json_problem else None
    if note:
        _LOG.warning("sample %d of %s: %s", index, queue_dir, note)
    return rects, 0, None, note


def check_queue(queue_dir, manifest: dict | None = None) -> tuple[list, list]:
    """Reads every sample's labels: ([(index, problem)] of samples without a readable copy,
    [(index, note)] of samples read from ``cpos.txt`` because ``grasps.json`` is damaged)."""
    manifest = manifest or load_manifest(queue_dir)
    problems, notes = [], []
    for i in range(len(manifest["samples"])):
        _, _, problem, note = _read_sample_checked(queue_dir, i, manifest)
        if problem:
            problems.append((i, problem))
        if note:
            notes.append((i, note))
    return problems, notes


def move_aside_corrupt(queue_dir, manifest: dict | None = None) -> list[pathlib.Path]:
    """The explicit repair: moves the label files of every sample without a readable copy into
    ``samples/NNNN/corrupt-<time>/`` (kept, never deleted), so the sample starts empty. Returns
    the folders the files went to."""
    import time

    manifest = manifest or load_manifest(queue_dir)
    moved = []
    with queue_lock(queue_dir):
        problems, _ = check_queue(queue_dir, manifest)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for i, _why in problems:
            sdir = _sample_dir(queue_dir, i)
            dest = sdir / f"corrupt-{stamp}"
            dest.mkdir(exist_ok=True)
            for name in (GRASPS_JSON, CPOS):
                if (sdir / name).exists():
                    os.replace(sdir / name, dest / name)
            moved.append(dest)
    return moved


def save_sample(
    queue_dir, index: int, rects, base_revision: int, manifest: dict | None = None
) -> int:
    """Validates and saves the whole grasp list of one sample; returns the new revision.

    Raises:
      TypeError, ValueError: bad rectangles (see `validate_rects`).
      IndexError: no such sample.
      RevisionConflict: ``base_revision`` is not the revision on disk.
    """
    manifest = manifest or load_manifest(queue_dir)
    if not 0 <= index < len(manifest["samples"]):
        raise IndexError(index)
    if isinstance(rects, np.ndarray):
        rects = rects.tolist()
    arr = validate_rects(rects, manifest["height"], manifest["width"])
    with queue_lock(queue_dir):
        current, revision = read_sample(queue_dir, index, manifest)
        if revision != base_revision:
            raise RevisionConflict(revision, current)
        sid = manifest["samples"][index]["id"]
        _write_sample_files(_sample_dir(queue_dir, index), sid, arr, revision + 1)
    return revision + 1


def read_labels(queue_dir, include_empty: bool = True) -> dict[str, np.ndarray]:
    """All labels of a queue: {sample id: [G, 4, 2] float64 (row, col)}, in queue order.

    Samples the labeller gave no grasp map to [0, 4, 2] arrays unless ``include_empty=False``.
    """
    manifest = load_manifest(queue_dir)
    out = {}
    for i, s in enumerate(manifest["samples"]):
        rects, _ = read_sample(queue_dir, i, manifest)
        if len(rects) or include_empty:
            out[s["id"]] = rects
    return out


# ----------------------------------------------------------------------------- state


def read_state(queue_dir) -> dict:
    """``{"current": int, "finished": bool}``; defaults when ``state.json`` is missing/bad."""
    try:
        state = json.loads((pathlib.Path(queue_dir) / STATE).read_text())
        return {"current": int(state.get("current", 0)), "finished": bool(state.get("finished"))}
    except (FileNotFoundError, ValueError, TypeError, AttributeError):
        return {"current": 0, "finished": False}


def write_state(queue_dir, **changes) -> dict:
    """Updates ``state.json`` (keys ``current`` and/or ``finished``) atomically."""
    with queue_lock(queue_dir):
        state = read_state(queue_dir)
        state.update(changes)
        _atomic_write_json(pathlib.Path(queue_dir) / STATE, state)
    return state


def is_finished(queue_dir) -> bool:
    """True once the labeller pressed Finish on this queue."""
    return read_state(queue_dir)["finished"]
