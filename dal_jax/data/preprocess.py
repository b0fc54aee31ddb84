"""Depth and image pre-processing shared by the dataset builders and the robot-side inference.

Only NumPy, OpenCV and Pillow (tifffile as a fallback reader): this module must stay importable
without TensorFlow / TFDS / PyTorch, because `dal_jax.robot` runs on the robot computer.
Depth images are [H, W] float32 metres (missing = 0, negative or non-finite); RGB [H, W, 3] uint8.

Depth units of a raw frame (`depth_to_metres`, used wherever raw depth enters: depth files, the
robot's frame sources, the dataset readers) are decided from the STORED dtype and values, before
any cast:

* an explicit ``depth_scale`` (metres per stored unit; ``--depth_scale`` in the CLIs) wins;
* integer dtypes (16-bit PNG/TIFF, the Kinect's 16UC1) are millimetres;
* floating dtypes are metres, unless the median of the valid (> 0, finite) pixels is above
  `MM_FLOAT_MEDIAN` (20): then they are millimetres, with a `DepthUnitsWarning`;
* the result is refused (ValueError naming the frame) when its valid median is outside
  [`MIN_MEDIAN_M`, `MAX_MEDIAN_M`] = [0.05, 20] m, and, for files, when no pixel is valid.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from PIL import Image

#: A float depth frame whose valid median exceeds this is in millimetres, not metres.
MM_FLOAT_MEDIAN = 20.0
#: Plausible range of the median valid depth, metres (anything else is refused).
MIN_MEDIAN_M = 0.05
MAX_MEDIAN_M = 20.0


class DepthUnitsWarning(UserWarning):
    """A depth frame's units were inferred from its values (float millimetres)."""


