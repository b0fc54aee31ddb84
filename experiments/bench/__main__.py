"""Speed benchmarks: JSON lines on stdout, ratios against the PyTorch peer measured in the same run.

    python -m experiments.bench                 # training and single-image forward, JAX only
    python -m experiments.bench --peer          # plus the PyTorch peer and the ratios
    python -m experiments.bench --only=train --seeds=1,10 --size=300
    python -m experiments.bench --only=evaluate,select,detect
    python -m experiments.bench --only=strategy_train --size=96 --repeats=9  # strategies vs RS
    python -m experiments.bench --only=strategy_train --size=96 --seeds=10 --strategies=vaal
    python -m experiments.bench --only=round    # the default job's round: train/eval/select/host
    python -m experiments.bench --only=host     # only the host record every run starts with

Training is timed with the recipe every experiment trains with (`TrainConfig`'s defaults: the
fields of `dal_jax.training.train.RECIPE`, printed in each record), augmentation included.

Timings are the median of repeated runs after compilation (compile time is reported
separately). The machine is shared and noisy: compare ratios from one run, not absolute figures
across runs. Like every experiment command, the benchmark runs on tcmalloc when the machine has
it (`dal_jax.training.host_memory`; the first record names the allocator);
``DAL_JAX_SYSTEM_MALLOC=1`` times glibc's malloc instead.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

from absl import app, flags

BENCHES = ("train", "infer", "evaluate", "select", "detect", "strategy_train", "round", "host")

_ONLY = flags.DEFINE_list("only", ["train", "infer"], f"Benchmarks to run, from {BENCHES}.")
_PEER = flags.DEFINE_bool("peer", False, "Also run the PyTorch peer and print the ratios.")
_PEER_SCRIPT = flags.DEFINE_string(
    "peer_script",
    os.environ.get("DAL_JAX_PEER", ""),
    "With --peer: the PyTorch GG-CNN script it runs (default: $DAL_JAX_PEER).",
)
_SEEDS = flags.DEFINE_list("seeds", ["1", "10"], "Seed counts for the training benchmark.")
_SIZE = flags.DEFINE_integer("size", 300, "Image size (a multiple of 12).")
_BATCH = flags.DEFINE_integer("batch", 8, "Batch size per seed.")
_STRATEGIES = flags.DEFINE_list(
    "strategies",
    [],
    "With --only=strategy_train or select: the strategies to time (default: all six; RS is "
    "always timed by strategy_train, as the reference of its ratios).",
)
_STEPS = flags.DEFINE_integer("steps", 4, "Timed training steps per repeat.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 3, "Timed repeats (the median is reported; strategy_train takes them in turn)."
)
_ROUNDS = flags.DEFINE_integer(
    "round_rounds", 2, "With --only=round: rounds of the default job to run (it has 5)."
)
_FORM = flags.DEFINE_enum("seed_form", "auto", ["auto", "vmap", "unrolled"], "Seed batching form.")


def emit(record: dict) -> dict:
    print(json.dumps(record), flush=True)
    return record


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def bench_train(
    seed_counts, size: int, batch: int, steps: int, repeats: int, form: str
) -> list[dict]:
    """Images per second of GG-CNN training with the recipe (Adam, ``batch`` per seed) for each
    run count S in ``seed_counts``.

    Every count is compiled first; then each repeat trains every count in turn on the same
    number of images (``max(seed_counts) // S`` chunks of ``steps`` steps of S runs), so a slow
    spell of the shared machine falls on all counts alike. "img_per_s" is a count's median over
    the repeats; "vs_seeds_min" the median of its per-repeat per-image speed against the
    smallest count's in the same repeat, with its smallest and largest ("vs_seeds_min_range").
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dal_jax.model import models
    from dal_jax.training import train
    from dal_jax.training.plugin import HParams

    cfg = train.TrainConfig(batch_size=batch, chunk_steps=steps, seed_form=form)
    trainer = train.Trainer(cfg)
    rng = np.random.default_rng(0)
    n = 4 * batch
    inputs = jnp.asarray(rng.normal(size=(n, size, size, 1)).astype(np.float32))
    targets = jnp.asarray(rng.uniform(size=(n, size, size, 4)).astype(np.float32))
    counts = sorted(set(seed_counts))
    runs, compile_s, rates = {}, {}, {s: [] for s in counts}

    def chunks(s, times):
        states, masks, keys, hp = runs[s]
        t = time.perf_counter()
        for _ in range(times):
            states, m = trainer.train_chunk(states, inputs, targets, masks, hp, keys, steps)
        jax.block_until_ready(m)
        runs[s] = (states, masks, keys, hp)
        return time.perf_counter() - t

    for s in counts:
        keys = jax.random.split(jax.random.key(0), s)
        hp = HParams(jnp.zeros(s), num_steps=jnp.full(s, 1000.0))
        runs[s] = (trainer.init_states(keys, (size, size, 1)), jnp.ones((s, n), bool), keys, hp)
        compile_s[s] = chunks(s, 1)
    for _ in range(repeats):
        for s in counts:
            times = counts[-1] // s
            rates[s].append(s * batch * steps * times / chunks(s, times))
    params = models.count_params(jax.tree.map(lambda a: a[0], runs[counts[0]][0].params["ggcnn"]))
    rows = []
    for s in counts:
        ratios = sorted(r / r0 for r, r0 in zip(rates[s], rates[counts[0]]))
        rows.append(
            {
                "bench": "train",
                "impl": "jax",
                "size": size,
                "batch": batch,
                "seeds": s,
                "seed_form": cfg.resolved_seed_form(),
                "recipe": {name: getattr(cfg, name) for name in train.RECIPE},
                "params": params,
                "img_per_s": _median(rates[s]),
                "vs_seeds_min": round(_median(ratios), 3),
                "vs_seeds_min_range": [round(ratios[0], 3), round(ratios[-1], 3)],
                "compile_s": round(compile_s[s] - s * batch * steps / _median(rates[s]), 2),
            }
        )
    return rows


def bench_infer(size: int, repeats: int = 50) -> dict:
    """Milliseconds of one single-image GG-CNN forward pass (jitted)."""
    import jax
    import numpy as np

    from dal_jax.model import models

    model = models.GGCNN()
    x = np.random.default_rng(0).normal(size=(1, size, size, 1)).astype(np.float32)
    params = model.init(jax.random.key(0), x)["params"]
    fwd = jax.jit(lambda p, x: model.apply({"params": p}, x)[0])
    jax.block_until_ready(fwd(params, x))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fwd(params, x))
        times.append(time.perf_counter() - t)
    return {"bench": "infer", "impl": "jax", "size": size, "ms": 1000 * _median(times)}


