"""Compare finished runs: one figure with every run's curve and a markdown table.

    python -m experiments.compare runs/cornell_dal runs/cornell_vaal runs/cornell_rs
    python -m experiments.compare runs/*  --out=figures/cornell

Each WORKDIR is a folder with results.json (an alpha study contributes each alpha_*/ folder).
A workdir of ``experiments.train`` (supervised, whole pool) is drawn as a dashed line and gets
its own row. Writes compare.png and compare.md into --out (default: the current folder) and
prints the table.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import app, flags

_OUT = flags.DEFINE_string("out", ".", "Folder for compare.png and compare.md.")
_TITLE = flags.DEFINE_string("title", None, "Figure title (default: the dataset).")


def find_results(workdirs) -> dict[str, dict]:
    """label -> results.json dict for every run found under the given folders."""
    found = {}
    for wd in map(pathlib.Path, workdirs):
        paths = [wd / "results.json"] if (wd / "results.json").exists() else []
        paths += sorted(wd.glob("alpha_*/results.json"))
        if not paths:
            raise FileNotFoundError(f"no results.json in {wd} (nor in {wd}/alpha_*/)")
        for p in paths:
            res = read_results(p)
            if res.get("kind") == "supervised":
                found[f"supervised, all {res['labeled']} labelled [{p.parent.name}]"] = res
                continue
            label = f"{res['strategy'].upper()}"
            if res["strategy"] == "dal" or len(paths) > 1:
                label += f" (alpha {res['alpha']:g})"
            label += f" [{p.parent.name}]" if label in found else ""
            found[label] = res
    return found


def read_results(path: pathlib.Path) -> dict:
    """A results.json written by experiments.main or experiments.train; ValueError naming the
    file when it does not parse or lacks the fields the figure and table need."""
    try:
        res = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{path} is unreadable ({e}); remove it or run that workdir again"
        ) from None
    need = (
        ("labeled", "accuracy") if _kind(res) == "supervised" else ("strategy", "alpha", "rounds")
    )
    missing = [k for k in need if not isinstance(res, dict) or k not in res]
    if missing:
        raise ValueError(
            f"{path} is not a results.json of experiments.main or experiments.train "
            f"(no {', '.join(repr(k) for k in missing)})"
        )
    return res


def _kind(res) -> str | None:
    return res.get("kind") if isinstance(res, dict) else None


def split_supervised(runs: dict[str, dict]) -> tuple[dict, dict]:
    """(active-learning runs, supervised runs) by their results.json kind."""
    sup = {k: v for k, v in runs.items() if v.get("kind") == "supervised"}
    return {k: v for k, v in runs.items() if k not in sup}, sup


def _cell(acc) -> str:
    a = 100 * np.asarray(acc, float)
    return f"{np.nanmean(a):.2f} +- {np.nanstd(a):.2f}"


def markdown_table(runs: dict[str, dict]) -> str:
    """Mean +- std accuracy (%) per round (rows) and run (columns); supervised runs last."""
    runs, sup = split_supervised(runs)
    labels = list(runs)
    n_rounds = max(len(r["rounds"]) for r in runs.values())
    lines = [
        "| round | labelled | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for i in range(n_rounds):
        cells, labelled = [], ""
        for lab in labels:
            rounds = runs[lab]["rounds"]
            if i < len(rounds):
                cells.append(_cell(rounds[i]["accuracy"]))
                labelled = labelled or str(rounds[i]["labeled"])
            else:
                cells.append("")
        lines.append(f"| {i} | {labelled} | " + " | ".join(cells) + " |")
    for label, res in sup.items():
        lines.append(
            f"| {label} | {res['labeled']} | "
            + " | ".join([_cell(res["accuracy"])] * len(labels))
            + " |"
        )
    return "\n".join(lines) + "\n"


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
