"""Grasp rectangles and grasps: conversions and the Cornell / Jacquard text formats.

Conventions used everywhere in dal_jax (SPEC section 4):

* A rectangle is 4 corners ``[..., 4, 2]`` in **(row, col)** pixel coordinates (float).
  Corners p0 -> p1 run along the gripper opening, p1 -> p2 along the jaw.
* A grasp is ``(centre [..., 2] (row, col), angle [...], opening [...], jaw [...])``:
  ``angle = atan2(-(p1.row - p0.row), p1.col - p0.col)`` wrapped to [-pi/2, pi/2)
  (counter-clockwise, image up is positive), ``opening = |p1 - p0|``, ``jaw = |p2 - p1|``,
  ``centre`` = mean of the corners.
* Cornell files hold ``x y`` = (col, row) a line, four lines a rectangle.
* Jacquard files hold ``x;y;theta_deg;opening;jaw`` a line, with the image convention flipped
  (angle = -theta).

The conversion functions are vectorised over any leading axes and work on NumPy arrays and,
unchanged, on JAX arrays inside ``jit`` (the array namespace follows the input).
"""

from __future__ import annotations

import math

import numpy as np


def _xp(*arrays):
    """NumPy for NumPy input, jax.numpy when any input is a JAX array or tracer."""
    for a in arrays:
        if type(a).__module__.startswith("jax"):
            import jax.numpy as jnp

            return jnp
    return np


def wrap_angle(angle):
    """Wraps radians to [-pi/2, pi/2): grasp angles are defined modulo pi."""
    return (angle + math.pi / 2) % math.pi - math.pi / 2


def rect_params(rects):
    """Rectangle corners -> grasp parameters.

    Args:
      rects: [..., 4, 2] corners (row, col).
    Returns:
      centre [..., 2] (row, col), angle [...] in [-pi/2, pi/2), opening [...], jaw [...].
    """
    xp = _xp(rects)
    d01 = rects[..., 1, :] - rects[..., 0, :]
    d12 = rects[..., 2, :] - rects[..., 1, :]
    angle = wrap_angle(xp.arctan2(-d01[..., 0], d01[..., 1]))
    opening = xp.sqrt(xp.sum(d01**2, axis=-1))
    jaw = xp.sqrt(xp.sum(d12**2, axis=-1))
    centre = xp.mean(rects, axis=-2)
    return centre, angle, opening, jaw


def grasp_to_rect(centre, angle, opening, jaw):
    """Grasp parameters -> rectangle corners [..., 4, 2] (row, col).

    The inverse of `rect_params` (up to corner order: p0 is the corner whose opening edge
    starts at the -opening/2 side). Shapes broadcast: centre [..., 2], the rest [...].
    """
    xp = _xp(centre, angle, opening, jaw)
    # Python scalars are accepted too (e.g. one grasp from a config or a test).
    centre, angle, opening, jaw = (xp.asarray(v) for v in (centre, angle, opening, jaw))
    cos, sin = xp.cos(angle), xp.sin(angle)
    # Unit vectors in (row, col): along the opening and along the jaw.
    along = xp.stack([-sin, cos], axis=-1)
    across = xp.stack([cos, sin], axis=-1)
    half_o = (opening / 2)[..., None] * along
    half_j = (jaw / 2)[..., None] * across
    p0 = centre - half_o - half_j
    p1 = centre + half_o - half_j
    p2 = centre + half_o + half_j
    p3 = centre - half_o + half_j
    return xp.stack([p0, p1, p2, p3], axis=-2)


def offset_rects(rects, offset):
    """Translates rectangles by ``offset`` (row, col): [..., 4, 2] + [2] (or [..., 1, 2])."""
    xp = _xp(rects, offset)
    return rects + xp.asarray(offset, dtype=rects.dtype if xp is not np else np.float64)


def scale_rects(rects, factor):
    """Scales rectangle coordinates about the origin (e.g. 300/1024 for Jacquard)."""
    return rects * factor


