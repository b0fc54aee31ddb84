"""The on-disk annotation queue of one active-learning round: writing it, reading all its labels
back, checking and repairing damaged labels, and where the labeller is (resume position, Finish).

This is the module callers use (``from dal_jax.annotate import queue``); it also exports the
public names of the two modules it builds on:

* `dal_jax.annotate.folder`: the folder layout (``queue.json``, ``state.json``,
  ``samples/NNNN/{rgb,depth}.png``, ``grasps.json``, ``cpos.txt``), atomic writes, the writers'
  lock, reading the manifest (a damaged ``queue.json`` is a ValueError naming the file);
* `dal_jax.annotate.labels`: one sample's labels: validation, reading with the ``cpos.txt``
  fallback, saving with a revision check (`RevisionConflict`), damaged labels (`CorruptLabels`).

``state.json`` (resume position, finished flag) is last-write-wins; it carries no labels.
Damaged labels are never overwritten; `move_aside_corrupt` is the explicit repair.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
from collections.abc import Mapping, Sequence

import numpy as np

from dal_jax.annotate.folder import (
    CPOS,
    FORMAT,
    GRASPS_JSON,
    LOCK,
    MANIFEST,
    SAMPLES,
    STATE,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_png,
    load_manifest,
    queue_lock,
    sample_dir,
)
from dal_jax.annotate.labels import (
    MAX_GRASPS,
    CorruptLabels,
    RevisionConflict,
    read_sample,
    read_sample_checked,
    save_sample,
    validate_rects,
    write_sample_files,
)

__all__ = [
    "CPOS",
    "FORMAT",
    "GRASPS_JSON",
    "LOCK",
    "MANIFEST",
    "MAX_GRASPS",
    "MAX_ID_LENGTH",
    "SAMPLES",
    "STATE",
    "CorruptLabels",
    "RevisionConflict",
    "atomic_write_bytes",
    "check_queue",
    "depth_to_image",
    "is_finished",
    "load_manifest",
    "move_aside_corrupt",
    "queue_lock",
    "read_labels",
    "read_sample",
    "read_state",
    "save_sample",
    "validate_rects",
    "write_queue",
    "write_state",
]

_LOG = logging.getLogger(__name__)

#: Longest sample id accepted (ids are shown in the page, so keep them readable).
MAX_ID_LENGTH = 300


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


# ----------------------------------------------------------------------------- writing


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
            sdir = sample_dir(queue_dir, i)
            sdir.mkdir(parents=True, exist_ok=True)
            entry = {"id": sid, "dir": f"{SAMPLES}/{i:04d}", "rgb": None, "depth": "depth.png"}
            if rgb is not None:
                atomic_write_png(sdir / "rgb.png", rgb[i])
                entry["rgb"] = "rgb.png"
            else:
                with contextlib.suppress(FileNotFoundError):
                    (sdir / "rgb.png").unlink()
            atomic_write_png(sdir / "depth.png", depth_to_image(depth[i]))
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
                write_sample_files(sdir, sid, rects, revision=0)
            samples.append(entry)
        manifest = {
            "format": FORMAT,
            "round": int(round_index),
            "height": int(height),
            "width": int(width),
            "max_grasps": MAX_GRASPS,
            "samples": samples,
        }
        atomic_write_json(queue_dir / MANIFEST, manifest)
        if not resume or not (queue_dir / STATE).exists():
            atomic_write_json(queue_dir / STATE, {"current": 0, "finished": False})
    # Drop folders of a longer queue this one overwrote, so they cannot be mistaken for labels.
    for extra in sorted((queue_dir / SAMPLES).glob("[0-9][0-9][0-9][0-9]")):
        if int(extra.name) >= k:
            shutil.rmtree(extra)
    _LOG.info("annotation queue of %d samples written to %s", k, queue_dir)
    return queue_dir


# ----------------------------------------------------------------------------- all labels


def check_queue(queue_dir, manifest: dict | None = None) -> tuple[list, list]:
    """Reads every sample's labels: ([(index, problem)] of samples without a readable copy,
    [(index, note)] of samples read from ``cpos.txt`` because ``grasps.json`` is damaged)."""
    manifest = manifest or load_manifest(queue_dir)
    problems, notes = [], []
    for i in range(len(manifest["samples"])):
        _, _, problem, note = read_sample_checked(queue_dir, i, manifest)
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
            sdir = sample_dir(queue_dir, i)
            dest = sdir / f"corrupt-{stamp}"
            dest.mkdir(exist_ok=True)
            for name in (GRASPS_JSON, CPOS):
                if (sdir / name).exists():
                    os.replace(sdir / name, dest / name)
            moved.append(dest)
    return moved


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
        atomic_write_json(pathlib.Path(queue_dir) / STATE, state)
    return state


def is_finished(queue_dir) -> bool:
    """True once the labeller pressed Finish on this queue."""
    return read_state(queue_dir)["finished"]
