"""The report of an active-learning study: several strategies (or alphas) run on the same seeds,
compared paired by seed against a baseline.

The numbers of study.json (`build`), the text of study.md (`markdown`) and the terminal table
(`table`). The statistics are `dal_jax.evaluation.stats`; the controls that say whether a
study can see a selection effect at all, and their section, `dal_jax.study.controls_report`;
what strategies picked and the labels they save, and those sections, `dal_jax.study.picks`;
how numbers are written, `dal_jax.study.formatting`. Imports go one way: this module uses them,
none of them uses it. `dal_jax.study.figures` and `dal_jax.evaluation.plots` draw the figures,
and `dal_jax.study.runner` writes the files.
"""

from __future__ import annotations

import numpy as np

from dal_jax.evaluation import stats
from dal_jax.experiment import results as results_file
from dal_jax.study import controls_report as study_controls
from dal_jax.study import discriminator as study_disc
from dal_jax.study import picks as study_picks
from dal_jax.study.formatting import _ci, _clean, _fmt, _md_table, _name, _p, _pct, mean_std_table

# ---------------------------------------------------------------- the report


def common_labeled(results: dict) -> list[int]:
    """label -> results dict  ->  sorted labelled counts every label has a round for."""
    sets = [{int(r["labeled"]) for r in res["rounds"]} for res in results.values()]
    return sorted(set.intersection(*sets)) if sets else []


def _verdict(label: str, baseline: str, d: dict) -> str:
    """The sentence on one label's AULC difference to the baseline (see ``build``)."""
    if d["n"] == 0:
        return f"{label}: not comparable with {baseline} (no seed has an AULC for both)."
    lo, hi = d["ci"]
    if lo > 0:
        word = f"beats {baseline}"
    elif hi < 0:
        word = f"loses to {baseline}"
    else:
        word = f"no difference from {baseline} detectable"
    s = (
        f"{label}: {word} — AULC difference {100 * d['mean']:+.1f} accuracy points "
        f"(95 % CI {100 * lo:+.1f} to {100 * hi:+.1f}), Wilcoxon p = {d['p']:.3g}, "
        f"{d['n']} paired seeds."
    )
    if (lo > 0 or hi < 0) and d["p"] >= 0.05:
        # With few seeds the percentile bootstrap is too narrow; the rank test is the check.
        s += " The Wilcoxon test does not confirm it (p >= 0.05): tentative."
    return s


def _caveat(labeled: list[int], n_rounds: dict) -> str | None:
    """The note that rounds were cut to the common labelled counts; None when none were."""
    if all(n == len(labeled) for n in n_rounds.values()):
        return None
    each = ", ".join(f"{k} {n}" for k, n in n_rounds.items())
    return (
        f"Rounds truncated to the {len(labeled)} labelled counts all strategies have "
        f"({labeled[0]}-{labeled[-1]}); rounds per strategy: {each}."
    )


def _diffs(acc: dict, per_seed: dict, baseline: str, labeled, n_boot, seed) -> dict:
    """label -> paired differences to the baseline per round and for AULC, by seed index."""
    base, out = acc[baseline], {}
    for k, a in acc.items():
        if k == baseline:
            continue
        s = min(base.shape[0], a.shape[0])
        rounds = [stats.paired(a[:s, t] - base[:s, t], n_boot, seed) for t in range(len(labeled))]
        out[k] = {
            "rounds": [dict(labeled=n, **r) for n, r in zip(labeled, rounds)],
            "aulc": stats.paired(per_seed[k][:s] - per_seed[baseline][:s], n_boot, seed),
        }
    return out


def _ranks(acc: dict) -> dict:
    """label -> [T] mean rank; labels with fewer seeds are padded with NaN (skipped) seeds."""
    s = max(a.shape[0] for a in acc.values())
    pad = [np.pad(a, ((0, s - a.shape[0]), (0, 0)), constant_values=np.nan) for a in acc.values()]
    return dict(zip(acc, stats.mean_ranks(np.stack(pad))))


