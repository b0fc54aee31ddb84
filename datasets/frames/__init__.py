"""The `frames` TFDS builder (see frames_dataset_builder.py)."""
