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
        [--top_k=N] [--roi=TOP,LEFT,SIZE] [--max_frames=N]
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
from collections.abc import Iterator

import numpy as np

from dal_jax import inference, preprocess

DEPTH_SUFFIXES = (".tiff", ".tif", ".png", ".npy")


@dataclasses.dataclass
class Frame:
    """One camera frame: depth [H, W] (float metres or integer millimetres, holes 0 / NaN),
    optional rgb [H, W, 3] uint8, a stamp (seconds) and a name for the logs."""

    depth: np.ndarray
    rgb: np.ndarray | None = None
    stamp: float | None = None
    name: str = ""
    index: int = 0
    arrived: float = 0.0  # time.perf_counter() when it entered the slot


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
    ``pcdXXXXr.png``). ``fps``: pace the replay like a camera (frames may then be dropped)."""

    def __init__(self, folder, fps: float | None = None):
        self.folder = pathlib.Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"frame folder {self.folder} does not exist")
        self.fps = fps
        self.files = [
            p
            for p in sorted(self.folder.iterdir())
            if p.suffix.lower() in DEPTH_SUFFIXES and not _is_colour_png(p)
        ]
        if not self.files:
            raise ValueError(f"no depth files ({', '.join(DEPTH_SUFFIXES)}) in {self.folder}")
        self.paced = fps is not None

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self.files):
            try:
                depth = inference.read_depth(p)
            except ValueError as e:
                print(f"skipping {p}: {e}", file=sys.stderr)
                continue
            rgb = None
            m = re.match(r"^(.*)d\.tiff?$", p.name)
            if m and (p.parent / f"{m.group(1)}r.png").is_file():
                rgb = preprocess.read_rgb(p.parent / f"{m.group(1)}r.png")
            yield Frame(depth, rgb, None, p.name, i)


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
    ``rgb`` [T, H, W, 3] and ``stamp`` [T] seconds. ``fps``: pace the replay."""

    def __init__(self, path, fps: float | None = None):
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

    def __iter__(self) -> Iterator[Frame]:
        depth = self.arrays["depth"]
        rgb, stamp = self.arrays.get("rgb"), self.arrays.get("stamp")
        for i in range(len(depth)):
            yield Frame(
                depth[i],
                None if rgb is None else rgb[i],
                None if stamp is None else float(stamp[i]),
                f"{self.path.name}[{i}]",
                i,
            )


def image_msg_to_depth(msg) -> np.ndarray:
    """sensor_msgs/Image (32FC1 metres or 16UC1 millimetres) -> [H, W] float32 metres, without
    cv_bridge (which needs a matching OpenCV build on the robot)."""
    dtypes = {"32FC1": np.float32, "16UC1": np.uint16, "mono16": np.uint16}
    if msg.encoding not in dtypes:
        raise ValueError(f"unsupported depth encoding {msg.encoding!r} (32FC1 or 16UC1)")
    dt = np.dtype(dtypes[msg.encoding]).newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    d = rows[:, : msg.width * dt.itemsize].copy().view(dt).reshape(msg.height, msg.width)
    return inference.as_depth_metres(d.astype(dt.newbyteorder("=")))


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

    def __init__(self, topic: str, node_name: str = "dal_jax_grasps"):
        self.topic = topic
        self.node_name = node_name
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

        def callback(msg):
            try:
                depth = image_msg_to_depth(msg)
            except ValueError as e:
                print(f"dropping a frame from {self.topic}: {e}", file=sys.stderr)
                return
            s = msg.header.stamp
            sec = getattr(s, "secs", getattr(s, "sec", 0))
            nsec = getattr(s, "nsecs", getattr(s, "nanosec", 0))
            on_frame(Frame(depth, None, sec + nsec * 1e-9, self.topic, count[0]))
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
    crash. Returns the `LoopStats`.
    """
    slot = LatestSlot()
    stop = stop or threading.Event()
    paced = bool(getattr(source, "paced", True))

    def offer(frame: Frame):
        frame.arrived = time.perf_counter()
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
    return stats


# ----------------------------------------------------------------------------- CLI


def make_source(spec: str, fps: float | None = None):
    """``folder:DIR`` | ``npz:FILE`` | ``ros:/topic`` -> a source."""
    kind, _, arg = spec.partition(":")
    if kind == "folder" and arg:
        return FolderSource(arg, fps)
    if kind == "npz" and arg:
        return NpzSource(arg, fps)
    if kind == "ros" and arg:
        return RosSource(arg)
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
    ap.add_argument("--top_k", type=int, default=1)
    ap.add_argument("--roi", help="TOP,LEFT,SIZE square region (default: centred)")
    ap.add_argument("--max_frames", type=int)
    args = ap.parse_args(argv)
    try:
        roi = [int(v) for v in args.roi.split(",")] if args.roi else None
        detector = inference.GraspDetector.from_checkpoint(
            args.checkpoint, seed=args.seed, intrinsics=args.intrinsics
        )
        source = make_source(args.source, args.fps)
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
