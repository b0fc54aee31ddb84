"""The Gaussian blur of GG-CNN's post-processing, as SciPy computes it, in JAX.

``scipy.ndimage.gaussian_filter`` (what ``skimage.filters.gaussian`` calls) on a float32 map
filters axis 0 then axis 1, each pass with a symmetric 1-D kernel of radius ``int(4 * sigma +
0.5)``, edge mode 'nearest', summing ``x[0]*w[0] + sum_{j=r..1} (x[-j] + x[+j]) * w[j]`` in
float64 and storing each pass as float32. `gaussian_blur` sums in that order: with float64
accumulation its map is bit-identical to SciPy's (float64 runs under `with_x64`, scoped to the
call); with float32 accumulation it is the project's one float32 blur. `blur_at` is either at
one pixel, from the window around it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def with_x64(fn):
    """Runs ``fn`` (a jitted function) with float64 enabled for its trace and execution only."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper


def gauss_kernel(sigma: float) -> np.ndarray:
    """SciPy's 1-D Gaussian weights (float64, radius int(4 sigma + 0.5)), [2r+1]."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


def _symmetric_sum(tap, w: np.ndarray):
    """``sum_k w[r + k] * tap(k)``, k = -r..r, w [2r+1] symmetric, in SciPy's order (centre,
    then the pairs from the outermost inwards): in float64 bit-identical to SciPy's double
    accumulator, and the one order every blur of the project rounds in."""
    r = (len(w) - 1) // 2
    acc = tap(0) * w[r]
    for j in range(r, 0, -1):
        acc = acc + (tap(-j) + tap(j)) * w[r + j]
    return acc


def _correlate_axis(x, w: np.ndarray, axis: int):
    """One SciPy correlate1d pass of x [...] along ``axis``, mode 'nearest', in x's dtype."""
    r = (len(w) - 1) // 2
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = jnp.pad(x, pad, mode="edge")
    return _symmetric_sum(lambda k: jax.lax.slice_in_dim(xp, r + k, r + k + n, axis=axis), w)


def gaussian_blur(img, sigma: float, dtype=np.float64):
    """``skimage.filters.gaussian(img, sigma)`` on float32 maps.

    img [..., H, W] float32 (blurred over the last two axes) -> [..., H, W] float32, each
    pass stored as float32 as SciPy does. ``dtype`` is the accumulator: np.float64 gives SciPy's
    map bit for bit (run with float64 enabled, as the public functions do); np.float32 is the
    fast float32 blur, summed in the same order.
    """
    w = gauss_kernel(sigma).astype(dtype)
    for axis in (img.ndim - 2, img.ndim - 1):
        img = _correlate_axis(img.astype(dtype), w, axis).astype(jnp.float32)
    return img


def blur_at(img, r, c, sigma: float, dtype=np.float64):
    """`gaussian_blur(img, sigma, dtype)` at pixel (r, c) only, from the window around it.

    img [H, W] float32; r, c int scalars -> float32 scalar, identical to the full blur there
    (same order, same float32 rounding between the passes, clamped indices = 'nearest' edges).
    """
    w = gauss_kernel(sigma).astype(dtype)
    rad = (len(w) - 1) // 2
    h, wd = img.shape
    offs = jnp.arange(-rad, rad + 1)
    rows = jnp.clip(r + offs, 0, h - 1)
    cols = jnp.clip(c + offs, 0, wd - 1)
    win = img[rows[:, None], cols[None, :]].astype(dtype)  # [2r+1 rows, 2r+1 cols]
    # Pass 1 (axis 0) at row r for each needed column, stored as float32 like SciPy.
    t = _symmetric_sum(lambda k: win[rad + k], w).astype(jnp.float32).astype(dtype)
    return _symmetric_sum(lambda k: t[rad + k], w).astype(jnp.float32)
