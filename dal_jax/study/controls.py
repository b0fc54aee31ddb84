"""The control runs that tell whether a study can see a selection effect (control 1).

A study's random-sampling (RS) curve rises for two reasons: the labels added, and whatever
else grows with the rounds (a warm-started model trains longer every round). Two runs beside
RS separate them, both with RS's own keys, so they differ from RS in one thing only:

* **no new labels**: RS's training with the initial labelled set only, the same steps per round
  (and the same warm start, if the protocol keeps the networks). RS(last) minus this run's
  last round is what the labels added.
* **doubled steps**: RS's labelled sets trained with twice the steps per round. If that moves
  RS's last-round mean by less than its confidence interval, the rounds are trained enough
  and the curve is not a measure of the step budget.

A protocol that re-initialises every round (the paper's Algorithm 1) needs only the last round
of each (two trainings, about three rounds of RS); one that keeps the networks between rounds
replays every round (about three times RS, less RS's round 0: the no-new-labels run's first
round is that very training, same labelled set, keys and steps, so it starts from RS's saved
round 0 when that checkpoint reads). The results go to ``<study>/controls/``
(``label_sensitivity.json``) and are reused when the study is run again.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax.numpy as jnp
import numpy as np

from dal_jax import strategies
from dal_jax.experiment import build, results
from dal_jax.experiment.workdir import saved_config
from dal_jax.model import checkpoint
from dal_jax.training import fit
from dal_jax.training.runs import INIT, Grid

FOLDER = "controls"
FILE = "label_sensitivity.json"
# Control 2 (balancing the object kinds) is known to help only where the pool is imbalanced:
# its most common kind at least this many times as frequent as its least common one.
IMBALANCED = 3.0


def kind_imbalance(kinds) -> float | None:
    """Objects of the pool's most common kind over its least common one (kinds present only);
    kinds: [N, K] counts per image, or None (no kinds recorded: returns None)."""
    if kinds is None:
        return None
    counts = np.asarray(kinds).sum(axis=0)
    counts = counts[counts > 0]
    return float(counts.max() / counts.min()) if counts.size else None


def positive_control(kinds) -> tuple[bool, str | None]:
    """(whether the positive control applies to a pool with these kinds [N, K] or None, why
    not when it does not)."""
    ratio = kind_imbalance(kinds)
    if ratio is None:
        return False, "the pool has no object kinds"
    if ratio < IMBALANCED:
        return False, (
            f"the pool's object kinds are balanced (the most common {ratio:.1f}x the least), so "
            "balancing them is not known to help"
        )
    return True, None


def replay_masks(initial: np.ndarray, rounds: list) -> list[np.ndarray]:
    """[T] masks [R, N]: the labelled set each recorded round trained on (initial + the picks
    of the rounds before it), checked against the rounds' labelled counts."""
    masks, out = initial.copy(), []
    for rec in rounds:
        if (masks.sum(axis=1) != rec["labeled"]).any():
            raise ValueError(
                f"round {rec['round']}: rebuilt labelled counts {masks.sum(axis=1).tolist()} "
                f"differ from the recorded {rec['labeled']}"
            )
        out.append(masks.copy())
        picks = rec.get("selected") or []
        if picks:
            np.put_along_axis(masks, np.asarray(picks), True, axis=1)
    return out


