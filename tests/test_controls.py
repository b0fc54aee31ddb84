"""Control 1's runs (dal_jax.study.controls): the no-new-labels and doubled-steps trainings differ
from random sampling in one thing only, and are reused when the study runs again."""

import json

import numpy as np
import pytest

from dal_jax.experiment import build, loop
from dal_jax.model import checkpoint
from dal_jax.study import controls
from dal_jax.training.runs import Grid
from tests.test_loop import smoke


def _rs(tmp_path, **overrides):
    c = build.resolve(smoke(strategy="rs", **overrides))
    wd = tmp_path / "rs"
    loop.run(c, wd, progress=False)
    return c, wd, json.loads((wd / "results.json").read_text())


@pytest.mark.slow
def test_with_one_round_no_new_labels_is_random_sampling_itself(tmp_path):
    """One round: RS's labelled set is the initial set, so the no-new-labels run has the same
    images, keys and steps, and must give RS's accuracies exactly."""
    c, wd, res = _rs(tmp_path, rounds=1)
    out = controls.label_sensitivity(c, wd, tmp_path / "controls", build.load_data(c))
    assert out["no_new_labels_last"] == res["rounds"][0]["accuracy"]
    assert out["steps"] == {"per_round": [6], "doubled": [12]}
    assert (out["labeled_initial"], out["labeled_last"]) == (8, 8)


@pytest.mark.slow
def test_replayed_masks_are_the_ones_random_sampling_trained_on(tmp_path, monkeypatch):
    c, wd, res = _rs(tmp_path, rounds=3)
    ds = build.load_data(c)
    initial = build.initial_masks(c, ds, Grid.of(c))
    masks = controls.replay_masks(initial, res["rounds"])
    assert [m.sum(axis=1).tolist() for m in masks] == [[8, 8], [12, 12], [16, 16]]
    for r in range(2):  # a round's checkpoint holds the labelled set of the round after it
        template = {"masks": np.zeros_like(initial)}
        _, _, arrays, _ = checkpoint.restore(wd, r, arrays=template)
        np.testing.assert_array_equal(masks[r + 1], arrays["masks"])

    trained = _count_trainings(monkeypatch)
    out = controls.label_sensitivity(c, wd, tmp_path / "controls", ds)
    assert len(out["no_new_labels_last"]) == len(out["doubled_last"]) == 2
    assert out["labeled_last"] == 16 and out["steps"]["doubled"] == [12, 12, 12]
    # Networks kept: the no-new-labels run starts from RS's saved round 0 (rounds 1-2 trained),
    # the doubled run trains all three.
    assert trained == [(1, 6), (2, 6), (0, 12), (1, 12), (2, 12)]

    # Without RS's checkpoints the no-new-labels run trains its round 0 itself, to the same
    # numbers (the reused round is that very training).
    (wd / "checkpoints").rename(tmp_path / "rs_checkpoints_aside")
    trained.clear()
    again = controls.label_sensitivity(c, wd, tmp_path / "controls_retrained", ds)
    assert trained[0] == (0, 6) and len(trained) == 6
    assert again == out

    # The study run again reads the controls back instead of training them again.
    monkeypatch.setattr(controls, "_train_controls", lambda *a: pytest.fail("trained again"))
    assert controls.label_sensitivity(c, wd, tmp_path / "controls", ds) == out


def _count_trainings(monkeypatch) -> list:
    """Records (round, steps) of every training the controls run."""
    trained, real = [], controls.fit.train_runs

    def counting(c, trainer, grid, pool, masks, r, **kw):
        trained.append((r, kw["steps"]))
        return real(c, trainer, grid, pool, masks, r, **kw)

    monkeypatch.setattr(controls.fit, "train_runs", counting)
    return trained


def test_replay_refuses_a_history_that_does_not_add_up():
    initial = np.zeros((1, 10), bool)
    initial[0, :2] = True
    rounds = [{"round": 0, "labeled": 2, "selected": [[2, 3]]}, {"round": 1, "labeled": 5}]
    with pytest.raises(ValueError, match="round 1: rebuilt labelled counts"):
        controls.replay_masks(initial, rounds)


def test_unfinished_random_sampling_runs_no_control(tmp_path):
    c = build.resolve(smoke(strategy="rs", rounds=3))
    (tmp_path / "rs").mkdir()
    assert controls.label_sensitivity(c, tmp_path / "rs", tmp_path / "controls", None) is None
    res = {"rounds": [{"round": 0, "labeled": 8, "selected": [], "steps": 6}]}
    (tmp_path / "rs" / "results.json").write_text(json.dumps(res))
    assert controls.label_sensitivity(c, tmp_path / "rs", tmp_path / "controls", None) is None


def test_controls_saved_with_alpha_as_text_are_still_reused():
    c = build.resolve(smoke(strategy="rs"))
    key = json.loads(json.dumps({"config": c.to_dict(), "rs_selected": [[1, 2]]}))
    old = {**key, "config": {**key["config"], "alpha": "0.1"}}
    assert controls._same_key(old, key)
    assert not controls._same_key({**old, "rs_selected": [[1, 3]]}, key)
    assert not controls._same_key({**old, "config": {**old["config"], "lr": 1.0}}, key)
    assert not controls._same_key(None, key)


def test_the_positive_control_applies_to_imbalanced_pools_only():
    kinds = np.zeros((40, 4), int)
    kinds[:30, 0] = 1  # 30 of one kind, 10 spread over two others, none of the fourth
    kinds[30:35, 1] = kinds[35:, 2] = 1
    assert controls.kind_imbalance(kinds) == 6.0
    assert controls.positive_control(kinds) == (True, None)
    balanced, why = controls.positive_control(np.eye(4, dtype=int).repeat(10, axis=0))
    assert not balanced and "balanced (the most common 1.0x the least)" in why
    assert controls.positive_control(None) == (False, "the pool has no object kinds")
