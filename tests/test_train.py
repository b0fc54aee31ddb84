"""The joint training step: seeds batched, both execution forms, jit, recompiles, NaN guard."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dal_jax.data import target_maps
from dal_jax.strategies.dal import Discriminator
from dal_jax.training import train
from dal_jax.training.plugin import HParams

H = 48


def _synthetic_pool(n=12, seed=0):
    """n depth images, each with one box on a plane and its grasp rectangle as target."""
    rng = np.random.default_rng(seed)
    inputs = np.zeros((n, H, H, 1), np.float32)
    targets = np.zeros((n, H, H, 4), np.float32)
    for i in range(n):
        r, c = rng.integers(14, H - 14, size=2)
        inputs[i, r - 5 : r + 5, c - 8 : c + 8, 0] = -0.5
        rect = np.array([[[r + 6, c - 4], [r - 6, c - 4], [r - 6, c + 4], [r + 6, c + 4]]], float)
        targets[i] = target_maps.make_targets(rect, None, (H, H))
    return jnp.asarray(inputs), jnp.asarray(targets)


INPUTS, TARGETS = _synthetic_pool()
S = 2


def _masks(n_labelled=4):
    m = np.zeros((S, len(INPUTS)), bool)
    m[0, :n_labelled] = True
    m[1, 3 : 3 + n_labelled] = True
    return jnp.asarray(m)


@pytest.fixture(scope="module")
def dal_trainers():
    return {
        form: train.Trainer(
            train.TrainConfig.reference(seed_form=form, chunk_steps=5), (Discriminator(),)
        )
        for form in ("unrolled", "vmap")
    }


def _run(trainer, keys, masks, alpha, steps):
    states = trainer.init_states(keys, (H, H, 1))
    return trainer.train(states, INPUTS, TARGETS, masks, HParams(alpha), keys, steps)


@pytest.mark.slow
def test_vmap_and_unrolled_forms_agree(dal_trainers):
    keys = jax.random.split(jax.random.key(0), S)
    alpha = jnp.array([0.1, 0.5])
    a, ma = _run(dal_trainers["unrolled"], keys, _masks(), alpha, 10)
    b, mb = _run(dal_trainers["vmap"], keys, _masks(), alpha, 10)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-4)
    # The two seeds really are different runs.
    assert not np.allclose(ma["loss"][0], ma["loss"][1])


@pytest.mark.slow
def test_batched_seeds_equal_one_seed_at_a_time(dal_trainers):
    trainer = dal_trainers["unrolled"]
    keys = jax.random.split(jax.random.key(1), S)
    alpha = jnp.array([0.0, 0.25])
    masks = _masks()
    together, _ = _run(trainer, keys, masks, alpha, 10)
    one = train.Trainer(
        train.TrainConfig.reference(seed_form="unrolled", chunk_steps=5), (Discriminator(),)
    )
    for s in range(S):
        alone, _ = _run(one, keys[s : s + 1], masks[s : s + 1], alpha[s : s + 1], 10)
        for x, y in zip(jax.tree.leaves(together.params), jax.tree.leaves(alone.params)):
            np.testing.assert_allclose(x[s], y[0], rtol=1e-5, atol=1e-6)


def test_alpha_changes_the_encoder_but_not_the_program(dal_trainers):
    trainer = dal_trainers["unrolled"]
    keys = jnp.stack([jax.random.key(2)] * S)
    a, _ = _run(trainer, keys, jnp.stack([_masks()[0]] * S), jnp.array([0.0, 0.5]), 5)
    enc = a.params["ggcnn"]["encoder"]["conv1"]["kernel"]
    # Same key and data: only alpha differs between the two seeds.
    assert not np.allclose(enc[0], enc[1])
    dec = a.params["ggcnn"]["decoder"]["pos"]["kernel"]
    assert np.isfinite(dec).all()


@pytest.mark.slow
class StepVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_step_jit_and_no_jit_agree(self):
        # 24 px keeps the op-by-op (no jit) run short.
        trainer = train.Trainer(train.TrainConfig.reference(), (Discriminator(),))
        state = trainer.init_state(jax.random.key(0), (24, 24, 1))
        hp = HParams(jnp.float32(0.1), num_steps=jnp.float32(10))
        x, y, mask = INPUTS[:, 12:36, 12:36], TARGETS[:, 12:36, 12:36], _masks()[0]
        step = self.variant(trainer.step)
        new, metrics = step(state, x, y, mask, hp, jax.random.key(5))
        ref, ref_m = jax.jit(trainer.step)(state, x, y, mask, hp, jax.random.key(5))
        assert int(new.step) == 1
        for x, y in zip(jax.tree.leaves(new.params), jax.tree.leaves(ref.params)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(metrics["loss"], ref_m["loss"], rtol=1e-5)


@pytest.mark.slow
def test_no_recompilation_across_chunks_and_rounds():
    trainer = train.Trainer(
        train.TrainConfig.reference(chunk_steps=3, steps_per_call=3), (Discriminator(),)
    )
    traced = chex.assert_max_traces(trainer._steps_all_runs, n=1)
    trainer._steps_all_runs = traced
    keys = jax.random.split(jax.random.key(3), S)
    states = trainer.init_states(keys, (H, H, 1))
    for n_labelled in (4, 6, 9):  # three "rounds": masks change, shapes do not
        states, _ = trainer.train(
            states, INPUTS, TARGETS, _masks(n_labelled), HParams(jnp.full(S, 0.1)), keys, 6
        )
    assert int(states.step[0]) == 18


@pytest.mark.slow
def test_plain_loss_falls_tenfold():
    trainer = train.Trainer(train.TrainConfig.reference(chunk_steps=100))
    keys = jax.random.split(jax.random.key(4), 1)
    masks = jnp.zeros((1, len(INPUTS)), bool).at[0, :4].set(True)
    states = trainer.init_states(keys, (H, H, 1))
    first = None
    losses = []

    def record(done, m, _states):
        losses.append(np.asarray(m["gsp_loss"])[0])

    trainer.train(states, INPUTS, TARGETS, masks, HParams(jnp.zeros(1)), keys, 400, record)
    first = losses[0][0]
    last = losses[-1][-10:].mean()
    assert last < first / 10, (first, last)


@pytest.mark.slow
def test_nan_loss_stops_with_run_and_step():
    trainer = train.Trainer(train.TrainConfig.reference(chunk_steps=4))
    keys = jax.random.split(jax.random.key(6), S)
    bad = INPUTS.at[5:].set(jnp.nan)  # only seed 1 labels examples past 4: NaN at its step 0
    states = trainer.init_states(keys, (H, H, 1))
    with pytest.raises(FloatingPointError, match=r"run index 1, step 0"):
        trainer.train(states, bad, TARGETS, _masks(), HParams(jnp.zeros(S)), keys, 8)


def test_wrong_shapes_are_rejected_before_compiling():
    trainer = train.Trainer(train.TrainConfig.reference())
    keys = jax.random.split(jax.random.key(0), S)
    states = trainer.init_states(keys, (H, H, 1))
    with pytest.raises(ValueError, match="multiple of 12"):
        trainer.train(states, INPUTS[:, :40], TARGETS[:, :40], _masks(), {}, keys, 1)
    with pytest.raises(ValueError, match=r"masks must be \[R, N\]"):
        trainer.train(states, INPUTS, TARGETS, _masks()[:, :5], {}, keys, 1)
