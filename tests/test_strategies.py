"""The six selection strategies: the common contract, and each algorithm against a brute-force
NumPy version or a planted network. Tiny pools (30 images of 24x24) keep compiles short; one
trainer/strategy pair per configuration is built once per module and reused."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dal_jax import strategies
from dal_jax.experiment import round_state
from dal_jax.model import checkpoint, models
from dal_jax.strategies import base, cs, gd, ll
from dal_jax.training import train
from dal_jax.training.plugin import HParams, StepInputs

N, H, S, K = 30, 24, 2, 5
CONFIGS = {
    "rs": ("rs", {}),
    "gd": ("gd", {}),
    "gd_pooled": ("gd", {"features": "pooled"}),
    "cs": ("cs", {}),
    "ll": ("ll", {}),
    "vaal": ("vaal", {"size": 16, "widths": (8, 8, 16, 16)}),
    "dal": ("dal", {}),
}


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.normal(size=(N, H, H, 1)).astype(np.float32))
    targets = jnp.asarray(rng.uniform(size=(N, H, H, 4)).astype(np.float32))
    masks = np.zeros((S, N), bool)
    masks[0, :8] = True
    masks[1, 5:17] = True
    keys = jax.random.split(jax.random.key(0), S)
    return inputs, targets, masks, keys


class Setups:
    """Lazily built (strategy, trainer, states) per CONFIGS entry and seed form."""

    def __init__(self, pool):
        self.pool = pool
        self.cache = {}

    def __call__(self, label, form="unrolled"):
        if (label, form) not in self.cache:
            name, cfg = CONFIGS[label]
            strategy = strategies.get(name, **cfg)
            tc = train.TrainConfig.reference(seed_form=form, chunk_steps=10)
            trainer = train.Trainer(tc, strategy.plugins(tc))
            states = trainer.init_states(self.pool[3], (H, H, 1))
            self.cache[label, form] = (strategy, trainer, states)
        return self.cache[label, form]


@pytest.fixture(scope="module")
def setups(pool):
    return Setups(pool)


def one_seed(tree, s):
    return jax.tree.map(lambda a: a[s : s + 1], tree)


def encode(trainer, params_ggcnn, inputs):
    return trainer.model.apply({"params": params_ggcnn}, inputs, method=models.GGCNN.encode)


# ------------------------------------------------------------------------------ the contract
def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="rs, gd, cs, ll, vaal, dal"):
        strategies.get("entropy")
    with pytest.raises(ValueError, match="bad config"):
        strategies.get("cs", knn=3)
    # DAL's discriminator is its own plug-in, as LL's and VAAL's networks are theirs.
    assert [p.name for p in strategies.get("dal").plugins(train.TrainConfig.reference())] == [
        "disc"
    ]
    assert strategies.get("rs").plugins(train.TrainConfig.reference()) == ()


# VAAL's and LL's contracts compile their networks' steps too (the slow tier runs them).
SLOW_CONTRACTS = ("vaal", "ll")


@pytest.mark.parametrize(
    "label",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CONTRACTS else n for n in CONFIGS],
)
def test_contract(label, setups, pool):
    """k distinct unlabelled per seed; same key -> same picks; batched == seed by seed; new
    masks of the same shape reuse the compiled program."""
    strategy, trainer, states = setups(label)
    inputs, _, masks, keys = pool
    picks = strategy.select(trainer, states, inputs, masks, K, keys)
    assert picks.shape == (S, K) and np.issubdtype(picks.dtype, np.integer)
    for s in range(S):
        assert len(set(picks[s].tolist())) == K
        assert not masks[s, picks[s]].any()
    np.testing.assert_array_equal(strategy.select(trainer, states, inputs, masks, K, keys), picks)

    traces = strategy.traces
    other = masks[::-1].copy()
    moved = strategy.select(trainer, states, inputs, other, K, keys)
    assert strategy.traces == traces, "changing only the masks recompiled the selection"
    assert all(not other[s, moved[s]].any() for s in range(S))

    for s in range(S):
        alone = strategy.select(
            trainer, one_seed(states, s), inputs, masks[s : s + 1], K, keys[s : s + 1]
        )
        np.testing.assert_array_equal(alone[0], picks[s])


def test_random_depends_on_key_only(setups, pool):
    strategy, trainer, states = setups("rs")
    inputs, _, masks, keys = pool
    a = strategy.select(trainer, states, inputs, masks, K, keys)
    b = strategy.select(trainer, states, inputs, masks, K, jax.random.split(jax.random.key(1), S))
    assert not np.array_equal(a, b)


def test_too_few_unlabelled_raises(setups, pool):
    strategy, trainer, states = setups("rs")
    inputs, _, masks, keys = pool
    full = masks.copy()
    full[1, : N - 3] = True
    with pytest.raises(ValueError, match="seed index 1 has only 3 unlabelled"):
        strategy.select(trainer, states, inputs, full, K, keys)


@pytest.mark.parametrize("label", ["cs", "ll", "vaal", "dal"])
def test_seed_forms_agree(label, setups, pool):
    """The vmapped and the unrolled pool pass pick the same samples."""
    strategy, trainer, states = setups(label)
    inputs, _, masks, keys = pool
    vtrainer = train.Trainer(dataclasses.replace(trainer.config, seed_form="vmap"), trainer.plugins)
    a = strategy.select(trainer, states, inputs, masks, K, keys)
    b = strategy.select(vtrainer, states, inputs, masks, K, keys)
    np.testing.assert_array_equal(a, b)


def test_pool_map_covers_every_row_once():
    """The last batch overlaps the previous one instead of padding; every row maps back."""
    x = jnp.arange(11.0).reshape(11, 1, 1, 1)
    params = {"w": jnp.array([1.0, 2.0])}
    for form in ("vmap", "unrolled"):
        out = jax.jit(
            lambda p, x, form=form: base.pool_map(
                lambda q, xb: xb[:, 0, 0, 0] * q["w"], p, x, 4, form
            )
        )(params, x)
        np.testing.assert_array_equal(out, np.arange(11.0)[None] * np.array([[1.0], [2.0]]))


# ------------------------------------------------------------------------------ CS
def brute_k_center(x, labelled, k):
    """Reference k-centre greedy in float64: picks and each pick's distance to its centres."""
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    nearest = d[:, labelled].min(axis=1)
    taken = labelled.copy()
    picks, gaps = [], []
    for _ in range(k):
        score = np.where(taken, -np.inf, nearest)
        i = int(np.argmax(score))
        picks.append(i)
        gaps.append(score[i])
        taken[i] = True
        nearest = np.minimum(nearest, d[i])
    return picks, gaps


