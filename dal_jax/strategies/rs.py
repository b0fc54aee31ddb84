"""RS: uniform random selection from the seed's own key."""

from __future__ import annotations

import jax

from dal_jax.strategies import base


class Random(base.Strategy):
    """k unlabelled indices uniformly at random without replacement (Gumbel top-k)."""

    name = "rs"

    def choose(self, emb, shared, mask, key, k: int):
        """mask [N] bool labelled -> [k] int32."""
        return base.masked_top_k(jax.random.gumbel(key, mask.shape), ~mask, k)
