"""The paper's Cornell experiment (Wei et al., RA-L 2023).

885 RGB-D images of 240 objects, split 80/20 into a 708-image pool and a 177-image test set.
60 random images labelled initially, 60 more per round, 10 rounds; depth input at 300 px.
Every round trains from scratch (Algorithm 1) with Adam at GG-CNN's 1e-3, and 10% of the
labelled set (once it has 50 images) is held out to choose the weights a round reports.
2000 steps a round is GPU-scale (the reference GG-CNN trains 50 epochs of 1000 batches); on a
CPU lower it with --config.steps_per_round.

Variants: ':smoke' (tiny, for tests), ':object_wise' (Cornell's object-wise split).
"""

from experiments.configs import default


def get_config(variant: str | None = None):
    c = default.base()
    c.dataset = "cornell"
    c.initial = 60
    c.budget = 60
    c.rounds = 10
    c.image_size = 300
    c.steps_per_round = 2000
    c.steps_per_label = 0.0
    c.lr = 1e-3
    c.val_fraction = 0.1
    c.val_min = 50
    c.warm_start = False
    return variants(c, variant)


def variants(c, variant):
    if variant == "smoke":
        return default.smoke(c)
    if variant == "object_wise":
        c.dataset_config = "object_wise"
        return c
    if variant:
        raise ValueError(f"unknown variant {variant!r}; valid: smoke, object_wise")
    return c
