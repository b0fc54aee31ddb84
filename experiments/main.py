"""Active-learning experiments of the DAL paper: many seeds (and alphas) in one program.

    python -m experiments.main --strategy=dal --seeds=10
    python -m experiments.main --dataset=cornell --strategy=vaal --seeds=10 --workdir=runs/c_vaal
    python -m experiments.main --config=experiments/configs/cornell.py:smoke --config.lr=5e-4
    python -m experiments.main --alpha=0,0.05,0.1,0.25,0.5 --seeds=5       # an alpha study
    python -m experiments.main --train_plain_from=runs/c_dal --round=6      # the discussion run
    python -m experiments.compare runs/c_*                                  # figures + table

Outputs in --workdir: results.json, curves.png, log.txt and orbax checkpoints after every
round. Running again with the same --workdir resumes after the last finished round (the newest
readable one); a workdir of another config is refused, and so is a second run on a workdir
while the first one still writes to it.
The config is the experiment: experiments/configs/<dataset>.py holds each dataset's protocol
(pool, budget, rounds, image size, steps); with the default config, --dataset picks that file's
numbers. Flags below override the config's fields; --config.FIELD=VALUE overrides any field
(e.g. --config.strategies.dal.disc_lr=0.02, --config.steps_per_round=500).
"""

from __future__ import annotations

import sys

from absl import app, flags

from dal_jax import strategies
from experiments import cli, configs

_CONFIG = cli.define_config(
    "Config file, optionally with a variant: experiments/configs/cornell.py:smoke."
)
_STRATEGY = flags.DEFINE_string(
    "strategy", None, " | ".join(strategies.NAMES + strategies.VARIANTS)
)
_SEEDS = flags.DEFINE_integer("seeds", None, "Number of seeds (trials) run together.")
_DATASET = flags.DEFINE_string("dataset", None, " | ".join(("auto", *configs.names())))
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder (default runs/<dataset>_<strategy>); resumed if it exists."
)
_ROUNDS = flags.DEFINE_integer("rounds", None, "K: number of train/test rounds.")
_BUDGET = flags.DEFINE_integer("budget", None, "k: examples selected per round.")
_INITIAL = flags.DEFINE_integer("initial", None, "Initial labelled examples per seed.")
_ALPHA = flags.DEFINE_string("alpha", None, "DAL weight; a comma list runs a batched grid.")
_EXPECTED = flags.DEFINE_float("expected_accuracy", None, "e: stop once mean accuracy >= e.")
_ORACLE = flags.DEFINE_enum("oracle", None, ["gt", "human"], "Who labels the selections.")
_TEST_SIZE = flags.DEFINE_integer(
    "test_size", None, "--dataset=frames: frames you label as the hold-out test set."
)
_INIT_FROM = flags.DEFINE_string(
    "init_from",
    None,
    "Start every round's GG-CNN from this checkpoint (prior knowledge: a workdir or converted "
    "PyTorch weights); its accuracy is reported as round -1.",
)
_PLAIN_FROM = flags.DEFINE_string(
    "train_plain_from", None, "Train plain GG-CNN on the data this DAL workdir had selected."
)
_ROUND = flags.DEFINE_integer("round", 6, "With --train_plain_from: which round's data.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "jax.distributed coordinator.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "jax.distributed process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "jax.distributed process id.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")

_OVERRIDES = {
    "strategy": _STRATEGY,
    "seeds": _SEEDS,
    "dataset": _DATASET,
    "rounds": _ROUNDS,
    "budget": _BUDGET,
    "initial": _INITIAL,
    "alpha": _ALPHA,
    "expected_accuracy": _EXPECTED,
    "oracle": _ORACLE,
    "init_from": _INIT_FROM,
    "test_size": _TEST_SIZE,
}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging as absl_logging

    from dal_jax.experiment import loop, plain
    from dal_jax.training import distributed

    absl_logging.set_verbosity(absl_logging.WARNING)  # the run's log goes to WORKDIR/log.txt

    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    try:
        config = cli.config_from_flags(_CONFIG.value, _OVERRIDES)
        workdir = _WORKDIR.value or f"runs/{config.dataset}_{config.strategy}"
        if _PLAIN_FROM.value:
            plain.train_plain_from(_PLAIN_FROM.value, _ROUND.value, workdir, _PROGRESS.value)
        else:
            loop.run(config, workdir, progress=_PROGRESS.value)
    except KeyboardInterrupt:
        cli.exit_interrupted(
            f"finished rounds are saved in {workdir}; run the same command to resume."
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli.run(main)
