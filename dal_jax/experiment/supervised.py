"""Supervised training on a whole pool: the upper bound of the active-learning curves, and how a
user trains a deployable model on their own data (``python -m experiments.train``).

The same recipe as an active-learning round (`dal_jax.training.fit`: steps for the labelled count, the
model choice on a validation split or the training loss, the collapse diagnostics), with every
pool image labelled and no discriminator; where the loop keeps its networks between rounds, at
least as many steps as the loop's last model had in all (`loop_steps`). Writes ``results.json`` and an orbax checkpoint that
`dal_jax.robot.detect` / `dal_jax.robot` load (``--checkpoint=WORKDIR``).
"""

from __future__ import annotations

import json
import logging
import pathlib
import time

import ml_collections
import numpy as np

from dal_jax.experiment import build
from dal_jax.experiment.results import SUPERVISED as KIND
from dal_jax.experiment.results import data_variant, write_json
from dal_jax.experiment.workdir import claim, config_diff
from dal_jax.model import checkpoint
from dal_jax.training import fit
from dal_jax.training.runs import Grid

log = logging.getLogger("dal_jax")


def results(c, accuracy, diag, steps: int, labelled: int, train_s: float) -> dict:
    """The results.json dict of a supervised run."""
    return {
        "kind": KIND,
        "dataset": c.dataset,
        "image_size": c.image_size,
        "data_variant": data_variant(c),
        "seeds": c.seeds,
        "labeled": labelled,
        "steps": steps,
        "accuracy": accuracy,
        "collapsed": diag["collapsed"],
        "diagnostics": {k: v for k, v in diag.items() if k != "collapsed"},
        "train_s": round(train_s, 2),
        "init_from": c.get("init_from") or None,  # the prior model fine-tuned, if any
    }


def run(config: ml_collections.ConfigDict, workdir=None, progress: bool = True) -> dict:
    """Trains ``config.seeds`` GG-CNNs on the whole pool; returns the results dict.

    ``workdir`` defaults to ``runs/<dataset>_supervised``. A workdir that already holds a
    finished run with the same config is not retrained (its results are returned); one with
    a different config is refused, naming the fields.
    """
    c = build.resolve(config)
    with claim(workdir or f"runs/{c.dataset}_supervised") as path:
        done = _finished(path, c)
        if done is not None:
            print(f"{path} already holds this run; results.json is up to date.", flush=True)
            return done
        return _train(c, path, progress)


def _train(c, workdir: pathlib.Path, progress: bool) -> dict:
    """Trains, tests and saves the run of a resolved config into ``workdir`` (locked)."""
    ds = build.load_data(c)
    trainer = build.trainer(c)
    grid, n = Grid((0.0,), c.seeds, c.seed), len(ds.pool)  # no discriminator: alpha unused
    masks = np.ones((grid.num_runs, n), bool)
    shape = ds.pool.inputs.shape[1:]
    # --init_from: fine-tune a prior model (e.g. one trained on synthetic scenes) on this pool.
    states = fit.initial_states(trainer, grid, 0, shape, build.load_prior(c, trainer, shape))
    steps = supervised_steps(c, ds)
    bar = fit.progress_bar(steps, f"supervised x{c.seeds} seeds, {n} images", progress)
    t0 = time.time()
    states, info, _, val = fit.train_runs(
        c,
        trainer,
        grid,
        ds.pool,
        masks,
        states=states,
        steps=steps,
        on_chunk=lambda d: bar.update(d - bar.n),
    )
    bar.close()
    diag = fit.assess(trainer, states, ds.test, info)
    acc = diag.pop("accuracy")
    res = results(c, acc, diag, steps, n, time.time() - t0)
    res["model_choice"] = info.rule
    if info.rule == "validation":  # the kept chunk's accuracy on the held-out pool images
        res["validation_accuracy"] = np.asarray(info.score, np.float64).tolist()
        # Every chunk's held-out accuracy per seed: how a step budget is chosen on validation.
        res["validation_curve"] = {
            "steps": [int(done) for done, _ in info.curve],
            "accuracy": [fit.finite_or_none(score) for _, score in info.curve],
        }
    meta = build.checkpoint_meta(c, kind=KIND, strategy=None, accuracy=acc, num_pool=n)
    train_masks = masks.copy()
    if val is not None:
        np.put_along_axis(train_masks, val.idx, False, axis=1)
    checkpoint.save(workdir, 0, states, {"masks": train_masks}, meta)
    write_json(workdir / "results.json", res)
    print(f"wrote {workdir / 'results.json'} and the checkpoint in {workdir}", flush=True)
    return res


def supervised_steps(c, ds) -> int:
    """The supervised model's steps: ``c.supervised_steps`` when set, else a round's steps for
    the whole pool, and never fewer than the loop's last model had in all (`loop_steps`)."""
    if c.get("supervised_steps", 0) > 0:
        return int(c.supervised_steps)
    return max(fit.num_steps(c, len(ds.pool)), loop_steps(c, ds))


def loop_steps(c, ds) -> int:
    """Training steps the active-learning loop's last model has had in all: the sum over its
    rounds when the networks are kept between rounds (warm start), else 0. The upper bound
    trains for at least this long, so it is not below the curve for want of training."""
    if not c.warm_start:
        return 0
    initial = build.initial_count(c, ds)
    return sum(fit.num_steps(c, initial + c.budget * r) for r in range(c.rounds))


def _finished(workdir: pathlib.Path, c) -> dict | None:
    """The saved results when ``workdir`` holds a finished run of the same config."""
    if not checkpoint.rounds(workdir):
        return None
    _, meta = checkpoint.restore_meta(workdir)
    if meta.get("kind") != KIND:
        raise ValueError(
            f"{workdir} holds an active-learning run, not a supervised one; use another --workdir"
        )
    diff = config_diff(meta["config"], c.to_dict())
    if diff:
        detail = ", ".join(f"{k}: {meta['config'].get(k)!r} -> {c.get(k)!r}" for k in diff)
        raise ValueError(
            f"{workdir} holds a supervised run with a different config ({detail}); use another "
            "--workdir, or the same settings."
        )
    path = workdir / "results.json"
    return json.loads(path.read_text()) if path.exists() else None
