"""The report of an active-learning study: several strategies (or alphas) run on the same seeds,
compared paired by seed against a baseline.

The statistics, the numbers of study.json (`build`), the text of study.md (`markdown`) and the
terminal table (`table`). The controls that say whether a study can see a selection effect at
all, and their section, are `dal_jax.study.controls_report`; what strategies picked and the labels they
save, and those sections, `dal_jax.study.picks`; how numbers are written, `dal_jax.study.formatting`.
`dal_jax.study.figures` draws study.png, selected.png, picks.png and controls.png, and
`dal_jax.study.runner` writes the files. Only numpy: the report is made where the experiments ran,
which need not have scipy.
"""

from __future__ import annotations

import math

import numpy as np

from dal_jax.study import picks as study_picks
from dal_jax.study.formatting import _ci, _clean, _fmt, _md_table, _name, _p, _pct, _pm

# Student t 0.975 quantiles for df = 1..30; beyond that 1.96 is within 2 % of the true value.
T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
EXACT_MAX_N = 25  # Wilcoxon: exact null distribution up to this many non-zero pairs


# ---------------------------------------------------------------- statistics


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (df >= 1)."""
    return T975[df - 1] if df <= len(T975) else 1.96


def aulc(labeled, acc) -> np.ndarray:
    """Normalised area under the learning curve.

    labeled: [T] labelled counts (increasing); acc: [..., T] accuracies in [0, 1].
    Returns [...]: trapezoid area / (labeled[-1] - labeled[0]), i.e. the curve's mean height;
    with T = 1 the accuracy itself. NaN where any round is NaN.
    """
    x = np.asarray(labeled, float)
    y = np.asarray(acc, float)
    if x.size == 1:
        return y[..., 0]
    area = np.sum((y[..., 1:] + y[..., :-1]) / 2 * np.diff(x), axis=-1)
    return area / (x[-1] - x[0])


def bootstrap_ci(values, n_boot: int = 10000, seed: int = 0, level: float = 0.95):
    """Percentile bootstrap CI of the mean. values: [S] (NaNs dropped). Returns (lo, hi) floats;
    (nan, nan) with no values."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def _avg_ranks(a: np.ndarray) -> np.ndarray:
    """[n] -> [n] ranks, 1 = smallest, ties get their average rank."""
    return (a[None, :] < a[:, None]).sum(1) + ((a[None, :] == a[:, None]).sum(1) + 1) / 2


def _signed_rank_counts(ranks2) -> np.ndarray:
    """How many of the 2^n sign patterns give each sum of the positive doubled ranks.
    ranks2: [n] ints, twice the (average) ranks, so ties stay integers -> [sum(ranks2) + 1]."""
    counts = np.zeros(int(np.sum(ranks2)) + 1)
    counts[0] = 1
    for r in ranks2:
        # This rank either joins the positive sum (shift by r) or not.
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts


