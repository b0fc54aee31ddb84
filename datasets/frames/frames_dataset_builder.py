"""`frames`: a folder of depth frames from the user's own room, as square crops for active
learning.

Source (the manual folder, ``--manual_dir=DIR``): a recording of ``python -m dal_jax.robot
--record=DIR`` (``frame_000000_depth.tiff`` with its ``frame_000000_rgb.png``), or any folder of
depth files (.tiff/.tif float metres, 16-bit .png millimetres, .npy), in name order, read as the
robot's folder source reads them (`dal_jax.data.frames`). RGB comes from the image its naming
pairs with the depth file (`dal_jax.data.frames.paired_rgb_path`), else it is black.

Each frame's region (config ``roi``: "" = the centred square of side min(H, W), or
"TOP,LEFT,SIDE" in frame pixels) is area-resized to ``size`` x ``size`` with holes kept, then
the holes are inpainted, as the other builders do. Labels are optional: a Cornell-format
rectangle file beside a frame (``frame_000000_cpos.txt`` for a recorded frame,
``<stem>cpos.txt`` otherwise, Cornell's ``pcdXXXXd.tiff`` -> ``pcdXXXXcpos.txt``; frame pixel
coordinates, ``x y`` = col row) is mapped into the crop (rectangles whose centre falls outside
it are dropped and reported) and the frame is ``labelled``; other frames have no rectangles.
Every frame goes to the one split ``train``: the active-learning loop draws its own hold-out.
Ids: ``frame_000000`` for a recorded frame, else the file name.

The prepared dataset records its folder and a fingerprint of the files it was made of (each
depth file, its RGB image and its rectangle file: name, size, modification time);
`changed_since_prepared` compares them with the folder now, so that ``datasets.prepare`` rebuilds
a dataset whose frames were added, removed or rewritten since.

Refused, one line each: a folder without any readable depth frame, frames of different sizes
without a ``roi`` that fits them all, a folder whose frames all lack valid depth. Frames
without valid depth among good ones are skipped with a warning; unreadable files are skipped
and listed in the summary.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import warnings
from collections import Counter
from typing import ClassVar

import cv2
import numpy as np
import tensorflow_datasets as tfds

from dal_jax.data import grasp, preprocess
from dal_jax.data.frames import depth_files, paired_rgb_path, read_depth
from datasets import common
from datasets.cornell import cornell_dataset_builder as cornell

INSTRUCTIONS = """\
Record depth frames with python -m dal_jax.robot --source=... --record=DIR (or use any folder of
depth files: .tiff/.tif float metres, 16-bit .png millimetres, .npy; one camera size per folder)
and pass --manual_dir=DIR to python -m datasets.prepare --dataset=frames.
"""


@dataclasses.dataclass
class FramesConfig(tfds.core.BuilderConfig):
    """size: side of the square crops; roi: "" (centred square of side min(H, W)) or
    "TOP,LEFT,SIDE", the square region of every frame (frame pixels)."""

    size: int = 300
    roi: str = ""


def parse_roi(roi) -> tuple[int, int, int] | None:
    """``roi`` config -> (top, left, side), None for ""; ValueError for anything else."""
    if roi in ("", None):
        return None
    parts = roi.split(",") if isinstance(roi, str) else list(roi)
    vals = [int(str(v).strip()) for v in parts]
    if len(vals) != 3 or vals[0] < 0 or vals[1] < 0 or vals[2] < 1:
        raise ValueError(roi)
    return vals[0], vals[1], vals[2]


def check_config(dataset: str, cfg: FramesConfig) -> None:
    """ValueError naming the ``--set`` field of a config value that cannot work."""
    common.check_fields(
        dataset,
        cfg,
        {
            "size": (lambda v: common.is_int(v) and v >= 12, "an integer >= 12 (pixels)"),
            "roi": (
                lambda v: v == "" or parse_roi(v),
                '"" (centred square) or TOP,LEFT,SIDE integers (frame pixels, SIDE >= 1)',
            ),
        },
    )


def frame_id(path: pathlib.Path) -> str:
    """``frame_000000`` for a recorded frame, else the file name (unique in the folder)."""
    name = path.name
    if name.startswith("frame_") and name.endswith("_depth.tiff"):
        return name[: -len("_depth.tiff")]
    return name


def label_path(path: pathlib.Path) -> pathlib.Path | None:
    """The Cornell-format rectangle file beside a depth file (module docstring), or None."""
    stem = path.stem
    names = [stem[: -len("_depth")] + "_cpos.txt"] if stem.endswith("_depth") else []
    names += [stem[:-1] + "cpos.txt"] if stem.endswith("d") else []
    names += [stem + "cpos.txt", stem + "_cpos.txt"]
    return next((path.with_name(n) for n in names if path.with_name(n).is_file()), None)


def region(shape, roi) -> tuple[int, int, int]:
    """(top, left, side) of a frame's crop: ``roi`` or the centred square."""
    if roi is not None:
        return roi
    side = min(shape)
    return (*preprocess.centre_origin(shape, side), side)


