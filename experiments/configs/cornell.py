"""The paper's Cornell experiment (Wei et al., RA-L 2023).

885 RGB-D images of 240 objects, split 80/20 into a 708-image pool and a 177-image test set.
60 random images labelled initially, 60 more per round, 10 rounds; depth input at 300 px.
Every round trains from scratch (Algorithm 1) with Adam at GG-CNN's 1e-3, and 10% of the
labelled set (once it has 50 images) is held out to choose the weights a round reports.
2000 steps a round is GPU-scale (the reference GG-CNN trains 50 epochs of 1000 batches); on a
CPU lower it with --config.steps_per_round.

Variants: ':smoke' (tiny, for tests), ':object_wise' (Cornell's object-wise split), ':shared'
(the study at CPU scale on a small real folder such as the 80 shared scenes; see `shared`).
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


def shared(c):
    """The paper's study on a small real folder at CPU scale: 80 Cornell scenes (the shared
    pcd0100-0179; the builder's image-wise split gives a 64-image pool and 16 test crops).

        python -m datasets.prepare --dataset=cornell --manual_dir=DIR --data_dir=TFDS
        python -m experiments.study --config=experiments/configs/cornell.py:shared --seeds=10 \\
            --config.data_dir=TFDS

    Every number below was chosen on a hold-out of 12 of the 64 pool images (training on the
    other 52, never on the test split): 3 seeds per labelled count, each trained from scratch
    with this recipe for 600 steps, the 12 images scored every 48-step chunk (chunk-to-chunk
    swings of +-20 points on 12 images, so a window's mean over its chunks is quoted). Held-out
    accuracy (%, mean of 3 seeds over the chunks in a window of steps; per seed in brackets):

        Adam 1e-3   | 150-300 steps | 300-450 steps  | 450-600 steps
        8 labels    | 33            | 32 (36 28 33)  | 36 (38 40 31)
        24 labels   | 35            | 53 (64 58 36)  | 44 (46 42 44)
        52 labels   | 44            | 55 (47 44 75)  | 56 (50 65 54)
        Adam 3e-3   |               |                |
        8 labels    | 37            | 38             | 32
        24 labels   | 54            | 45             | 54
        52 labels   | 44            | 49             | 53

    The model of this recipe on the 52 images (336 steps, weights chosen by the training loss)
    scores 42 / 25 / 83% on the 12 held-out images (mean 50%). Measured once at the end, on
    the test split: `experiments.train` with this variant (all 64 pool images, 336 steps)
    scores 62.5 / 50.0 / 50.0% on the 16 test crops (3 seeds, mean 54.2%). The released GG-CNN
    weights (trained on Cornell, so they have probably seen these scenes; converted, input
    scale 1) score 62.5% (10/16) on the test crops at 300 px and 25% (4/16) at 96 px, and
    83% (10/12) on the 12 held-out pool images at 300 px (17% at 96 px). So at 96 px the
    supervised model is below the released weights at their own 300 px, by 1.3 test images
    on average; one seed in three matches them. Longer, with the weights chosen on a held-out
    12 of the pool images (``--config.supervised_steps=1344 --config.val_fraction=0.19
    --config.val_min=10``), it scores 62.5 / 50.0 / 43.8% (mean 52.1%): not better.
    Fine-tuned from a model trained on the synthetic scenes (``experiments.train
    --init_from``), the held-out accuracy rises by 12 points on every seed, but the test
    crops do not follow (1344 steps on all 64 images: 53.8%, 10 seeds); at 144 px the
    held-out accuracy rises by 4 points and the test crops give 55.0% (10 seeds); at 144 px
    from a 144 px synthetic prior, 60.6% (10 seeds, 5 of them at 62.5% or more; BUILD.md has
    the commands). The same at 300 px: 68.8% on the test crops (every seed at 62.5% or more)
    but 5.5 points below 144 px on the held-out images, which therefore do not choose it. The
    six-strategy study on this protocol (experiments/RESULTS.md) finds that labels add too little
    here for it to tell strategies apart.
    """
    # One round = one training from scratch with a fixed budget (Algorithm 1): steps do not
    # grow with the labels, so the curve measures labels, not steps.
    c.warm_start = False
    c.steps_per_label = 0.0
    # 336 steps (7 chunks of 48): at Adam 1e-3 the 52-label model's held-out accuracy rises to
    # 300-450 steps (44 -> 55%) and no further by 600 (56%), so doubling the budget should not
    # move the last round by more than its CI (the study's control 1 checks this on the test
    # set with twice the steps). It is also the supervised model's budget (experiments.train
    # trains steps_per_round when the networks are not kept between rounds).
    c.steps_per_round = 336
    # 8 labelled, +16 a round, 3 rounds (8, 24, 40 labels): 8 -> 24 labels is the steep part of
    # the held-out curve (32 -> 53% at 300-450 steps), 24 -> 52 the flat part (+2). Ending at
    # 40 leaves 40 unlabelled images for the last selection (of 16). Three rounds because of
    # the time: a six-strategy, 10-seed study costs about 7.5 x random sampling's training,
    # plus the controls' 3 x the last round's steps (here 1.0 x RS); at 96 px 10 seeds train
    # about 1.8 steps/s on a 2-core CPU, so 3 x 336 steps a seed is about 560 s of RS and
    # (7.5 + 1.0) x 560 s = 79 minutes of training (with the 8.3 x measured for the six
    # strategies on the synthetic set, 87), under the 90-minute target. Four rounds at this
    # budget would take about 103. Measured alone with VAAL's narrowed VAE: 64 min 41 s
    # (experiments/RESULTS.md "The study re-run alone").
    c.initial = 8
    c.budget = 16
    c.rounds = 3
    # 96 px: the size the time budget is measured at (120 px costs about 1.6 x per step, which
    # would leave two rounds); 300 px crops area-resized. Not tuned further.
    c.image_size = 96
    # Adam 1e-3 (GG-CNN's): 3e-3 learned earlier but left a smaller label effect at 300-450
    # steps (8 -> 52 labels: +11 points, against +23 at 1e-3) and no higher plateau.
    c.lr = 1e-3
    # No validation split: 10% of 8-64 labels is 1-6 images, whose accuracy moves in 17-100
    # point steps and which would leave training; the paper's rule (from 50 labels) would also
    # switch rules between rounds. The training loss chooses the weights (dal_jax.training.fit).
    c.val_fraction = 0.0
    c.val_min = 0
    # input_scale 10, pos_weight 20, masked heads, symmetries: the recipe of every protocol
    # (experiments/RESULTS.md "Training recipe measurements"), not re-tuned here.
    return c


def variants(c, variant):
    if variant == "smoke":
        return default.smoke(c)
    if variant == "object_wise":
        c.dataset_config = "object_wise"
        return c
    if variant == "shared":
        return shared(c)
    if variant:
        raise ValueError(f"unknown variant {variant!r}; valid: smoke, object_wise, shared")
    return c
