"""DAL (the paper, SPEC section 1): score every unlabelled sample with the discriminator's
p = P(labelled) on the shared encoder's pooled bottleneck and take the k with the LOWEST p.

The discriminator is trained jointly by the trainer (`dal_jax.train.Discriminator`, added when
``TrainConfig.use_disc`` is True), so this strategy has no plug-ins of its own.
"""

from __future__ import annotations

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
