"""DAL's discriminator: the held-out measurement, the variants behind ``dal``'s config and by
name, Gissin's form with sub-batch selection, and the study report's discriminator section."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dal_jax import strategies
from dal_jax.experiment import loop
from dal_jax.model import models
from dal_jax.strategies import dal, dal_gissin
from dal_jax.study import discriminator as study_disc
from dal_jax.study import report as study_report
from dal_jax.training import train
from dal_jax.training.plugin import HParams, StepInputs
from tests.test_loop import smoke
from tests.test_strategies import H, N, S, pool  # noqa: F401 - the shared tiny pool fixture


# ------------------------------------------------------------------ the held-out share
def test_held_out_is_a_fixed_share_alike_on_host_and_device():
    idx = np.arange(5000)
    host = dal.held_out(idx, 0.2)
    assert 0.18 < host.mean() < 0.22
    assert (np.asarray(dal.held_out(jnp.arange(5000), 0.2)) == host).all()
    assert not dal.held_out(idx, 0.0).any()
    # Not a stripe of the index order: held-out images are spread over the pool.
    assert 0.1 < host[:500].mean() < 0.3 and 0.1 < host[-500:].mean() < 0.3


def _step_inputs(disc, idx_l, idx_u, seed=0):
    """A StepInputs of 8 + 8 random feature maps with the given pool indices."""
    rng = np.random.default_rng(seed)
    f = [jnp.asarray(rng.normal(size=(8, 2, 2, c)).astype(np.float32)) for c in (32, 16, 8)]
    g = [jnp.asarray(rng.normal(size=(8, 2, 2, c)).astype(np.float32)) for c in (32, 16, 8)]
    x = jnp.zeros((8, H, H, 1))
    return StepInputs(
        x, jnp.ones(8), x, jnp.ones(8), models.Features(*f), models.Features(*g),
        jnp.zeros(8), jnp.asarray(0.5), jnp.asarray(idx_l), jnp.asarray(idx_u),
    )  # fmt: skip


def test_discriminator_never_trains_on_held_out_images():
    disc = dal.Discriminator(inputs="multi")
    params = disc.init(jax.random.key(0), jnp.zeros((1, H, H, 1)))
    held = np.flatnonzero(dal.held_out(np.arange(400), disc.holdout))
    kept = np.flatnonzero(~dal.held_out(np.arange(400), disc.holdout))

    def grad_norm(idx_l, idx_u):
        inp = _step_inputs(disc, idx_l, idx_u)
        g = jax.grad(lambda p: disc.loss(p, inp, HParams(jnp.asarray(0.1)))[0])(params)
        return sum(float(jnp.abs(a).sum()) for a in jax.tree.leaves(g))

    assert grad_norm(held[:8], held[8:16]) == 0.0
    assert grad_norm(kept[:8], kept[8:16]) > 0.0
    # Half held out: the loss is the mean over the other half alone.
    mixed_l = np.concatenate([held[:4], kept[:4]])
    inp = _step_inputs(disc, mixed_l, kept[8:16])
    only = _step_inputs(disc, mixed_l, kept[8:16])._replace(w_l=jnp.asarray([0.0] * 4 + [1.0] * 4))
    a = disc.bce(params, inp)[0]
    b = dal.Discriminator(inputs="multi", holdout=0.0).bce(params, only)[0]
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_discriminator_report_uses_the_held_out_images_only():
    held = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    labelled = np.array([[1, 0, 1, 0, 1, 0, 1, 0]], bool)
    # Right on every held-out image, wrong on every image trained on.
    p = np.array([[0.9, 0.2, 0.8, 0.1, 0.3, 0.7, 0.4, 0.6]])
    rep = dal.discriminator_report(p, labelled, held)
    assert rep["disc_acc"][0] == 1.0 and rep["disc_acc_train"][0] == 0.0
    assert rep["p_labelled"][0] == pytest.approx(0.85)
    assert rep["p_unlabelled"][0] == pytest.approx(0.15)
    none_held = dal.discriminator_report(p, labelled, np.zeros(8, bool))
    assert np.isnan(none_held["disc_acc"][0])


@pytest.mark.slow
def test_held_out_images_leave_the_discriminator_untouched_in_training(pool):  # noqa: F811 - the imported fixture
    """With every pool image held out, joint training never moves the discriminator."""
    inputs, targets, masks, keys = pool
    strategy = strategies.get("dal", disc_holdout=0.9999)
    assert dal.held_out(np.arange(N), 0.9999).all()
    tc = train.TrainConfig.reference(chunk_steps=6)
    trainer = train.Trainer(tc, strategy.plugins(tc))
    states = trainer.init_states(keys, (H, H, 1))
    before = jax.tree.map(np.asarray, states.params["disc"])
    after, _ = trainer.train(states, inputs, targets, jnp.asarray(masks), HParams(jnp.ones(S)),
                             keys, 6)  # fmt: skip
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), b), after.params["disc"], before)
    assert all(jax.tree.leaves(same))


# ------------------------------------------------------------------ variants
def test_variants_by_name_carry_their_settings():
    assert set(strategies.VARIANTS) >= {"dal_flat", "dal_multi", "dal_adam", "dal_steps5",
                                        "dal_gissin"}  # fmt: skip
    assert strategies.NAMES == ("rs", "gd", "cs", "ll", "vaal", "dal")
    assert strategies.get("dal_flat").disc.inputs == "flat"
    assert strategies.get("dal_multi").disc.inputs == "multi"
    adam = strategies.get("dal_adam")
    assert (adam.disc.opt_name, adam.disc.lr, adam.name) == ("adam", 1e-3, "dal_adam")
    assert strategies.get("dal_steps5").disc.steps == 5
    assert strategies.defaults("dal_steps5")["disc_steps"] == 5
    assert strategies.get("dal").disc.holdout == dal.HOLDOUT
    assert isinstance(strategies.get("dal_gissin"), dal_gissin.DALGissin)
    with pytest.raises(ValueError, match="disc_input must be one of pooled, flat, multi"):
        strategies.get("dal", disc_input="raw")
    with pytest.raises(ValueError, match="disc_steps must be at least 1"):
        strategies.get("dal", disc_steps=0)


def test_feature_size_matches_the_encoder():
    g = models.GGCNN()
    x = jnp.zeros((2, 48, 72, 1))
    # Shapes only (jax.eval_shape): nothing is computed.
    feats = jax.eval_shape(
        lambda x: g.apply(g.init(jax.random.key(0), x), x, method=models.GGCNN.encode), x
    )
    for which in dal.INPUTS:
        shape = jax.eval_shape(lambda f, w=which: dal.features(f, w), feats).shape
        assert shape == (2, dal.feature_size((48, 72, 1), which))


def test_more_discriminator_steps_move_it_further():
    one, five = dal.Discriminator(steps=1), dal.Discriminator(steps=5)
    params = one.init(jax.random.key(0), jnp.zeros((1, H, H, 1)))
    kept = np.flatnonzero(~dal.held_out(np.arange(400), dal.HOLDOUT))
    inp = _step_inputs(one, kept[:8], kept[8:16])
    opt = one.optimizer().init(params)
    assert not one.has_extra_update() and five.has_extra_update()
    same, _, _ = one.extra_update(params, opt, inp, None)
    moved, _, _ = five.extra_update(params, opt, inp, None)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), same, params))
    assert float(five.bce(moved, inp)[0]) < float(five.bce(params, inp)[0])


# ------------------------------------------------------------------ Gissin's form
def _separable(n=60, d=6, labelled=10, seed=0):
    """Features where the labelled images sit apart from the rest along the first axis."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d)).astype(np.float32)
    mask = np.zeros(n, bool)
    mask[:labelled] = True
    z[mask, 0] += 6.0
    return jnp.asarray(z), jnp.asarray(mask)


