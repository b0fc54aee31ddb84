"""GG-CNN post-processing in JAX: network maps -> blurred maps -> peaks -> grasps.

The blur, the angle / width maps, the peak search, the top-n detection and the certified fast
top-1 that both the rectangle metric (`dal_jax.evaluation.metric`) and the robot's detector
(`dal_jax.robot.detector`) use. Peaks are those of GG-CNN's reference post-processing
(``post_process_output`` / ``detect_grasps`` on SciPy and scikit-image), jit-compiled and
batched over leading axes:

* **Blur.** ``scipy.ndimage.gaussian_filter`` (what ``skimage.filters.gaussian`` calls) on a
  float32 map filters axis 0 then axis 1, each pass with a symmetric 1-D kernel of radius
  ``int(4 * sigma + 0.5)``, edge mode 'nearest', summing ``x[0]*w[0] + sum_{j=r..1} (x[-j] +
  x[+j]) * w[j]`` in float64 and storing each pass as float32. `gaussian_blur` sums in that
  order: with float64 accumulation its map is bit-identical to SciPy's (same peak pixel, even
  on near-ties and plateaus; float64 runs under `with_x64`, scoped to the call, the rest of the
  project stays float32); with float32 accumulation it is the project's one float32 blur, 2x
  cheaper and within 25 * 2^-24 * max|input| of SciPy's. `blur_at` is either at one pixel.
* **Fast top-1 (`detect_top1`).** The float32 peak is kept where a per-image certificate
  proves it is the exact one (`_top1_fast`); near-ties, plateaus, peaks at 0.2 and non-finite
  inputs are redone with the exact blur. Angle, width and quality at the peak are exact.
* **Peaks** are ``skimage.feature.peak_local_max(q, min_distance=20, threshold_abs=0.2,
  num_peaks=n)``'s, decided the same way on the same map (`peak_mask`, `top_peaks`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax.data import grasp
from dal_jax.evaluation.blur import blur_at, gauss_kernel, gaussian_blur, with_x64

Q_SIGMA, ANGLE_SIGMA, WIDTH_SIGMA = 2.0, 2.0, 1.0
MIN_DISTANCE = 20  # at the reference image size (grasp.REFERENCE_SIZE)
THRESHOLD = 0.2


class Grasps(NamedTuple):
    """Detected grasps; ``n`` = top_n.

    centre [..., n, 2] (row, col) float32; angle, opening, jaw, quality [..., n] float32;
    valid [..., n] bool (False: fewer than n peaks; the other fields are then meaningless).
    """

    centre: jax.Array
    angle: jax.Array
    opening: jax.Array
    jaw: jax.Array
    quality: jax.Array
    valid: jax.Array


def peak_distance(size: int) -> int:
    """Peak spacing and border (px) for images of side ``size``: the reference's 20 px at
    300 px, scaled with the image at other sizes (``round(20 * size / 300)``, at least 1), so a
    small image is not capped by a border drawn for 300 px (at 96 px the fixed 20 px border
    excluded 11% of the synthetic set's grasp centres)."""
    return max(1, round(MIN_DISTANCE * int(size) / grasp.REFERENCE_SIZE))


def angle_map(preds):
    """atan2(sin, cos) / 2 as float32, [..., H, W] from preds [..., H, W, 4]. XLA's atan2 can
    differ from NumPy's in the last bit: rectangle corners move by ~1e-5 px, peaks not at all."""
    return (jnp.arctan2(preds[..., 2], preds[..., 1]) / 2.0).astype(jnp.float32)


def width_map(preds, size: int | None = None):
    """width * `grasp.width_scale` (size) as float32 (NumPy float32 multiply), [..., H, W];
    ``size`` is the image side (default W of preds: 150 at 300 px)."""
    scale = grasp.width_scale(preds.shape[-2] if size is None else size)
    return (preds[..., 3] * jnp.float32(scale)).astype(jnp.float32)


@jax.jit
def _postprocess(preds):
    preds = preds.astype(jnp.float32)
    q = gaussian_blur(preds[..., 0], Q_SIGMA)
    angle = gaussian_blur(angle_map(preds), ANGLE_SIGMA)
    width = gaussian_blur(width_map(preds), WIDTH_SIGMA)
    return q, angle, width


@with_x64
def postprocess(preds):
    """GG-CNN output maps -> blurred (quality, angle, width) maps, SciPy-exact.

    Args:
      preds: [..., H, W, 4] network outputs (pos, cos, sin, width), float32.
    Returns:
      q, angle (radians), width (pixels), each [..., H, W] float32.
    """
    return _postprocess(jnp.asarray(preds, jnp.float32))


# ----------------------------------------------------------------------------- peaks


def _max_filter_axis(x, axis: int, half: int):
    """Maximum over the window [i - half, i + half] clipped to the array, along ``axis``.

    Uses window doubling (log steps) instead of 2*half+1 comparisons.
    """
    n = x.shape[axis]
    size = 2 * half + 1
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half, half)
    m = jnp.pad(x, pad, constant_values=-jnp.inf)  # length n + size - 1
    span = 1
    while 2 * span <= size:
        # m[i] = max(padded[i : i + 2 * span]); the array shrinks by span (no wrap-around).
        length = m.shape[axis]
        m = jnp.maximum(
            jax.lax.slice_in_dim(m, 0, length - span, axis=axis),
            jax.lax.slice_in_dim(m, span, length, axis=axis),
        )
        span *= 2
    # m[i] = max of padded[i : i + span]; two overlapping windows cover [i, i + size).
    lo = jax.lax.slice_in_dim(m, 0, n, axis=axis)
    hi = jax.lax.slice_in_dim(m, size - span, size - span + n, axis=axis)
    return jnp.maximum(lo, hi)