def label_sensitivity(c, rs_dir, out_dir, ds, bar=None) -> dict | None:
    """Runs (or reads back) control 1 for the random-sampling experiment in ``rs_dir``.

    c: the study's resolved config of the "rs" entry; ds: its dataset (`build.load_data`,
    already loaded by the study). Returns {"no_new_labels_last": [S],
    "doubled_last": [S], "steps": {...}, "warm_start": bool} (accuracies in [0, 1]), or None
    when RS has not finished all rounds. Written to ``out_dir/label_sensitivity.json``.
    """
    if c.get("init_from"):
        raise ValueError("control 1 compares trainings from scratch; this run has --init_from")
    rs_dir, out_dir = pathlib.Path(rs_dir), pathlib.Path(out_dir)
    res_path = rs_dir / results.FILE
    if not res_path.is_file():
        return None
    res = results.read(res_path)
    rounds = [r for r in res["rounds"] if r["round"] >= 0]  # not --init_from's prior
    if len(rounds) < c.rounds:
        return None
    key = {"config": c.to_dict(), "rs_selected": [r.get("selected") for r in rounds]}
    key = json.loads(json.dumps(key))
    saved = _read(out_dir / FILE)
    if saved is not None and _same_key(saved.get("key"), key):
        return saved["result"]
    result = _train_controls(c, ds, rounds, bar, rs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results.write_json(out_dir / FILE, {"key": key, "result": result})
    return result


def control_steps(c, per_round: list[int]) -> int:
    """Training steps the two control runs add to a study (for its progress bar), given RS's
    steps per round (`loop.round_steps`)."""
    return 3 * (sum(per_round) if c.warm_start else per_round[-1])


def _advance(bar):
    """on_chunk for fit: moves a shared progress bar by the steps done in this training."""
    if bar is None:
        return None
    base = bar.n
    return lambda done: bar.update(base + done - bar.n)


def _same_key(saved, key: dict) -> bool:
    """Whether a saved controls file was computed for ``key`` (its config read in today's
    form, so that one saved before a config change of form still counts)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        return False
    return {**saved, "config": saved_config(saved["config"])} == key


def _read(path: pathlib.Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _rs_first_round(trainer, grid: Grid, rs_dir: pathlib.Path, image_shape):
    """RS's networks after its round 0 (TrainState [R, ...]) from its checkpoint, or None when
    that checkpoint is missing or does not read (the control then trains the round itself)."""
    template = trainer.init_states(grid.keys(INIT, 0), image_shape)
    try:
        _, states, _, _ = checkpoint.restore(rs_dir, 0, state=template)
    except Exception:  # noqa: BLE001 (orbax raises many kinds on a missing or damaged file)
        return None
    return states


def _train_controls(c, ds, rounds: list, bar, rs_dir: pathlib.Path) -> dict:
    grid = Grid.of(c)
    trainer = build.trainer(c, strategies.get("rs"))
    pool = dataclasses.replace(
        ds.pool, inputs=jnp.asarray(ds.pool.inputs), targets=jnp.asarray(ds.pool.targets)
    )
    initial = build.initial_masks(c, ds, grid)
    masks = replay_masks(initial, rounds)
    steps = [int(rec["steps"]) for rec in rounds]
    # A re-initialising protocol's last round depends on nothing before it.
    todo = list(range(len(rounds))) if c.warm_start else [len(rounds) - 1]
    # With one round there is nothing to replay after RS's round 0: train it (a check of the
    # replay, tests/test_controls.py).
    reuse = c.warm_start and len(rounds) > 1
    rs_round0 = _rs_first_round(trainer, grid, rs_dir, pool.inputs.shape[1:]) if reuse else None

    def train(mask_of, mult, after_round0=None):
        states, rounds_left = after_round0, todo
        if states is not None:  # RS's round 0 is this run's round 0: start after it
            rounds_left = todo[1:]
            if bar is not None:
                bar.update(steps[0])
        for r in rounds_left:
            if states is None or not c.warm_start:
                states = fit.initial_states(trainer, grid, r, pool.inputs.shape[1:])
            states, info, _, _ = fit.train_runs(
                c,
                trainer,
                grid,
                pool,
                mask_of(r),
                r,
                states=states,
                steps=mult * steps[r],
                on_chunk=_advance(bar),
            )
        return fit.assess(trainer, states, ds.test, info)["accuracy"]

    return {
        "no_new_labels_last": train(lambda r: initial, 1, rs_round0),
        "doubled_last": train(lambda r: masks[r], 2),
        "steps": {"per_round": steps, "doubled": [2 * s for s in steps]},
        "warm_start": bool(c.warm_start),
        "labeled_initial": int(initial[0].sum()),
        "labeled_last": int(masks[-1][0].sum()),
    }
