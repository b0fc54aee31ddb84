"""experiments.train: the supervised upper bound and a deployable model from a whole pool."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from dal_jax import robot
from dal_jax.evaluation import postprocess
from dal_jax.experiment import build
from dal_jax.model import checkpoint
from dal_jax.training import train
from experiments.configs import synthetic

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "experiments" / "configs" / "default.py") + ":smoke"


def _train_cli(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "experiments.train", f"--config={SMOKE}", "--progress=false", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def sup_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("sup")
    p = _train_cli("--dataset=synthetic", "--seeds=2", f"--workdir={wd}")
    assert p.returncode == 0, p.stderr[-2000:]
    return wd, p.stdout


@pytest.mark.slow
def test_results_hold_accuracy_and_diagnostics_per_seed(sup_run):
    wd, out = sup_run
    res = json.loads((wd / "results.json").read_text())
    assert res["kind"] == "supervised" and res["seeds"] == 2
    c = build.resolve(synthetic.get_config("smoke"))
    assert res["labeled"] == len(build.load_data(c).pool)  # every pool image is labelled
    assert len(res["accuracy"]) == 2 and all(0 <= a <= 1 for a in res["accuracy"])
    for key in ("final_loss", "q_max", "no_grasp", "dead_filters", "kept_step"):
        assert len(res["diagnostics"][key]) == 2, key
    assert len(res["collapsed"]) == 2
    assert "test accuracy" in out


@pytest.mark.slow
def test_inference_loads_the_checkpoint_and_applies_its_input_scale(sup_run):
    wd, _ = sup_run
    det = robot.GraspDetector.from_checkpoint(wd, warmup=False)
    _, meta = checkpoint.restore_meta(wd)
    assert det.input_scale == meta["input_scale"] == 10.0
    assert det.seed == int(np.argmax(meta["accuracy"]))
    # The detector's maps on a test crop equal the trained network's own prediction: the same
    # weights and the same input scaling as in training and evaluation.
    c = build.resolve(synthetic.get_config("smoke"))
    ds = build.load_data(c)
    trainer = train.Trainer(build.train_config(c))
    params, _, _ = checkpoint.load_ggcnn(wd, seed=det.seed)
    own = trainer.predict(jax.tree.map(np.asarray, params), ds.test.inputs[:1])
    q_own = np.asarray(postprocess.postprocess(own)[0])[0]
    det_maps = det.analyse(ds.test.depth[0], maps=True).maps
    np.testing.assert_allclose(det_maps["q"], q_own, atol=2e-4)


@pytest.mark.slow
def test_a_second_call_reuses_the_run_and_a_different_config_is_refused(sup_run):
    wd, _ = sup_run
    again = _train_cli("--dataset=synthetic", "--seeds=2", f"--workdir={wd}")
    assert again.returncode == 0 and "already holds this run" in again.stdout
    other = _train_cli("--dataset=synthetic", "--seeds=2", f"--workdir={wd}", "--config.lr=0.01")
    assert other.returncode == 2
    assert "different config" in other.stderr and "lr" in other.stderr


@pytest.mark.slow
def test_init_from_fine_tunes_the_prior_model(sup_run, tmp_path):
    from dal_jax.experiment import supervised

    wd, _ = sup_run
    prior, _, prior_seed = checkpoint.load_ggcnn(wd)
    c = synthetic.get_config("smoke")
    c.seeds, c.init_from = 2, str(wd)
    res = supervised.run(c, tmp_path, progress=False)
    assert res["init_from"] == str(wd)
    _, state, _, _ = checkpoint.restore(tmp_path)
    tuned = np.asarray(state["params"]["ggcnn"]["encoder"]["conv1"]["kernel"])
    start = np.asarray(prior["encoder"]["conv1"]["kernel"])
    _, first, _, _ = checkpoint.restore(wd)
    fresh = np.asarray(first["params"]["ggcnn"]["encoder"]["conv1"]["kernel"])[1 - prior_seed]
    # Both seeds trained on from the prior: their weights moved, but stay nearer the prior than
    # a network trained as long from its own initial weights.
    for s in range(2):
        assert not np.allclose(tuned[s], start)
        assert np.abs(tuned[s] - start).mean() < np.abs(fresh - start).mean()


@pytest.mark.slow
def test_the_validation_curve_is_recorded_and_the_kept_chunk_is_its_best(tmp_path):
    from dal_jax.experiment import supervised

    c = synthetic.get_config("smoke")
    c.val_fraction, c.val_min, c.supervised_steps = 0.25, 4, 9
    res = supervised.run(c, tmp_path, progress=False)
    assert res["model_choice"] == "validation"
    curve = res["validation_curve"]
    assert curve["steps"] == [3, 6, 9]  # one entry per chunk of chunk_steps
    per_seed = np.asarray(curve["accuracy"], np.float64)  # [chunks, seeds]
    assert per_seed.shape == (3, c.seeds)
    np.testing.assert_allclose(per_seed.max(axis=0), res["validation_accuracy"])


def test_an_unprepared_dataset_says_how_to_prepare_it(tmp_path):
    p = _train_cli("--dataset=cornell", f"--workdir={tmp_path / 'wd'}")
    assert p.returncode == 2
    assert "datasets.prepare --dataset=cornell" in p.stderr
    assert "Traceback" not in p.stderr


def test_the_upper_bound_is_drawn_only_for_the_same_data_variant(tmp_path):
    from dal_jax.experiment import results, supervised

    uniform, longtail = synthetic.get_config("uniform"), synthetic.get_config("longtail")
    diag = {"collapsed": [False]}
    sup = tmp_path / "synthetic_grasps_supervised"
    sup.mkdir()
    res = supervised.results(uniform, [0.8], diag, steps=10, labelled=240, train_s=1.0)
    (sup / "results.json").write_text(json.dumps(res))
    study = tmp_path / "study"
    assert list(results.upper_bound(study, uniform)) == ["supervised, all 240 labelled"]
    assert results.upper_bound(study, longtail) == {}  # the uniform scenes' bound: not drawn
    (sup / "results.json").write_text(json.dumps({**res, "init_from": "runs/synth"}))
    assert results.upper_bound(study, uniform) == {}  # fine-tuned from a prior the run lacks
    del res["data_variant"]  # written before the variant was recorded: cannot be matched
    (sup / "results.json").write_text(json.dumps(res))
    assert results.upper_bound(study, uniform) == {}


def test_supervised_steps_override_the_round_rule():
    from types import SimpleNamespace

    from dal_jax.experiment import supervised
    from dal_jax.training import fit

    ds = SimpleNamespace(pool=range(320), initial=None)
    c = build.resolve(synthetic.get_config())  # warm-started rounds: the loop's steps in all
    rule = supervised.supervised_steps(c, ds)
    assert rule == supervised.loop_steps(c, ds) > fit.num_steps(c, 320)
    fixed = synthetic.get_config()
    fixed.supervised_steps = 1234
    assert supervised.supervised_steps(build.resolve(fixed), ds) == 1234
