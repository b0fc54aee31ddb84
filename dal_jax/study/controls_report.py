"""The two controls of an active-learning study, reported before any verdict.

1. Label sensitivity: do labels matter at all here? Random sampling's accuracy must rise beyond a
   run that got the same training without new labels, and its rounds must be trained to
   convergence (twice the steps must not move its last round by more than its CI half-width).
2. Positive control: a selection known to help (e.g. picks balancing the object kinds, from the
   ground truth) must beat random sampling; else a "no difference" verdict means nothing.

`dal_jax.study.report` builds study.json's "controls" with `report_part`, and writes their
section of study.md (`markdown`) and their line of the terminal table (`table_lines`). The
statistics are `dal_jax.evaluation.stats`, as the report's; this module does not import the
report. Accuracies are fractions; sentences say points.
"""

from __future__ import annotations

import math

import numpy as np

from dal_jax.evaluation.stats import paired, summary
from dal_jax.experiment.results import matrices
from dal_jax.study.formatting import _ci, _clean, _md_table, _p, _pct

NO_CONTROLS = "No controls were run: whether this study can see a selection effect is unknown."

# What a positive control does, for the sentences; unknown names are shown bare.
DESCRIBE = {
    "kinds": "picks that balance the object kinds, using the ground truth no real strategy may know"
}


def _pts(x, signed=True) -> str:
    """A fraction as accuracy points with one decimal ('—' for None/NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(100 * x, "+.1f" if signed else ".1f")


def _ci_words(ci) -> str:
    return f"95 % CI {_pts(ci[0])} to {_pts(ci[1])}"


def _num(x) -> float:
    """None (NaN in a cleaned report) -> NaN, so comparisons are simply False."""
    return math.nan if x is None else float(x)


# ---------------------------------------------------------------- control 1


def _label_effect_reason(effect: dict, labeled, min_rise: float) -> str | None:
    """The sentence on why the label effect fails; None when it passes."""
    mean, lo = _num(effect["mean"]), _num(effect["ci"][0])
    if lo > 0 and mean >= min_rise:
        return None
    if effect["n"] == 0:
        return (
            "no seed has both a last-round accuracy of random sampling and of the no-new-labels run"
        )
    only = "only " if not mean >= min_rise else ""
    return (
        f"random sampling's accuracy rises by {only}{_pts(mean)} points ({_ci_words(effect['ci'])}) "
        f"from {labeled[0]} to {labeled[-1]} labels beyond a run that got the same training "
        f"without new labels (needs >= {100 * min_rise:.0f} points with a CI above zero)"
    )


def _doubling(rs_last, doubled_last) -> dict:
    """RS's last round against the same labelled set trained with twice the steps."""
    rs, dbl = summary(rs_last), summary(doubled_last)
    half = (rs["ci"][1] - rs["ci"][0]) / 2
    shift = dbl["mean"] - rs["mean"]
    return {"rs_last": rs, "doubled": dbl, "shift": shift, "ci_half_width": half,
            "enough": bool(abs(shift) < half)}  # fmt: skip


def _doubling_reason(d: dict) -> str | None:
    """The sentence on why the convergence check fails; None when it passes."""
    if d["enough"]:
        return None
    if d["ci_half_width"] is None or d["shift"] is None:
        return (
            "random sampling's last round or the doubled-steps run has too few seeds for a 95 % CI, "
            "so whether the rounds are trained to convergence cannot be judged"
        )
    return (
        f"twice the training steps move random sampling's last-round mean by "
        f"{_pts(d['shift'])} points, more than its 95 % CI half-width "
        f"({_pts(d['ci_half_width'], False)}): rounds are not trained to convergence"
    )


def label_sensitivity(
    rs_acc, labeled, no_new_labels_last, doubled_last, n_boot, seed, min_rise=0.10
) -> dict:
    """Control 1: do new labels raise random sampling's accuracy, and are rounds converged?

    rs_acc: [S, T] RS accuracies (NaN = missing); labeled: [T]; no_new_labels_last: [S'] last-round
    accuracies of runs trained on the initial labelled set only, with RS's step counts, or None
    (not run); doubled_last: [S''] RS's last-round labelled set trained with twice the steps, or
    None. Pairs are by seed index. Returns a JSON-ready dict: rise and label_effect ({mean, ci,
    p, n}: bootstrap CI, Wilcoxon p), rs_first, rs_last and no_new_labels (summaries), doubling,
    passed (label_effect's CI above 0, its mean >= min_rise, doubling enough) and reasons (one
    sentence per failing or missing part).
    """
    a = np.asarray(rs_acc, float)
    first, last = a[:, 0], a[:, -1]
    out = {"labeled": [int(labeled[0]), int(labeled[-1])], "min_rise": min_rise,
           "rs_first": summary(first), "rs_last": summary(last),
           "rise": paired(last - first, n_boot, seed),
           "label_effect": None, "no_new_labels": None, "doubling": None}  # fmt: skip
    reasons = []
    if no_new_labels_last is None:
        reasons.append("the no-new-labels control was not run")
    else:
        base = np.asarray(no_new_labels_last, float)
        s = min(base.size, last.size)
        out["no_new_labels"] = summary(base)
        out["label_effect"] = paired(last[:s] - base[:s], n_boot, seed)
        reasons.append(_label_effect_reason(out["label_effect"], labeled, min_rise))
    if doubled_last is None:
        reasons.append("the doubled-steps control was not run")
    else:
        out["doubling"] = _clean(_doubling(last, np.asarray(doubled_last, float)))
        reasons.append(_doubling_reason(out["doubling"]))
    out["reasons"] = [r for r in reasons if r]
    out["passed"] = not out["reasons"]
    return _clean(out)


