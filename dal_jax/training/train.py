"""The joint training step L = L_GSP + sum of the plug-ins' losses, for many runs in one program.

A *run* is one independent training (a seed, or a seed and an alpha of a grid; `dal_jax.training.runs`).

State and data:

* `TrainState` holds every network's parameters and optimiser state in dicts keyed by network
  (``"ggcnn"`` and one entry per plug-in). In the batched form every leaf has a leading run
  axis [R, ...].
* The pool lives on the device once: ``inputs`` [N, H, W, C] and ``targets`` [N, H, W, 4]
  (any float dtype; cast to float32 per batch), shared by all runs. Which examples are
  labelled is a per-run mask [R, N]; each step draws its labelled and unlabelled batches from
  the mask with the run's own key, so shapes never change between rounds (no recompiles).
* Hyperparameters that can be batched are the leaves [R] of `dal_jax.training.plugin.HParams`;
  everything that changes shapes or the program is in the static `TrainConfig`.

Plug-ins (`dal_jax.training.plugin.Plugin`): the networks a strategy trains alongside GG-CNN (DAL's
discriminator, the learning-loss module, VAAL's VAE). With none, this is plain GG-CNN training.

Execution forms for the run axis (`TrainConfig.seed_form`): ``"vmap"`` (batched convs; the
natural form on GPU/TPU) and ``"unrolled"`` (one copy of the step per run in one program:
XLA:CPU runs vmapped convs as slow grouped convs). ``"auto"`` picks by backend. Both compute
the same numbers.
"""

from __future__ import annotations

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dal_jax.model import models
from dal_jax.model.losses import ggcnn_loss, lr_multiplier
from dal_jax.training import augment, distributed
from dal_jax.training.plugin import HParams, Plugin, StepInputs

# Compiled programs shared by trainers of equal settings (see `Trainer._program`).
_PROGRAMS: dict = {}


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
    # The recipe (see BUILD.md "Training recipe" for the measurements behind each default).
    input_scale: float = 1.0  # multiplies the network input (part of the model)
    init: str = "torch"  # torch | xavier_zero | he (models._conv_params)
    pos_weight: float = 1.0  # weight of grasp pixels (pos = 1) in the loss
    weight_heads: str = "pos"  # heads pos_weight applies to: pos | all | masked (ggcnn_loss)
    warmup: float = 0.0  # fraction of a round's steps with a linear learning-rate warmup
    lr_final: float = 1.0  # learning rate at the round's end / lr (cosine decay; 1: constant)
    augment: bool = False  # random symmetries and zoom of the training batches
    zoom_min: float = 1.0  # smallest zoom window (1: no zoom)

    def resolved_seed_form(self) -> str:
        if self.seed_form == "auto":
            return "unrolled" if jax.default_backend() == "cpu" else "vmap"
        if self.seed_form not in ("vmap", "unrolled"):
            raise ValueError(f"seed_form must be auto, vmap or unrolled; got {self.seed_form!r}")
        return self.seed_form


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