def rotate_rects(rects, angle, centre):
    """Rotates rectangles by ``angle`` radians (counter-clockwise as seen in the image) about
    ``centre`` (row, col). A grasp's angle increases by ``angle``.

    Args:
      rects: [..., 4, 2]; angle: scalar or [...]; centre: [2] or [..., 2].
    """
    xp = _xp(rects)
    angle = xp.asarray(angle)[..., None]
    centre = xp.asarray(centre)
    if centre.ndim > 1:
        centre = centre[..., None, :]
    rel = rects - centre
    c, s = xp.cos(angle), xp.sin(angle)
    # The row axis points down, so a counter-clockwise turn in the image maps (r, c) to
    # (r cos - c sin, r sin + c cos).
    row = rel[..., 0] * c - rel[..., 1] * s
    col = rel[..., 0] * s + rel[..., 1] * c
    return xp.stack([row, col], axis=-1) + centre


# ----------------------------------------------------------------------------- Cornell files


def parse_cornell(text: str, round_to_int: bool = True):
    """Parses a Cornell ``cpos.txt``/``cneg.txt`` text.

    Four ``x y`` lines make a rectangle. Like the reference loader, coordinates are rounded to
    whole pixels (``round_to_int``); a rectangle with a NaN or unparsable value is skipped.
    CRLF line endings, blank lines and a last line without a newline are accepted.

    Returns:
      rects: [G, 4, 2] float64 (row, col); skipped: number of rectangles skipped.
    """
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    rects, skipped = [], 0
    for i in range(0, len(lines) - len(lines) % 4, 4):
        try:
            pts = []
            for ln in lines[i : i + 4]:
                x_str, y_str = ln.split()
                x, y = float(x_str), float(y_str)
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise ValueError(ln)
                pts.append((y, x))
        except ValueError:
            skipped += 1
            continue
        rects.append(pts)
    if len(lines) % 4:
        skipped += 1  # a dangling partial rectangle
    out = np.asarray(rects, dtype=np.float64).reshape(-1, 4, 2)
    return (np.round(out) if round_to_int else out), skipped


def format_cornell(rects) -> str:
    """Rectangles [G, 4, 2] (row, col) -> Cornell text (``x y`` lines, '\\n' endings)."""
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4, 2)
    return "".join(f"{c:.10g} {r:.10g}\n" for rect in rects for r, c in rect)


# ----------------------------------------------------------------------------- Jacquard files


def parse_jacquard(text: str, scale: float = 1.0):
    """Parses a Jacquard ``_grasps.txt`` text into rectangles.

    Each ``x;y;theta;opening;jaw`` line is a grasp (theta in degrees, image convention flipped:
    angle = -theta). Coordinates and sizes are multiplied by ``scale`` (300/1024 for the
    paper's input size). Returns (rects [G, 4, 2] (row, col), skipped count).
    """
    grasps, skipped = [], 0
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln:
            continue
        try:
            vals = [float(v) for v in ln.split(";")]
            if len(vals) != 5 or not all(math.isfinite(v) for v in vals):
                raise ValueError(ln)
        except ValueError:
            skipped += 1
            continue
        grasps.append(vals)
    g = np.asarray(grasps, dtype=np.float64).reshape(-1, 5)
    centre = g[:, [1, 0]]
    rects = grasp_to_rect(centre, -np.deg2rad(g[:, 2]), g[:, 3], g[:, 4])
    return scale_rects(rects, scale), skipped


def format_jacquard(rects) -> str:
    """Rectangles [G, 4, 2] -> Jacquard text (``x;y;theta;opening;jaw`` lines)."""
    centre, angle, opening, jaw = rect_params(np.asarray(rects, dtype=np.float64).reshape(-1, 4, 2))
    return "".join(
        f"{c[1]:.10g};{c[0]:.10g};{-np.rad2deg(a):.10g};{o:.10g};{j:.10g}\n"
        for c, a, o, j in zip(centre, angle, opening, jaw)
    )
