"""`cornell`: the Cornell Grasp Dataset as 300x300 depth/RGB crops with positive rectangles.

Source: the user's download (folders 01..10 or the original archives) in the TFDS manual
folder. Per scene: depth from ``pcdXXXXd.tiff`` if present, else from the point cloud
``pcdXXXX.txt``; missing depth inpainted (OpenCV Navier-Stokes); a square crop centred on the
mean of the positive rectangle corners. Splits ``train`` (the active-learning pool) and
``test``: the paper's seeded random image-wise 80/20 split, or an object-wise option.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from datasets import common


@dataclasses.dataclass
class CornellConfig(tfds.core.BuilderConfig):
    """split_mode 'image' (paper) or 'object'; seed of the split; crop_size in pixels;
    noise_deg > 0 rotates every training rectangle about its centre by uniform(-noise_deg,
    noise_deg) degrees (seeded by noise_seed and the scene id); the test split stays clean."""

    split_mode: str = "image"
    seed: int = 0
    test_fraction: float = 0.2
    crop_size: int = 300
    noise_deg: float = 0.0
    noise_seed: int = 0


def check_config(dataset: str, cfg: CornellConfig) -> None:
    """ValueError naming the ``--set`` field of a config value that cannot work."""
    common.check_fields(
        dataset,
        cfg,
        {
            "split_mode": (lambda v: v in ("image", "object"), "'image' or 'object'"),
            "seed": (lambda v: common.is_int(v) and v >= 0, "an integer >= 0"),
            "test_fraction": (lambda v: common.is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
            "crop_size": (lambda v: common.is_int(v) and v >= 12, "an integer >= 12 (pixels)"),
            "noise_deg": (lambda v: common.is_number(v) and 0 <= v <= 90, "degrees in [0, 90]"),
            "noise_seed": (lambda v: common.is_int(v) and v >= 0, "an integer >= 0"),
        },
    )


def resolve_manual_dir(dl_manager, name: str, instructions: str) -> pathlib.Path:
    """The manual folder (``<manual>/<name>`` when that exists) or a clear error naming it."""
    root = pathlib.Path(str(dl_manager._manual_dir))
    if (root / name).is_dir():
        return root / name
    if not root.is_dir() or not any(root.iterdir()):
        raise FileNotFoundError(
            f"{name}: the manual data folder {root} (or {root / name}) does not exist or is "
            f"empty.\n{instructions}"
        )
    return root


class Builder(tfds.core.GeneratorBasedBuilder):
    """Cornell grasp crops (array_record, Tensor features only)."""

    VERSION = common.VERSION
    BUILDER_CONFIGS: ClassVar[list] = [
        CornellConfig(name="image_wise", description="paper's random image-wise 80/20 split"),
        CornellConfig(name="object_wise", split_mode="object", description="object-wise 80/20"),
    ]
    DEFAULT_CONFIG_NAME = "image_wise"
    MANUAL_DOWNLOAD_INSTRUCTIONS = common.CORNELL_INSTRUCTIONS
    DESCRIPTION = __doc__

    def __init__(self, **kwargs):
        # array_record is the TensorFlow-free format (tfrecord writing imports TensorFlow)
        # and the one with random access through `as_data_source`.
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        self._check_config()

    def _check_config(self):
        check_config(self.name, self.builder_config)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # tfds' own lookup of a packaged builder's file needs the `importlib_resources`
        # backport, which tfds does not install; the plain file path is all it wants.
        return epath.Path(inspect.getfile(cls))

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=common.features(self.builder_config.crop_size),
            metadata=tfds.core.MetadataDict(),
            homepage="https://www.kaggle.com/datasets/oneoneliu/cornell-grasp",
        )

    # Hooks the synthetic builder overrides -------------------------------------------------

    def _scenes(self, dl_manager, skips: common.Skips) -> dict:
        """Scene id -> files dict of every scene in the manual folder (archives extracted)."""
        root = resolve_manual_dir(dl_manager, "cornell", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        folders = [root]
        folders += common.extract_archives(
            root, pathlib.Path(str(dl_manager.download_dir)) / "cornell_extracted", skips
        )
        scenes = common.find_cornell_scenes(folders)
        if not scenes:
            raise FileNotFoundError(
                f"cornell: no pcdXXXX scene files found under {root}.\n"
                + self.MANUAL_DOWNLOAD_INSTRUCTIONS
            )
        return scenes

    def _load(self, scene_id: str, files: dict, skips: common.Skips):
        return common.load_cornell_scene(files, self.builder_config.crop_size, skips)

    # ---------------------------------------------------------------------------------------

    def _split_generators(self, dl_manager):
        self._skips = common.Skips()
        scenes = self._scenes(dl_manager, self._skips)
        cfg = self.builder_config
        train, test = common.split_ids(list(scenes), cfg.test_fraction, cfg.seed, cfg.split_mode)
        self.info.metadata.update(self._skips.as_dict())
        # TFDS refuses to write an empty split, so a split with no scenes is left out.
        gens = {
            "train": self._generate_examples(scenes, train, "train") if train else None,
            "test": self._generate_examples(scenes, test, "test") if test else None,
        }
        return {k: v for k, v in gens.items() if v is not None}

    def _generate_examples(self, scenes, ids, split):
        cfg = self.builder_config
        first_skip, yielded = len(self._skips.items), 0
        for sid in ids:
            ex = self._load(sid, scenes[sid], self._skips)
            if ex is None:
                continue
            if split == "train" and cfg.noise_deg > 0:
                ex["rects"] = add_angle_noise(ex["rects"], cfg.noise_deg, cfg.noise_seed, sid)
            ex.update(id=sid, object_id="", initial=False)
            yielded += 1
            yield sid, ex
        # Generators run one after the other in this process; keep the running skip record.
        self.info.metadata.update(self._skips.as_dict())
        if not yielded:  # TFDS would fail with "No examples were yielded"
            raise common.empty_split_error(
                self.name, split, len(ids), self._skips.items[first_skip:]
            )


def add_angle_noise(rects, noise_deg: float, seed: int, scene_id: str) -> np.ndarray:
    """Rotates each rectangle [G, 4, 2] about its own centre by uniform(-noise_deg, noise_deg)
    degrees; the draw depends only on (seed, scene_id), not on the generation order."""
    from dal_jax.data import grasp

    rng = np.random.default_rng([seed, common.stable_hash(scene_id)])
    angles = np.deg2rad(rng.uniform(-noise_deg, noise_deg, size=len(rects)))
    centres = np.mean(rects, axis=-2)
    return grasp.rotate_rects(np.asarray(rects, np.float64), angles, centres).astype(np.float32)
