"""GG-CNN's training maps from grasp rectangles, drawn as GG-CNN's reference code draws them."""

from __future__ import annotations

import math

import numpy as np

from dal_jax.data import grasp


def _fill_mask(poly: np.ndarray, shape) -> tuple[slice, slice, np.ndarray] | None:
    """Pixels whose centres lie inside a convex quadrilateral poly [4, 2] (row, col), edges
    included. Returns (row slice, col slice, bool mask of that window) or None if empty."""
    h, w = shape
    r0 = max(math.ceil(poly[:, 0].min() - 1e-9), 0)
    r1 = min(math.floor(poly[:, 0].max() + 1e-9), h - 1)
    c0 = max(math.ceil(poly[:, 1].min() - 1e-9), 0)
    c1 = min(math.floor(poly[:, 1].max() + 1e-9), w - 1)
    if r1 < r0 or c1 < c0:
        return None
    rr, cc = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
    inside_pos = np.ones(rr.shape, bool)
    inside_neg = np.ones(rr.shape, bool)
    for k in range(4):
        a, b = poly[k], poly[(k + 1) % 4]
        cross = (b[0] - a[0]) * (cc - a[1]) - (b[1] - a[1]) * (rr - a[0])
        # Either winding order: inside means the same side of all four edges.
        inside_pos &= cross >= -1e-9
        inside_neg &= cross <= 1e-9
    return slice(r0, r1 + 1), slice(c0, c1 + 1), inside_pos | inside_neg


def make_targets(rects, mask=None, shape=(300, 300)) -> np.ndarray:
    """GG-CNN training maps for one image (as GG-CNN's reference code draws them).

    Each rectangle's central third along the opening axis (opening/3 x jaw, same centre and
    angle) is painted with pos = 1, angle and opening; rectangles later in the list overwrite
    earlier ones. Pixels are painted when their centre lies inside the (closed) polygon, like
    the reference's ``skimage.draw.polygon`` rasterisation.

    Args:
      rects: [G, 4, 2] (row, col); mask: [G] bool of valid rows, or None (all valid);
      shape: (H, W).
    Returns:
      [H, W, 4] float32: pos, cos(2 angle), sin(2 angle), clip(opening, 0, s) / s with
      s = `grasp.width_scale` (H) (150 at 300 px). Background: 0, 1, 0, 0.
    """
    rects = np.asarray(rects, np.float64).reshape(-1, 4, 2)
    if mask is not None:
        rects = rects[np.asarray(mask, bool)]
    h, w = shape
    pos = np.zeros((h, w), np.float32)
    ang = np.zeros((h, w), np.float32)
    width = np.zeros((h, w), np.float32)
    if len(rects):
        centre, angle, opening, jaw = grasp.rect_params(rects)
        inner = grasp.grasp_to_rect(centre, angle, opening / 3, jaw)
        for poly, a, o in zip(inner, angle, opening):
            hit = _fill_mask(poly, (h, w))
            if hit is None:
                continue
            rs, cs, m = hit
            pos[rs, cs][m] = 1.0
            ang[rs, cs][m] = a
            width[rs, cs][m] = o
    scale = grasp.width_scale(h)
    return np.stack(
        [pos, np.cos(2 * ang), np.sin(2 * ang), np.clip(width, 0, scale) / scale], axis=-1
    ).astype(np.float32)
