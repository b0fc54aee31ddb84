"""The rectangle metric and GG-CNN grasp post-processing in JAX (SPEC sections 5-6).

Every accuracy the project reports is decided here, so the code reproduces the field's reference
evaluation (GG-CNN's ``post_process_output`` / ``detect_grasps`` / ``GraspRectangle.iou`` built on
SciPy and scikit-image) decision for decision, jit-compiled and batched over seeds and images:

* **Blur.** ``scipy.ndimage.gaussian_filter`` (what ``skimage.filters.gaussian`` calls) on a
  float32 map filters axis 0 then axis 1, each pass with a symmetric 1-D kernel of radius
  ``int(4 * sigma + 0.5)``, edge mode 'nearest', summing ``x[0]*w[0] + sum_{j=r..1} (x[-j] +
  x[+j]) * w[j]`` in float64 and storing each pass as float32. `gaussian_blur` does exactly that
  (same order, float64 accumulation, float32 storage), so the blurred quality map is
  bit-identical to SciPy's and the peak, including near-ties and plateaus, is the same pixel.
  The float64 parts run under ``jax.enable_x64`` scoped to this module's calls; the rest of the
  project stays float32.
* **Fast top-1 path (`accuracy`).** The quality map is blurred in float32 (2x cheaper than the
  float64 blur), which is within a rigorous bound e = 64 * 2^-24 * max|input| of SciPy's map
  (`_top1_fast` proves < 25). A per-image certificate proves that the float32 top-1 peak is
  the reference peak (or that neither map has one): the peak beats every other pixel of its
  41x41 window and the threshold by more than 2e / e, and no other pixel that could be a
  local maximum of the exact map comes within 2e of it. Images without a certificate
  (near-ties, plateaus, peaks at 0.2, non-finite inputs) are redone with the exact float64
  blur, so decisions stay identical to the reference; on smooth or noisy maps almost all
  images are certified. Angle, width and quality at the peak are always the exact values
  (`_blur_at` on a 17x17 window).
* **Peaks.** ``skimage.feature.peak_local_max(q, min_distance=20, threshold_abs=0.2,
  num_peaks=n)``: a pixel is a peak if it equals the 41x41 maximum filter ('nearest' = window
  clipped to the image), is strictly above float32(0.2) and is not within 20 px of a border; if
  the whole image equals its maximum filter (e.g. constant) there is no peak; peaks are ranked
  by value, ties in row-major order (``argsort(kind='stable')`` on ``nonzero`` order), and later
  peaks closer than 20 px (Chebyshev) to an accepted one are dropped (``ensure_spacing``).
* **Rasterising.** ``skimage.draw.polygon(rows, cols)`` without ``shape`` keeps the integer
  pixels ``(r, c)``, ``r, c >= 0`` (no upper clip), for which O'Rourke's crossing test
  (``skimage/_shared/geometry.pyx: point_in_polygon``) says INSIDE, EDGE or VERTEX, i.e. the
  closed polygon plus any pixel within 1e-12 of a vertex in both coordinates. A zero-area
  rectangle (a doubled segment) keeps only its vertex pixels: both passes along the segment
  cross on the same side, so the parities agree and the point is OUTSIDE. For a convex polygon
  the kept pixels of row ``y`` are the integer columns of the closed segment ``[xl, xr]`` where
  the line ``row = y`` meets the polygon, so counts and intersections are computed per row
  (O(rows) per pair instead of a canvas). The edge crossing ``xi + ((y - yi) * (xj - xi)) /
  (yj - yi)`` is evaluated in float64 with the product before the division, which is exact
  whenever the true crossing is an integer and the corners are integers (Cornell's rounded
  annotations: pixels exactly on an edge are kept, as in scikit-image), and otherwise agrees
  with scikit-image's float64 predicate except for pixels within ~1e-12 px of an edge. Each
  rectangle is rasterised in its own window of rows starting at floor(min row) (192 rows for
  predictions, 128 for ground truth); an image with a taller valid rectangle uses the full
  canvas, so the window only saves time.
* **Metric.** IoU = 0 if ``|(a1 - a2 + pi/2) mod pi - pi/2| > pi/6`` (angles from the corners,
  ``grasp.rect_params``), else intersection / union of the pixel sets (0 if the union is
  empty); success if IoU > 0.25 (tested as ``4 * inter > union`` on integers, equivalent to the
  reference's float division) for any unmasked ground-truth rectangle and any valid grasp.

Known limits: rows at or beyond ``canvas_rows`` (default ``2 * H``) are not counted (only a
predicted opening of several hundred pixels reaches them); ground-truth quadrilaterals are
assumed convex; the angle map uses XLA's atan2, which can differ from NumPy's float32 atan2 in
the last bit (the angle only moves rectangle corners by ~1e-5 px, the quality map and thus the
peak are unaffected).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax import grasp

Q_SIGMA, ANGLE_SIGMA, WIDTH_SIGMA = 2.0, 2.0, 1.0
MIN_DISTANCE = 20  # at the reference image size (grasp.REFERENCE_SIZE)
THRESHOLD = 0.2
ANGLE_TOL = math.pi / 6
IOU_THRESHOLD = 0.25
_VERTEX_EPS = 1e-12  # scikit-image's vertex tolerance in point_in_polygon


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


def _x64(fn):
    """Runs ``fn`` (a jitted function) with float64 enabled for its trace and execution only."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper


