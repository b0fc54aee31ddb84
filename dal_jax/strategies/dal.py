"""DAL, the paper's strategy (Wei et al., RA-L 2023): a discriminator on the shared encoder's
features learns P(labelled); each round the k unlabelled samples with the LOWEST p are selected.

The discriminator is this strategy's plug-in (`Discriminator`): it trains jointly with GG-CNN on
L = L_GSP + alpha * L_DAL, so the encoder also sees the unlabelled images. A fixed share of the
pool (`HOLDOUT`, chosen by `held_out`) never enters the discriminator's loss, so that its
accuracy can be measured on images it did not train on (`DAL.diagnostics`).

Variants (each a config field of ``dal``, and named in `dal_jax.strategies.VARIANTS`): the
discriminator's input (`INPUTS`), its optimiser (`OPTIMIZERS`) and several discriminator steps
per GG-CNN step. Gissin & Shalev-Shwartz's form, a discriminator trained after each round on
the frozen encoder, is `dal_jax.strategies.dal_gissin`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dal_jax.model import models
from dal_jax.strategies import base
from dal_jax.training import plugin

#: The paper's discriminator, the one place its defaults are written: the MLP's hidden widths,
#: and SGD's learning rate and momentum.
HIDDEN, LR, MOMENTUM = (64, 16), 1e-2, 0.9
#: The share of the pool the discriminator never trains on (its accuracy is measured there).
HOLDOUT = 0.2
#: The discriminator's input: "pooled", the bottleneck's spatial mean and max (16 numbers, the
#: paper's "latent features"); "flat", the whole bottleneck flattened (H/12 * W/12 * 8);
#: "multi", the spatial mean and max of all three encoder layers (2 * (32 + 16 + 8) = 112).
INPUTS = ("pooled", "flat", "multi")
OPTIMIZERS = ("sgd", "adam")


def held_out(idx, fraction: float):
    """Whether pool index ``idx`` is in the part of the pool no discriminator trains on.

    A fixed pseudo-random ``fraction`` of the indices, the same in every run and round (an
    integer hash of the index, so the compiled step and the host agree without passing a
    mask). idx: numpy or jax integer array -> bool array of its shape.
    """
    xp = jnp if isinstance(idx, jax.Array) else np
    x = xp.asarray(idx).astype(xp.uint32)
    # A 32-bit integer mix (the "lowbias32" finaliser): consecutive indices spread uniformly.
    x = x ^ (x >> 16)
    x = x * xp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * xp.uint32(0x846CA68B)
    x = x ^ (x >> 16)
    return (x >> 8) < xp.uint32(round(float(fraction) * (1 << 24)))


def features(feats: models.Features, which: str):
    """The discriminator's input from the encoder's features: -> [B, D] (see `INPUTS`)."""
    if which == "pooled":
        return models.pooled(feats.f3)
    if which == "flat":
        return feats.f3.reshape(feats.f3.shape[0], -1)
    if which == "multi":
        return jnp.concatenate([models.pooled(f) for f in feats], axis=-1)
    raise ValueError(f"unknown discriminator input {which!r}; valid: {', '.join(INPUTS)}")


def feature_size(image_shape, which: str) -> int:
    """D of `features` for images of ``image_shape`` (H, W, C), from the encoder's own shapes
    (`jax.eval_shape`: nothing is computed)."""
    check_choice("disc_input", which, INPUTS)
    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    encoder = models.Encoder()
    feats = jax.eval_shape(lambda x: encoder.init_with_output(jax.random.key(0), x)[0], x)
    return int(jax.eval_shape(lambda f: features(f, which), feats).shape[-1])


def check_choice(field: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{field} must be one of {', '.join(map(str, valid))}; got {value!r}")


class Discriminator(plugin.Plugin):
    """DAL's discriminator on the encoder's features: P(x is labelled).

    L_DAL is the binary cross-entropy with labelled = 1, unlabelled = 0, averaged over both
    batches, over the images outside the held-out share (`held_out`). The encoder receives
    alpha * dL_DAL; the discriminator receives dL_DAL itself, so alpha only weighs the
    encoder's share (alpha = 0 is GG-CNN's own encoder with a discriminator trained on top,
    not an untrained discriminator). ``steps`` > 1 adds steps - 1 discriminator-only steps on
    the same batch's (stopped) features after each joint step.
    """

    name = "disc"
    needs_unlabelled = True
    needs_unlabelled_features = True

    def __init__(
        self,
        hidden=HIDDEN,
        lr=LR,
        momentum=MOMENTUM,
        inputs: str = "pooled",
        optimizer: str = "sgd",
        steps: int = 1,
        holdout: float = HOLDOUT,
    ):
        check_choice("disc_input", inputs, INPUTS)
        check_choice("disc_optimizer", optimizer, OPTIMIZERS)
        if int(steps) < 1:
            raise ValueError(f"disc_steps must be at least 1; got {steps!r}")
        if not 0.0 <= float(holdout) < 1.0:
            raise ValueError(f"disc_holdout must be in [0, 1); got {holdout!r}")
        self.module = models.Discriminator(tuple(hidden))
        self.lr, self.momentum = float(lr), float(momentum)
        self.inputs, self.opt_name, self.steps = inputs, optimizer, int(steps)
        self.holdout = float(holdout)

    def init(self, key, x):
        size = feature_size(x.shape[1:], self.inputs)
        return self.module.init(key, jnp.zeros((1, size)))["params"]

    def optimizer(self):
        if self.opt_name == "adam":
            return optax.adam(self.lr)
        return optax.sgd(self.lr, momentum=self.momentum or None)

    def logits(self, params, feats: models.Features):
        """feats (`models.Features` of B images) -> logits [B]."""
        return self.module.apply({"params": params}, features(feats, self.inputs))

    def _trained_on(self, w, idx):
        """Weights [B] with the held-out images' set to 0."""
        if self.holdout == 0.0 or idx is None:
            return w
        return w * (~held_out(idx, self.holdout)).astype(w.dtype)

    def bce(self, params, inp: plugin.StepInputs):
        """Weighted mean BCE over the labelled (target 1) and unlabelled (target 0) batches, and
        the weighted accuracy at p = 0.5, over the images the discriminator trains on."""
        lg_l = self.logits(params, inp.feats_l)
        lg_u = self.logits(params, inp.feats_u)
        per = jnp.concatenate(
            [
                optax.sigmoid_binary_cross_entropy(lg_l, 1.0),
                optax.sigmoid_binary_cross_entropy(lg_u, 0.0),
            ]
        )
        w_l = self._trained_on(inp.w_l, inp.idx_l)
        w_u = self._trained_on(inp.w_u, inp.idx_u)
        w = jnp.concatenate([w_l, w_u])
        acc = jnp.concatenate([lg_l > 0, lg_u <= 0])
        denom = jnp.maximum(w.sum(), 1.0)
        return (per * w).sum() / denom, (acc * w).sum() / denom

    def _stopped(self, inp):
        stop = jax.lax.stop_gradient
        return inp._replace(
            feats_l=jax.tree.map(stop, inp.feats_l), feats_u=jax.tree.map(stop, inp.feats_u)
        )

    def loss(self, params, inp, hparams: plugin.HParams):
        to_encoder, acc = self.bce(jax.lax.stop_gradient(params), inp)
        to_disc, _ = self.bce(params, self._stopped(inp))
        return hparams.alpha * to_encoder + to_disc, {"dal_loss": to_disc, "disc_acc": acc}

    def has_extra_update(self) -> bool:
        return self.steps > 1

    def extra_update(self, params, opt_state, inp, key):
        """steps - 1 more discriminator steps on this step's batch."""
        del key
        if self.steps <= 1:
            return params, opt_state, {}
        inp, opt = self._stopped(inp), self.optimizer()

        def one(carry, _):
            p, s = carry
            grads = jax.grad(lambda p: self.bce(p, inp)[0])(p)
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        (params, opt_state), _ = jax.lax.scan(one, (params, opt_state), None, self.steps - 1)
        return params, opt_state, {}


