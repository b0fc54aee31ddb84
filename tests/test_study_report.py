"""The study report: its statistics (reference values, and the rules around scipy.stats), its
verdict on constructed studies, the files it writes, the results.json reader it shares with
experiments.compare and the workdir check, and the mean ± std table both write."""

import ast
import json
import pathlib

import numpy as np
import pytest
import scipy.stats
from PIL import Image

from dal_jax.evaluation import stats
from dal_jax.experiment import results as results_file
from dal_jax.experiment import workdir
from dal_jax.study import figures as study_figures
from dal_jax.study import report as sr
from dal_jax.study import runner
from experiments import compare

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
        assert stats.wilcoxon(d) == pytest.approx(ref, rel=1e-10)


def test_wilcoxon_approx_matches_scipy():
    rng = np.random.default_rng(1)
    cases = [rng.normal(0.3, 1, 30), rng.normal(0, 1, 30)]  # n > 25: normal approximation
    cases += [np.round(rng.normal(0.5, 1, 30), 1)]  # ties
    for d in cases:
        ref = scipy.stats.wilcoxon(d, zero_method="wilcox", method="asymptotic").pvalue
        assert stats.wilcoxon(d) == pytest.approx(ref, rel=1e-10)


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
        assert stats.wilcoxon(d) == pytest.approx(_brute_force_p(d), rel=1e-10), d
    # All five seeds 5 points better: one sign pattern of 32 is that extreme, each way.
    assert stats.wilcoxon(np.full(5, 0.05)) == pytest.approx(2 / 32)


def test_wilcoxon_float_near_ties_are_ties():
    # Differences of accuracies: 0.3 - 0.1 and 0.7 - 0.5 are 0.2 only up to the last bits.
    d = np.array([0.3 - 0.1, 0.5 - 0.3, 0.7 - 0.5, 0.4, 0.6, -0.1, 0.8, 0.9])
    clean = np.array([0.2, 0.2, 0.2, 0.4, 0.6, -0.1, 0.8, 0.9])
    assert stats.wilcoxon(d) == pytest.approx(_brute_force_p(clean), rel=1e-10)
    assert stats.wilcoxon([0.3 - 0.1 - 0.2, 0.0]) == 1.0  # 1e-17 is a zero difference


def test_wilcoxon_zeros_and_nans_dropped():
    d = np.array([0.3, -0.1, 0.5, 0.7, 0.2, 0.9, 0.4])
    with_junk = np.concatenate([d, [0.0, np.nan, 0.0]])
    assert stats.wilcoxon(with_junk) == stats.wilcoxon(d)
    # All seven positive with distinct ranks: only 2 of 2^7 sign patterns are as extreme.
    assert stats.wilcoxon(np.abs(d)) == pytest.approx(2 / 2**7)
    assert stats.wilcoxon([0.0, 0.0, np.nan]) == 1.0
    assert stats.wilcoxon([]) == 1.0


def test_wilcoxon_with_ties_beyond_the_enumeration_is_the_tie_corrected_normal_approximation():
    d = np.round(np.random.default_rng(2).normal(0.4, 1, 20), 1)  # 20 pairs with ties
    assert np.unique(np.abs(d)).size < d.size and stats.EXACT_TIES_MAX_N < d.size
    ref = scipy.stats.wilcoxon(d, zero_method="wilcox", correction=False, method="approx").pvalue
    assert stats.wilcoxon(d) == pytest.approx(ref, rel=1e-10)
    # 13 pairs with ties: still every sign pattern.
    assert stats.wilcoxon(d[:13]) == pytest.approx(_brute_force_p(d[:13]), rel=1e-10)


