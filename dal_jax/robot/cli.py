"""The robot side's two command lines: one frame (`detect_main`) and the loop (`main`).

One frame, ``python -m dal_jax.robot.detect``::

    python -m dal_jax.robot.detect --checkpoint=DIR --depth=FILE [--rgb=FILE] [--json]
        [--png=OUT.png] [--top_k=N] [--roi=TOP,LEFT,SIZE] [--intrinsics=FX,FY,CX,CY]
        [--depth_scale=METRES_PER_UNIT]

prints the frame's status, time and region, then one line per grasp (``--json``: one JSON
object, `Detection.to_dict`).

The loop, ``python -m dal_jax.robot``::

    python -m dal_jax.robot --checkpoint=DIR --source=folder:DIR|npz:FILE|ros:/topic
        [--sink=stdout|tcp:HOST:PORT|ros:/topic] [--fps=N] [--intrinsics=fx,fy,cx,cy]
        [--top_k=N] [--roi=TOP,LEFT,SIZE] [--max_frames=N] [--depth_scale=METRES_PER_UNIT]
    python -m dal_jax.robot --source=... --record=DIR [--record_min_fraction=F]
        [--max_frames=N] [--depth_scale=METRES_PER_UNIT]

sends one JSON record per frame to the sink (`dal_jax.robot.stream`) and prints the run's stats
as one JSON object on stderr at the end, so stdout stays pure JSON lines. With ``--record=DIR``
it runs no detector (``--checkpoint`` is not needed) and writes the frames to DIR instead
(`dal_jax.robot.record` describes the folder and the near-duplicate rule).

Depth units of every file or frame are decided from its stored dtype and values (integer =
millimetres, float = metres, or millimetres with a warning when the median valid pixel is above
20; implausible ranges refused); ``--depth_scale`` (metres per stored unit) overrides that. Bad
input (a missing or corrupt file or checkpoint, a bad flag) prints one ``error: ...`` line and
exits with code 2. In the loop, a frame that cannot be read or converted yields an
``"error: ..."`` record and counts in the final ``errors``; the loop goes on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import warnings

from dal_jax.data import preprocess
from dal_jax.data.frames import read_depth
from dal_jax.robot.camera import parse_intrinsics
from dal_jax.robot.detector import MAX_TOP_K, GraspDetector
from dal_jax.robot.figure import save_figure
from dal_jax.robot.record import Recorder, record
from dal_jax.robot.results import Detection
from dal_jax.robot.sinks import make_sink
from dal_jax.robot.sources import make_source
from dal_jax.robot.stream import run

# ----------------------------------------------------------------------------- flag checks


def _ints(text, n=None):
    vals = [int(v) for v in text.split(",")]
    if n is not None and len(vals) != n:
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated integers, got {text!r}")
    return vals


def _finite(text: str, ok, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and ok(v)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (e.g. ``--depth_scale``)."""
    return _finite(text, lambda v: v > 0, "a positive number")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (e.g. ``--record_min_change``)."""
    return _finite(text, lambda v: v >= 0, "a number >= 0")


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


def _check_top_k(top_k: int):
    if not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"--top_k={top_k}: give 1..{MAX_TOP_K} grasps per frame")


def _intrinsics_flag(text):
    """``--intrinsics`` -> (fx, fy, cx, cy) or None; ValueError naming the flag."""
    try:
        return parse_intrinsics(text)
    except ValueError as e:
        raise ValueError(f"--intrinsics={text}: {e}") from None


# ----------------------------------------------------------------------------- one frame


def _detect_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dal_jax.robot.detect", description="Grasps in one depth frame."
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
    return ap


def _detect(args) -> Detection:
    """The single-frame CLI's work; raises FileNotFoundError / ValueError / OSError."""
    # Cheap checks first: a wrong flag or file must not wait for the checkpoint.
    _check_top_k(args.top_k)
    intrinsics = _intrinsics_flag(args.intrinsics)
    if args.png:
        check_output_file(args.png, "--png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", preprocess.DepthUnitsWarning)
        depth = read_depth(args.depth, args.depth_scale)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    rgb = preprocess.read_rgb(args.rgb) if args.rgb else None
    detector = GraspDetector.from_checkpoint(
        args.checkpoint,
        seed=args.seed,
        round_index=args.round,
        intrinsics=intrinsics,
        warmup=False,  # one frame: compile only the variant it needs
    )
    det = detector.analyse(depth, rgb, args.roi, args.top_k, maps=bool(args.png))
    if args.png:
        save_figure(args.png, depth, det, rgb)
    return det


