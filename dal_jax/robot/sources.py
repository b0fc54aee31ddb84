"""Frame sources: replayed files (`FolderSource`, `NpzSource`) or a camera topic (`RosSource`).

A replay source is an iterable of `Frame` with ``paced`` and ``fps``: it runs as fast as the
detector takes frames (nothing dropped) unless paced with ``fps``, which makes it behave like a
camera. A frame that cannot be read or converted becomes an error frame (``Frame.error``), which
the loop reports and counts; the replay goes on.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterator

import numpy as np

from dal_jax.data.frames import (
    DEPTH_SUFFIXES,
    as_depth_metres,
    depth_files,
    read_depth,
    read_paired_rgb,
)
from dal_jax.robot.frames import Frame, WarnOnce
from dal_jax.robot.ros import RosSource


class FolderSource:
    """Depth files of a folder in name order (.tiff/.tif float metres, 16-bit .png millimetres,
    .npy; `dal_jax.data.frames.depth_files`). 8-bit / colour PNGs (e.g. Cornell's
    ``pcdXXXXr.png``) are not depth and are skipped; an RGB image is attached when the naming
    pairs one (`dal_jax.data.frames.paired_rgb_path`: a recording's ``frame_000000_rgb.png``,
    Jacquard's ``..._RGB.png``, Cornell's ``pcdXXXXr.png``). ``fps``: pace the replay like a
    camera (frames may then be dropped). ``depth_scale``: metres per stored unit (default:
    decided per file, `dal_jax.data.frames.read_depth`).
    An unreadable file becomes an error frame (reported and counted by the loop)."""

    def __init__(self, folder, fps: float | None = None, depth_scale: float | None = None):
        self.folder = pathlib.Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"frame folder {self.folder} does not exist")
        self.fps = fps
        self.depth_scale = depth_scale
        self._warn_once = WarnOnce()
        self.files = depth_files(self.folder)
        if not self.files:
            raise ValueError(f"no depth files ({', '.join(DEPTH_SUFFIXES)}) in {self.folder}")
        self.paced = fps is not None

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self.files):
            try:
                depth = self._warn_once(read_depth, p, self.depth_scale)
                rgb = read_paired_rgb(p)
            except (OSError, ValueError) as e:
                print(f"skipping {p}: {e}", file=sys.stderr)
                yield Frame(None, name=p.name, index=i, error=str(e))
                continue
            yield Frame(depth, rgb, None, p.name, i, metres=True)


class NpzSource:
    """Frames of an .npz sequence: ``depth`` [T, H, W] (float metres or integer mm), optional
    ``rgb`` [T, H, W, 3] and ``stamp`` [T] seconds. ``fps``: pace the replay. ``depth_scale``:
    metres per stored unit (default: decided per frame, `dal_jax.data.frames.as_depth_metres`)."""

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
            yield Frame(d, None if rgb is None else rgb[i], stamp_i, name, i, metres=True)


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
