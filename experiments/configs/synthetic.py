"""The built-in synthetic experiment: a CPU stand-in for the paper's, not a result about real
objects.

300 procedural cluttered scenes at 96 px (240 pool / 60 test); 20 labelled initially, +20 per
round, 5 rounds. Sized so 10 seeds of DAL run in about 10 minutes on a 2-core CPU, which buys
about 1000 training steps per seed in all: the networks are kept between rounds (warm start) so
the last round's model has had all of them, and a round trains 80 + 2 per labelled image steps
(120 at 20 labels ... 280 at 100). Adam at 3e-3: at GG-CNN's 1e-3 many seeds had not started to
learn by 300 steps. No validation split: with 20-100 labels the training loss chooses the
weights (dal_jax.fit). BUILD.md "Training recipe" has the measurements.

Variants: ':smoke' (tiny, for tests); ':longtail', a pool where selection can matter: the pool's
objects are long-tailed (boxes and cylinders ten times as common as each of the four other
kinds) while the test set keeps every kind alike; 400 scenes (320 pool / 80 test), 10 labelled
initially and +10 per round for 6 rounds, so random sampling has seen few of the rare kinds.
"""

from experiments.configs import default


def get_config(variant: str | None = None):
    c = default.base()
    c.dataset = "synthetic_grasps"
    c.initial = 20
    c.budget = 20
    c.rounds = 5
    c.image_size = 96
    c.steps_per_round = 80
    c.steps_per_label = 2.0
    c.lr = 3e-3
    c.val_fraction = 0.0
    c.val_min = 0
    c.warm_start = True
    if variant == "smoke":
        return default.smoke(c)
    if variant == "longtail":
        c.synthetic.update({"num_scenes": 400, "kind_mix": "longtail"})
        c.initial, c.budget, c.rounds = 10, 10, 6
        return c
    if variant:
        raise ValueError(f"unknown variant {variant!r}; valid: smoke, longtail")
    return c