def test_gissin_discriminator_learns_a_separable_pool():
    z, mask = _separable()
    g = strategies.get("dal_gissin", max_steps=400)
    fitted, held_acc = jax.jit(lambda z, m: g.fit(jax.random.key(0), z, m, ~m))(z, mask)
    assert float(held_acc) == 1.0
    p = jax.nn.sigmoid(g.logits(fitted, z))
    # Training stops at 98 % training accuracy (Gissin's rule), not at certainty.
    assert float(p[:10].min()) > 0.5 and float((p[10:] < 0.5).mean()) >= 0.95


@pytest.mark.parametrize(
    "sub_batches",
    [pytest.param(1, marks=pytest.mark.slow), 3, pytest.param(7, marks=pytest.mark.slow)],
)
def test_gissin_sub_batches_never_pick_an_image_twice(sub_batches):
    z, mask = _separable(n=60, labelled=5)
    g = strategies.get("dal_gissin", sub_batches=sub_batches, max_steps=50)
    picks = np.asarray(
        jax.jit(lambda z, m, k: g.choose(z, None, m, k, 7))(z, mask, jax.random.key(1))
    )
    assert picks.shape == (7,) and len(set(picks.tolist())) == 7
    assert not np.asarray(mask)[picks].any()


def test_gissin_candidates_are_capped_by_the_ratio():
    _, mask = _separable(n=60, labelled=2)
    g = strategies.get("dal_gissin", unlabelled_ratio=3)
    cand = np.asarray(g._candidates(jax.random.key(0), mask, 4))
    assert cand.sum() == 8 and not (cand & np.asarray(mask)).any()  # max(3 x 2, 2 x 4)
    every = strategies.get("dal_gissin", unlabelled_ratio=0)._candidates(None, mask, 4)
    assert np.asarray(every).sum() == 58


