"""Torch-free grasp detection on raw camera frames: depth frame in, grasps in frame pixels out.

This is the module the robot computer runs. It imports only NumPy, JAX, Flax, Orbax and OpenCV /
Pillow (through `dal_jax.preprocess`); never PyTorch, TensorFlow or TFDS.

Pipeline of `GraspDetector.detect` for a depth frame [H, W] (metres; holes 0 or NaN):

1. Region: a square ``roi = (top, left, size)`` of the frame (default: the centred square of
   side ``min(N, H, W)``, N = the network's input size, 300 for models trained on real data).
   If ``size != N`` the region is area-resized to N x N, holes kept as holes.
2. Inpainting (OpenCV Navier-Stokes, as the training data was made) only when the region has
   holes; then normalisation (minus the mean, clipped to [-1, 1]; SPEC section 4).
3. One compiled program: GG-CNN, the quality blur, the peak search and the angle / width at the
   peaks. Shapes are fixed (N x N, top_k), so it compiles once, at load (warm-up).
4. Grasps mapped back to frame pixels (centre, opening and jaw scaled by size / N) and, with
   camera intrinsics, to the camera frame in metres.

Post-processing versus the reference's (`dal_jax.postprocess`, SciPy-exact): the same peak
rules (``peak_mask``: 41x41 maximum filter, 20 px border, > 0.2; greedy spacing), but the
Gaussian blurs are the project's float32 blur (`postprocess.gaussian_blur` accumulating in
float32, the one the metric's fast top-1 uses) instead of SciPy's float64, and the angle / width
maps are blurred only in the window around each peak (`postprocess.blur_at`: the blurred value
at a pixel depends only on that window). The blurred maps then differ from the reference by
~1e-7 relative, which can only change the chosen peak between two pixels whose quality agrees
to ~7 digits; the float64 path would cost the robot's latency budget for no practical gain.

Output grasps: ``centre`` (row, col) and ``opening`` / ``jaw`` in frame pixels, ``angle`` in
radians in the image (counter-clockwise positive, image up; `dal_jax.grasp` conventions),
``quality`` the blurred quality at the peak. With intrinsics (fx, fy, cx, cy) each grasp also
carries ``position`` (x, y, z) metres in the camera's optical frame (x right, y down, z forward)
and ``opening_m`` / ``jaw_m``: the depth is the median of the valid raw depth in an 11 x 11
window around the centre (the inpainted value when none is valid), as GG-CNN's robot code takes
the depth at the grasp point.

CLI::

    python -m dal_jax.inference --checkpoint=DIR --depth=FILE [--rgb=FILE] [--json]
        [--png=OUT.png] [--top_k=N] [--roi=TOP,LEFT,SIZE] [--intrinsics=FX,FY,CX,CY]
        [--depth_scale=METRES_PER_UNIT]

Depth units are decided from the stored dtype and values before any cast (integer =
millimetres; float = metres, or millimetres with a warning when the median valid pixel is above
20; implausible ranges refused); ``--depth_scale`` overrides that. Bad input (a missing or
corrupt file or checkpoint, a bad flag) prints one ``error: ...`` line and exits with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import pathlib
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from dal_jax import grasp, models, postprocess, preprocess

DEPTH_WINDOW = 5  # half-size of the window the grasp's depth is taken from (11 x 11 px)
#: Most grasps one call may ask for: the program is compiled per top_k and its peak search
#: grows with it (top_k=1000 compiles for minutes); a frame never has that many useful peaks.
MAX_TOP_K = 100


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass
class Grasp:
    """One grasp in original frame pixels (and, with intrinsics, metres in the camera frame)."""

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


# ----------------------------------------------------------------------------- compiled part


@functools.partial(jax.jit, static_argnames=("top_k", "with_maps", "input_scale"))
def _run(params, x, top_k: int, with_maps: bool = False, input_scale: float = 1.0):
    """Network + post-processing of one normalised input x [N, N, C].

    Returns (rows, cols [k] int32, angle, opening, quality [k] float32, valid [k] bool) and,
    with ``with_maps``, the raw network maps [N, N, 4]. ``input_scale``: the model's (from
    the checkpoint's metadata).
    """
    model = models.GGCNN(fast=True, input_scale=input_scale)
    preds = model.apply({"params": params}, x[None])[0][0].astype(jnp.float32)
    # The project's float32 blur (the metric's fast path): float64 would cost latency, not peaks.
    q = postprocess.gaussian_blur(preds[..., 0], postprocess.Q_SIGMA, np.float32)
    d = postprocess.peak_distance(min(q.shape))
    rows, cols, valid = postprocess.top_peaks(q, postprocess.peak_mask(q, d), top_k, d)
    ang_map = postprocess.angle_map(preds)
    wid_map = postprocess.width_map(preds)

    def at_peak(r, c):
        return (
            postprocess.blur_at(ang_map, r, c, postprocess.ANGLE_SIGMA, np.float32),
            postprocess.blur_at(wid_map, r, c, postprocess.WIDTH_SIGMA, np.float32),
            q[r, c],
        )

    angle, opening, quality = jax.vmap(at_peak)(rows, cols)
    out = (rows, cols, angle, opening, quality, valid)
    return out + (preds,) if with_maps else out


# ----------------------------------------------------------------------------- detector


def _parse_intrinsics(intrinsics):
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


@functools.cache
def _ggcnn_shapes(in_channels: int) -> dict:
    """{parameter path: shape} of this code's GG-CNN (traced, not compiled)."""
    x = jax.ShapeDtypeStruct((1, 48, 48, in_channels), jnp.float32)
    want = jax.eval_shape(lambda x: models.GGCNN().init(jax.random.key(0), x), x)["params"]
    return {jax.tree_util.keystr(k): v.shape for k, v in jax.tree.leaves_with_path(want)}


