"""The six selection strategies behind one interface (`base.Strategy`), and the controls.

``get(name, **config)`` builds one: "rs" random, "gd" graph density, "cs" core-set (k-centre
greedy), "ll" learning loss, "vaal" VAAL, "dal" the paper's discriminative active learning.
``strategy.select(trainer, states, inputs, masks, k, keys)`` -> [S, k] indices per seed.

``NAMES`` holds the paper's six. ``VARIANTS`` are other forms of DAL, each by name: the
joint form with another discriminator input, optimiser or step count (``dal_flat``,
``dal_multi``, ``dal_adam``, ``dal_steps5``; `dal.DAL` with other defaults) and Gissin &
Shalev-Shwartz's form (``dal_gissin``, `dal_gissin.DALGissin`). ``CONTROLS`` are selections that use ground truth no
real strategy may know, to check that a study can detect selection that helps: "kinds"
(`kinds.KindBalance`, balances the labelled set's object kinds; needs ``bind_pool(pool)``
with a pool that records kinds). ``ALL = NAMES + VARIANTS + CONTROLS``; ``is_control(name)``.
"""

from __future__ import annotations

import inspect

from dal_jax.strategies.base import Strategy
from dal_jax.strategies.cs import CoreSet
from dal_jax.strategies.dal import DAL
from dal_jax.strategies.dal_gissin import DALGissin
from dal_jax.strategies.gd import GraphDensity
from dal_jax.strategies.kinds import KindBalance
from dal_jax.strategies.ll import LearningLoss
from dal_jax.strategies.rs import Random
from dal_jax.strategies.vaal import VAAL, VAALPlugin

# The registry, in the paper's order: a new strategy is a `Strategy` subclass added here (its
# ``name`` is its registry name; ``control = True`` marks a control).
_CLASSES = {
    cls.name: cls for cls in (Random, GraphDensity, CoreSet, LearningLoss, VAAL, DAL, KindBalance)
}
NAMES = tuple(n for n, cls in _CLASSES.items() if not cls.control)
CONTROLS = tuple(n for n, cls in _CLASSES.items() if cls.control)
# DAL's variants: name -> (class, the defaults that differ from the class's).
_VARIANTS = {
    "dal_flat": (DAL, {"disc_input": "flat"}),
    "dal_multi": (DAL, {"disc_input": "multi"}),
    "dal_adam": (DAL, {"disc_optimizer": "adam", "disc_lr": 1e-3}),
    "dal_steps5": (DAL, {"disc_steps": 5}),
    "dal_gissin": (DALGissin, {}),
}
VARIANTS = tuple(_VARIANTS)
ALL = NAMES + VARIANTS + CONTROLS


def is_control(name: str) -> bool:
    """Whether ``name`` is a control (ground-truth selection, never a real strategy)."""
    return str(name).lower() in CONTROLS


def valid_names() -> str:
    """Every valid name for messages, the controls marked: "rs, ..., dal, kinds (control)"."""
    return ", ".join([*NAMES, *VARIANTS, *(f"{n} (control)" for n in CONTROLS)])


def _class(name: str):
    """-> (class, the variant's own defaults)."""
    name = str(name).lower()
    if name in _VARIANTS:
        return _VARIANTS[name]
    cls = _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown strategy {name!r}; valid names: {valid_names()}")
    return cls, {}


def get(name: str, **config) -> Strategy:
    """The strategy or control called ``name`` (one of ALL), built with its config fields.

    Raises ValueError for an unknown name (listing the valid ones) or an unknown field.
    """
    cls, own = _class(name)
    try:
        strategy = cls(**{**own, **config})
    except TypeError as e:
        raise ValueError(f"bad config for strategy {name!r}: {e}") from None
    strategy.name = str(name).lower()
    return strategy


def defaults(name: str) -> dict:
    """The constructor fields of a strategy or control and their defaults (its config section).
    ValueError for an unknown name."""
    cls, own = _class(name)
    # VAAL passes its fields on to its plug-in.
    sources = (cls, VAALPlugin) if cls is VAAL else (cls,)
    out = {}
    for src in sources:
        for p in inspect.signature(src).parameters.values():
            if p.default is not inspect.Parameter.empty:
                out[p.name] = p.default
    return {**out, **own}


__all__ = [
    "ALL",
    "CONTROLS",
    "DAL",
    "NAMES",
    "VAAL",
    "VARIANTS",
    "CoreSet",
    "DALGissin",
    "GraphDensity",
    "KindBalance",
    "LearningLoss",
    "Random",
    "Strategy",
    "defaults",
    "get",
    "is_control",
    "valid_names",
]
