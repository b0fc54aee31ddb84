"""The `cornell_noisy` TFDS builder (see cornell_noisy_dataset_builder.py)."""