# ----------------------------------------------------------------------------- blur


def gauss_kernel(sigma: float) -> np.ndarray:
    """SciPy's 1-D Gaussian weights (float64, radius int(4 sigma + 0.5)), [2r+1]."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


def _correlate_axis(x, w: np.ndarray, axis: int):
    """One SciPy correlate1d pass with a symmetric kernel, mode 'nearest', in x's dtype.

    Sums in SciPy's order (centre first, then the outermost pair inwards) so that float64
    results are bit-identical to SciPy's double accumulator.
    """
    r = (len(w) - 1) // 2
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = jnp.pad(x, pad, mode="edge")

    def tap(k):
        return jax.lax.slice_in_dim(xp, k, k + n, axis=axis)

    acc = tap(r) * w[r]
    for j in range(r, 0, -1):
        acc = acc + (tap(r - j) + tap(r + j)) * w[r + j]
    return acc


def gaussian_blur(img, sigma: float):
    """``skimage.filters.gaussian(img, sigma)`` on float32 maps, bit for bit.

    Args:
      img: [..., H, W] float32 (blurred over the last two axes).
    Returns:
      [..., H, W] float32. Must run with float64 enabled (the public functions do that).
    """
    w = gauss_kernel(sigma)
    y = _correlate_axis(img.astype(jnp.float64), w, img.ndim - 2).astype(jnp.float32)
    return _correlate_axis(y.astype(jnp.float64), w, img.ndim - 1).astype(jnp.float32)


def _blur_at(img, r, c, sigma: float):
    """The value of `gaussian_blur(img, sigma)` at one pixel, computed from a window only.

    Args:
      img: [H, W] float32; r, c: int scalars. Returns a float32 scalar identical to the full blur
      at (r, c) (same order, same float32 rounding between the two passes).
    """
    w = gauss_kernel(sigma)
    rad = (len(w) - 1) // 2
    h, wd = img.shape
    offs = jnp.arange(-rad, rad + 1)
    rows = jnp.clip(r + offs, 0, h - 1)
    cols = jnp.clip(c + offs, 0, wd - 1)
    win = img[rows[:, None], cols[None, :]].astype(jnp.float64)  # [2r+1 rows, 2r+1 cols]
    # Pass 1 (axis 0) at row r for each needed column, stored as float32 like SciPy.
    t = win[rad] * w[rad]
    for j in range(rad, 0, -1):
        t = t + (win[rad - j] + win[rad + j]) * w[rad + j]
    t = t.astype(jnp.float32).astype(jnp.float64)
    out = t[rad] * w[rad]
    for j in range(rad, 0, -1):
        out = out + (t[rad - j] + t[rad + j]) * w[rad + j]
    return out.astype(jnp.float32)


def angle_map(preds):
    """atan2(sin, cos) / 2 as float32, [..., H, W] from preds [..., H, W, 4]."""
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


@_x64
def postprocess(preds):
    """GG-CNN output maps -> blurred (quality, angle, width) maps.

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
      [..., H, W] bool: equal to the (2d+1)^2 maximum filter, strictly above float32(threshold),
      at least d px from every border; all False when the whole image equals its maximum filter.
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
    """Greedy ranking of peak candidates as ``ensure_spacing`` does.

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


@_x64
def detect_grasps(q, angle, width, top_n: int = 1) -> Grasps:
    """Grasps at the top-n peaks of the quality map (SPEC section 5).

    Args:
      q, angle, width: [..., H, W] blurred maps from `postprocess`.
      top_n: number of peaks (best first).
    Returns:
      `Grasps` with fields [..., top_n] (centre [..., top_n, 2]).
    """
    return _detect_grasps(jnp.asarray(q), jnp.asarray(angle), jnp.asarray(width), top_n=top_n)


def _grasps_at(preds, rows, cols, valid):
    """Top-1 `Grasps` [C, 1] at given peaks rows, cols [C, 1] of preds [C, H, W, 4].

    The quality, angle and width maps are blurred only in the 17x17 window around each peak
    (`_blur_at`: bit-identical to the full-map blur at that pixel).
    """
    h, w = preds.shape[-3:-1]
    rad = (len(gauss_kernel(max(Q_SIGMA, ANGLE_SIGMA, WIDTH_SIGMA))) - 1) // 2

    def one(p, ri, ci):
        # Clamped indices repeat the edge pixels, i.e. SciPy's 'nearest' padding.
        offs = jnp.arange(-rad, rad + 1)
        rr = jnp.clip(ri + offs, 0, h - 1)
        cc = jnp.clip(ci + offs, 0, w - 1)
        sub = p[rr[:, None], cc[None, :]]  # [2 rad + 1, 2 rad + 1, 4]
        ang = _blur_at(angle_map(sub), rad, rad, ANGLE_SIGMA)
        wid = _blur_at(width_map(sub, w), rad, rad, WIDTH_SIGMA)
        qual = _blur_at(sub[..., 0], rad, rad, Q_SIGMA)
        return ang, wid, qual

    ang, wid, qual = jax.vmap(one)(preds, rows[:, 0], cols[:, 0])
    return Grasps(
        centre=jnp.stack([rows, cols], -1).astype(jnp.float32),
        angle=ang[:, None],
        opening=wid[:, None],
        jaw=wid[:, None] / 2,
        quality=qual[:, None],
        valid=valid,
    )


def _detect_top1_from_preds(preds):
    """Exact top-1 grasp from network outputs [C, H, W, 4] (float64 quality blur in SciPy's
    order, then `peak_mask` / `top_peaks`): Grasps fields [C, 1]."""
    preds = preds.astype(jnp.float32)
    q = gaussian_blur(preds[..., 0], Q_SIGMA)
    d = peak_distance(min(q.shape[-2:]))
    rows, cols, valid = top_peaks(q, peak_mask(q, d), 1, d)
    return _grasps_at(preds, rows, cols, valid)


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
    wts = gauss_kernel(Q_SIGMA).astype(np.float32)
    q = _correlate_axis(_correlate_axis(x, wts, 1), wts, 2)  # [C, H, W]
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


def _detect_top1_fast(preds):
    """`_top1_fast` + `_grasps_at`: (Grasps fields [C, 1], ok [C])."""
    preds = preds.astype(jnp.float32)
    rows, cols, valid, ok = _top1_fast(preds)
    return _grasps_at(preds, rows, cols, valid), ok


# ----------------------------------------------------------------------------- rasterising


def row_intervals(rects, n_rows: int, row0=None, canvas_rows=None):
    """Pixel columns that ``skimage.draw.polygon`` keeps in each row, as closed intervals.

    Args:
      rects: [..., 4, 2] convex quadrilaterals (row, col), float64 for exactness.
      n_rows: rows row0 .. row0 + n_rows - 1 are evaluated (scikit-image never draws negative
        rows).
      row0: [...] int, first evaluated row of each polygon (default 0, must be >= 0).
      canvas_rows: rows at or beyond it are left out (default: none).
    Returns:
      (lo, hi, vpix, vvalid, row0): lo, hi [..., n_rows] int64, the kept columns of row
      row0 + k are lo[k] .. hi[k] (none when lo > hi); vpix [..., 4, 2] int64 (row, col) and
      vvalid [..., 4] bool: extra single pixels kept by the vertex rule (disjoint from the
      intervals); row0 [...] int64.
    """
    rects = rects.astype(jnp.float64)
    row0 = jnp.zeros(rects.shape[:-2], jnp.int64) if row0 is None else row0.astype(jnp.int64)
    y_i = row0[..., None] + jnp.arange(n_rows)  # [..., R] absolute rows
    y = y_i.astype(jnp.float64)
    p = rects[..., None, :, :]  # [..., 1, 4, 2]
    q = jnp.roll(rects, -1, axis=-2)[..., None, :, :]
    yi, xi = p[..., 0], p[..., 1]  # [..., 1, 4]
    yj, xj = q[..., 0], q[..., 1]
    yy = y[..., :, None]  # [..., R, 1]
    spans = (jnp.minimum(yi, yj) <= yy) & (yy <= jnp.maximum(yi, yj))  # [..., R, 4]
    flat = yi == yj
    dy = jnp.where(flat, 1.0, yj - yi)
    sgn = jnp.sign(dy)
    num = (yy - yi) * (xj - xi)
    x = xi + num / dy  # approximate crossing column

    # Exact rounding of the crossing without trusting the division (XLA may rewrite it as a
    # reciprocal multiply): "k >= crossing" <=> (k - xi) * dy >= num (times sign(dy)). With
    # integer corners every product is exact, so pixels exactly on an edge are decided exactly.
    def ge(k):
        return sgn * ((k - xi) * dy - num) >= 0

    def le(k):
        return sgn * ((k - xi) * dy - num) <= 0

    c0 = jnp.ceil(x)
    ceil_x = jnp.where(ge(c0 - 1), c0 - 1, jnp.where(ge(c0), c0, c0 + 1))
    f0 = jnp.floor(x)
    floor_x = jnp.where(le(f0 + 1), f0 + 1, jnp.where(le(f0), f0, f0 - 1))
    # A horizontal edge lying on the row contributes both of its ends.
    ceil_x = jnp.where(flat, jnp.ceil(jnp.minimum(xi, xj)), ceil_x)
    floor_x = jnp.where(flat, jnp.floor(jnp.maximum(xi, xj)), floor_x)
    big = 2.0**40
    lo_f = jnp.min(jnp.where(spans, jnp.clip(ceil_x, -big, big), big), axis=-1)
    hi_f = jnp.max(jnp.where(spans, jnp.clip(floor_x, -big, big), -big), axis=-1)

    # Zero-area rectangles (a doubled segment or a point): only vertex pixels are kept.
    c = rects
    seg = jnp.all(c[..., 0, :] == c[..., 3, :], -1) & jnp.all(c[..., 1, :] == c[..., 2, :], -1)
    seg |= jnp.all(c[..., 0, :] == c[..., 1, :], -1) & jnp.all(c[..., 2, :] == c[..., 3, :], -1)
    empty = seg[..., None] | (lo_f > hi_f)
    if canvas_rows is not None:
        empty |= y_i >= canvas_rows
    lo = jnp.where(empty, 1, jnp.maximum(lo_f, 0.0)).astype(jnp.int64)
    hi = jnp.where(empty, 0, jnp.maximum(hi_f, -1.0)).astype(jnp.int64)

    # Vertex rule: a pixel within 1e-12 of a corner in both coordinates is kept. Such a pixel
    # can lie far from its row's interval (a nearly flat edge), so it is kept as a point,
    # unless the interval or an earlier corner already holds it.
    vr, vc = jnp.round(rects[..., 0]), jnp.round(rects[..., 1])  # [..., 4]
    near = (jnp.abs(rects[..., 0] - vr) < _VERTEX_EPS) & (jnp.abs(rects[..., 1] - vc) < _VERTEX_EPS)
    r0 = row0[..., None].astype(jnp.float64)
    near &= (vr >= r0) & (vc >= 0) & (vr < r0 + n_rows)
    if canvas_rows is not None:
        near &= vr < canvas_rows
    vr_i = jnp.clip(vr, r0, r0 + n_rows - 1).astype(jnp.int64)
    vc_i = jnp.clip(vc, -1, 2.0**40).astype(jnp.int64)
    in_int = _in_intervals(lo, hi, row0, vr_i, vc_i)
    valid = []
    for k in range(4):
        ok = near[..., k] & ~in_int[..., k]
        for m in range(k):
            same = (vr_i[..., k] == vr_i[..., m]) & (vc_i[..., k] == vc_i[..., m])
            ok &= ~(valid[m] & same)
        valid.append(ok)
    return lo, hi, jnp.stack([vr_i, vc_i], -1), jnp.stack(valid, -1), row0


def _in_intervals(lo, hi, row0, r, c):
    """Whether pixels (r, c) [..., k] (absolute rows) lie in the row intervals lo, hi
    [..., R] of rows row0 [...] .. row0 + R - 1 -> [..., k]."""
    n = lo.shape[-1]
    rel = r - row0[..., None]
    inside = (rel >= 0) & (rel < n)
    rel = jnp.clip(rel, 0, n - 1)
    lo_r = jnp.take_along_axis(lo, rel, axis=-1)
    hi_r = jnp.take_along_axis(hi, rel, axis=-1)
    return inside & (lo_r <= c) & (c <= hi_r)


def _count(a):
    """Kept pixels of a rasterised polygon (lo, hi, vpix, vvalid, row0) -> [...]."""
    lo, hi, _, vvalid, _ = a
    return jnp.sum(jnp.maximum(hi - lo + 1, 0), axis=-1) + jnp.sum(vvalid, axis=-1)


def _overlap(a, b):
    """Common pixels of two rasterised polygons (broadcasting leading axes) -> [...].

    The rows are those of b's window; a's intervals are looked up at the same absolute rows.
    """
    lo1, hi1, v1, ok1, r01 = a
    lo2, hi2, v2, ok2, r02 = b
    shape = jnp.broadcast_shapes(lo1.shape[:-1], lo2.shape[:-1])
    n1, n2 = lo1.shape[-1], lo2.shape[-1]
    r01, r02 = jnp.broadcast_to(r01, shape), jnp.broadcast_to(r02, shape)
    rel = (r02 - r01)[..., None] + jnp.arange(n2)  # b's rows in a's window
    inside = (rel >= 0) & (rel < n1)
    rel = jnp.clip(rel, 0, n1 - 1)
    lo1b = jnp.broadcast_to(lo1, shape + (n1,))
    hi1b = jnp.broadcast_to(hi1, shape + (n1,))
    lo1r = jnp.take_along_axis(lo1b, rel, axis=-1)
    hi1r = jnp.take_along_axis(hi1b, rel, axis=-1)
    both = jnp.minimum(hi1r, hi2) - jnp.maximum(lo1r, lo2) + 1
    rows = jnp.sum(jnp.where(inside, jnp.maximum(both, 0), 0), axis=-1)

    def pts_in(lo, hi, r0, v, ok):
        lo = jnp.broadcast_to(lo, shape + lo.shape[-1:])
        hi = jnp.broadcast_to(hi, shape + hi.shape[-1:])
        v = jnp.broadcast_to(v, shape + v.shape[-2:])
        ok = jnp.broadcast_to(ok, shape + ok.shape[-1:])
        return ok & _in_intervals(lo, hi, r0, v[..., 0], v[..., 1]), v, ok

    p1_in_2, v1b, ok1b = pts_in(lo2, hi2, r02, v1, ok1)
    p2_in_1, v2b, ok2b = pts_in(lo1, hi1, r01, v2, ok2)
    same = jnp.all(v1b[..., :, None, :] == v2b[..., None, :, :], -1)
    pp = ok1b[..., :, None] & ok2b[..., None, :] & same
    return rows + jnp.sum(p1_in_2, -1) + jnp.sum(p2_in_1, -1) + jnp.sum(pp, axis=(-2, -1))


def _expand(a, axis):
    """Inserts a broadcast axis before the per-polygon trailing axes of a rasterisation."""
    lo, hi, v, ok, r0 = a
    return (
        jnp.expand_dims(lo, axis - 1),
        jnp.expand_dims(hi, axis - 1),
        jnp.expand_dims(v, axis - 2),
        jnp.expand_dims(ok, axis - 1),
        jnp.expand_dims(r0, axis),
    )


def rect_iou(rect_a, rect_b, n_rows: int):
    """Reference Jaccard index (with the angle gate) of rectangles [..., 4, 2] -> [...] float64."""
    a = row_intervals(rect_a, n_rows)
    b = row_intervals(rect_b, n_rows)
    inter = _overlap(a, b)
    union = _count(a) + _count(b) - inter
    iou = jnp.where(union > 0, inter / jnp.maximum(union, 1), 0.0)
    return jnp.where(_angle_ok(rect_a, rect_b), iou, 0.0)


def _angle_ok(rect_a, rect_b):
    a1 = grasp.rect_params(rect_a.astype(jnp.float64))[1]
    a2 = grasp.rect_params(rect_b.astype(jnp.float64))[1]
    diff = jnp.abs((a1 - a2 + jnp.pi / 2) % jnp.pi - jnp.pi / 2)
    return ~(diff > ANGLE_TOL)


# Rows per rectangle in the windowed rasteriser: a GG-CNN grasp (width output <= 1, opening
# <= 150 px, jaw <= 75 px) spans at most 170 rows; a Cornell ground-truth grasp well under 128.
# Images with a taller (valid) rectangle use the full canvas instead, so this is only speed.
_PRED_ROWS, _GT_ROWS = 192, 128


def _window(rects, n_rows, canvas_rows):
    """First row and whether every kept pixel row (< canvas_rows) of rects [..., 4, 2] lies in
    [row0, row0 + n_rows): row0 = floor(min row) >= 0 (vertex pixels round a corner within
    1e-12 px, so they lie in [floor(min), floor(max) + 1])."""
    r = rects[..., 0]
    lo = jnp.clip(jnp.floor(jnp.min(r, -1)), 0, canvas_rows)
    hi = jnp.minimum(jnp.floor(jnp.max(r, -1)) + 1, canvas_rows - 1)
    fits = hi < lo + n_rows  # False for NaN
    return lo.astype(jnp.int64), fits


def _success_rows(pred_rects, pred_valid, gt_rects, gt_mask, canvas_rows, rows_a, rows_b):
    """Success [K] of one image, rasterising each rectangle in its own window of rows."""
    if rows_a >= canvas_rows and rows_b >= canvas_rows:
        a = row_intervals(pred_rects, canvas_rows)  # lo [K, n, R], rows 0 .. R-1
        b = row_intervals(gt_rects, canvas_rows)  # lo [G, R]
    else:
        a = row_intervals(
            pred_rects, rows_a, _window(pred_rects, rows_a, canvas_rows)[0], canvas_rows
        )
        b = row_intervals(gt_rects, rows_b, _window(gt_rects, rows_b, canvas_rows)[0], canvas_rows)
    inter = _overlap(_expand(a, -1), b)  # [K, n, G]
    union = _count(a)[:, :, None] + _count(b) - inter
    ang = _angle_ok(pred_rects[:, :, None], gt_rects)
    # IoU > 0.25 on integers: inter / union > 1/4  <=>  4 * inter > union (union > 0).
    ok = ang & (4 * inter > union) & gt_mask.astype(bool) & pred_valid[:, :, None]
    return jnp.any(ok, axis=(1, 2))


def _success_one_image(pred_rects, pred_valid, gt_rects, gt_mask, n_rows):
    """pred_rects [K, n, 4, 2], pred_valid [K, n], gt_rects [G, 4, 2], gt_mask [G] -> [K].

    Rows 0 .. n_rows - 1 count. Windows of _PRED_ROWS / _GT_ROWS rows per rectangle when all
    valid rectangles of the image fit in them (same pixel sets, far fewer rows), else the
    full canvas.
    """
    rows_a, rows_b = min(_PRED_ROWS, n_rows), min(_GT_ROWS, n_rows)
    args = (pred_rects, pred_valid, gt_rects, gt_mask, n_rows)
    if rows_a >= n_rows and rows_b >= n_rows:
        return _success_rows(*args, n_rows, n_rows)
    fits = jnp.all(_window(pred_rects, rows_a, n_rows)[1] | ~pred_valid)
    fits &= jnp.all(_window(gt_rects, rows_b, n_rows)[1] | ~gt_mask.astype(bool))
    return jax.lax.cond(
        fits,
        lambda: _success_rows(*args, rows_a, rows_b),
        lambda: _success_rows(*args, n_rows, n_rows),
    )


def _grasp_rects(g: Grasps):
    return grasp.grasp_to_rect(
        g.centre.astype(jnp.float64),
        g.angle.astype(jnp.float64),
        g.opening.astype(jnp.float64),
        g.jaw.astype(jnp.float64),
    )


@functools.partial(jax.jit, static_argnames=("n_rows",))
def _grasp_success(grasps: Grasps, gt_rects, gt_mask, n_rows):
    lead = grasps.valid.shape[:-2]  # [..., N, n]
    n_img, top_n = grasps.valid.shape[-2:]
    rects = _grasp_rects(grasps)  # [..., N, n, 4, 2]
    # Image-major so that lax.map walks the N images with all seeds of one image at once.
    rects = jnp.moveaxis(rects.reshape((-1, n_img, top_n, 4, 2)), 1, 0)
    valid = jnp.moveaxis(grasps.valid.reshape((-1, n_img, top_n)), 1, 0)
    out = jax.lax.map(
        lambda a: _success_one_image(*a, n_rows),
        (rects, valid, gt_rects.astype(jnp.float64), gt_mask),
    )  # [N, K]
    return jnp.moveaxis(out, 0, 1).reshape(lead + (n_img,))


def _default_rows(n_rows, h):
    return int(n_rows) if n_rows is not None else 2 * int(h)


@_x64
def grasp_success(grasps: Grasps, gt_rects, gt_mask, image_size: int = 300, canvas_rows=None):
    """Rectangle-metric success of detected grasps (SPEC section 6).

    Args:
      grasps: `Grasps` with fields [..., N, n] (centre [..., N, n, 2]); any valid one may match.
      gt_rects: [N, G, 4, 2] ground-truth rectangles (row, col), padded; float64 recommended.
      gt_mask: [N, G] bool, False for padding.
      image_size: H of the images (sets the default canvas_rows = 2 * H).
      canvas_rows: rows counted by the rasteriser (0 .. canvas_rows-1).
    Returns:
      [..., N] bool.
    """
    grasps = Grasps(*(jnp.asarray(f) for f in grasps))
    return _grasp_success(
        grasps,
        jnp.asarray(gt_rects),
        jnp.asarray(gt_mask, bool),
        n_rows=_default_rows(canvas_rows, image_size),
    )


@functools.partial(jax.jit, static_argnames=("n_rows", "chunk"))
def _accuracy(preds, gt_rects, gt_mask, n_rows, chunk):
    """`accuracy` plus the number of images whose peak was recomputed exactly."""
    s, n, h, w, _ = preds.shape
    total = s * n
    flat = preds.reshape((total, h, w, 4))
    chunk = min(chunk, total)
    n_chunks = -(-total // chunk)
    # Chunk k covers images start[k] .. start[k] + chunk - 1; the last one is shifted back to
    # overlap its predecessor instead of padding (a copy of the whole input).
    start = jnp.minimum(jnp.arange(n_chunks) * chunk, total - chunk)

    # lax.map over small chunks bounds memory and keeps each chunk's maps in cache; the
    # detection code is batched over the chunk axis itself (faster than lax.map's batch_size).
    def detect(st):
        return _detect_top1_fast(jax.lax.dynamic_slice_in_dim(flat, st, chunk))

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
        exact = _detect_top1_from_preds(flat[ids])
        return jax.tree.map(lambda a, b: a.at[ids].set(b), g, exact)

    g = jax.lax.fori_loop(0, (n_fail + chunk - 1) // chunk, redo, g)
    g = Grasps(*(f.reshape((s, n) + f.shape[1:]) for f in g))
    success = _grasp_success(g, gt_rects, gt_mask, n_rows=n_rows)
    return jnp.mean(success.astype(jnp.float32), axis=-1), success, n_fail, g.valid[..., 0]


@_x64
def accuracy(preds, gt_rects, gt_mask, canvas_rows=None, chunk: int = 6):
    """Rectangle-metric accuracy of S models on N test images in one call.

    Args:
      preds: [S, N, H, W, 4] raw network outputs (pos, cos, sin, width).
      gt_rects: [N, G, 4, 2] padded ground-truth rectangles (row, col).
      gt_mask: [N, G] bool, False for padding.
      canvas_rows: rows the rasteriser counts (default 2 * H).
      chunk: images post-processed at a time (memory bound).
    Returns:
      acc [S] float32 (fraction of images with a correct top-1 grasp), success [S, N] bool.

    The peaks come from the certified float32 fast path with the exact float64 fallback (see the
    module docstring): the decisions are the reference's either way.
    """
    acc, success, _ = evaluate(preds, gt_rects, gt_mask, canvas_rows, chunk)
    return acc, success


class Evaluation(NamedTuple):
    """`evaluate`'s results: acc [S]; success, has_grasp [S, N] bool (a quality peak above the
    threshold exists: the model proposes a grasp at all)."""

    acc: jax.Array
    success: jax.Array
    has_grasp: jax.Array


@_x64
def evaluate(preds, gt_rects, gt_mask, canvas_rows=None, chunk: int = 6) -> Evaluation:
    """`accuracy` plus whether each image got a grasp at all (same arguments)."""
    preds = jnp.asarray(preds, jnp.float32)
    acc, success, _, valid = _accuracy(
        preds,
        jnp.asarray(gt_rects),
        jnp.asarray(gt_mask, bool),
        n_rows=_default_rows(canvas_rows, preds.shape[-3]),
        chunk=int(chunk),
    )
    return Evaluation(acc, success, valid)


@_x64
def predict_grasps(preds, top_n: int = 1) -> Grasps:
    """Convenience: `postprocess` + `detect_grasps` on [..., H, W, 4] outputs."""
    q, angle, width = _postprocess(jnp.asarray(preds, jnp.float32))
    return _detect_grasps(q, angle, width, top_n=top_n)
