"""The `cornell` TFDS builder (see cornell_dataset_builder.py)."""
