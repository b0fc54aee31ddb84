"""The robot's frame record `Frame`, the once-per-source units warning and the network-input
resize. Reading depth files and arrays into metres is shared with the dataset builders:
`dal_jax.data.frames`.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings

import numpy as np

from dal_jax.data import preprocess


@dataclasses.dataclass
class Frame:
    """One camera frame: depth [H, W] (float metres or integer millimetres, holes 0 / NaN),
    optional rgb [H, W, 3] uint8, a stamp (seconds) and a name for the logs. ``error``: why the
    source could not produce the frame (unreadable file, implausible depth); then ``depth`` is
    None and the loop reports the error instead of detecting."""

    depth: np.ndarray | None
    rgb: np.ndarray | None = None
    stamp: float | None = None
    name: str = ""
    index: int = 0
    arrived: float = 0.0  # time.perf_counter() when it entered the slot
    error: str | None = None
    # True: ``depth`` is float32 metres from `dal_jax.data.frames.as_depth_metres` (the built-in
    # sources convert every frame), so the detector does not convert it a second time.
    metres: bool = False


class WarnOnce:
    """Runs a depth conversion, printing its units warning (float millimetres) once per source
    instead of once per frame."""

    def __init__(self):
        self._warned = False

    def __call__(self, fn, *args):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", preprocess.DepthUnitsWarning)
            out = fn(*args)
        if caught and not self._warned:
            self._warned = True
            print(f"warning: {caught[0].message} (said once for this source)", file=sys.stderr)
        return out


def resize_area(img: np.ndarray, n: int) -> np.ndarray:
    """Area-resizes an image [h, w, ...] to [n, n, ...]."""
    import cv2

    return cv2.resize(np.ascontiguousarray(img), (n, n), interpolation=cv2.INTER_AREA)
