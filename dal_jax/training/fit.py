"""From a labelled set to the model a round reports: steps, model choice, test and diagnostics.

Every training of the project goes through `train_runs` (a round of the active-learning loop,
the plain GG-CNN re-training of the paper's discussion, the supervised upper bound of
``experiments.train`` and the leave-one-object-out folds), so that they all train and judge a
network the same way.

* **Steps** grow with the labelled set: ``steps_per_round + steps_per_label * labelled``
  (`num_steps`), so a round with five times the labels does not get a fifth of the epochs.
* **Which weights a round reports** is decided without the test set (`fit`). When the labelled
  set has at least ``val_min`` images and ``val_fraction > 0``, a validation split of
  ``round(val_fraction * labelled)`` images is held out of training (drawn per run from its key)
  and the weights at the end of the chunk with the best validation accuracy are kept (ties go
  to the later chunk). With fewer labels the training loss decides: the weights at the end of
  the latest chunk whose mean grasp loss is within ``LOSS_TOLERANCE`` (5%) of the lowest chunk
  loss so far are kept. A chunk's mean loss is measured over the steps of the chunk on random
  batches, so it is noisy by a few percent: taking the lowest one outright chased that noise
  and kept weights from early in a round (in a warm-started run, from up to 200 steps before
  the end), while a collapse or divergence raises it far more than the tolerance.
* **Diagnostics** (`assess`): per run, the test accuracy and what tells a trained network from a
  collapsed one - the final training loss, the median over test images of the largest quality
  output, the fraction of test images without any grasp (no quality peak above the threshold),
  and the number of dead conv1 filters (zero after the ReLU on every test image). A run with no
  grasp on more than half of the test images is flagged ``collapsed``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax.data import pools
from dal_jax.evaluation import metric
from dal_jax.training import distributed, train
from dal_jax.training.runs import INIT, TRAIN, VALIDATION, Grid

COLLAPSE_NO_GRASP = 0.5  # a run with no grasp on more than this fraction of test images
LOSS_TOLERANCE = 0.05  # training-loss rule: a chunk within 5% of the lowest loss is as good


def num_steps(c, labelled: int) -> int:
    """Training steps for a labelled set of ``labelled`` images (config fields
    ``steps_per_round`` and ``steps_per_label``)."""
    return int(c.steps_per_round + round(c.get("steps_per_label", 0.0) * labelled))


class Validation(NamedTuple):
    """Held-out labelled images per run: idx [R, V] pool indices; their ground truth
    gt_rects [R, V, G, 4, 2] and gt_mask [R, V, G]."""

    idx: np.ndarray
    gt_rects: np.ndarray
    gt_mask: np.ndarray


def carve_validation(c, masks: np.ndarray, gt_rects, gt_mask, rngs) -> tuple:
    """Splits each run's labelled set into training and validation images.

    masks [R, N] labelled; gt_rects [N, G, 4, 2] / gt_mask [N, G] the pool's ground truth;
    rngs: one ``np.random.Generator`` per run. Returns (train masks [R, N], `Validation` or
    None when the rule does not apply).
    """
    labelled = int(masks.sum(axis=1).min())
    fraction = float(c.get("val_fraction", 0.0))
    if fraction <= 0 or labelled < int(c.get("val_min", 0)):
        return masks, None
    v = max(1, round(fraction * labelled))
    train_masks = masks.copy()
    idx = np.zeros((len(masks), v), np.int64)
    for r, (m, rng) in enumerate(zip(masks, rngs)):
        idx[r] = np.sort(rng.choice(np.flatnonzero(m), v, replace=False))
        train_masks[r, idx[r]] = False
    return train_masks, Validation(idx, np.asarray(gt_rects)[idx], np.asarray(gt_mask)[idx])


def _run_params(params, r: int):
    """Run r's GG-CNN parameters from the all-runs params dict (leaves [R, ...])."""
    return jax.tree.map(lambda a: a[r], params["ggcnn"])


def validation_accuracy(trainer: train.Trainer, params, inputs, val: Validation) -> np.ndarray:
    """Each run's accuracy on its own held-out images (params: leaves [R, ...]) -> [R]."""
    num_runs, v = val.idx.shape
    preds = np.stack(
        [trainer.predict(_run_params(params, r), inputs[val.idx[r]]) for r in range(num_runs)]
    )
    flat = preds.reshape((1, num_runs * v) + preds.shape[2:])
    g = val.gt_rects.reshape((num_runs * v,) + val.gt_rects.shape[2:])
    m = val.gt_mask.reshape((num_runs * v,) + val.gt_mask.shape[2:])
    _, success = metric.accuracy(flat, g, m)
    return np.asarray(success, np.float64).reshape(num_runs, v).mean(axis=1)


