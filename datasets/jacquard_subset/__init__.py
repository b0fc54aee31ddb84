"""The `jacquard_subset` TFDS builder (see jacquard_subset_dataset_builder.py)."""