# ---------------------------------------------------------------- control 2


def _named(name: str) -> str:
    what = DESCRIBE.get(name)
    return f"the positive control '{name}'" + (f" ({what})" if what else "")


def positive_control(diff_aulc: dict | None, name: str) -> dict:
    """Control 2: does a selection known to help beat random sampling?

    diff_aulc: the paired AULC difference to the baseline as `dal_jax.study.report.build`
    computes it ({mean, ci: [lo, hi], p, n}; None entries for NaN), or None when the control
    has no results.
    Returns a JSON-ready dict: name, applicable (True), diff, passed (CI above 0), reasons.
    """
    out = {"name": name, "applicable": True, "diff": diff_aulc, "passed": False, "reasons": []}
    if diff_aulc is None or diff_aulc["n"] == 0:
        out["reasons"] = [f"{_named(name)} has no AULC paired with random sampling"]
    elif _num(diff_aulc["ci"][0]) > 0:
        out["passed"] = True
    else:
        out["reasons"] = [
            (
                f"{_named(name)} does not beat random sampling: AULC {_pts(diff_aulc['mean'])} "
                f"({_ci_words(diff_aulc['ci'])}); selection that is known to help cannot be seen "
                "here"
            )
        ]
    return _clean(out)


def not_applicable(why: str = "the pool has no object kinds") -> dict:
    """Control 2 when it cannot be run on this pool (not a failure)."""
    return {"name": None, "applicable": False, "diff": None, "passed": None, "reasons": [],
            "why": why}  # fmt: skip


def not_run() -> dict:
    """Control 2 when it could have been run but was not (a failure: detection is unknown)."""
    return {"name": None, "applicable": True, "diff": None, "passed": False,
            "reasons": ["no positive control was run, although the pool has object kinds"]}  # fmt: skip


# ---------------------------------------------------------------- the preamble


def _label_words(c1: dict) -> str:
    e, d = c1["label_effect"], c1["doubling"]
    return (
        f"random sampling gains {_pts(e['mean'])} points ({_ci_words(e['ci'])}) from "
        f"{c1['labeled'][0]} to {c1['labeled'][1]} labels beyond the same training without new "
        f"labels, and twice the steps move its last round by only {_pts(d['shift'])} points, "
        f"within its 95 % CI half-width {_pts(d['ci_half_width'], False)}"
    )


def _positive_words(c2: dict) -> str:
    d = c2["diff"]
    return (
        f"the positive control '{c2['name']}' beats random sampling by {_pts(d['mean'])} AULC "
        f"points, {_ci_words(d['ci'])}"
    )


def informative(control1: dict | None, control2: dict | None) -> bool:
    """True when every applicable control ran and passed."""
    ok2 = control2 is not None and (control2["passed"] or not control2["applicable"])
    return bool(control1 is not None and control1["passed"] and ok2)


def verdict_preamble(control1: dict | None, control2: dict | None) -> list[str]:
    """The sentences above the verdicts. control1: `label_sensitivity` (None: not run);
    control2: `positive_control`, `not_applicable()` or `not_run()` (None: not run)."""
    c2 = control2 or not_run()
    reasons = (
        list(control1["reasons"]) if control1 else ["the label-sensitivity controls were not run"]
    )
    reasons += c2["reasons"]
    na = [] if c2["applicable"] else [
        (f"The positive control does not apply ({c2.get('why')}): whether a selection known to "
         "help would be detected is not checked; this is not a failure.")
    ]  # fmt: skip
    if reasons:
        return [
            "This study cannot tell strategies apart, because " + "; ".join(reasons) + ".",
            "The verdicts below are uninformative.",
        ] + na
    if not c2["applicable"]:
        return [f"Labels matter here: {_label_words(control1)}."] + na
    both = (
        f"Both controls pass: labels matter here ({_label_words(control1)}) and a selection "
        f"known to help is detected ({_positive_words(c2)})."
    )
    return [both]


# ---------------------------------------------------------------- in the report


