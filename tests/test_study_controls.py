"""The study controls (can a study see a selection effect at all?), what strategies picked and
the labels they save, on constructed studies whose answers are known by construction."""

import json

import numpy as np
import pytest
from PIL import Image

from dal_jax.evaluation import stats
from dal_jax.study import controls_report as sc
from dal_jax.study import figures as study_figures
from dal_jax.study import picks as study_picks
from dal_jax.study import report as sr

LABELED = [10, 20, 30, 40, 50, 60]
OFFSET = np.array([0.03, -0.02, 0.0, 0.05, -0.04, 0.01])  # per seed, kept across rounds
JITTER = np.array([0.01, -0.01, 0.0, 0.02, -0.02, 0.0])


def _results(acc, labeled=LABELED, strategy="x", picks=None):
    """[S, T] accuracies -> a results.json-like dict; picks: [T - 1][S][k] pool indices."""
    acc = np.asarray(acc, float)
    rounds = []
    for t, n in enumerate(labeled):
        sel = picks[t] if picks is not None and t < len(picks) else []
        rounds.append({"round": t, "labeled": n, "accuracy": acc[:, t].tolist(),
                       "collapsed": [False] * len(acc), "selected": sel, "selected_score": None,
                       "steps": 10, "diagnostics": {}})  # fmt: skip
    return {
        "strategy": strategy,
        "dataset": "synthetic_grasps",
        "seeds": len(acc),
        "rounds": rounds,
    }


def _rising(rise=0.2):
    """[6 seeds, 6 rounds]: 0.5 rising linearly by ``rise`` from the first to the last round."""
    return 0.5 + OFFSET[:, None] + rise * np.arange(6)[None] / 5


def _sensitivity(rs, shift=0.002):
    """Controls whose no-new-labels run stays at RS's first round (up to jitter) and whose
    doubled-steps run moves RS's last round by ``shift``."""
    return {"no_new_labels_last": (rs[:, 0] + JITTER).tolist(),
            "doubled_last": (rs[:, -1] + shift).tolist(), "steps": {"per_round": 10}}  # fmt: skip


def _study(rs, kinds_gain=0.05, dal_gain=0.0):
    """rs, a positive control 'kinds' and 'dal' = rs + gains (plus small seed noise)."""
    noise = np.random.default_rng(0).normal(0, 0.002, rs.shape)
    return {"rs": _results(rs, strategy="rs"),
            "kinds": _results(rs + kinds_gain + noise, strategy="kinds"),
            "dal": _results(rs + dal_gain - noise, strategy="dal")}  # fmt: skip


def _controls(rs, shift=0.002):
    return {"label_sensitivity": _sensitivity(rs, shift), "positive": "kinds",
            "kinds_available": True}  # fmt: skip


# ---------------------------------------------------------------- control 1


def test_label_sensitivity_passes_on_a_rising_curve():
    rs = _rising()
    c = _sensitivity(rs)
    out = sc.label_sensitivity(rs, LABELED, c["no_new_labels_last"], c["doubled_last"], 2000, 0)
    assert out["passed"] and out["reasons"] == []
    assert out["rise"]["mean"] == pytest.approx(0.2) and out["rise"]["ci"] == pytest.approx(
        [0.2, 0.2]
    )
    effect = rs[:, -1] - np.asarray(c["no_new_labels_last"])
    assert out["label_effect"]["mean"] == pytest.approx(effect.mean())
    assert out["label_effect"]["n"] == 6 and out["label_effect"]["ci"][0] > 0.1
    d = out["doubling"]
    assert d["shift"] == pytest.approx(0.002) and d["enough"]
    half = stats.t975(5) * np.std(rs[:, -1], ddof=1) / np.sqrt(6)
    assert d["ci_half_width"] == pytest.approx(half)
    assert out["labeled"] == [10, 60] and json.loads(json.dumps(out, allow_nan=False)) == out


def test_label_sensitivity_fails_on_a_flat_curve_and_missing_runs():
    rs = _rising(rise=0.0)
    c = _sensitivity(rs)
    out = sc.label_sensitivity(rs, LABELED, c["no_new_labels_last"], c["doubled_last"], 2000, 0)
    assert not out["passed"] and len(out["reasons"]) == 1
    assert out["reasons"][0].startswith("random sampling's accuracy rises by only +0.0 points")
    assert "from 10 to 60 labels" in out["reasons"][0] and ">= 10 points" in out["reasons"][0]
    none = sc.label_sensitivity(rs, LABELED, None, None, 100, 0)
    assert not none["passed"] and none["label_effect"] is None and none["doubling"] is None
    assert none["reasons"] == [
        "the no-new-labels control was not run",
        "the doubled-steps control was not run",
    ]