@dataclasses.dataclass
class FitInfo:
    """How `fit` chose each run's weights: rule ("validation" or "train_loss"), step [R] at
    which the kept weights were taken (0: none, the run diverged in its first chunk), score
    [R] (validation accuracy, or minus the mean grasp loss of the kept chunk), final_loss [R]
    (mean loss of the last finite chunk), diverged_at [R] (the step of the first non-finite
    loss, -1 if none), curve: every chunk's (step, score [R]), the curve the choice was made on
    (-inf where a run had diverged)."""

    rule: str
    step: np.ndarray
    score: np.ndarray
    final_loss: np.ndarray
    diverged_at: np.ndarray
    curve: list = dataclasses.field(default_factory=list)


def fit(
    trainer, states, inputs, targets, masks, hparams, keys, steps: int, val=None, on_chunk=None
):
    """Trains all runs for ``steps`` steps and keeps, per run, the weights of its best chunk.

    inputs [N, H, W, C] (jax), targets [N, H, W, 4], masks [R, N] bool: the images trained on
    (validation images already removed); val: `Validation` or None (training-loss rule).
    on_chunk(done) is called after every chunk. A run whose loss turns non-finite is marked
    diverged (`FitInfo.diverged_at`) and keeps its best weights from before; the other runs
    train on. Returns (states with the kept weights, `FitInfo`). The optimiser states are the
    last chunk's.
    """
    num_runs = masks.shape[0]
    best = {"params": None, "score": np.full(num_runs, -np.inf), "step": np.zeros(num_runs, int)}
    last = {"loss": np.full(num_runs, np.nan), "diverged": np.full(num_runs, -1)}
    lowest = np.full(num_runs, np.inf)  # the training-loss rule's lowest chunk loss so far
    curve = []

    def after_chunk(done, metrics, st):
        # Host copies (st is donated to the next chunk; with several hosts, gathered).
        params, metrics = distributed.gather((st.params, metrics))
        loss = np.asarray(metrics["loss"], np.float64)  # [R, n]
        bad = ~np.isfinite(loss)
        first_bad = done - loss.shape[1] + np.argmax(bad, axis=1)
        newly = bad.any(axis=1) & (last["diverged"] < 0)
        last["diverged"] = np.where(newly, first_bad, last["diverged"])
        ok = last["diverged"] < 0
        if val is not None:
            score = validation_accuracy(trainer, params, inputs, val)
            score = np.where(ok & np.isfinite(score), score, -np.inf)
            better = ok & (score >= best["score"])
        else:
            chunk_loss = np.asarray(metrics["gsp_loss"], np.float64).mean(axis=1)
            finite = ok & np.isfinite(chunk_loss)
            lowest[:] = np.where(finite, np.minimum(lowest, chunk_loss), lowest)
            score = np.where(finite, -chunk_loss, -np.inf)
            better = finite & (chunk_loss <= lowest * (1 + LOSS_TOLERANCE))
        if best["params"] is None:
            best["params"] = params
        else:
            best["params"] = jax.tree.map(
                lambda new, old: np.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                params,
                best["params"],
            )
        curve.append((done, score))
        best["score"] = np.where(better, score, best["score"])
        best["step"] = np.where(better, done, best["step"])
        last["loss"] = np.where(ok, loss.mean(axis=1), last["loss"])
        if on_chunk is not None:
            on_chunk(done)

    states, _ = trainer.train(
        states,
        inputs,
        targets,
        jnp.asarray(masks),
        hparams,
        keys,
        steps,
        on_chunk=after_chunk,
        nonfinite="continue",
    )
    info = FitInfo(
        "validation" if val is not None else "train_loss",
        best["step"],
        best["score"],
        last["loss"],
        last["diverged"],
        curve,
    )
    return states.replace(params=best["params"]), info


def initial_states(trainer: train.Trainer, grid: Grid, round_index: int, image_shape, prior=None):
    """Every run's networks for a round that starts afresh: new ones from the round's INIT
    keys, with GG-CNN's parameters replaced by ``prior`` (prior knowledge) when given."""
    states = trainer.init_states(grid.keys(INIT, round_index), image_shape)
    if prior is None:
        return states
    tiled = jax.tree.map(
        lambda a: jnp.broadcast_to(jnp.asarray(a), (grid.num_runs, *a.shape)), prior
    )
    return states.replace(params={**states.params, "ggcnn": tiled})


