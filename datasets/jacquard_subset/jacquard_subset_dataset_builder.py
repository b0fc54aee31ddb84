"""`jacquard_subset`: the paper's Jacquard subset. From a Jacquard folder (the full dataset or any
folder of Jacquard-format object folders) choose `num_objects` objects with a seed (all of them
if there are fewer) and up to `views` views each; `test` = one random view per object, `train`
(the pool) = the rest, with one random pool view per object flagged `initial` (the recorded
initial labelled set). Images are scaled 1024 -> `size` (300); depth is the perfect (rendered)
depth by default or the stereo depth (-1 = missing, inpainted) in the `stereo` config.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import ClassVar

import cv2
import numpy as np
import tensorflow_datasets as tfds

from dal_jax.data import grasp
from datasets import common
from datasets.cornell import cornell_dataset_builder as cornell

INSTRUCTIONS = """\
Download the Jacquard dataset (https://jacquard.liris.cnrs.fr/, registration needed; the
Jacquard_Samples archive is enough for a try) and put the extracted object folders (each holding
<view>_<object>_RGB.png, _perfect_depth.tiff, _stereo_depth.tiff and _grasps.txt), at any depth,
into the manual folder, by default ~/tensorflow_datasets/downloads/manual/jacquard, or pass
--manual_dir=DIR to python -m datasets.prepare.
"""

_GRASPS = re.compile(r"^(\d+)_(.+)_grasps\.txt$")


def check_config(dataset: str, cfg) -> None:
    """ValueError naming the ``--set`` field of a config value that cannot work."""
    common.check_fields(
        dataset,
        cfg,
        {
            "num_objects": (lambda v: common.is_int(v) and v >= 1, "an integer >= 1"),
            "views": (lambda v: common.is_int(v) and v >= 2, "an integer >= 2 (one is the test)"),
            "seed": (lambda v: common.is_int(v) and v >= 0, "an integer >= 0"),
            "depth": (lambda v: v in ("perfect", "stereo"), "'perfect' or 'stereo'"),
            "size": (lambda v: common.is_int(v) and v >= 12, "an integer >= 12 (pixels)"),
        },
    )


@dataclasses.dataclass
class JacquardConfig(tfds.core.BuilderConfig):
    """num_objects objects x views views chosen with seed; depth 'perfect' or 'stereo';
    size of the (square) scaled images."""

    num_objects: int = 300
    views: int = 5
    seed: int = 0
    depth: str = "perfect"
    size: int = 300


def find_views(
    root: pathlib.Path, skips: common.Skips | None = None
) -> dict[str, list[tuple[int, pathlib.Path]]]:
    """object id -> sorted [(view index, file prefix path)] of every ``*_grasps.txt`` found.

    A view found twice (the same object folder copied or extracted twice) is kept once, the
    first in path order; the others are recorded in ``skips`` (a duplicate would otherwise land
    in both the pool and the test split, or give two examples the same key)."""
    objects: dict[str, dict[int, pathlib.Path]] = {}
    for p in sorted(root.rglob("*_grasps.txt")):
        m = _GRASPS.match(p.name)
        if m:
            prefix = p.parent / p.name[: -len("grasps.txt")]
            views = objects.setdefault(m.group(2), {})
            view = int(m.group(1))
            if view in views:
                if skips is not None:
                    skips.add(
                        p, f"duplicate of view {view} of {m.group(2)} in {views[view].parent}"
                    )
                continue
            views[view] = prefix
    return {k: sorted(v.items()) for k, v in sorted(objects.items())}


def choose(objects: dict, num_objects: int, views: int, seed: int):
    """The seeded subset. Returns (train, test) lists of (object id, view, prefix, initial)."""
    rng = np.random.default_rng(seed)
    names = sorted(objects)
    picked = sorted(rng.choice(len(names), size=min(num_objects, len(names)), replace=False))
    train, test = [], []
    for i in picked:
        obj = names[i]
        vs = objects[obj]
        if len(vs) > views:
            vs = [vs[j] for j in sorted(rng.choice(len(vs), size=views, replace=False))]
        t = int(rng.integers(len(vs)))
        rest = [v for j, v in enumerate(vs) if j != t]
        init = int(rng.integers(len(rest))) if rest else -1
        test.append((obj, *vs[t], False))
        train += [(obj, *v, j == init) for j, v in enumerate(rest)]
    return train, test


def load_view(prefix: pathlib.Path, depth_kind: str, size: int, skips: common.Skips):
    """One Jacquard view -> feature dict without ids, or None (reason in ``skips``)."""
    gfile = pathlib.Path(str(prefix) + "grasps.txt")
    try:
        text = gfile.read_text()
        rgb = common.read_rgb(str(prefix) + "RGB.png")
        depth = common.read_tiff(str(prefix) + f"{depth_kind}_depth.tiff")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        skips.add(gfile.parent / gfile.name[: -len("_grasps.txt")], f"unreadable view: {e}")
        return None
    if depth.shape != rgb.shape[:2] or depth.shape[0] != depth.shape[1]:
        skips.add(gfile, f"depth {depth.shape} / RGB {rgb.shape[:2]} not one square size")
        return None
    scale = size / depth.shape[0]  # 300 / 1024 for the real data
    rects, bad = grasp.parse_jacquard(text, scale)
    if bad:
        skips.rects += bad
        skips.add(gfile, f"{bad} malformed or NaN grasp line(s) skipped")
    if len(rects) == 0:
        skips.add(gfile, "no valid grasp")
        return None
    return {
        "depth": common.inpaint(common.resize_depth(depth, size)),
        "rgb": cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA),
        "rects": rects.astype(np.float32),
        "crop_offset": np.zeros(2, np.int32),
    }


class Builder(cornell.Builder):
    """Jacquard subset (array_record, Tensor features only)."""

    VERSION = common.VERSION
    BUILDER_CONFIGS: ClassVar[list] = [
        JacquardConfig(name="perfect", description="rendered (perfect) depth"),
        JacquardConfig(name="stereo", depth="stereo", description="simulated stereo depth"),
    ]
    DEFAULT_CONFIG_NAME = "perfect"
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    DESCRIPTION = __doc__

    def _check_config(self):
        check_config(self.name, self.builder_config)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=common.features(self.builder_config.size),
            metadata=tfds.core.MetadataDict(),
            homepage="https://jacquard.liris.cnrs.fr/",
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        if cfg.depth not in ("perfect", "stereo"):
            raise ValueError(f"depth must be 'perfect' or 'stereo', got {cfg.depth!r}")
        root = cornell.resolve_manual_dir(dl_manager, "jacquard", INSTRUCTIONS)
        self._skips = common.Skips()
        objects = find_views(root, self._skips)
        if not objects:
            raise FileNotFoundError(f"jacquard: no *_grasps.txt under {root}.\n{INSTRUCTIONS}")
        train, test = choose(objects, cfg.num_objects, cfg.views, cfg.seed)
        self.info.metadata.update(self._skips.as_dict(), objects_found=len(objects))
        return {
            "train": self._generate_examples(train, "train"),
            "test": self._generate_examples(test, "test"),
        }

    def _generate_examples(self, items, split):
        cfg = self.builder_config
        first_skip, seen = len(self._skips.items), set()
        for obj, view, prefix, initial in items:
            key = f"{view}_{obj}"
            if key in seen:  # find_views keeps one copy of a view; never write a key twice
                self._skips.add(prefix, f"duplicate example key {key}")
                continue
            ex = load_view(prefix, cfg.depth, cfg.size, self._skips)
            if ex is None:
                continue
            seen.add(key)
            ex.update(id=key, object_id=obj, initial=initial)
            yield key, ex
        self.info.metadata.update(self._skips.as_dict())
        if not seen:  # TFDS would fail with "No examples were yielded"
            raise common.empty_split_error(
                self.name, split, len(items), self._skips.items[first_skip:]
            )
