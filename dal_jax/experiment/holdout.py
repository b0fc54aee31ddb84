"""Leave-one-object-out: how well GG-CNN grasps real objects it has never seen.

``python -m experiments.train --dataset=jacquard_subset --leave_one_out`` pools every image of
the dataset (both splits), and for each object trains on the images of all the others and tests
on that object's images - all folds (x seeds) as runs of one compiled program, with the same
recipe as every other training here (`dal_jax.training.fit`). Next to each fold's accuracy it reports:

* a **frame-centre grasp**: a grasp at the image centre, horizontal, with the median opening
  (and jaw) of the fold's training rectangles - what a robot gets without looking;
* optionally **another model** (``--compare_to=CHECKPOINT``, e.g. the original GG-CNN weights
  converted by `dal_jax.model.convert_torch`), tested on the same images.

All three are scored with the rectangle metric against every ground-truth grasp of an image.
Writes ``leave_one_out.json`` into the workdir.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from dal_jax.data import grasp, pools
from dal_jax.evaluation import metric, postprocess
from dal_jax.experiment import build
from dal_jax.experiment.results import write_json
from dal_jax.experiment.workdir import claim
from dal_jax.model import checkpoint
from dal_jax.training import fit, train
from dal_jax.training.runs import VALIDATION, Grid

KIND = "leave_one_object_out"


def join(a: pools.Pool, b: pools.Pool) -> pools.Pool:
    """The examples of ``a`` then ``b`` (ground truth padded to the larger G)."""
    g = max(a.gt_rects.shape[1], b.gt_rects.shape[1])

    def pad(p: pools.Pool):
        extra = g - p.gt_rects.shape[1]
        return (
            np.pad(p.gt_rects, ((0, 0), (0, extra), (0, 0), (0, 0))),
            np.pad(p.gt_mask, ((0, 0), (0, extra))),
        )

    (ra, ma), (rb, mb) = pad(a), pad(b)

    def cat(x, y):
        return None if x is None or y is None else np.concatenate([x, y])

    return pools.Pool(
        inputs=cat(a.inputs, b.inputs),
        targets=cat(a.targets, b.targets),
        gt_rects=cat(ra, rb),
        gt_mask=cat(ma, mb),
        ids=cat(a.ids, b.ids),
        rgb=cat(a.rgb, b.rgb),
        depth=cat(a.depth, b.depth),
        object_ids=cat(a.object_ids, b.object_ids),
    )


def frame_centre_success(images: pools.Pool, train_rects) -> np.ndarray:
    """Rectangle-metric success [N] of a horizontal grasp at each image's centre whose opening
    and jaw are the medians of ``train_rects`` [M, 4, 2]."""
    _, _, opening, jaw = grasp.rect_params(np.asarray(train_rects, np.float64))
    n, size = len(images), images.inputs.shape[1]
    one = np.ones((n, 1), np.float32)
    centre = np.full((n, 1, 2), (size - 1) / 2, np.float32)
    g = postprocess.Grasps(
        centre, 0 * one, np.median(opening) * one, np.median(jaw) * one, one, one > 0
    )
    return np.asarray(metric.grasp_success(g, images.gt_rects, images.gt_mask, size))


def _model_success(trainer: train.Trainer, params, images: pools.Pool) -> np.ndarray:
    preds = trainer.predict(params, images.inputs)
    ev = metric.evaluate(preds[None], images.gt_rects, images.gt_mask)
    return np.asarray(ev.success[0])


def _folds(c, pool: pools.Pool):
    """Objects (sorted) and the training masks [F * S, N] (run f * S + s leaves out object f)."""
    if pool.object_ids is None:
        raise ValueError(
            f"{c.dataset} records no object per image; leave-one-object-out needs one "
            "(jacquard_subset, or cornell with --config=object_wise)"
        )
    objects = sorted(set(pool.object_ids.tolist()))
    if len(objects) < 2:
        raise ValueError(
            f"{c.dataset} holds {len(objects)} object; leave-one-out needs two or more"
        )
    masks = np.repeat(pool.object_ids[None] != np.asarray(objects)[:, None], c.seeds, axis=0)
    return objects, masks


def run(config, workdir, compare_to=None, progress: bool = True) -> dict:
    """Trains and tests every fold; writes and returns the ``leave_one_out.json`` dict."""
    c = build.resolve(config)
    with claim(workdir or f"runs/{c.dataset}_leave_one_out") as path:
        ds = build.load_data(c)
        images = join(ds.pool, ds.test)
        objects, masks = _folds(c, images)
        other = _load_other(compare_to, c) if compare_to else None
        trainer = build.trainer(c)
        t0 = time.time()
        states, info, steps = _train_folds(c, trainer, images, masks, len(objects), progress)
        res = _report(c, trainer, states, info, images, objects, masks, other)
        other_path = str(compare_to) if compare_to else None
        res.update(steps=steps, train_s=round(time.time() - t0, 1), compare_to=other_path)
        write_json(path / "leave_one_out.json", res)
        return res


def _train_folds(c, trainer, images: pools.Pool, masks, num_folds: int, progress: bool):
    """Trains every fold (one group of the run grid per held-out object, alpha unused)."""
    grid = Grid((0.0,) * num_folds, c.seeds, c.seed)
    train_masks, _ = fit.carve_validation(
        c, masks, images.gt_rects, images.gt_mask, grid.rngs(VALIDATION, 0)
    )
    steps = fit.num_steps(c, int(train_masks.sum(axis=1).min()))
    bar = fit.progress_bar(steps, f"{num_folds} folds x {c.seeds} seeds", progress)
    states, info, _, _ = fit.train_runs(
        c, trainer, grid, images, masks, steps=steps, on_chunk=lambda d: bar.update(d - bar.n)
    )
    bar.close()
    return states, info, steps


def _load_other(path, c):
    """(trainer, params) of a checkpoint to test beside the folds, at its own input scale."""
    params, meta, _ = checkpoint.load_ggcnn(path)
    scale = float(meta.get("input_scale", 1.0))
    cfg = dataclasses.replace(build.train_config(c), input_scale=scale)
    return train.Trainer(cfg), jax.tree.map(np.asarray, params)


def _report(c, trainer, states, info, images, objects, masks, other) -> dict:
    """Per object: its images, the folds' success per seed, the frame-centre grasp, the other
    model; and the means over objects."""
    rows = []
    for f, obj in enumerate(objects):
        held = images.object_ids == obj
        test = images.subset(held)
        runs = range(f * c.seeds, (f + 1) * c.seeds)
        ours = [_model_success(trainer, fit._run_params(states.params, r), test) for r in runs]
        row = {
            "object": obj,
            "images": int(held.sum()),
            "trained_on": int(masks[f * c.seeds].sum()),
            "accuracy": [float(s.mean()) for s in ours],
            "diverged": [bool(info.diverged_at[r] >= 0) for r in runs],
            "frame_centre": float(frame_centre_success(test, _rects(images, ~held)).mean()),
        }
        if other is not None:
            row["compare_to"] = float(_model_success(*other, test).mean())
        rows.append(row)
    out = {"kind": KIND, "dataset": c.dataset, "image_size": c.image_size, "seeds": c.seeds}
    out["objects"] = rows
    out["mean"] = {
        "accuracy": float(np.mean([np.mean(r["accuracy"]) for r in rows])),
        "frame_centre": float(np.mean([r["frame_centre"] for r in rows])),
    }
    if other is not None:
        out["mean"]["compare_to"] = float(np.mean([r["compare_to"] for r in rows]))
    return out


def _rects(images: pools.Pool, which) -> np.ndarray:
    """Every ground-truth rectangle of the images ``which`` selects: [M, 4, 2]."""
    return images.gt_rects[which][images.gt_mask[which]]


def table(res: dict) -> str:
    """The report as a markdown table (success rates in %)."""
    other = "compare_to" in res["mean"]
    head = "| object | images | trained on | ours (per seed) | frame centre |"
    head += " other model |" if other else ""
    lines = [head, "|---" * (6 if other else 5) + "|"]
    for r in res["objects"]:
        seeds = ", ".join(f"{100 * a:.0f}" for a in r["accuracy"])
        line = f"| {r['object'][:8]} | {r['images']} | {r['trained_on']} | {seeds} | "
        line += f"{100 * r['frame_centre']:.0f} |"
        line += f" {100 * r['compare_to']:.0f} |" if other else ""
        lines.append(line)
    m = res["mean"]
    line = f"| mean | | | {100 * m['accuracy']:.1f} | {100 * m['frame_centre']:.1f} |"
    lines.append(line + (f" {100 * m['compare_to']:.1f} |" if other else ""))
    return "\n".join(lines)
