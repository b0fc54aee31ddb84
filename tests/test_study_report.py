"""The study report: its statistics against scipy, its verdict on constructed studies, and the
files it writes."""

import json

import numpy as np
import pytest
import scipy.stats
from PIL import Image

from dal_jax.study import figures as study_figures
from dal_jax.study import report as sr
from dal_jax.study import runner

LABELED = [20, 40, 60, 80, 100]


def _results(acc, labeled=LABELED, collapsed=None, strategy="x", k=3):
    """[S, T] accuracies (None allowed) -> a results.json-like dict."""
    s = len(acc)
    rounds = []
    for t, n in enumerate(labeled):
        last = t == len(labeled) - 1
        rounds.append({
            "round": t,
            "labeled": n,
            "accuracy": [acc[i][t] for i in range(s)],
            "collapsed": [bool(collapsed is not None and collapsed[i][t]) for i in range(s)],
            "steps": 10,
            "diagnostics": {},
            "selected": [] if last else [[(7 * t + j + i) % 50 for j in range(k)]
                                         for i in range(s)],
            "selected_score": [] if last else [[0.1 * j for j in range(k)] for _ in range(s)],
        })  # fmt: skip
    return {"strategy": strategy, "dataset": "synthetic_grasps", "alpha": 0.1, "seeds": s,
            "rounds": rounds}  # fmt: skip


def _study(s=8, seed=0):
    """rs (baseline), dal = rs + 0.1 + small noise, same = rs exactly."""
    rng = np.random.default_rng(seed)
    base = np.clip(0.3 + 0.1 * np.arange(5) + rng.normal(0, 0.05, (s, 5)), 0, 1)
    better = np.clip(base + 0.1 + rng.normal(0, 0.01, (s, 5)), 0, 1)
    return {
        "rs": _results(base.tolist(), strategy="rs"),
        "dal": _results(better.tolist(), strategy="dal"),
        "same": _results(base.tolist(), strategy="same"),
    }


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize("n", range(6, 13))
def test_wilcoxon_exact_matches_scipy(n):
    rng = np.random.default_rng(n)
    for shift in (0.0, 0.5, 1.5):
        d = rng.normal(shift, 1, n)
        ref = scipy.stats.wilcoxon(d, zero_method="wilcox", method="exact").pvalue
        assert sr.wilcoxon(d) == pytest.approx(ref, rel=1e-10)


def test_wilcoxon_approx_matches_scipy():
    rng = np.random.default_rng(1)
    cases = [rng.normal(0.3, 1, 30), rng.normal(0, 1, 30)]  # n > 25: normal approximation
    cases += [np.round(rng.normal(0.5, 1, 30), 1)]  # ties
    for d in cases:
        ref = scipy.stats.wilcoxon(d, zero_method="wilcox", method="asymptotic").pvalue
        assert sr.wilcoxon(d) == pytest.approx(ref, rel=1e-10)


def _brute_force_p(d):
    """The exact two-sided p by enumerating all 2^n sign patterns of the (average) ranks of
    the non-zero differences."""
    d = d[d != 0]
    ranks = scipy.stats.rankdata(np.abs(d))
    w = ranks[d > 0].sum()
    signs = np.array(np.meshgrid(*[[0, 1]] * len(d))).reshape(len(d), -1).T
    null = signs @ ranks
    return min(1.0, 2 * min(np.mean(null <= w + 1e-9), np.mean(null >= w - 1e-9)))


def test_wilcoxon_exact_with_ties_enumerates_the_sign_patterns():
    rng = np.random.default_rng(4)
    cases = [np.round(rng.normal(0.4, 1, 12)), np.array([1.0, 2, 2, 3, -1, 4, 5, 5, -2, 6])]
    cases += [np.full(5, 0.05), np.array([0.05, 0.05, 0.05, -0.05, 0.1])]
    for d in cases:
        assert sr.wilcoxon(d) == pytest.approx(_brute_force_p(d), rel=1e-10), d
    # All five seeds 5 points better: one sign pattern of 32 is that extreme, each way.
    assert sr.wilcoxon(np.full(5, 0.05)) == pytest.approx(2 / 32)


def test_wilcoxon_float_near_ties_are_ties():
    # Differences of accuracies: 0.3 - 0.1 and 0.7 - 0.5 are 0.2 only up to the last bits.
    d = np.array([0.3 - 0.1, 0.5 - 0.3, 0.7 - 0.5, 0.4, 0.6, -0.1, 0.8, 0.9])
    clean = np.array([0.2, 0.2, 0.2, 0.4, 0.6, -0.1, 0.8, 0.9])
    assert sr.wilcoxon(d) == pytest.approx(_brute_force_p(clean), rel=1e-10)
    assert sr.wilcoxon([0.3 - 0.1 - 0.2, 0.0]) == 1.0  # 1e-17 is a zero difference