def peak_mask(q, min_distance: int | None = None, threshold: float = THRESHOLD):
    """Candidate peaks of ``peak_local_max`` before ranking.

    Args:
      q: [..., H, W] float32 blurred quality; min_distance: default `peak_distance` of the
        image size.
    Returns:
      [..., H, W] bool: equal to the (2d+1)^2 maximum filter ('nearest' edges = the window
      clipped to the image), strictly above float32(threshold), at least d px from every
      border; all False when the whole image equals its maximum filter (e.g. constant).
    """
    if min_distance is None:
        min_distance = peak_distance(min(q.shape[-2:]))
    mx = _max_filter_axis(_max_filter_axis(q, q.ndim - 2, min_distance), q.ndim - 1, min_distance)
    eq = q == mx
    trivial = jnp.all(eq, axis=(-2, -1), keepdims=True)
    h, w = q.shape[-2:]
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    d = min_distance
    inner = (rows >= d) & (rows < h - d) & (cols >= d) & (cols < w - d)
    return eq & (q > jnp.float32(threshold)) & inner & ~trivial


def _first_argmax(x):
    """``argmax`` over the last axis (first maximum) as two plain reductions.

    XLA:CPU lowers ``argmax`` to a variadic (value, index) reduction that is ~30x slower than a
    ``max``; a max followed by a min over the matching indices gives the same first index
    (0 when the row is all -inf, like ``argmax``).
    """
    m = jnp.max(x, axis=-1, keepdims=True)
    iota = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    return jnp.min(jnp.where(x == m, iota, x.shape[-1]), axis=-1) % x.shape[-1]