def _check_ggcnn_shapes(params, in_channels: int, path) -> None:
    """ValueError naming ``path`` and the first differing parameter when ``params`` is not a
    GG-CNN of this code (a foreign or older architecture would fail inside Flax instead)."""
    want_flat = _ggcnn_shapes(in_channels)
    try:
        got_flat = {
            jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree.leaves_with_path(params)
        }
    except Exception as e:  # noqa: BLE001 - any non-tree is simply "not a GG-CNN"
        raise ValueError(f"checkpoint at {path} holds no GG-CNN parameters ({e})") from None
    for key in sorted(want_flat.keys() | got_flat.keys()):
        if want_flat.get(key) != got_flat.get(key):
            raise ValueError(
                f"checkpoint at {path}: its GG-CNN parameters do not match this code's GG-CNN "
                f"({key}: shape {got_flat.get(key)} in the checkpoint, {want_flat.get(key)} "
                "expected); was it written by another version or architecture?"
            )


def as_depth_metres(
    depth, depth_scale: float | None = None, name: str = "depth frame", allow_empty: bool = True
) -> np.ndarray:
    """Validates a depth frame and returns it as [H, W] float32 metres.

    Accepts [H, W] or [H, W, 1]. Units are decided from the stored dtype and values before any
    cast (`dal_jax.preprocess.depth_to_metres`): integer dtypes are millimetres (the Kinect's
    16UC1 images), floats metres unless their valid median is above 20 (then millimetres, with
    a warning); ``depth_scale`` (metres per stored unit) overrides that. A frame without any
    valid pixel passes (the detector answers "no valid depth") unless ``allow_empty=False``.
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


class GraspDetector:
    """A trained GG-CNN and its pre/post-processing for raw frames.

    Args:
      params: GG-CNN parameter pytree (one seed; `dal_jax.checkpoint.load_ggcnn`).
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
        self.intrinsics = _parse_intrinsics(intrinsics)
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
        accuracy unless ``seed``) or by `dal_jax.convert_torch`. Raises FileNotFoundError /
        ValueError naming the path when it is missing or unreadable. ``kwargs`` go to the
        constructor (intrinsics, warmup)."""
        from dal_jax import checkpoint  # Orbax is only needed here

        params, meta, seed = checkpoint.load_ggcnn(path, round_index=round_index, seed=seed)
        try:
            kernel = params["encoder"]["conv1"]["kernel"]  # [9, 9, C, 32]
        except (KeyError, TypeError) as e:
            raise ValueError(f"checkpoint at {path} holds no GG-CNN parameters ({e})") from e
        try:
            in_channels = int(meta.get("in_channels", np.shape(kernel)[2]))
            image_size = int(meta.get("image_size", 300))
            input_scale = float(meta.get("input_scale", 1.0))
        except (TypeError, ValueError) as e:
            raise ValueError(f"checkpoint at {path}: unreadable metadata ({e})") from None
        if in_channels != np.shape(kernel)[2]:
            raise ValueError(
                f"checkpoint at {path}: meta says {in_channels} input channels but conv1 "
                f"takes {np.shape(kernel)[2]}"
            )
        _check_ggcnn_shapes(params, in_channels, path)
        return cls(
            params,
            image_size=image_size,
            in_channels=in_channels,
            input_scale=input_scale,
            meta=meta,
            seed=seed,
            **kwargs,
        )

    def warmup(self, top_k: int = 1):
        """Compiles the program for ``top_k`` (shapes never change afterwards)."""
        n = self.image_size
        # Same argument kinds as `analyse` (host array, explicit keywords), or jit would
        # trace a second program on the first real frame.
        x = np.zeros((n, n, self.in_channels), np.float32)
        jax.block_until_ready(
            _run(self.params, x, top_k=top_k, with_maps=False, input_scale=self.input_scale)
        )

    # ------------------------------------------------------------------------- frames
    def _region(self, shape, roi) -> tuple[int, int, int]:
        h, w = shape
        if roi is None:
            size = min(self.image_size, h, w)
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
            raise ValueError(
                f"roi (top, left, size) = {tuple(vals)} is not inside the {h}x{w} frame"
            )
        return top, left, size

    def _inputs(self, depth, rgb, roi):
        """-> (inpainted depth [N, N], network input [N, N, C], roi (top, left, size)); the
        first two are None when the region has no valid depth."""
        if min(depth.shape) < models.SIZE_MULTIPLE:
            raise ValueError(f"depth frame {depth.shape} is too small (under 12 px a side)")
        top, left, size = self._region(depth.shape, roi)
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
            if rgb is None:
                raise ValueError("this checkpoint is RGB-D (4 input channels): pass rgb=")
            rgb = np.asarray(rgb)
            if rgb.ndim != 3 or rgb.shape[:2] != depth.shape or rgb.shape[2] not in (3, 4):
                raise ValueError(
                    f"rgb must be [H, W, 3] registered to the {depth.shape} depth frame; "
                    f"got shape {rgb.shape}"
                )
            im = rgb[top : top + size, left : left + size, :3]
            if size != n:
                im = cv2_resize_area(im, n)
            x = np.concatenate([x, preprocess.normalise_rgb(im)], axis=-1)
        return filled, np.ascontiguousarray(x, np.float32), (top, left, size)

    def analyse(
        self, depth, rgb=None, roi=None, top_k: int = 1, intrinsics=None, maps: bool = False
    ) -> Detection:
        """Detects grasps in one frame and reports how (see `detect` for the arguments).

        Returns a `Detection`; with ``maps=True`` it also holds the q / angle / width maps
        (postprocess.postprocess of the network output, [N, N]) and the inpainted region.
        """
        t0 = time.perf_counter()
        top_k = int(top_k)
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be in 1..{MAX_TOP_K}; got {top_k}")
        depth = as_depth_metres(depth)
        intr = _parse_intrinsics(intrinsics) if intrinsics is not None else self.intrinsics
        filled, x, roi = self._inputs(depth, rgb, roi)
        t1 = time.perf_counter()
        if x is None:
            timings = {"preprocess": (t1 - t0) * 1e3, "network": 0.0, "total": (t1 - t0) * 1e3}
            return Detection([], "no valid depth", roi, timings)
        out = jax.device_get(
            _run(self.params, x, top_k=top_k, with_maps=maps, input_scale=self.input_scale)
        )
        t2 = time.perf_counter()
        rows, cols, angle, opening, quality, valid = out[:6]
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
                self._to_camera(g, depth, filled, (rows[i], cols[i]), intr)
            grasps.append(g)
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

    def _to_camera(self, g: Grasp, depth, filled, crop_rc, intr):
        """Adds position / opening_m / jaw_m to ``g`` (pinhole model, intrinsics in px)."""
        fx, fy, cx, cy = intr
        h, w = depth.shape
        r = round(min(max(g.centre[0], 0), h - 1))
        c = round(min(max(g.centre[1], 0), w - 1))
        win = depth[
            max(0, r - DEPTH_WINDOW) : r + DEPTH_WINDOW + 1,
            max(0, c - DEPTH_WINDOW) : c + DEPTH_WINDOW + 1,
        ]
        ok = win[np.isfinite(win) & (win > 0)]
        # Median: robust to the flying pixels at object edges that a single pixel can hit.
        z = float(np.median(ok)) if ok.size else float(filled[crop_rc[0], crop_rc[1]])
        g.position = ((g.centre[1] - cx) * z / fx, (g.centre[0] - cy) * z / fy, z)
        ca, sa = math.cos(g.angle), math.sin(g.angle)
        # A pixel vector of length L along the angle spans (L cos a / fx, L sin a / fy) * z.
        g.opening_m = g.opening * z * math.hypot(ca / fx, sa / fy)
        g.jaw_m = g.jaw * z * math.hypot(sa / fx, ca / fy)


def cv2_resize_area(img: np.ndarray, n: int) -> np.ndarray:
    """Area-resizes an image [h, w, ...] to [n, n, ...]."""
    import cv2

    return cv2.resize(np.ascontiguousarray(img), (n, n), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------- files, figure


def read_depth(path, depth_scale: float | None = None) -> np.ndarray:
    """A depth file -> [H, W] float32 metres: .tiff/.tif, .png (16-bit) or .npy. Units come
    from the stored dtype and values (integer = millimetres, float = metres, float with a
    valid median above 20 = millimetres with a warning; see `as_depth_metres`) unless
    ``depth_scale`` (metres per stored unit) is given. FileNotFoundError when it is missing,
    ValueError naming the file for anything unreadable, a file without any valid pixel or an
    implausible depth range."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            d = preprocess.read_tiff_raw(path)
        elif suffix == ".npy":
            d = np.load(path, allow_pickle=False)
        elif suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
                    raise ValueError(
                        f"PNG mode {im.mode} is not a 16-bit depth image (millimetres)"
                    )
                d = np.asarray(im).astype(np.uint16)
        else:
            raise ValueError(f"unknown depth file type {suffix!r} (.tiff, .png or .npy)")
    except (OSError, ValueError, EOFError) as e:
        msg = str(e) or type(e).__name__
        if isinstance(e, EOFError):
            msg = f"the file is empty or truncated ({msg})"
        if msg.startswith(str(path)):  # the TIFF reader names the file itself
            raise ValueError(f"cannot read depth file {msg}") from e
        raise ValueError(f"cannot read depth file {path}: {msg}") from e
    return as_depth_metres(d, depth_scale, name=f"depth file {path}", allow_empty=False)


