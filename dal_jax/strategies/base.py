"""The common selection interface and the machinery every strategy shares.

A strategy's ``select`` runs as ONE compiled program per (S, N, k, input shape):

1. an optional pool pass (`Strategy.embed`): every pool image goes through this seed's networks
   in fixed-size batches (the last batch is the final ``batch`` images, overlapping the previous
   one, so no padding copy of the pool is made); the seed axis runs vmapped or unrolled as in
   training (`TrainConfig.resolved_seed_form`), and both forms give the same numbers;
2. the per-seed choice (`Strategy.choose`), vmapped over seeds (no convs there).

Masks enter the program as arrays, so rounds that only change the masks reuse the compiled
program; ``Strategy.traces`` counts how many times the program was traced (tests assert it).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax.model import models


def masked_top_k(score, allowed, k: int):
    """The k highest-scoring allowed entries, all distinct.

    score [N] float, allowed [N] bool -> [k] int32. Disallowed entries score -inf and NaN
    scores of allowed entries are replaced by the lowest finite float, so as long as at least k
    entries are allowed (checked on the host before) only allowed entries are returned.
    """
    low = jnp.finfo(jnp.float32).min
    score = jnp.nan_to_num(score.astype(jnp.float32), nan=low, posinf=jnp.inf, neginf=low)
    score = jnp.where(allowed, score, -jnp.inf)
    return jax.lax.top_k(score, k)[1].astype(jnp.int32)


def random_subset(key, allowed, size: int):
    """A uniformly random subset of min(size, allowed.sum()) allowed entries, as a mask [N]."""
    g = jnp.where(allowed, jax.random.gumbel(key, allowed.shape), -jnp.inf)
    rank = jnp.argsort(jnp.argsort(-g))  # 0 = largest Gumbel value
    return allowed & (rank < size)


def _row_source(n: int, b: int):
    """Static batch layout of the pool pass: starts [nb] and, for every row r < n, the index
    into the flattened [nb * b] outputs that holds it."""
    starts = np.minimum(np.arange(0, n, b), n - b)
    rows = np.arange(n)
    batch = np.minimum(rows // b, len(starts) - 1)
    return starts, batch * b + rows - starts[batch]


def pool_map(embed_one, params, inputs, batch: int, form: str):
    """Runs ``embed_one(params_one_seed, xb [b, H, W, C]) -> [b, ...]`` over the whole pool for
    every seed (inside jit).

    params: pytree with leaves [S, ...]; inputs [N, H, W, C] (any float dtype; cast per batch).
    form: "vmap" or "unrolled". Returns [S, N, ...].
    """
    n = inputs.shape[0]
    b = min(batch, n)
    starts, source = _row_source(n, b)
    num_seeds = jax.tree.leaves(params)[0].shape[0]

    def one_batch(start):
        xb = jax.lax.dynamic_slice_in_dim(inputs, start, b).astype(jnp.float32)
        if form == "vmap":
            return jax.vmap(embed_one, in_axes=(0, None))(params, xb)
        outs = [embed_one(jax.tree.map(lambda a, s=s: a[s], params), xb) for s in range(num_seeds)]
        return jnp.stack(outs)

    outs = jax.lax.map(one_batch, jnp.asarray(starts, jnp.int32))  # [nb, S, b, ...]
    outs = jnp.moveaxis(outs, 1, 0)
    outs = outs.reshape(num_seeds, len(starts) * b, *outs.shape[3:])
    return outs[:, source]


def check_select_args(states, inputs, masks, k: int, keys):
    """Host-side checks with clear errors. Returns masks as a numpy bool array [S, N]."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 2:
        raise ValueError(f"masks must be [S, N] bool; got shape {masks.shape}")
    num_seeds, n = masks.shape
    if inputs.shape[0] != n:
        raise ValueError(f"masks have N = {n} but inputs hold {inputs.shape[0]} images")
    step = np.asarray(states.step)
    if step.ndim != 1 or step.shape[0] != num_seeds:
        raise ValueError(f"states must carry a seed axis of {num_seeds}; step has {step.shape}")
    if len(keys) != num_seeds:
        raise ValueError(f"need one key per seed ({num_seeds}); got {len(keys)}")
    if not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive int; got {k!r}")
    free = (~masks).sum(axis=1)
    if (free < k).any():
        s = int(np.argmin(free))
        raise ValueError(
            f"cannot select k = {k}: seed index {s} has only {int(free[s])} unlabelled "
            f"example(s) left (pool of {n})"
        )
    return masks


