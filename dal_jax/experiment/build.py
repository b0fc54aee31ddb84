"""From a config to what an experiment runs on: the checked config, the data, the run grid and
the trainer.

Configs are complete when they reach the library: the experiment files in
``experiments/configs/`` hold every protocol number (pool sizes, budgets, rounds, image size,
steps), and the command-line tools fill a config left with ``dataset='auto'`` or None fields
from those files (`experiments.configs.complete`) before calling in here.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from dal_jax import strategies
from dal_jax.data import pools
from dal_jax.training import train
from dal_jax.training.runs import Grid, parse_alphas

ORACLES = ("gt", "human")
# Fields that may stay None: "no initial count" means the dataset's recorded initial set.
OPTIONAL = ("initial", "dataset_config", "data_dir")


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks names and values; returns a new, locked config whose ``alpha`` is the tuple of
    DAL weights (parsed here, once, from the text of ``--alpha`` / ``--config.alpha``).

    ValueError (one line, naming the field) for an unknown strategy, oracle or dataset, a field
    left unset, or a value out of range.
    """
    c = ml_collections.ConfigDict(config.to_dict())
    check_names(c)
    unset = [k for k, v in c.items() if v is None and k not in OPTIONAL]
    if unset or c.dataset == "auto":
        raise ValueError(
            f"config for dataset {c.dataset!r} leaves {', '.join(unset) or 'the dataset'} unset: "
            "start from a dataset's experiment file (experiments/configs/<dataset>.py) or "
            "complete it with experiments.configs.complete"
        )
    pools.check_name(c.dataset)
    if c.strategy not in c.strategies:
        raise ValueError(f"the config has no settings section strategies.{c.strategy}")
    # A run records only its own strategy's settings (another's do not affect it).
    strategy = {c.strategy: c.strategies[c.strategy].to_dict()}
    c = ml_collections.ConfigDict(
        {**c.to_dict(), "strategies": strategy, "alpha": parse_alphas(c.alpha)}
    )
    grid = Grid.of(c)
    if c.seeds < 1 or c.rounds < 1 or c.budget < 1 or c.steps_per_round < 1:
        raise ValueError("seeds, rounds, budget and steps_per_round must all be >= 1")
    if c.image_size % 12:
        raise ValueError(f"image_size must be a multiple of 12; got {c.image_size}")
    if c.dataset == "frames" and c.oracle != "human":
        raise ValueError("a folder of frames is labelled by you: use --oracle=human")
    if c.oracle == "human" and grid.num_runs != 1:
        raise ValueError("--oracle=human labels for one run: use --seeds=1 and a single alpha")
    c.lock()
    return c


def check_names(c) -> None:
    """ValueError listing the valid names for an unknown strategy or oracle (checked before
    anything slow, such as looking for a prepared dataset)."""
    if c.strategy not in strategies.ALL:
        raise ValueError(f"unknown strategy {c.strategy!r}; valid: {strategies.valid_names()}")
    if c.oracle not in ORACLES:
        raise ValueError(f"unknown oracle {c.oracle!r}; valid: {', '.join(ORACLES)}")


def load_data(c) -> pools.Dataset:
    """The dataset a resolved config names, at ``c.image_size``."""
    import tensorflow_datasets as tfds

    tfds.display_progress_bar(False)  # the tools have their own progress bars
    kwargs = dict(c.dataset_kwargs)
    if c.dataset == "synthetic_grasps":
        kwargs = dict(c.synthetic)
    size = None if kwargs.get("crop_size") == c.image_size else c.image_size
    ds = pools.load_dataset(
        c.dataset, c.data_dir, size=size, channels=c.channels, config=c.dataset_config, **kwargs
    )
    # A user's frames have no test split: the loop draws the user's hold-out (dal_jax.experiment.room).
    if len(ds.pool) == 0 or (len(ds.test) == 0 and c.dataset != "frames"):
        raise ValueError(f"{c.dataset}: empty pool ({len(ds.pool)}) or test split ({len(ds.test)})")
    if ds.pool.inputs.shape[1] != c.image_size:
        raise ValueError(f"{c.dataset} loaded at {ds.pool.inputs.shape[1]} px, not {c.image_size}")
    return ds


def initial_count(c, ds: pools.Dataset) -> int:
    """Labelled images per run in round 0."""
    return c.initial if c.initial is not None else len(ds.initial or ())


