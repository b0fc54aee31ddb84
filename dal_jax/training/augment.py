"""On-device augmentation of training batches: GG-CNN's own recipe, batched and keyed.

GG-CNN's reference training rotates each example by a random multiple of 90 degrees and zooms
into it by a random factor in [0.5, 1], regenerating the grasp maps from the transformed
rectangles. Here the same family of transforms runs inside the compiled training step, on the
depth input and on the target maps together:

* a random element of the square's symmetry group (the 4 rotations and their mirror images:
  a transpose and two axis flips, each with probability 1/2);
* a random zoom: a square window of side ``zoom * H`` (``zoom`` uniform in [zoom_min, 1]) at a
  uniformly random position inside the image, resampled to H x H (depth bilinearly, target maps
  by nearest neighbour, so the quality map stays 0/1).

The target maps are transformed consistently: at grasp pixels (pos = 1) the angle changes with
the symmetry (a transpose maps a to pi/2 - a, i.e. cos 2a -> -cos 2a; each flip maps a to -a,
i.e. sin 2a -> -sin 2a) and the opening grows by 1/zoom (clipped at the width scale, `grasp.width_scale`);
background pixels keep GG-CNN's background values. Depth is re-centred on the new window's mean,
as the reference normalises after zooming. Every transform is separable (1-D gathers along rows
and columns, and one transpose), so it costs little next to the network.

`transform_rects` applies the same transform to rectangles, which is how the tests show that
maps and depth stay aligned.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Transform(NamedTuple):
    """One example's transform. Leaves are scalars (or [B] for a batch).

    transpose, flip_rows, flip_cols: bool; zoom: window side / image side, in (0, 1];
    top, left: the window's top-left corner in source pixels (edges, not centres).
    """

    transpose: jax.Array
    flip_rows: jax.Array
    flip_cols: jax.Array
    zoom: jax.Array
    top: jax.Array
    left: jax.Array


def identity() -> Transform:
    f = jnp.asarray(False)
    return Transform(f, f, f, jnp.float32(1.0), jnp.float32(0.0), jnp.float32(0.0))


def sample(key, size: int, zoom_min: float, symmetries: bool = True) -> Transform:
    """A random transform for a ``size`` x ``size`` image (``zoom_min`` = 1: no zoom)."""
    kt, kr, kc, kz, ky, kx = jax.random.split(key, 6)
    zoom = jax.random.uniform(kz, (), jnp.float32, zoom_min, 1.0)
    room = (1.0 - zoom) * size
    off = jnp.stack([jax.random.uniform(k, (), jnp.float32) for k in (ky, kx)]) * room
    if symmetries:
        t, fr, fc = (jax.random.bernoulli(k) for k in (kt, kr, kc))
    else:
        t = fr = fc = jnp.asarray(False)
    return Transform(t, fr, fc, zoom, off[0], off[1])


def _source_grid(t: Transform, h: int, w: int):
    """Source coordinates (row, col) [H, W] (pixel-centre units) of every output pixel: the
    output pixel (i, j) is the zoom window's pixel (j, i) when transposed, mirrored along a
    flipped axis, and that pixel's centre lies at ``start + (index + 0.5) * zoom - 0.5``."""
    i = jnp.arange(h, dtype=jnp.float32)[:, None]
    j = jnp.arange(w, dtype=jnp.float32)[None, :]
    zi, zj = jnp.where(t.transpose, j, i), jnp.where(t.transpose, i, j)
    zi = jnp.where(t.flip_rows, h - 1 - zi, zi)
    zj = jnp.where(t.flip_cols, w - 1 - zj, zj)
    return t.top + (zi + 0.5) * t.zoom - 0.5, t.left + (zj + 0.5) * t.zoom - 0.5


def _gather(x, rows, cols):
    """x [H, W, C] at integer (rows, cols) [H, W] (clipped to the image: edge values)."""
    h, w, c = x.shape
    rows = jnp.clip(rows, 0, h - 1).astype(jnp.int32)
    cols = jnp.clip(cols, 0, w - 1).astype(jnp.int32)
    # One flat gather per tap: XLA:CPU fuses separable gathers with the transposes and flips
    # into loops ~10x slower than this.
    return x.reshape(h * w, c)[(rows * w + cols).reshape(-1)].reshape(h, w, c)


