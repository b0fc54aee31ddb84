"""The run grid: which runs one compiled program trains, and the randomness of each.

A *run* is one independent active-learning trial. An experiment trains R = G * S runs together,
where S is the number of seeds and G the number of groups - the alphas of an alpha study, or the
held-out objects of a leave-one-object-out evaluation. Runs are group-major: run r belongs to
group r // S and seed r % S. This module is the one place that layout is written.

Every run's randomness derives from ``base_seed + seed index``, a purpose and the round number
only, so

* the initial labelled pool of a seed is the same for every strategy and alpha (paired,
  comparable trials), and
* an interrupted experiment resumed from its last checkpoint ends with the same numbers as an
  uninterrupted one.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax.training.plugin import HParams

# What a key is for: network initialisation, training batches, selection, validation split.
INIT, TRAIN, SELECT, VALIDATION = 0, 1, 2, 3


def parse_alphas(alpha) -> tuple[float, ...]:
    """'0,0.05,0.1' / 0.1 / [0.1, 0.5] -> tuple of floats; ValueError naming --alpha for a value
    that is not a finite number >= 0, or one given twice."""
    items = alpha.split(",") if isinstance(alpha, str) else alpha
    items = [items] if isinstance(items, (int, float)) else items
    try:
        vals = [float(a) for a in items if not isinstance(a, str) or a.strip()]
    except (TypeError, ValueError):
        vals = []
    if not vals or any(not np.isfinite(a) or a < 0 for a in vals):
        raise ValueError(
            f"--alpha={alpha}: alpha must be one or more finite values >= 0, comma-separated "
            "(e.g. --alpha=0.1 or --alpha=0,0.05,0.1)"
        )
    twice = sorted({a for a in vals if vals.count(a) > 1})
    if twice:
        raise ValueError(
            f"--alpha={alpha}: {', '.join(f'{a:g}' for a in twice)} given more than once; "
            "give each alpha once"
        )
    return tuple(vals)


@dataclasses.dataclass(frozen=True)
class Grid:
    """R = len(alphas) * seeds runs, group-major (see the module docstring).

    alphas: one DAL weight per group (G entries; a leave-one-out evaluation has one group per
    held-out object, all alpha 0); seeds: S; base_seed: seed index s uses base_seed + s.
    """

    alphas: tuple[float, ...]
    seeds: int
    base_seed: int = 0

    @classmethod
    def of(cls, c) -> Grid:
        """The grid of a resolved config (`dal_jax.experiment.build.resolve`), whose ``alpha``
        holds the DAL weights as numbers (a saved config's as a JSON list)."""
        if isinstance(c.alpha, str):
            raise TypeError(
                f"Grid.of takes a resolved config; its alpha is still the text {c.alpha!r} "
                "(build.resolve parses it)"
            )
        return cls(tuple(float(a) for a in c.alpha), int(c.seeds), int(c.seed))

    @property
    def groups(self) -> int:
        return len(self.alphas)

    @property
    def num_runs(self) -> int:
        return self.groups * self.seeds

    def group(self, a: int) -> slice:
        """The runs of group ``a``: a slice of the run axis."""
        return slice(a * self.seeds, (a + 1) * self.seeds)

    def describe(self, r: int) -> str:
        """How a user names run r: its seed, and its alpha when there are several."""
        a, s = divmod(r, self.seeds)
        return f"seed {s}" if self.groups == 1 else f"alpha {self.alphas[a]:g}, seed {s}"

    def hparams(self) -> HParams:
        """The batched hyperparameters of every run: alpha [R]."""
        return HParams(alpha=jnp.asarray(np.repeat(self.alphas, self.seeds), jnp.float32))

    def seed_key(self, s: int):
        return jax.random.key(self.base_seed + s)

    def keys(self, purpose: int, round_index: int):
        """[R] keys for one purpose (INIT, TRAIN, SELECT, VALIDATION) of one round; a seed's key
        does not depend on its group."""
        per_seed = [
            jax.random.fold_in(jax.random.fold_in(self.seed_key(s), purpose), round_index)
            for s in range(self.seeds)
        ]
        return jnp.stack(per_seed * self.groups)

    def rngs(self, purpose: int, round_index: int) -> list:
        """One NumPy generator per run from `keys` (host-side draws)."""
        keys = self.keys(purpose, round_index)
        return [np.random.default_rng(np.asarray(jax.random.key_data(k))) for k in keys]

    def initial_masks(self, pool_size: int, initial: int | None, recorded=None) -> np.ndarray:
        """[R, N] bool: ``initial`` random pool examples per seed (the same for every group), or,
        when ``initial`` is None, the dataset's ``recorded`` initial set (Jacquard)."""
        masks = np.zeros((self.seeds, pool_size), bool)
        if initial is None:
            if recorded is None:
                raise ValueError("the dataset records no initial labelled set: set --initial")
            masks[:, recorded] = True
        elif not 0 < initial <= pool_size:
            raise ValueError(f"initial labelled count {initial} must be in 1..{pool_size}")
        else:
            for s in range(self.seeds):
                rng = np.random.default_rng(np.asarray(jax.random.key_data(self.seed_key(s))))
                masks[s, rng.choice(pool_size, initial, replace=False)] = True
        return np.tile(masks, (self.groups, 1))
