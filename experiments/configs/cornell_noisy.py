"""The paper's noisy-Cornell experiment (Wei et al., RA-L 2023): Cornell with
uniform(-45, 45) degrees added to the angle of every training rectangle, and Cornell's protocol
(experiments/configs/cornell.py).

Variants: ':smoke' (tiny, for tests), ':object_wise'.
"""

from experiments.configs import cornell


def get_config(variant: str | None = None):
    c = cornell.get_config()
    c.dataset = "cornell_noisy"
    return cornell.variants(c, variant)
