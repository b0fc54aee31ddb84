"""The paper's Jacquard experiment (Wei et al., RA-L 2023).

300 random Jacquard objects x 5 views: one random view per object is the test set (300), the
other 1200 are the pool, and one recorded view per object (300) is labelled initially
(``initial`` None: the dataset's recorded set). +100 per round.

9 rounds, not 10: 300 + 100 x 9 selections would label the whole 1200-image pool in the last
round, so every strategy's last round would train on the same images. With 9 rounds the last
selection still picks 100 of 200.

Steps grow with the labelled set: 500 + 2 per labelled image (1100 in round 0, 2700 in the
last), so a model on a few frames trains in minutes on a CPU (on the 20 shared sample views
the former 2000 steps took 20 minutes, and 500 steps already found grasps on unseen objects;
experiments/RESULTS.md "Training recipe measurements"). Each round trains from scratch, with
Adam at 1e-3 and a 10% validation split once 50 images are labelled.

Variants: ':smoke' (tiny, for tests), ':stereo' (Jacquard's stereo depth).
"""

from experiments.configs import default


def get_config(variant: str | None = None):
    c = default.base()
    c.dataset = "jacquard_subset"
    c.initial = None
    c.budget = 100
    c.rounds = 9
    c.image_size = 300
    c.steps_per_round = 500
    c.steps_per_label = 2.0
    c.lr = 1e-3
    c.val_fraction = 0.1
    c.val_min = 50
    c.warm_start = False
    if variant == "smoke":
        return default.smoke(c)
    if variant == "stereo":
        c.dataset_config = "stereo"
        return c
    if variant:
        raise ValueError(f"unknown variant {variant!r}; valid: smoke, stereo")
    return c
