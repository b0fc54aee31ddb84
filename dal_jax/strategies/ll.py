"""LL: learning loss (Yoo & Kweon, CVPR 2019).

A loss-prediction module reads the encoder's three feature levels (per level: global average
pool -> FC 128 -> ReLU; concatenate; FC -> 1) and predicts GG-CNN's per-sample loss. It trains
in the same joint step as GG-CNN with the pairwise ranking loss (margin 0.1, weight 1): the
batch is split into pairs (i, B-1-i) and the module is asked to order each pair like the true
losses by at least the margin. Its gradient reaches the encoder only during the first 60% of
the round's steps (the reference detaches the features after epoch 120 of 200).

Margin: the reference's 1 (with weight 1) was set for classification losses; the margin fixes
the scale the module's predictions must separate pairs by, and so how hard the ranking term
pulls on the shared encoder. Measured with this project's recipe (``python -m
experiments.ll_scale``, experiments/RESULTS.md "Baseline calibration"): GG-CNN's per-sample
losses are 0.7-1.9 with pair gaps of about 0.45, and with margin 1 the ranking term's gradient on the encoder was 1.1-3.2
times the grasp loss's over a round; with 0.1 it is 0.3-1.4 times (median 0.5), so the grasp
loss, not the ranking, leads the shared encoder.

Selection: a random subset of up to 10,000 unlabelled samples, the k highest predicted losses.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dal_jax.model import models
from dal_jax.strategies import base
from dal_jax.training import plugin


class LossNet(nn.Module):
    """Features (f1, f2, f3) -> predicted loss [B]."""

    hidden: int = 128

    @nn.compact
    def __call__(self, feats: models.Features):
        levels = []
        for i, f in enumerate(feats):
            g = f.mean(axis=(1, 2))
            levels.append(nn.relu(nn.Dense(self.hidden, name=f"fc{i + 1}")(g)))
        return nn.Dense(1, name="out")(jnp.concatenate(levels, axis=-1))[..., 0]


def ranking_loss(pred, target, weight, margin: float = 1.0):
    """Yoo & Kweon's pairwise loss-prediction loss.

    pred, target, weight [B] (B even; weight 0 marks padding). Pairs are (i, B-1-i) for
    i < B/2; a pair counts only if both members are real. -> scalar (mean over real pairs).
    """
    half = pred.shape[0] // 2
    dp = (pred - pred[::-1])[:half]
    dt = jax.lax.stop_gradient(target - target[::-1])[:half]
    sign = jnp.where(dt > 0, 1.0, -1.0)  # the reference's 2 * sign(clamp(dt, 0)) - 1
    w = (weight * weight[::-1])[:half]
    per = jnp.maximum(margin - sign * dp, 0.0)
    return (per * w).sum() / jnp.maximum(w.sum(), 1.0)


def gate_gradient(x, open_):
    """x in the forward pass; its gradient is passed through only when ``open_`` is True."""
    stopped = jax.lax.stop_gradient(x)
    return stopped + (x - stopped) * open_.astype(x.dtype)


class LossPredictionPlugin(plugin.Plugin):
    """The loss-prediction module as a joint training plug-in (network name "ll")."""

    name = "ll"
    needs_unlabelled = False
    joint = True

    def __init__(self, hidden=128, margin=0.1, weight=1.0, stop_fraction=0.6, lr=1e-3):
        self.module = LossNet(int(hidden))
        self.margin, self.weight = float(margin), float(weight)
        self.stop_fraction, self.lr = float(stop_fraction), float(lr)

    def init(self, key, x):
        # Only the channel counts of the three levels shape the parameters.
        feats = models.Features(*(jnp.zeros((1, 1, 1, c)) for _, c, *_ in models.ENCODER))
        return self.module.init(key, feats)["params"]

    def optimizer(self):
        return optax.adam(self.lr)

    def predict(self, params, feats: models.Features):
        """feats -> predicted loss [B]."""
        return self.module.apply({"params": params}, feats)

    def loss(self, params, inp: plugin.StepInputs, hparams):
        open_ = inp.progress < self.stop_fraction
        feats = jax.tree.map(lambda f: gate_gradient(f, open_), inp.feats_l)
        pred = self.predict(params, feats)
        rank = ranking_loss(pred, inp.task_loss, inp.w_l, self.margin)
        return self.weight * rank, {"ll_loss": rank}


class LearningLoss(base.Strategy):
    """Top-k predicted loss among a random subset of up to ``subset`` unlabelled samples."""

    name = "ll"

    def __init__(
        self,
        hidden: int = 128,
        margin: float = 0.1,
        weight: float = 1.0,
        stop_fraction: float = 0.6,
        lr: float = 1e-3,
        subset: int = 10_000,
        pool_batch: int = 16,
    ):
        super().__init__(pool_batch)
        self.plugin = LossPredictionPlugin(hidden, margin, weight, stop_fraction, lr)
        self.subset = int(subset)

    def plugins(self, train_config):
        return (self.plugin,)

    def cache_key(self, trainer):
        return (*super().cache_key(trainer), self.plugin.module, self.subset)

    def embed(self, trainer, params, xb):
        """xb [b, H, W, C] -> predicted loss [b]."""
        feats = trainer.model.apply({"params": params["ggcnn"]}, xb, method=models.GGCNN.encode)
        return self.plugin.predict(params[self.plugin.name], feats)

    def choose(self, emb, shared, mask, key, k: int):
        """emb [N] predicted losses, mask [N] labelled -> [k] int32, highest first."""
        size = max(self.subset, k)  # a subset smaller than k could not supply k picks
        if size >= mask.shape[0]:
            candidates = ~mask  # the subset would be every unlabelled sample
        else:
            candidates = base.random_subset(key, ~mask, size)
        return base.masked_top_k(emb, candidates, k)
