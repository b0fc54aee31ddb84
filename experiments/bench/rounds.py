"""Where a round of the README's default job goes: training steps, evaluation, selection, and the
host work around them (saving, results, Python between the parts).

    python -m experiments.bench --only=round                    # 10 seeds, 2 rounds
    python -m experiments.bench --only=round --round_rounds=5   # the whole default job

Runs the default job's config (experiments/configs/synthetic.py, the recipe every experiment
trains with) in a temporary folder with `dal_jax.experiment.loop` and reads the per-round
``seconds`` of its results.json; ``host`` is the rest of the measured wall time. Round 0 also
holds the compiles.
"""

from __future__ import annotations

import tempfile
import time


def bench_round(strategy: str = "dal", seeds: int = 10, rounds: int = 2) -> list[dict]:
    """One record per round: seconds and share of the round's wall time by part, then one for
    all rounds together."""
    from dal_jax.experiment import build, loop
    from experiments.configs import synthetic

    c = synthetic.get_config()
    c.strategy, c.seeds, c.rounds = strategy, seeds, rounds
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = loop.run(build.resolve(c), tmp, progress=False)
        wall = time.perf_counter() - t0
    records = [_shares(r["seconds"], None, strategy, seeds, r["round"]) for r in res["rounds"]]
    total = {k: sum(r["seconds"].get(k, 0.0) for r in res["rounds"]) for k in _PARTS}
    records.append(_shares(total, wall, strategy, seeds, "all"))
    return records


_PARTS = ("train", "evaluate", "select")


def _shares(seconds: dict, wall: float | None, strategy: str, seeds: int, rnd) -> dict:
    """A bench record: seconds by part and their shares (with ``wall``: of the wall time, the
    rest being host work; without: of the parts' sum)."""
    parts = {k: float(seconds.get(k, 0.0)) for k in _PARTS}
    whole = wall if wall is not None else sum(parts.values())
    if wall is not None:
        parts["host"] = max(0.0, wall - sum(parts.values()))
    return {
        "bench": "round",
        "strategy": strategy,
        "seeds": seeds,
        "round": rnd,
        "seconds": {k: round(v, 2) for k, v in parts.items()},
        "share": {k: round(v / whole, 3) for k, v in parts.items()},
    }