def _verdicts(rep: dict, baseline: str, controls: set) -> list[str]:
    """The verdict sentences of the strategies (not the controls), marked when uninformative."""
    b = rep["aulc"][baseline]
    out = [
        f"{baseline} (baseline): AULC {_pct(b['mean'])} % (95 % CI {_ci(b['ci'])}), {b['n']} seeds."
    ] + [_verdict(k, baseline, d["aulc"]) for k, d in rep["diff"].items() if k not in controls]
    mark = "(uninformative) " if rep["controls"]["informative"] is False else ""
    return [mark + v for v in out]


def build(
    results: dict,
    baseline: str,
    upper: dict | None = None,
    n_boot=10000,
    seed=0,
    incomplete: dict | None = None,
    controls: dict | None = None,
    control_labels=(),
    pool_info: dict | None = None,
) -> dict:
    """The study.json content (JSON-ready: floats, lists, None for NaN).

    results: label -> results.json dict; baseline: one of its labels; upper: an optional
    supervised results dict; incomplete: label -> why it is unfinished (failed, or rounds
    missing), reported at the top. Only the labelled counts all labels have are compared.
    Verdict per label on the paired per-seed AULC difference to the baseline: "beats" when its
    bootstrap 95 % CI is above 0, "loses to" when below 0, else "no difference detectable".

    control_labels: labels of ``results`` that are controls (and ``controls["positive"]``): they
    get AULC and differences but no verdict or rank. controls: what the controls measured (see
    `study_controls.report_part`); None: no controls were run. When a control fails, every
    verdict is marked "(uninformative)". pool_info: {"kind_names", "kinds" [N, K], "grasps" [N],
    "object_pixels" [N]} for "picks" (`study_picks.pick_composition`).
    """
    if baseline not in results:
        raise ValueError(f"baseline {baseline!r} not among {list(results)}")
    labeled = common_labeled(results)
    if not labeled:
        raise ValueError("the strategies share no labelled count: nothing to compare")
    ctrl = study_controls.control_set(controls, control_labels, baseline)
    mats = {k: results_file.matrices(res, labeled) for k, res in results.items()}
    acc = {k: m[0] for k, m in mats.items()}
    per_seed = {k: stats.aulc(labeled, a) for k, a in acc.items()}
    n_rounds = {k: len(res["rounds"]) for k, res in results.items()}
    rep = {
        "baseline": baseline,
        "labels": list(results),
        "control_labels": [k for k in results if k in ctrl],
        "incomplete": dict(incomplete or {}),
        "labeled": labeled,
        "rounds_per_label": n_rounds,
        "truncated": _caveat(labeled, n_rounds) is not None,
        "caveat": _caveat(labeled, n_rounds),
        "seeds": {k: a.shape[0] for k, a in acc.items()},
        "accuracy": {
            k: [dict(labeled=n, **stats.summary(a[:, t])) for t, n in enumerate(labeled)]
            for k, a in acc.items()
        },
        "aulc": {
            k: {**stats.summary(v), "per_seed": v, "ci": stats.bootstrap_ci(v, n_boot, seed)}
            for k, v in per_seed.items()
        },
        "diff": _diffs(acc, per_seed, baseline, labeled, n_boot, seed),
        "mean_rank": _ranks({k: a for k, a in acc.items() if k not in ctrl}),
        "collapsed": {
            k: {"trials": b.any(1).sum(), "cells": b.sum(), "seeds": b.shape[0]}
            for k, (_, b) in mats.items()
        },
        "upper": upper and {"labeled": upper.get("labeled"), **stats.summary(upper["accuracy"])},
        "labels_saved": study_picks.saved_part(acc, baseline, labeled, n_boot, seed),
        "n_boot": n_boot,
        "seed": seed,
    }
    if pool_info is not None:
        rep["picks"] = {k: study_picks.pick_composition(r, pool_info) for k, r in results.items()}
    rep["discriminator"] = study_disc.report_part(results, rep.get("picks"))
    rep = _clean(rep)
    rep["controls"] = study_controls.report_part(
        controls, results, baseline, rep["diff"], n_boot, seed
    )
    rep["verdict"] = _verdicts(rep, baseline, ctrl)
    return rep


# ---------------------------------------------------------------- text


