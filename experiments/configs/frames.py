"""Teach the robot a new room: active learning on your own depth frames (dataset ``frames``).

    python -m dal_jax.robot --source=ros:/kinect2/sd/image_depth --record=room/   # 1. record
    python -m datasets.prepare --dataset=frames --manual_dir=room/                 # 2. prepare
    python -m experiments.main --dataset=frames --strategy=dal --workdir=runs/room # 3. label+learn
    python -m dal_jax.robot --checkpoint=runs/room --source=ros:/kinect2/sd/image_depth  # 4.

You label everything on the annotation page: first a hold-out test set of ``test_size`` random
frames (the accuracy every round reports is measured on it), then the initial set, then each
round's selection. One seed (you are the oracle). 300 px crops, as GG-CNN's real-data models.
Every round trains from scratch (Algorithm 1), or from prior knowledge with
``--init_from=CHECKPOINT`` (e.g. an experiments.train model on Cornell or Jacquard, or the
converted original GG-CNN weights with ``--config.input_scale=1``), whose hold-out accuracy is
then reported as round -1. Steps grow with the labels (300 + 4 per labelled frame).

Variants: ':smoke' (tiny, for tests).
"""

import ml_collections

from experiments.configs import default


def get_config(variant: str | None = None):
    c = default.base()
    c.dataset = "frames"
    c.oracle = "human"
    c.seeds = 1
    c.test_size = 10
    c.initial = 10
    c.budget = 10
    c.rounds = 5
    c.image_size = 300
    c.steps_per_round = 300
    c.steps_per_label = 4.0
    c.lr = 1e-3
    c.val_fraction = 0.0
    c.val_min = 0
    c.warm_start = False
    if variant == "smoke":
        default.smoke(c)
        c.dataset_kwargs = ml_collections.ConfigDict({"crop_size": c.image_size})
        c.seeds, c.test_size, c.initial, c.budget = 1, 2, 2, 2
        return c
    if variant:
        raise ValueError(f"unknown variant {variant!r}; valid: smoke")
    return c