def test_wilcoxon_zeros_and_nans_dropped():
    d = np.array([0.3, -0.1, 0.5, 0.7, 0.2, 0.9, 0.4])
    with_junk = np.concatenate([d, [0.0, np.nan, 0.0]])
    assert sr.wilcoxon(with_junk) == sr.wilcoxon(d)
    # All seven positive with distinct ranks: only 2 of 2^7 sign patterns are as extreme.
    assert sr.wilcoxon(np.abs(d)) == pytest.approx(2 / 2**7)
    assert sr.wilcoxon([0.0, 0.0, np.nan]) == 1.0
    assert sr.wilcoxon([]) == 1.0


def test_t_quantiles_tabulated():
    for df in range(1, 31):
        assert sr.t975(df) == pytest.approx(scipy.stats.t.ppf(0.975, df), abs=1e-4)
    assert sr.t975(31) == 1.96


def test_aulc():
    x = np.array([20, 40, 60, 100])
    y = 0.2 + 0.005 * (x - 20)  # linear in the labelled count, uneven spacing
    assert sr.aulc(x, y) == pytest.approx((y[0] + y[-1]) / 2)
    curves = np.random.default_rng(0).random((3, 4, 4))
    ref = np.trapezoid(curves, x, axis=-1) / 80
    np.testing.assert_allclose(sr.aulc(x, curves), ref, rtol=1e-12)
    assert sr.aulc([20], np.array([[0.7], [0.4]])).tolist() == [0.7, 0.4]
    assert np.isnan(sr.aulc(x, [0.1, np.nan, 0.3, 0.4]))


def test_bootstrap_ci():
    rng = np.random.default_rng(0)
    big = rng.normal(0.5, 0.1, 100)
    small = big[:5]
    lo, hi = sr.bootstrap_ci(small, n_boot=2000)
    assert lo < small.mean() < hi
    lo2, hi2 = sr.bootstrap_ci(big, n_boot=2000)
    assert lo2 < big.mean() < hi2 and hi2 - lo2 < hi - lo
    assert sr.bootstrap_ci(small, seed=3) == sr.bootstrap_ci(small, seed=3)
    assert sr.bootstrap_ci(small, seed=3) != sr.bootstrap_ci(small, seed=4)
    assert sr.bootstrap_ci(np.append(small, np.nan), seed=3) == sr.bootstrap_ci(small, seed=3)
    assert all(np.isnan(sr.bootstrap_ci([np.nan])))


def test_mean_ranks_with_ties():
    acc = np.array([
        [[0.5, 0.9], [0.2, 0.3], [0.7, np.nan]],
        [[0.5, 0.1], [0.4, 0.3], [0.1, 0.2]],
        [[0.1, 0.4], [0.4, 0.3], [0.3, 0.5]],
    ])  # [K=3, S=3, T=2]  # fmt: skip
    ranks = sr.mean_ranks(acc)
    ref = np.zeros((3, 2))
    for t in range(2):
        seeds = [s for s in range(3) if not np.isnan(acc[:, s, t]).any()]
        ref[:, t] = np.mean([scipy.stats.rankdata(-acc[:, s, t]) for s in seeds], axis=0)
    np.testing.assert_allclose(ranks, ref)
    # Seed 0, round 0: two tied for best share rank 1.5.
    np.testing.assert_allclose(sr.mean_ranks(acc[:, :1, :1])[:, 0], [1.5, 1.5, 3])


# ---------------------------------------------------------------- build


def test_build_verdicts():
    rep = sr.build(_study(), "rs", n_boot=2000)
    assert rep["labeled"] == LABELED and not rep["truncated"] and rep["caveat"] is None
    d = rep["diff"]["dal"]["aulc"]
    assert d["n"] == 8 and d["ci"][0] > 0 and d["p"] < 0.05
    assert d["mean"] == pytest.approx(0.1, abs=0.01)
    assert all(r["ci"][0] > 0 and r["p"] < 0.05 for r in rep["diff"]["dal"]["rounds"])
    same = rep["diff"]["same"]["aulc"]
    assert same["mean"] == 0 and same["p"] == 1.0 and same["ci"] == [0, 0]
    verdict = {s.split(":")[0]: s for s in rep["verdict"]}
    assert "dal: beats rs" in verdict["dal"] and "+10." in verdict["dal"]
    assert "same: no difference from rs detectable" in verdict["same"]
    assert rep["mean_rank"]["dal"] == [1.0] * 5
    assert rep["aulc"]["dal"]["mean"] > rep["aulc"]["rs"]["mean"]
    assert len(rep["aulc"]["rs"]["per_seed"]) == 8
    a = _study()["rs"]["rounds"][4]["accuracy"]
    r4 = rep["accuracy"]["rs"][4]
    assert r4["std"] == pytest.approx(np.std(a, ddof=1)) and r4["n"] == 8
    half = scipy.stats.t.ppf(0.975, 7) * r4["std"] / np.sqrt(8)
    np.testing.assert_allclose(r4["ci"], [np.mean(a) - half, np.mean(a) + half], rtol=1e-4)


