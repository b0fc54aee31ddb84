"""The labels of one queue sample: checking what the page sends, the two label files, and saving
with a revision check. (The folder layout and atomic writes: `dal_jax.annotate.folder`.)

Rules (the annotation page's contract):

* ``grasps.json`` is the authority (exact floats plus a revision counter); ``cpos.txt`` is written
  right after it. `read_sample` prefers the JSON and falls back to ``cpos.txt``.
* A save names the revision it was based on. Under the queue lock (`folder.queue_lock`) the
  revision on disk is compared: equal -> the whole list is written with revision + 1;
  different -> `RevisionConflict` (HTTP 409) and nothing is written. So two tabs on one sample
  never overwrite each other silently: the first save wins and the other tab is told, shown the
  saved version, and can redo its edit.

Damaged files (nothing lost, nothing silently wrong):

* ``grasps.json`` unreadable but ``cpos.txt`` whole: the labels are read from ``cpos.txt`` (a
  note says so); the next save rewrites both.
* no readable copy of the labels (``grasps.json`` unreadable or absent, and ``cpos.txt``
  unreadable, with a damaged rectangle, or absent): `CorruptLabels`. Such a sample is neither
  served nor overwritten; its files stay as they are until the user repairs them or moves them
  aside explicitly (`queue.move_aside_corrupt`, ``python -m dal_jax.annotate
  --move_aside_corrupt``).
"""

from __future__ import annotations

import json
import logging
import math
import pathlib

import numpy as np

from dal_jax.annotate.folder import (
    CPOS,
    GRASPS_JSON,
    SAMPLES,
    atomic_write_bytes,
    atomic_write_json,
    load_manifest,
    queue_lock,
    sample_dir,
)
from dal_jax.data import grasp

_LOG = logging.getLogger(__name__)

#: Most grasps one sample may hold; the paper's cluttered scenes have a few dozen at most.
MAX_GRASPS = 100


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


def write_sample_files(sdir: pathlib.Path, sid: str, rects: np.ndarray, revision: int) -> None:
    """Writes ``grasps.json`` then ``cpos.txt`` of one sample (each atomically)."""
    atomic_write_json(
        sdir / GRASPS_JSON, {"id": sid, "revision": int(revision), "rects": rects.tolist()}
    )
    atomic_write_bytes(sdir / CPOS, grasp.format_cornell(rects).encode())


def read_sample(queue_dir, index: int, manifest: dict | None = None) -> tuple[np.ndarray, int]:
    """The saved rectangles [G, 4, 2] (row, col) and revision of the queue's ``index``-th sample.

    Reads ``grasps.json`` (exact) or, when it is missing or unreadable, ``cpos.txt``. Raises
    `CorruptLabels` when neither holds a readable copy of the labels (a sample whose two files
    are both absent has no labels yet: empty, revision 0).
    """
    rects, revision, problem, _ = read_sample_checked(queue_dir, index, manifest)
    if problem:
        raise CorruptLabels(queue_dir, [(index, problem)])
    return rects, revision


def read_sample_checked(queue_dir, index: int, manifest: dict | None = None):
    """-> (rects, revision, problem or None, note or None); see `read_sample`."""
    manifest = manifest or load_manifest(queue_dir)
    if not 0 <= index < len(manifest["samples"]):
        raise IndexError(index)
    sdir = sample_dir(queue_dir, index)
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
        write_sample_files(sample_dir(queue_dir, index), sid, arr, revision + 1)
    return revision + 1
