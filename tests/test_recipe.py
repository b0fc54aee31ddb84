"""The training recipe: the first build's recipe collapses at smoke size, the default trains.

The first build trained GG-CNN with the input in metres (range about -0.07..0.02), PyTorch's
default biases (uniform in +-0.11, ten times the input's effect on conv1) and an unweighted
loss on a quality map that is 98% zeros: "no grasp anywhere" was where most seeds ended. This
test keeps that recipe as the reference the default must beat (experiments/RESULTS.md "Training recipe measurements").
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dal_jax.experiment import build
from dal_jax.training import fit, train
from dal_jax.training.plugin import HParams
from experiments.configs import synthetic

FIRST_BUILD = {
    "input_scale": 1.0,
    "init": "torch",
    "pos_weight": 1.0,
    "weight_heads": "all",  # every head's loss over every pixel, as GG-CNN's reference
    "augment": False,
}
SEEDS, LABELLED, STEPS = 3, 16, 60


def _train_and_assess(tcfg: train.TrainConfig, ds) -> dict:
    trainer = train.Trainer(tcfg)
    x, t = jnp.asarray(ds.pool.inputs), jnp.asarray(ds.pool.targets)
    masks = np.zeros((SEEDS, len(x)), bool)
    masks[:, :LABELLED] = True
    states = trainer.init_states(jax.random.split(jax.random.key(0), SEEDS), x.shape[1:])
    keys = jax.random.split(jax.random.key(1), SEEDS)
    states, info = fit.fit(trainer, states, x, t, masks, HParams(jnp.zeros(SEEDS)), keys, STEPS)
    return fit.assess(trainer, states, ds.test, info)


@pytest.mark.slow
def test_the_first_builds_recipe_collapses_and_the_default_trains():
    c = build.resolve(synthetic.get_config("smoke"))
    ds = build.load_data(c)
    new = dataclasses.replace(build.train_config(c), chunk_steps=STEPS)
    old = dataclasses.replace(new, **FIRST_BUILD)
    assert new.input_scale != 1.0 and new.pos_weight > 1 and new.augment  # the default differs
    before, after = _train_and_assess(old, ds), _train_and_assess(new, ds)
    assert all(before["collapsed"]), before  # every seed: no grasp on most test images
    assert not any(after["collapsed"]), after
    assert max(after["no_grasp"]) < 0.2
    assert min(after["accuracy"]) > max(before["accuracy"])