def wilcoxon(diffs) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences. diffs: [S].

    Rounded to 12 decimals; NaNs and zeros are dropped (Wilcoxon's "wilcox" zero method). With
    n <= 25 non-zero differences: the exact null distribution of W+ given the ranks (ties keep
    their average ranks, so a few seeds with equal differences get an exact p too; without
    ties this equals ``scipy.stats.wilcoxon(d, method='exact')``), p = 2 min(P(W+ <= w),
    P(W+ >= w)) capped at 1. Beyond: the normal approximation with tie correction and no
    continuity correction (``method='asymptotic'``). Returns 1.0 when no non-zero difference
    remains.
    """
    # Accuracies are fractions of a test set, so equal differences may differ in the last bits;
    # rounding makes them the ties (and zeros) they are.
    d = np.round(np.asarray(diffs, float), 12)
    d = d[~np.isnan(d) & (d != 0)]
    n = d.size
    if n == 0:
        return 1.0
    a = np.abs(d)
    ranks = _avg_ranks(a)
    r_plus = float(ranks[d > 0].sum())
    if n <= EXACT_MAX_N:
        counts, k = _signed_rank_counts(np.rint(2 * ranks).astype(int)), round(2 * r_plus)
        return float(min(2 * min(counts[: k + 1].sum(), counts[k:].sum()) / counts.sum(), 1.0))
    _, ties = np.unique(a, return_counts=True)
    var = (n * (n + 1) * (2 * n + 1) - np.sum(ties**3 - ties) / 2) / 24
    if var <= 0:
        return 1.0
    z = (r_plus - n * (n + 1) / 4) / math.sqrt(var)
    return float(math.erfc(abs(z) / math.sqrt(2)))


def mean_ranks(acc) -> np.ndarray:
    """acc: [K strategies, S, T] -> [K, T] mean rank over seeds (1 = best, ties averaged).

    A (seed, round) where any strategy has no accuracy (NaN) is skipped: ranks there would not
    compare like with like. NaN where every seed is skipped.
    """
    a = np.asarray(acc, float)
    better = (a[None] > a[:, None]).sum(axis=1)  # [K, S, T]: strategies with higher accuracy
    equal = (a[None] == a[:, None]).sum(axis=1)
    ranks = 1 + better + (equal - 1) / 2
    ok = ~np.isnan(a).any(axis=0)  # [S, T]
    ranks = np.where(ok[None], ranks, np.nan)
    with np.errstate(invalid="ignore"):
        return np.nansum(ranks, axis=1) / np.where(ok.sum(0) > 0, ok.sum(0), np.nan)


def summary(v) -> dict:
    """[S] -> mean, std (ddof 1), n and t-based 95 % CI of the mean over the non-NaN values."""
    v = np.asarray(v, float)
    v = v[~np.isnan(v)]
    n = v.size
    mean = float(v.mean()) if n else math.nan
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    half = t975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": n, "ci": [mean - half, mean + half]}


def _paired(d, n_boot: int, seed: int) -> dict:
    """[S] per-seed differences -> mean, bootstrap 95 % CI, Wilcoxon p, n pairs (NaNs dropped)."""
    d = np.asarray(d, float)
    d = d[~np.isnan(d)]
    return {
        "mean": float(d.mean()) if d.size else math.nan,
        "ci": list(bootstrap_ci(d, n_boot, seed)),
        "p": wilcoxon(d) if d.size else math.nan,
        "n": int(d.size),
    }


# ---------------------------------------------------------------- the report


def common_labeled(results: dict) -> list[int]:
    """label -> results dict  ->  sorted labelled counts every label has a round for."""
    sets = [{int(r["labeled"]) for r in res["rounds"]} for res in results.values()]
    return sorted(set.intersection(*sets)) if sets else []


def _matrices(res: dict, labeled: list[int]):
    """results dict -> (accuracy [S, T] with NaN for None, collapsed [S, T] bool) on ``labeled``."""
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
        rounds = [_paired(a[:s, t] - base[:s, t], n_boot, seed) for t in range(len(labeled))]
        out[k] = {
            "rounds": [dict(labeled=n, **r) for n, r in zip(labeled, rounds)],
            "aulc": _paired(per_seed[k][:s] - per_seed[baseline][:s], n_boot, seed),
        }
    return out


def _ranks(acc: dict) -> dict:
    """label -> [T] mean rank; labels with fewer seeds are padded with NaN (skipped) seeds."""
    s = max(a.shape[0] for a in acc.values())
    pad = [np.pad(a, ((0, s - a.shape[0]), (0, 0)), constant_values=np.nan) for a in acc.values()]
    return dict(zip(acc, mean_ranks(np.stack(pad))))


NO_CONTROLS = "No controls were run: whether this study can see a selection effect is unknown."


def _controls():
    """`dal_jax.study.controls_report`, imported when first used: it imports this module's statistics."""
    from dal_jax.study import controls_report as study_controls

    return study_controls


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
    ctrl = _controls().control_set(controls, control_labels, baseline)
    mats = {k: _matrices(res, labeled) for k, res in results.items()}
    acc = {k: m[0] for k, m in mats.items()}
    per_seed = {k: aulc(labeled, a) for k, a in acc.items()}
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
            k: [dict(labeled=n, **summary(a[:, t])) for t, n in enumerate(labeled)]
            for k, a in acc.items()
        },
        "aulc": {
            k: {**summary(v), "per_seed": v, "ci": bootstrap_ci(v, n_boot, seed)}
            for k, v in per_seed.items()
        },
        "diff": _diffs(acc, per_seed, baseline, labeled, n_boot, seed),
        "mean_rank": _ranks({k: a for k, a in acc.items() if k not in ctrl}),
        "collapsed": {
            k: {"trials": b.any(1).sum(), "cells": b.sum(), "seeds": b.shape[0]}
            for k, (_, b) in mats.items()
        },
        "upper": upper and {"labeled": upper.get("labeled"), **summary(upper["accuracy"])},
        "labels_saved": study_picks.saved_part(acc, baseline, labeled, n_boot, seed),
        "n_boot": n_boot,
        "seed": seed,
    }
    if pool_info is not None:
        rep["picks"] = {k: study_picks.pick_composition(r, pool_info) for k, r in results.items()}
    rep = _clean(rep)
    rep["controls"] = _controls().report_part(
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
    out = ["# Active-learning study", ""] + _controls().markdown(rep) + ["## Verdicts", ""]
    out += [f"- {s}" for s in rep["verdict"]] + [""]
    for k, why in rep.get("incomplete", {}).items():
        out += [f"**Incomplete: {k}** ({why}); its finished rounds are compared as they are.", ""]
    if rep["caveat"]:
        out += [f"**Caveat:** {rep['caveat']}", ""]
    if rep["upper"]:
        u = rep["upper"]
        out += [f"Upper bound: supervised, all {u['labeled']} labelled: {_pct(u['mean'])} %.", ""]
    out += ["## Accuracy per round (mean ± std, %)", ""]
    rows = [[str(n)] + [_pm(rep["accuracy"][k][t]) for k in labels] for t, n in enumerate(labeled)]
    out += _md_table(["labelled"] + names, rows) + ["", "## AULC (%, bootstrap 95 % CI)", ""]
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
    out += [""] + study_picks.markdown(rep)
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
    lines += _controls().table_lines(rep)
    if rep["caveat"]:
        lines.append(rep["caveat"])
    lines += [f"INCOMPLETE {k}: {why}" for k, why in rep.get("incomplete", {}).items()]
    return "\n".join(lines)
