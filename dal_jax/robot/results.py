"""What the detector returns: grasps in frame pixels (and metres) and a frame's detection."""

from __future__ import annotations

import dataclasses

import numpy as np

from dal_jax.data import grasp


@dataclasses.dataclass
class Grasp:
    """One grasp in original frame pixels (and, with intrinsics, metres in the camera frame).

    ``angle`` is counter-clockwise positive in the image, image up (`dal_jax.data.grasp`
    conventions); ``quality`` is the blurred quality at the peak. ``position`` is in the
    camera's optical frame (x right, y down, z forward).
    """

    centre: tuple[float, float]  # (row, col)
    angle: float  # radians, counter-clockwise in the image, in [-pi/2, pi/2)
    opening: float  # gripper opening, px
    jaw: float  # jaw size, px
    quality: float
    position: tuple[float, float, float] | None = None  # (x, y, z) m, camera optical frame
    opening_m: float | None = None
    jaw_m: float | None = None

    def rect(self) -> np.ndarray:
        """The grasp rectangle [4, 2] (row, col) in frame pixels."""
        return grasp.grasp_to_rect(
            np.asarray(self.centre, np.float64), self.angle, self.opening, self.jaw
        )

    def to_dict(self) -> dict:
        """JSON-ready dict (floats rounded to what a robot can use)."""
        d = {
            "centre": [round(float(v), 2) for v in self.centre],
            "angle": round(float(self.angle), 4),
            "opening": round(float(self.opening), 2),
            "jaw": round(float(self.jaw), 2),
            "quality": round(float(self.quality), 4),
        }
        if self.position is not None:
            d["position"] = [round(float(v), 4) for v in self.position]
            d["opening_m"] = round(float(self.opening_m), 4)
            d["jaw_m"] = round(float(self.jaw_m), 4)
        return d


@dataclasses.dataclass
class Detection:
    """Everything one `GraspDetector.analyse` call produced.

    grasps: best first (empty: no grasp). status: "ok", "no grasp" (no quality peak above the
    threshold) or "no valid depth" (the region holds no depth reading at all). roi: (top, left,
    size) in frame pixels. timings: milliseconds per stage. maps: with ``maps=True``, the
    network-sized (q, angle, width) maps [N, N] and the inpainted depth region [N, N].
    """

    grasps: list[Grasp]
    status: str
    roi: tuple[int, int, int]
    timings: dict
    maps: dict | None = None

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "grasps": [g.to_dict() for g in self.grasps],
            "roi": list(self.roi),
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
        }
