"""Supervised GG-CNN training on a whole pool: the upper bound of the active-learning curves,
and a deployable model for your own data.

    python -m experiments.train --dataset=synthetic                      # 1 seed, about 3 min
    python -m experiments.train --dataset=jacquard_subset --seeds=3 --workdir=runs/jq_sup
    python -m dal_jax.robot.detect --checkpoint=runs/synthetic_grasps_supervised --depth=f.tiff
    python -m experiments.train --dataset=jacquard_subset --leave_one_out --compare_to=CKPT
    python -m experiments.train --dataset=cornell --init_from=runs/synthetic_grasps_supervised

Every pool image is labelled; the recipe is the active-learning round's (steps from the
labelled count, model choice on a validation split or the training loss, the collapse
diagnostics). Writes results.json and an orbax checkpoint into --workdir (default
runs/<dataset>_supervised, where experiments.main finds it and draws it as a dashed line on
curves.png). --leave_one_out trains one model per object on the other objects' images and
tests it on that object's (dal_jax.experiment.holdout). --config.FIELD=VALUE overrides any field of
experiments/configs/default.py.
"""

from __future__ import annotations

import sys

from absl import app, flags

from experiments import cli, configs

_CONFIG = cli.define_config("Config file (the same as experiments.main's).")
_DATASET = flags.DEFINE_string("dataset", None, " | ".join(("auto", *configs.names())))
_SEEDS = flags.DEFINE_integer("seeds", 1, "Number of networks trained together (seeds).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder (default runs/<dataset>_supervised)."
)
_INIT_FROM = flags.DEFINE_string(
    "init_from",
    None,
    "Fine-tune a prior model instead of training from scratch: a run's or an experiments.train "
    "workdir, or converted weights (e.g. a model trained on synthetic scenes, then the real pool).",
)
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_LOO = flags.DEFINE_bool(
    "leave_one_out",
    False,
    "Leave-one-object-out instead: for every object, train on the others' images and test on "
    "its own; reports each fold next to a frame-centre grasp (dal_jax.experiment.holdout). Writes "
    "leave_one_out.json (default --workdir runs/<dataset>_leave_one_out).",
)
_COMPARE_TO = flags.DEFINE_string(
    "compare_to",
    None,
    "With --leave_one_out: a checkpoint (e.g. converted original GG-CNN weights) tested on the "
    "same held-out images.",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging

    from dal_jax.experiment import supervised

    logging.set_verbosity(logging.WARNING)
    if _COMPARE_TO.value and not _LOO.value:
        print("error: --compare_to needs --leave_one_out", file=sys.stderr)
        sys.exit(2)
    try:
        config = cli.config_from_flags(
            _CONFIG.value, {"dataset": _DATASET, "seeds": _SEEDS, "init_from": _INIT_FROM}
        )
        if _LOO.value:
            from dal_jax.experiment import holdout

            res = holdout.run(config, _WORKDIR.value, _COMPARE_TO.value, _PROGRESS.value)
            print(holdout.table(res))
            return
        res = supervised.run(config, _WORKDIR.value, progress=_PROGRESS.value)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        cli.exit_interrupted("nothing was written for this run.")
    acc = [a for a in res["accuracy"] if a is not None]
    flagged = sum(res["collapsed"])
    print(
        f"{res['dataset']}: {res['labeled']} labelled images, {res['steps']} steps, test "
        f"accuracy {100 * sum(acc) / max(len(acc), 1):.1f}% (seeds: "
        + ", ".join("null" if a is None else f"{100 * a:.1f}" for a in res["accuracy"])
        + ")"
        + (f", {flagged} collapsed" if flagged else "")
    )


if __name__ == "__main__":
    cli.run(main)