def _names(paths, n: int = 5) -> str:
    names = [p.name if isinstance(p, pathlib.Path) else str(p) for p in paths]
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _size(shape) -> str:
    return f"{shape[0]}x{shape[1]}"


def frames_root(manual_dir) -> pathlib.Path:
    """The folder of frames in a manual folder (its ``frames`` subfolder when it has one);
    FileNotFoundError naming --manual_dir when it does not exist."""
    root = pathlib.Path(manual_dir)
    root = root / "frames" if (root / "frames").is_dir() else root
    if not root.is_dir():
        raise FileNotFoundError(
            f"frames: the folder {root} does not exist; pass --manual_dir=DIR, a folder of "
            "depth frames (e.g. one written by python -m dal_jax.robot --record=DIR)"
        )
    return root


def fingerprint(root: pathlib.Path) -> dict[str, list[int]]:
    """{file name: [size, modification time in ns]} of every file a dataset of ``root`` is made
    of: each depth file with its paired RGB image and its rectangle file."""
    out = {}
    for p in depth_files(root):
        for f in (p, paired_rgb_path(p), label_path(p)):
            if f is not None:
                st = f.stat()
                out[f.name] = [st.st_size, st.st_mtime_ns]
    return out


def _change(before: dict, now: dict) -> str:
    """What differs between two fingerprints, e.g. "2 file(s) added (a.tiff, b.tiff)"."""
    parts = []
    for what, names in (
        ("added", sorted(set(now) - set(before))),
        ("removed", sorted(set(before) - set(now))),
        ("rewritten", sorted(n for n in set(now) & set(before) if now[n] != list(before[n]))),
    ):
        if names:
            parts.append(f"{len(names)} file(s) {what} ({_names(names, 3)})")
    return ", ".join(parts)


def changed_since_prepared(builder, manual_dir) -> str | None:
    """Why the prepared ``frames`` dataset of ``builder`` no longer matches the folder
    ``manual_dir`` (one line: another folder, or files added, removed or rewritten), or None
    when it matches or is not prepared. FileNotFoundError when the folder does not exist."""
    root = frames_root(manual_dir)
    if not builder.is_prepared():
        return None
    meta = builder.info.metadata or {}
    where = f"the dataset prepared in {builder.data_dir}"
    if "files" not in meta:  # prepared before fingerprints were recorded
        return f"{where} records no fingerprint of its folder"
    if meta.get("folder") != str(root.resolve()):
        return f"{where} was made from {meta.get('folder')}, not {root.resolve()}"
    change = _change(meta["files"], fingerprint(root))
    return f"{root} changed since {where}: {change}" if change else None


