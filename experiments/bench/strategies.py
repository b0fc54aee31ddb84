"""Selection time per round for the six strategies at Cornell size.

Run: ``python -m experiments.bench.strategies [--seeds 2] [--n 708] [--size 300] [--k 60]``
(prints one JSON line per strategy). States are freshly initialised: this measures selection,
not training, and selection time does not depend on how well the networks are trained.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def bench_strategies(
    seeds: int = 2, n: int = 708, size: int = 300, k: int = 60, names=None
) -> list[dict]:
    """Times ``strategy.select`` for every strategy on a random [n, size, size, 1] pool.

    Per strategy: "first_s" is the first round's call (compiling, and for GD on raw inputs
    building the k-NN graph of the pool), "s" the best of two later rounds with new masks (what
    every later round costs: GD's pool graph is cached, nothing recompiles). Returns a list of
    {"bench": "select", "strategy", "n", "size", "seeds", "k", "s", "first_s"}.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dal_jax import strategies
    from dal_jax.training import train

    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.uniform(-1, 1, (n, size, size, 1)).astype(np.float32))
    keys = jax.random.split(jax.random.key(0), seeds)
    labelled = [rng.random((seeds, n)) < 60 / n + 0.1 * r for r in range(3)]
    rows = []
    for name in names or strategies.NAMES:
        strategy = strategies.get(name)
        cfg = train.TrainConfig()
        trainer = train.Trainer(cfg, strategy.plugins(cfg))
        states = trainer.init_states(keys, (size, size, 1))
        times = []
        for masks in labelled:
            t0 = time.perf_counter()
            picks = strategy.select(trainer, states, inputs, masks, k, keys)
            times.append(time.perf_counter() - t0)
            assert picks.shape == (seeds, k)
        row = {
            "bench": "select",
            "strategy": name,
            "n": n,
            "size": size,
            "seeds": seeds,
            "k": k,
            "s": round(min(times[1:]), 3),
            "first_s": round(times[0], 3),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def bench_strategy_training(
    seeds: int = 2, size: int = 96, batch: int = 8, steps: int = 6, repeats: int = 3, names=None
) -> list[dict]:
    """Training cost of each strategy: milliseconds per run and step of its joint training step
    (GG-CNN plus the strategy's own networks: DAL's discriminator, LL's loss module, VAAL's
    VAE and discriminator) at ``size`` px, and its ratio to RS (plain GG-CNN), which is always
    timed. A study's time is mostly these steps, so the ratios say what each strategy adds.

    Every strategy is compiled first; then each repeat times one chunk of ``steps`` steps of
    every strategy in turn, so that a slow spell of the shared machine falls on all of them
    alike. "ms_per_run_step" is a strategy's median over the repeats, "vs_rs" the median of its
    per-repeat ratios to RS's chunk of the same repeat, with their smallest and largest
    ("vs_rs_range"). Returns a list of {"bench": "strategy_train", "strategy", "size", "seeds",
    "repeats", "ms_per_run_step", "vs_rs", "vs_rs_range", "compile_s"}.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dal_jax import strategies
    from dal_jax.training import train
    from dal_jax.training.plugin import HParams

    rng = np.random.default_rng(0)
    n = 8 * batch
    inputs = jnp.asarray(rng.normal(size=(n, size, size, 1)).astype(np.float32))
    targets = jnp.asarray(rng.uniform(size=(n, size, size, 4)).astype(np.float32))
    masks = jnp.asarray(rng.random((seeds, n)) < 0.3)
    keys = jax.random.split(jax.random.key(0), seeds)
    hp = HParams(jnp.full(seeds, 0.1), num_steps=jnp.full(seeds, 1000.0))
    names = ["rs"] + [m for m in (names or strategies.NAMES) if m != "rs"]
    trainers, states, first, chunks = {}, {}, {}, {name: [] for name in names}

    def chunk(name):
        t = time.perf_counter()
        states[name], m = trainers[name].train_chunk(
            states[name], inputs, targets, masks, hp, keys, steps
        )
        jax.block_until_ready(m)
        return time.perf_counter() - t

    for name in names:
        cfg = train.TrainConfig(batch_size=batch, chunk_steps=steps)
        trainers[name] = train.Trainer(cfg, strategies.get(name).plugins(cfg))
        states[name] = trainers[name].init_states(keys, (size, size, 1))
        first[name] = chunk(name)
    for _ in range(repeats):
        for name in names:
            chunks[name].append(chunk(name))
    rows = []
    for name in names:
        ratios = sorted(t / r for t, r in zip(chunks[name], chunks["rs"]))
        ms = 1000 * statistics.median(chunks[name]) / steps / seeds
        row = {
            "bench": "strategy_train",
            "strategy": name,
            "size": size,
            "seeds": seeds,
            "repeats": repeats,
            "ms_per_run_step": round(ms, 1),
            "vs_rs": round(statistics.median(ratios), 2),
            "vs_rs_range": [round(ratios[0], 2), round(ratios[-1], 2)],
            "compile_s": round(first[name] - statistics.median(chunks[name]), 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--n", type=int, default=708)
    p.add_argument("--size", type=int, default=300)
    p.add_argument("--k", type=int, default=60)
    p.add_argument("--strategies", default="", help="comma-separated subset of the names")
    a = p.parse_args(argv)
    names = [s for s in a.strategies.split(",") if s] or None
    bench_strategies(a.seeds, a.n, a.size, a.k, names)


if __name__ == "__main__":
    main()
