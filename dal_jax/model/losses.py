"""GG-CNN's training loss with the recipe's weighting, and the learning-rate schedule."""

from __future__ import annotations

import jax.numpy as jnp


def ggcnn_loss(maps, targets, pos_weight: float = 1.0, weight_heads: str = "pos"):
    """GG-CNN's loss per sample: the sum over the four heads of the mean squared error, with
    the error at grasp pixels (target pos = 1) weighted by ``pos_weight`` (1: GG-CNN's own loss).

    ``weight_heads``: "pos" weights the quality head only; "all" every head; "masked" weights
    the quality head and trains the angle and width heads at grasp pixels only (weight
    ``pos_weight`` there, 0 on the background, where the detector never reads them).

    maps, targets: [B, H, W, 4] -> [B].
    """
    err = (maps - targets) ** 2
    if pos_weight != 1.0 or weight_heads == "masked":
        t = targets[..., :1]
        w = 1.0 + (pos_weight - 1.0) * t
        if weight_heads == "all":
            err = err * w
        elif weight_heads == "masked":
            err = jnp.concatenate([err[..., :1] * w, err[..., 1:] * (pos_weight * t)], axis=-1)
        else:
            err = err.at[..., :1].multiply(w)
    return jnp.mean(err, axis=(1, 2)).sum(axis=-1)


def lr_multiplier(progress, warmup: float, final: float):
    """The learning-rate schedule as a factor of the peak rate, at ``progress`` in [0, 1] of
    the round: a linear warmup over the first ``warmup`` fraction, then a cosine decay from 1
    to ``final``."""
    progress = jnp.clip(progress, 0.0, 1.0)
    ramp = jnp.minimum(1.0, progress / warmup) if warmup > 0 else 1.0
    t = jnp.clip((progress - warmup) / max(1.0 - warmup, 1e-9), 0.0, 1.0)
    return ramp * (final + (1.0 - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * t)))
