"""The camera-to-grasp loop: a producer thread, a latest-frame-wins slot, the detector, a sink.

A source produces frames, a producer thread hands them to the detector through a size-1
`LatestSlot` (the latest frame wins: a frame that arrives while the detector is busy replaces
the waiting one, which is counted as dropped; nothing ever queues), and each frame's grasps go
to a sink as one JSON object:

    {"frame": i, "name": ..., "stamp": ..., "status": "ok" | "no grasp" | "no valid depth" |
     "error: ...", "grasps": [Grasp.to_dict(), ...], "detect_ms": ..., "latency_ms": ...}

``detect_ms`` is the detector's own time, ``latency_ms`` the time from the frame's arrival in the
slot to the result being handed to the sink (for an unpaced replay, from when the detector took
it). `LoopStats.summary` gives median / p90 / max of both and the dropped and error counts.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time

import numpy as np

from dal_jax.robot.detector import GraspDetector
from dal_jax.robot.frames import Frame


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


class _Feed:
    """The producer side of `run`: a thread moving the source's frames into the slot.

    A paced source (camera, or a replay with ``fps``) overwrites the slot, so frames may drop;
    an unpaced replay waits for the detector, so every frame is processed.
    """

    def __init__(self, source, slot: LatestSlot, stop: threading.Event):
        self.source, self.slot, self.stop = source, slot, stop
        self.paced = bool(getattr(source, "paced", True))
        self.errors = 0  # frames the source could not produce (counted even if dropped)
        self.thread = threading.Thread(target=self._produce, name="frame-source", daemon=True)

    def offer(self, frame: Frame):
        frame.arrived = time.perf_counter()
        if frame.error is not None:
            self.errors += 1
        self.slot.put(frame, wait=not self.paced)

    def _produce(self):
        try:
            if hasattr(self.source, "attach"):
                self.source.attach(self.offer, self.stop)
                return
            period = 1.0 / self.source.fps if getattr(self.source, "fps", None) else 0.0
            next_t = time.perf_counter()
            for frame in self.source:
                if self.stop.is_set():
                    break
                if period:
                    time.sleep(max(0.0, next_t - time.perf_counter()))
                    next_t += period
                self.offer(frame)
        except Exception as e:  # noqa: BLE001 - a dying thread would be silent; report, end
            print(f"frame source failed: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            self.slot.close()


def _process(detector, frame: Frame, paced: bool, top_k, roi, intrinsics):
    """One frame through the detector -> (record, detect ms, latency ms, failed).

    ``failed``: the detector refused the frame (ValueError); a frame the source could not
    produce is reported too but counted by `_Feed`.
    """
    t0 = time.perf_counter()
    if not paced:
        # A lossless replay offers the next frame as soon as the slot frees, so it
        # would "wait" one whole detection; its frames arrive when the detector asks.
        frame.arrived = t0
    failed = False
    if frame.error is not None:
        status, grasps = f"error: {frame.error}", []
    else:
        try:
            det = detector.analyse(
                frame.depth, frame.rgb, roi, top_k, intrinsics, metres=frame.metres
            )
            status, grasps = det.status, [g.to_dict() for g in det.grasps]
        except ValueError as e:
            status, grasps, failed = f"error: {e}", [], True
    t1 = time.perf_counter()
    detect_ms, latency_ms = (t1 - t0) * 1e3, (t1 - frame.arrived) * 1e3
    record = {
        "frame": frame.index,
        "name": frame.name,
        "stamp": frame.stamp,
        "status": status,
        "grasps": grasps,
        "detect_ms": round(detect_ms, 2),
        "latency_ms": round(latency_ms, 2),
    }
    return record, detect_ms, latency_ms, failed


def run(
    detector: GraspDetector,
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
    feed = _Feed(source, slot, stop)
    feed.thread.start()
    stats = LoopStats()
    try:
        while not stop.is_set():
            frame = slot.get(timeout=0.2)
            if frame is None:
                if slot.closed:
                    break
                continue
            record, detect_ms, latency_ms, failed = _process(
                detector, frame, feed.paced, top_k, roi, intrinsics
            )
            sink.send(record)
            stats.detect_ms.append(detect_ms)
            stats.latency_ms.append(latency_ms)
            stats.errors += int(failed)
            stats.processed += 1
            if max_frames is not None and stats.processed >= max_frames:
                break
    finally:
        stop.set()
        slot.close()
        feed.thread.join(timeout=2.0)
    stats.frames_in = slot.put_count
    stats.dropped = slot.dropped
    stats.errors += feed.errors
    return stats
