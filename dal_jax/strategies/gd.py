"""GD: graph density (Ebert et al. 2012, as in google/active-learning).

Graph: k-NN (k = 10, Manhattan distance) on flattened inputs standardised per feature over the
pool (zero mean, unit variance; constant features keep scale 1), made symmetric; every edge
weighs exp(-gamma * d) with gamma = 1 / feature_dim. Density of a node = mean weight of its
edges. Selection: repeatedly take the densest unlabelled node and subtract its density from its
neighbours' densities.

As in the reference sampler, which lives for a whole trial, the densities are computed once
and the reductions of the nodes picked in earlier rounds persist: each round starts from the
densities left by the previous rounds' picks (replayed in their order from ``past``, so the
state needs no storage of its own and a resumed run selects the same images).

``features="inputs"`` (the reference) builds the graph on the raw pool, once per pool: it does not
depend on the seed, and it is cached while the same pool object is passed again (rounds of one
run). ``features="f3"`` / ``"pooled"`` build it per seed on that seed's encoder features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dal_jax.strategies import base

# Bound on the elements of one [rows, N, columns] block of the Manhattan distance computation.
_BLOCK_ELEMENTS = 1 << 24


def manhattan_standardised(x):
    """Manhattan distances between the rows of x [N, D] after per-column standardisation.

    -> [N, N] float32. Computed over column chunks (one [N, N, c] block at a time, c chosen so
    the block has at most 2^24 elements), so memory never approaches N * N * D; x may be any
    float dtype and is never copied whole in float32.
    """
    n, dim = x.shape
    mean = jnp.mean(x, axis=0, dtype=jnp.float32)
    var = jnp.mean(jnp.square(x.astype(jnp.float32) - mean), axis=0)
    inv_sd = jnp.where(var > 0, jax.lax.rsqrt(jnp.where(var > 0, var, 1.0)), 1.0)
    c = int(max(1, min(dim, 256, _BLOCK_ELEMENTS // (n * n))))
    num_chunks = -(-dim // c)
    last_start = dim - c

    def body(i, acc):
        # The last chunk is clamped to end at D; columns it shares with the previous chunk get
        # weight 0 so every column counts once.
        start = jnp.minimum(i * c, last_start)
        cols = start + jnp.arange(c)
        w = jax.lax.dynamic_slice_in_dim(inv_sd, start, c) * (cols >= i * c)
        xc = jax.lax.dynamic_slice_in_dim(x, start, c, axis=1).astype(jnp.float32) * w
        return acc + jnp.sum(jnp.abs(xc[:, None, :] - xc[None, :, :]), axis=-1)

    return jax.lax.fori_loop(0, num_chunks, body, jnp.zeros((n, n), jnp.float32))


def knn_graph(dist, n_neighbors: int, gamma):
    """Symmetric k-NN graph from distances [N, N] -> (weights [N, N] float32, adjacency [N, N]
    bool). No self loops; an edge exists if either end is among the other's k nearest."""
    n = dist.shape[0]
    kk = min(n_neighbors, n - 1)
    far = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, dist)
    _, nbr = jax.lax.top_k(-far, kk)  # [N, kk]
    adj = jnp.zeros((n, n), bool).at[jnp.arange(n)[:, None], nbr].set(True)
    adj = adj | adj.T
    weights = jnp.where(adj, jnp.exp(-gamma * dist), 0.0)
    return weights, adj


def graph_from_features(x, n_neighbors: int):
    """x [N, D] (flattened) -> the density graph (weights, adjacency), gamma = 1 / D."""
    return knn_graph(manhattan_standardised(x), n_neighbors, 1.0 / x.shape[1])


def greedy_density(weights, adj, labelled, k: int, past=None):
    """weights / adj [N, N], labelled [N] bool -> [k] int32 picks in order.

    past [N] int32: the order in which earlier rounds picked each node (-1: never); their
    density reductions are applied first, in that order.
    """
    density = weights.sum(axis=1) / jnp.maximum(adj.sum(axis=1), 1)
    if past is not None:
        density = replay_reductions(density, adj, past)

    def body(i, carry):
        density, taken, out = carry
        idx = jnp.argmax(jnp.where(taken, -jnp.inf, density))
        density = jnp.where(adj[idx], density - density[idx], density)
        return density, taken.at[idx].set(True), out.at[i].set(idx)

    out = jnp.zeros((k,), jnp.int32)
    return jax.lax.fori_loop(0, k, body, (density, labelled, out))[2]


def replay_reductions(density, adj, past):
    """The densities [N] after the picks recorded in ``past`` [N] (their order; -1: not
    picked) each subtracted their density from their neighbours', in order."""
    never = jnp.iinfo(jnp.int32).max
    order = jnp.argsort(jnp.where(past >= 0, past, never))

    def body(i, density):
        idx = order[i]
        return jnp.where(adj[idx], density - density[idx], density)

    return jax.lax.fori_loop(0, jnp.sum(past >= 0), body, density)


class GraphDensity(base.Strategy):
    """Graph-density selection.

    features: "inputs" (flattened standardised pool images, the reference), "f3" or "pooled"
    (this seed's encoder features). n_neighbors: k of the k-NN graph (10).
    """

    name = "gd"
    uses_past = True

    def __init__(self, features: str = "inputs", n_neighbors: int = 10, pool_batch: int = 16):
        super().__init__(pool_batch)
        valid = ("inputs", *base.FEATURES)
        if features not in valid:
            raise ValueError(f"unknown GD features {features!r}; valid: {valid}")
        self.features = features
        self.n_neighbors = int(n_neighbors)
        self._graph_fn = jax.jit(
            lambda x: graph_from_features(x.reshape(x.shape[0], -1), self.n_neighbors)
        )
        self._graph_cache = None  # (pool object, graph)

    def uses_pool_pass(self) -> bool:
        return self.features != "inputs"

    def embed(self, trainer, params, xb):
        """xb [b, H, W, C] -> [b, D] encoder embedding (features != "inputs")."""
        return base.encoder_embedding(trainer, params, xb, self.features)

    def shared(self, trainer, inputs):
        """The seed-independent graph on the raw pool (features == "inputs"), else None."""
        if self.features != "inputs":
            return None
        if self._graph_cache is not None and self._graph_cache[0] is inputs:
            return self._graph_cache[1]
        graph = self._graph_fn(inputs)
        self._graph_cache = (inputs, graph)
        return graph

    def graph(self, inputs):
        """The raw-input graph (weights [N, N], adjacency [N, N]) for a pool [N, H, W, C]."""
        return self._graph_fn(jnp.asarray(inputs))

    def choose(self, emb, shared, mask, key, past, k: int):
        """emb [N, D] (encoder features) or shared = graph; mask [N] labelled; past [N] the
        order of earlier rounds' picks -> [k] int32."""
        weights, adj = shared if emb is None else graph_from_features(emb, self.n_neighbors)
        return greedy_density(weights, adj, mask, k, past)
