"""Compare finished runs: one figure with every run's curve and a markdown table.

    python -m experiments.compare runs/cornell_dal runs/cornell_vaal runs/cornell_rs
    python -m experiments.compare runs/*  --out=figures/cornell

Each WORKDIR is a folder with results.json (an alpha study contributes each alpha_*/ folder).
A workdir of ``experiments.train`` (supervised, whole pool) is drawn as a dashed line and gets
its own row. Writes compare.png (the learning-curve figure of every run) and compare.md
(accuracy per round, mean ± std over seeds in %, the table a study's report writes too) into
--out (default: the current folder) and prints the table.
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags

from dal_jax.evaluation import stats
from dal_jax.experiment import results
from dal_jax.study.formatting import mean_std_table

_OUT = flags.DEFINE_string("out", ".", "Folder for compare.png and compare.md.")
_TITLE = flags.DEFINE_string("title", None, "Figure title (default: the dataset).")


def find_results(workdirs) -> dict[str, dict]:
    """label -> results.json dict for every run found under the given folders."""
    found = {}
    for wd in map(pathlib.Path, workdirs):
        try:
            runs = results.read_folder(wd)
        except results.UnreadableResults as e:
            raise ValueError(f"{e}; remove it or run that workdir again") from None
        if not runs:
            raise FileNotFoundError(f"no results.json in {wd} (nor in {wd}/alpha_*/)")
        for p, res in runs.items():
            _check_fields(p, res)
            if res.get("kind") == results.SUPERVISED:
                found[f"supervised, all {res['labeled']} labelled [{p.parent.name}]"] = res
                continue
            label = f"{res['strategy'].upper()}"
            if res["strategy"] == "dal" or len(runs) > 1:
                label += f" (alpha {res['alpha']:g})"
            label += f" [{p.parent.name}]" if label in found else ""
            found[label] = res
    return found


def _check_fields(path: pathlib.Path, res) -> None:
    """ValueError naming ``path`` when its results lack the fields the figure and table need
    (a results.json of experiments.main or of experiments.train)."""
    supervised = isinstance(res, dict) and res.get("kind") == results.SUPERVISED
    need = ("labeled", "accuracy") if supervised else ("strategy", "alpha", "rounds")
    missing = [k for k in need if not isinstance(res, dict) or k not in res]
    if missing:
        raise ValueError(
            f"{path} is not a results.json of experiments.main or experiments.train "
            f"(no {', '.join(repr(k) for k in missing)})"
        )


def split_supervised(runs: dict[str, dict]) -> tuple[dict, dict]:
    """(active-learning runs, supervised runs) by their results.json kind."""
    sup = {k: v for k, v in runs.items() if v.get("kind") == results.SUPERVISED}
    return {k: v for k, v in runs.items() if k not in sup}, sup


def markdown_table(runs: dict[str, dict]) -> str:
    """Accuracy (%, mean ± std over seeds) per round (rows) and run (columns), a run's cell
    empty after its last round; each supervised run last, one row with its accuracy in every
    column. The labelled count of a round is the first run's that has it."""
    runs, sup = split_supervised(runs)
    labels = list(runs)
    rows = []
    for i in range(max(len(r["rounds"]) for r in runs.values())):
        have = [runs[k]["rounds"][i] if i < len(runs[k]["rounds"]) else None for k in labels]
        labelled = next(str(r["labeled"]) for r in have if r is not None)
        cells = [None if r is None else stats.summary(r["accuracy"]) for r in have]
        rows.append(([str(i), labelled], cells))
    for label, res in sup.items():
        rows.append(([label, str(res["labeled"])], [stats.summary(res["accuracy"])] * len(labels)))
    return "\n".join(mean_std_table(["round", "labelled"] + labels, rows)) + "\n"


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("give one or more run folders: python -m experiments.compare DIR...")
    from dal_jax.evaluation import plots

    try:
        runs = find_results(argv[1:])
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    curves, sup = split_supervised(runs)
    plots.plot_curves(out / "compare.png", curves, title=_TITLE.value, upper=sup)
    table = markdown_table(runs)
    (out / "compare.md").write_text(table)
    print(table)
    print(f"wrote {out / 'compare.png'} and {out / 'compare.md'}")


if __name__ == "__main__":
    app.run(main)
