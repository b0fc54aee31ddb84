"""The six selection strategies behind one interface (`base.Strategy`).

``get(name, **config)`` builds one: "rs" random, "gd" graph density, "cs" core-set (k-centre
greedy), "ll" learning loss, "vaal" VAAL, "dal" the paper's discriminative active learning.
``strategy.select(trainer, states, inputs, masks, k, keys)`` -> [S, k] indices per seed.
"""

from __future__ import annotations

import inspect

from dal_jax.strategies.base import Strategy
from dal_jax.strategies.cs import CoreSet
from dal_jax.strategies.dal import DAL
from dal_jax.strategies.gd import GraphDensity
from dal_jax.strategies.ll import LearningLoss
from dal_jax.strategies.rs import Random
from dal_jax.strategies.vaal import VAAL, VAALPlugin

NAMES = ("rs", "gd", "cs", "ll", "vaal", "dal")
_CLASSES = {
    "rs": Random,
    "gd": GraphDensity,
    "cs": CoreSet,
    "ll": LearningLoss,
    "vaal": VAAL,
    "dal": DAL,
}


def get(name: str, **config) -> Strategy:
    """The strategy called ``name`` (one of NAMES), built with its config fields.

    Raises ValueError for an unknown name (listing the valid ones) or an unknown field.
    """
    cls = _CLASSES.get(str(name).lower())
    if cls is None:
        raise ValueError(f"unknown strategy {name!r}; valid names: {', '.join(NAMES)}")
    try:
        return cls(**config)
    except TypeError as e:
        raise ValueError(f"bad config for strategy {name!r}: {e}") from None


def defaults(name: str) -> dict:
    """The constructor fields of a strategy and their defaults (its config section)."""
    cls = _CLASSES[name]
    # VAAL passes its fields on to its plug-in.
    sources = (cls, VAALPlugin) if cls is VAAL else (cls,)
    out = {}
    for src in sources:
        for p in inspect.signature(src).parameters.values():
            if p.default is not inspect.Parameter.empty:
                out[p.name] = p.default
    return out


__all__ = [
    "DAL",
    "NAMES",
    "VAAL",
    "CoreSet",
    "GraphDensity",
    "LearningLoss",
    "Random",
    "Strategy",
    "defaults",
    "get",
]