# ------------------------------------------------------------------ a smoke round each
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("dal_gissin", marks=pytest.mark.slow),
        pytest.param("dal_flat", marks=pytest.mark.slow),
        pytest.param("dal_multi", marks=pytest.mark.slow),
        pytest.param("dal_adam", marks=pytest.mark.slow),
        pytest.param("dal_steps5", marks=pytest.mark.slow),
    ],
)
def test_each_variant_runs_a_smoke_round(name, tmp_path):
    res = loop.run(smoke(strategy=name, rounds=2, seeds=1), tmp_path, progress=False)
    assert res["strategy"] == name and len(res["rounds"]) == 2
    diag = res["rounds"][1]["diagnostics"]
    assert set(diag) >= set(study_disc.KEYS)
    acc = [a for a in diag["disc_acc"] if a is not None]
    assert all(0.0 <= a <= 1.0 for a in acc)
    picked = res["rounds"][0]["selected"]
    assert all(len(set(p)) == len(p) for p in picked)


# ------------------------------------------------------------------ the study report
def _results(acc_per_round, disc_acc, picks_kind):
    rounds = []
    for r, (n, a) in enumerate(acc_per_round):
        rounds.append({
            "round": r, "labeled": n, "accuracy": [a, a + 0.01], "collapsed": [False, False],
            "diagnostics": {"disc_acc": [disc_acc[r], None], "disc_acc_train": [0.9, 0.8],
                            "p_labelled": [0.6, 0.55], "p_unlabelled": [0.4, 0.45]},
            "selected": [[picks_kind[r]], [picks_kind[r]]] if r < len(acc_per_round) - 1 else [],
        })  # fmt: skip
    return {"rounds": rounds, "dataset": "synthetic_grasps", "seeds": 2}


def test_study_report_shows_the_discriminator_per_round():
    curve = [(5, 0.5), (25, 0.6), (45, 0.7)]
    kinds = np.array([[1, 0], [1, 0], [0, 1], [1, 0]])  # kind 1 is rare
    results = {"rs": _results(curve, [0.5, 0.5, 0.5], [0, 1, 0]),
               "dal": _results(curve, [0.6, 0.8, 0.9], [2, 2, 2])}  # fmt: skip
    del results["rs"]["rounds"][0]["diagnostics"]["disc_acc"]
    for r in results["rs"]["rounds"]:
        r["diagnostics"] = {}
    pool_info = {"kind_names": ["box", "ring"], "kinds": kinds, "grasps": np.ones(4),
                 "object_pixels": np.ones(4)}  # fmt: skip
    rep = study_report.build(results, "rs", n_boot=200, pool_info=pool_info)
    part = rep["discriminator"]
    assert list(part) == ["dal"]
    rows = part["dal"]["rounds"]
    assert [r["disc_acc"]["mean"] for r in rows] == pytest.approx([0.6, 0.8, 0.9])
    assert [r["disc_acc"]["n"] for r in rows] == [1, 1, 1]
    assert rows[0]["rare_share"] == 1.0 and part["dal"]["pool_rare_share"] == 0.25
    md = study_report.markdown(rep)
    assert "## Can DAL's discriminator tell labelled from unlabelled images?" in md
    assert "It discriminates (mean held-out balanced accuracy >= 0.75) at 25, 45 labelled." in md
    results["dal"] = _results(curve, [0.5, 0.6, 0.55], [2, 2, 2])
    md = study_report.markdown(study_report.build(results, "rs", n_boot=200))
    assert "It does not discriminate at any round" in md
