"""Frame sources: replayed files (`FolderSource`, `NpzSource`) or a camera topic (`RosSource`).

A replay source is an iterable of `Frame` with ``paced`` and ``fps``: it runs as fast as the
detector takes frames (nothing dropped) unless paced with ``fps``, which makes it behave like a
camera. A frame that cannot be read or converted becomes an error frame (``Frame.error``), which
the loop reports and counts; the replay goes on.
"""

from __future__ import annotations

import pathlib
import re
import sys
from collections.abc import Iterator

import numpy as np

from dal_jax.data import preprocess
from dal_jax.robot.frames import (
    DEPTH_PNG_MODES,
    DEPTH_SUFFIXES,
    Frame,
    WarnOnce,
    as_depth_metres,
    read_depth,
)
from dal_jax.robot.ros import RosSource


class FolderSource:
    """Depth files of a folder in name order (.tiff/.tif float metres, 16-bit .png millimetres,
    .npy). 8-bit / colour PNGs (e.g. Cornell's ``pcdXXXXr.png``) are not depth and are
    skipped; an RGB image is attached when the naming pairs one (`paired_rgb_path`: a
    recording's ``frame_000000_rgb.png``, Jacquard's ``..._RGB.png``, Cornell's
    ``pcdXXXXr.png``). ``fps``: pace the replay like a camera (frames may then be dropped).
    ``depth_scale``: metres per stored unit (default: decided per file, `frames.read_depth`).
    An unreadable file becomes an error frame (reported and counted by the loop)."""

    def __init__(self, folder, fps: float | None = None, depth_scale: float | None = None):
        self.folder = pathlib.Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"frame folder {self.folder} does not exist")
        self.fps = fps
        self.depth_scale = depth_scale
        self._warn_once = WarnOnce()
        self.files = [
            p
            for p in sorted(self.folder.iterdir())
            if p.suffix.lower() in DEPTH_SUFFIXES and not _is_colour_png(p) and not _is_rgb_pair(p)
        ]
        if not self.files:
            raise ValueError(f"no depth files ({', '.join(DEPTH_SUFFIXES)}) in {self.folder}")
        self.paced = fps is not None

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self.files):
            try:
                depth = self._warn_once(read_depth, p, self.depth_scale)
                rgb = _paired_rgb(p)
            except (OSError, ValueError) as e:
                print(f"skipping {p}: {e}", file=sys.stderr)
                yield Frame(None, name=p.name, index=i, error=str(e))
                continue
            yield Frame(depth, rgb, None, p.name, i)


#: Depth file name -> its RGB image's name: a recording (`dal_jax.robot.record`), Jacquard,
#: Cornell. The first pattern whose image exists wins.
RGB_PAIRS = (
    (re.compile(r"^(.*)_depth\.tiff?$"), r"\1_rgb.png"),
    (re.compile(r"^(.*_)(?:perfect|stereo)_depth\.tiff?$"), r"\1RGB.png"),
    (re.compile(r"^(.*)d\.tiff?$"), r"\1r.png"),
)


def paired_rgb_path(depth_path) -> pathlib.Path | None:
    """The RGB image beside a depth file by the naming of `RGB_PAIRS`, or None."""
    depth_path = pathlib.Path(depth_path)
    for pattern, repl in RGB_PAIRS:
        if pattern.match(depth_path.name):
            rgb = depth_path.with_name(pattern.sub(repl, depth_path.name))
            if rgb.is_file():
                return rgb
    return None


def _paired_rgb(depth_path: pathlib.Path) -> np.ndarray | None:
    """The [H, W, 3] uint8 image paired with a depth file (`paired_rgb_path`), or None;
    ValueError naming the image when it cannot be read."""
    rgb = paired_rgb_path(depth_path)
    if rgb is None:
        return None
    try:
        return preprocess.read_rgb(rgb)
    except OSError as e:
        raise ValueError(f"cannot read {rgb.name}: {e}") from e


def _is_rgb_pair(path: pathlib.Path) -> bool:
    """Cornell's ``pcdXXXXr.png`` next to ``pcdXXXXd.tiff``: the frame's RGB, never a frame."""
    m = re.match(r"^(.*)r\.png$", path.name)
    return bool(m) and any((path.parent / f"{m.group(1)}d{s}").is_file() for s in (".tiff", ".tif"))


def _is_colour_png(path: pathlib.Path) -> bool:
    if path.suffix.lower() != ".png":
        return False
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode not in DEPTH_PNG_MODES
    except OSError:
        return False  # unreadable: let the reader report it


class NpzSource:
    """Frames of an .npz sequence: ``depth`` [T, H, W] (float metres or integer mm), optional
    ``rgb`` [T, H, W, 3] and ``stamp`` [T] seconds. ``fps``: pace the replay. ``depth_scale``:
    metres per stored unit (default: decided per frame, `frames.as_depth_metres`)."""

    def __init__(self, path, fps: float | None = None, depth_scale: float | None = None):
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"frame sequence {self.path} does not exist")
        try:
            with np.load(self.path, allow_pickle=False) as z:
                self.arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read frame sequence {self.path}: {e}") from e
        depth = self.arrays.get("depth")
        if depth is None or depth.ndim not in (3, 4):
            raise ValueError(f"{self.path} must hold an array 'depth' [T, H, W]")
        self.fps = fps
        self.paced = fps is not None
        self.depth_scale = depth_scale
        self._warn_once = WarnOnce()

    def __iter__(self) -> Iterator[Frame]:
        depth = self.arrays["depth"]
        rgb, stamp = self.arrays.get("rgb"), self.arrays.get("stamp")
        for i in range(len(depth)):
            name = f"{self.path.name}[{i}]"
            stamp_i = None if stamp is None else float(stamp[i])
            try:
                d = self._warn_once(as_depth_metres, depth[i], self.depth_scale, name)
            except ValueError as e:
                print(f"skipping {name}: {e}", file=sys.stderr)
                yield Frame(None, None, stamp_i, name, i, error=str(e))
                continue
            yield Frame(d, None if rgb is None else rgb[i], stamp_i, name, i)


def make_source(spec: str, fps: float | None = None, depth_scale: float | None = None):
    """``folder:DIR`` | ``npz:FILE`` | ``ros:/topic`` -> a source."""
    kind, _, arg = spec.partition(":")
    if kind == "folder" and arg:
        return FolderSource(arg, fps, depth_scale)
    if kind == "npz" and arg:
        return NpzSource(arg, fps, depth_scale)
    if kind == "ros" and arg:
        return RosSource(arg, depth_scale=depth_scale)
    raise ValueError(f"--source must be folder:DIR, npz:FILE or ros:/topic; got {spec!r}")
