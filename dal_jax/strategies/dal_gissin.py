"""DAL in Gissin & Shalev-Shwartz's form ("Discriminative Active Learning", 2019), beside the
paper's joint form (`dal_jax.strategies.dal`).

GG-CNN trains alone (no plug-in, no alpha). After each round's training a fresh MLP learns
P(labelled) on the FROZEN encoder's features of the pool, with both classes weighted equally,
until its balanced accuracy on the held-out share of the pool (`dal.held_out`) stops improving
or its training accuracy passes 98 % (Gissin's own stopping rule, which keeps near-duplicates
of labelled images from scoring as confidently labelled). Selection runs in ``sub_batches``
steps: pick the candidates with the lowest P(labelled), count them as labelled, retrain, pick
again. As in the reference code the candidates are a random subset of the unlabelled pool, at
most ``unlabelled_ratio`` times the labelled set, and the MLP has three hidden layers of 20
units for inputs under 30 numbers, else 256.

Where this form differs from the reference: features are standardised over the pool, training
is full-batch Adam, and early stopping watches the held-out accuracy (the reference watches
training accuracy only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dal_jax.model import models
from dal_jax.strategies import base, dal

SUB_BATCHES = 10
UNLABELLED_RATIO = 10
LR = 1e-3
MAX_STEPS = 1000
EVAL_EVERY = 10  # steps between two held-out measurements
PATIENCE = 10  # measurements without improvement before training stops
TRAIN_ACC_STOP = 0.98


def widths(size: int) -> tuple[int, ...]:
    """The reference MLP's hidden widths for an input of ``size`` numbers."""
    return (20,) * 3 if size < 30 else (256,) * 3


def standardise(z):
    """z [N, D] -> each feature at zero mean and unit variance over the pool."""
    return (z - z.mean(0)) / (z.std(0) + 1e-6)


def balanced_accuracy(logits, labelled, part):
    """Balanced accuracy at p = 0.5 over ``part`` [N] bool, NaN-free: a class with no image
    in ``part`` counts as 0.5 (chance)."""

    def hit_rate(hit, where):
        n = where.sum()
        return jnp.where(n > 0, (hit & where).sum() / jnp.maximum(n, 1), 0.5)

    return 0.5 * (hit_rate(logits > 0, labelled & part) + hit_rate(logits <= 0, ~labelled & part))


