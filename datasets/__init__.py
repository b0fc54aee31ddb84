"""TFDS builders for the grasp datasets of dal_jax (no TensorFlow needed).

This folder shares its name with Hugging Face's ``datasets`` package. Run everything from the
repository root (``python -m ...``) so that ``import datasets`` finds this package; nothing in
dal_jax imports the Hugging Face package.

Builders (all array_record, Tensor features only, read back with ``as_data_source``):

* ``cornell`` - the Cornell Grasp Dataset from a manual download (folders 01..10 or archives).
* ``cornell_noisy`` - the same with uniform(-45, 45) deg added to every training rectangle.
* ``jacquard_subset`` - 300 seeded objects x 5 views of a Jacquard folder.
* ``synthetic_grasps`` - procedural cluttered scenes written in the Cornell file format.
* ``frames`` - a folder of the user's own depth frames (e.g. ``python -m dal_jax.robot
  --record=DIR``), labelled where a Cornell rectangle file lies beside a frame; one split.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

NAMES = ("cornell", "cornell_noisy", "jacquard_subset", "synthetic_grasps", "frames")


def builder_class(name: str):
    """The TFDS builder class for a dataset name (imports only that builder's module)."""
    if name == "cornell":
        from datasets.cornell.cornell_dataset_builder import Builder
    elif name == "cornell_noisy":
        from datasets.cornell_noisy.cornell_noisy_dataset_builder import Builder
    elif name == "jacquard_subset":
        from datasets.jacquard_subset.jacquard_subset_dataset_builder import Builder
    elif name == "synthetic_grasps":
        from datasets.synthetic_grasps.synthetic_grasps_dataset_builder import Builder
    elif name == "frames":
        from datasets.frames.frames_dataset_builder import Builder
    else:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(NAMES)}")
    return Builder


def default_data_dir() -> str:
    """TFDS' own default: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return os.environ.get("TFDS_DATA_DIR") or str(
        pathlib.Path("~/tensorflow_datasets").expanduser()
    )


def make_builder(name: str, data_dir=None, config=None, **config_kwargs):
    """The TFDS builder of a dataset.

    ``config`` names a predefined config (cornell / cornell_noisy: 'image_wise' (default),
    'object_wise'; jacquard_subset: 'perfect' (default), 'stereo'; synthetic_grasps,
    frames: 'default'). ``config_kwargs`` override fields of that config (e.g. ``seed=3``,
    ``num_scenes=40, crop_size=48`` for synthetic_grasps, where ``image_size`` is accepted
    for ``crop_size``); the resulting config gets a name that encodes them, so differently
    configured builds never share a folder.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(NAMES)}")
    cls = builder_class(name)
    if "image_size" in config_kwargs:
        config_kwargs["crop_size"] = config_kwargs.pop("image_size")
    if name in ("jacquard_subset", "frames") and "crop_size" in config_kwargs:
        config_kwargs["size"] = config_kwargs.pop("crop_size")
    if name == "frames" and isinstance(config_kwargs.get("roi"), (tuple, list)):
        # `--set roi=1,2,3` arrives as a tuple (prepare reads values as Python literals).
        config_kwargs["roi"] = ",".join(str(v) for v in config_kwargs["roi"])
    base_name = config or cls.DEFAULT_CONFIG_NAME
    base = cls.builder_configs.get(base_name)
    if base is None:
        raise ValueError(
            f"{name} has no config {base_name!r}; choose from {list(cls.builder_configs)}"
        )
    cfg = base
    if config_kwargs:
        fields = {f.name for f in dataclasses.fields(base)}
        unknown = set(config_kwargs) - fields
        if unknown:
            raise TypeError(f"{name} config has no field(s) {sorted(unknown)}")
        changed = {k: v for k, v in sorted(config_kwargs.items()) if getattr(base, k) != v}
        if changed:
            suffix = "_".join(f"{k}{v}" for k, v in changed.items()).replace(".", "p")
            cfg = dataclasses.replace(base, name=f"{base_name}_{suffix}", **changed)
    data_dir = str(pathlib.Path(data_dir).expanduser()) if data_dir else default_data_dir()
    return cls(data_dir=data_dir, config=cfg)
