"""dal_jax.training.fit: the model a round reports, divergence, and collapse diagnostics."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dal_jax.data import pools, target_maps
from dal_jax.training import fit, train
from dal_jax.training.plugin import HParams

H, N, R = 48, 12, 2


def _pool(seed=0) -> pools.Pool:
    """N depth images with one box each on a plane, and the box's grasp rectangle."""
    rng = np.random.default_rng(seed)
    inputs = np.zeros((N, H, H, 1), np.float32)
    targets = np.zeros((N, H, H, 4), np.float32)
    rects = np.zeros((N, 1, 4, 2), np.float32)
    for i in range(N):
        r, c = rng.integers(16, H - 16, size=2)
        inputs[i, r - 5 : r + 5, c - 8 : c + 8, 0] = -0.05
        rects[i, 0] = [[r + 6, c - 4], [r - 6, c - 4], [r - 6, c + 4], [r + 6, c + 4]]
        targets[i] = target_maps.make_targets(rects[i], None, (H, H))
    ids = np.array([f"img{i}" for i in range(N)])
    return pools.Pool(inputs, targets, rects, np.ones((N, 1), bool), ids, None, None)


POOL = _pool()


@pytest.fixture(scope="module")
def trainer():
    cfg = train.TrainConfig.reference(chunk_steps=3, lr=3e-3, input_scale=10.0, init="xavier_zero")
    return train.Trainer(cfg)


def _keys(purpose):
    return jax.random.split(jax.random.key(purpose), R)


def _fit(trainer, masks, steps, val=None, inputs=None):
    states = trainer.init_states(_keys(0), (H, H, 1))
    x = jnp.asarray(POOL.inputs if inputs is None else inputs)
    return fit.fit(
        trainer,
        states,
        x,
        jnp.asarray(POOL.targets),
        masks,
        HParams(jnp.zeros(R)),
        _keys(1),
        steps,
        val,
    )


def test_num_steps_grow_with_the_labelled_set():
    c = types.SimpleNamespace(steps_per_round=150, get=lambda k, d: {"steps_per_label": 1.5}[k])
    assert [fit.num_steps(c, n) for n in (0, 20, 100)] == [150, 180, 300]


@pytest.mark.slow
def test_training_loss_rule_keeps_the_latest_chunk_near_the_lowest_loss(trainer):
    masks = np.ones((R, N), bool)
    # The same training, chunk by chunk, with every chunk's weights and loss recorded.
    seen = []

    def record(done, metrics, st):
        params = jax.tree.map(np.asarray, st.params["ggcnn"])
        seen.append((done, np.asarray(metrics["gsp_loss"]).mean(axis=1), params))

    states = trainer.init_states(_keys(0), (H, H, 1))
    trainer.train(
        states,
        jnp.asarray(POOL.inputs),
        jnp.asarray(POOL.targets),
        jnp.asarray(masks),
        HParams(jnp.zeros(R)),
        _keys(1),
        12,
        on_chunk=record,
    )
    kept, info = _fit(trainer, masks, 12)
    assert info.rule == "train_loss"
    losses = np.stack([loss for _, loss, _ in seen])  # [chunks, R]
    for r in range(R):
        # The latest chunk within LOSS_TOLERANCE of the lowest loss seen up to it.
        best = max(
            i
            for i in range(len(losses))
            if losses[i, r] <= losses[: i + 1, r].min() * (1 + fit.LOSS_TOLERANCE)
        )
        assert info.step[r] == seen[best][0]
        np.testing.assert_allclose(info.score[r], -losses[best, r], rtol=1e-6)
        for a, b in zip(jax.tree.leaves(kept.params["ggcnn"]), jax.tree.leaves(seen[best][2])):
            np.testing.assert_array_equal(np.asarray(a)[r], b[r])
    assert (info.diverged_at == -1).all() and np.isfinite(info.final_loss).all()


@pytest.mark.slow
def test_validation_rule_holds_images_out_and_keeps_the_best_chunk(trainer):
    c = types.SimpleNamespace(get={"val_fraction": 0.25, "val_min": 8}.get)
    masks = np.ones((R, N), bool)
    rngs = [np.random.default_rng(s) for s in range(R)]
    train_masks, val = fit.carve_validation(c, masks, POOL.gt_rects, POOL.gt_mask, rngs)
    assert val.idx.shape == (R, 3)
    for r in range(R):
        assert not train_masks[r, val.idx[r]].any() and train_masks[r].sum() == N - 3
    kept, info = _fit(trainer, train_masks, 9, val)
    assert info.rule == "validation"
    # The score recorded is the kept weights' own validation accuracy.
    np.testing.assert_allclose(
        fit.validation_accuracy(trainer, kept.params, jnp.asarray(POOL.inputs), val), info.score
    )
    # Too few labels for a validation split: the training-loss rule.
    small = np.zeros((R, N), bool)
    small[:, :5] = True
    same, none = fit.carve_validation(c, small, POOL.gt_rects, POOL.gt_mask, rngs)
    assert none is None and (same == small).all()


@pytest.mark.slow
def test_a_diverged_run_is_flagged_and_the_other_trains_on(trainer):
    inputs = POOL.inputs.copy()
    inputs[-1] = np.nan  # only run 1 trains on this image
    masks = np.ones((R, N), bool)
    masks[0, -1] = False
    kept, info = _fit(trainer, masks, 6, inputs=inputs)
    # Run 1 draws the NaN image within its first chunk (3 steps): no weights to keep.
    assert info.diverged_at[0] == -1 and 0 <= info.diverged_at[1] < 3
    assert info.step[1] == 0 and info.step[0] > 0
    diag = fit.assess(trainer, kept, POOL, info)
    # Never a silent 0: no accuracy, flagged collapsed, the step it diverged at recorded.
    assert diag["accuracy"][1] is None and diag["collapsed"][1] is True
    assert diag["diverged_at"] == info.diverged_at.tolist()
    assert diag["accuracy"][0] is not None and diag["final_loss"][0] is not None
    assert fit.mean_accuracy(diag["accuracy"]) == pytest.approx(diag["accuracy"][0])


def test_a_broken_network_is_detected_as_collapsed(trainer):
    states = trainer.init_states(_keys(0), (H, H, 1))
    params = jax.tree.map(np.array, states.params)  # writable copies
    g = params["ggcnn"]
    # Run 1: conv1 never fires (every filter dead) and the quality head outputs 0 everywhere.
    g["encoder"]["conv1"]["kernel"][1] = 0.0
    g["encoder"]["conv1"]["bias"][1] = -1.0
    g["decoder"]["pos"]["kernel"][1] = 0.0
    g["decoder"]["pos"]["bias"][1] = 0.0
    broken = states.replace(params=jax.tree.map(jnp.asarray, params))
    diag = fit.assess(trainer, broken, POOL)
    assert diag["dead_filters"][1] == 32 and diag["no_grasp"][1] == 1.0
    assert diag["collapsed"][1] is True and diag["accuracy"][1] == 0.0
    assert diag["q_max"][1] == pytest.approx(0.0, abs=1e-6)
    assert 1 in fit.collapsed_runs(diag)
    assert diag["dead_filters"][0] < 32  # run 0 untouched
