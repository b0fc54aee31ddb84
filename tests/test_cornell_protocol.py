"""The Cornell ':shared' protocol: the paper's study at CPU scale on the 80 shared real scenes.

The numbers are checked against what they were chosen for (experiments/configs/cornell.py
`shared`): a fixed training budget per round from scratch, a label range inside the pool, a
six-strategy 10-seed study under 90 minutes at the measured speed; and a smoke round of the
loop on the real scenes, prepared from ../shared/data/cornell01 into a temporary data dir.
"""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dal_jax.data import pools
from dal_jax.experiment import build, loop
from experiments import configs
from experiments.configs import cornell

POOL, TEST = 64, 16  # the builder's image-wise 80/20 split of the 80 shared scenes
# The time model of the protocol's docstring: 10 seeds train ~1.8 steps/s at 96 px on a 2-core
# CPU; the six strategies cost ~7.5 x random sampling, the controls 3 x the last round's steps.
STEPS_PER_S, SIX_STRATEGIES, STUDY_MINUTES = 1.8, 7.5, 90


def shared_config():
    return configs.complete(cornell.get_config("shared"))


def test_shared_protocol_numbers():
    c = shared_config()
    assert c.dataset == "cornell" and c.image_size == 96 and c.image_size % 12 == 0
    # Algorithm 1: every round from scratch, with a budget that does not grow with the round.
    assert c.warm_start is False and c.steps_per_label == 0
    assert c.steps_per_round % 48 == 0  # whole chunks (chunk_steps 50 -> 48: 3 steps a call)
    # The last selection still has a choice: fewer labelled than the pool before it.
    last = c.initial + c.budget * (c.rounds - 1)
    assert c.rounds >= 3 and last < POOL and POOL - (last - c.budget) > c.budget
    # A six-strategy, 10-seed study fits in 90 minutes of training.
    rs_s = c.rounds * c.steps_per_round / STEPS_PER_S
    controls_s = 3 * c.steps_per_round / STEPS_PER_S
    assert (SIX_STRATEGIES * rs_s + controls_s) / 60 <= STUDY_MINUTES
    # No validation split on 8-40 labels: the training loss chooses the weights.
    assert c.val_fraction == 0
    # The paper's full protocol stays the default.
    full = configs.complete(cornell.get_config())
    assert (full.image_size, full.initial, full.budget, full.rounds) == (300, 60, 60, 10)
    assert (full.steps_per_round, full.val_fraction, full.val_min) == (2000, 0.1, 50)
    with pytest.raises(ValueError, match="shared"):
        cornell.get_config("nope")


@pytest.fixture(scope="module")
def shared_cornell(shared_data, tmp_path_factory):
    """The 80 shared Cornell scenes prepared with the repo's builder into a temporary dir."""
    manual = shared_data / "cornell01"
    if not manual.is_dir():
        pytest.skip(
            f"REAL CORNELL SCENES MISSING: {manual} not found; the protocol smoke test did not run"
        )
    d = tmp_path_factory.mktemp("cornell_shared_tfds")
    b = pools.make_builder("cornell", d)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return d


@pytest.mark.slow
def test_shared_protocol_smoke_round_on_real_scenes(shared_cornell, tmp_path):
    c = cornell.get_config("shared")
    c.data_dir = str(shared_cornell)
    c.update(strategy="rs", seeds=2, rounds=2, steps_per_round=6, chunk_steps=3)  # tiny
    c = configs.complete(c)
    ds = build.load_data(build.resolve(c))
    assert (len(ds.pool), len(ds.test)) == (POOL, TEST)
    assert ds.pool.inputs.shape[1:] == ds.test.inputs.shape[1:] == (96, 96, 1)
    assert np.isfinite(ds.pool.inputs).all() and ds.pool.gt_mask.any(axis=1).all()

    res = loop.run(c, tmp_path / "run", progress=False)
    assert res == json.loads((tmp_path / "run" / "results.json").read_text())
    rounds = res["rounds"]
    assert [r["labeled"] for r in rounds] == [8, 24]  # initial 8, +16
    # A fixed budget, not growing with the labels, and the training-loss model choice.
    assert [r["steps"] for r in rounds] == [6, 6]
    assert {r["model_choice"] for r in rounds} == {"train_loss"}
    for r in rounds:
        assert len(r["accuracy"]) == 2
        assert all(a is not None and 0 <= a <= 1 for a in r["accuracy"])
    assert [len(s) for s in rounds[0]["selected"]] == [16, 16]