def save_figure(path, depth, det: Detection, rgb=None):
    """PNG: the frame ([RGB,] depth) with the region (white) and the grasps (red, the best
    thicker), and the region's quality, angle and width maps. ``det`` from
    ``analyse(..., maps=True)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = ([("RGB", rgb)] if rgb is not None else []) + [("Depth", depth)]
    maps = det.maps or {}
    panels = len(frames) + (3 if maps else 0)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4), dpi=100)
    axes = np.atleast_1d(axes)
    top, left, size = det.roi
    for ax, (name, img) in zip(axes, frames):
        ax.imshow(img, cmap=None if name == "RGB" else "gray")
        ax.add_patch(
            matplotlib.patches.Rectangle(
                (left - 0.5, top - 0.5), size, size, fill=False, ec="white", lw=1
            )
        )
        for i, g in enumerate(det.grasps):
            pts = np.concatenate([g.rect(), g.rect()[:1]])
            ax.plot(pts[:, 1], pts[:, 0], color="red", lw=2.0 if i == 0 else 1.0)
        ax.set_title(f"{name}: {det.status}")
    specs = (("q", "Quality", "jet", 0, 1), ("angle", "Angle", "hsv", -np.pi / 2, np.pi / 2))
    specs += (("width", "Width", "jet", 0, max(100.0, float(np.max(maps.get("width", 0))))),)
    for ax, (key, title, cmap, lo, hi) in zip(axes[len(frames) :], specs):
        im = ax.imshow(maps[key], cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI


def _ints(text, n=None):
    vals = [int(v) for v in text.split(",")]
    if n is not None and len(vals) != n:
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated integers, got {text!r}")
    return vals


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (e.g. ``--depth_scale``)."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def check_output_file(path, flag: str) -> pathlib.Path:
    """ValueError naming ``flag`` when ``path`` cannot be written (no such folder, a folder,
    not writable): checked before any work is done, so nothing is computed in vain."""
    out = pathlib.Path(path).expanduser()
    parent = out.parent if str(out.parent) else pathlib.Path(".")
    if out.is_dir():
        raise ValueError(f"{flag}={path} is a folder; give a file name such as {out / 'out.png'}")
    if not parent.is_dir():
        raise ValueError(f"{flag}={path}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{flag}={path}: the folder {parent} is not writable")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dal_jax.inference", description="Grasps in one depth frame."
    )
    ap.add_argument("--checkpoint", required=True, help="run workdir or checkpoints folder")
    ap.add_argument(
        "--depth",
        required=True,
        help=".tiff / .npy (float metres or integer mm) or .png (16-bit mm)",
    )
    ap.add_argument(
        "--depth_scale",
        type=positive_float,
        help="metres per stored depth unit (e.g. 0.001 for millimetres); default: decided from "
        "the file's dtype and values (integer = mm, float = m, float with a median above 20 = mm)",
    )
    ap.add_argument("--rgb", help="registered RGB image (RGB-D models; drawn in --png)")
    ap.add_argument("--seed", type=int, help="seed index (default: best test accuracy)")
    ap.add_argument("--round", type=int, help="round (default: the latest)")
    ap.add_argument("--top_k", type=int, default=1, help=f"grasps to return (1..{MAX_TOP_K})")
    ap.add_argument("--roi", type=lambda s: _ints(s, 3), help="TOP,LEFT,SIZE (frame px)")
    ap.add_argument("--intrinsics", help="FX,FY,CX,CY (px): adds 3D positions in metres")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--png", help="write a figure of the frame, grasps and maps here")
    args = ap.parse_args(argv)
    try:
        # Cheap checks first: a wrong flag or file must not wait for the checkpoint.
        if not 1 <= args.top_k <= MAX_TOP_K:
            raise ValueError(f"--top_k={args.top_k}: give 1..{MAX_TOP_K} grasps per frame")
        try:
            intrinsics = _parse_intrinsics(args.intrinsics)
        except ValueError as e:
            raise ValueError(f"--intrinsics={args.intrinsics}: {e}") from None
        if args.png:
            check_output_file(args.png, "--png")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", preprocess.DepthUnitsWarning)
            depth = read_depth(args.depth, args.depth_scale)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        rgb = preprocess.read_rgb(args.rgb) if args.rgb else None
        det_ = GraspDetector.from_checkpoint(
            args.checkpoint,
            seed=args.seed,
            round_index=args.round,
            intrinsics=intrinsics,
            warmup=False,  # one frame: compile only the variant it needs
        )
        det = det_.analyse(depth, rgb, args.roi, args.top_k, maps=bool(args.png))
        if args.png:
            save_figure(args.png, depth, det, rgb)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(det.to_dict()))
    else:
        print(f"{args.depth}: {det.status}; {det.timings['total']:.1f} ms; roi {det.roi}")
        for i, g in enumerate(det.grasps):
            print(f"  grasp {i}: {json.dumps(g.to_dict())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
