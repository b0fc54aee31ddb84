"""The paper's comparison in one command: every strategy on the same seeds, with paired
statistics; or the alpha study.

    python -m experiments.study --seeds=10                                  # all six, synthetic
    python -m experiments.study --dataset=cornell --seeds=10 --workdir=runs/cornell_study
    python -m experiments.study --strategies=rs,dal --seeds=10
    python -m experiments.study --alpha=0,0.05,0.1,0.25,0.5 --seeds=10      # the alpha study
    python -m experiments.study --config=experiments/configs/synthetic.py:longtail --seeds=10

Each strategy runs in --workdir/<strategy>/ exactly as experiments.main would (resumable; seed
s starts from the same initial labelled pool for every strategy, so the comparison is paired).
The alpha study runs DAL once with the alphas batched, in --workdir/alpha/. The report goes to
--workdir: study.md (which strategies beat random sampling, with 95% CIs and Wilcoxon
p-values), study.json, study.png (curves with confidence bands and the supervised upper bound
when --workdir/../<dataset>_supervised holds one), and selected.png per strategy. Running the
same command again finishes what is missing and rewrites the report. One study at a time: a
second one on the same --workdir while the first runs is refused at once, naming its pid.
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags

from dal_jax import strategies
from experiments import cli, configs

_CONFIG = cli.define_config("Config file (as experiments.main's), e.g. a dataset's.")
_DATASET = flags.DEFINE_string("dataset", None, " | ".join(("auto", *configs.names())))
_SEEDS = flags.DEFINE_integer("seeds", None, "Trials per strategy (paired by seed).")
_STRATEGIES = flags.DEFINE_string(
    "strategies", ",".join(strategies.NAMES), "Comma-separated strategies to compare."
)
_ALPHA = flags.DEFINE_string(
    "alpha", None, "Two or more DAL weights: run the alpha study instead (baseline alpha 0)."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study folder (default runs/<dataset>_study).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show the study's progress bar.")
_CONTROLS = flags.DEFINE_bool(
    "controls",
    True,
    "With rs among the strategies, also run the controls that show whether the study can see "
    "a selection effect: rs without new labels and rs with doubled steps (control 1), and the "
    "positive control 'kinds' on pools whose object kinds are imbalanced (control 2). study.md "
    "reports them before any verdict and marks the verdicts uninformative when one fails.",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging

    from dal_jax.study import report as study_report
    from dal_jax.study import runner

    logging.set_verbosity(logging.WARNING)
    workdir = _WORKDIR.value
    try:
        config = cli.config_from_flags(_CONFIG.value, {"dataset": _DATASET, "seeds": _SEEDS})
        workdir = workdir or f"runs/{config.dataset}_study"
        alphas = _ALPHA.value
        rep = runner.run(
            config, workdir, _STRATEGIES.value, alphas, _PROGRESS.value, _CONTROLS.value
        )
    except KeyboardInterrupt:
        cli.exit_interrupted(f"finished rounds are saved in {workdir}; run the same command.")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(study_report.table(rep))
    print(f"report: {pathlib.Path(workdir) / 'study.md'}")


if __name__ == "__main__":
    cli.run(main)
