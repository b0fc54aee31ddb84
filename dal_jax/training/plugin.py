"""The interface of a network trained alongside GG-CNN: a strategy's plug-in.

A strategy that trains extra networks with the task model (DAL's discriminator, the learning-
loss module, VAAL's VAE and discriminator) hands the trainer `Plugin` objects
(`dal_jax.strategies.base.Strategy.plugins`). The trainer knows nothing of them beyond this
interface: a plug-in's ``loss`` is added to the differentiated joint loss (so its gradient may
reach the shared encoder), and its ``extra_update`` runs separate optimisation steps (VAAL's
adversarial game) inside the same compiled step. Plain GG-CNN training is the trainer with no
plug-ins.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from dal_jax.model import models


@flax.struct.dataclass
class HParams:
    """Hyperparameters that may differ between the runs of one compiled program: each leaf is
    [R] for R runs (a scalar inside one run's step). Shape-changing settings are static
    (`dal_jax.training.train.TrainConfig`).

    alpha: DAL's weight of the discriminator loss in the encoder's gradient; num_steps: the
    steps of the current training call; start_step: the step count at its start (a warm-started
    round does not start at 0). The trainer fills the last two.
    """

    alpha: jax.Array
    num_steps: jax.Array | None = None
    start_step: jax.Array | None = None


class StepInputs(NamedTuple):
    """What a plug-in's loss sees in one step (one run; B = batch size).

    x_l [B, H, W, C], w_l [B] (1 for a real labelled sample, 0 for padding when fewer than B
    are labelled), x_u / w_u likewise for unlabelled samples; feats_l / feats_u the encoder
    features (differentiable into the encoder); task_loss [B] GG-CNN's per-sample loss;
    progress in [0, 1]: the fraction of the training call's steps done; idx_l / idx_u [B] int32
    the batches' pool indices (None where a caller has none).
    """

    x_l: jax.Array
    w_l: jax.Array
    x_u: jax.Array
    w_u: jax.Array
    feats_l: models.Features
    feats_u: models.Features | None
    task_loss: jax.Array
    progress: jax.Array
    idx_l: jax.Array | None = None
    idx_u: jax.Array | None = None


class Plugin:
    """A network trained alongside GG-CNN. Subclasses set ``name`` and override what they use."""

    name: str = "plugin"
    needs_unlabelled: bool = False  # draws an unlabelled batch (StepInputs.x_u)
    needs_unlabelled_features: bool = False  # ... and the encoder's features of it (feats_u)
    # False: the plug-in's parameters are not part of the joint loss; the trainer applies no
    # joint update to them and ``extra_update`` does all their training.
    joint: bool = True

    def key(self):
        """What makes two plug-ins compute the same (their type and settings), so programs
        compiled for one serve the other; None when the settings cannot be compared."""
        try:
            key = (type(self), tuple(sorted(vars(self).items())))
            hash(key)
        except TypeError:
            return None
        return key

    def init(self, key, x) -> Any:
        """Parameters, given an example input x [1, H, W, C]."""
        raise NotImplementedError

    def optimizer(self) -> optax.GradientTransformation:
        raise NotImplementedError

    def init_opt_state(self, params):
        """The optimiser state kept for this plug-in (any pytree of arrays)."""
        return self.optimizer().init(params)

    def loss(self, params, inp: StepInputs, hparams: HParams) -> tuple[jax.Array, dict]:
        """A scalar added to the joint loss and a dict of scalar metrics."""
        return jnp.zeros(()), {}

    def has_extra_update(self) -> bool:
        """Whether ``extra_update`` does anything (the step program leaves it out if not)."""
        return type(self).extra_update is not Plugin.extra_update

    def extra_update(self, params, opt_state, inp: StepInputs, key):
        """Separate optimisation steps after the joint one -> (params, opt_state, metrics)."""
        return params, opt_state, {}