def markdown(rep: dict) -> str:
    """study.md: whether the study can tell strategies apart (the controls), the verdict, then
    tables of accuracy, AULC, paired differences, ranks and collapsed runs, what each strategy
    picked and the labels it saves. Accuracies in %, differences in accuracy points."""
    labels, labeled, base = rep["labels"], rep["labeled"], rep["baseline"]
    names = [_name(rep, k) for k in labels]
    out = ["# Active-learning study", ""] + study_controls.markdown(rep) + ["## Verdicts", ""]
    out += [f"- {s}" for s in rep["verdict"]] + [""]
    for k, why in rep.get("incomplete", {}).items():
        out += [f"**Incomplete: {k}** ({why}); its finished rounds are compared as they are.", ""]
    if rep["caveat"]:
        out += [f"**Caveat:** {rep['caveat']}", ""]
    if rep["upper"]:
        u = rep["upper"]
        out += [f"Upper bound: supervised, all {u['labeled']} labelled: {_pct(u['mean'])} %.", ""]
    out += ["## Accuracy per round (mean ± std, %)", ""]
    rows = [([str(n)], [rep["accuracy"][k][t] for k in labels]) for t, n in enumerate(labeled)]
    out += mean_std_table(["labelled"] + names, rows) + ["", "## AULC (%, bootstrap 95 % CI)", ""]
    rows = [
        [_name(rep, k), _pct(a["mean"]), _ci(a["ci"]), str(a["n"])] for k, a in rep["aulc"].items()
    ]
    out += _md_table(["strategy", "AULC", "95 % CI", "seeds"], rows)
    out += ["", f"## Paired difference to {base} (accuracy points)", ""]
    rows = [
        [_name(rep, k), str(r["labeled"]), _pct(r["mean"], True), _ci(r["ci"], True), _p(r),
         str(r["n"])]
        for k, d in rep["diff"].items()
        for r in d["rounds"] + [dict(d["aulc"], labeled="AULC")]
    ]  # fmt: skip
    out += _md_table(["strategy", "labelled", "mean", "95 % CI", "Wilcoxon p", "pairs"], rows)
    ranked = list(rep["mean_rank"])
    out += ["", "## Mean rank (1 = best; controls not ranked)", ""]
    rows = [
        [str(n)] + [_fmt(rep["mean_rank"][k][t], ".2f") for k in ranked]
        for t, n in enumerate(labeled)
    ]
    out += _md_table(["labelled"] + ranked, rows) + ["", "## Collapsed runs", ""]
    out += _md_table(
        ["strategy", "collapsed seeds", "collapsed (seed, round) cells"],
        [[_name(rep, k), _flag(c), f"{c['cells']}"] for k, c in rep["collapsed"].items()],
    )
    out += [""] + study_disc.markdown(rep) + study_picks.markdown(rep)
    return "\n".join(out).rstrip("\n") + "\n"


def _flag(c: dict) -> str:
    """Collapsed seed count, bold when non-zero so it is not missed."""
    return f"**{c['trials']} collapsed** of {c['seeds']}" if c["trials"] else f"0 of {c['seeds']}"


def table(rep: dict) -> str:
    """A compact plain-text table: label, AULC [CI], difference to the baseline [CI], p,
    collapsed seeds (percent / accuracy points); a line on the controls when they were run."""
    head = ("strategy", "AULC [95% CI]", f"vs {rep['baseline']} [95% CI]", "p", "collapsed")
    rows = [head]
    for k in rep["labels"]:
        a, d = rep["aulc"][k], rep["diff"].get(k, {}).get("aulc")
        diff = f"{_pct(d['mean'], True)} {_ci(d['ci'], True)}" if d else "baseline"
        aulc_s = f"{_pct(a['mean'])} {_ci(a['ci'])}"
        trials = str(rep["collapsed"][k]["trials"])
        rows.append((_name(rep, k), aulc_s, diff, _p(d) if d else "", trials))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += study_controls.table_lines(rep)
    if rep["caveat"]:
        lines.append(rep["caveat"])
    lines += [f"INCOMPLETE {k}: {why}" for k, why in rep.get("incomplete", {}).items()]
    return "\n".join(lines)