def peer_script() -> pathlib.Path | None:
    """The PyTorch peer's script (--peer_script or $DAL_JAX_PEER), or None, said in a record."""
    if not _PEER_SCRIPT.value:
        emit({"bench": "peer", "skipped": "no peer script: give --peer_script or $DAL_JAX_PEER"})
        return None
    path = pathlib.Path(_PEER_SCRIPT.value)
    if not path.is_file():
        emit({"bench": "peer", "skipped": f"{path} not found"})
        return None
    return path


def bench_peer(size: int, batch: int, steps: int) -> dict | None:
    """Runs the peer script in a subprocess (2 threads) on the allocator this process runs on
    (a fair comparison: glibc's malloc slows PyTorch's step too, 2.6x at 300 px); None without
    the script or without torch."""
    from dal_jax.training import host_memory

    script = peer_script()
    if script is None:
        return None
    cmd = [sys.executable, str(script), "--size", str(size), "--batch", str(batch)]
    cmd += ["--steps", str(steps), "--threads", str(os.cpu_count() or 2)]
    env = {**os.environ, **host_memory.preload_env()}
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        emit({"bench": "peer", "skipped": out.stderr.strip().splitlines()[-1:]})
        return None
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    return {"bench": "peer", "impl": "torch", **rec}


def host_record() -> dict:
    """What the figures depend on besides the code: cores, jax, and the allocator the process
    runs on (`dal_jax.training.host_memory`; the PyTorch peer runs on the same)."""
    import jax

    from dal_jax.training import host_memory

    malloc = host_memory.in_effect()
    return {"bench": "host", "cpus": os.cpu_count(), "jax": jax.__version__, "malloc": malloc}