def train_runs(
    c,
    trainer: train.Trainer,
    grid: Grid,
    images: pools.Pool,
    masks: np.ndarray,
    round_index: int = 0,
    *,
    targets=None,
    gt=None,
    states=None,
    steps: int | None = None,
    on_chunk=None,
):
    """Trains every run of ``grid`` on its labelled images and keeps its reported weights.

    images: the pool (inputs [N, H, W, C], numpy or jax); masks [R, N] bool: each run's labelled
    images, of which a validation split is held out (`carve_validation`, drawn from the run's
    VALIDATION key of ``round_index``); targets [N, H, W, 4] and gt = (gt_rects, gt_mask):
    overrides of the pool's (human labels); states: networks to continue (warm start), else
    fresh ones from the INIT keys; steps: default `num_steps` of the labelled count.
    Returns (states, `FitInfo`, steps, `Validation` or None).
    """
    rects, gt_mask = gt if gt is not None else (images.gt_rects, images.gt_mask)
    train_masks, val = carve_validation(
        c, masks, rects, gt_mask, grid.rngs(VALIDATION, round_index)
    )
    if steps is None:
        steps = num_steps(c, int(masks[0].sum()))
    if states is None:
        states = initial_states(trainer, grid, round_index, images.inputs.shape[1:])
    targets = images.targets if targets is None else targets
    states, info = fit(
        trainer,
        states,
        jnp.asarray(images.inputs),
        jnp.asarray(targets),
        train_masks,
        grid.hparams(),
        grid.keys(TRAIN, round_index),
        steps,
        val,
        on_chunk,
    )
    return states, info, steps, val


def assess(trainer: train.Trainer, states, test: pools.Pool, info: FitInfo | None = None) -> dict:
    """Test accuracy and collapse diagnostics of every run (see the module docstring).

    Returns a dict of [R] lists: accuracy, q_max, no_grasp, dead_filters, collapsed, and with
    the `FitInfo` of the training: final_loss, kept_step, diverged_at. A run that diverged
    before any finite weights were kept has accuracy None (never a silent 0) and is flagged
    collapsed.
    """
    num_runs = states.step.shape[0]
    preds, conv1 = [], []
    for r in range(num_runs):
        p, f1 = trainer.predict(_run_params(states.params, r), test.inputs, with_conv1=True)
        preds.append(p)
        conv1.append(f1)
    preds, conv1 = np.stack(preds), np.stack(conv1)  # [R, N, H, W, 4], [R, N, 32]
    ev = metric.evaluate(preds, test.gt_rects, test.gt_mask)
    no_grasp = 1.0 - np.asarray(ev.has_grasp, np.float64).mean(axis=1)
    acc = np.asarray(ev.acc, np.float64).tolist()
    out = {
        "accuracy": acc,
        "q_max": np.median(preds[..., 0].max(axis=(2, 3)), axis=1).tolist(),
        "no_grasp": no_grasp.tolist(),
        "dead_filters": (conv1.max(axis=1) <= 0).sum(axis=1).tolist(),
        "collapsed": (no_grasp > COLLAPSE_NO_GRASP).tolist(),
    }
    if info is not None:
        lost = (info.diverged_at >= 0) & (info.step == 0)
        out["accuracy"] = [None if bad else a for a, bad in zip(acc, lost)]
        out["collapsed"] = [bool(c or bad) for c, bad in zip(out["collapsed"], lost)]
        out["q_max"] = [None if bad else q for q, bad in zip(out["q_max"], lost)]
        out.update(
            final_loss=finite_or_none(info.final_loss),
            kept_step=info.step.tolist(),
            diverged_at=info.diverged_at.tolist(),
        )
    return out


def mean_accuracy(values) -> float:
    """Mean over runs, leaving out runs without an accuracy (None: diverged, no weights)."""
    a = np.asarray(values, np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def finite_or_none(values) -> list:
    """[R] floats with non-finite entries (diverged runs) as None (JSON null)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, np.float64)]


def collapsed_runs(diagnostics: dict) -> list[int]:
    """Indices of the runs flagged collapsed."""
    return [i for i, c in enumerate(diagnostics.get("collapsed", [])) if c]


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0):
    """A tqdm bar over training steps (disabled unless ``enabled``)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        desc=desc,
        disable=not enabled,
        dynamic_ncols=True,
    )