def test_label_sensitivity_fails_when_doubled_steps_move_the_last_round():
    rs = _rising()
    c = _sensitivity(rs, shift=0.06)
    out = sc.label_sensitivity(rs, LABELED, c["no_new_labels_last"], c["doubled_last"], 2000, 0)
    assert not out["passed"] and out["label_effect"]["ci"][0] > 0
    d = out["doubling"]
    assert d["shift"] == pytest.approx(0.06) and not d["enough"] and d["ci_half_width"] < 0.06
    (reason,) = out["reasons"]
    assert reason.startswith(
        "twice the training steps move random sampling's last-round mean by +6.0"
    )
    assert reason.endswith("rounds are not trained to convergence")
    assert f"({100 * d['ci_half_width']:.1f})" in reason


# ---------------------------------------------------------------- control 2


def test_positive_control():
    bad = sc.positive_control({"mean": 0.004, "ci": [-0.012, 0.02], "p": 0.5, "n": 6}, "kinds")
    assert not bad["passed"]
    reason = (
        "the positive control 'kinds' (picks that balance the object kinds, using the ground "
        "truth no real strategy may know) does not beat random sampling: AULC +0.4 (95 % CI "
        "-1.2 to +2.0); selection that is known to help cannot be seen here"
    )
    assert bad["reasons"] == [reason]
    below = sc.positive_control({"mean": -0.03, "ci": [-0.05, -0.01], "p": 0.03, "n": 6}, "x")
    assert not below["passed"] and "'x' does not beat" in below["reasons"][0]
    good = sc.positive_control({"mean": 0.03, "ci": [0.01, 0.05], "p": 0.03, "n": 6}, "kinds")
    assert good["passed"] and good["reasons"] == []
    assert not sc.positive_control(None, "kinds")["passed"]


def test_preamble_words():
    rs = _rising()
    c = _sensitivity(rs)
    c1 = sc.label_sensitivity(rs, LABELED, c["no_new_labels_last"], c["doubled_last"], 500, 0)
    good = sc.positive_control({"mean": 0.03, "ci": [0.01, 0.05], "p": 0.03, "n": 6}, "kinds")
    (both,) = sc.verdict_preamble(c1, good)
    assert both.startswith("Both controls pass: labels matter here (random sampling gains +20.0")
    assert "beats random sampling by +3.0 AULC points" in both
    na = sc.verdict_preamble(c1, sc.not_applicable())
    assert na[0].startswith("Labels matter here") and "does not apply" in na[1]
    assert sc.informative(c1, sc.not_applicable()) and not sc.informative(c1, sc.not_run())
    fail = sc.verdict_preamble(sc.label_sensitivity(rs, LABELED, None, None, 100, 0), good)
    because = (
        "This study cannot tell strategies apart, because the no-new-labels control was not run; "
        "the doubled-steps control was not run."
    )
    assert fail == [because, "The verdicts below are uninformative."]


# ---------------------------------------------------------------- in the report


def test_report_with_passing_controls_and_control_labels():
    rs = _rising()
    rep = sr.build(_study(rs), "rs", n_boot=1000, controls=_controls(rs), control_labels=("kinds",))
    c = rep["controls"]
    assert c["informative"] is True and c["positive"]["passed"] and c["label_sensitivity"]["passed"]
    assert c["preamble"][0].startswith("Both controls pass")
    assert c["label_sensitivity"]["steps"] == {"per_round": 10}
    # The control has AULC and a difference, but no verdict and no rank.
    assert rep["control_labels"] == ["kinds"] and "kinds" in rep["aulc"] and "kinds" in rep["diff"]
    assert set(rep["mean_rank"]) == {"rs", "dal"}
    assert not any("kinds" in v for v in rep["verdict"]) and len(rep["verdict"]) == 2
    assert not any(v.startswith("(uninformative)") for v in rep["verdict"])
    assert c["positive"]["diff"] == rep["diff"]["kinds"]["aulc"]
    md = sr.markdown(rep)
    assert md.index("## Can this study tell strategies apart?") < md.index("## Verdicts")
    assert "| kinds (control) |" in md and "kinds (control)" in sr.table(rep)
    assert sr.table(rep).splitlines()[-1] == "CONTROLS PASS: this study can see a selection effect"
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep


def test_report_with_failing_controls_marks_every_verdict():
    rs = _rising(rise=0.0)
    rep = sr.build(_study(rs, dal_gain=0.05), "rs", n_boot=1000, controls=_controls(rs))
    assert rep["controls"]["informative"] is False and rep["control_labels"] == ["kinds"]
    assert all(v.startswith("(uninformative) ") for v in rep["verdict"])
    md = sr.markdown(rep)
    assert "This study cannot tell strategies apart, because random sampling's accuracy" in md
    assert "The verdicts below are uninformative." in md
    verdicts = md.split("## Verdicts\n\n")[1].split("\n\n")[0].splitlines()
    assert len(verdicts) == 2 and all(v.startswith("- (uninformative) ") for v in verdicts)
    assert "**FAIL**" in md and sr.table(rep).splitlines()[-1].startswith("CONTROLS FAIL")


def test_report_positive_control_below_zero_fails():
    rs = _rising()
    rep = sr.build(_study(rs, kinds_gain=-0.03), "rs", n_boot=1000, controls=_controls(rs))
    c = rep["controls"]
    assert c["label_sensitivity"]["passed"] and not c["positive"]["passed"]
    assert rep["diff"]["kinds"]["aulc"]["ci"][1] < 0 and c["informative"] is False
    assert "'kinds'" in c["preamble"][0] and "does not beat random sampling" in c["preamble"][0]


def test_report_without_controls_and_without_kinds():
    rs = _rising()
    results = {k: v for k, v in _study(rs, dal_gain=0.05).items() if k != "kinds"}
    old = sr.build(results, "rs", n_boot=500)
    assert old["controls"] == {"informative": None, "preamble": [sc.NO_CONTROLS]}
    assert old["verdict"][1].startswith("dal: beats rs") and "CONTROLS" not in sr.table(old)
    ctl = {"label_sensitivity": _sensitivity(rs), "positive": None, "kinds_available": False}
    rep = sr.build(results, "rs", n_boot=500, controls=ctl)
    assert rep["controls"]["informative"] is True and not rep["controls"]["positive"]["applicable"]
    assert "does not apply (the pool has no object kinds)" in sr.markdown(rep)
    ctl["kinds_available"] = True  # kinds there, but no positive control run: unknown, so fails
    assert sr.build(results, "rs", n_boot=500, controls=ctl)["controls"]["informative"] is False


# ---------------------------------------------------------------- picks


KINDS = np.array([[2, 0, 0], [1, 1, 0], [0, 0, 1], [3, 0, 0], [0, 1, 0], [1, 0, 1]])
POOL = {"kind_names": ["a", "b", "c"], "kinds": KINDS, "grasps": [5, 3, 2, 8, 1, 4],
        "object_pixels": [100, 200, 300, 400, 500, 600]}  # fmt: skip
PICKS = [[[2, 4], [5, 2]], [[0], []]]  # round 0: both seeds; round 1: seed 0 only


def test_pick_composition_by_hand():
    res = _results(np.full((2, 3), 0.5), labeled=[2, 4, 5], picks=PICKS)
    out = study_picks.pick_composition(res, POOL)
    # Pool: 7 a, 2 b, 2 c objects; b and c are below 1/3 of them.
    assert out["rare_kinds"] == ["b", "c"] and out["pool"]["images"] == 6
    assert out["pool"]["kind_share"] == pytest.approx([7 / 11, 2 / 11, 2 / 11])
    assert out["pool"]["rare_share"] == pytest.approx(4 / 11)
    assert out["pool"]["grasps"] == pytest.approx(23 / 6) and out["pool"]["object_pixels"] == 350
    r0, r1 = out["rounds"]  # the last round selected nothing
    # Round 0 picks images 2, 4, 5, 2: objects a 1, b 1, c 3.
    assert (r0["labeled"], r0["picked"], r0["seeds"]) == (2, 4, 2)
    assert r0["kind_share"] == pytest.approx([0.2, 0.2, 0.6]) and r0["rare_share"] == 0.8
    assert r0["grasps"] == 9 / 4 and r0["object_pixels"] == 425
    assert (r1["picked"], r1["seeds"], r1["kind_share"], r1["rare_share"]) == (1, 1, [1, 0, 0], 0)
    assert (r1["grasps"], r1["object_pixels"]) == (5, 100)
    plain = study_picks.pick_composition(res, {**POOL, "kinds": None, "kind_names": None})
    assert "kind_names" not in plain and "kind_share" not in plain["rounds"][0]
    assert plain["rounds"][0]["object_pixels"] == 425


# ---------------------------------------------------------------- labels saved


