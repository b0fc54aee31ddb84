"""One joint training step, L = L_GSP + sum of the plug-ins' losses, for ONE run.

`TrainConfig` holds the static settings (the recipe's defaults are the experiments' recipe; a
dataset's experiment file overrides only what its protocol needs), `TrainState` a run's
networks and optimiser states, and `JointStep` the step itself: batch sampling from the
labelled mask, augmentation, the joint loss, the optimiser updates and the plug-ins' own
updates. `dal_jax.training.train.Trainer` runs it for many runs in one compiled program.
"""

from __future__ import annotations

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp
import optax

from dal_jax.model import models
from dal_jax.model.losses import ggcnn_loss, lr_multiplier
from dal_jax.training import augment
from dal_jax.training.plugin import Plugin, StepInputs


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Static training settings (hashable: part of the compiled program's identity)."""

    in_channels: int = 1
    batch_size: int = 8
    lr: float = 1e-3  # Adam for GG-CNN (GG-CNN's reference training)
    fast_layers: bool = True
    seed_form: str = "auto"  # auto | vmap | unrolled
    chunk_steps: int = 24  # NaN/Inf is checked on the host every chunk_steps steps
    steps_per_call: int = 3  # steps written out in one compiled program
    # The recipe every experiment trains with (the fields of `RECIPE`; experiments/configs/
    # default.py takes its values from here, and the benchmarks time it). Reasons: BUILD.md
    # "Training recipe"; measurements: experiments/RESULTS.md "Training recipe measurements".
    input_scale: float = 10.0  # multiplies the network input (part of the model)
    init: str = "xavier_zero"  # torch | xavier_zero | he | lecun_zero (models._conv_params)
    pos_weight: float = 20.0  # weight of grasp pixels (pos = 1) in the loss
    weight_heads: str = "masked"  # heads pos_weight applies to: pos | all | masked (ggcnn_loss)
    warmup: float = 0.0  # fraction of a round's steps with a linear learning-rate warmup
    lr_final: float = 1.0  # learning rate at the round's end / lr (cosine decay; 1: constant)
    augment: bool = True  # random symmetries and zoom of the training batches
    zoom_min: float = 1.0  # smallest zoom window (1: no zoom)

    @classmethod
    def reference(cls, **fields) -> TrainConfig:
        """GG-CNN's reference training (PyTorch's init, the input in metres, unweighted loss,
        no augmentation): the form of converted PyTorch weights and of the mechanics tests."""
        ref = {"input_scale": 1.0, "init": "torch", "pos_weight": 1.0, "weight_heads": "pos"}
        return cls(**{**ref, "augment": False, **fields})

    def resolved_seed_form(self) -> str:
        if self.seed_form == "auto":
            return "unrolled" if jax.default_backend() == "cpu" else "vmap"
        if self.seed_form not in ("vmap", "unrolled"):
            raise ValueError(f"seed_form must be auto, vmap or unrolled; got {self.seed_form!r}")
        return self.seed_form


#: The fields of the training recipe (`TrainConfig`'s defaults are its values).
RECIPE = (
    "input_scale",
    "init",
    "pos_weight",
    "weight_heads",
    "warmup",
    "lr_final",
    "augment",
    "zoom_min",
)


@flax.struct.dataclass
class TrainState:
    """step: [] int32 (or [R]); params / opt_state: dicts keyed by network name."""

    step: jax.Array
    params: dict
    opt_state: dict


def _take(arr, idx, weight):
    """arr[idx] as float32 with padding rows (weight 0) zeroed, so that whatever they hold
    cannot leak NaN into the loss or its gradient. arr [N, ...], idx/weight [B] -> [B, ...]."""
    rows = arr[idx].astype(jnp.float32)
    keep = (weight > 0).reshape((-1,) + (1,) * (rows.ndim - 1))
    return jnp.where(keep, rows, 0.0)


class JointStep:
    """The per-run step for one `TrainConfig` and set of plug-ins (pure functions of explicit
    state; `Trainer` batches and compiles them)."""

    def __init__(self, config: TrainConfig, plugins: tuple[Plugin, ...] = ()):
        plugins = tuple(plugins)
        names = [p.name for p in plugins]
        if len(set(names)) != len(names) or "ggcnn" in names:
            raise ValueError(f"plug-in names must be distinct and not 'ggcnn'; got {names}")
        self.config = config
        self.plugins = plugins
        self.model = models.GGCNN(
            fast=config.fast_layers, input_scale=config.input_scale, init_scheme=config.init
        )
        self.needs_unlabelled = any(p.needs_unlabelled for p in plugins)
        self.needs_unlabelled_features = any(p.needs_unlabelled_features for p in plugins)
        # Networks updated by the joint step; others train only in their extra_update.
        self.optimizers = {"ggcnn": optax.adam(config.lr)}
        self.optimizers.update({p.name: p.optimizer() for p in plugins if p.joint})

    def init_state(self, key, image_shape) -> TrainState:
        """One run's fresh state. image_shape = (H, W, C)."""
        x = jnp.zeros((1, *image_shape), jnp.float32)
        models.check_input(x, self.config.in_channels)
        keys = jax.random.split(key, len(self.plugins) + 1)
        params = {"ggcnn": self.model.init(keys[0], x)["params"]}
        for k, p in zip(keys[1:], self.plugins):
            params[p.name] = p.init(k, x)
        opt_state = {"ggcnn": self.optimizers["ggcnn"].init(params["ggcnn"])}
        for p in self.plugins:
            opt_state[p.name] = p.init_opt_state(params[p.name])
        return TrainState(jnp.zeros((), jnp.int32), params, opt_state)

    def init_states(self, keys, image_shape) -> TrainState:
        """Fresh states for R runs: keys [R] -> TrainState with leaves [R, ...]."""
        states = [self.init_state(k, image_shape) for k in keys]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *states)

    def _sample(self, key, mask):
        """B indices drawn without replacement among ``mask`` (Gumbel top-k) and their weights
        (0 where fewer than B examples qualify). mask: [N] bool -> ([B] int32, [B] float32)."""
        g = jax.random.gumbel(key, mask.shape)
        score = jnp.where(mask, g, -jnp.inf)
        b = self.config.batch_size
        _, idx = jax.lax.top_k(score, min(b, mask.shape[0]))
        weight = mask[idx].astype(jnp.float32)
        if idx.shape[0] < b:  # a pool smaller than a batch (a user's first frames): pad
            pad = b - idx.shape[0]
            idx = jnp.concatenate([idx, jnp.zeros((pad,), idx.dtype)])
            weight = jnp.concatenate([weight, jnp.zeros((pad,), jnp.float32)])
        return idx, weight

    def _joint_loss(self, params, batch, hparams, progress):
        x_l, y_l, w_l, x_u, w_u, idx_l, idx_u = batch
        maps, feats_l = self.model.apply({"params": params["ggcnn"]}, x_l)
        per_sample = ggcnn_loss(maps, y_l, self.config.pos_weight, self.config.weight_heads)
        gsp = (per_sample * w_l).sum() / jnp.maximum(w_l.sum(), 1.0)
        feats_u = None
        if self.needs_unlabelled_features:
            feats_u = self.model.apply({"params": params["ggcnn"]}, x_u, method=models.GGCNN.encode)
        inp = StepInputs(x_l, w_l, x_u, w_u, feats_l, feats_u, per_sample, progress, idx_l, idx_u)
        total, metrics = gsp, {"gsp_loss": gsp}
        for p in self.plugins:
            term, m = p.loss(params[p.name], inp, hparams)
            total = total + term
            metrics.update(m)
        metrics["loss"] = total
        return total, (metrics, inp)

    def _batch(self, step, inputs, targets, mask, key):
        """One run's batches for its step ``step``: (x_l, y_l, w_l, x_u, w_u, idx_l, idx_u),
        idx the batches' pool indices, and the key left for the plug-ins' extra updates. Pure
        gathers and elementwise work (vmapped over runs in every form)."""
        key = jax.random.fold_in(key, step)
        k_l, k_u, k_x = jax.random.split(key, 3)
        idx_l, w_l = self._sample(k_l, mask)
        idx_u, w_u = self._sample(k_u, ~mask)
        x_l, y_l = _take(inputs, idx_l, w_l), _take(targets, idx_l, w_l)
        x_u = _take(inputs, idx_u, w_u) if self.needs_unlabelled else x_l
        cfg = self.config
        if cfg.augment:
            # Unlabelled images are augmented alike, so the discriminator cannot tell the two
            # sets apart by augmentation artefacts.
            k_al, k_au = jax.random.split(jax.random.fold_in(key, 3))
            x_l, y_l = augment.augment_batch(k_al, x_l, y_l, cfg.zoom_min)
            if self.needs_unlabelled:
                x_u, _ = augment.augment_batch(k_au, x_u, None, cfg.zoom_min)
        return (x_l, y_l, w_l, x_u, w_u, idx_l, idx_u), k_x

    def _progress(self, step, hparams, after: int = 0):
        """Fraction of this training call's steps done (``after`` = 1: after this step)."""
        start = 0.0 if hparams.start_step is None else hparams.start_step
        return (step - start + after) / jnp.maximum(hparams.num_steps, 1)

    def _grads(self, params, batch, hparams, step):
        """The joint loss's gradients for one run -> (grads, (metrics, StepInputs))."""
        progress = self._progress(step, hparams)
        return jax.grad(self._joint_loss, has_aux=True)(params, batch, hparams, progress)

    def _apply(self, state: TrainState, grads, hparams) -> TrainState:
        """The joint optimiser updates of one run (elementwise; vmapped in every form). The
        schedule is taken at the fraction done after this step, so a warmup's first step moves
        a little and the last step runs at ``lr_final``."""
        cfg = self.config
        mult = lr_multiplier(self._progress(state.step, hparams, 1), cfg.warmup, cfg.lr_final)
        params, opt_state = dict(state.params), dict(state.opt_state)
        for name, opt in self.optimizers.items():
            updates, opt_state[name] = opt.update(
                grads[name], state.opt_state[name], state.params[name]
            )
            if name == "ggcnn":
                updates = jax.tree.map(lambda u: u * mult, updates)
            params[name] = optax.apply_updates(state.params[name], updates)
        return TrainState(state.step + 1, params, opt_state)

    def _extra(self, state: TrainState, inp, key):
        """The plug-ins' own updates after the joint one (VAAL's game) for one run."""
        params, opt_state, metrics = dict(state.params), dict(state.opt_state), {}
        for i, p in enumerate(self.plugins):
            params[p.name], opt_state[p.name], m = p.extra_update(
                params[p.name], opt_state[p.name], inp, jax.random.fold_in(key, i)
            )
            metrics.update(m)
        return state.replace(params=params, opt_state=opt_state), metrics

    def step(self, state: TrainState, inputs, targets, mask, hparams, key):
        """One joint step for ONE run.

        inputs [N, H, W, C], targets [N, H, W, 4], mask [N] bool (labelled), hparams: `HParams`
        of scalars, key: this run's key.
        -> (state, metrics).
        """
        batch, k_x = self._batch(state.step, inputs, targets, mask, key)
        grads, (metrics, inp) = self._grads(state.params, batch, hparams, state.step)
        state, extra = self._extra(self._apply(state, grads, hparams), inp, k_x)
        return state, {**metrics, **extra}

    @functools.cached_property
    def _has_extra(self) -> bool:
        return any(p.has_extra_update() for p in self.plugins)
