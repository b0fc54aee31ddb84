"""The camera-to-grasp loop for the robot (Kinect2 on a Kinova MOVO), and its replay form.

A *source* produces frames, a producer thread hands them to the detector through a size-1
`LatestSlot` (the latest frame wins: a frame that arrives while the detector is busy replaces
the waiting one, which is counted as dropped; nothing ever queues), and each frame's grasps go
to a *sink* as one JSON object:

    {"frame": i, "name": ..., "stamp": ..., "status": "ok" | "no grasp" | "no valid depth" |
     "error: ...", "grasps": [Grasp.to_dict(), ...], "detect_ms": ..., "latency_ms": ...}

``detect_ms`` is the detector's own time, ``latency_ms`` the time from the frame's arrival in the
slot to the result being handed to the sink (for an unpaced replay, from when the detector took
it). At the end the loop prints median / p90 / max of
both and the dropped count (to stderr, so stdout stays pure JSON lines).

Sources: `FolderSource` (depth files in name order: .tiff/.tif metres, 16-bit .png millimetres,
.npy), `NpzSource` (arrays ``depth`` [T, H, W], optional ``rgb`` [T, H, W, 3] and ``stamp``
[T]), `RosSource` (a sensor_msgs/Image topic via rospy or rclpy, whichever is importable).
Replay sources run as fast as the detector takes frames (nothing dropped) unless paced with
``fps``, which makes them behave like a camera. Sinks: `StdoutSink`, `TcpSink` (JSON lines to a
listening host:port), `RosSink` (std_msgs/String carrying the JSON).

CLI::

    python -m dal_jax.robot --checkpoint=DIR --source=folder:DIR|npz:FILE|ros:/topic
        [--sink=stdout|tcp:HOST:PORT|ros:/topic] [--fps=N] [--intrinsics=fx,fy,cx,cy]
        [--top_k=N] [--roi=TOP,LEFT,SIZE] [--max_frames=N] [--depth_scale=METRES_PER_UNIT]

Depth units of every frame are decided from its stored dtype and values (integer = millimetres,
float = metres, or millimetres with a warning when the median valid pixel is above 20;
implausible ranges refused), or set with ``--depth_scale`` (metres per stored unit). A frame that
cannot be read or converted yields an ``"error: ..."`` record and counts in the final
``errors``; the loop goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator

import numpy as np

from dal_jax import inference, preprocess

DEPTH_SUFFIXES = (".tiff", ".tif", ".png", ".npy")


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


class _WarnOnce:
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


# ----------------------------------------------------------------------------- the slot


class LatestSlot:
    """A size-1 hand-off between one producer and one consumer where the newest item wins.

    ``put`` never blocks (unless ``wait=True``, for lossless replay): it replaces an item the
    consumer has not taken yet and counts it in ``dropped``. ``get`` blocks until an item is
    there or the slot is closed (then it returns None).
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item, wait: bool = False) -> bool:
        """Offers ``item``; returns False when the slot is closed. ``wait``: block until the
        previous item was taken instead of replacing it."""
        with self._cond:
            while wait and self._item is not None and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None):
        """The newest item (removing it), or None when closed and empty / on timeout."""
        with self._cond:
            end = None if timeout is None else time.monotonic() + timeout
            while self._item is None and not self._closed:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self):
        """No more items: a waiting ``get`` returns what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


# ----------------------------------------------------------------------------- sources


class FolderSource:
    """Depth files of a folder in name order (.tiff/.tif float metres, 16-bit .png millimetres,
    .npy). 8-bit / colour PNGs (e.g. Cornell's ``pcdXXXXr.png``) are not depth and are
    skipped; an RGB image is attached when Cornell's naming pairs one (``pcdXXXXd.tiff`` ->
    ``pcdXXXXr.png``). ``fps``: pace the replay like a camera (frames may then be dropped).
    ``depth_scale``: metres per stored unit (default: decided per file, see the module doc).
    An unreadable file becomes an error frame (reported and counted by `run`)."""

    def __init__(self, folder, fps: float | None = None, depth_scale: float | None = None):
        self.folder = pathlib.Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"frame folder {self.folder} does not exist")
        self.fps = fps
        self.depth_scale = depth_scale
        self._warn_once = _WarnOnce()
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
                depth = self._warn_once(inference.read_depth, p, self.depth_scale)
                rgb = None
                m = re.match(r"^(.*)d\.tiff?$", p.name)
                if m and (p.parent / f"{m.group(1)}r.png").is_file():
                    try:
                        rgb = preprocess.read_rgb(p.parent / f"{m.group(1)}r.png")
                    except OSError as e:
                        raise ValueError(f"cannot read {m.group(1)}r.png: {e}") from e
            except (OSError, ValueError) as e:
                print(f"skipping {p}: {e}", file=sys.stderr)
                yield Frame(None, name=p.name, index=i, error=str(e))
                continue
            yield Frame(depth, rgb, None, p.name, i)


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
            return im.mode not in ("I;16", "I;16B", "I;16L", "I")
    except OSError:
        return False  # unreadable: let the reader report it


class NpzSource:
    """Frames of an .npz sequence: ``depth`` [T, H, W] (float metres or integer mm), optional
    ``rgb`` [T, H, W, 3] and ``stamp`` [T] seconds. ``fps``: pace the replay. ``depth_scale``:
    metres per stored unit (default: decided per frame, see the module doc)."""

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
        self._warn_once = _WarnOnce()

    def __iter__(self) -> Iterator[Frame]:
        depth = self.arrays["depth"]
        rgb, stamp = self.arrays.get("rgb"), self.arrays.get("stamp")
        for i in range(len(depth)):
            name = f"{self.path.name}[{i}]"
            stamp_i = None if stamp is None else float(stamp[i])
            try:
                d = self._warn_once(inference.as_depth_metres, depth[i], self.depth_scale, name)
            except ValueError as e:
                print(f"skipping {name}: {e}", file=sys.stderr)
                yield Frame(None, None, stamp_i, name, i, error=str(e))
                continue
            yield Frame(d, None if rgb is None else rgb[i], stamp_i, name, i)


def image_msg_to_depth(msg, depth_scale: float | None = None) -> np.ndarray:
    """sensor_msgs/Image (32FC1 metres or 16UC1 millimetres) -> [H, W] float32 metres, without
    cv_bridge (which needs a matching OpenCV build on the robot). ``depth_scale``: metres per
    stored unit, overriding the units rule (see the module doc)."""
    dtypes = {"32FC1": np.float32, "16UC1": np.uint16, "mono16": np.uint16}
    if msg.encoding not in dtypes:
        raise ValueError(f"unsupported depth encoding {msg.encoding!r} (32FC1 or 16UC1)")
    dt = np.dtype(dtypes[msg.encoding]).newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    d = rows[:, : msg.width * dt.itemsize].copy().view(dt).reshape(msg.height, msg.width)
    return inference.as_depth_metres(d.astype(dt.newbyteorder("=")), depth_scale, name="frame")


def ros_available() -> str | None:
    """'rospy', 'rclpy' or None."""
    import importlib.util

    for name in ("rospy", "rclpy"):
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):
            continue
    return None


class RosSource:
    """Depth frames from a sensor_msgs/Image topic (ROS 1 via rospy or ROS 2 via rclpy). The
    subscriber callback is the producer: it always overwrites the slot (a camera never waits).
    Raises RuntimeError at construction when neither rospy nor rclpy can be imported."""

    paced = True

    def __init__(
        self, topic: str, node_name: str = "dal_jax_grasps", depth_scale: float | None = None
    ):
        self.topic = topic
        self.node_name = node_name
        self.depth_scale = depth_scale
        self.kind = ros_available()
        if self.kind is None:
            raise RuntimeError(
                f"cannot subscribe to {topic}: neither rospy (ROS 1) nor rclpy (ROS 2) is "
                "importable; source your ROS setup.bash, or replay frames with "
                "--source=folder:DIR or npz:FILE"
            )

    def attach(self, on_frame, stop: threading.Event):
        """Subscribes and spins (blocking) until ``stop`` is set; ``on_frame(Frame)``."""
        count = [0]
        warn_once = _WarnOnce()

        def callback(msg):
            s = msg.header.stamp
            sec = getattr(s, "secs", getattr(s, "sec", 0))
            nsec = getattr(s, "nsecs", getattr(s, "nanosec", 0))
            stamp = sec + nsec * 1e-9
            try:
                depth = warn_once(image_msg_to_depth, msg, self.depth_scale)
            except ValueError as e:
                print(f"bad frame from {self.topic}: {e}", file=sys.stderr)
                on_frame(Frame(None, None, stamp, self.topic, count[0], error=str(e)))
            else:
                on_frame(Frame(depth, None, stamp, self.topic, count[0]))
            count[0] += 1

        if self.kind == "rospy":
            import rospy
            from sensor_msgs.msg import Image

            if not rospy.core.is_initialized():
                rospy.init_node(self.node_name, anonymous=True, disable_signals=True)
            sub = rospy.Subscriber(self.topic, Image, callback, queue_size=1, buff_size=2**24)
            while not stop.is_set() and not rospy.is_shutdown():
                stop.wait(0.1)
            sub.unregister()
        else:
            import rclpy
            from sensor_msgs.msg import Image

            if not rclpy.ok():
                rclpy.init()
            node = rclpy.create_node(self.node_name)
            node.create_subscription(Image, self.topic, callback, 1)
            while not stop.is_set() and rclpy.ok():
                rclpy.spin_once(node, timeout_sec=0.1)
            node.destroy_node()


# ----------------------------------------------------------------------------- sinks


class StdoutSink:
    """JSON lines on stdout (or any text stream)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def send(self, record: dict):
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()

    def close(self):
        pass


