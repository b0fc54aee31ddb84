"""The paper's cornell_noisy experiment (SPEC section 2); variants: ':smoke' (tiny, for tests)."""

from experiments.configs import default


def get_config(variant: str | None = None):
    return default.get_config(variant, dataset="cornell_noisy")