def test_k_center_greedy_matches_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6))
    labelled = rng.random(40) < 0.3
    got = cs.k_center_greedy(
        jnp.asarray(x, jnp.float32), jnp.asarray(labelled), jax.random.key(0), 8
    )
    assert np.asarray(got).tolist() == brute_k_center(x, labelled, 8)[0]


def test_cs_select_has_k_center_property(setups, pool):
    """On the encoder features of each seed, every pick is (up to float32 rounding) as far from
    the labelled set and the earlier picks as any remaining candidate."""
    strategy, trainer, states = setups("cs")
    inputs, _, masks, keys = pool
    picks = strategy.select(trainer, states, inputs, masks, K, keys)
    for s in range(S):
        p = jax.tree.map(lambda a, s=s: a[s], states.params)
        x = np.asarray(encode(trainer, p["ggcnn"], inputs).f3, np.float64).reshape(N, -1)
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        centres = masks[s].copy()
        for i in picks[s]:
            gap = d[:, centres].min(axis=1)
            best = gap[~centres].max()
            assert gap[i] >= best - 1e-4 * max(best, 1.0)
            centres[i] = True


# ------------------------------------------------------------------------------ GD
class ReferenceGraphDensity:
    """The google/active-learning GraphDensitySampler, literally, on dense NumPy arrays: the
    graph and densities are built once per trial, and every select_batch_ call goes on
    reducing the same densities."""

    def __init__(self, x, n_neighbors=10):
        n = len(x)
        flat = x.reshape(n, -1).astype(np.float64)
        sd = flat.std(axis=0)
        flat = (flat - flat.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        gamma = 1.0 / flat.shape[1]
        dist = np.abs(flat[:, None, :] - flat[None, :, :]).sum(-1)
        self.connect = np.zeros((n, n))
        for i in range(n):
            order = [j for j in np.argsort(dist[i], kind="stable") if j != i][:n_neighbors]
            for j in order:
                self.connect[i, j] = self.connect[j, i] = np.exp(-dist[i, j] * gamma)
        self.density = self.connect.sum(axis=1) / (self.connect > 0).sum(axis=1)

    def select(self, labelled, k):
        density, already, batch = self.density, np.flatnonzero(labelled), []
        density[already] = density.min() - 1
        while len(batch) < k:
            sel = int(np.argmax(density))
            nbrs = np.flatnonzero(self.connect[sel] > 0)
            density[nbrs] = density[nbrs] - density[sel]
            batch.append(sel)
            density[already] = density.min() - 1
            density[batch] = density.min() - 1
        return batch


def brute_graph_density(x, labelled, k, n_neighbors=10):
    return ReferenceGraphDensity(x, n_neighbors).select(labelled, k)


def test_manhattan_chunks_match_numpy():
    """Several column chunks, a clamped last chunk and a constant column."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 700)).astype(np.float32)
    x[:, 5] = 3.0
    sd = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    want = np.abs(z[:, None] - z[None]).sum(-1)
    got = np.asarray(gd.manhattan_standardised(jnp.asarray(x)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-2)


def test_gd_matches_reference_algorithm(setups, pool):
    strategy, trainer, states = setups("gd")
    inputs, _, masks, keys = pool
    picks = strategy.select(trainer, states, inputs, masks, K, keys)
    x = np.asarray(inputs)
    for s in range(S):
        assert picks[s].tolist() == brute_graph_density(x, masks[s], K)


def test_gd_density_reductions_persist_across_rounds(setups, pool):
    """Two rounds against one reference sampler per seed (its densities carry over); without
    the record of the first round's picks the second round would pick differently."""
    strategy, trainer, states = setups("gd")
    inputs, _, masks, keys = pool
    x, masks = np.asarray(inputs), np.asarray(masks).copy()
    refs = [ReferenceGraphDensity(x) for _ in range(S)]
    history = []
    for rnd in range(2):
        past = round_state.past_order(history, masks.shape)
        picks = strategy.select(trainer, states, inputs, masks, K, keys, past=past)
        for s in range(S):
            assert picks[s].tolist() == refs[s].select(masks[s], K), (rnd, s)
        if rnd == 1:
            forgetful = strategy.select(trainer, states, inputs, masks, K, keys)
            assert (forgetful != picks).any()
        history.append({"selected": picks.tolist()})
        np.put_along_axis(masks, picks, True, axis=1)


# ------------------------------------------------------------------------------ DAL
def test_dal_picks_lowest_p_of_planted_discriminator(setups, pool):
    """Plant p = sigmoid(mean of bottleneck channel 0) (conv3's bias keeps the bottleneck
    positive, so ReLUs pass it through) and check the picks are the lowest-p unlabelled."""
    strategy, trainer, states = setups("dal")
    inputs, _, masks, keys = pool

    def plant(params):
        params = jax.tree.map(lambda a: a, params)
        g = dict(params["ggcnn"])
        g["encoder"] = dict(g["encoder"])
        g["encoder"]["conv3"] = dict(g["encoder"]["conv3"])
        g["encoder"]["conv3"]["bias"] = g["encoder"]["conv3"]["bias"] + 10.0
        disc = jax.tree.map(jnp.zeros_like, params["disc"])
        disc["fc1"]["kernel"] = disc["fc1"]["kernel"].at[:, 0, 0].set(1.0)
        disc["fc2"]["kernel"] = disc["fc2"]["kernel"].at[:, 0, 0].set(1.0)
        disc["out"]["kernel"] = disc["out"]["kernel"].at[:, 0, 0].set(1.0)
        return {**params, "ggcnn": g, "disc": disc}

    planted = states.replace(params=plant(states.params))
    picks = strategy.select(trainer, planted, inputs, masks, K, keys)
    for s in range(S):
        p = jax.tree.map(lambda a, s=s: a[s], planted.params)
        f3 = np.asarray(encode(trainer, p["ggcnn"], inputs).f3)
        assert (f3 > 0).all()
        score = np.where(masks[s], np.inf, f3[..., 0].mean(axis=(1, 2)))
        assert picks[s].tolist() == np.argsort(score, kind="stable")[:K].tolist()


def test_dal_needs_the_discriminator(pool):
    inputs, _, masks, keys = pool
    trainer = train.Trainer(train.TrainConfig.reference())
    states = trainer.init_states(keys, (H, H, 1))
    with pytest.raises(ValueError, match="needs its discriminator"):
        strategies.get("dal").select(trainer, states, inputs, masks, K, keys)


# ------------------------------------------------------------------------------ LL
def test_ll_picks_highest_predicted_loss(setups, pool):
    strategy, trainer, states = setups("ll")
    inputs, _, masks, keys = pool
    picks = strategy.select(trainer, states, inputs, masks, K, keys)
    for s in range(S):
        p = jax.tree.map(lambda a, s=s: a[s], states.params)
        pred = np.asarray(strategy.plugin.predict(p["ll"], encode(trainer, p["ggcnn"], inputs)))
        score = np.where(masks[s], -np.inf, pred)
        assert picks[s].tolist() == np.argsort(-score, kind="stable")[:K].tolist()


def test_ll_ranking_loss_by_hand():
    pred = jnp.array([3.0, 1.0, 0.0, 2.0])
    target = jnp.array([1.0, 0.0, 5.0, 0.5])
    # pairs (0, 3): targets agree with predictions by the margin -> 0; (1, 2): wrong -> 2.
    assert float(ll.ranking_loss(pred, target, jnp.ones(4))) == pytest.approx(1.0)
    assert float(ll.ranking_loss(pred, target, jnp.array([1.0, 1.0, 1.0, 0.0]))) == 2.0


def test_ll_gradient_into_encoder_stops_after_fraction(pool):
    inputs = pool[0][:8]
    plugin = ll.LossPredictionPlugin()
    params = plugin.init(jax.random.key(0), inputs[:1])
    g = models.GGCNN()
    gp = g.init(jax.random.key(1), inputs[:1])["params"]
    feats = g.apply({"params": gp}, inputs, method=models.GGCNN.encode)

    def grads(progress):
        def f(params, feats):
            inp = StepInputs(
                inputs, jnp.ones(8), inputs, jnp.ones(8), feats, None,
                jnp.arange(8.0), jnp.asarray(progress),
            )  # fmt: skip
            return plugin.loss(params, inp, {})[0]

        return jax.grad(f, argnums=(0, 1))(params, feats)

    for progress, flows in ((0.5, True), (0.7, False)):
        gparams, gfeats = grads(progress)
        assert any(float(jnp.abs(a).sum()) > 0 for a in jax.tree.leaves(gparams))
        to_encoder = sum(float(jnp.abs(a).sum()) for a in jax.tree.leaves(gfeats))
        assert (to_encoder > 0) == flows


@pytest.mark.slow
def test_ll_module_trains_in_the_joint_step(setups, pool):
    """The trainer updates the loss-prediction module in its joint step and reports its loss."""
    _, trainer, states = setups("ll")
    inputs, targets, masks, keys = pool
    before = jax.tree.map(np.asarray, states.params["ll"])
    copy = jax.tree.map(jnp.copy, states)  # training donates its input; keep the fixture's
    hp = HParams(jnp.zeros(S))
    trained, metrics = trainer.train(copy, inputs, targets, jnp.asarray(masks), hp, keys, 3)
    assert np.isfinite(np.asarray(metrics["ll_loss"])).all()
    moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b).max(), trained.params["ll"], before)
    # Every kernel moved (the output bias cannot: the ranking loss sees only differences).
    assert all(moved[layer]["kernel"] > 0 for layer in moved), moved
    assert moved["out"]["bias"] == 0


