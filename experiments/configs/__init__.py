"""Experiment configs: one file per dataset holding its protocol's numbers, and default.py.

`complete` turns the default config (``dataset='auto'`` or a dataset name given by a flag, with
the protocol fields None) into the config that runs, taking the unset fields from that
dataset's file. `names` lists the datasets (the files here).
"""

from __future__ import annotations

import importlib
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
        c = module.get_config(variant)
        if name in (n, c.dataset):
            return c
    raise ValueError(f"unknown dataset {name!r}; valid: auto, {', '.join(names())}")


def complete(config: ml_collections.ConfigDict, data_dir=None) -> ml_collections.ConfigDict:
    """``config`` with ``dataset='auto'`` resolved (Cornell when prepared, else synthetic) and
    every protocol field left None taken from the dataset's experiment file."""
    c = ml_collections.ConfigDict(config.to_dict())
    name = _auto(data_dir or c.data_dir) if c.dataset == "auto" else c.dataset
    protocol = get(name)
    c.dataset = protocol.dataset
    for field in default.PROTOCOL_FIELDS:
        if c[field] is None:
            c[field] = protocol[field]
    return c


def _auto(data_dir) -> str:
    from dal_jax import data

    if data.is_prepared("cornell", data_dir):
        print("dataset=auto: using Cornell (prepared in the TFDS data dir).", flush=True)
        return "cornell"
    print(
        "dataset=auto: Cornell is not prepared, so this runs on the built-in synthetic grasp "
        "set. To use Cornell: python -m datasets.prepare --dataset=cornell --manual_dir=DIR "
        "(see BUILD.md).",
        flush=True,
    )
    return "synthetic"
