"""What an experiment leaves for its user: results.json and curves.png per alpha, the
alpha-study files, and the supervised upper bound drawn beside the curves; and the one reader
of results.json files (`read`, `read_folder`) and of their accuracies (`matrices`).

results.json (one per alpha; in ``alpha_<a>/`` when there is a grid)::

    {"strategy", "dataset", "alpha", "seeds",
     "rounds": [{"round", "labeled", "accuracy": [S], "collapsed": [S], "steps", "model_choice",
                 "diagnostics": {name: [S]}, "selected": [S][k], "selected_score": [S][k] | None,
                 "seconds": {"train", "evaluate", "select"} (wall clock, all runs together)}]}

With ``--init_from`` the first entry is round -1: the prior model on the test set, before any
label of this run. ``accuracy`` is null for a run that diverged before any finite weights were kept;
``selected`` is empty in the last round; ``selected_score`` is the strategy's score of each
pick (DAL: p = P(labelled)), null for strategies without one. In a study, graph density,
core-set and the other strategies that train GG-CNN alone take round 0 from random sampling's
identical training: that round has ``"shared_from": "rs"`` and 0 seconds of training and
evaluation.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib

import numpy as np

from dal_jax.training.runs import Grid

log = logging.getLogger("dal_jax")
SUPERVISED = "supervised"  # the ``kind`` of an experiments.train results.json
FILE = "results.json"


class UnreadableResults(ValueError):
    """A results.json that cannot be read or parsed; the message names the file and why."""


def read(path):
    """One results.json -> its parsed JSON (a dict, unless the file is not what it should be);
    `UnreadableResults` naming the file when it cannot be read or parsed."""
    path = pathlib.Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnreadableResults(f"{path} is unreadable ({e})") from None


def _alpha_key(path: pathlib.Path):
    """Sort key of an alpha_<a>/ folder: by the number a (names that are none go last)."""
    try:
        return (float(path.parent.name[len("alpha_") :]), "")
    except ValueError:
        return (math.inf, path.parent.name)


def read_folder(folder) -> dict:
    """path -> parsed results.json of a run folder: ``folder/results.json`` first, then each
    ``folder/alpha_<a>/results.json`` of an alpha grid by increasing a. Empty when there is
    none; `UnreadableResults` naming the first file that cannot be parsed."""
    folder = pathlib.Path(folder)
    paths = [folder / FILE] if (folder / FILE).is_file() else []
    paths += sorted((p for p in folder.glob(f"alpha_*/{FILE}") if p.is_file()), key=_alpha_key)
    return {p: read(p) for p in paths}


def matrices(res: dict, labeled) -> tuple[np.ndarray, np.ndarray]:
    """A results dict -> (accuracy [S, T], NaN where a run has none; collapsed [S, T] bool) on
    the labelled counts ``labeled`` [T] (each must have a round; the first such round counts)."""
    by_n = {}
    for r in res["rounds"]:
        by_n.setdefault(int(r["labeled"]), r)
    s = int(res.get("seeds") or len(res["rounds"][0]["accuracy"]))
    acc = np.full((s, len(labeled)), np.nan)
    bad = np.zeros((s, len(labeled)), bool)
    for t, n in enumerate(labeled):
        a = np.array(by_n[n]["accuracy"], dtype=float)  # None -> NaN
        acc[: a.size, t] = a[:s]
        c = np.asarray(by_n[n].get("collapsed") or [False] * a.size, bool)
        bad[: c.size, t] = c[:s]
    return acc, bad


def for_group(c, grid: Grid, history: list, a: int, prior: dict | None = None) -> dict:
    """The results.json dict of group (alpha) ``a`` from the loop's per-round records; with
    ``--init_from``, ``prior`` (the prior model's record) comes first as round -1."""
    sl = grid.group(a)
    rounds = []
    for rec in ([prior] if prior else []) + list(history):
        diag = rec.get("diagnostics", {})
        scores = rec.get("selected_score")
        rounds.append(
            {
                "round": rec["round"],
                "labeled": rec["labeled"][sl.start],
                "accuracy": rec["accuracy_all"][sl],
                "collapsed": diag.get("collapsed", [False] * len(rec["accuracy_all"]))[sl],
                "steps": rec.get("steps"),
                "model_choice": rec.get("model_choice"),
                "diagnostics": {k: v[sl] for k, v in diag.items() if k != "collapsed"},
                "selected": rec["selected"][sl] if rec["selected"] else [],
                "selected_score": scores[sl] if scores else None,
                "seconds": rec.get("seconds"),  # the round's train / evaluate / select time
                # The experiment whose identical round this is (a study's random sampling).
                **({"shared_from": rec["shared_from"]} if rec.get("shared_from") else {}),
            }
        )
    return {
        "strategy": c.strategy,
        "dataset": c.dataset,
        "alpha": grid.alphas[a],
        "seeds": grid.seeds,
        "rounds": rounds,
    }


def find_supervised(workdir) -> dict | None:
    """The results.json of a supervised run in ``workdir`` (or None if there is none)."""
    path = pathlib.Path(workdir) / FILE
    if not path.is_file():
        return None
    try:
        res = read(path)
    except UnreadableResults as e:
        log.warning("%s: no upper bound drawn", e)
        return None
    return res if isinstance(res, dict) and res.get("kind") == SUPERVISED else None


def data_variant(c) -> dict:
    """What, beside the dataset's name and image size, decides which images a run sees: the
    builder config and arguments (for the synthetic set its scenes: count, kinds' mix, seed)."""
    kwargs = c.synthetic if c.dataset == "synthetic_grasps" else c.dataset_kwargs
    return json.loads(json.dumps({"config": c.dataset_config, "kwargs": dict(kwargs)}))


def upper_bound(workdir, c) -> dict:
    """The supervised full-pool result to draw on the curves: ``c.upper_bound`` (an
    ``experiments.train`` workdir), else ``<workdir>/../<dataset>_supervised`` if it exists.
    Returns {label: results}; empty when there is none, or it is for another dataset, image
    size or data variant (e.g. the uniform synthetic scenes for a ``:longtail`` study), or
    another ``init_from`` prior, or it predates the variant's record and so cannot be matched."""
    where = c.get("upper_bound") or pathlib.Path(workdir).parent / f"{c.dataset}_supervised"
    res = find_supervised(where)
    if res is None:
        if c.get("upper_bound"):
            log.warning("no supervised results.json in %s: no upper bound drawn", where)
        return {}
    if (res.get("dataset"), res.get("image_size")) != (c.dataset, c.image_size):
        log.warning("%s is for another dataset or image size: no upper bound drawn", where)
        return {}
    if res.get("data_variant") != data_variant(c):
        why = "another data variant" if "data_variant" in res else "an unrecorded data variant"
        log.warning(
            "%s is for %s (rerun experiments.train for this one): no upper bound drawn", where, why
        )
        return {}
    if (res.get("init_from") or "") != (c.get("init_from") or ""):
        # A fine-tuned model bounds only curves that started from the same prior.
        log.warning("%s started from another prior model: no upper bound drawn", where)
        return {}
    return {f"supervised, all {res['labeled']} labelled": res}


def write(workdir: pathlib.Path, c, grid: Grid, history: list, prior=None) -> None:
    """The outputs of the loop's per-round records (see `write_groups`)."""
    per_group = [for_group(c, grid, history, a, prior) for a in range(grid.groups)]
    write_groups(workdir, c, grid, per_group)


def write_groups(workdir: pathlib.Path, c, grid: Grid, per_group: list[dict]) -> None:
    """results.json and curves.png (per alpha in alpha_<a>/ when there is a grid), and for a
    grid alpha_study.json and alpha_curves.png. per_group: one results dict per alpha."""
    from dal_jax.evaluation import plots

    upper = upper_bound(workdir, c)
    for alpha, res in zip(grid.alphas, per_group):
        out = workdir if grid.groups == 1 else workdir / f"alpha_{alpha:g}"
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / FILE, res)
        plots.plot_curves(out / "curves.png", {f"{c.strategy} (alpha {alpha:g})": res}, upper=upper)
    if grid.groups > 1:
        write_json(workdir / "alpha_study.json", per_group)
        curves = {f"alpha {alpha:g}": res for alpha, res in zip(grid.alphas, per_group)}
        plots.plot_curves(workdir / "alpha_curves.png", curves, upper=upper)


def write_json(path, obj) -> None:
    """Writes JSON atomically (a reader never sees a half-written file)."""
    tmp = pathlib.Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def merge_trials(per_trial: list[dict]) -> dict:
    """One results.json dict from the one-seed results of separate trials (``split_from_seed``):
    per round, the trials' per-seed lists side by side; rounds all trials finished."""
    first = per_trial[0]
    rounds = []
    for t in range(min(len(r["rounds"]) for r in per_trial)):
        parts = [r["rounds"][t] for r in per_trial]
        merged = dict(parts[0])
        for key in ("accuracy", "collapsed", "selected"):
            merged[key] = [v for p in parts for v in p[key]]
        scores = [p.get("selected_score") for p in parts]
        merged["selected_score"] = None if None in scores else [v for s in scores for v in s]
        seconds = [p.get("seconds") or {} for p in parts]
        merged["seconds"] = {k: sum(t.get(k, 0.0) for t in seconds) for k in seconds[0]} or None
        merged["diagnostics"] = {
            k: [v for p in parts for v in p["diagnostics"].get(k, [None])]
            for k in parts[0]["diagnostics"]
        }
        rounds.append(merged)
    return {**first, "seeds": len(per_trial), "split_from_seed": True, "rounds": rounds}
