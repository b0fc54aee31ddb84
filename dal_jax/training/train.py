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

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax.model import models
from dal_jax.training import distributed, predict
from dal_jax.training.plugin import HParams, Plugin
from dal_jax.training.step import RECIPE, JointStep, TrainConfig, TrainState

__all__ = ["RECIPE", "TrainConfig", "TrainState", "Trainer"]

# Compiled programs shared by trainers of equal settings (see `Trainer._program`).
_PROGRAMS: dict = {}


class Trainer(JointStep):
    """Builds the compiled functions for one `TrainConfig` and set of plug-ins: the joint step
    (`JointStep`) of every run in one program, trained in chunks.

    Functions are cached per trainer, so keep one trainer per configuration and reuse it across
    rounds and tests.
    """

    def __init__(self, config: TrainConfig, plugins: tuple[Plugin, ...] = (), mesh=None):
        super().__init__(config, plugins)
        self.mesh = mesh  # a `distributed.runs_mesh`: runs sharded over its devices
        self._chunk = {}

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
        check_shapes(self.config, inputs, targets, masks)

    def predict(self, params, x, batch: int = 16, with_conv1: bool = False):
        """GG-CNN maps for one run's params (`dal_jax.training.predict.maps`)."""
        return predict.maps(self.model, params, x, batch, with_conv1)


def check_shapes(config: TrainConfig, inputs, targets, masks) -> None:
    """Clear errors for shapes the compiled step cannot take: inputs [N, H, W, C], targets
    [N, H, W, 4], masks [R, N]."""
    models.check_input(inputs, config.in_channels)
    if targets.shape[:-1] != inputs.shape[:-1] or targets.shape[-1] != 4:
        raise ValueError(
            f"targets must be [N, H, W, 4] matching inputs {tuple(inputs.shape)}; "
            f"got {tuple(targets.shape)}"
        )
    if masks.ndim != 2 or masks.shape[1] != inputs.shape[0]:
        raise ValueError(
            f"masks must be [R, N] with N = {inputs.shape[0]}; got {tuple(masks.shape)}"
        )
