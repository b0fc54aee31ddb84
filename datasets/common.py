"""Shared pieces of the grasp-dataset builders: features, Cornell scene reading, depth
pre-processing (point cloud -> depth, inpainting, crop) and the split/skip bookkeeping.

Everything here is NumPy/OpenCV; nothing needs TensorFlow. Image arrays are [H, W] (depth,
float32 metres) and [H, W, 3] (RGB, uint8); rectangles are [G, 4, 2] (row, col) as in
dal_jax.data.grasp.
"""

from __future__ import annotations

import math
import pathlib
import re
import tarfile
import zipfile
import zlib

import numpy as np
import tensorflow_datasets as tfds

from dal_jax.data import grasp

# The depth pre-processing lives in dal_jax.data.preprocess (importable without TFDS, for the robot);
# re-exported here for the builders.
from dal_jax.data.preprocess import (  # noqa: F401
    crop_origin,
    inpaint,
    read_rgb,
    read_tiff,
    resize_depth,
)

VERSION = tfds.core.Version("1.0.0")
CORNELL_SHAPE = (480, 640)  # (rows, cols) of a Cornell frame; the PCD header may override it.


def features(size: int) -> tfds.features.FeaturesDict:
    """Per-example features (Tensor features only, so no TensorFlow is needed to encode or
    decode them):

    depth [S, S] float32 metres (inpainted crop); rgb [S, S, 3] uint8; rects [G, 4, 2] float32
    (row, col) in crop coordinates; crop_offset [2] int32 (row, col) of the crop's top-left
    corner in the original frame; id and object_id strings; initial bool (member of the
    recorded initial labelled set, Jacquard only).
    """
    t = tfds.features.Tensor
    return tfds.features.FeaturesDict(
        {
            "depth": t(shape=(size, size), dtype=np.float32),
            "rgb": t(shape=(size, size, 3), dtype=np.uint8),
            "rects": t(shape=(None, 4, 2), dtype=np.float32),
            "crop_offset": t(shape=(2,), dtype=np.int32),
            "id": t(shape=(), dtype=np.str_),
            "object_id": t(shape=(), dtype=np.str_),
            "initial": t(shape=(), dtype=np.bool_),
        }
    )


class PrepareError(ValueError):
    """A dataset cannot be built as asked (e.g. a split without any readable scene); the
    message says which files or settings to fix. `datasets.prepare` prints it as one line."""


class Skips:
    """Collects every skipped file, scene or rectangle with its reason (never drop silently)."""

    def __init__(self):
        self.items: list[tuple[str, str]] = []
        self.rects = 0  # NaN / malformed rectangles skipped

    def add(self, what, reason: str):
        self.items.append((str(what), reason))

    def as_dict(self) -> dict:
        return {"skipped": [list(i) for i in self.items], "skipped_rects": int(self.rects)}


