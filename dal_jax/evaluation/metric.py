"""The rectangle metric in JAX: do detected grasps match the ground-truth rectangles?

Every accuracy the project reports is decided here, decision for decision as GG-CNN's reference
evaluation (``GraspRectangle.iou`` on scikit-image, after the post-processing of
`dal_jax.evaluation.postprocess`), jit-compiled and batched over seeds and images:

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
* **Accuracy.** The top-1 grasp of each image comes from `postprocess.detect_top1` (the
  certified float32 peak or the exact one: the reference's peak either way).

Known limits: rows at or beyond ``canvas_rows`` (default ``2 * H``) are not counted (only a
predicted opening of several hundred pixels reaches them); ground-truth quadrilaterals are
assumed convex.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from dal_jax.data import grasp
from dal_jax.evaluation import postprocess

ANGLE_TOL = math.pi / 6
IOU_THRESHOLD = 0.25
_VERTEX_EPS = 1e-12  # scikit-image's vertex tolerance in point_in_polygon


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


def _grasp_rects(g: postprocess.Grasps):
    return grasp.grasp_to_rect(
        g.centre.astype(jnp.float64),
        g.angle.astype(jnp.float64),
        g.opening.astype(jnp.float64),
        g.jaw.astype(jnp.float64),
    )


@functools.partial(jax.jit, static_argnames=("n_rows",))
def _grasp_success(grasps: postprocess.Grasps, gt_rects, gt_mask, n_rows):
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


@postprocess.with_x64
def grasp_success(
    grasps: postprocess.Grasps, gt_rects, gt_mask, image_size: int = 300, canvas_rows=None
):
    """Rectangle-metric success of detected grasps (GG-CNN's reference evaluation).

    Args:
      grasps: `Grasps` with fields [..., N, n] (centre [..., N, n, 2]); any valid one may match.
      gt_rects: [N, G, 4, 2] ground-truth rectangles (row, col), padded; float64 recommended.
      gt_mask: [N, G] bool, False for padding.
      image_size: H of the images (sets the default canvas_rows = 2 * H).
      canvas_rows: rows counted by the rasteriser (0 .. canvas_rows-1).
    Returns:
      [..., N] bool.
    """
    grasps = postprocess.Grasps(*(jnp.asarray(f) for f in grasps))
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
    g, n_fail = postprocess.detect_top1(preds.reshape((s * n, h, w, 4)), chunk)
    g = postprocess.Grasps(*(f.reshape((s, n) + f.shape[1:]) for f in g))
    success = _grasp_success(g, gt_rects, gt_mask, n_rows=n_rows)
    return jnp.mean(success.astype(jnp.float32), axis=-1), success, n_fail, g.valid[..., 0]


@postprocess.with_x64
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

    The peaks come from the certified float32 fast path with the exact float64 fallback
    (`postprocess.detect_top1`): the decisions are the reference's either way.
    """
    acc, success, _ = evaluate(preds, gt_rects, gt_mask, canvas_rows, chunk)
    return acc, success


class Evaluation(NamedTuple):
    """`evaluate`'s results: acc [S]; success, has_grasp [S, N] bool (a quality peak above the
    threshold exists: the model proposes a grasp at all)."""

    acc: jax.Array
    success: jax.Array
    has_grasp: jax.Array


@postprocess.with_x64
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