class Trainer:
    """Builds the compiled functions for one `TrainConfig` and set of plug-ins.

    Functions are cached per trainer, so keep one trainer per configuration and reuse it across
    rounds and tests.
    """

    def __init__(self, config: TrainConfig, plugins: tuple[Plugin, ...] = (), mesh=None):
        plugins = tuple(plugins)
        names = [p.name for p in plugins]
        if len(set(names)) != len(names) or "ggcnn" in names:
            raise ValueError(f"plug-in names must be distinct and not 'ggcnn'; got {names}")
        self.config = config
        self.plugins = plugins
        self.mesh = mesh  # a `distributed.runs_mesh`: runs sharded over its devices
        self.model = models.GGCNN(
            fast=config.fast_layers, input_scale=config.input_scale, init_scheme=config.init
        )
        self.needs_unlabelled = any(p.needs_unlabelled for p in plugins)
        self.needs_unlabelled_features = any(p.needs_unlabelled_features for p in plugins)
        # Networks updated by the joint step; others train only in their extra_update.
        self.optimizers = {"ggcnn": optax.adam(config.lr)}
        self.optimizers.update({p.name: p.optimizer() for p in plugins if p.joint})
        self._chunk = {}

    # ------------------------------------------------------------------------------ init
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

    # ------------------------------------------------------------------------------ step
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
        x_l, y_l, w_l, x_u, w_u = batch
        maps, feats_l = self.model.apply({"params": params["ggcnn"]}, x_l)
        per_sample = ggcnn_loss(maps, y_l, self.config.pos_weight, self.config.weight_heads)
        gsp = (per_sample * w_l).sum() / jnp.maximum(w_l.sum(), 1.0)
        feats_u = None
        if self.needs_unlabelled_features:
            feats_u = self.model.apply({"params": params["ggcnn"]}, x_u, method=models.GGCNN.encode)
        inp = StepInputs(x_l, w_l, x_u, w_u, feats_l, feats_u, per_sample, progress)
        total, metrics = gsp, {"gsp_loss": gsp}
        for p in self.plugins:
            term, m = p.loss(params[p.name], inp, hparams)
            total = total + term
            metrics.update(m)
        metrics["loss"] = total
        return total, (metrics, inp)

    def _batch(self, step, inputs, targets, mask, key):
        """One run's batches for its step ``step``: (x_l, y_l, w_l, x_u, w_u) and the key left
        for the plug-ins' extra updates. Pure gathers and elementwise work (vmapped over runs
        in every form)."""
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
        return (x_l, y_l, w_l, x_u, w_u), k_x

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
        return any(type(p).extra_update is not Plugin.extra_update for p in self.plugins)

    def _step_all_runs(self, states, inputs, targets, masks, hparams, keys):
        """One step of every run: vmapped, or with the network passes written out once per
        run (XLA:CPU runs vmapped convolutions as slow grouped ones) and everything else -
        batch sampling, augmentation, optimiser updates - vmapped over runs, which keeps the
        program (and its compile time) small. Both forms compute the same numbers."""
        if self.config.resolved_seed_form() == "vmap":
            return jax.vmap(self.step, in_axes=(0, None, None, 0, 0, 0))(
                states, inputs, targets, masks, hparams, keys
            )
        batches, k_x = jax.vmap(self._batch, in_axes=(0, None, None, 0, 0))(
            states.step, inputs, targets, masks, keys
        )
        outs = []
        for s in range(masks.shape[0]):
            pick = functools.partial(lambda a, s: a[s], s=s)
            p, b, hp, st = jax.tree.map(pick, (states.params, batches, hparams, states.step))
            outs.append(self._grads(p, b, hp, st))
        grads, (metrics, inp) = jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
        states = jax.vmap(self._apply)(states, grads, hparams)
        if not self._has_extra:
            return states, metrics
        extra = []
        for s in range(masks.shape[0]):
            pick = functools.partial(lambda a, s: a[s], s=s)
            extra.append(self._extra(*jax.tree.map(pick, (states, inp, k_x))))
        states, m = jax.tree.map(lambda *xs: jnp.stack(xs), *extra)
        return states, {**metrics, **m}

    def _steps_all_runs(self, states, inputs, targets, masks, hparams, keys, num_steps):
        """``num_steps`` steps written out one after another (not a ``lax.scan``: XLA:CPU ran a
        scan of this step at half the speed, and consecutive steps in one program faster than
        one step per call). -> (states, metrics [R, num_steps])."""
        history = []
        for _ in range(num_steps):
            states, m = self._step_all_runs(states, inputs, targets, masks, hparams, keys)
            history.append(m)
        return states, jax.tree.map(lambda *xs: jnp.stack(xs, axis=1), *history)

    def _program(self, num_steps: int):
        """The compiled program of ``num_steps`` steps. Trainers of equal settings share it
        (`_PROGRAMS`): the rounds of a run, the strategies of a study and a resumed run
        compile it once per process."""
        key = (self._identity(), num_steps)
        fn = self._chunk.get(num_steps) or _PROGRAMS.get(key)
        if fn is None:
            fn = functools.partial(self._steps_all_runs, num_steps=num_steps)
            if self.mesh is not None:
                fn = self._sharded(fn)
            fn = jax.jit(fn, donate_argnums=(0,))
            if key[0] is not None:
                _PROGRAMS[key] = fn
        self._chunk[num_steps] = fn
        return fn

    def _identity(self):
        """What the step programs depend on: the config, the plug-ins' settings and the mesh
        (None when a plug-in's settings cannot be compared: nothing is shared then)."""
        keys = tuple(p.key() for p in self.plugins)
        if None in keys:
            return None
        return (self.config, keys, self.mesh)

    def train_chunk(self, states, inputs, targets, masks, hparams, keys, num_steps: int):
        """``num_steps`` joint steps for all R runs: calls of one compiled program of
        ``config.steps_per_call`` steps, and single steps for a remainder.

        states: TrainState [R, ...]; inputs [N, H, W, C]; targets [N, H, W, 4]; masks [R, N]
        bool; hparams: `HParams` with leaves [R]; keys [R] typed keys (each run's round key).
        Returns (states, metrics: dict of [R, num_steps]).
        """
        if self.mesh is not None:
            runs = distributed.put((masks, hparams, jax.random.key_data(keys)), self.mesh, True)
            masks, hparams, keys = runs
            states = distributed.put(states, self.mesh, True)
            inputs, targets = distributed.put((inputs, targets), self.mesh, False)
        per_call = max(1, self.config.steps_per_call)
        history = []
        while num_steps > 0:
            n = per_call if num_steps >= per_call else 1
            states, m = self._program(n)(states, inputs, targets, masks, hparams, keys)
            history.append(m)
            num_steps -= n
        return states, jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *history)

    def _sharded(self, fn):
        """fn over all runs -> the same function with each device running its block of runs
        (key data in, since typed keys are wrapped per device)."""
        from jax.sharding import PartitionSpec as P

        def block(states, inputs, targets, masks, hparams, key_data):
            keys = jax.random.wrap_key_data(key_data)
            return fn(states, inputs, targets, masks, hparams, keys)

        runs, shared = P(distributed.AXIS), P()
        return jax.shard_map(
            block,
            mesh=self.mesh,
            in_specs=(runs, shared, shared, runs, runs, runs),
            out_specs=runs,
        )

    def train(
        self,
        states,
        inputs,
        targets,
        masks,
        hparams,
        keys,
        num_steps: int,
        on_chunk=None,
        nonfinite: str = "raise",
    ):
        """Runs ``num_steps`` steps in chunks of ``config.chunk_steps``; between chunks the
        losses are checked on the host and ``on_chunk(steps_done, metrics, states)`` is called
        (``states`` is donated to the next chunk: copy what is kept).

        A non-finite loss raises FloatingPointError naming the run and step (``nonfinite=
        "raise"``), or is left to ``on_chunk`` to handle while the other runs train on
        (``"continue"``: runs are independent, so a diverged one cannot spoil the others).
        Returns (states, metrics of the last chunk).
        """
        if nonfinite not in ("raise", "continue"):
            raise ValueError(f"nonfinite must be 'raise' or 'continue'; got {nonfinite!r}")
        self.validate(inputs, targets, masks)
        if not isinstance(hparams, HParams):
            raise TypeError(
                f"hparams must be a dal_jax.training.plugin.HParams; got {type(hparams)}"
            )
        # Plug-ins see the progress through THIS call's steps (a warm-started round too).
        hparams = hparams.replace(
            num_steps=jnp.full(masks.shape[:1], num_steps, jnp.float32),
            start_step=jnp.asarray(states.step, jnp.float32),
        )
        # Chunks are whole programs of steps_per_call steps, so a chunk never needs the
        # single-step program (only a round whose length is not a multiple does).
        per_call = max(1, self.config.steps_per_call)
        chunk = max(per_call, self.config.chunk_steps // per_call * per_call)
        done, metrics = 0, {}
        while done < num_steps:
            n = min(chunk, num_steps - done)
            start = distributed.gather(states.step)
            states, metrics = self.train_chunk(states, inputs, targets, masks, hparams, keys, n)
            loss = distributed.gather(metrics["loss"])
            bad = np.argwhere(~np.isfinite(loss))
            if bad.size and nonfinite == "raise":
                s, i = bad[0]
                raise FloatingPointError(
                    f"non-finite loss {loss[s, i]} at run index {s}, step {int(start[s]) + i}"
                )
            done += n
            if on_chunk is not None:
                on_chunk(done, metrics, states)
        return states, metrics

    def validate(self, inputs, targets, masks):
        """Clear errors for shapes the compiled step cannot take."""
        models.check_input(inputs, self.config.in_channels)
        if targets.shape[:-1] != inputs.shape[:-1] or targets.shape[-1] != 4:
            raise ValueError(
                f"targets must be [N, H, W, 4] matching inputs {tuple(inputs.shape)}; "
                f"got {tuple(targets.shape)}"
            )
        if masks.ndim != 2 or masks.shape[1] != inputs.shape[0]:
            raise ValueError(
                f"masks must be [R, N] with N = {inputs.shape[0]}; got {tuple(masks.shape)}"
            )

    # ------------------------------------------------------------------------------ predict
    @functools.cached_property
    def _predict(self):
        fn = _PROGRAMS.get(("predict", self.model))
        if fn is None:
            model = self.model

            def one(params, x):
                maps, feats = model.apply({"params": params}, x)
                return maps, feats.f1.max(axis=(1, 2))

            fn = _PROGRAMS[("predict", self.model)] = jax.jit(one)
        return fn

    def predict(self, params, x, batch: int = 16, with_conv1: bool = False):
        """GG-CNN maps for one run's params: x [N, H, W, C] -> [N, H, W, 4] (host numpy).

        With ``with_conv1`` also the largest conv1 activation (after ReLU) of every channel in
        every image, [N, 32]: a channel that stays 0 on every image is a dead filter.
        Runs in fixed-size batches (the last one padded) so any N reuses one compiled program.
        """
        n = len(x)
        out = np.zeros((n, *x.shape[1:3], 4), np.float32)
        conv1 = np.zeros((n, models.ENCODER[0][1]), np.float32)
        for i in range(0, n, batch):
            xb = np.asarray(x[i : i + batch], np.float32)
            m = len(xb)
            if m < batch:
                xb = np.concatenate([xb, np.zeros((batch - m, *xb.shape[1:]), np.float32)])
            maps, f1 = self._predict(params, xb)
            out[i : i + m], conv1[i : i + m] = np.asarray(maps)[:m], np.asarray(f1)[:m]
        return (out, conv1) if with_conv1 else out
