"""Experiment configs: one file per dataset holding its protocol's numbers, and default.py.

`complete` turns the default config (``dataset='auto'`` or a dataset name given by a flag) into
the config that runs: that dataset's file with the user's changes on top. `names` lists the
datasets (the files here).
"""

from __future__ import annotations

import importlib
import json
import pathlib

import ml_collections

from experiments.configs import default

_HERE = pathlib.Path(__file__).resolve().parent


def names() -> tuple[str, ...]:
    """The dataset names a user can give (``--dataset``): the experiment files here."""
    files = sorted(p.stem for p in _HERE.glob("*.py"))
    return tuple(n for n in files if n not in ("__init__", "default"))


def get(name: str, variant: str | None = None) -> ml_collections.ConfigDict:
    """The experiment config of a dataset (a file name here, or its TFDS builder name)."""
    for n in names():
        module = importlib.import_module(f"experiments.configs.{n}")
        # The variant is the named dataset's own (another file may not know it).
        if name in (n, module.get_config().dataset):
            return module.get_config(variant)
    raise ValueError(f"unknown dataset {name!r}; valid: auto, {', '.join(names())}")


def complete(config: ml_collections.ConfigDict, data_dir=None) -> ml_collections.ConfigDict:
    """The config that runs: the dataset's experiment file (``dataset='auto'`` resolved:
    Cornell when prepared, else synthetic) with every field the user changed from the default
    config (flags, ``--config.x=...``, a variant) applied on top."""
    c = ml_collections.ConfigDict(config.to_dict())
    name = _auto(data_dir or c.data_dir) if c.dataset == "auto" else c.dataset
    out = get(name)
    base = default.base().to_dict()
    for field, value in c.to_dict().items():
        if field != "dataset" and not _same(value, base.get(field)):
            out[field] = value
    return out


def _same(a, b) -> bool:
    """Equal as JSON (tuples and lists alike)."""
    return json.dumps(a, sort_keys=True, default=list) == json.dumps(
        b, sort_keys=True, default=list
    )


def _auto(data_dir) -> str:
    from dal_jax.data import pools

    if pools.is_prepared("cornell", data_dir):
        print("dataset=auto: using Cornell (prepared in the TFDS data dir).", flush=True)
        return "cornell"
    print(
        "dataset=auto: Cornell is not prepared, so this runs on the built-in synthetic grasp "
        "set. To use Cornell: python -m datasets.prepare --dataset=cornell --manual_dir=DIR "
        "(see BUILD.md).",
        flush=True,
    )
    return "synthetic"