def missing_mask(depth: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels without a depth reading (0, negative - Jacquard's -1 - or NaN/inf)."""
    d = np.asarray(depth)
    return ~np.isfinite(d) | (d <= 0)


def inpaint(depth: np.ndarray) -> np.ndarray:
    """Fills missing depth ([H, W]; 0, negative (Jacquard's -1) or non-finite) by OpenCV's
    Navier-Stokes inpainting, radius 1, on a 1-pixel reflected border with values scaled to
    [0, 1] first - the reference pre-processing. Returns float32 [H, W]."""
    d = np.asarray(depth, np.float32).copy()
    missing = missing_mask(d)
    if not missing.any():
        return d
    d[missing] = 0
    scale = float(np.abs(d).max())
    if scale == 0:  # nothing to inpaint from
        return d
    d = cv2.copyMakeBorder(d, 1, 1, 1, 1, cv2.BORDER_DEFAULT)
    mask = cv2.copyMakeBorder(missing.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_DEFAULT)
    out = cv2.inpaint(d / scale, mask, 1, cv2.INPAINT_NS)
    return (out[1:-1, 1:-1] * scale).astype(np.float32)


def crop_origin(rects: np.ndarray, shape, size: int) -> tuple[int, int]:
    """Top-left (row, col) of the ``size`` square crop centred on the mean of all rectangle
    corners ([G, 4, 2]), truncated to whole pixels and clamped inside the ``shape`` frame."""
    centre = np.mean(rects.reshape(-1, 2), axis=0).astype(np.int64)
    top = int(max(0, min(centre[0] - size // 2, shape[0] - size)))
    left = int(max(0, min(centre[1] - size // 2, shape[1] - size)))
    return top, left


def centre_origin(shape, size: int) -> tuple[int, int]:
    """Top-left (row, col) of the centred ``size`` square crop of a ``shape`` (H, W) frame."""
    return max(0, (shape[0] - size) // 2), max(0, (shape[1] - size) // 2)


def read_rgb(path) -> np.ndarray:
    """An image file -> [H, W, 3] uint8."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_tiff_raw(path) -> np.ndarray:
    """A single-channel TIFF -> its stored array [H, W] (dtype as stored: float32, uint16, ...).
    Pillow first: it decodes the LZW compression of the Jacquard files, which tifffile can only
    do with `imagecodecs`. Raises ValueError naming the file when it is truncated, empty or not
    a single-channel image."""
    # A damaged file makes the readers warn (and tifffile log) before they fail or return an
    # empty array; the ValueError below says it once, naming the file.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                a = np.asarray(im)
    except OSError as pil_error:
        import logging

        import tifffile  # only needed for TIFF variants Pillow cannot open

        log = logging.getLogger("tifffile")
        level = log.level
        log.setLevel(logging.ERROR + 1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = np.asarray(tifffile.imread(str(path)))
        except Exception as e:  # tifffile raises many kinds on a damaged file
            raise ValueError(f"{path}: truncated or not a TIFF image ({pil_error}; {e})") from e
        finally:
            log.setLevel(level)
        if a.size == 0:
            raise ValueError(f"{path}: truncated or not a TIFF image ({pil_error})")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2 or a.size == 0:
        raise ValueError(
            f"{path}: not a single-channel depth image (decoded shape {a.shape}, {a.dtype})"
        )
    return a


def read_tiff(path, depth_scale: float | None = None) -> np.ndarray:
    """A single-channel depth TIFF -> [H, W] float32 metres: float metres, 16-bit millimetres
    or float millimetres, decided from the stored dtype and values (see `depth_to_metres`);
    ``depth_scale`` (metres per stored unit) overrides the rule. Raises ValueError naming the
    file when it is unreadable, holds no valid pixel or an implausible depth range."""
    return depth_to_metres(read_tiff_raw(path), depth_scale, name=str(path), allow_empty=False)


def _valid_median(d: np.ndarray) -> float | None:
    """Median of the valid (> 0, finite) values, from every 4th row and column of a large frame
    (the decision needs the order of magnitude, not the exact median); None if none is valid."""
    sub = d[::4, ::4] if d.ndim == 2 and d.size > 40_000 else d
    for a in (sub, d) if sub is not d else (d,):
        v = a[a > 0] if a.dtype.kind in "iu" else a[np.isfinite(a) & (a > 0)]
        if v.size:
            return float(np.median(v))
    return None


def depth_to_metres(
    raw,
    depth_scale: float | None = None,
    name: str = "depth frame",
    allow_empty: bool = True,
) -> np.ndarray:
    """A raw depth array (as stored) -> float32 metres, units decided before any cast.

    ``depth_scale``: metres per stored unit (e.g. 0.001 for millimetres), overriding the rule
    of the module docstring. ``allow_empty``: a frame without any valid pixel is returned as
    is (a camera frame can be all holes); False refuses it (a file). ``name`` goes into the
    messages. Raises ValueError for a non-numeric dtype, an 8-bit frame (a picture, not depth)
    without ``depth_scale`` and an implausible depth range.
    """
    d = np.asarray(raw)
    kind = d.dtype.kind
    if kind not in "fiu":
        raise ValueError(
            f"{name}: dtype {d.dtype} is not depth (float metres or integer millimetres)"
        )
    median = _valid_median(d)
    warn = None
    if depth_scale is not None:
        scale = float(depth_scale)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"--depth_scale must be a positive number; got {depth_scale!r}")
        unit = f"units of {scale:g} m"
    elif kind in "iu":
        if d.dtype.itemsize == 1:
            raise ValueError(
                f"{name}: an 8-bit image is not a depth frame (expected 16-bit millimetres or "
                "float metres); pass --depth_scale (metres per stored unit) if it really is"
            )
        scale, unit = 0.001, "mm (integer)"
    elif median is not None and median > MM_FLOAT_MEDIAN:
        scale, unit = 0.001, "mm (float)"
        warn = (
            f"{name}: float depth with a median of {median:.4g} is taken as millimetres "
            f"(above {MM_FLOAT_MEDIAN:g}, so not metres); pass --depth_scale=METRES_PER_UNIT "
            "if that is wrong"
        )
    else:
        scale, unit = 1.0, "m (float)"
    if median is None:
        if not allow_empty:
            raise ValueError(f"{name}: no valid depth pixel (all are 0, negative or NaN)")
    else:
        metres = median * scale
        if not MIN_MEDIAN_M <= metres <= MAX_MEDIAN_M:
            hint = (
                "check --depth_scale"
                if depth_scale is not None
                else "pass --depth_scale=METRES_PER_UNIT if the units are not " + unit
            )
            raise ValueError(
                f"{name}: implausible depth: the median valid pixel {median:.4g} read as {unit} "
                f"is {metres:.4g} m, outside {MIN_MEDIAN_M:g}..{MAX_MEDIAN_M:g} m; {hint}"
            )
    if warn:
        warnings.warn(warn, DepthUnitsWarning, stacklevel=2)
    if scale == 1.0:
        return d.astype(np.float32, copy=False)
    return d.astype(np.float32) * np.float32(scale)


def resize_depth(depth: np.ndarray, size) -> np.ndarray:
    """Area-resizes depth [H, W] to [size, size] (or [rows, cols] for a pair ``size``),
    averaging only valid (> 0, finite) pixels so missing values (0, -1, NaN) do not leak into
    their neighbours; an output pixel that is mostly missing stays missing (0) for the
    inpainting."""
    rows, cols = (size, size) if np.ndim(size) == 0 else size
    valid = (np.isfinite(depth) & (depth > 0)).astype(np.float32)
    d = np.where(valid > 0, depth, 0).astype(np.float32)
    s = cv2.resize(d, (int(cols), int(rows)), interpolation=cv2.INTER_AREA)
    v = cv2.resize(valid, (int(cols), int(rows)), interpolation=cv2.INTER_AREA)
    return np.where(v >= 0.5, s / np.maximum(v, 1e-6), 0).astype(np.float32)


def normalise_depth(depth: np.ndarray) -> np.ndarray:
    """Depth crop [H, W] metres -> network input [H, W]: minus its mean, clipped to [-1, 1]."""
    d = np.asarray(depth, np.float32)
    return np.clip(d - d.mean(), -1.0, 1.0)


def normalise_rgb(rgb: np.ndarray) -> np.ndarray:
    """RGB crop [H, W, 3] uint8 -> [H, W, 3] float32: / 255 minus the mean of all values."""
    x = np.asarray(rgb, np.float32) / 255.0
    return x - x.mean()
