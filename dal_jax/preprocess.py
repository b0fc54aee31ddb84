"""Depth and image pre-processing shared by the dataset builders and the robot-side inference.

Only NumPy, OpenCV and Pillow (tifffile as a fallback reader): this module must stay importable
without TensorFlow / TFDS / PyTorch, because `dal_jax.inference` runs on the robot computer.
Depth images are [H, W] float32 metres (missing = 0, negative or non-finite); RGB [H, W, 3] uint8.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


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


def read_tiff(path) -> np.ndarray:
    """A single-channel float TIFF -> [H, W] float32. Pillow first: it decodes the LZW
    compression of the Jacquard files, which tifffile can only do with `imagecodecs`."""
    try:
        with Image.open(path) as im:
            return np.asarray(im, np.float32)
    except OSError:
        import tifffile  # only needed for TIFF variants Pillow cannot open

        return np.asarray(tifffile.imread(str(path)), np.float32)


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