def test_t_quantiles_match_the_table():
    # Student's t 0.975 quantiles as printed in statistics tables.
    table = {1: 12.7062, 2: 4.3027, 5: 2.5706, 10: 2.2281, 30: 2.0423, 60: 2.0003, 120: 1.9799}
    for df, q in table.items():
        assert stats.t975(df) == pytest.approx(q, abs=1e-4)
    assert stats.t975(10**6) == pytest.approx(1.96, abs=1e-3)  # the normal quantile in the limit


def test_aulc():
    x = np.array([20, 40, 60, 100])
    y = 0.2 + 0.005 * (x - 20)  # linear in the labelled count, uneven spacing
    assert stats.aulc(x, y) == pytest.approx((y[0] + y[-1]) / 2)
    curves = np.random.default_rng(0).random((3, 4, 4))
    ref = np.trapezoid(curves, x, axis=-1) / 80
    np.testing.assert_allclose(stats.aulc(x, curves), ref, rtol=1e-12)
    assert stats.aulc([20], np.array([[0.7], [0.4]])).tolist() == [0.7, 0.4]
    assert np.isnan(stats.aulc(x, [0.1, np.nan, 0.3, 0.4]))


def test_bootstrap_ci():
    rng = np.random.default_rng(0)
    big = rng.normal(0.5, 0.1, 100)
    small = big[:5]
    lo, hi = stats.bootstrap_ci(small, n_boot=2000)
    assert lo < small.mean() < hi
    lo2, hi2 = stats.bootstrap_ci(big, n_boot=2000)
    assert lo2 < big.mean() < hi2 and hi2 - lo2 < hi - lo
    assert stats.bootstrap_ci(small, seed=3) == stats.bootstrap_ci(small, seed=3)
    assert stats.bootstrap_ci(small, seed=3) != stats.bootstrap_ci(small, seed=4)
    assert stats.bootstrap_ci(np.append(small, np.nan), seed=3) == stats.bootstrap_ci(small, seed=3)
    assert all(np.isnan(stats.bootstrap_ci([np.nan])))


def test_bootstrap_ci_of_one_value_and_of_many():
    assert stats.bootstrap_ci([0.3, np.nan]) == (0.3, 0.3)  # every resample of one value is it
    v = np.random.default_rng(5).normal(0.5, 0.1, 400)
    lo, hi = stats.bootstrap_ci(v, n_boot=4000, seed=1)
    half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)  # the mean is close to normal here
    assert lo == pytest.approx(v.mean() - half, abs=0.2 * half)
    assert hi == pytest.approx(v.mean() + half, abs=0.2 * half)


def test_mean_ranks_with_ties():
    acc = np.array([
        [[0.5, 0.9], [0.2, 0.3], [0.7, np.nan]],
        [[0.5, 0.1], [0.4, 0.3], [0.1, 0.2]],
        [[0.1, 0.4], [0.4, 0.3], [0.3, 0.5]],
    ])  # [K=3, S=3, T=2]  # fmt: skip
    ranks = stats.mean_ranks(acc)
    ref = np.zeros((3, 2))
    for t in range(2):
        seeds = [s for s in range(3) if not np.isnan(acc[:, s, t]).any()]
        ref[:, t] = np.mean([scipy.stats.rankdata(-acc[:, s, t]) for s in seeds], axis=0)
    np.testing.assert_allclose(ranks, ref)
    # Seed 0, round 0: two tied for best share rank 1.5.
    np.testing.assert_allclose(stats.mean_ranks(acc[:, :1, :1])[:, 0], [1.5, 1.5, 3])


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The ``modules`` a file imports, at its top or inside functions; ``from package import
    module`` counts as the module (the package's __init__ is imported first either way)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            full = (f"{node.module}.{a.name}" for a in node.names)
            out |= {m if m in modules else node.module for m in full}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out & modules


def test_dal_jax_imports_go_one_way():
    """No module of dal_jax imports one that imports it back, however indirectly (the study
    report and its controls section once did, one of them lazily)."""
    root = pathlib.Path(sr.__file__).resolve().parents[2]
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (root / "dal_jax").rglob("*.py")}  # fmt: skip
    graph = {m: _imports(p, set(files)) - {m} for m, p in files.items()}
    done, path = set(), []

    def visit(m):
        assert m not in path, "import circle: " + " -> ".join(path[path.index(m) :] + [m])
        if m in done:
            return
        path.append(m)
        for dep in sorted(graph[m]):
            visit(dep)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
    assert "dal_jax.study.report" in graph["dal_jax.study.runner"]  # the graph is not empty


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