class TcpSink:
    """JSON lines to a TCP listener at host:port (the robot controller). Raises ConnectionError
    naming the address when nothing listens there."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.address = (host, int(port))
        try:
            self.sock = socket.create_connection(self.address, timeout=timeout)
        except OSError as e:
            raise ConnectionError(f"cannot connect to {host}:{port}: {e}") from e

    def send(self, record: dict):
        self.sock.sendall((json.dumps(record) + "\n").encode())

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.sock.close()


class RosSink:
    """Publishes each record as JSON in a std_msgs/String on ``topic`` (ROS 1 or 2)."""

    def __init__(self, topic: str, node_name: str = "dal_jax_grasps"):
        kind = ros_available()
        if kind is None:
            raise RuntimeError(
                f"cannot publish to {topic}: neither rospy nor rclpy is importable "
                "(use --sink=stdout or tcp:HOST:PORT)"
            )
        self.kind = kind
        if kind == "rospy":
            import rospy
            from std_msgs.msg import String

            if not rospy.core.is_initialized():
                rospy.init_node(node_name, anonymous=True, disable_signals=True)
            self._pub = rospy.Publisher(topic, String, queue_size=1)
        else:
            import rclpy
            from std_msgs.msg import String

            if not rclpy.ok():
                rclpy.init()
            self._node = rclpy.create_node(node_name + "_pub")
            self._pub = self._node.create_publisher(String, topic, 1)
        self._msg = String

    def send(self, record: dict):
        self._pub.publish(self._msg(data=json.dumps(record)))

    def close(self):
        if self.kind == "rclpy":
            self._node.destroy_node()


# ----------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class LoopStats:
    """Per-frame times (ms) and counts of one run."""

    detect_ms: list = dataclasses.field(default_factory=list)
    latency_ms: list = dataclasses.field(default_factory=list)
    frames_in: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0

    def summary(self) -> dict:
        def s(v):
            if not v:
                return None
            a = np.asarray(v)
            return {
                "median": round(float(np.median(a)), 2),
                "p90": round(float(np.percentile(a, 90)), 2),
                "max": round(float(a.max()), 2),
            }

        return {
            "frames_in": self.frames_in,
            "processed": self.processed,
            "dropped": self.dropped,
            "errors": self.errors,
            "detect_ms": s(self.detect_ms),
            "latency_ms": s(self.latency_ms),
        }


def run(
    detector: inference.GraspDetector,
    source,
    sink,
    top_k: int = 1,
    roi=None,
    intrinsics=None,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
) -> LoopStats:
    """Runs the loop until the source ends, ``max_frames`` were processed or ``stop`` is set.

    ``source``: a `FolderSource` / `NpzSource` (any iterable of `Frame` with a ``paced`` and
    ``fps`` attribute) or an object with ``attach(on_frame, stop)`` (`RosSource`). A paced
    source overwrites the slot (camera behaviour, frames may drop); an unpaced replay waits for
    the detector (every frame is processed). Bad frames yield an "error: ..." record, never a
    crash; ``errors`` counts them, including the frames the source could not read (`Frame.error`).
    Returns the `LoopStats`.
    """
    slot = LatestSlot()
    stop = stop or threading.Event()
    paced = bool(getattr(source, "paced", True))
    source_errors = [0]  # frames the source could not produce (counted even if dropped)

    def offer(frame: Frame):
        frame.arrived = time.perf_counter()
        if frame.error is not None:
            source_errors[0] += 1
        slot.put(frame, wait=not paced)

    def produce():
        try:
            if hasattr(source, "attach"):
                source.attach(offer, stop)
                return
            period = 1.0 / source.fps if getattr(source, "fps", None) else 0.0
            next_t = time.perf_counter()
            for frame in source:
                if stop.is_set():
                    break
                if period:
                    time.sleep(max(0.0, next_t - time.perf_counter()))
                    next_t += period
                offer(frame)
        except Exception as e:  # noqa: BLE001 - a dying thread would be silent; report, end
            print(f"frame source failed: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            slot.close()

    producer = threading.Thread(target=produce, name="frame-source", daemon=True)
    producer.start()
    stats = LoopStats()
    try:
        while not stop.is_set():
            frame = slot.get(timeout=0.2)
            if frame is None:
                if slot.closed:
                    break
                continue
            t0 = time.perf_counter()
            if not paced:
                # A lossless replay offers the next frame as soon as the slot frees, so it
                # would "wait" one whole detection; its frames arrive when the detector asks.
                frame.arrived = t0
            if frame.error is not None:  # counted by `offer`
                status, grasps = f"error: {frame.error}", []
            else:
                try:
                    det = detector.analyse(frame.depth, frame.rgb, roi, top_k, intrinsics)
                    status, grasps = det.status, [g.to_dict() for g in det.grasps]
                except ValueError as e:
                    status, grasps = f"error: {e}", []
                    stats.errors += 1
            t1 = time.perf_counter()
            record = {
                "frame": frame.index,
                "name": frame.name,
                "stamp": frame.stamp,
                "status": status,
                "grasps": grasps,
                "detect_ms": round((t1 - t0) * 1e3, 2),
                "latency_ms": round((t1 - frame.arrived) * 1e3, 2),
            }
            sink.send(record)
            stats.detect_ms.append((t1 - t0) * 1e3)
            stats.latency_ms.append((t1 - frame.arrived) * 1e3)
            stats.processed += 1
            if max_frames is not None and stats.processed >= max_frames:
                break
    finally:
        stop.set()
        slot.close()
        producer.join(timeout=2.0)
    stats.frames_in = slot.put_count
    stats.dropped = slot.dropped
    stats.errors += source_errors[0]
    return stats


# ----------------------------------------------------------------------------- CLI


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


def make_sink(spec: str):
    """``stdout`` | ``tcp:HOST:PORT`` | ``ros:/topic`` -> a sink."""
    if spec == "stdout":
        return StdoutSink()
    kind, _, arg = spec.partition(":")
    if kind == "tcp":
        host, _, port = arg.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--sink=tcp:HOST:PORT expected; got {spec!r}")
        return TcpSink(host, int(port))
    if kind == "ros" and arg:
        return RosSink(arg)
    raise ValueError(f"--sink must be stdout, tcp:HOST:PORT or ros:/topic; got {spec!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dal_jax.robot", description="Camera frames in, grasps out (JSON lines)."
    )
    ap.add_argument("--checkpoint", required=True, help="run workdir or checkpoints folder")
    ap.add_argument("--source", required=True, help="folder:DIR | npz:FILE | ros:/topic")
    ap.add_argument("--sink", default="stdout", help="stdout | tcp:HOST:PORT | ros:/topic")
    ap.add_argument("--fps", type=float, help="replay pacing (frames may then be dropped)")
    ap.add_argument("--intrinsics", help="FX,FY,CX,CY (px): adds 3D positions in metres")
    ap.add_argument("--seed", type=int, help="seed index (default: best test accuracy)")
    ap.add_argument(
        "--top_k", type=int, default=1, help=f"grasps per frame (1..{inference.MAX_TOP_K})"
    )
    ap.add_argument("--roi", help="TOP,LEFT,SIZE square region (default: centred)")
    ap.add_argument("--max_frames", type=int)
    ap.add_argument(
        "--depth_scale",
        type=inference.positive_float,
        help="metres per stored depth unit (e.g. 0.001 for millimetres); default: decided per "
        "frame from its dtype and values (integer = mm, float = m, float with a median above "
        "20 = mm)",
    )
    args = ap.parse_args(argv)
    try:
        if not 1 <= args.top_k <= inference.MAX_TOP_K:
            raise ValueError(
                f"--top_k={args.top_k}: give 1..{inference.MAX_TOP_K} grasps per frame"
            )
        if args.fps is not None and not (np.isfinite(args.fps) and args.fps > 0):
            raise ValueError(f"--fps={args.fps}: give a positive frame rate, or leave it out")
        try:
            roi = [int(v) for v in args.roi.split(",")] if args.roi else None
        except ValueError:
            raise ValueError(f"--roi={args.roi}: expected TOP,LEFT,SIZE integers") from None
        try:
            intrinsics = inference._parse_intrinsics(args.intrinsics)
        except ValueError as e:
            raise ValueError(f"--intrinsics={args.intrinsics}: {e}") from None
        source = make_source(args.source, args.fps, args.depth_scale)
        detector = inference.GraspDetector.from_checkpoint(
            args.checkpoint, seed=args.seed, intrinsics=intrinsics
        )
        sink = make_sink(args.sink)
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


if __name__ == "__main__":
    sys.exit(main())