def top_peaks(q, mask, top_n: int, min_distance: int):
    """Greedy ranking of peak candidates as ``peak_local_max`` / ``ensure_spacing`` do: by
    value, ties in row-major order (``argsort(kind='stable')`` on ``nonzero`` order), dropping
    later peaks closer than ``min_distance`` (Chebyshev) to an accepted one.

    Args: q, mask [..., H, W]. Returns rows, cols [..., n] int32 and valid [..., n] bool.
    """
    h, w = q.shape[-2:]
    flat_q = q.reshape(q.shape[:-2] + (h * w,))
    remaining = mask.reshape(flat_q.shape)
    rows_all = jnp.arange(h * w) // w
    cols_all = jnp.arange(h * w) % w
    rows, cols, valid = [], [], []
    for _ in range(top_n):
        idx = _first_argmax(jnp.where(remaining, flat_q, -jnp.inf))  # row-major tie order
        ok = jnp.take_along_axis(remaining, idx[..., None], axis=-1)[..., 0]
        r, c = idx // w, idx % w
        near = (jnp.abs(rows_all - r[..., None]) < min_distance) & (
            jnp.abs(cols_all - c[..., None]) < min_distance
        )
        remaining = remaining & ~near
        rows.append(r)
        cols.append(c)
        valid.append(ok)
    return (
        jnp.stack(rows, -1).astype(jnp.int32),
        jnp.stack(cols, -1).astype(jnp.int32),
        jnp.stack(valid, -1),
    )


@functools.partial(jax.jit, static_argnames=("top_n",))
def _detect_grasps(q, angle, width, top_n):
    q = q.astype(jnp.float32)
    d = peak_distance(min(q.shape[-2:]))
    rows, cols, valid = top_peaks(q, peak_mask(q, d), top_n, d)
    h, w = q.shape[-2:]
    flat = rows * w + cols

    def pick(m):
        return jnp.take_along_axis(m.reshape(m.shape[:-2] + (h * w,)), flat, axis=-1)

    opening = pick(width).astype(jnp.float32)
    return Grasps(
        centre=jnp.stack([rows, cols], -1).astype(jnp.float32),
        angle=pick(angle).astype(jnp.float32),
        opening=opening,
        jaw=opening / 2,
        quality=pick(q),
        valid=valid,
    )


@with_x64
def detect_grasps(q, angle, width, top_n: int = 1) -> Grasps:
    """Grasps at the top-n peaks of the quality map, as GG-CNN's ``detect_grasps``.

    Args:
      q, angle, width: [..., H, W] blurred maps from `postprocess`.
      top_n: number of peaks (best first).
    Returns:
      `Grasps` with fields [..., top_n] (centre [..., top_n, 2]).
    """
    return _detect_grasps(jnp.asarray(q), jnp.asarray(angle), jnp.asarray(width), top_n=top_n)


@with_x64
def predict_grasps(preds, top_n: int = 1) -> Grasps:
    """Convenience: `postprocess` + `detect_grasps` on [..., H, W, 4] outputs."""
    q, angle, width = _postprocess(jnp.asarray(preds, jnp.float32))
    return _detect_grasps(q, angle, width, top_n=top_n)


# ----------------------------------------------------------------------------- fast top-1


def values_at(preds, rows, cols, dtype=np.float64):
    """Angle, opening and quality [k] at peaks rows, cols [k] of one image's maps preds
    [H, W, 4]: the blurred maps at those pixels, each blurred only in the window around its
    peak (`blur_at`: identical to the full-map blur there). ``dtype``: the blur's accumulator
    (np.float64: SciPy's values; np.float32: the robot's fast blur)."""
    h, w = preds.shape[-3:-1]
    rad = (len(gauss_kernel(max(Q_SIGMA, ANGLE_SIGMA, WIDTH_SIGMA))) - 1) // 2

    def one(ri, ci):
        # Clamped indices repeat the edge pixels, i.e. SciPy's 'nearest' padding.
        offs = jnp.arange(-rad, rad + 1)
        rr = jnp.clip(ri + offs, 0, h - 1)
        cc = jnp.clip(ci + offs, 0, w - 1)
        sub = preds[rr[:, None], cc[None, :]]  # [2 rad + 1, 2 rad + 1, 4]
        ang = blur_at(angle_map(sub), rad, rad, ANGLE_SIGMA, dtype)
        wid = blur_at(width_map(sub, w), rad, rad, WIDTH_SIGMA, dtype)
        return ang, wid, blur_at(sub[..., 0], rad, rad, Q_SIGMA, dtype)

    return jax.vmap(one)(rows, cols)