def check_fields(dataset: str, cfg, rules: dict) -> None:
    """ValueError naming the ``--set`` field when a config value cannot work. ``rules``: field
    -> (predicate, what it must be)."""
    for field, (ok, what) in rules.items():
        value = getattr(cfg, field)
        try:
            good = bool(ok(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            raise ValueError(f"{dataset}: --set {field}={value!r}: {field} must be {what}")


def is_int(v) -> bool:
    """An integer (not a bool)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_number(v) -> bool:
    """A finite int or float (not a bool)."""
    return (is_int(v) or isinstance(v, (float, np.floating))) and math.isfinite(v)


def empty_split_error(dataset: str, split: str, tried: int, skipped) -> PrepareError:
    """The error for a split none of whose ``tried`` scenes could be read (TFDS refuses to
    write an empty split, and leaving it out would silently change the dataset)."""
    if not tried:
        return PrepareError(
            f"{dataset}: split '{split}' would be empty: no scene was assigned to it (too few "
            "scenes or views for the split settings); add scenes or change --set values"
        )
    first = f"; the first: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
    return PrepareError(
        f"{dataset}: split '{split}' has no readable scene: all {tried} of its scenes were "
        f"skipped ({len(skipped)} skip reason(s){first}). Fix or replace those files, or "
        "add more scenes to the manual folder"
    )


# ------------------------------------------------------------------------------- depth


def depth_from_pcd(text: str, default_shape=CORNELL_SHAPE) -> np.ndarray:
    """Cornell point cloud text (PCD v.7 ASCII) -> depth image [H, W] float32 metres.

    Point ``x y z rgb index`` goes to pixel (index // W, index % W) with value
    |(x, y, z)| / 1000. Pixels with no point, or with a NaN point, are 0 (missing). The frame
    size comes from the header's WIDTH/HEIGHT when the cloud is organised (HEIGHT > 1); the
    original Cornell clouds are unorganised (HEIGHT 1) and use ``default_shape`` (480 x 640).
    """
    header = {}
    pos = 0
    fields = ["x", "y", "z", "rgb", "index"]
    while True:
        end = text.find("\n", pos)
        line = text[pos : (len(text) if end < 0 else end)].strip()
        key = line.split(" ", 1)[0].upper() if line else ""
        if line.startswith("#") or key in {
            "VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS",
        }:  # fmt: skip
            if key == "FIELDS":
                fields = line.split()[1:]
            elif key in {"WIDTH", "HEIGHT"}:
                header[key] = int(line.split()[1])
            pos = len(text) if end < 0 else end + 1
            continue
        if key == "DATA":
            if line.split()[1].lower() != "ascii":
                raise ValueError(f"only ASCII point clouds are supported, got {line!r}")
            pos = len(text) if end < 0 else end + 1
        break
    shape = tuple(default_shape)
    if header.get("HEIGHT", 1) > 1:
        shape = (header["HEIGHT"], header["WIDTH"])
    # np.fromstring in text mode treats any whitespace (spaces, CR, LF) as a separator and
    # reads 'nan', which is far faster than line-by-line parsing of ~300k points.
    vals = np.fromstring(text[pos:], dtype=np.float64, sep=" ")
    if vals.size % len(fields):
        raise ValueError(f"point cloud body has {vals.size} numbers, not a multiple of {fields}")
    pts = vals.reshape(-1, len(fields))
    xyz = pts[:, [fields.index("x"), fields.index("y"), fields.index("z")]]
    idx = pts[:, fields.index("index")].astype(np.int64)
    depth = np.zeros(shape[0] * shape[1], np.float32)
    ok = np.isfinite(xyz).all(axis=1) & (idx >= 0) & (idx < depth.size)
    depth[idx[ok]] = np.linalg.norm(xyz[ok], axis=1) / 1000.0
    return depth.reshape(shape)


def as_str(value) -> str:
    """A decoded string feature (bytes, numpy str or str) -> str."""
    if isinstance(value, np.ndarray):
        value = value.item()
    return value.decode() if isinstance(value, bytes) else str(value)


def stable_hash(text: str) -> int:
    """A process-independent hash (Python's hash() is salted) for per-example seeds."""
    return zlib.crc32(text.encode())


# ------------------------------------------------------------------------------- Cornell

_CORNELL_FILE = re.compile(r"^pcd(\d{4})(r\.png|cpos\.txt|\.txt|d\.tiff)$")
_ARCHIVE = re.compile(r"\.(tar\.gz|tgz|tar|zip)$")

CORNELL_INSTRUCTIONS = """\
Download the Cornell Grasp Dataset (the archives 01.tar.gz .. 10.tar.gz, e.g. from the Kaggle
mirror "oneoneliu/cornell-grasp" or any copy of the original Cornell release) and put either the
archives or the extracted folders 01 .. 10 (each holding pcdXXXXr.png, pcdXXXXcpos.txt and
pcdXXXX.txt or pcdXXXXd.tiff) into the manual folder, by default
~/tensorflow_datasets/downloads/manual/cornell, or pass --manual_dir=DIR to
python -m datasets.prepare.
"""


def extract_archives(folder: pathlib.Path, dest: pathlib.Path, skips: Skips) -> list[pathlib.Path]:
    """Extracts the Cornell files of any archives in ``folder`` (once) into ``dest``; returns
    the extraction folders. Unreadable archives are recorded in ``skips``."""
    out = []
    for arc in sorted(p for p in folder.rglob("*") if p.is_file() and _ARCHIVE.search(p.name)):
        target = dest / _ARCHIVE.sub("", arc.name)
        done = target / ".extracted"
        if not done.exists():
            target.mkdir(parents=True, exist_ok=True)
            try:
                if arc.name.endswith(".zip"):
                    with zipfile.ZipFile(arc) as z:
                        for m in z.namelist():
                            if _CORNELL_FILE.match(pathlib.PurePath(m).name):
                                (target / pathlib.PurePath(m).name).write_bytes(z.read(m))
                else:
                    with tarfile.open(arc) as t:
                        for m in t:
                            name = pathlib.PurePath(m.name).name
                            if m.isfile() and _CORNELL_FILE.match(name):
                                (target / name).write_bytes(t.extractfile(m).read())
            except (OSError, tarfile.TarError, zipfile.BadZipFile) as e:
                skips.add(arc, f"unreadable archive: {e}")
                continue
            done.touch()
        out.append(target)
    return out


def find_cornell_scenes(folders) -> dict[str, dict[str, pathlib.Path]]:
    """Scene id ``pcdXXXX`` -> {'rgb', 'cpos', 'pcd', 'tiff'} paths, over all ``folders``
    (searched recursively). Later folders do not override earlier ones."""
    scenes: dict[str, dict[str, pathlib.Path]] = {}
    kinds = {"r.png": "rgb", "cpos.txt": "cpos", ".txt": "pcd", "d.tiff": "tiff"}
    for folder in folders:
        for p in sorted(pathlib.Path(folder).rglob("pcd*")):
            m = _CORNELL_FILE.match(p.name)
            if m and p.is_file():
                scenes.setdefault(f"pcd{m.group(1)}", {}).setdefault(kinds[m.group(2)], p)
    return dict(sorted(scenes.items()))


def load_cornell_scene(files: dict, size: int, skips: Skips):
    """Reads and pre-processes one Cornell scene.

    Depth comes from ``pcdXXXXd.tiff`` when present (cheap), else from the point cloud;
    missing depth is inpainted on the full frame; the ``size`` square crop is centred on the
    positive rectangles. Returns a feature dict without id/object_id/initial, or None when the
    scene is skipped (the reason goes to ``skips``).
    """
    scene = files.get("rgb", files.get("cpos", files.get("pcd", files.get("tiff"))))
    scene = scene.parent / re.sub(r"(r\.png|cpos\.txt|\.txt|d\.tiff)$", "", scene.name)
    for need in ("cpos", "rgb"):
        if need not in files:
            skips.add(scene, f"missing {need} file")
            return None
    if "tiff" not in files and "pcd" not in files:
        skips.add(scene, "missing depth (neither pcdXXXX.txt nor pcdXXXXd.tiff)")
        return None
    try:
        rects, bad, notes = grasp.parse_cornell_report(files["cpos"].read_text(errors="strict"))
    except (OSError, UnicodeDecodeError) as e:
        skips.add(files["cpos"], f"unreadable: {e}")
        return None
    if bad:
        skips.rects += bad
        skips.add(files["cpos"], f"{bad} rectangle(s) skipped: {'; '.join(notes)}")
    if len(rects) == 0:
        skips.add(scene, "no valid positive rectangle")
        return None
    try:
        rgb = read_rgb(files["rgb"])
    except OSError as e:
        skips.add(files["rgb"], f"unreadable: {e}")
        return None
    depth = None
    if "tiff" in files:
        try:
            depth = read_tiff(files["tiff"])
        except (OSError, ValueError) as e:
            if "pcd" not in files:
                skips.add(files["tiff"], f"unreadable ({e}) and no point cloud to use instead")
                return None
            skips.add(files["tiff"], f"unreadable ({e}); the point cloud is used instead")
    if depth is None:
        try:
            depth = depth_from_pcd(files["pcd"].read_text(), rgb.shape[:2])
        except (OSError, ValueError, UnicodeDecodeError) as e:
            skips.add(files["pcd"], f"unreadable point cloud: {e}")
            return None
    if depth.shape != rgb.shape[:2]:
        skips.add(scene, f"depth shape {depth.shape} != RGB shape {rgb.shape[:2]}")
        return None
    if min(depth.shape) < size:
        skips.add(scene, f"frame {depth.shape} smaller than the {size} crop")
        return None
    depth = inpaint(depth)
    top, left = crop_origin(rects, depth.shape, size)
    return {
        "depth": depth[top : top + size, left : left + size],
        "rgb": rgb[top : top + size, left : left + size],
        "rects": grasp.offset_rects(rects, (-top, -left)).astype(np.float32),
        "crop_offset": np.array([top, left], np.int32),
    }


def split_ids(ids, test_fraction: float, seed: int, mode: str = "image"):
    """Splits sorted scene ids into (train, test) lists.

    ``image``: the paper's random image-wise split (seeded permutation; the first
    ``round(test_fraction * N)`` go to test). ``object``: no object labels ship with the
    Cornell files, but all images of one object are consecutive, so contiguous blocks of the
    sorted ids are kept together: ids are cut into blocks of 5 consecutive scenes and whole
    blocks are assigned at random (only objects straddling a block edge can leak).
    """
    ids = sorted(ids)
    n_test = round(test_fraction * len(ids))
    rng = np.random.default_rng(seed)
    if mode == "image":
        perm = rng.permutation(len(ids))
        test = {ids[i] for i in perm[:n_test]}
    elif mode == "object":
        blocks = [ids[i : i + 5] for i in range(0, len(ids), 5)]
        test = set()
        for b in rng.permutation(len(blocks)):
            if len(test) >= n_test:
                break
            test.update(blocks[b])
    else:
        raise ValueError(f"split mode must be 'image' or 'object', got {mode!r}")
    return [i for i in ids if i not in test], [i for i in ids if i in test]