def main(argv):
    del argv
    only = set(_ONLY.value)
    unknown = only - set(BENCHES)
    if unknown:
        raise app.UsageError(f"unknown benchmark(s) {sorted(unknown)}; valid: {BENCHES}")
    if _STRATEGIES.value:
        from dal_jax import strategies

        bad = sorted(set(_STRATEGIES.value) - set(strategies.NAMES))
        if bad:
            raise app.UsageError(f"unknown strategies {bad}; valid: {strategies.NAMES}")
    emit(host_record())
    frame = None
    if "detect" in only:
        from experiments.bench.inference import cornell_frame

        try:  # checked before the other benchmarks run
            frame = cornell_frame()  # $DAL_JAX_SAMPLE_DATA's Cornell frame, else synthetic
        except ValueError as e:
            raise app.UsageError(str(e)) from e
    size, batch = _SIZE.value, _BATCH.value
    results = {}
    if "train" in only:
        counts = [int(v) for v in _SEEDS.value]
        for rec in bench_train(counts, size, batch, _STEPS.value, _REPEATS.value, _FORM.value):
            results[("train", rec["seeds"])] = emit(rec)
    if "infer" in only:
        results["infer"] = emit(bench_infer(size))
    if "evaluate" in only:
        from experiments.bench.evaluate import bench_evaluate

        emit(bench_evaluate())
    if "select" in only:
        from experiments.bench.strategies import bench_strategies

        for rec in bench_strategies(names=_STRATEGIES.value or None):
            emit(rec)
    if "strategy_train" in only:
        from experiments.bench.strategies import bench_strategy_training

        bench_strategy_training(
            min(int(v) for v in _SEEDS.value),
            size,
            batch,
            max(3, _STEPS.value),
            _REPEATS.value,
            names=_STRATEGIES.value or None,
        )
    if "round" in only:
        from experiments.bench.rounds import bench_round

        for rec in bench_round(seeds=max(int(v) for v in _SEEDS.value), rounds=_ROUNDS.value):
            emit(rec)
    if "detect" in only:
        from experiments.bench.inference import bench_inference

        peer = peer_script() if _PEER.value else None
        for rec in bench_inference(frame=frame, peer=peer):
            emit(rec)
    _summarise(results, size, batch)


def _summarise(results, size, batch):
    trains = {k[1]: v for k, v in results.items() if isinstance(k, tuple)}
    if len(trains) > 1:
        base = min(trains)
        for s, rec in trains.items():
            if s != base:
                emit(
                    {
                        "ratio": "seed_batching",
                        "seeds": s,
                        "vs_seeds": base,
                        # per repeat, measured back to back (see bench_train)
                        "per_image": rec["vs_seeds_min"],
                        "per_image_range": rec["vs_seeds_min_range"],
                    }
                )
    if not _PEER.value:
        return
    peer = bench_peer(size, batch, max(3, _STEPS.value))
    if peer is None:
        return
    emit(peer)
    if 1 in trains:
        emit({"ratio": "train_vs_torch", "x": trains[1]["img_per_s"] / peer["train_img_per_s"]})
    if "infer" in results:
        emit({"ratio": "infer_time_vs_torch", "x": results["infer"]["ms"] / peer["infer_ms"]})


if __name__ == "__main__":
    app.run(main)