def check_budget(c, ds: pools.Dataset) -> None:
    """Refuses (ValueError) a budget the pool cannot supply: the initial labelled set plus
    ``budget`` for every round but the last must fit in the pool."""
    initial = initial_count(c, ds)
    need = initial + c.budget * (c.rounds - 1)
    if need > len(ds.pool):
        raise ValueError(
            f"--budget={c.budget} x {c.rounds - 1} selection rounds (--rounds={c.rounds}) + "
            f"{initial} initial = {need} labelled images, but the {c.dataset} pool holds "
            f"{len(ds.pool)}; lower --budget or --rounds"
        )


def initial_masks(c, ds: pools.Dataset, grid: Grid):
    """[R, N] bool: round 0's labelled set of every run."""
    try:
        return grid.initial_masks(len(ds.pool), c.initial, ds.initial)
    except ValueError as e:
        raise ValueError(f"{c.dataset}: {e}") from None


def train_config(c) -> train.TrainConfig:
    """The static training settings of a resolved config."""
    return train.TrainConfig(
        in_channels=in_channels(c),
        batch_size=c.batch_size,
        lr=c.lr,
        seed_form=c.seed_form,
        chunk_steps=c.chunk_steps,
        input_scale=c.input_scale,
        init=c.init,
        pos_weight=c.pos_weight,
        weight_heads=c.weight_heads,
        warmup=c.warmup,
        lr_final=c.lr_final,
        augment=c.augment,
        zoom_min=c.zoom_min,
    )


def in_channels(c) -> int:
    return 4 if c.channels == "rgbd" else 1


def strategy(c) -> strategies.Strategy:
    """The strategy a resolved config names, with its own config section."""
    return strategies.get(c.strategy, **c.strategies[c.strategy].to_dict())


def trainer(c, strategy=None, mesh=None) -> train.Trainer:
    """A trainer for the config's recipe with a strategy's plug-ins (none: plain GG-CNN)."""
    cfg = train_config(c)
    return train.Trainer(cfg, strategy.plugins(cfg) if strategy is not None else (), mesh=mesh)


def checkpoint_meta(c, **extra) -> dict:
    """What every checkpoint of a run records beside its arrays (inference reads the model's
    input size, channels and scaling from it)."""
    return {
        "config": c.to_dict(),
        "dataset": c.dataset,
        "image_size": c.image_size,
        "in_channels": in_channels(c),
        "input_scale": float(c.input_scale),
        "seeds": c.seeds,
        **extra,
    }


def for_trial_split(c, s: int) -> ml_collections.ConfigDict:
    """The one-seed experiment of trial ``s`` when every trial draws its own split
    (``split_from_seed``): seed ``c.seed + s`` both for the trial and for the dataset's split,
    subset, noise or scenes."""
    sub = ml_collections.ConfigDict(c.to_dict())
    seed = c.seed + s
    sub.update(seeds=1, seed=seed, split_from_seed=False)
    if c.dataset == "synthetic_grasps":
        sub.synthetic.seed = seed
    else:
        sub.dataset_kwargs.seed = seed
        if c.dataset == "cornell_noisy":
            sub.dataset_kwargs.noise_seed = seed
    return resolve(sub)


def load_prior(c, trainer: train.Trainer, image_shape) -> dict | None:
    """The GG-CNN parameters of ``c.init_from`` (a run's workdir, an ``experiments.train``
    workdir or converted PyTorch weights), or None without one. ValueError naming the
    difference when that model takes other inputs (channels, input scaling) or has another
    architecture (a parameter of another shape, or missing)."""
    if not c.get("init_from"):
        return None
    from dal_jax.model import checkpoint

    params, meta, _ = checkpoint.load_ggcnn(c.init_from)
    where = f"--init_from={c.init_from}"
    for field, ours in (("in_channels", in_channels(c)), ("input_scale", float(c.input_scale))):
        theirs = meta.get(field, 1 if field == "in_channels" else 1.0)
        if theirs != ours:
            raise ValueError(
                f"{where}: its model takes {field} {theirs!r}, this config {ours!r}; "
                f"set --config.{'channels' if field == 'in_channels' else field} to match"
            )
    want = trainer.init_state(jax.random.key(0), image_shape).params["ggcnn"]
    got = jax.tree_util.tree_flatten_with_path(params)[0]
    shapes = {jax.tree_util.keystr(k): np.shape(v) for k, v in got}
    for k, v in jax.tree_util.tree_flatten_with_path(want)[0]:
        name = jax.tree_util.keystr(k)
        if shapes.get(name) != np.shape(v):
            raise ValueError(
                f"{where}: another architecture: parameter {name} is {shapes.get(name)} there, "
                f"{np.shape(v)} here"
            )
    return params
