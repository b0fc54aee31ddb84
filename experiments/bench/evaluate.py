"""Benchmark of the batched rectangle-metric evaluation (`dal_jax.evaluation.metric.accuracy`).

Run: ``python -m experiments.bench.evaluate`` (prints a JSON line).
"""

from __future__ import annotations

import json
import time

import numpy as np


def bench_evaluate(seeds: int = 10, n: int = 177, size: int = 300, gts: int = 30) -> dict:
    """Times `accuracy` on [seeds, n, size, size, 4] random outputs vs [n, gts] rectangles.

    Returns {"bench", "seeds", "images", "size", "gt", "s" (best of 3 after compiling),
    "compile_s", "exact_fallbacks" (images redone with the exact float64 blur)}.
    """
    import jax
    import jax.numpy as jnp

    from dal_jax.data import grasp
    from dal_jax.evaluation import metric

    rng = np.random.default_rng(0)
    preds = rng.standard_normal((seeds, n, size, size, 4), dtype=np.float32) * 0.3
    preds[..., 0] += 0.5
    centre = rng.uniform(40, size - 40, (n, gts, 2))
    rects = grasp.grasp_to_rect(
        centre,
        rng.uniform(-np.pi / 2, np.pi / 2, (n, gts)),
        rng.uniform(20, 60, (n, gts)),
        rng.uniform(10, 30, (n, gts)),
    )
    mask = rng.random((n, gts)) < 0.7
    preds = jnp.asarray(preds)
    t0 = time.perf_counter()
    metric.accuracy(preds, rects, mask)[0].block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        metric.accuracy(preds, rects, mask)[0].block_until_ready()
        times.append(time.perf_counter() - t0)
    with jax.enable_x64(True):  # images whose peak needed the exact float64 fallback
        n_exact = int(
            metric._accuracy(
                preds, jnp.asarray(rects), jnp.asarray(mask), n_rows=2 * size, chunk=6
            )[2]
        )
    return {
        "bench": "evaluate",
        "seeds": seeds,
        "images": n,
        "size": size,
        "gt": gts,
        "s": round(min(times), 3),
        "compile_s": round(compile_s, 2),
        "exact_fallbacks": n_exact,
    }


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(
        prog="python -m experiments.bench.evaluate", description=__doc__.split("\n\n")[0]
    ).parse_args()
    print(json.dumps(bench_evaluate()))
