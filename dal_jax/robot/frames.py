"""Depth frames in: the `Frame` record, and files and arrays turned into [H, W] float32 metres.

Depth units are decided from the stored dtype and values before any cast
(`dal_jax.data.preprocess.depth_to_metres`): integer dtypes are millimetres (the Kinect's 16UC1
images), floats metres unless their valid median is above 20 (then millimetres, with a
`preprocess.DepthUnitsWarning`); implausible ranges are refused. A ``depth_scale`` (metres per
stored unit) overrides that rule.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import warnings

import numpy as np

from dal_jax.data import preprocess

#: The depth files `read_depth` reads.
DEPTH_SUFFIXES = (".tiff", ".tif", ".png", ".npy")
#: Pillow modes of 16-bit (millimetre) PNGs; any other PNG is a colour or 8-bit image.
DEPTH_PNG_MODES = ("I;16", "I;16B", "I;16L", "I")


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


def as_depth_metres(
    depth, depth_scale: float | None = None, name: str = "depth frame", allow_empty: bool = True
) -> np.ndarray:
    """Validates a depth frame and returns it as [H, W] float32 metres.

    Accepts [H, W] or [H, W, 1], float or integer (units: see the module doc). A frame without
    any valid pixel passes (the detector answers "no valid depth") unless ``allow_empty=False``.
    Raises ValueError with the reason (naming ``name``) for anything else.
    """
    if depth is None:
        raise ValueError(f"{name} is None")
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise ValueError(f"{name} must be [H, W] (or [H, W, 1]); got shape {d.shape}")
    if d.size == 0:
        raise ValueError(f"{name} is empty (shape {d.shape})")
    if d.dtype.kind not in "fiu":
        raise ValueError(
            f"{name} dtype must be float (metres) or integer (millimetres); got {d.dtype}"
        )
    return preprocess.depth_to_metres(d, depth_scale, name=name, allow_empty=allow_empty)


def read_depth(path, depth_scale: float | None = None, allow_empty: bool = False) -> np.ndarray:
    """A depth file -> [H, W] float32 metres: .tiff/.tif, .png (16-bit) or .npy.

    Units as `as_depth_metres` decides them unless ``depth_scale`` (metres per stored unit) is
    given. FileNotFoundError when the file is missing; ValueError naming the file for anything
    unreadable, a file without any valid pixel (unless ``allow_empty``) or an implausible depth
    range.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth file {path} does not exist")
    try:
        d = _read_raw(path)
    except (OSError, ValueError, EOFError) as e:
        msg = str(e) or type(e).__name__
        if isinstance(e, EOFError):
            msg = f"the file is empty or truncated ({msg})"
        if msg.startswith(str(path)):  # the TIFF reader names the file itself
            raise ValueError(f"cannot read depth file {msg}") from e
        raise ValueError(f"cannot read depth file {path}: {msg}") from e
    return as_depth_metres(d, depth_scale, name=f"depth file {path}", allow_empty=allow_empty)


def _read_raw(path: pathlib.Path) -> np.ndarray:
    """The stored array of a depth file, dtype untouched (the units rule needs it)."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return preprocess.read_tiff_raw(path)
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            if im.mode not in DEPTH_PNG_MODES:
                raise ValueError(f"PNG mode {im.mode} is not a 16-bit depth image (millimetres)")
            return np.asarray(im).astype(np.uint16)
    raise ValueError(f"unknown depth file type {suffix!r} (.tiff, .png or .npy)")


def resize_area(img: np.ndarray, n: int) -> np.ndarray:
    """Area-resizes an image [h, w, ...] to [n, n, ...]."""
    import cv2

    return cv2.resize(np.ascontiguousarray(img), (n, n), interpolation=cv2.INTER_AREA)