def detect_main(argv=None) -> int:
    """``python -m dal_jax.robot.detect``: 0, or 2 after one ``error: ...`` line."""
    args = _detect_parser().parse_args(argv)
    try:
        det = _detect(args)
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


# ----------------------------------------------------------------------------- the loop


def _loop_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dal_jax.robot", description="Camera frames in, grasps out (JSON lines)."
    )
    ap.add_argument("--checkpoint", help="run workdir or checkpoints folder (not with --record)")
    ap.add_argument("--source", required=True, help="folder:DIR | npz:FILE | ros:/topic")
    ap.add_argument("--sink", default="stdout", help="stdout | tcp:HOST:PORT | ros:/topic")
    ap.add_argument("--fps", type=float, help="replay pacing (frames may then be dropped)")
    ap.add_argument("--intrinsics", help="FX,FY,CX,CY (px): adds 3D positions in metres")
    ap.add_argument("--seed", type=int, help="seed index (default: best test accuracy)")
    ap.add_argument("--top_k", type=int, default=1, help=f"grasps per frame (1..{MAX_TOP_K})")
    ap.add_argument("--roi", help="TOP,LEFT,SIZE square region (default: centred)")
    ap.add_argument("--max_frames", type=int, help="stop after this many frames")
    ap.add_argument("--record", metavar="DIR", help="write the frames to DIR, detect nothing")
    ap.add_argument(
        "--record_min_change",
        type=non_negative_float,
        default=0.01,
        help="metres: a pixel whose depth moved by more than this changed (after a 5x5 median "
        "filter of the difference, which removes sensor noise)",
    )
    ap.add_argument(
        "--record_min_fraction",
        type=non_negative_float,
        default=0.005,
        help="skip a frame with fewer changed pixels than this fraction (0 keeps every frame)",
    )
    ap.add_argument(
        "--depth_scale",
        type=positive_float,
        help="metres per stored depth unit (e.g. 0.001 for millimetres); default: decided per "
        "frame from its dtype and values (integer = mm, float = m, float with a median above "
        "20 = mm)",
    )
    return ap


def _loop_setup(args):
    """-> (source, detector, sink, roi) from the loop's flags; raises FileNotFoundError /
    ValueError / RuntimeError (no ROS) / ConnectionError (TCP sink) with the reason."""
    _check_top_k(args.top_k)
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise ValueError(f"--fps={args.fps}: give a positive frame rate, or leave it out")
    try:
        roi = [int(v) for v in args.roi.split(",")] if args.roi else None
    except ValueError:
        raise ValueError(f"--roi={args.roi}: expected TOP,LEFT,SIZE integers") from None
    intrinsics = _intrinsics_flag(args.intrinsics)
    source = make_source(args.source, args.fps, args.depth_scale)
    detector = GraspDetector.from_checkpoint(args.checkpoint, seed=args.seed, intrinsics=intrinsics)
    sink = make_sink(args.sink)
    return source, detector, sink, roi


def main(argv=None) -> int:
    """``python -m dal_jax.robot``: 0 when the source ended (or ``--max_frames``), 2 after one
    ``error: ...`` line, 130 on Ctrl-C."""
    args = _loop_parser().parse_args(argv)
    if args.record:
        return _record(args)
    try:
        if not args.checkpoint:
            raise ValueError("--checkpoint is required (or give --record=DIR to record frames)")
        source, detector, sink, roi = _loop_setup(args)
    except (FileNotFoundError, ValueError, RuntimeError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        stats = run(detector, source, sink, args.top_k, roi, max_frames=args.max_frames)
    except KeyboardInterrupt:
        return 130
    finally:
        sink.close()
    print(json.dumps({"stats": stats.summary()}), file=sys.stderr)
    return 0


def _record(args) -> int:
    """``--record=DIR``: the source's frames into DIR, no detector; 0, 2 after one ``error:
    ...`` line (the frames kept until then stay recorded), 130 on Ctrl-C."""
    ignored = [f for f in ("checkpoint", "roi", "intrinsics", "seed", "fps") if getattr(args, f)]
    ignored += ["sink"] if args.sink != "stdout" else []
    ignored += ["top_k"] if args.top_k != 1 else []
    if ignored:
        names = ", ".join(f"--{f}" for f in ignored)
        print(f"warning: --record runs no detector; {names} ignored", file=sys.stderr)
    recorder = None
    try:
        source = make_source(args.source, None, args.depth_scale)
        recorder = Recorder(
            args.record, args.source, args.record_min_change, args.record_min_fraction
        )
        record(source, recorder, args.max_frames)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if recorder is not None:
            recorder.close()
            print(recorder.summary(), file=sys.stderr)
    return 0
