"""Teach the robot a new room: Algorithm 1 on a user's own frames, judged on the user's hold-out.

With ``dataset='frames'`` (a folder of depth frames recorded in the room, ``python -m
datasets.prepare --dataset=frames``) there is no test split and usually no label. Before round
0 the loop therefore

1. draws a hold-out test set of ``test_size`` random frames (from ``seed``: the same frames on
   every restart) and serves it on the annotation page (queue ``annotate/holdout``); the
   remaining frames are the pool;
2. serves the initial labelled set (queue ``annotate/round_000``).

Frames that came with a Cornell-format ``cpos.txt`` are served with those rectangles to check
or correct. Every label is saved the moment it is drawn (the annotation queue's files), so a
restart serves the same frames again with everything saved so far, and nothing is redrawn.
Each round then selects, serves, trains and reports the accuracy on the hold-out.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from dal_jax.data import pools
from dal_jax.experiment.oracle import annotate, pool_ground_truth

DATASET = "frames"
HOLDOUT = "holdout"


def is_room(c) -> bool:
    """Whether the config runs on a user's own frames (hold-out and labels from the user)."""
    return c.dataset == DATASET


def check_sizes(c, num_frames: int) -> None:
    """Refuses, before anything is served, a hold-out or a labelling plan the frames cannot
    supply: the hold-out, the initial set and every round's budget must fit."""
    need = c.test_size + (c.initial or 0) + c.budget * (c.rounds - 1)
    if not 0 < c.test_size < num_frames:
        raise ValueError(
            f"--test_size={c.test_size}: the folder holds {num_frames} frames; the hold-out "
            f"must be 1..{num_frames - 1} frames, leaving the rest to learn from"
        )
    if need > num_frames:
        raise ValueError(
            f"{c.test_size} hold-out + {c.initial} initial + {c.budget} x {c.rounds - 1} "
            f"selections = {need} frames, but the folder holds {num_frames}; lower --test_size, "
            "--initial, --budget or --rounds"
        )


def holdout_indices(c, num_frames: int) -> np.ndarray:
    """The hold-out frames [test_size] (sorted): a draw that depends on ``seed`` only."""
    key = jax.random.fold_in(jax.random.key(c.seed), 7)  # 7: not a purpose of dal_jax.training.runs
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
    return np.sort(rng.choice(num_frames, c.test_size, replace=False))


def split_holdout(c, ds: pools.Dataset, workdir, on_url=None) -> pools.Dataset:
    """The dataset with the user's hold-out as its test set (labelled on the page now, or read
    back from the saved queue) and the other frames as its pool."""
    frames = ds.pool
    check_sizes(c, len(frames))
    idx = holdout_indices(c, len(frames))
    labels = label_frames(workdir, c, frames, idx, HOLDOUT, on_url)
    test = frames.subset(idx)
    rects, mask = pool_ground_truth(ds, labels)
    test.gt_rects, test.gt_mask = rects[idx], mask[idx]
    rest = np.setdiff1d(np.arange(len(frames)), idx)
    return pools.Dataset(ds.name, frames.subset(rest), test, None, dict(ds.info, holdout=idx))


def label_frames(workdir, c, frames: pools.Pool, idx, queue: str, on_url=None) -> dict:
    """Serves the frames ``idx`` (with any labels they came with) in ``workdir/annotate/
    <queue>`` until the user presses Finish; returns {frame index: rectangles [G, 4, 2]}."""
    where = pathlib.Path(workdir) / "annotate" / queue
    return annotate(c, frames, idx, where, on_url, round_index=0, existing=True)