class Strategy:
    """One active-learning selection strategy.

    ``select(trainer, states, inputs, masks, k, keys) -> [S, k]`` int32 numpy indices: for each
    seed, k distinct pool indices not labelled in ``masks`` [S, N].

    Subclasses override ``embed`` (per-sample quantities from one seed's networks, computed over
    the pool in the compiled pool pass; None for none) and ``choose`` (one seed's pick).
    """

    name: str = "base"
    # True: a control (selection from ground truth no real strategy may know), never counted
    # among the strategies (`dal_jax.strategies.CONTROLS`).
    control: bool = False
    # True: ``choose`` also takes ``past`` [N] int32, the order in which this run's earlier
    # rounds picked each pool image (0, 1, ...; -1 = never picked by the strategy), for a
    # strategy whose state carries over between rounds (graph density's reductions).
    uses_past: bool = False

    def __init__(self, pool_batch: int = 16):
        self.pool_batch = int(pool_batch)
        self.traces = 0  # times the compiled selection was traced (recompile detector)
        self._compiled: dict[Any, Any] = {}

    def __repr__(self):
        return f"{type(self).__name__}({self.name})"

    # -------------------------------------------------------------- overridden by strategies
    def plugins(self, train_config) -> tuple:
        """Extra networks trained alongside GG-CNN (`dal_jax.training.plugin.Plugin`); none by default."""
        return ()

    def uses_pool_pass(self) -> bool:
        return type(self).embed is not Strategy.embed

    def embed(self, trainer, params, xb):
        """One seed's per-sample quantity: params (dict by network), xb [b, H, W, C] -> [b, ...]."""
        raise NotImplementedError

    def choose(self, emb, shared, mask, key, k: int):
        """One seed's pick: emb [N, ...] (or None), shared (see `shared`), mask [N] bool
        labelled, key -> [k] int32 distinct unlabelled indices."""
        raise NotImplementedError

    def shared(self, trainer, inputs):
        """Seed-independent data computed once per call from the pool (a pytree or None)."""
        del trainer, inputs  # none by default

    def score(self, emb):
        """The selection score users see for per-sample embeddings emb [..., N] (None when the
        embedding is not one number per sample, e.g. a feature vector)."""
        return np.asarray(emb, np.float64)

    def cache_key(self, trainer) -> tuple:
        """What the compiled program depends on besides array shapes."""
        return (trainer.config, trainer.model)

    def diagnostics(self, trainer, states, inputs, masks) -> dict:
        """Per-run numbers about the strategy's own networks after a round's training, for
        results.json: name -> [S] array. None by default."""
        del trainer, states, inputs, masks
        return {}

    def pool_embeddings(self, trainer, states, inputs) -> np.ndarray:
        """`embed` of every pool image for every seed, [S, N, ...] (one compiled pass)."""
        key = ("pool", self.cache_key(trainer), trainer.config.resolved_seed_form())
        fn = self._compiled.get(key)
        if fn is None:
            form = key[-1]
            fn = jax.jit(
                lambda params, inputs: pool_map(
                    functools.partial(self.embed, trainer), params, inputs, self.pool_batch, form
                )
            )
            self._compiled[key] = fn
        return np.asarray(fn(states.params, jnp.asarray(inputs)))

    # -------------------------------------------------------------- the shared driver
    def _program(self, trainer):
        key = (self.cache_key(trainer), trainer.config.resolved_seed_form())
        fn = self._compiled.get(key)
        if fn is None:
            form = key[1]

            def run(params, inputs, masks, keys, shared, past, k):
                self.traces += 1
                emb = None
                if self.uses_pool_pass():
                    embed_one = functools.partial(self.embed, trainer)
                    emb = pool_map(embed_one, params, inputs, self.pool_batch, form)
                in_emb = None if emb is None else 0
                choose = functools.partial(self.choose, k=k)
                if self.uses_past:
                    idx = jax.vmap(choose, in_axes=(in_emb, None, 0, 0, 0))(
                        emb, shared, masks, keys, past
                    )
                else:
                    idx = jax.vmap(choose, in_axes=(in_emb, None, 0, 0))(emb, shared, masks, keys)
                # The embedding of the picks is what a scalar-scoring strategy ranked them by.
                picked = None
                if emb is not None and emb.ndim == 2:
                    picked = jnp.take_along_axis(emb, idx, axis=1)
                return idx, picked

            fn = jax.jit(run, static_argnames=("k",))
            self._compiled[key] = fn
        return fn

    def select(
        self, trainer, states, inputs, masks, k: int, keys, with_scores: bool = False, past=None
    ):
        """For every seed, k distinct unlabelled pool indices.

        trainer: the `dal_jax.training.train.Trainer` that trained ``states``; states: TrainState with
        leaves [S, ...]; inputs [N, H, W, C] (the pool; numpy or jax); masks [S, N] bool
        (True = labelled); k: how many to pick; keys [S] typed keys (each seed's selection key).
        Returns a numpy int32 array [S, k]; with ``with_scores``, also the picks' selection
        scores [S, k] (`score`; None for strategies without a per-sample score). Raises
        ValueError if a seed has fewer than k unlabelled examples.
        """
        masks = check_select_args(states, inputs, masks, k, keys)
        inputs = jnp.asarray(inputs)
        if self.uses_pool_pass():
            models.check_input(inputs, trainer.config.in_channels)
        shared = self.shared(trainer, inputs)
        fn = self._program(trainer)
        if past is None:
            past = np.full(masks.shape, -1, np.int32)
        past = jnp.asarray(past, jnp.int32) if self.uses_past else None
        idx, picked = fn(states.params, inputs, jnp.asarray(masks), keys, shared, past, k=int(k))
        if not with_scores:
            return np.asarray(idx)
        return np.asarray(idx), None if picked is None else self.score(picked)


FEATURES = ("f3", "pooled")


def encoder_embedding(trainer, params, xb, which: str):
    """One seed's encoder embedding of a batch: xb [b, H, W, C] -> [b, D].

    "f3": the flattened bottleneck [b, H/12 * W/12 * 8] (the whole latent code GG-CNN decodes
    from); "pooled": its spatial mean and max [b, 16] (the discriminator's input).
    """
    feats = trainer.model.apply({"params": params["ggcnn"]}, xb, method=models.GGCNN.encode)
    if which == "f3":
        return feats.f3.reshape(feats.f3.shape[0], -1)
    if which == "pooled":
        return models.pooled(feats.f3)
    raise ValueError(f"unknown feature choice {which!r}; valid: {FEATURES}")