def _grasps_at(preds, rows, cols, valid):
    """Top-1 `Grasps` [C, 1] at given peaks rows, cols [C, 1] of preds [C, H, W, 4]."""
    ang, wid, qual = jax.vmap(values_at)(preds, rows, cols)
    return Grasps(
        centre=jnp.stack([rows, cols], -1).astype(jnp.float32),
        angle=ang,
        opening=wid,
        jaw=wid / 2,
        quality=qual,
        valid=valid,
    )


# Bound on |fast float32 blur - SciPy's blur| in units of 2^-24 * max|input| used by the
# certificate (`_top1_fast` proves < 25, or < 38 in any summation order).
_BLUR_ERR_ULPS = 64.0


def _top1_fast(preds):
    """Top-1 peak from a float32 quality blur, with a certificate that it is the exact one.

    Args:
      preds: [C, H, W, 4] float32.
    Returns:
      rows, cols [C, 1] int32, valid [C, 1] bool (the peak of ``peak_local_max`` on the fast
      blur) and ok [C] bool: True only if the exact (SciPy) blur provably has the same top-1
      peak, or provably none.

    Error bound. Each pass of the fast blur sums 9 (pair sum * float32 weight) terms in float32:
    <= 3 roundings per term plus <= 8 additions on any term's path, so a pass is within
    11.1 u sum_k w_k |a_k| <= 11.1 u max|a| of the exact real result (u = 2^-24; weights >= 0
    summing to 1). This holds in any summation order or with FMA (17 separate products: ~18 u).
    SciPy's pass (float64 sum, stored as float32) is within 1.01 u max|a| of it. Pass 1 thus
    differs by <= 12.1 u A (A = max|input|), which pass 2 carries with gain sum_k w_k = 1, so
    |q_fast - q_exact| <= 11.1 u A + 12.1 u A + 1.01 u A < 25 u A (< 38 u A in the worst order)
    < e := 64 u A (+ 2^-100 for flushed denormals). Inputs with max|x| >= 2^120 (pair sums
    could overflow) or non-finite ones are never certified.

    Certificate. Write q~ for the fast blur, q for the exact one, mx for 41x41 maximum filters.
    An exact candidate c (q[c] = mx[c]) has q~[c] >= mx~[c] - 2e ("possible"). If the fast peak
    g exists, (1) every other pixel s of its window has q~[s] < q~[g] - 2e, so q[g] = mx[g] and
    the map is not constant; (2) q~[g] - e > 0.2, so q[g] > 0.2; (3) g is the only possible
    candidate in the inner region with q~ >= q~[g] - 2e, so no exact candidate c != g has
    q[c] >= q[g]. Then g is the exact top-1 peak. If there is no fast peak, no possible
    candidate has q~ >= 0.2 - e, so there is no exact peak either. All tests are written as
    ``float32(a - b) <= bound`` (rounding is monotone, so they only err on the safe side);
    anything else (near-ties, plateaus, values near 0.2, non-finite inputs) is not ok.
    """
    x = preds[..., 0].astype(jnp.float32)
    q = gaussian_blur(x, Q_SIGMA, np.float32)  # [C, H, W]
    c_, h, w = q.shape
    d = peak_distance(min(h, w))
    mx = _max_filter_axis(_max_filter_axis(q, 1, d), 2, d)
    rows_i = jnp.arange(h)[:, None]
    cols_i = jnp.arange(w)[None, :]
    inner = (rows_i >= d) & (rows_i < h - d) & (cols_i >= d) & (cols_i < w - d)
    thr = jnp.float32(THRESHOLD)
    eq = q == mx
    trivial = jnp.all(eq, axis=(-2, -1), keepdims=True)
    cand = eq & (q > thr) & inner & ~trivial
    flat = jnp.where(cand, q, -jnp.inf).reshape((c_, h * w))
    idx = _first_argmax(flat)
    valid = jnp.any(cand, axis=(-2, -1))
    top = jnp.take_along_axis(flat, idx[:, None], axis=-1)  # [C, 1]
    r, c = idx // w, idx % w

    amax = jnp.max(jnp.abs(x), axis=(-2, -1))
    e = (jnp.float32(_BLUR_ERR_ULPS * 2.0**-24) * amax + jnp.float32(2.0**-100))[:, None, None]
    e2 = 2 * e
    top3 = top[:, :, None]
    possible = inner & (mx - q <= e2)
    close = jnp.where(valid[:, None, None], top3 - q <= e2, thr - q <= e)
    n_close = jnp.sum(possible & close, axis=(-2, -1))
    # Second largest value of the peak's window (the window clipped to the image).
    qp = jnp.pad(q, ((0, 0), (d, d), (d, d)), constant_values=-jnp.inf)
    win = jax.vmap(lambda a, i, j: jax.lax.dynamic_slice(a, (i, j), (2 * d + 1, 2 * d + 1)))(
        qp, r, c
    )
    centre = (jnp.arange(2 * d + 1)[:, None] == d) & (jnp.arange(2 * d + 1)[None, :] == d)
    second = jnp.max(jnp.where(centre, -jnp.inf, win), axis=(-2, -1))
    strict = top[:, 0] - second > e2[:, 0, 0]
    above = top[:, 0] - thr > e[:, 0, 0]
    ok = jnp.where(valid, (n_close == 1) & strict & above, n_close == 0)
    ok &= jnp.all(jnp.isfinite(x), axis=(-2, -1)) & (amax < 2.0**120)
    return r[:, None].astype(jnp.int32), c[:, None].astype(jnp.int32), valid[:, None], ok