def test_build_loses_and_tentative():
    study = _study(s=8)
    base = np.array([r["accuracy"] for r in study["rs"]["rounds"]]).T
    study["worse"] = _results((base - 0.05).tolist())
    study["short"] = _results((base[:3] + 0.1).tolist())  # 3 seeds: no Wilcoxon p below 0.25
    rep = sr.build(study, "rs", n_boot=2000)
    verdict = {s.split(":")[0]: s for s in rep["verdict"]}
    assert "worse: loses to rs" in verdict["worse"] and rep["diff"]["worse"]["aulc"]["ci"][1] < 0
    assert rep["diff"]["short"]["aulc"]["n"] == 3
    assert "beats rs" in verdict["short"] and "tentative" in verdict["short"]
    assert "tentative" not in verdict["worse"]


def test_build_collapsed_none_and_truncation():
    study = _study(s=4)
    acc = np.array([r["accuracy"] for r in study["dal"]["rounds"]]).T.tolist()
    acc[1][2] = None  # diverged run
    bad = np.zeros((4, 5), bool)
    bad[0, 1:3] = bad[2, 4] = True
    study["dal"] = _results(acc, collapsed=bad)
    base = np.array([r["accuracy"] for r in study["rs"]["rounds"]]).T
    study["partial"] = _results(base[:, :3].tolist(), labeled=LABELED[:3])
    rep = sr.build(study, "rs", n_boot=500)
    assert rep["labeled"] == [20, 40, 60] and rep["truncated"]
    assert "truncated" in rep["caveat"] and "partial 3" in rep["caveat"]
    assert rep["collapsed"]["dal"] == {"trials": 1, "cells": 2, "seeds": 4}  # round 4 cut off
    assert rep["collapsed"]["rs"]["trials"] == 0
    assert rep["accuracy"]["dal"][2]["n"] == 3
    assert rep["aulc"]["dal"]["per_seed"][1] is None and rep["aulc"]["dal"]["n"] == 3
    assert rep["diff"]["dal"]["aulc"]["n"] == 3
    md = sr.markdown(rep)
    assert "**Caveat:**" in md and "**1 collapsed** of 4" in md
    assert md.index("beats rs") < md.index("## Accuracy per round")
    text = sr.table(rep)
    assert "truncated" in text and len(text.splitlines()) == 1 + 4 + 1
    with pytest.raises(ValueError, match="baseline"):
        sr.build(study, "nope")


def test_build_upper_and_json_clean():
    upper = {"kind": "supervised", "labeled": 500, "accuracy": [0.9, 0.92, None]}
    rep = sr.build(_study(s=3), "rs", upper=upper, n_boot=200)
    assert rep["upper"]["labeled"] == 500 and rep["upper"]["mean"] == pytest.approx(0.91)
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep  # no numpy types, no NaN
    assert "all 500 labelled" in sr.markdown(rep)


# ---------------------------------------------------------------- files


def test_write_files(tmp_path):
    results = _study(s=4)
    upper = {"kind": "supervised", "labeled": 500, "accuracy": [0.9, 0.92]}
    rep = runner.write_report(tmp_path / "out", results, "rs", upper=upper, n_boot=300)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["study.json", "study.md", "study.png"]
    assert json.loads((out / "study.json").read_text()) == rep
    assert rep == sr.build(results, "rs", upper=upper, n_boot=300)
    assert (out / "study.md").read_text() == sr.markdown(rep)
    with Image.open(out / "study.png") as im:
        assert im.size == (640, 420)


def test_plot_selected_grows_with_rounds(tmp_path):
    images = np.random.default_rng(0).random((50, 16, 16))
    sizes = []
    for n_rounds in (2, 4):
        res = _results([[0.5] * n_rounds] * 2, labeled=LABELED[:n_rounds], k=25)
        res["rounds"][0]["selected_score"] = None  # absent scores: titled by pool index
        path = tmp_path / f"sel{n_rounds}.png"
        size = study_figures.plot_selected(path, images, res, seed_index=1, max_per_round=10)
        with Image.open(path) as im:
            assert im.size == size
            sizes.append(im.size)
    assert sizes[1][1] > sizes[0][1] and sizes[1][0] == sizes[0][0]