def discriminator_report(p, labelled, held) -> dict:
    """How well P(labelled) separates the sets, per run, on the held-out images and on those
    trained on.

    p [R, N] P(labelled); labelled [R, N] bool; held [N] bool (held out of the discriminator's
    training). -> "disc_acc" (balanced accuracy at p = 0.5 on held-out images; 0.5 = cannot
    tell the sets apart; NaN when a set has no held-out image), "disc_acc_train" (the same on
    the images it trained on), "p_labelled" / "p_unlabelled" (mean p on the held-out labelled /
    unlabelled images), each [R].
    """
    p, lab = np.asarray(p, np.float64), np.asarray(labelled, bool)
    held = np.broadcast_to(np.asarray(held, bool), lab.shape)

    def mean(values, where):
        n = where.sum(1)
        return np.where(n > 0, np.where(where, values, 0).sum(1) / np.maximum(n, 1), np.nan)

    def balanced(part):
        return 0.5 * (mean(p > 0.5, lab & part) + mean(p <= 0.5, ~lab & part))

    return {
        "disc_acc": balanced(held),
        "disc_acc_train": balanced(~held),
        "p_labelled": mean(p, lab & held),
        "p_unlabelled": mean(p, ~lab & held),
    }


class DAL(base.Strategy):
    """Lowest discriminator probability first. ``disc_*``: the discriminator's hidden widths,
    learning rate, SGD momentum, input (`INPUTS`), optimiser (`OPTIMIZERS`), steps per GG-CNN
    step and held-out share of the pool (`HOLDOUT`)."""

    name = "dal"

    def __init__(
        self,
        disc_hidden: tuple[int, ...] = HIDDEN,
        disc_lr: float = LR,
        disc_momentum: float = MOMENTUM,
        disc_input: str = "pooled",
        disc_optimizer: str = "sgd",
        disc_steps: int = 1,
        disc_holdout: float = HOLDOUT,
        pool_batch: int = 16,
    ):
        super().__init__(pool_batch)
        self.disc = Discriminator(
            disc_hidden, disc_lr, disc_momentum, disc_input, disc_optimizer, disc_steps,
            disc_holdout,
        )  # fmt: skip

    def plugins(self, train_config):
        return (self.disc,)

    def cache_key(self, trainer):
        if self.disc not in trainer.plugins:
            raise ValueError(
                "DAL selection needs its discriminator in the trainer: build the Trainer with "
                "plugins=strategy.plugins(config)"
            )
        return (*super().cache_key(trainer), self.disc.key())

    def embed(self, trainer, params, xb):
        """xb [b, H, W, C] -> discriminator logits [b] (monotone in p)."""
        feats = trainer.model.apply({"params": params["ggcnn"]}, xb, method=models.GGCNN.encode)
        return self.disc.logits(params[self.disc.name], feats)

    def choose(self, emb, shared, mask, key, k: int):
        """emb [N] logits, mask [N] labelled -> the k unlabelled with the lowest logit."""
        return base.masked_top_k(-emb, ~mask, k)

    def score(self, emb):
        """The selection score shown to users: p = P(labelled), from the logits [..., N]."""
        return 1.0 / (1.0 + np.exp(-np.asarray(emb, np.float64)))

    def diagnostics(self, trainer, states, inputs, masks) -> dict:
        """The discriminator on the whole pool after training (`discriminator_report`; with
        ``disc_holdout = 0`` every image was trained on and "disc_acc" is NaN)."""
        p = self.score(self.pool_embeddings(trainer, states, inputs))
        held = held_out(np.arange(p.shape[1]), self.disc.holdout)
        return discriminator_report(p, masks, held)
