"""The paper's discussion experiment: plain GG-CNN trained on the data a DAL run selected.

``train_plain_from(DAL_WORKDIR, round)`` rebuilds the labelled set that round ``round`` of the
DAL run trained on, trains plain GG-CNN (no discriminator, alpha unused) on it with the same
settings and keys, and reports both test accuracies (paper, Cornell round 6: DAL joint model
80.48 %, plain GG-CNN 77.45 %).
"""

from __future__ import annotations

import json
import pathlib

import jax.numpy as jnp
import ml_collections
import numpy as np

from dal_jax import checkpoint, fit, loop, train
from dal_jax.workdir import claim


def labelled_masks(src, c, ds, round_index: int, num_alphas: int) -> np.ndarray:
    """[R, N] bool: the labelled set round ``round_index`` of the run in ``src`` trained on."""
    if round_index == 0:
        return loop.initial_masks(c, ds, num_alphas)
    template = {"masks": np.zeros((num_alphas * c.seeds, len(ds.pool)), bool)}
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
    c = ml_collections.ConfigDict(meta["config"])
    alphas = loop.parse_alphas(c.alpha)
    ds = loop.load_data(c)
    masks = labelled_masks(src, c, ds, round_index, len(alphas))
    trainer = train.Trainer(loop.train_config(c, uses_disc=False))
    states = trainer.init_states(
        loop.run_keys(c, len(alphas), 0, round_index), ds.pool.inputs.shape[1:]
    )
    # The same training images, validation images and step count as the joint model had.
    rngs = loop.run_rngs(c, len(alphas), 3, round_index)
    train_masks, val = fit.carve_validation(c, masks, ds.pool.gt_rects, ds.pool.gt_mask, rngs)
    states, _ = fit.fit(
        trainer,
        states,
        jnp.asarray(ds.pool.inputs),
        jnp.asarray(ds.pool.targets),
        train_masks,
        {"alpha": jnp.zeros(masks.shape[0])},
        loop.run_keys(c, len(alphas), 1, round_index),
        fit.num_steps(c, int(masks[0].sum())),
        val,
    )
    plain = np.asarray(fit.assess(trainer, states, ds.test)["accuracy"])
    joint = np.asarray(history[round_index]["accuracy_all"])
    out = {
        "source": str(src),
        "round": round_index,
        "labeled": int(masks[0].sum()),
        "strategy": c.strategy,
        "alpha": alphas,
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
