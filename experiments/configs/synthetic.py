"""The built-in synthetic experiment: a CPU stand-in for the paper's, not a result about real
objects.

Scenes of one object each, on a table seen from 0.62-0.80 m at 96 px, of eight kinds with
their own grasp rules (`datasets/synthetic_grasps/scenes.py`). The pool is long-tailed, as real
pools are: boxes and cylinders ten times as common as each of the six other kinds (hexagonal
prisms, bars, big boxes, plates, rings held by the rim, L-shapes held by an arm), while the 80
test scenes keep every kind alike. 400 scenes (320 pool / 80 test); 5 labelled initially, +20
per round, 5 rounds (5 ... 85 labelled).

Why these numbers (experiments/RESULTS.md "Label-sensitive protocols" has the measurements):
* One object per scene: the rectangle metric scores one grasp per image, so in a cluttered
  scene a network that grasps the easiest object is right; with one object, every test image
  asks for its own kind's rule, and labels of the kinds a network has not seen matter.
* 5 ... 85 labels: random sampling's labels add 12 points over the same training without new
  labels (4 seeds); ending at 45 they added 9, below control 1's 10, because random picks from
  this pool find few of the rare kinds.
* The networks are kept between rounds and every round trains the same 200 steps
  (`steps_per_label = 0`): the step budget does not grow with the labels, and the study's
  control 1 (`dal_jax.study.controls`) trains the same rounds without new labels, so what the labels
  add is measured, not assumed. Adam at 3e-3: at GG-CNN's 1e-3 many seeds had not started to
  learn by 300 steps. No validation split: with 5-45 labels the training loss chooses the
  weights (dal_jax.training.fit).

Variants: ':smoke' (tiny, for tests); ':uniform' (every kind alike in the pool, 5 + 10 per
round: its random picks cover the kinds, so its curve flattens sooner); ':longtail' (the
default, named).
"""

from experiments.configs import default


def get_config(variant: str | None = None):
    c = default.base()
    c.dataset = "synthetic_grasps"
    c.synthetic.update(
        {"num_scenes": 400, "kind_mix": "longtail", "min_objects": 1, "max_objects": 1}
    )
    c.initial = 5
    c.budget = 20
    c.rounds = 5
    c.image_size = 96
    c.steps_per_round = 200
    c.steps_per_label = 0.0
    c.lr = 3e-3
    c.val_fraction = 0.0
    c.val_min = 0
    c.warm_start = True
    if variant == "smoke":
        return default.smoke(c)
    if variant == "uniform":
        c.synthetic.kind_mix = "uniform"
        c.budget = 10
        return c
    if variant and variant != "longtail":
        raise ValueError(f"unknown variant {variant!r}; valid: smoke, uniform, longtail")
    return c
