"""The paper's discussion experiment: plain GG-CNN trained on the data a DAL run selected.

``train_plain_from(DAL_WORKDIR, round)`` rebuilds the labelled set that round ``round`` of the
DAL run trained on, trains plain GG-CNN (no discriminator, alpha unused) on it with the same
settings, keys and steps (for a warm-started protocol, every round up to ``round`` on that
round's labelled set, as the joint model was), and reports both test accuracies (paper, Cornell round 6: DAL joint model
80.48 %, plain GG-CNN 77.45 %).
"""

from __future__ import annotations

import json
import pathlib

import ml_collections
import numpy as np

from dal_jax.experiment import build
from dal_jax.experiment.workdir import claim, saved_config
from dal_jax.model import checkpoint
from dal_jax.training import fit
from dal_jax.training.runs import Grid


def labelled_masks(src, c, ds, grid: Grid, round_index: int) -> np.ndarray:
    """[R, N] bool: the labelled set round ``round_index`` of the run in ``src`` trained on."""
    if round_index == 0:
        return build.initial_masks(c, ds, grid)
    template = {"masks": np.zeros((grid.num_runs, len(ds.pool)), bool)}
    _, _, arrays, _ = checkpoint.restore(src, round_index - 1, arrays=template)
    return np.asarray(arrays["masks"])


def train_plain_from(src, round_index: int, workdir, progress: bool = True) -> dict:
    """Trains plain GG-CNN on round ``round_index``'s data of the run in ``src``; writes
    ``workdir/plain_from.json`` (holding the workdir's lock meanwhile) and returns its dict."""
    with claim(workdir) as path:
        return _train_plain(pathlib.Path(src).expanduser(), round_index, path)


def _train_plain(src: pathlib.Path, round_index: int, workdir: pathlib.Path) -> dict:
    _, meta = checkpoint.restore_meta(src)
    history = {rec["round"]: rec for rec in meta["history"]}
    if round_index not in history:
        raise ValueError(f"{src} has no finished round {round_index}; rounds: {sorted(history)}")
    c = ml_collections.ConfigDict(saved_config(meta["config"]))
    grid = Grid.of(c)
    ds = build.load_data(c)
    # The same training images, validation images, keys and step counts as the joint model
    # had: a warm-started run's model went through every round up to this one, so the plain
    # model does too (training only this round would give it a fraction of the steps).
    trainer = build.trainer(c)
    replayed = list(range(round_index + 1)) if c.warm_start else [round_index]
    states = None
    for r in replayed:
        masks = labelled_masks(src, c, ds, grid, r)
        steps = int(history[r]["steps"])
        states, _, _, _ = fit.train_runs(
            c, trainer, grid, ds.pool, masks, r, states=states, steps=steps
        )
    plain = np.asarray(fit.assess(trainer, states, ds.test)["accuracy"])
    joint = np.asarray(history[round_index]["accuracy_all"])
    out = {
        "source": str(src),
        "round": round_index,
        "labeled": int(masks[0].sum()),
        "rounds_trained": replayed,
        "steps": [int(history[r]["steps"]) for r in replayed],
        "strategy": c.strategy,
        "alpha": list(grid.alphas),
        "joint_accuracy": joint.tolist(),
        "plain_accuracy": plain.tolist(),
        "joint_mean": float(joint.mean()),
        "plain_mean": float(plain.mean()),
    }
    (workdir / "plain_from.json").write_text(json.dumps(out, indent=1))
    print(
        f"round {round_index} data ({out['labeled']} labelled): {c.strategy} joint model "
        f"{100 * out['joint_mean']:.2f}%, plain GG-CNN {100 * out['plain_mean']:.2f}% "
        f"(mean of {len(joint)} runs) -> {workdir / 'plain_from.json'}"
    )
    return out