def control_set(controls: dict | None, control_labels, baseline: str) -> set:
    """The labels that are controls: ``control_labels`` and the positive control's name."""
    out = set(control_labels) | {(controls or {}).get("positive")} - {None}
    if baseline in out:
        raise ValueError(f"the baseline {baseline!r} cannot be a control")
    return out


def report_part(controls: dict | None, results: dict, baseline: str, diff: dict, n_boot, seed):
    """study.json's "controls": control 1 on the baseline's own rounds (its last round is what
    the no-new-labels and doubled-steps runs repeat), control 2 on the cleaned AULC differences.

    controls: {"label_sensitivity": {"no_new_labels_last": [S] or None, "doubled_last": [S] or
    None, "steps": shown as given} or None, "positive": a label or None, "kinds_available": bool,
    optional "min_rise"}; None: no controls were run. results, baseline: as
    `dal_jax.study.report.build` got them; diff: its cleaned paired differences to the baseline.
    """
    if controls is None:
        return {"informative": None, "preamble": [NO_CONTROLS]}
    ls = controls.get("label_sensitivity") or {}
    own = sorted({int(r["labeled"]) for r in results[baseline]["rounds"]})
    rs_acc = matrices(results[baseline], own)[0]
    c1 = label_sensitivity(
        rs_acc, own, ls.get("no_new_labels_last"), ls.get("doubled_last"), n_boot, seed,
        min_rise=controls.get("min_rise", 0.10),
    )  # fmt: skip
    c1["steps"] = ls.get("steps")
    name = controls.get("positive")
    if name:
        c2 = positive_control(diff.get(name, {}).get("aulc"), name)
    elif controls.get("kinds_available") is False:
        c2 = not_applicable(controls.get("positive_why") or "the pool has no object kinds")
    else:
        c2 = not_run()
    return {"label_sensitivity": c1, "positive": c2, "informative": informative(c1, c2),
            "preamble": verdict_preamble(c1, c2)}  # fmt: skip


# ---------------------------------------------------------------- the section


def _outcome(passed) -> str:
    return {True: "pass", False: "**FAIL**", None: "—"}[passed]


def _paired_row(what: str, d: dict | None, passed) -> list[str]:
    if d is None:
        return [what, "not run", "", "", "", _outcome(passed)]
    return [what, _pct(d["mean"], True), _ci(d["ci"], True), _p(d), str(d["n"]), _outcome(passed)]


def _control_rows(c: dict) -> list[list[str]]:
    """The rows of the control table (accuracy points)."""
    c1, c2 = c["label_sensitivity"], c["positive"]
    lo, hi = c1["labeled"]
    e = c1["label_effect"]
    effect_ok = e is not None and (e["ci"][0] or 0) > 0 and (e["mean"] or 0) >= c1["min_rise"]
    rows = [
        _paired_row(f"rise: RS at {hi} − RS at {lo} labels", c1["rise"], None),
        _paired_row(
            f"label effect: RS at {hi} − no new labels (needs ≥ {100 * c1['min_rise']:.0f})",
            e,
            effect_ok,
        ),
    ]
    d = c1["doubling"]
    if d is None:
        rows.append(
            ["doubled steps: shift of RS's last mean", "not run", "", "", "", _outcome(False)]
        )
    else:
        half = f"CI half-width {_pct(d['ci_half_width'])}"
        n = str(d["doubled"]["n"])
        rows.append(["doubled steps: shift of RS's last mean", _pct(d["shift"], True), half, "",
                     n, _outcome(d["enough"])])  # fmt: skip
    if not c2["applicable"]:
        rows.append(["positive control", f"not applicable: {c2.get('why')}", "", "", "", "—"])
    else:
        what = f"positive control '{c2['name']}': AULC − RS" if c2["name"] else "positive control"
        rows.append(_paired_row(what, c2["diff"], c2["passed"]))
    return rows


def markdown(rep: dict) -> list[str]:
    """The lines of study.md's section that says whether the study can see a selection effect."""
    c = rep["controls"]
    out = ["## Can this study tell strategies apart?", ""] + c["preamble"] + [""]
    if c["informative"] is None:
        return out
    head = ["control", "measured", "95 % CI", "Wilcoxon p", "seeds", "outcome"]
    out += _md_table(head, _control_rows(c)) + [""]
    steps = c["label_sensitivity"].get("steps")
    if steps is not None:
        shown = (
            ", ".join(f"{k}: {v}" for k, v in steps.items()) if isinstance(steps, dict) else steps
        )
        out += [f"Training steps of the controls: {shown}.", ""]
    return out


def table_lines(rep: dict) -> list[str]:
    """The terminal table's line on the controls, whatever the outcome (a failed control makes
    every verdict above it meaningless); none when no controls were run."""
    ctl = rep.get("controls", {})
    if ctl.get("informative") is None:
        return []
    if ctl["informative"]:
        return ["CONTROLS PASS: this study can see a selection effect"]
    return ["CONTROLS FAIL, verdicts uninformative: " + ctl["preamble"][0]]
