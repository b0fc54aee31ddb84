"""experiments.study / dal_jax.study.runner: every strategy on the same seeds, the paired report,
resume, a failing strategy and a folder of another config."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dal_jax.experiment import build, loop, round_state
from dal_jax.model import checkpoint
from dal_jax.study import report as study_report
from dal_jax.study import runner
from dal_jax.training.runs import INIT, Grid
from tests.test_loop import smoke as loop_smoke
from tests.test_loop import untimed

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def smoke(**overrides):
    # A narrow VAE at 16 px: VAAL's programs compiled in a fraction of the time.
    c = loop_smoke(**overrides)
    c.strategies.vaal.size, c.strategies.vaal.widths = 16, (8, 8, 8, 8)
    c.synthetic.kind_mix = "longtail"  # an imbalanced pool: the positive control applies
    return c


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    """The :smoke study of all six strategies with two seeds."""
    wd = tmp_path_factory.mktemp("study")
    return wd, runner.run(smoke(), wd, progress=False)


@pytest.mark.slow
def test_six_strategy_smoke_study_writes_the_report(six):
    wd, rep = six
    for name in ("study.png", "study.md", "study.json"):
        assert (wd / name).stat().st_size > 0, name
    assert json.loads((wd / "study.json").read_text()) == rep
    six_and_control = ["rs", "gd", "cs", "ll", "vaal", "dal", "kinds"]
    assert rep["labels"] == six_and_control and rep["baseline"] == "rs"
    assert set(rep["diff"]) == {"gd", "cs", "ll", "vaal", "dal", "kinds"}
    # The synthetic pool has object kinds: the positive control ran, and control 1's runs too.
    assert rep["control_labels"] == ["kinds"] and rep["controls"]["positive"]["name"] == "kinds"
    assert not any(v.startswith("kinds") for v in rep["verdict"])
    ls = rep["controls"]["label_sensitivity"]
    assert ls["no_new_labels"]["n"] == 2 and ls["doubling"]["doubled"]["n"] == 2
    assert (wd / "controls" / "label_sensitivity.json").is_file()
    for name in ("picks.png", "controls.png"):
        assert (wd / name).stat().st_size > 0, name
    md = (wd / "study.md").read_text()
    # Whether the study can tell strategies apart comes first, then the verdicts.
    assert md.index("## Can this study tell strategies apart?") < md.index("## Verdicts")
    for name in rep["labels"]:
        res = json.loads((wd / name / "results.json").read_text())
        sel = np.asarray(res["rounds"][0]["selected"])
        assert sel.shape == (2, 4) and all(len(set(row)) == 4 for row in sel.tolist())
        assert (wd / name / "selected.png").stat().st_size > 0
    # Paired: seed s starts from the same labelled pool in every strategy.
    first = {n: json.loads((wd / n / "results.json").read_text()) for n in rep["labels"]}
    dal = first["dal"]["rounds"][0]
    assert np.asarray(dal["selected_score"]).shape == (2, 4)  # DAL's p of its picks
    assert all(0 < p < 1 for row in dal["selected_score"] for p in row)
    assert first["rs"]["rounds"][0]["selected_score"] is None


@pytest.mark.slow
def test_strategies_training_ggcnn_alone_take_random_samplings_round_0(six, tmp_path):
    """Graph density, core-set and the kinds control train round 0 exactly as random sampling
    does: the study takes that round from RS, and the whole run equals one that trained it."""
    wd, _ = six
    res = {n: json.loads((wd / n / "results.json").read_text()) for n in six[1]["labels"]}
    rs0 = res["rs"]["rounds"][0]
    for name in ("gd", "cs", "kinds"):
        first = res[name]["rounds"][0]
        assert first["shared_from"] == "rs" and first["seconds"]["train"] == 0.0, name
        assert first["accuracy"] == rs0["accuracy"] and first["diagnostics"] == rs0["diagnostics"]
        assert "shared_from" not in res[name]["rounds"][1]
    for name in ("rs", "ll", "vaal", "dal"):  # RS itself; the others train networks of their own
        assert "shared_from" not in res[name]["rounds"][0], name
    alone = loop.run(smoke(strategy="gd"), tmp_path / "gd", progress=False)
    shared = res["gd"]
    shared["rounds"][0].pop("shared_from")
    assert untimed(alone) == untimed(shared)
    # Taken only where it is the same training, with the reason in one phrase otherwise.
    c = build.resolve(smoke(strategy="cs"))
    template = build.trainer(c).init_states(Grid.of(c).keys(INIT, 0), (48, 48, 1))
    fresh = np.zeros_like(checkpoint.restore(wd / "rs", 0)[2]["masks"])  # nothing labelled
    for source, why in [
        (wd / "dal", "dal trains networks of its own"),
        (tmp_path / "none", "has no readable round 0"),
        (wd / "rs", "another labelled set"),
    ]:
        ls, reason = round_state.shared_first_round(source, c, template, fresh)
        assert ls is None and why in reason, reason
    for field, value in (("lr", 1e-4), ("chunk_steps", 12)):  # chunk_steps moves 1-step calls
        other = build.resolve(smoke(strategy="cs", **{field: value}))
        why = round_state.shared_first_round(wd / "rs", other, template, fresh)[1]
        assert f"another config ({field})" in why
    # RS's initial set (its round-0 labelled set less its picks): taken, whatever the rounds.
    initial = checkpoint.restore(wd / "rs", 0)[2]["masks"].copy()
    np.put_along_axis(initial, np.asarray(rs0["selected"]), False, axis=1)
    longer = build.resolve(smoke(strategy="cs", rounds=3))
    ls, _ = round_state.shared_first_round(wd / "rs", longer, template, initial)
    assert ls.round == 0 and ls.history[0]["accuracy_all"] == rs0["accuracy"]


@pytest.mark.slow
def test_a_half_finished_study_resumes_to_the_same_numbers(six, tmp_path):
    full, _ = six
    # Stopped after the first round of each strategy (rounds may differ on resumption).
    # Graph density's one round is random sampling's, taken and written as its own.
    names = "rs,gd,dal"
    runner.run(smoke(rounds=1), tmp_path, strategies=names, progress=False, controls=False)
    for name in ("gd", "dal"):
        res = json.loads((tmp_path / name / "results.json").read_text())
        assert res["rounds"][0]["selected"] == [], name
    rep = runner.run(smoke(), tmp_path, strategies=names, progress=False, controls=False)
    for name in ("rs", "gd", "dal"):
        a = json.loads((full / name / "results.json").read_text())
        b = json.loads((tmp_path / name / "results.json").read_text())
        assert untimed(a) == untimed(b), name
    assert rep["labels"] == ["rs", "gd", "dal"] and not rep["incomplete"]


@pytest.mark.slow
def test_a_failing_strategy_is_marked_incomplete_and_the_others_kept(six, tmp_path):
    c = smoke()
    c.strategies.vaal.size = 20  # not a multiple of 16: VAAL refuses to start
    rep = runner.run(c, tmp_path, strategies="rs,vaal", progress=False, controls=False)
    assert "vaal" in rep["incomplete"] and "multiple of 16" in rep["incomplete"]["vaal"]
    assert rep["labels"] == ["rs"]
    assert "Incomplete: vaal" in (tmp_path / "study.md").read_text()


@pytest.mark.slow
def test_a_folder_of_another_config_is_refused_before_training(six):
    wd, _ = six
    with pytest.raises(ValueError, match=r"seeds: 2 -> 3"):
        runner.run(smoke(seeds=3), wd, progress=False)


def test_unknown_strategies_list_the_valid_ones():
    with pytest.raises(ValueError, match="'entropy'.*valid: rs, gd, cs, ll, vaal, dal"):
        runner.parse_strategies("rs,entropy")
    with pytest.raises(ValueError, match="twice"):
        runner.parse_strategies("rs,dal,rs")
    assert runner.parse_strategies(" DAL , rs") == ("dal", "rs")


@pytest.mark.slow
def test_the_cli_refuses_an_unknown_strategy(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "experiments.study", "--strategies=rs,bogus", "--noprogress",
         "--config=experiments/configs/default.py:smoke", f"--workdir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().endswith(
        "valid: rs, gd, cs, ll, vaal, dal, dal_flat, dal_multi, dal_adam, dal_steps5, dal_gissin"
    ), res.stderr


def _results(label, acc):
    """A results.json dict with accuracy [S, T] over 20, 40, ... labelled."""
    rounds = [
        {"round": t, "labeled": 20 * (t + 1), "accuracy": list(acc[:, t]),
         "collapsed": [False] * len(acc), "selected": []}
        for t in range(acc.shape[1])
    ]  # fmt: skip
    return {"strategy": label, "alpha": 0.1, "seeds": len(acc), "rounds": rounds}


def test_paired_statistics_of_a_hand_computed_case():
    """Five seeds, a strategy exactly 5 points above the baseline in every seed and round:
    the difference is 5 points with the CI [5, 5] (every resample has the same mean), and
    Wilcoxon's exact two-sided p is 2 / 2^5 = 0.0625 (all five signs positive is one of 32
    equally likely patterns, and all negative the other extreme)."""
    base = np.array([[0.5, 0.6, 0.7], [0.4, 0.5, 0.6], [0.6, 0.6, 0.8], [0.3, 0.5, 0.5],
                     [0.5, 0.7, 0.7]])  # fmt: skip
    rep = study_report.build({"rs": _results("rs", base), "x": _results("x", base + 0.05)}, "rs")
    d = rep["diff"]["x"]["aulc"]
    assert d["mean"] == pytest.approx(0.05) and d["ci"] == pytest.approx([0.05, 0.05])
    assert d["p"] == pytest.approx(0.0625) and d["n"] == 5
    # AULC of the baseline's seed 0: trapezoids (0.55 + 0.65) * 20 / 40 = 0.6.
    assert rep["aulc"]["rs"]["per_seed"][0] == pytest.approx(0.6)


@pytest.mark.slow
def test_each_strategy_logs_to_its_own_folder(six):
    wd, _ = six
    for name in ("rs", "dal"):
        text = (wd / name / "log.txt").read_text()
        assert text.count("round 0: mean accuracy") == 1, name  # not the other strategies'


@pytest.mark.slow
def test_the_alpha_study_has_the_same_report_against_alpha_zero(tmp_path):
    rep = runner.run(smoke(), tmp_path, alphas="0,0.5", progress=False)
    assert rep["labels"] == ["alpha 0", "alpha 0.5"] and rep["baseline"] == "alpha 0"
    assert set(rep["diff"]) == {"alpha 0.5"}
    for name in ("study.md", "study.json", "study.png", "alpha/selected_0.5.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    # The grid ran as one program: one state of 2 alphas x 2 seeds, results per alpha.
    grid = tmp_path / "alpha"
    assert [r["alpha"] for r in json.loads((grid / "alpha_study.json").read_text())] == [0, 0.5]
    for a in ("0", "0.5"):
        res = json.loads((grid / f"alpha_{a}" / "results.json").read_text())
        assert res["alpha"] == float(a) and [len(r["accuracy"]) for r in res["rounds"]] == [2, 2]
        assert (grid / f"alpha_{a}" / "curves.png").exists()
    assert (grid / "alpha_curves.png").exists()
    _, meta = checkpoint.restore_meta(grid)
    assert len(meta["accuracy"]) == 4
    with pytest.raises(ValueError, match="two or more alphas"):
        runner.run(smoke(), tmp_path / "one", alphas="0.1", progress=False)
