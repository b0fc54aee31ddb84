"""GG-CNN weights for the detector from a checkpoint, checked against this code's GG-CNN."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax.model import models


@dataclasses.dataclass(frozen=True)
class Weights:
    """One seed's GG-CNN parameters and what the detector needs to know about them.

    image_size: the network's input side N (the training crop). in_channels: 1 (depth) or 4
    (RGB-D). input_scale: the factor the model multiplies its input by (1 for checkpoints
    written before it was recorded and for converted PyTorch weights).
    """

    params: dict
    meta: dict
    seed: int
    in_channels: int
    image_size: int
    input_scale: float


def load(path, seed: int | None = None, round_index: int | None = None) -> Weights:
    """Reads a checkpoint written by experiments.main (a run's workdir or its checkpoints
    folder; the latest round unless ``round_index``; the seed with the best recorded test
    accuracy unless ``seed``) or by `dal_jax.model.convert_torch`. Raises FileNotFoundError /
    ValueError naming the path when it is missing, unreadable or not a GG-CNN of this code."""
    from dal_jax.model import checkpoint  # Orbax is only needed here

    params, meta, seed = checkpoint.load_ggcnn(path, round_index=round_index, seed=seed)
    try:
        kernel = params["encoder"]["conv1"]["kernel"]  # [9, 9, C, 32]
    except (KeyError, TypeError) as e:
        raise ValueError(f"checkpoint at {path} holds no GG-CNN parameters ({e})") from e
    try:
        in_channels = int(meta.get("in_channels", np.shape(kernel)[2]))
        image_size = int(meta.get("image_size", 300))
        input_scale = float(meta.get("input_scale", 1.0))
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint at {path}: unreadable metadata ({e})") from None
    if in_channels != np.shape(kernel)[2]:
        raise ValueError(
            f"checkpoint at {path}: meta says {in_channels} input channels but conv1 "
            f"takes {np.shape(kernel)[2]}"
        )
    check_ggcnn_shapes(params, in_channels, path)
    return Weights(params, meta, seed, in_channels, image_size, input_scale)


@functools.cache
def _ggcnn_shapes(in_channels: int) -> dict:
    """{parameter path: shape} of this code's GG-CNN (traced, not compiled)."""
    x = jax.ShapeDtypeStruct((1, 48, 48, in_channels), jnp.float32)
    want = jax.eval_shape(lambda x: models.GGCNN().init(jax.random.key(0), x), x)["params"]
    return {jax.tree_util.keystr(k): v.shape for k, v in jax.tree.leaves_with_path(want)}


def check_ggcnn_shapes(params, in_channels: int, path) -> None:
    """ValueError naming ``path`` and the first differing parameter when ``params`` is not a
    GG-CNN of this code (a foreign or older architecture would fail inside Flax instead)."""
    want_flat = _ggcnn_shapes(in_channels)
    try:
        got_flat = {
            jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree.leaves_with_path(params)
        }
    except Exception as e:  # noqa: BLE001 - any non-tree is simply "not a GG-CNN"
        raise ValueError(f"checkpoint at {path} holds no GG-CNN parameters ({e})") from None
    for key in sorted(want_flat.keys() | got_flat.keys()):
        if want_flat.get(key) != got_flat.get(key):
            raise ValueError(
                f"checkpoint at {path}: its GG-CNN parameters do not match this code's GG-CNN "
                f"({key}: shape {got_flat.get(key)} in the checkpoint, {want_flat.get(key)} "
                "expected); was it written by another version or architecture?"
            )
