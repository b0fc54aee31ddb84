"""DAL (the paper, SPEC section 1): score every unlabelled sample with the discriminator's
p = P(labelled) on the shared encoder's pooled bottleneck and take the k with the LOWEST p.

The discriminator is trained jointly by the trainer (`dal_jax.train.Discriminator`, added when
``TrainConfig.use_disc`` is True), so this strategy has no plug-ins of its own.
"""

from __future__ import annotations

import numpy as np

from dal_jax import models
from dal_jax.strategies import base


def _disc(trainer):
    for p in trainer.plugins:
        if p.name == "disc":
            return p
    raise ValueError(
        "DAL selection needs the trainer's discriminator: build the Trainer with "
        "TrainConfig(use_disc=True) (strategy.uses_disc is True for DAL)"
    )


class DAL(base.Strategy):
    """Lowest discriminator probability first."""

    name = "dal"
    uses_disc = True

    def cache_key(self, trainer):
        return (*super().cache_key(trainer), _disc(trainer).module)

    def embed(self, trainer, params, xb):
        """xb [b, H, W, C] -> discriminator logits [b] (monotone in p)."""
        feats = trainer.model.apply({"params": params["ggcnn"]}, xb, method=models.GGCNN.encode)
        return _disc(trainer).logits(params["disc"], feats)

    def choose(self, emb, shared, mask, key, k: int):
        """emb [N] logits, mask [N] labelled -> the k unlabelled with the lowest logit."""
        return base.masked_top_k(-emb, ~mask, k)

    def diagnostics(self, trainer, states, inputs, masks) -> dict:
        """The discriminator on the whole pool after training: mean p = P(labelled) over the
        labelled (``p_labelled``) and unlabelled (``p_unlabelled``) images, and its balanced
        accuracy at p = 0.5 (``disc_acc``; 0.5 = cannot tell the sets apart). -> [S] each."""
        logits = self.pool_embeddings(trainer, states, inputs).astype(np.float64)
        p = 1.0 / (1.0 + np.exp(-logits))
        lab = np.asarray(masks, bool)
        p_l = np.where(lab, p, 0).sum(1) / np.maximum(lab.sum(1), 1)
        p_u = np.where(~lab, p, 0).sum(1) / np.maximum((~lab).sum(1), 1)
        hit_l = np.where(lab, p > 0.5, 0).sum(1) / np.maximum(lab.sum(1), 1)
        hit_u = np.where(~lab, p <= 0.5, 0).sum(1) / np.maximum((~lab).sum(1), 1)
        return {"p_labelled": p_l, "p_unlabelled": p_u, "disc_acc": 0.5 * (hit_l + hit_u)}