def _write_grid(folder: pathlib.Path, alphas) -> None:
    for a in alphas:
        res = _results([[0.5] * 5] * 2, strategy="dal")
        res["alpha"] = a
        (folder / f"alpha_{a:g}").mkdir(parents=True)
        (folder / f"alpha_{a:g}" / "results.json").write_text(json.dumps(res))


def test_one_results_reader_for_compare_the_study_and_the_workdir_check(tmp_path):
    grid = tmp_path / "grid"
    _write_grid(grid, (10, 2, 0.5))  # alpha_10 sorts before alpha_2 by name
    found = results_file.read_folder(grid)
    assert [p.parent.name for p in found] == ["alpha_0.5", "alpha_2", "alpha_10"]
    assert list(runner._load_results(grid)) == ["alpha 0.5", "alpha 2", "alpha 10"]
    labels = ["DAL (alpha 0.5)", "DAL (alpha 2)", "DAL (alpha 10)"]
    assert list(compare.find_results([grid])) == labels
    assert workdir._results_files(grid) == found
    single = tmp_path / "single"
    single.mkdir()
    (single / "results.json").write_text(json.dumps(_results([[0.5] * 5], strategy="rs")))
    assert list(runner._load_results(single)) == ["rs"] and results_file.read_folder(tmp_path) == {}
    # A damaged file: each reader names it, and says what to do where it knows.
    (grid / "alpha_2" / "results.json").write_text('{"rou')
    bad = r"grid/alpha_2/results.json is unreadable \(.+\)"
    with pytest.raises(results_file.UnreadableResults, match=bad + "$"):
        runner._load_results(grid)
    with pytest.raises(ValueError, match=bad + "; remove it or run that workdir again$"):
        compare.find_results([grid])
    with pytest.raises(ValueError, match=bad + " and .*grid has no checkpoint to resume"):
        workdir._results_files(grid)


def test_compare_and_the_study_write_one_mean_std_table():
    study = _study(s=4)
    study["rs"]["rounds"][2]["accuracy"][1] = None  # a diverged run: left out of its cell
    rep = sr.build(study, "rs", n_boot=200)
    short = dict(study["dal"], rounds=study["dal"]["rounds"][:3])  # a run with fewer rounds
    upper = {"kind": "supervised", "labeled": 50, "accuracy": [0.9, 0.94]}
    table = compare.markdown_table({"rs": study["rs"], "dal": short, "sup": upper})
    md = sr.markdown(rep)
    for t, n in enumerate(LABELED):
        cells = []
        for k in ("rs", "dal", "same"):
            a = np.array(study[k]["rounds"][t]["accuracy"], dtype=float)
            a = 100 * a[~np.isnan(a)]
            cells.append(f"{a.mean():.1f} ± {a.std(ddof=1):.1f}")
        assert f"| {n} | {' | '.join(cells)} |" in md
        dal = cells[1] if t < 3 else ""
        assert f"| {t} | {n} | {cells[0]} | {dal} |" in table
    assert "| sup | 50 | 92.0 ± 2.8 | 92.0 ± 2.8 |" in table
    assert table.splitlines()[:2] == ["| round | labelled | rs | dal |", "|---|---|---|---|"]
    one_seed = compare.markdown_table({"rs": _results([[0.5] * 5], strategy="rs")})
    assert "| 0 | 20 | 50.0 ± — |" in one_seed  # no std of one seed


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
