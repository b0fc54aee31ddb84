"""Torch-free grasp detection on raw camera frames: depth frame in, grasps in frame pixels out.

Pipeline of `GraspDetector.detect` for a depth frame [H, W] (metres; holes 0 or NaN):

1. Region: a square ``roi = (top, left, size)`` of the frame (default: the centred square of
   side ``min(N, H, W)``, N = the network's input size, 300 for models trained on real data).
   If ``size != N`` the region is area-resized to N x N, holes kept as holes.
2. Inpainting (OpenCV Navier-Stokes, as the training data was made) only when the region has
   holes; then normalisation as GG-CNN's reference code does it: minus the mean, clipped to
   [-1, 1].
3. One compiled program (`dal_jax.robot.network`): GG-CNN, the quality blur, the peak search
   and the angle / width at the peaks. Shapes are fixed (N x N, top_k), so it compiles once,
   at load (warm-up).
4. Grasps mapped back to frame pixels (centre, opening and jaw scaled by size / N) and, with
   camera intrinsics, to the camera frame in metres (`dal_jax.robot.camera`).
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax.data import preprocess
from dal_jax.data.frames import as_depth_metres
from dal_jax.evaluation import postprocess
from dal_jax.model import models
from dal_jax.robot import camera, frames, network, weights
from dal_jax.robot.results import Detection, Grasp

#: Most grasps one call may ask for: the program is compiled per top_k and its peak search
#: grows with it (top_k=1000 compiles for minutes); a frame never has that many useful peaks.
MAX_TOP_K = 100


class GraspDetector:
    """A trained GG-CNN and its pre/post-processing for raw frames.

    Args:
      params: GG-CNN parameter pytree (one seed; `dal_jax.model.checkpoint.load_ggcnn`).
      image_size: the network's input side N (the training crop; a multiple of 12).
      in_channels: 1 (depth) or 4 (RGB-D).
      intrinsics: default camera (fx, fy, cx, cy) in pixels, or None.
      meta: the checkpoint's metadata (kept for reference), seed: the seed index loaded.
      warmup: compile the program now (takes a few seconds) rather than on the first frame.
      input_scale: the factor the model multiplies its input by (the checkpoint's
        ``input_scale``; 1 for checkpoints written before it was recorded and for converted
        PyTorch weights).
    """

    def __init__(
        self,
        params,
        image_size: int = 300,
        in_channels: int = 1,
        intrinsics=None,
        meta: dict | None = None,
        seed: int | None = None,
        warmup: bool = True,
        input_scale: float = 1.0,
    ):
        self.image_size = int(image_size)
        self.input_scale = float(input_scale)
        if not (math.isfinite(self.input_scale) and self.input_scale > 0):
            raise ValueError(f"input_scale must be a positive number; got {input_scale!r}")
        self.in_channels = int(in_channels)
        if self.in_channels not in (1, 4):
            raise ValueError(f"in_channels must be 1 (depth) or 4 (RGB-D); got {in_channels}")
        models.check_input(
            np.zeros((self.image_size, self.image_size, self.in_channels)), self.in_channels
        )
        self.params = jax.device_put(jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params))
        self.intrinsics = camera.parse_intrinsics(intrinsics)
        self.meta = dict(meta or {})
        self.seed = seed
        if warmup:
            self.warmup()

    @classmethod
    def from_checkpoint(
        cls, path, seed: int | None = None, round_index: int | None = None, **kwargs
    ) -> GraspDetector:
        """Loads a checkpoint written by experiments.main (a run's workdir or its checkpoints
        folder; the latest round unless ``round_index``; the seed with the best recorded test
        accuracy unless ``seed``) or by `dal_jax.model.convert_torch`. Raises FileNotFoundError /
        ValueError naming the path when it is missing or unreadable. ``kwargs`` go to the
        constructor (intrinsics, warmup)."""
        w = weights.load(path, seed=seed, round_index=round_index)
        return cls(
            w.params,
            image_size=w.image_size,
            in_channels=w.in_channels,
            input_scale=w.input_scale,
            meta=w.meta,
            seed=w.seed,
            **kwargs,
        )

    def warmup(self, top_k: int = 1):
        """Compiles the program for ``top_k`` (shapes never change afterwards)."""
        n = self.image_size
        # Same argument kinds as `analyse` (host array, explicit keywords), or jit would
        # trace a second program on the first real frame.
        x = np.zeros((n, n, self.in_channels), np.float32)
        jax.block_until_ready(
            network.run_network(
                self.params, x, top_k=top_k, with_maps=False, input_scale=self.input_scale
            )
        )

    # ------------------------------------------------------------------------- frames
    def _inputs(self, depth, rgb, roi):
        """-> (inpainted depth [N, N], network input [N, N, C], roi (top, left, size)); the
        first two are None when the region has no valid depth."""
        if min(depth.shape) < models.SIZE_MULTIPLE:
            raise ValueError(f"depth frame {depth.shape} is too small (under 12 px a side)")
        top, left, size = region(depth.shape, roi, self.image_size)
        raw = depth[top : top + size, left : left + size]
        n = self.image_size
        missing = preprocess.missing_mask(raw)
        if missing.all():
            return None, None, (top, left, size)
        d = raw if size == n else preprocess.resize_depth(raw, n)
        # Inpainting is the costliest step: skip it on hole-free regions.
        filled = preprocess.inpaint(d) if (size != n or missing.any()) else d
        if not np.isfinite(filled).all():  # cannot happen after inpaint; guard the network
            return None, None, (top, left, size)
        x = preprocess.normalise_depth(filled)[..., None]
        if self.in_channels == 4:
            x = np.concatenate([x, rgb_input(rgb, depth.shape, (top, left, size), n)], axis=-1)
        return filled, np.ascontiguousarray(x, np.float32), (top, left, size)

    # ------------------------------------------------------------------------- grasps
    def analyse(
        self,
        depth,
        rgb=None,
        roi=None,
        top_k: int = 1,
        intrinsics=None,
        maps: bool = False,
        metres: bool = False,
    ) -> Detection:
        """Detects grasps in one frame and reports how (see `detect` for the arguments).

        Returns a `Detection`; with ``maps=True`` it also holds the q / angle / width maps
        (postprocess.postprocess of the network output, [N, N]) and the inpainted region.
        ``metres``: ``depth`` is already [H, W] float32 metres checked by `as_depth_metres`, as
        every source's frames are, so the units rule is not applied a second time.
        """
        t0 = time.perf_counter()
        top_k = int(top_k)
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be in 1..{MAX_TOP_K}; got {top_k}")
        depth = depth if metres else as_depth_metres(depth)
        intr = camera.parse_intrinsics(intrinsics) if intrinsics is not None else self.intrinsics
        filled, x, roi = self._inputs(depth, rgb, roi)
        t1 = time.perf_counter()
        if x is None:
            timings = {"preprocess": (t1 - t0) * 1e3, "network": 0.0, "total": (t1 - t0) * 1e3}
            return Detection([], "no valid depth", roi, timings)
        out = jax.device_get(
            network.run_network(
                self.params, x, top_k=top_k, with_maps=maps, input_scale=self.input_scale
            )
        )
        t2 = time.perf_counter()
        grasps = self._grasps(out[:6], roi, depth, filled, intr)
        t3 = time.perf_counter()
        timings = {
            "preprocess": (t1 - t0) * 1e3,
            "network": (t2 - t1) * 1e3,
            "total": (t3 - t0) * 1e3,
        }
        det = Detection(grasps, "ok" if grasps else "no grasp", roi, timings)
        if maps:
            q, ang, wid = (np.asarray(m) for m in postprocess.postprocess(out[6]))
            det.maps = {"q": q, "angle": ang, "width": wid, "depth": filled}
        return det

    def _grasps(self, peaks, roi, depth, filled, intr) -> list[Grasp]:
        """The valid peaks of `network.run_network` (rows, cols, angle, opening, quality,
        valid; [k] each) as grasps in frame pixels, placed in the camera frame when ``intr``
        is given. depth: the raw frame [H, W] metres; filled: the inpainted region [N, N]."""
        rows, cols, angle, opening, quality, valid = peaks
        top, left, size = roi
        k = size / self.image_size
        grasps = []
        for i in np.flatnonzero(valid):
            # Pixel centres under the area resize: crop pixel r covers frame rows
            # [top + r*k, top + (r+1)*k), centre top + (r + 0.5)*k - 0.5 (= top + r for k = 1).
            centre = (top + (rows[i] + 0.5) * k - 0.5, left + (cols[i] + 0.5) * k - 0.5)
            g = Grasp(
                centre=(float(centre[0]), float(centre[1])),
                angle=float(angle[i]),
                opening=float(opening[i]) * k,
                jaw=float(opening[i]) * k / 2,
                quality=float(quality[i]),
            )
            if intr is not None:
                camera.place(g, depth, filled[rows[i], cols[i]], intr)
            grasps.append(g)
        return grasps

    def detect(self, depth, rgb=None, roi=None, top_k: int = 1, intrinsics=None) -> list[Grasp]:
        """Grasps in one raw frame, best first ([] when there is none).

        Args:
          depth: [H, W] (or [H, W, 1]) depth frame: float metres or integer millimetres, holes
            0 or NaN (e.g. 480x640 or the Kinect2's 424x512).
          rgb: [H, W, 3] uint8 registered to the depth frame (needed by RGB-D models only).
          roi: (top, left, size) square region in frame pixels; default the centred square of
            side min(N, H, W). Resized to the network's N x N when size != N.
          top_k: number of grasps (peaks at least 20 network px apart).
          intrinsics: (fx, fy, cx, cy) overriding the detector's; adds 3D positions.
        Returns:
          list of `Grasp` (length <= top_k) in ORIGINAL frame pixels.
        Raises:
          ValueError: wrong shape / dtype, empty frame, bad roi, RGB-D model without rgb. An
          all-NaN or all-zero region is not an error: it returns [] (status "no valid depth").
        """
        return self.analyse(depth, rgb, roi, top_k, intrinsics).grasps


def region(shape, roi, image_size: int) -> tuple[int, int, int]:
    """(top, left, size) of the square region of a frame of ``shape`` (H, W): ``roi`` checked,
    or the centred square of side min(image_size, H, W)."""
    h, w = shape
    if roi is None:
        size = min(image_size, h, w)
        return (*preprocess.centre_origin(shape, size), size)
    vals = [int(v) for v in roi]
    if len(vals) == 4:
        if vals[2] != vals[3]:
            raise ValueError(f"roi must be square (top, left, size); got {tuple(vals)}")
        vals = vals[:3]
    if len(vals) != 3:
        raise ValueError(f"roi must be (top, left, size); got {roi}")
    top, left, size = vals
    if size < models.SIZE_MULTIPLE or top < 0 or left < 0 or top + size > h or left + size > w:
        raise ValueError(f"roi (top, left, size) = {tuple(vals)} is not inside the {h}x{w} frame")
    return top, left, size


def rgb_input(rgb, shape, roi, image_size: int) -> np.ndarray:
    """The region's RGB channels [N, N, 3] float32 for an RGB-D model; ``rgb`` [H, W, 3]
    (or 4) must be registered to the depth frame of ``shape`` (H, W)."""
    if rgb is None:
        raise ValueError("this checkpoint is RGB-D (4 input channels): pass rgb=")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[:2] != shape or rgb.shape[2] not in (3, 4):
        raise ValueError(
            f"rgb must be [H, W, 3] registered to the {shape} depth frame; got shape {rgb.shape}"
        )
    top, left, size = roi
    im = rgb[top : top + size, left : left + size, :3]
    if size != image_size:
        im = frames.resize_area(im, image_size)
    return preprocess.normalise_rgb(im)
