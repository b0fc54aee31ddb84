"""`synthetic_grasps`: the built-in no-download dataset. Procedural cluttered top-down depth
scenes (see scenes.py) written in the real Cornell file format into a temporary folder and read
back through the Cornell reader (point cloud -> depth, inpainting, crop, rectangle parsing).
Default config: 300 scenes, 96x96 crops, seed 0, seeded random 80/20 train (pool) / test split.

``kind_mix='longtail'``: the pool's objects are drawn with the long-tailed kind frequencies of
`scenes.KIND_MIX` (boxes and cylinders ten times as common as each other kind) while the test
scenes keep every kind alike, so a strategy that finds the rare kinds can matter.

The metadata records the objects' kinds: ``kinds`` counts them per split ({"train": {kind:
objects}, "test": {...}}); ``scene_kinds`` maps every scene id to its objects per kind, a list
in the order of ``kind_names`` (= `scenes.KINDS`), which `dal_jax.data.pools.load_dataset` turns
into ``Pool.kinds`` [N, K] (version 2.1.0 on; older builds lack it and are rebuilt).
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from typing import ClassVar

import tensorflow_datasets as tfds

from datasets import common
from datasets.cornell import cornell_dataset_builder as cornell
from datasets.synthetic_grasps import scenes as synth


@dataclasses.dataclass
class SyntheticConfig(cornell.CornellConfig):
    """num_scenes scenes at crop_size pixels, generated from seed (which also seeds the split)."""

    num_scenes: int = 300
    kind_mix: str = "uniform"  # a key of scenes.KIND_MIX for the pool; the test set is uniform
    min_objects: int = 3  # objects per scene, drawn uniformly from [min_objects, max_objects]
    max_objects: int = 6


def make_config(num_scenes: int = 300, crop_size: int = 96, seed: int = 0) -> SyntheticConfig:
    """A config for any size/count/seed; its name encodes them so builds never collide."""
    name = (
        "default"
        if (num_scenes, crop_size, seed) == (300, 96, 0)
        else (f"n{num_scenes}_s{crop_size}_seed{seed}")
    )
    return SyntheticConfig(
        name=name, num_scenes=num_scenes, crop_size=crop_size, seed=seed, test_fraction=0.2
    )


class Builder(cornell.Builder):
    """Synthetic Cornell-format grasp scenes (array_record, Tensor features only)."""

    VERSION = tfds.core.Version("3.0.0")
    RELEASE_NOTES: ClassVar[dict] = {
        "3.0.0": "Eight kinds (rings held by the rim, L-shapes by an arm); objects per scene "
        "configurable (min_objects, max_objects).",
        "2.1.0": "Per-scene object-kind counts in the metadata (scene_kinds, kind_names).",
        "2.0.0": "Six object kinds, 3-6 objects, 0.62-0.80 m camera distance, gripper limits.",
        "1.0.0": "Boxes, cylinders and hexagonal prisms, 2-4 objects at 0.70 m.",
    }
    BUILDER_CONFIGS: ClassVar[list] = [make_config()]
    DEFAULT_CONFIG_NAME = "default"
    MANUAL_DOWNLOAD_INSTRUCTIONS = None
    DESCRIPTION = __doc__

    def _check_config(self):
        super()._check_config()
        n = self.builder_config.num_scenes
        if not (common.is_int(n) and n >= 1):
            raise ValueError(
                f"{self.name}: --set num_scenes={n!r}: num_scenes must be an integer >= 1"
            )
        lo, hi = self.builder_config.min_objects, self.builder_config.max_objects
        if not (common.is_int(lo) and common.is_int(hi) and 1 <= lo <= hi):
            raise ValueError(
                f"{self.name}: --set min_objects={lo!r} max_objects={hi!r}: need integers with "
                "1 <= min_objects <= max_objects"
            )
        mix = self.builder_config.kind_mix
        if mix not in synth.KIND_MIX:
            raise ValueError(
                f"{self.name}: --set kind_mix={mix!r}: valid: {', '.join(synth.KIND_MIX)}"
            )

    def _scenes(self, dl_manager, skips):
        cfg = self.builder_config
        self._cache = {}
        # The split is known before the scenes are drawn (it depends on the ids only), so the
        # test scenes can keep the uniform mix while the pool gets the configured one.
        ids = [synth.scene_id(i) for i in range(cfg.num_scenes)]
        _, test = common.split_ids(ids, cfg.test_fraction, cfg.seed, cfg.split_mode)
        test = set(test)

        def mix_of(sid):
            return synth.KIND_MIX["uniform" if sid in test else cfg.kind_mix]

        with tempfile.TemporaryDirectory(prefix="synthetic_grasps_") as tmp:
            kinds = synth.write_scenes(
                pathlib.Path(tmp),
                cfg.num_scenes,
                cfg.crop_size,
                cfg.seed,
                mix_of=mix_of,
                objects=(cfg.min_objects, cfg.max_objects),
            )
            self.info.metadata["kinds"] = _kind_counts(kinds, test)
            self.info.metadata["kind_names"] = list(synth.KINDS)
            self.info.metadata["scene_kinds"] = {
                sid: [names.count(k) for k in synth.KINDS] for sid, names in kinds.items()
            }
            found = common.find_cornell_scenes([tmp])
            # Read every scene now, while the files exist; the examples are small.
            for sid, files in found.items():
                self._cache[sid] = common.load_cornell_scene(files, cfg.crop_size, skips)
        return {sid: None for sid in found}

    def _load(self, scene_id, files, skips):
        return self._cache.pop(scene_id)


def _kind_counts(kinds: dict, test: set) -> dict:
    """{"train": {kind: objects}, "test": {...}} from scene id -> the kinds of its objects."""
    out = {"train": dict.fromkeys(synth.KINDS, 0), "test": dict.fromkeys(synth.KINDS, 0)}
    for sid, names in kinds.items():
        for k in names:
            out["test" if sid in test else "train"][k] += 1
    return out
