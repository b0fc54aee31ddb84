"""TFDS builders for the grasp datasets of dal_jax (no TensorFlow needed).

This folder shares its name with Hugging Face's ``datasets`` package. Run everything from the
repository root (``python -m ...``) so that ``import datasets`` finds this package; nothing in
dal_jax imports the Hugging Face package.

Builders (all array_record, Tensor features only, read back with ``as_data_source``):

* ``cornell`` - the Cornell Grasp Dataset from a manual download (folders 01..10 or archives).
* ``cornell_noisy`` - the same with uniform(-45, 45) deg added to every training rectangle.
* ``jacquard_subset`` - 300 seeded objects x 5 views of a Jacquard folder.
* ``synthetic_grasps`` - procedural cluttered scenes written in the Cornell file format.
"""

from __future__ import annotations

NAMES = ("cornell", "cornell_noisy", "jacquard_subset", "synthetic_grasps")


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
    else:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(NAMES)}")
    return Builder
