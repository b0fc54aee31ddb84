"""Recording a room's depth frames into a folder: ``python -m dal_jax.robot --record=DIR``.

    python -m dal_jax.robot --source=folder:DIR|npz:FILE|ros:/topic --record=OUT
        [--record_min_change=METRES] [--max_frames=N] [--depth_scale=METRES_PER_UNIT]

writes the source's frames to OUT without running a detector (no ``--checkpoint`` needed); the
folder is what ``python -m datasets.prepare --dataset=frames --manual_dir=OUT`` reads.

Folder format (version 1):

* ``frame_000000_depth.tiff``: [H, W] float32 metres, holes NaN (uncompressed TIFF);
  ``frame_000000_rgb.png``: uint8 RGB, when the source has a colour image for the frame.
  Numbers follow the order frames were kept, starting after the highest ``frame_NNNNNN_*``
  file already in OUT: recording again into OUT continues it and never overwrites a file.
* ``frames.json``, rewritten atomically (temporary file + rename) after every kept frame:
  ``{"format": 1, "source": <the first recording's --source>, "frames": [{"name":
  "frame_000000", "source_name": <the frame's name in its source>, "stamp": <seconds or
  null>, "shape": [H, W]}, ...], "sessions": [{"source", "started", "first"}, ...]}``
  (one session per recording into OUT; ``first``: its first kept frame, or null).

A frame is skipped as a near-duplicate when less than ``--record_min_fraction`` (default 0.005)
of the pixels valid in it and in the last kept frame (the last frame of OUT when resuming)
changed by more than ``--record_min_change`` metres (default 0.01); 0 for the fraction keeps
every frame. The difference map is median-filtered (5 x 5) first: a sensor's pixel noise is
scattered and vanishes, a moved object is a region and stays. On the shared Cornell frames one
object put down elsewhere in front of a fixed camera changes 1.9% of the pixels, while a copy
with Kinect-like noise (1-4 mm) changes none. Frames without any valid
pixel and frames the source could not read are skipped and counted too. All frames of OUT must
have one size (one camera per folder): a frame of another size stops the recording with an
error. A progress line on stderr (updated in place) counts kept / seen / skipped frames; a
summary line ends the run. One recording at a time may write to OUT (a lock file,
``.frames.lock``).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import sys
import threading
import time

import cv2
import numpy as np
from PIL import Image

from dal_jax.data import preprocess
from dal_jax.data.frames import as_depth_metres
from dal_jax.robot.frames import Frame
from dal_jax.robot.stream import LatestSlot, _Feed

FORMAT = 1
MANIFEST = "frames.json"
_FRAME_FILE = re.compile(r"^frame_(\d{6,})_")


def frame_change(a: np.ndarray, b: np.ndarray, min_change: float = 0.01) -> float:
    """The fraction of the pixels valid in both depth frames [H, W] (metres) whose difference,
    median-filtered over 5 x 5 pixels, exceeds ``min_change`` metres; 1 when no pixel is valid
    in both (nothing says they are alike)."""
    both = ~preprocess.missing_mask(a) & ~preprocess.missing_mask(b)
    if not both.any():
        return 1.0
    diff = np.where(both, np.abs(a - b), 0.0).astype(np.float32)
    diff = cv2.medianBlur(diff, 5)  # pixel noise is scattered; a moved object is a region
    return float((diff[both] > min_change).mean())


class Recorder:
    """Writes kept frames to ``folder`` (format in the module docstring). ValueError with the
    reason when the folder cannot be written, is being recorded into by another process, or
    holds a manifest this code cannot extend."""

    def __init__(
        self,
        folder,
        source: str = "",
        min_change: float = 0.01,
        min_fraction: float = 0.005,
        flag="--record",
    ):
        self.folder = pathlib.Path(folder).expanduser()
        self.min_change, self.min_fraction = float(min_change), float(min_fraction)
        self.flag = flag
        self._lock_fd = _lock_folder(self.folder, flag)
        try:
            self.manifest = self._load_manifest(source)
        except ValueError:
            os.close(self._lock_fd)
            raise
        taken = [int(m.group(1)) for p in self.folder.iterdir() if (m := _FRAME_FILE.match(p.name))]
        self.next_index = max(taken, default=-1) + 1
        self.shape = tuple(self.manifest["frames"][0]["shape"]) if self.manifest["frames"] else None
        self.last = self._last_kept_depth()
        self.session = {"source": source, "started": _now(), "first": None}
        self.manifest["sessions"].append(self.session)
        self.kept: list[str] = []
        self.seen = self.near_duplicates = self.empty = self.errors = self.dropped = 0
        self._shown = 0.0

    # ------------------------------------------------------------------------ one frame

    def add(self, frame: Frame) -> bool:
        """Looks at one frame; writes it unless skipped. True when kept. ValueError when its
        size differs from the folder's frames (the recording must stop)."""
        self.seen += 1
        try:
            kept = self._add(frame)
        finally:
            self.progress()
        return kept

    def _add(self, frame: Frame) -> bool:
        if frame.error is not None or frame.depth is None:
            self.errors += 1
            return False
        try:
            depth = as_depth_metres(frame.depth, None, frame.name or "frame").copy()
        except ValueError as e:
            print(f"\nskipping {frame.name}: {e}", file=sys.stderr)
            self.errors += 1
            return False
        missing = preprocess.missing_mask(depth)
        if missing.all():
            self.empty += 1
            return False
        if self.shape is not None and depth.shape != self.shape:
            raise ValueError(
                f"frame {frame.name!r} is {_size(depth.shape)} but {self.folder} holds "
                f"{_size(self.shape)} frames; record one camera per folder (another {self.flag})"
            )
        depth[missing] = np.nan
        if (
            self.last is not None
            and frame_change(depth, self.last, self.min_change) < self.min_fraction
        ):
            self.near_duplicates += 1
            return False
        self._write(depth, frame)
        return True

    def _write(self, depth: np.ndarray, frame: Frame):
        name = f"frame_{self.next_index:06d}"
        # Written under another name and renamed, so a crash never leaves a half-written
        # file under a frame's name; the lock and the numbering keep the name unused.
        _write_new(self.folder / f"{name}_depth.tiff", Image.fromarray(depth), "TIFF")
        if frame.rgb is not None:
            rgb = np.asarray(frame.rgb)
            if rgb.dtype != np.uint8:
                rgb = np.clip(rgb, 0, 255).astype(np.uint8)
            _write_new(self.folder / f"{name}_rgb.png", Image.fromarray(rgb).convert("RGB"), "PNG")
        self.next_index += 1
        self.shape = depth.shape
        self.last = depth
        self.kept.append(name)
        self.session["first"] = self.session["first"] or name
        stamp = None if frame.stamp is None else float(frame.stamp)
        self.manifest["frames"].append(
            {"name": name, "source_name": frame.name, "stamp": stamp, "shape": list(depth.shape)}
        )
        self.save_manifest()

    # ------------------------------------------------------------------------ the folder

    def save_manifest(self):
        tmp = self.folder / f".{MANIFEST}.tmp"
        tmp.write_text(_manifest_text(self.manifest))
        os.replace(tmp, self.folder / MANIFEST)

    def _load_manifest(self, source: str) -> dict:
        path = self.folder / MANIFEST
        if not path.exists():
            return {"format": FORMAT, "source": source, "frames": self._unlisted(), "sessions": []}
        try:
            m = json.loads(path.read_text())
            ok = isinstance(m, dict) and isinstance(m.get("frames"), list)
            ok = ok and all(_is_entry(f) for f in m["frames"])
        except (OSError, ValueError) as e:
            m, ok = str(e), False
        if not ok:
            raise ValueError(
                f"{self.flag}={self.folder}: {MANIFEST} is unreadable or not a frame manifest "
                f"({str(m)[:80]}); move it aside or record into another folder"
            )
        if m.get("format") != FORMAT:
            raise ValueError(
                f"{self.flag}={self.folder}: {MANIFEST} has format {m.get('format')!r}, this "
                f"code writes format {FORMAT}; record into another folder"
            )
        m.setdefault("sessions", [])
        return m

    def _unlisted(self) -> list[dict]:
        """Manifest entries of frames already in the folder without a manifest (it was
        deleted): their numbers stay taken and their size sets the folder's."""
        out = []
        for p in sorted(self.folder.glob("frame_*_depth.tiff")):
            try:
                with Image.open(p) as im:
                    shape = [im.size[1], im.size[0]]
            except OSError:
                continue
            name = p.name[: -len("_depth.tiff")]
            out.append({"name": name, "source_name": None, "stamp": None, "shape": shape})
        return out

    def _last_kept_depth(self) -> np.ndarray | None:
        if not self.manifest["frames"]:
            return None
        path = self.folder / f"{self.manifest['frames'][-1]['name']}_depth.tiff"
        try:
            d = preprocess.read_tiff_raw(path).astype(np.float32)
        except (OSError, ValueError):
            return None  # then the first new frame is kept: nothing is lost
        d[preprocess.missing_mask(d)] = np.nan
        return d

    # ------------------------------------------------------------------------ reporting

    def progress(self, force: bool = False):
        now = time.monotonic()
        if force or now - self._shown > 0.1:
            self._shown = now
            skipped = self.near_duplicates + self.empty + self.errors
            print(
                f"\rrecording to {self.folder}: {len(self.kept)} kept / {self.seen} seen / "
                f"{skipped} skipped",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def summary(self) -> str:
        span = f" ({self.kept[0]}..{self.kept[-1]})" if len(self.kept) > 1 else ""
        span = f" ({self.kept[0]})" if len(self.kept) == 1 else span
        dropped = f", {self.dropped} dropped while writing" if self.dropped else ""
        return (
            f"recorded {len(self.kept)} frame(s) to {self.folder}{span} of {self.seen} seen; "
            f"skipped {self.near_duplicates} near-duplicate(s) (< {100 * self.min_fraction:g}% "
            f"of pixels changed by > {self.min_change:g} m), {self.empty} without valid depth, "
            f"{self.errors} "
            f"unreadable{dropped}; the folder holds {len(self.manifest['frames'])} frame(s)"
        )

    def close(self):
        """Writes the manifest (the session entry) and releases the folder."""
        if self._lock_fd is not None:
            self.save_manifest()
            os.close(self._lock_fd)
            self._lock_fd = None


def record(source, recorder: Recorder, max_frames: int | None = None, stop=None) -> Recorder:
    """Feeds ``source``'s frames to ``recorder`` until the source ends, ``max_frames`` were
    seen or ``stop`` is set. A replay (folder, npz) hands over every frame; a camera (ROS)
    keeps only the newest frame while one is being written (``recorder.dropped``)."""
    slot = LatestSlot()
    stop = stop or threading.Event()
    feed = _Feed(source, slot, stop)
    feed.thread.start()
    try:
        while not stop.is_set() and (max_frames is None or recorder.seen < max_frames):
            frame = slot.get(timeout=0.2)
            if frame is None:
                if slot.closed:
                    break
                continue
            recorder.add(frame)
    finally:
        stop.set()
        slot.close()
        feed.thread.join(timeout=2.0)
        recorder.dropped = slot.dropped
        recorder.progress(force=True)
        print(file=sys.stderr)  # ends the progress line
    return recorder


def _lock_folder(folder: pathlib.Path, flag: str) -> int:
    """Creates ``folder`` and locks it for this process; ValueError naming ``flag``."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ValueError(f"{flag}={folder}: {blocker} is a file, not a folder; choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / ".frames.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ValueError(
            f"{flag}={folder} cannot be written ({e.strerror}); choose a writable folder"
        ) from None
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ValueError(
            f"{flag}={folder}: another recording is writing to it; wait for it or choose "
            "another folder"
        ) from None
    return fd


def _is_entry(f) -> bool:
    """A manifest frame entry this code can extend: a name and an [H, W] shape."""
    if not (isinstance(f, dict) and isinstance(f.get("shape"), list)):
        return False
    return isinstance(f.get("name"), str) and len(f["shape"]) == 2


def _write_new(path: pathlib.Path, image: Image.Image, fmt: str):
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format=fmt)
    os.replace(tmp, path)


def _manifest_text(manifest: dict) -> str:
    """JSON with one frame a line: readable, and small enough to rewrite after every frame."""
    head = {k: v for k, v in manifest.items() if k not in ("frames", "sessions")}
    lines = [json.dumps(head)[:-1] + ', "frames": [']
    lines += [f"  {json.dumps(f)}," for f in manifest["frames"]]
    lines[-1] = lines[-1].rstrip(",")
    lines.append(f'], "sessions": {json.dumps(manifest["sessions"])}}}')
    return "\n".join(lines) + "\n"


def _size(shape) -> str:
    return f"{shape[0]}x{shape[1]}"


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