class DALGissin(base.Strategy):
    """Lowest P(labelled) first, by a discriminator trained after each round on the frozen
    encoder's features (``disc_input``, `dal.INPUTS`), in ``sub_batches`` retrained steps."""

    name = "dal_gissin"

    def __init__(
        self,
        disc_input: str = "pooled",
        sub_batches: int = SUB_BATCHES,
        unlabelled_ratio: int = UNLABELLED_RATIO,
        disc_lr: float = LR,
        max_steps: int = MAX_STEPS,
        disc_holdout: float = dal.HOLDOUT,
        pool_batch: int = 16,
    ):
        super().__init__(pool_batch)
        dal.check_choice("disc_input", disc_input, dal.INPUTS)
        for field, value in (("sub_batches", sub_batches), ("max_steps", max_steps)):
            if int(value) < 1:
                raise ValueError(f"{field} must be at least 1; got {value!r}")
        if int(unlabelled_ratio) < 0:
            raise ValueError(f"unlabelled_ratio must be >= 0 (0: all); got {unlabelled_ratio!r}")
        if not 0.0 < float(disc_holdout) < 1.0:
            raise ValueError(f"disc_holdout must be in (0, 1); got {disc_holdout!r}")
        self.inputs, self.sub_batches = disc_input, int(sub_batches)
        self.ratio, self.lr, self.max_steps = int(unlabelled_ratio), float(disc_lr), int(max_steps)
        self.holdout = float(disc_holdout)

    def cache_key(self, trainer):
        settings = (self.inputs, self.sub_batches, self.ratio, self.lr, self.max_steps)
        return (*super().cache_key(trainer), settings, self.holdout)

    def embed(self, trainer, params, xb):
        """xb [b, H, W, C] -> the frozen encoder's features [b, D]."""
        feats = trainer.model.apply({"params": params["ggcnn"]}, xb, method=models.GGCNN.encode)
        return dal.features(feats, self.inputs)

    # ------------------------------------------------------------------ the discriminator
    def fit(self, key, z, labelled, unlabelled):
        """A fresh MLP on standardised features z [N, D]: labelled [N] bool (class 1),
        unlabelled [N] bool (class 0, the candidates); images in the held-out share train
        nothing. -> (params, held-out balanced accuracy of the kept params)."""
        module = self.module(z.shape[-1])
        params = module.init(key, z[:1])["params"]
        opt = optax.adam(self.lr)
        held = dal.held_out(jnp.arange(z.shape[0]), self.holdout)
        w_l = jnp.where(labelled & ~held, 1.0, 0.0)
        w_u = jnp.where(unlabelled & ~held, 1.0, 0.0)
        # Each class weighs half of the loss, whatever its size.
        w = w_l / jnp.maximum(2 * w_l.sum(), 1) + w_u / jnp.maximum(2 * w_u.sum(), 1)
        target = labelled.astype(jnp.float32)

        def loss(p):
            lg = module.apply({"params": p}, z)
            return (optax.sigmoid_binary_cross_entropy(lg, target) * w).sum()

        def steps(p, s):
            def one(_, c):
                updates, s = opt.update(jax.grad(loss)(c[0]), c[1], c[0])
                return optax.apply_updates(c[0], updates), s

            return jax.lax.fori_loop(0, EVAL_EVERY, one, (p, s))

        def measure(p):
            lg = module.apply({"params": p}, z)
            train_part = (labelled | unlabelled) & ~held
            return balanced_accuracy(lg, labelled, held), balanced_accuracy(
                lg, labelled, train_part
            )

        def cond(c):
            i, _, _, _, _, since, train_acc = c
            return (
                (i < self.max_steps // EVAL_EVERY)
                & (since < PATIENCE)
                & (train_acc <= TRAIN_ACC_STOP)
            )

        def body(c):
            i, p, s, best_p, best, since, _ = c
            p, s = steps(p, s)
            acc, train_acc = measure(p)
            better = acc >= best  # ties keep training, as the reference's checkpointing does
            best_p = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, best_p)
            return (
                i + 1, p, s, best_p, jnp.maximum(acc, best), jnp.where(better, 0, since + 1),
                train_acc,
            )  # fmt: skip

        acc0, train0 = measure(params)
        init = (0, params, opt.init(params), params, acc0, 0, train0)
        _, _, _, best_p, best, _, _ = jax.lax.while_loop(cond, body, init)
        return best_p, best

    def module(self, size: int) -> models.Discriminator:
        return models.Discriminator(widths(size))

    def logits(self, params, z):
        """z [N, D] -> logits of P(labelled) [N]."""
        return self.module(z.shape[-1]).apply({"params": params}, z)

    # ------------------------------------------------------------------ selection
    def _candidates(self, key, mask, k: int):
        """The unlabelled images a round may pick from: a random subset of at most
        ``unlabelled_ratio`` x labelled (never fewer than 2k), all when the ratio is 0."""
        free = ~mask
        if self.ratio == 0:
            return free
        size = jnp.maximum(self.ratio * mask.sum(), 2 * k)
        return base.random_subset(key, free, size)

    def choose(self, emb, shared, mask, key, k: int):
        """emb [N, D] features, mask [N] labelled -> [k] int32 distinct unlabelled indices,
        in the order picked (sub-batch by sub-batch, lowest P(labelled) first)."""
        n, nsub = mask.shape[0], min(self.sub_batches, k)
        z = standardise(emb.astype(jnp.float32))
        k_cand, k_fit = jax.random.split(key)
        cand = self._candidates(k_cand, mask, k)
        sizes = jnp.asarray([k // nsub + (j < k % nsub) for j in range(nsub)], jnp.int32)

        def sub_batch(carry, j):
            lab, order = carry
            free = cand & ~lab
            fitted, _ = self.fit(jax.random.fold_in(k_fit, j), z, lab, free)
            score = jnp.where(free, self.logits(fitted, z), jnp.inf)
            rank = jnp.argsort(jnp.argsort(score))  # 0 = lowest P(labelled)
            pick = free & (rank < sizes[j])
            return (lab | pick, jnp.where(pick, j * n + rank, order)), None

        order = jnp.full((n,), nsub * n, jnp.int32)
        (_, order), _ = jax.lax.scan(sub_batch, (mask, order), jnp.arange(nsub))
        return jnp.argsort(order)[:k].astype(jnp.int32)

    def diagnostics(self, trainer, states, inputs, masks) -> dict:
        """The discriminator of the round's first sub-batch (trained on the round's labelled
        set against all unlabelled images) on the whole pool (`dal.discriminator_report`)."""
        emb = jnp.asarray(self.pool_embeddings(trainer, states, inputs))
        masks = jnp.asarray(np.asarray(masks, bool))
        key = ("diagnostics", self.cache_key(trainer))
        fn = self._compiled.get(key)
        if fn is None:

            def one(e, m):
                z = standardise(e.astype(jnp.float32))
                fitted, _ = self.fit(jax.random.key(0), z, m, ~m)
                return jax.nn.sigmoid(self.logits(fitted, z))

            fn = self._compiled[key] = jax.jit(jax.vmap(one))
        p = np.asarray(fn(emb, masks))
        held = dal.held_out(np.arange(p.shape[1]), self.holdout)
        return dal.discriminator_report(p, np.asarray(masks), held)
