"""The paper's experimental protocols (SPEC section 2) and the built-in synthetic default.

A config field left as None takes its value from the dataset's protocol here.
``steps_per_round`` for the real datasets is GPU-scale (the reference GG-CNN trains for
50 epochs x 1000 batches); on a CPU, lower it with ``--config.steps_per_round``.
"""

PROTOCOLS = {
    # 885 images, 80/20 split: 708 pool / 177 test; 60 initial, +60 per round, 10 rounds.
    "cornell": dict(initial=60, budget=60, rounds=10, image_size=300, steps_per_round=2000),
    "cornell_noisy": dict(initial=60, budget=60, rounds=10, image_size=300, steps_per_round=2000),
    # 300 objects x 5 views: 1200 pool / 300 test; one view per object initially, +100.
    "jacquard_subset": dict(
        initial=None, budget=100, rounds=10, image_size=300, steps_per_round=2000
    ),
    # 300 scenes at 96 px: 240 pool / 60 test. Sized so 10 seeds of DAL run in minutes on CPU.
    "synthetic_grasps": dict(initial=20, budget=20, rounds=4, image_size=96, steps_per_round=300),
}
DATASETS = ("auto", "cornell", "cornell_noisy", "jacquard_subset", "synthetic")
# CLI names -> TFDS builder names.
BUILDER_NAMES = {"synthetic": "synthetic_grasps"}
