"""CS: core-set by k-centre greedy (Sener & Savarese, ICLR 2018).

Embeddings are the GG-CNN encoder's features of this seed's network (``features``: the
flattened bottleneck by default), Euclidean distance. Starting from the labelled set as centres,
repeatedly take the unlabelled point farthest from every centre and make it a centre.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dal_jax.strategies import base


def squared_distances(x):
    """All pairwise squared Euclidean distances x [N, D] -> [N, N] via one Gram matmul (never
    an [N, N, D] array). Centring first keeps the float32 cancellation error small."""
    x = x.astype(jnp.float32)
    x = x - x.mean(axis=0)
    sq = jnp.sum(x * x, axis=1)
    gram = jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)


def k_center_greedy(x, labelled, key, k: int):
    """x [N, D], labelled [N] bool -> [k] int32 picks in order.

    Each pick maximises the distance to its nearest centre (labelled points and earlier picks).
    With no labelled point the first pick is uniformly random from ``key`` (as the reference
    implementation does).
    """
    d2 = squared_distances(x)
    # Distance of every point to its nearest labelled point (inf when nothing is labelled).
    nearest = jnp.min(jnp.where(labelled[None, :], d2, jnp.inf), axis=1)
    g = jax.random.gumbel(key, labelled.shape)

    def body(i, carry):
        nearest, taken, out = carry
        free = ~taken
        score = jnp.where(free, nearest, -jnp.inf)
        idx = jnp.where(
            jnp.isinf(jnp.max(score)),
            jnp.argmax(jnp.where(free, g, -jnp.inf)),
            jnp.argmax(score),
        )
        nearest = jnp.minimum(nearest, d2[idx])
        return nearest, taken.at[idx].set(True), out.at[i].set(idx)

    out = jnp.zeros((k,), jnp.int32)
    return jax.lax.fori_loop(0, k, body, (nearest, labelled, out))[2]


class CoreSet(base.Strategy):
    """k-centre greedy on encoder features.

    features: "f3" (flattened bottleneck, default) or "pooled" (mean+max of it, 16 values).
    """

    name = "cs"

    def __init__(self, features: str = "f3", pool_batch: int = 16):
        super().__init__(pool_batch)
        if features not in base.FEATURES:
            raise ValueError(f"unknown CS features {features!r}; valid: {base.FEATURES}")
        self.features = features

    def embed(self, trainer, params, xb):
        """xb [b, H, W, C] -> [b, D] encoder embedding."""
        return base.encoder_embedding(trainer, params, xb, self.features)

    def choose(self, emb, shared, mask, key, k: int):
        """emb [N, D], mask [N] labelled -> [k] int32."""
        return k_center_greedy(emb, mask, key, k)
