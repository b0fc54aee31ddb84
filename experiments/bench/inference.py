"""Benchmark of robot-side grasp detection (`dal_jax.robot.GraspDetector.detect`).

Times ``detect`` on a 640x480 depth frame, pre- and post-processing included (crop, inpainting
of the holes, normalisation, GG-CNN, blur, peaks, mapping back), against the 15 ms median
target; and, given the PyTorch peer's file (``--peer=FILE``, a ``GGCNN`` module) and torch, the
peer's single-image GG-CNN forward (network only) measured in the same run.

The frame is the real Cornell depth frame ``cornell/pcd0100d.tiff`` of the sample-data folder
(``--sample_data=DIR``, else $DAL_JAX_SAMPLE_DATA; `dal_jax.data.sample_data`), else a synthetic
table scene, with ~5% of the pixels turned into Kinect-like holes (3x3 blobs) so that
inpainting is paid as on a real camera. Random-init weights: the time does not depend on the
values.

Run: ``python -m experiments.bench.inference [--sample_data=DIR] [--peer=FILE]`` (prints one
JSON line per result).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import time

import numpy as np

from dal_jax.data import sample_data

CORNELL_FRAME = pathlib.Path("cornell") / "pcd0100d.tiff"


def cornell_frame(given=None) -> pathlib.Path | None:
    """The real Cornell frame of the sample-data folder (`sample_data.folder` of ``given``),
    or None when no folder is given (the bench then makes a synthetic frame). ValueError naming
    the flag or the variable when the folder given lacks the frame."""
    if sample_data.folder(given) is None:
        return None
    path = sample_data.require(given, str(CORNELL_FRAME)) / CORNELL_FRAME
    if not path.is_file():
        raise ValueError(f"{path} does not exist: the sample-data folder has no Cornell frame")
    return path


def _frame(rng, path: pathlib.Path | None) -> tuple[np.ndarray, str]:
    """A [480, 640] float32 depth frame in metres with holes (the Cornell frame at ``path``,
    else a synthetic one), and where it came from."""
    import cv2

    from dal_jax.data import preprocess

    if path is not None:
        depth, source = preprocess.read_tiff(path), str(CORNELL_FRAME)
    else:
        depth = np.full((480, 640), 0.8, np.float32)
        depth[200:280, 280:360] = 0.72
        depth += rng.normal(0, 0.002, depth.shape).astype(np.float32)
        source = f"synthetic (no {sample_data.FLAG} or {sample_data.ENV})"
    seeds = (rng.random(depth.shape) < 0.006).astype(np.uint8)
    holes = cv2.dilate(seeds, np.ones((3, 3), np.uint8)) > 0
    depth = depth.copy()
    depth[holes] = np.where(rng.random(int(holes.sum())) < 0.5, 0.0, np.nan)
    return depth, f"{source}, {holes.mean():.1%} holes"


def _timed(fn, reps: int, warmup: int = 3) -> tuple[float, float]:
    """Median and p90 milliseconds of ``fn()`` over ``reps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    t = np.asarray(times) * 1e3
    return round(float(np.median(t)), 2), round(float(np.percentile(t, 90)), 2)


def bench_detect(reps: int = 50, frame: pathlib.Path | None = None) -> dict:
    """Median / p90 of ``GraspDetector.detect`` on a 640x480 frame (after warm-up): the depth
    file ``frame`` (see `_frame`) or a synthetic one."""
    import jax
    import jax.numpy as jnp

    from dal_jax import robot
    from dal_jax.model import models

    rng = np.random.default_rng(0)
    depth, source = _frame(rng, frame)
    params = models.GGCNN().init(jax.random.key(0), jnp.zeros((1, 300, 300, 1)))["params"]
    t0 = time.perf_counter()
    det = robot.GraspDetector(params, image_size=300)
    compile_s = time.perf_counter() - t0
    med, p90 = _timed(lambda: det.detect(depth), reps)
    return {
        "bench": "detect",
        "impl": "jax",
        "frame": "640x480",
        "ms_median": med,
        "ms_p90": p90,
        "target_ms": 15.0,
        "reps": reps,
        "compile_s": round(compile_s, 2),
        "input": source,
    }


def bench_torch_forward(peer, reps: int = 50, threads: int = 2) -> dict | None:
    """Median single-image forward of the PyTorch peer file ``peer`` at 300x300 (network
    only), or None without a file or torch."""
    if peer is None or importlib.util.find_spec("torch") is None:
        return None
    import torch

    spec = importlib.util.spec_from_file_location("torch_ggcnn_peer", peer)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = mod.GGCNN().eval()
    x = torch.randn(1, 1, 300, 300)
    with torch.no_grad():
        med, p90 = _timed(lambda: net(x), reps)
    return {
        "bench": "detect",
        "impl": "torch_forward",
        "frame": "300x300 crop, network only",
        "ms": med,
        "ms_p90": p90,
        "threads": threads,
        "torch": torch.__version__,
    }


def _load() -> float | None:
    try:
        import os

        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def bench_inference(reps: int = 50, frame=None, peer=None) -> list[dict]:
    """The JAX detect timing (on the depth file ``frame``, e.g. `cornell_frame`, else a
    synthetic frame) and, given the ``peer`` file and torch, the PyTorch peer's forward, in the
    same process, each tagged with the 1-minute load average (other users share the cores)."""
    out = [bench_detect(reps, frame)]
    torch_row = bench_torch_forward(peer, reps)
    if torch_row is not None:
        out.append(torch_row)
    for row in out:
        row["loadavg_1min"] = _load()
    return out


def main(argv=None) -> int:
    """Prints one JSON line per result; 2 with one ``error:`` line for a sample-data folder
    without the Cornell frame or a missing --peer file."""
    p = argparse.ArgumentParser(prog="python -m experiments.bench.inference")
    p.add_argument(
        sample_data.FLAG,
        default=None,
        help=f"sample-data folder holding {CORNELL_FRAME} (default: ${sample_data.ENV}; "
        "without either, a synthetic frame)",
    )
    p.add_argument("--peer", default=None, help="the PyTorch peer's file (a GGCNN module)")
    p.add_argument("--reps", type=int, default=50, help="timed calls per measurement")
    args = p.parse_args(argv)
    try:
        frame = cornell_frame(args.sample_data)
        if args.peer and not pathlib.Path(args.peer).is_file():
            raise ValueError(f"--peer={args.peer}: no such file")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for row in bench_inference(args.reps, frame, args.peer):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
