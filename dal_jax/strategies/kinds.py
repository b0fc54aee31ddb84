"""KINDS: a POSITIVE CONTROL that balances the labelled set's object kinds. NOT A STRATEGY.

It reads the pool's ground-truth object kinds (``Pool.kinds``, recorded only by the synthetic
scenes), which no real active-learning strategy may know. It exists to show that a study can
detect selection that helps: on the ``kind_mix="longtail"`` pool (boxes and cylinders ten times
as common as each other kind, the test set uniform), labelling images of the rare kinds should
beat random selection. If a study cannot tell this control from ``rs``, it cannot tell any
strategy from ``rs`` either. Never report it as a method.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax.strategies import base


def balance_picks(kinds, labelled, key, k: int):
    """k greedy picks that balance the objects' kinds (inside jit).

    kinds [N, K] float32 objects of each kind per image; labelled [N] bool; key: random key
    for tie-breaking -> [k] int32 distinct unlabelled indices (at least k must be unlabelled).
    Starting from the labelled set's kind counts c [K], each pick takes the free image with
    the largest sum_k kinds[i, k] / (1 + c_k) (objects of kinds the labelled set has few of),
    then adds its objects to c. Ties (e.g. images with the same kinds) go to a random one.
    """
    counts = jnp.sum(jnp.where(labelled[:, None], kinds, 0.0), axis=0)
    # A random priority decides among the images whose score equals the best: an additive
    # jitter would have to stay below every real score difference, and those shrink as
    # 1 / c^2 when the counts grow.
    priority = jax.random.uniform(key, labelled.shape)

    def body(i, carry):
        counts, taken, out = carry
        score = jnp.where(taken, -jnp.inf, kinds @ (1.0 / (1.0 + counts)))
        best = jnp.max(score)
        # float32 round-off: sums of the same terms in another order may differ in the last bit.
        tied = score >= best - 1e-6 * jnp.maximum(jnp.abs(best), 1e-30)
        idx = jnp.argmax(jnp.where(tied & ~taken, priority, -1.0))
        return counts + kinds[idx], taken.at[idx].set(True), out.at[i].set(idx)

    init = (counts, labelled, jnp.zeros((k,), jnp.int32))
    return jax.lax.fori_loop(0, k, body, init)[2]


class KindBalance(base.Strategy):
    """CONTROL, not a strategy: picks images whose ground-truth object kinds the labelled set
    has few of (see the module docstring; it knows what no real strategy may know).

    Call ``bind_pool(pool)`` with the pool (a `dal_jax.data.pools.Pool` with ``kinds`` [N, K]) before
    ``select``; no network pass, no per-sample score (``with_scores`` gives None, as for rs).
    """

    name = "kinds"
    control = True

    def __init__(self, pool_batch: int = 16):
        super().__init__(pool_batch)
        self._kinds = None  # [N, K] float32 of the bound pool

    def bind_pool(self, pool, dataset: str | None = None) -> None:
        """Stores the pool's object kinds (``pool.kinds`` [N, K]); ValueError when it has none
        (every real dataset). ``dataset`` names the dataset in that error."""
        if getattr(pool, "kinds", None) is None:
            which = f"dataset {dataset!r}" if dataset else "this pool's dataset"
            raise ValueError(
                "the 'kinds' control needs a pool with object kinds (the synthetic scenes); "
                f"{which} has none"
            )
        kinds = np.asarray(pool.kinds, np.float32)
        if kinds.ndim != 2 or len(kinds) != len(pool):
            raise ValueError(f"pool.kinds must be [N = {len(pool)}, K]; got {kinds.shape}")
        self._kinds = jnp.asarray(kinds)

    def shared(self, trainer, inputs):
        """The bound pool's kinds [N, K] float32 (the same for every run)."""
        del trainer
        if self._kinds is None:
            raise ValueError(
                "the 'kinds' control has no pool: call strategy.bind_pool(pool) with the pool "
                "(its object kinds) before select"
            )
        if self._kinds.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"the 'kinds' control was bound to a pool of {self._kinds.shape[0]} images but "
                f"select got {inputs.shape[0]}; bind_pool the pool being selected from"
            )
        return self._kinds

    def choose(self, emb, shared, mask, key, k: int):
        """emb None; shared = kinds [N, K]; mask [N] bool labelled -> [k] int32."""
        del emb
        return balance_picks(shared, mask, key, k)
