"""Grasp rectangles and grasps: conversions and the Cornell / Jacquard text formats.

Conventions used everywhere in dal_jax (those of the Cornell and Jacquard files and GG-CNN's reference code):

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

REFERENCE_SIZE = 300  # the image side GG-CNN's constants were set for
WIDTH_SCALE = 150.0  # the opening (px) that a width output of 1 means, at REFERENCE_SIZE


def width_scale(size: int) -> float:
    """The opening (px) that a width output of 1 means in a ``size`` image: 150 px at the
    reference 300 px, scaled with the image, so a small image's openings are not squeezed into
    a few hundredths of the width output (at 96 px the synthetic openings of 14-27 px were
    targets of 0.09-0.18 and the width head barely learned)."""
    return WIDTH_SCALE * int(size) / REFERENCE_SIZE


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
    CRLF line endings, blank lines and a last line without a newline are accepted. A file whose
    line count is not a multiple of 4 has lost (or gained) a line somewhere, so its grouping
    into rectangles is checked; see `parse_cornell_report`.

    Returns:
      rects: [G, 4, 2] float64 (row, col); skipped: number of rectangles skipped.
    """
    rects, skipped, _ = parse_cornell_report(text, round_to_int)
    return rects, skipped


def plausible_rect(pts) -> bool:
    """Whether 4 corners [4, 2] in order form a (nearly) proper rectangle: the diagonals bisect
    each other and have equal lengths (within max(3 px, 15 % of the diagonal), generous enough
    for hand-drawn Cornell rectangles rounded to whole pixels), and the area is close to the
    product of two adjacent sides (not degenerate, not self-crossing)."""
    p = np.asarray(pts, np.float64)
    if p.shape != (4, 2) or not np.isfinite(p).all():
        return False
    d02, d13 = np.hypot(*(p[2] - p[0])), np.hypot(*(p[3] - p[1]))
    tol = max(3.0, 0.15 * max(d02, d13))
    if np.hypot(*(p[0] + p[2] - p[1] - p[3])) > tol or abs(d02 - d13) > tol:
        return False
    sides = np.hypot(*(np.roll(p, -1, axis=0) - p).T)
    if sides.min() < 1.0:
        return False
    x, y = p[:, 0], p[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    return bool(area >= 0.7 * sides[0] * sides[1])


def parse_cornell_report(text: str, round_to_int: bool = True):
    """`parse_cornell` with the reasons: returns (rects [G, 4, 2], skipped, notes [str]).

    When the number of coordinate lines is a multiple of 4 the file is grouped four by four
    (the reference loader's rule). Otherwise a line was lost or added somewhere and every
    group after that place mixes the corners of two rectangles, so the grouping is rebuilt:

    * groups before the gap are aligned with the file's start, groups after it with its end
      (the ``len % 4`` left-over lines are the broken rectangle);
    * the gap is placed where the most groups form a plausible rectangle (`plausible_rect`);
      if several places explain the file equally well, the groups between them are ambiguous
      (a shifted group of a near-duplicate rectangle can look plausible) and are skipped;
    * groups that are not a plausible rectangle are skipped too.

    Skipped rectangles are counted (the broken one included) and described in ``notes``.
    """
    numbered = [(no, ln.strip()) for no, ln in enumerate(text.splitlines(), 1)]
    numbered = [(no, ln) for no, ln in numbered if ln]
    pts = [_cornell_point(ln) for _, ln in numbered]
    n = len(pts)
    r, g_count = n % 4, n // 4

    def group(start):
        block = pts[start : start + 4]
        return None if any(q is None for q in block) else block

    if r == 0:
        groups = [group(4 * i) for i in range(g_count)]
        rects = [b for b in groups if b is not None]
        skipped = g_count - len(rects)
        notes = [f"{skipped} rectangle(s) with NaN or malformed values"] if skipped else []
        return _cornell_out(rects, round_to_int), skipped, notes

    head = [group(4 * i) for i in range(g_count)]  # aligned with the start
    tail = [group(4 * i + r) for i in range(g_count)]  # aligned with the end
    ok_head = [b is not None and plausible_rect(b) for b in head]
    ok_tail = [b is not None and plausible_rect(b) for b in tail]
    scores = [sum(ok_head[:g]) + sum(ok_tail[g:]) for g in range(g_count + 1)]
    best = max(scores)
    tied = [g for g, sc in enumerate(scores) if sc == best]
    lo, hi = tied[0], tied[-1]
    rects = [head[i] for i in range(lo) if ok_head[i]]
    rects += [tail[i] for i in range(hi, g_count) if ok_tail[i]]
    skipped = g_count + 1 - len(rects)
    where = numbered[min(4 * lo, n - 1)][0]
    if lo == g_count:
        place = f"the last rectangle (from line {where}) is incomplete"
    elif lo == hi:
        place = f"a line is missing or extra in the rectangle starting at line {where}"
    else:
        end_line = numbered[min(4 * hi + r, n) - 1][0]
        place = (
            f"a line is missing or extra somewhere in lines {where}..{end_line}, whose "
            "grouping is ambiguous"
        )
    note = (
        f"{n} coordinate lines, not a multiple of 4: {place}; {skipped} rectangle(s) skipped "
        f"(incomplete, not a plausible rectangle, or ambiguous), {len(rects)} kept"
    )
    notes = [note]
    return _cornell_out(rects, round_to_int), skipped, notes


def _cornell_point(line: str):
    """``x y`` -> (row, col) floats, or None for a malformed or non-finite line."""
    try:
        x_str, y_str = line.split()
        x, y = float(x_str), float(y_str)
    except ValueError:
        return None
    return (y, x) if math.isfinite(x) and math.isfinite(y) else None


def _cornell_out(rects, round_to_int: bool) -> np.ndarray:
    out = np.asarray(rects, dtype=np.float64).reshape(-1, 4, 2)
    return np.round(out) if round_to_int else out


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
