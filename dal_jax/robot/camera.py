"""Pinhole camera: intrinsics, and a grasp in frame pixels placed in the camera frame in metres.

The grasp's depth is the median of the valid raw depth in an 11 x 11 window around its centre
(the inpainted value when none is valid), as GG-CNN's robot code takes the depth at the grasp
point.
"""

from __future__ import annotations

import math

import numpy as np

from dal_jax.robot.results import Grasp

DEPTH_WINDOW = 5  # half-size of the window the grasp's depth is taken from (11 x 11 px)


def parse_intrinsics(intrinsics) -> tuple[float, float, float, float] | None:
    """(fx, fy, cx, cy) in pixels from a sequence or an "fx,fy,cx,cy" string; None passes.

    Raises ValueError unless there are 4 finite numbers with fx, fy > 0.
    """
    if intrinsics is None:
        return None
    if isinstance(intrinsics, str):
        intrinsics = [float(v) for v in intrinsics.split(",")]
    vals = tuple(float(v) for v in intrinsics)
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[0] <= 0 or vals[1] <= 0:
        raise ValueError(
            f"intrinsics must be 4 finite numbers fx,fy,cx,cy (fx, fy > 0); got {vals}"
        )
    return vals


def place(g: Grasp, depth: np.ndarray, fallback_z: float, intrinsics) -> None:
    """Sets ``g.position`` (x, y, z) m and ``g.opening_m`` / ``g.jaw_m``.

    depth: the raw frame [H, W] metres (holes 0 or NaN). fallback_z: the depth to use when the
    window around the centre holds no valid reading. intrinsics: (fx, fy, cx, cy) px.
    """
    fx, fy, cx, cy = intrinsics
    h, w = depth.shape
    r = round(min(max(g.centre[0], 0), h - 1))
    c = round(min(max(g.centre[1], 0), w - 1))
    win = depth[
        max(0, r - DEPTH_WINDOW) : r + DEPTH_WINDOW + 1,
        max(0, c - DEPTH_WINDOW) : c + DEPTH_WINDOW + 1,
    ]
    ok = win[np.isfinite(win) & (win > 0)]
    # Median: robust to the flying pixels at object edges that a single pixel can hit.
    z = float(np.median(ok)) if ok.size else float(fallback_z)
    g.position = ((g.centre[1] - cx) * z / fx, (g.centre[0] - cy) * z / fy, z)
    ca, sa = math.cos(g.angle), math.sin(g.angle)
    # A pixel vector of length L along the angle spans (L cos a / fx, L sin a / fy) * z.
    g.opening_m = g.opening * z * math.hypot(ca / fx, sa / fy)
    g.jaw_m = g.jaw * z * math.hypot(sa / fx, ca / fy)
