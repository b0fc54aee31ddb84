"""The benchmarks time what the experiments run (their numbers are checked by running
``python -m experiments.bench``, never by timed tests)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from dal_jax.training import train
from experiments.bench.__main__ import bench_train
from experiments.bench.rounds import _shares
from experiments.bench.strategies import bench_strategy_training

REPO = pathlib.Path(__file__).resolve().parents[1]


def _bench(*flags, **env):
    """`python -m experiments.bench` with ``flags`` in a child process (extra ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "experiments.bench", *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO), **env),
        check=False,
    )


def test_round_shares_add_up_and_host_is_the_rest_of_the_wall_time():
    rec = _shares({"train": 6.0, "evaluate": 1.0, "select": 1.0}, 10.0, "dal", 10, "all")
    assert rec["seconds"] == {"train": 6.0, "evaluate": 1.0, "select": 1.0, "host": 2.0}
    assert rec["share"] == {"train": 0.6, "evaluate": 0.1, "select": 0.1, "host": 0.2}
    last = _shares({"train": 3.0, "evaluate": 1.0}, None, "dal", 10, 4)  # no selection
    assert last["share"] == {"train": 0.75, "evaluate": 0.25, "select": 0.0}


@pytest.mark.slow
def test_the_training_benchmark_times_the_experiments_recipe():
    out = _bench("--only=train", "--seeds=1", "--size=48", "--steps=3", "--repeats=1")
    assert out.returncode == 0, out.stderr[-2000:]
    rec = next(json.loads(ln) for ln in out.stdout.splitlines() if '"bench": "train"' in ln)
    assert rec["recipe"] == {name: getattr(train.TrainConfig, name) for name in train.RECIPE}
    assert rec["recipe"]["augment"] and rec["recipe"]["input_scale"] == 10.0
    assert rec["img_per_s"] > 0


def test_strategy_steps_are_timed_in_turn_and_their_ratio_within_each_turn(monkeypatch):
    calls, chunk = [], train.Trainer.train_chunk

    def recorded(self, *args):
        calls.append("dal" if self.plugins else "rs")
        return chunk(self, *args)

    monkeypatch.setattr(train.Trainer, "train_chunk", recorded)
    rows = bench_strategy_training(seeds=1, size=48, batch=2, steps=3, repeats=3, names=["dal"])
    # RS is always timed (the ratios need it); compiles first, then one chunk each per repeat.
    assert calls == ["rs", "dal"] + ["rs", "dal"] * 3
    rs, dal = rows
    assert (rs["strategy"], dal["strategy"]) == ("rs", "dal")
    assert rs["vs_rs"] == 1.0 and rs["vs_rs_range"] == [1.0, 1.0]
    lo, hi = dal["vs_rs_range"]
    assert 0 < lo <= dal["vs_rs"] <= hi and dal["repeats"] == 3 and dal["ms_per_run_step"] > 0


def test_seed_counts_are_timed_in_turn_on_equal_images(monkeypatch):
    calls, chunk = [], train.Trainer.train_chunk

    def recorded(self, states, inputs, targets, masks, *args):
        calls.append(masks.shape[0])
        return chunk(self, states, inputs, targets, masks, *args)

    monkeypatch.setattr(train.Trainer, "train_chunk", recorded)
    rows = bench_train([2, 1], size=48, batch=2, steps=3, repeats=2, form="auto")
    # Compiles first; then per repeat every count in turn on the same images (2 x 1 run, 1 x 2).
    assert calls == [1, 2] + [1, 1, 2] * 2
    one, two = rows
    assert (one["seeds"], two["seeds"]) == (1, 2)
    assert one["vs_seeds_min"] == 1.0 and one["vs_seeds_min_range"] == [1.0, 1.0]
    lo, hi = two["vs_seeds_min_range"]
    assert 0 < lo <= two["vs_seeds_min"] <= hi and two["img_per_s"] > 0


def test_an_unknown_strategy_is_refused_before_anything_runs():
    out = _bench("--only=strategy_train", "--strategies=rs,foo", DAL_JAX_SYSTEM_MALLOC="1")
    assert out.returncode != 0
    assert "unknown strategies ['foo']" in out.stderr and '"bench"' not in out.stdout
