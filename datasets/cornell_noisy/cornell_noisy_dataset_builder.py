"""`cornell_noisy`: Cornell with uniform(-45, +45) degrees added to the angle of every TRAINING
rectangle (each rotated about its own centre, seeded by the config's noise_seed and the scene
id). The test split is left clean. Scenes, crops and the split are exactly those of `cornell`
with the same split config: when `cornell` is already prepared in the same data_dir its examples
are reused (no second pass over the point clouds), otherwise the raw files are read.
"""

from __future__ import annotations

from typing import ClassVar

from datasets import common
from datasets.cornell import cornell_dataset_builder as cornell


class Builder(cornell.Builder):
    """Noisy-label Cornell (array_record, Tensor features only)."""

    VERSION = common.VERSION
    BUILDER_CONFIGS: ClassVar[list] = [
        cornell.CornellConfig(
            name="image_wise", noise_deg=45.0, description="image-wise split, noisy training"
        ),
        cornell.CornellConfig(
            name="object_wise",
            split_mode="object",
            noise_deg=45.0,
            description="object-wise split, noisy training",
        ),
    ]
    DEFAULT_CONFIG_NAME = "image_wise"
    DESCRIPTION = __doc__

    def _base(self):
        cfg = self.builder_config
        base_cfg = cornell.CornellConfig(
            name=cfg.name,
            split_mode=cfg.split_mode,
            seed=cfg.seed,
            test_fraction=cfg.test_fraction,
            crop_size=cfg.crop_size,
        )
        return cornell.Builder(data_dir=str(self.data_dir_root), config=base_cfg)

    def _split_generators(self, dl_manager):
        base = self._base()
        if not base.is_prepared():
            return super()._split_generators(dl_manager)
        self._skips = common.Skips()
        self.info.metadata.update(base.info.metadata)
        self.info.metadata["reused"] = str(base.data_dir)
        src = base.as_data_source()
        return {k: self._from_prepared(v, k == "train") for k, v in src.items() if len(v)}

    def _from_prepared(self, source, is_train):
        cfg = self.builder_config
        for i in range(len(source)):
            ex = dict(source[i])
            sid = common.as_str(ex["id"])
            ex["id"], ex["object_id"] = sid, common.as_str(ex["object_id"])
            if is_train:
                ex["rects"] = cornell.add_angle_noise(
                    ex["rects"], cfg.noise_deg, cfg.noise_seed, sid
                )
            yield sid, ex