def test_random_subset_size():
    allowed = jnp.arange(30) % 3 != 0
    sub = base.random_subset(jax.random.key(0), allowed, 12)
    assert int(sub.sum()) == 12 and not bool((sub & ~allowed).any())


# ------------------------------------------------------------------------------ VAAL
def test_vae_encoder_conv_is_flax_conv_in_a_faster_form():
    """The VAE's strided conv (TorchConv with the "lecun_zero" init) has nn.Conv's parameters
    (names, shapes, initial values: saved VAEs load unchanged) and computes nn.Conv's
    function, and so does its gradient."""
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(1), (3, 16, 16, 5))
    flax_conv = nn.Conv(7, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))
    ours = models.TorchConv(7, 4, 2, 1, init_scheme="lecun_zero")
    params, own = flax_conv.init(jax.random.key(2), x), ours.init(jax.random.key(2), x)
    assert jax.tree.structure(params) == jax.tree.structure(own)
    jax.tree.map(np.testing.assert_array_equal, params, own)
    params = jax.tree.map(lambda a: a + 0.1, params)  # a non-zero bias too
    np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x), atol=1e-5)

    def grads(m):
        return jax.grad(lambda p, x: jnp.sum(jnp.sin(m.apply(p, x))), argnums=(0, 1))(params, x)

    for a, b in zip(jax.tree.leaves(grads(ours)), jax.tree.leaves(grads(flax_conv))):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_vaal_one_pass_equals_the_references_two_passes():
    """VAAL's VAE and discriminator losses, taken in one pass over a step's labelled and
    unlabelled batches, equal the reference's two passes (labelled, then unlabelled, each with
    its own weighted means), in value and gradient. The latent noise is switched off (logvar
    pinned very negative) so that both forms see the same z."""
    from dal_jax.strategies import vaal

    p = vaal.VAALPlugin(size=16, widths=(4, 8, 8, 8), latent=6, disc_hidden=(16,))
    b, rng = 3, np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(2 * b, 16, 16, 1)), jnp.float32)
    w = jnp.asarray([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])  # a padded sample in each half
    labelled = jnp.arange(2 * b) < b
    params = p.init(jax.random.key(1), x)
    vae = params["vae"]
    vae["logvar"] = {"kernel": 0 * vae["logvar"]["kernel"], "bias": vae["logvar"]["bias"] - 60}
    disc = jax.tree.map(lambda a: a + 0.05, params["disc"])  # non-zero biases
    key = jax.random.key(2)

    def wmean(v, w):
        return (v * w).sum() / w.sum()

    def two_passes(vae, disc):
        total, fooled = 0.0, 0.0
        for xs, ws in ((x[:b], w[:b]), (x[b:], w[b:])):
            recon, mu, logvar = p.vae(1).apply({"params": vae}, xs, key)
            mse = jnp.mean(jnp.square(recon - xs), axis=(1, 2, 3))
            kld = -0.5 * jnp.sum(1 + logvar - mu**2 - jnp.exp(logvar), axis=-1)
            total += wmean(mse, ws) + p.beta * (kld * ws).sum()
            logits = p.disc_logits(disc, mu)
            fooled += wmean(jnp.logaddexp(0.0, -logits), ws)  # BCE with target 1
        return total + p.adversary_weight * fooled

    def one_pass(vae, disc):
        return p.vae_objective(vae, disc, x, w, labelled, key)[0]

    np.testing.assert_allclose(one_pass(vae, disc), two_passes(vae, disc), rtol=1e-5)
    g1, g2 = jax.grad(one_pass, argnums=(0, 1))(vae, disc), jax.grad(two_passes, (0, 1))(vae, disc)
    for a, c in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)

    mu = jax.random.normal(jax.random.key(3), (2 * b, 6))
    logits = p.disc_logits(disc, mu)
    reference = wmean(jnp.logaddexp(0.0, -logits[:b]), w[:b]) + wmean(
        jnp.logaddexp(0.0, logits[b:]), w[b:]
    )
    np.testing.assert_allclose(p.disc_objective(disc, mu, w, labelled), reference, rtol=1e-5)


