"""Can an encoder's features tell the pool's rare object kinds from its common ones?

DAL's discriminator can steer picks towards rare kinds only through features that separate
them. This probe puts the kind question to Gissin's discriminator (`DALGissin.fit`: a
class-weighted MLP on standardised features, stopped on the held-out fifth of the pool that it
never trains on) in place of the labelled question: images holding a rare kind (class 1)
against the rest, on every seed's network of one round of a run. A held-out balanced accuracy
near 0.5 says no discriminator on these features can find the rare kinds; near 1, the features
hold them, and a DAL that misses them fails for another reason.

    python -m experiments.probe --workdir=runs/study/dal --round=1
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dal_jax.experiment import build
from dal_jax.experiment.workdir import saved_config
from dal_jax.model import checkpoint
from dal_jax.strategies import dal
from dal_jax.strategies.dal_gissin import DALGissin, standardise
from dal_jax.study import picks
from dal_jax.training import fit
from dal_jax.training.runs import Grid


def rare_images(kinds) -> np.ndarray:
    """kinds [N, K] object counts per image -> [N] bool: the image holds an object of one of
    the study's rare kinds (`picks.rare_kinds`)."""
    kinds = np.asarray(kinds)
    return (kinds[:, picks.rare_kinds(kinds)] > 0).any(axis=1)


def separability(emb, target, key) -> np.ndarray:
    """emb [S, N, D] features, target [N] bool -> [S] held-out balanced accuracy of Gissin's
    discriminator trained to tell ``target`` images from the rest (`dal.held_out` fifth)."""
    probe = DALGissin()
    t = jnp.asarray(target)

    def one(e, k):
        _, acc = probe.fit(k, standardise(e.astype(jnp.float32)), t, ~t)
        return acc

    keys = jax.random.split(key, emb.shape[0])
    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(emb), keys), np.float64)


def run(workdir, round_index: int | None = None, inputs=dal.INPUTS) -> dict:
    """The probe on round ``round_index`` (default: the latest) of the run in ``workdir``, for
    each discriminator input of ``inputs``. Returns {"round", "labeled", "images", "rare": rare
    images in the pool, "held_out": images scored, "accuracy": {input: [S]}}. ValueError when
    the run's pool records no object kinds."""
    rnd, meta = checkpoint.restore_meta(workdir, round_index)  # the config, before the arrays
    c = ml_collections.ConfigDict(saved_config(meta["config"]))
    ds = build.load_data(c)
    if ds.pool.kinds is None:
        raise ValueError(f"{workdir}: its pool ({c.dataset}) records no object kinds to probe")
    # The run's own plug-ins (DAL's discriminator, ...) so that its saved state restores.
    trainer, grid = build.trainer(c, build.strategy(c)), Grid.of(c)
    template = fit.initial_states(trainer, grid, 0, ds.pool.inputs.shape[1:])
    _, states, _, _ = checkpoint.restore(workdir, rnd, state=template)
    rare = rare_images(ds.pool.kinds)
    out = {
        "round": int(rnd),
        "labeled": next(int(np.max(h["labeled"])) for h in meta["history"] if h["round"] == rnd),
        "images": int(rare.size),
        "rare": int(rare.sum()),
        "held_out": int(dal.held_out(np.arange(rare.size), dal.HOLDOUT).sum()),
        "accuracy": {},
    }
    for which in inputs:
        emb = DALGissin(disc_input=which).pool_embeddings(trainer, states, ds.pool.inputs)
        acc = separability(emb, rare, jax.random.key(0))
        out["accuracy"][which] = acc.tolist()
    return out
