"""Who labels the selected images: the dataset's ground truth (benchmarks, ``--oracle=gt``) or
a person on the annotation page (``--oracle=human``).

Human labels are kept by pool index ({index: rectangles [G, 4, 2] (row, col)}); they replace
the dataset's rectangles and GG-CNN targets of those images for training and validation.
"""

from __future__ import annotations

import pathlib

import numpy as np

from dal_jax import data


def pool_ground_truth(ds: data.Dataset, human_labels: dict):
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
        new = data.make_targets(rects, None, (size, size)).astype(targets.dtype)
        targets = targets.at[i].set(new)
    return targets


def annotate(workdir, c, ds: data.Dataset, round_index: int, selected, on_url=None) -> dict:
    """Serves the annotation page for one run's selected pool indices ``selected`` [k] (the
    picks made after round ``round_index``) and returns their labels {pool index: rectangles}.

    The queue lives in ``workdir/annotate/round_<r+1>/``, so labels saved there survive a
    restart. on_url(url) is told where the page is (default: printed).
    """
    from dal_jax import annotate as page

    idx = [int(i) for i in selected]
    queue = pathlib.Path(workdir) / "annotate" / f"round_{round_index + 1:03d}"
    ids = [str(ds.pool.ids[i]) for i in idx]
    rgb = None if ds.pool.rgb is None else ds.pool.rgb[idx]
    depth = ds.pool.depth[idx] if ds.pool.depth is not None else ds.pool.inputs[idx, ..., 0]
    page.write_queue(queue, ids, rgb, depth, round_index + 1)
    if on_url is None:

        def on_url(u):
            print(f"round {round_index + 1}: annotate at {u}", flush=True)

    labels = page.annotate_queue(queue, c.annotate_host, c.annotate_port, on_url=on_url)
    empty = np.zeros((0, 4, 2))
    return {i: np.asarray(labels.get(sid, empty), np.float64) for i, sid in zip(idx, ids)}