@pytest.mark.slow
def test_vaal_trains_and_checkpoints(setups, pool, tmp_path):
    """The VAE loss on the pool falls while VAAL trains alongside GG-CNN; the VAE and its
    discriminator live in the seed-batched state and come back from a checkpoint with the same
    selection."""
    strategy, trainer, states = setups("vaal")
    _, targets, masks, keys = pool
    # Smooth blobs: something a VAE can learn in a few steps (noise images are not).
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:H, :H]
    c, r = rng.uniform(4, H - 4, (N, 2, 1, 1)), rng.uniform(2, 6, (N, 1, 1))
    blobs = np.exp(-((yy - c[:, 0]) ** 2 + (xx - c[:, 1]) ** 2) / (2 * r**2))
    inputs = jnp.asarray(blobs[..., None], jnp.float32)

    def vae_loss(states):
        """Each seed's mean per-sample VAE loss on the pool, with fixed sampling noise."""
        per_seed = [jax.tree.map(lambda a, s=s: a[s], states.params["vaal"]) for s in range(S)]
        loss = strategy.plugin.per_sample_vae_loss
        return np.array([float(loss(p["vae"], inputs, jax.random.key(5)).mean()) for p in per_seed])

    before = vae_loss(states)
    states = jax.tree.map(jnp.copy, states)  # training donates its input; keep the fixture's
    hp = HParams(jnp.zeros(S))
    states, metrics = trainer.train(states, inputs, targets, jnp.asarray(masks), hp, keys, 30)
    after = vae_loss(states)
    assert (after < 0.8 * before).all(), (before, after)
    assert {"vaal_vae_loss", "vaal_disc_loss"} <= set(metrics)
    assert jax.tree.leaves(states.params["vaal"])[0].shape[0] == S

    picks = strategy.select(trainer, states, inputs, masks, K, keys)
    checkpoint.save(tmp_path, 0, states, {"masks": masks}, {"strategy": "vaal"})
    template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), states)
    _, restored, _, _ = checkpoint.restore(tmp_path, state=template)
    np.testing.assert_array_equal(strategy.select(trainer, restored, inputs, masks, K, keys), picks)