def detect_top1(preds, chunk: int):
    """The reference top-1 grasp of each image: the certified fast peak or the exact one.

    preds [T, H, W, 4] float32 network outputs, ``chunk`` images post-processed at a time
    (memory bound) -> (`Grasps` with fields [T, 1], n_exact: images redone with the exact
    blur). Traced inside a jitted function that runs with float64 enabled.
    """
    preds = preds.astype(jnp.float32)
    total, h, w = preds.shape[:3]
    d = peak_distance(min(h, w))
    chunk = min(chunk, total)
    n_chunks = -(-total // chunk)
    # Chunk k covers images start[k] .. start[k] + chunk - 1; the last one is shifted back to
    # overlap its predecessor instead of padding (a copy of the whole input).
    start = jnp.minimum(jnp.arange(n_chunks) * chunk, total - chunk)

    # lax.map over small chunks bounds memory and keeps each chunk's maps in cache; the
    # detection code is batched over the chunk axis itself (faster than lax.map's batch_size).
    def detect(st):
        x = jax.lax.dynamic_slice_in_dim(preds, st, chunk)
        rows, cols, valid, ok = _top1_fast(x)
        return _grasps_at(x, rows, cols, valid), ok

    g, ok = jax.lax.map(detect, start)  # [n_chunks, chunk, ...]
    image = jnp.arange(total)
    k = jnp.minimum(image // chunk, n_chunks - 1)
    pos = (k, image - start[k])
    g, ok = jax.tree.map(lambda a: a[pos], (g, ok))  # [total, ...]
    # Images without a certificate are redone with the exact float64 blur, `chunk` at a time
    # (the index list is padded with image 0, whose exact result is correct too).
    fail = ~ok
    n_fail = jnp.sum(fail)
    order = jnp.nonzero(fail, size=n_chunks * chunk, fill_value=0)[0]

    def redo(k, g):
        ids = jax.lax.dynamic_slice(order, (k * chunk,), (chunk,))
        x = preds[ids]
        q = gaussian_blur(x[..., 0], Q_SIGMA)  # exact: SciPy's map
        exact = _grasps_at(x, *top_peaks(q, peak_mask(q, d), 1, d))
        return jax.tree.map(lambda a, b: a.at[ids].set(b), g, exact)

    return jax.lax.fori_loop(0, (n_fail + chunk - 1) // chunk, redo, g), n_fail