def _linear(shift, noise=0.0):
    """[5 seeds, 5 rounds] on 20..100 labels: 0.3 + 0.005 (labels + shift - 20) + seed offset,
    plus per-(seed, labels) noise that moves with the curve."""
    labeled = np.array([20, 40, 60, 80, 100])
    x = labeled[None] + shift
    wiggle = noise * np.sin(x * 0.37 + np.arange(5)[:, None])
    return 0.3 + 0.005 * (x - 20) + OFFSET[:5, None] + wiggle, labeled.tolist()


@pytest.mark.parametrize("noise", [0.0, 0.004])
def test_labels_saved(noise):
    rs, labeled = _linear(0, noise)
    ahead, _ = _linear(20, noise)  # the strategy at L has RS's accuracy at L + 20
    out = study_picks.labels_saved(rs, ahead, labeled, 500, 0)
    for r in out[:-1]:
        assert r["flag"] is None and r["needed"] == pytest.approx(r["labeled"] + 20)
        assert r["saved"] == pytest.approx(20) and r["ci"] == pytest.approx([20, 20])
    last = out[-1]  # above RS's best: RS needs more than 100
    assert last["flag"] == "above" and last["needed"] is None and last["saved"] is None
    assert last["censored"] == 1.0 and last["ci"] == [None, None]
    same = study_picks.labels_saved(rs, rs, labeled, 500, 0)
    assert [r["saved"] for r in same] == pytest.approx([0] * 5)
    behind = study_picks.labels_saved(rs, rs - 0.2, labeled, 500, 0)
    assert behind[0]["flag"] == "below" and behind[0]["below"] == 1.0


def test_labels_saved_bootstrap_ci_around_a_noisy_gain():
    rng = np.random.default_rng(1)
    rs, labeled = _linear(0)
    noisy = rs + rng.normal(0, 0.01, rs.shape)
    strat = rs + 0.05 + rng.normal(0, 0.01, rs.shape)  # about 10 labels ahead
    r = study_picks.labels_saved(noisy, strat, labeled, 2000, 0)[2]
    assert r["flag"] is None and r["n"] == 5 and r["censored"] == 0
    assert r["ci"][0] < r["saved"] < r["ci"][1] and r["ci"][0] > 0


# ---------------------------------------------------------------- files


def _full_report():
    """A three-round study with picks on the six-image pool and passing controls."""
    rs = _rising()[:, :3]
    picks = [[[0, 1], [2, 3], [4, 5], [0, 2], [1, 3], [4, 0]], [[2, 4]] * 6]
    gains = {"rs": 0.0, "kinds": 0.05, "dal": 0.01}
    study = {k: _results(rs + g, LABELED[:3], k, picks) for k, g in gains.items()}
    return sr.build(study, "rs", n_boot=300, controls=_controls(rs), pool_info=POOL)


def test_report_picks_and_saved_sections_and_figures(tmp_path):
    rep = _full_report()
    assert set(rep["picks"]) == {"rs", "kinds", "dal"} and set(rep["labels_saved"]) == {
        "kinds",
        "dal",
    }
    assert rep["picks"]["rs"]["rounds"][1]["kind_share"] == pytest.approx([0, 0.5, 0.5])
    md = sr.markdown(rep)
    assert md.index("## What each strategy picked") < md.index("## Labels saved against random")
    assert "### kinds (control)" in md and "| pool | 6 | 63.6 | 18.2 | 18.2 | 36.4 |" in md
    assert "more than 30" in md  # 'kinds' is 5 points above RS's best in its last round
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep
    size = study_figures.plot_picks(tmp_path / "picks.png", rep)
    with Image.open(tmp_path / "picks.png") as im:
        assert im.size == size
    size = study_figures.plot_controls(tmp_path / "controls.png", rep)
    with Image.open(tmp_path / "controls.png") as im:
        assert im.size == size == (900, 360)
    (tmp_path / "study.md").write_text(md)
    assert (tmp_path / "study.md").read_text().startswith("# Active-learning study\n\n## Can this")


def test_figures_without_controls_or_kinds(tmp_path):
    rs = _rising()
    results = {k: v for k, v in _study(rs).items() if k != "kinds"}
    rep = sr.build(results, "rs", n_boot=200, pool_info={**POOL, "kinds": None})
    study_figures.plot_picks(tmp_path / "picks.png", rep)  # no selections: an empty note
    study_figures.plot_controls(tmp_path / "controls.png", rep)
    assert (tmp_path / "picks.png").stat().st_size > 0
    assert (tmp_path / "controls.png").stat().st_size > 0