def _linear(x, t: Transform):
    """Bilinear resampling of x [H, W, C] through the transform."""
    r, c = _source_grid(t, *x.shape[:2])
    r0, c0 = jnp.floor(r), jnp.floor(c)
    wr, wc = (r - r0)[..., None], (c - c0)[..., None]
    top = _gather(x, r0, c0) * (1 - wc) + _gather(x, r0, c0 + 1) * wc
    bottom = _gather(x, r0 + 1, c0) * (1 - wc) + _gather(x, r0 + 1, c0 + 1) * wc
    return top * (1 - wr) + bottom * wr


def _nearest(x, t: Transform):
    """Nearest-neighbour resampling of x [H, W, C] through the transform."""
    r, c = _source_grid(t, *x.shape[:2])
    return _gather(x, jnp.floor(r + 0.5), jnp.floor(c + 0.5))


def _recentre(x):
    """Subtracts the window's mean, as the reference normalises after zooming: depth on its
    own, RGB (channels 1..3) over all its values."""
    if x.shape[-1] == 1:
        return x - x.mean()
    return jnp.concatenate([x[..., :1] - x[..., :1].mean(), x[..., 1:] - x[..., 1:].mean()], -1)


def apply(t: Transform, x, y):
    """Transforms one example.

    Args:
      t: one example's `Transform`; x [H, W, C] network input (channel 0 centred depth,
        channels 1..3 centred RGB for RGB-D); y [H, W, 4] targets (pos, cos 2a, sin 2a,
        width / width scale). H == W.
    Returns:
      (x, y) transformed, same shapes and dtypes.
    """
    if x.shape[0] != x.shape[1]:
        raise ValueError(f"augmentation needs square images; got {x.shape[:2]}")
    xw = _recentre(_linear(x, t))
    # The grasp values change the same way everywhere, so they are changed before resampling
    # (one elementwise pass; resampling commutes with it).
    flip_cos = jnp.where(t.transpose, -1.0, 1.0)
    flip_sin = jnp.where(t.flip_rows ^ t.flip_cols, -1.0, 1.0)
    scale = jnp.stack([1.0, flip_cos, flip_sin, 1.0 / t.zoom])
    moved = y * scale.astype(y.dtype)
    moved = moved.at[..., 3].set(jnp.minimum(moved[..., 3], 1.0))
    yw = _nearest(jnp.where(y[..., :1] > 0.5, moved, y), t)
    return xw.astype(x.dtype), yw.astype(y.dtype)


def augment_batch(key, x, y=None, zoom_min: float = 1.0, symmetries: bool = True):
    """Independent random transforms of a batch: x [B, H, W, C], y [B, H, W, 4] or None.

    All-zero padding rows stay all zero. Returns (x, y) (y is None when given None).
    """
    keys = jax.random.split(key, x.shape[0])
    ts = jax.vmap(lambda k: sample(k, x.shape[1], zoom_min, symmetries))(keys)
    if y is None:
        return jax.vmap(lambda t, xi: _recentre(_linear(xi, t)))(ts, x), None
    return jax.vmap(apply)(ts, x, y)


def transform_rects(rects, t: Transform, size: int) -> np.ndarray:
    """The same transform applied to rectangles [..., 4, 2] (row, col) of a ``size`` image.

    A source point p maps to ((p + 0.5 - start) / zoom - 0.5), mirrored (n - 1 - i) along a
    flipped axis, then the axes are swapped if ``transpose``.
    """
    r = np.asarray(rects, np.float64)
    zoom = float(t.zoom)
    rows = (r[..., 0] + 0.5 - float(t.top)) / zoom - 0.5
    cols = (r[..., 1] + 0.5 - float(t.left)) / zoom - 0.5
    if bool(t.flip_rows):
        rows = size - 1 - rows
    if bool(t.flip_cols):
        cols = size - 1 - cols
    out = np.stack([rows, cols], axis=-1)
    return out[..., ::-1] if bool(t.transpose) else out
