"""Depth frame files in: which files of a folder are depth frames, their RGB images, and files
and arrays turned into [H, W] float32 metres.

Shared by the ``frames`` dataset builder and the robot side (its replay sources and the one-frame
CLI), so both read a folder the same way; NumPy, OpenCV and Pillow only.

Depth units are decided from the stored dtype and values before any cast
(`dal_jax.data.preprocess.depth_to_metres`): integer dtypes are millimetres (the Kinect's 16UC1
images), floats metres unless their valid median is above 20 (then millimetres, with a
`preprocess.DepthUnitsWarning`); implausible ranges are refused. A ``depth_scale`` (metres per
stored unit) overrides that rule.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np

from dal_jax.data import preprocess

#: The depth files `read_depth` reads.
DEPTH_SUFFIXES = (".tiff", ".tif", ".png", ".npy")
#: Pillow modes of 16-bit (millimetre) PNGs; any other PNG is a colour or 8-bit image.
DEPTH_PNG_MODES = ("I;16", "I;16B", "I;16L", "I")

#: Depth file name -> its RGB image's name: a recording (`dal_jax.robot.record`), Jacquard,
#: Cornell. The first pattern whose image exists wins.
RGB_PAIRS = (
    (re.compile(r"^(.*)_depth\.tiff?$"), r"\1_rgb.png"),
    (re.compile(r"^(.*_)(?:perfect|stereo)_depth\.tiff?$"), r"\1RGB.png"),
    (re.compile(r"^(.*)d\.tiff?$"), r"\1r.png"),
)


def depth_files(folder) -> list[pathlib.Path]:
    """The depth frames of a folder in name order (empty when it holds none): files with a
    depth suffix, without 8-bit / colour PNGs and the RGB images paired with a depth file
    (e.g. Cornell's ``pcdXXXXr.png``), which are not depth."""
    return [
        p
        for p in sorted(pathlib.Path(folder).iterdir())
        if p.suffix.lower() in DEPTH_SUFFIXES and not is_colour_png(p) and not is_rgb_pair(p)
    ]


def paired_rgb_path(depth_path) -> pathlib.Path | None:
    """The RGB image beside a depth file by the naming of `RGB_PAIRS`, or None."""
    depth_path = pathlib.Path(depth_path)
    for pattern, repl in RGB_PAIRS:
        if pattern.match(depth_path.name):
            rgb = depth_path.with_name(pattern.sub(repl, depth_path.name))
            if rgb.is_file():
                return rgb
    return None


def read_paired_rgb(depth_path) -> np.ndarray | None:
    """The [H, W, 3] uint8 image paired with a depth file (`paired_rgb_path`), or None;
    ValueError naming the image when it cannot be read."""
    rgb = paired_rgb_path(depth_path)
    if rgb is None:
        return None
    try:
        return preprocess.read_rgb(rgb)
    except OSError as e:
        raise ValueError(f"cannot read {rgb.name}: {e}") from e


def is_rgb_pair(path: pathlib.Path) -> bool:
    """Whether ``path`` is Cornell's ``pcdXXXXr.png`` next to ``pcdXXXXd.tiff``: the frame's
    RGB, never a frame."""
    m = re.match(r"^(.*)r\.png$", path.name)
    return bool(m) and any((path.parent / f"{m.group(1)}d{s}").is_file() for s in (".tiff", ".tif"))


def is_colour_png(path: pathlib.Path) -> bool:
    """Whether ``path`` is a PNG that is not 16-bit (a colour or 8-bit image, not depth); an
    unreadable PNG is not, so that the depth reader reports why it cannot be read."""
    if path.suffix.lower() != ".png":
        return False
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode not in DEPTH_PNG_MODES
    except OSError:
        return False


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