def scan(root: pathlib.Path, roi, skips: common.Skips) -> list[tuple[pathlib.Path, tuple]]:
    """(path, shape) of every usable frame of ``root``, in name order. Raises
    `common.PrepareError` for the folder-wide problems of the module docstring; frames
    without valid depth (among good ones) and unreadable files go to ``skips``."""
    looked = [p for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")]
    candidates = depth_files(root)
    good, empty, first_error = [], [], ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", preprocess.DepthUnitsWarning)
        for p in candidates:
            try:
                d = read_depth(p, allow_empty=True)
            except (OSError, ValueError) as e:
                skips.add(p, f"unreadable: {e}")
                first_error = first_error or f"; {p.name}: {e}"
                continue
            (empty if preprocess.missing_mask(d).all() else good).append((p, d.shape))
    if caught:
        print(f"warning: {caught[0].message} ({len(caught)} frame(s))", file=sys.stderr)
    if not good and not empty:
        raise common.PrepareError(
            f"no readable depth frames in {root} ({len(looked)} files looked at"
            f"{': ' + _names(looked) if looked else ''}{first_error}); give a folder of "
            ".tiff/.tif (metres), 16-bit .png (millimetres) or .npy depth files"
        )
    if empty:
        n = len(empty) + len(good)
        names = _names(frame_id(p) for p, _ in empty)
        msg = f"{len(empty)} of {n} frames have no valid depth: {names}"
        if not good:
            raise common.PrepareError(f"{msg}; no frame is left to build from")
        print(f"warning: {msg}; they are skipped", file=sys.stderr)
        for p, _ in empty:
            skips.add(p, "no valid depth pixel")
    sizes = Counter(shape for _, shape in good).most_common()
    if roi is None and len(sizes) > 1:
        listed = ", ".join(f"{_size(s)} ({k} frames)" for s, k in sizes)
        raise common.PrepareError(
            f"frames have different sizes: {listed}; record one camera per folder or give "
            "--set roi=TOP,LEFT,SIDE"
        )
    if roi is not None:
        top, left, side = roi
        small = [(p, s) for p, s in good if top + side > s[0] or left + side > s[1]]
        if small:
            raise common.PrepareError(
                f"--set roi={top},{left},{side}: the region (rows {top}..{top + side - 1}, "
                f"cols {left}..{left + side - 1}) does not fit {len(small)} frame(s) of "
                f"{_size(small[0][1])} ({_names(p for p, _ in small)}); give a smaller roi"
            )
    return good


def load_frame(path: pathlib.Path, box, size: int, skips: common.Skips) -> dict | None:
    """One frame -> a feature dict (module docstring), or None (the reason in ``skips``)."""
    top, left, side = box
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", preprocess.DepthUnitsWarning)  # said by `scan`
            depth = read_depth(path)
    except (OSError, ValueError) as e:
        skips.add(path, f"unreadable: {e}")
        return None
    crop = depth[top : top + side, left : left + side]
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb_path = paired_rgb_path(path)
    if rgb_path is not None:
        try:
            image = preprocess.read_rgb(rgb_path)
        except OSError as e:
            image = None
            skips.add(rgb_path, f"unreadable ({e}); the frame has a black image")
        if image is not None and image.shape[:2] != depth.shape:
            skips.add(rgb_path, f"{_size(image.shape)} != depth {_size(depth.shape)}; not used")
        elif image is not None:
            image = np.ascontiguousarray(image[top : top + side, left : left + side])
            rgb = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    rects, labelled = np.zeros((0, 4, 2), np.float32), False
    labels = label_path(path)
    if labels is not None:
        try:
            found, bad, notes = grasp.parse_cornell_report(labels.read_text(errors="strict"))
        except (OSError, UnicodeDecodeError) as e:
            skips.add(labels, f"unreadable ({e}); the frame is kept unlabelled")
        else:
            labelled = True
            if bad:
                skips.rects += bad
                skips.add(labels, f"{bad} rectangle(s) skipped: {'; '.join(notes)}")
            mapped = grasp.scale_rects(grasp.offset_rects(found, (-top, -left)), size / side)
            centre = mapped.reshape(-1, 4, 2).mean(axis=1)
            inside = np.all((centre >= 0) & (centre < size), axis=1)
            if (~inside).any():
                skips.add(labels, f"{int((~inside).sum())} rectangle(s) outside the crop dropped")
            rects = mapped.reshape(-1, 4, 2)[inside].astype(np.float32)
    return {
        "depth": preprocess.inpaint(preprocess.resize_depth(crop, size)),
        "rgb": rgb,
        "rects": rects,
        "crop_offset": np.array([top, left], np.int32),
        "id": frame_id(path),
        "object_id": "",
        "initial": False,
        "labelled": labelled,
    }


class Builder(cornell.Builder):
    """Depth frames of a folder (array_record, Tensor features only)."""

    VERSION = common.VERSION
    BUILDER_CONFIGS: ClassVar[list] = [
        FramesConfig(name="default", description="centred square crops of every frame"),
    ]
    DEFAULT_CONFIG_NAME = "default"
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    DESCRIPTION = __doc__

    def _check_config(self):
        check_config(self.name, self.builder_config)

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.size
        features = {
            **common.features(size),
            "labelled": tfds.features.Tensor(shape=(), dtype=np.bool_),
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(features),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,  # examples stay in name (= recording) order
        )

    def _split_generators(self, dl_manager):
        root = frames_root(str(dl_manager._manual_dir))
        files = fingerprint(root)  # before reading: a frame written meanwhile counts as new
        self._skips = common.Skips()
        roi = parse_roi(self.builder_config.roi)
        good = scan(root, roi, self._skips)
        box = region(good[0][1], roi)  # one size unless roi is given: one region for all
        self.info.metadata.update(
            self._skips.as_dict(),
            folder=str(root.resolve()),
            files=files,
            region=list(box),
            frame_shape=list(good[0][1]),
        )
        return {"train": self._generate_examples(good, box)}

    def _generate_examples(self, good, box):
        size, yielded, labelled = self.builder_config.size, 0, 0
        for path, _ in good:
            ex = load_frame(path, box, size, self._skips)
            if ex is None:
                continue
            yielded += 1
            labelled += int(ex["labelled"])
            yield ex["id"], ex
        self.info.metadata.update(self._skips.as_dict(), labelled=labelled)
        if not yielded:  # TFDS would fail with "No examples were yielded"
            raise common.empty_split_error(self.name, "train", len(good), self._skips.items)
