"""DAL, the paper's strategy (Wei et al., RA-L 2023): a discriminator on the shared encoder's
pooled bottleneck learns P(labelled); each round the k unlabelled samples with the LOWEST p are
selected.

The discriminator is this strategy's plug-in (`Discriminator`): it trains jointly with GG-CNN on
L = L_GSP + alpha * L_DAL, so the encoder also sees the unlabelled images.
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


class Discriminator(plugin.Plugin):
    """DAL's discriminator on the pooled bottleneck: P(x is labelled).

    L_DAL is the binary cross-entropy with labelled = 1, unlabelled = 0, averaged over both
    batches. The encoder receives alpha * dL_DAL; the discriminator receives dL_DAL itself, so
    alpha only weighs the encoder's share (alpha = 0 is GG-CNN's own encoder with a
    discriminator trained on top, not an untrained discriminator). SGD with momentum.
    """

    name = "disc"
    needs_unlabelled = True
    needs_unlabelled_features = True

    def __init__(self, hidden=HIDDEN, lr=LR, momentum=MOMENTUM):
        self.module = models.Discriminator(tuple(hidden))
        self.lr, self.momentum = float(lr), float(momentum)

    def init(self, key, x):
        bottleneck = models.ENCODER[-1][1]
        return self.module.init(key, jnp.zeros((1, 2 * bottleneck)))["params"]

    def optimizer(self):
        return optax.sgd(self.lr, momentum=self.momentum or None)

    def logits(self, params, feats: models.Features):
        """feats.f3 [B, h, w, 8] -> logits [B]."""
        return self.module.apply({"params": params}, models.pooled(feats.f3))

    def bce(self, params, inp: plugin.StepInputs):
        """Weighted mean BCE over the labelled (target 1) and unlabelled (target 0) batches, and
        the weighted accuracy at p = 0.5."""
        lg_l = self.logits(params, inp.feats_l)
        lg_u = self.logits(params, inp.feats_u)
        per = jnp.concatenate(
            [
                optax.sigmoid_binary_cross_entropy(lg_l, 1.0),
                optax.sigmoid_binary_cross_entropy(lg_u, 0.0),
            ]
        )
        w = jnp.concatenate([inp.w_l, inp.w_u])
        acc = jnp.concatenate([lg_l > 0, lg_u <= 0])
        denom = jnp.maximum(w.sum(), 1.0)
        return (per * w).sum() / denom, (acc * w).sum() / denom

    def loss(self, params, inp, hparams: plugin.HParams):
        stop = jax.lax.stop_gradient
        to_encoder, acc = self.bce(stop(params), inp)
        feats_stopped = inp._replace(
            feats_l=jax.tree.map(stop, inp.feats_l), feats_u=jax.tree.map(stop, inp.feats_u)
        )
        to_disc, _ = self.bce(params, feats_stopped)
        return hparams.alpha * to_encoder + to_disc, {"dal_loss": to_disc, "disc_acc": acc}


class DAL(base.Strategy):
    """Lowest discriminator probability first. ``disc_*``: the discriminator's hidden widths,
    SGD learning rate and momentum."""

    name = "dal"

    def __init__(
        self,
        disc_hidden: tuple[int, ...] = HIDDEN,
        disc_lr: float = LR,
        disc_momentum: float = MOMENTUM,
        pool_batch: int = 16,
    ):
        super().__init__(pool_batch)
        self.disc = Discriminator(disc_hidden, disc_lr, disc_momentum)

    def plugins(self, train_config):
        return (self.disc,)

    def cache_key(self, trainer):
        if self.disc not in trainer.plugins:
            raise ValueError(
                "DAL selection needs its discriminator in the trainer: build the Trainer with "
                "plugins=strategy.plugins(config)"
            )
        return (*super().cache_key(trainer), self.disc.module)

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
        """The discriminator on the whole pool after training: mean p = P(labelled) over the
        labelled (``p_labelled``) and unlabelled (``p_unlabelled``) images, and its balanced
        accuracy at p = 0.5 (``disc_acc``; 0.5 = cannot tell the sets apart). -> [R] each."""
        p = self.score(self.pool_embeddings(trainer, states, inputs))
        lab = np.asarray(masks, bool)
        p_l = np.where(lab, p, 0).sum(1) / np.maximum(lab.sum(1), 1)
        p_u = np.where(~lab, p, 0).sum(1) / np.maximum((~lab).sum(1), 1)
        hit_l = np.where(lab, p > 0.5, 0).sum(1) / np.maximum(lab.sum(1), 1)
        hit_u = np.where(~lab, p <= 0.5, 0).sum(1) / np.maximum((~lab).sum(1), 1)
        return {"p_labelled": p_l, "p_unlabelled": p_u, "disc_acc": 0.5 * (hit_l + hit_u)}
