"""Who labels the selected images: the dataset's ground truth (benchmarks, ``--oracle=gt``) or
a person on the annotation page (``--oracle=human``).

Human labels are kept by pool index ({index: rectangles [G, 4, 2] (row, col)}); they replace
the dataset's rectangles and GG-CNN targets of those images for training and validation.
"""

from __future__ import annotations

import pathlib

import numpy as np

from dal_jax.data import pools, target_maps


def pool_ground_truth(ds: pools.Dataset, human_labels: dict):
    """The pool's rectangles with the human labels in place of the dataset's:
    (gt_rects [N, G, 4, 2], gt_mask [N, G])."""
    rects, mask = ds.pool.gt_rects, ds.pool.gt_mask
    if not human_labels:
        return rects, mask
    g = max([rects.shape[1]] + [len(v) for v in human_labels.values()])
    out = np.zeros((len(rects), g, 4, 2), np.float32)
    out_mask = np.zeros((len(rects), g), bool)
    out[:, : rects.shape[1]], out_mask[:, : rects.shape[1]] = rects, mask
    for i, v in human_labels.items():
        out[i], out_mask[i] = 0, False
        out[i, : len(v)], out_mask[i, : len(v)] = v, True
    return out, out_mask


def apply_human_labels(targets, labels: dict, size: int):
    """targets [N, S, S, 4] (jax) with the GG-CNN targets of the human-labelled images
    replaced by targets drawn from their rectangles."""
    for i, rects in labels.items():
        new = target_maps.make_targets(rects, None, (size, size)).astype(targets.dtype)
        targets = targets.at[i].set(new)
    return targets


def round_queue(workdir, round_index: int) -> pathlib.Path:
    """The annotation queue of the images labelled before round ``round_index``."""
    return pathlib.Path(workdir) / "annotate" / f"round_{round_index:03d}"


def annotate(c, pool: pools.Pool, idx, queue_dir, on_url=None, round_index=0, existing=False):
    """Serves the pool images ``idx`` [k] on the annotation page from ``queue_dir`` and returns
    their labels {pool index: rectangles [G, 4, 2]} once the labeller presses Finish.

    Labels are saved in the queue as they are drawn, so a restart serves the same images with
    everything saved so far. ``existing``: start from the rectangles the images already have
    (a user's frames with a cpos.txt), to check or correct. on_url(url) is told where the page
    is (default: printed).
    """
    from dal_jax import annotate as page

    idx = [int(i) for i in idx]
    ids = [str(pool.ids[i]) for i in idx]
    rgb = None if pool.rgb is None else pool.rgb[idx]
    depth = pool.depth[idx] if pool.depth is not None else pool.inputs[idx, ..., 0]
    start = None
    if existing:
        start = {sid: pool.gt_rects[i][pool.gt_mask[i]] for i, sid in zip(idx, ids)}
    page.write_queue(queue_dir, ids, rgb, depth, round_index, existing_rects=start)
    if on_url is None:

        def on_url(u):
            print(f"annotate ({pathlib.Path(queue_dir).name}) at {u}", flush=True)

    labels = page.annotate_queue(queue_dir, c.annotate_host, c.annotate_port, on_url=on_url)
    empty = np.zeros((0, 4, 2))
    return {i: np.asarray(labels.get(sid, empty), np.float64) for i, sid in zip(idx, ids)}
