"""The `synthetic_grasps` TFDS builder (see synthetic_grasps_dataset_builder.py)."""
