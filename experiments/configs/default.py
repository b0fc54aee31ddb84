"""Default config: the README's main job (DAL on Cornell if prepared, else synthetic).

``dataset='auto'`` and the protocol fields left as None are filled when the job starts from the
dataset's own experiment file (``experiments/configs/<dataset>.py``, which holds the paper's
numbers; `experiments.configs.complete`). Variants: ``default.py:smoke`` is the tiny run the
tests use (< 1 minute; synthetic unless ``--dataset`` names another).
"""

import ml_collections

from dal_jax import strategies
from dal_jax.training.train import RECIPE, TrainConfig

# The fields a dataset's experiment file sets: the paper's protocol for that dataset.
PROTOCOL_FIELDS = (
    "initial",
    "budget",
    "rounds",
    "image_size",
    "steps_per_round",
    "steps_per_label",
    "lr",
    "val_fraction",
    "val_min",
    "warm_start",
)


# The built-in synthetic scenes' defaults (datasets/synthetic_grasps: SyntheticConfig).
SYNTHETIC = {
    "num_scenes": 300,
    "crop_size": 96,
    "seed": 0,
    "kind_mix": "uniform",
    "min_objects": 3,
    "max_objects": 6,
}


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    if variant == "smoke":
        # Synthetic unless --dataset names another: the other protocol fields come from the
        # dataset's experiment file.
        c = smoke(base())
        c.dataset = "synthetic"
        return c
    if variant:
        raise ValueError(f"unknown variant {variant!r}; valid: smoke")
    return base()


def base() -> ml_collections.ConfigDict:
    """Every field, with the protocol fields unset (None)."""
    c = ml_collections.ConfigDict()
    c.dataset = "auto"  # auto | a file name in experiments/configs/ (cornell, synthetic, ...)
    c.dataset_config = ml_collections.FieldReference(None, field_type=str)  # builder config
    c.dataset_kwargs = ml_collections.ConfigDict()  # builder config field overrides
    # The built-in synthetic set (used when the dataset is, or resolves to, synthetic).
    c.synthetic = ml_collections.ConfigDict(SYNTHETIC)
    c.data_dir = ml_collections.FieldReference(None, field_type=str)  # default: TFDS default
    c.image_size = ml_collections.FieldReference(None, field_type=int)  # None: protocol
    c.channels = "depth"  # depth | rgbd

    c.strategy = "dal"  # one of dal_jax.strategies.NAMES (or a control of CONTROLS)
    # Each strategy's own settings (e.g. --config.strategies.dal.disc_lr=0.02); a run records
    # only its own strategy's section.
    c.strategies = ml_collections.ConfigDict({n: strategies.defaults(n) for n in strategies.ALL})
    c.seeds = 10
    c.seed = 0  # seed s of a run is seed + s: same initial pool for every strategy
    c.alpha = "0.1"  # DAL weight; a comma-separated list runs a batched grid
    c.rounds = ml_collections.FieldReference(None, field_type=int)  # K
    c.budget = ml_collections.FieldReference(None, field_type=int)  # k per round
    c.initial = ml_collections.FieldReference(None, field_type=int)  # initial labelled
    c.expected_accuracy = 1.0  # e: stop when the mean test accuracy reaches it
    c.oracle = "gt"  # gt | human
    # Keep the networks between rounds instead of re-initialising them (None: protocol; True
    # for synthetic, False for the paper's datasets).
    c.warm_start = ml_collections.FieldReference(None, field_type=bool)

    c.steps_per_round = ml_collections.FieldReference(None, field_type=int)
    c.batch_size = 8
    c.lr = ml_collections.FieldReference(None, field_type=float)  # Adam; None: protocol
    # The training recipe: TrainConfig's defaults, the one place its values are set (the
    # results record has the measurements behind them).
    for name in RECIPE:
        c[name] = getattr(TrainConfig, name)
    # Steps per round = steps_per_round + steps_per_label * labelled images (None: protocol).
    c.steps_per_label = ml_collections.FieldReference(None, field_type=float)
    # Which weights a round reports (dal_jax.training.fit): a validation split of val_fraction of the
    # labelled set once it has val_min images, else the lowest training loss (None: protocol).
    c.val_fraction = ml_collections.FieldReference(None, field_type=float)
    c.val_min = ml_collections.FieldReference(None, field_type=int)
    c.seed_form = "auto"  # auto | vmap | unrolled
    c.chunk_steps = 50
    c.shard = True  # split the runs (seeds x alphas) over all local devices / hosts
    # The paper fixes its splits (the Cornell split, the Jacquard subset, the noisy-Cornell noise,
    # the synthetic scenes) and varies only the trial seed. True: every trial draws them from its
    # own seed, to see how much of the spread comes from the split; the trials then run one
    # after the other (workdir/seed_<s>/), as each has its own pool.
    c.split_from_seed = False
    # Prior knowledge: every round starts GG-CNN from this checkpoint (a workdir of
    # experiments.main / experiments.train, or converted PyTorch weights) instead of from scratch;
    # its test accuracy is reported as round -1. "": from scratch.
    c.init_from = ""
    # A user's own frames (dataset frames): how many random frames the user labels as the
    # hold-out test set before round 0.
    c.test_size = 10

    # Steps of experiments.train's supervised model (0: a round's steps for the whole pool, and
    # with warm-started rounds at least the loop's last model's steps in all).
    c.supervised_steps = 0
    # experiments.train workdir drawn as the upper bound on curves.png ("": the sibling folder
    # <dataset>_supervised of the workdir, if it exists).
    c.upper_bound = ""

    c.annotate_host = "127.0.0.1"
    c.annotate_port = 0

    return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A tiny run of ``c``'s protocol for tests: 2 seeds, 2 rounds, 48 px, 6 steps a round."""
    c.synthetic = ml_collections.ConfigDict({**SYNTHETIC, "num_scenes": 40, "crop_size": 48})
    c.image_size = 48
    c.seeds = 2
    c.rounds = 2
    c.initial = 8
    c.budget = 4
    c.steps_per_round = 6
    c.steps_per_label = 0.0
    c.chunk_steps = 3
    return c
