"""What a finished round of Algorithm 1 leaves for the next, and how it is saved and resumed.

`LoopState` is returned, never edited in place, by every round step of `dal_jax.experiment.loop`.
After every round `save` writes it (orbax, `dal_jax.model.checkpoint`) with the outputs
(`dal_jax.experiment.results`), and `try_resume` reads the newest readable round back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import signal
import threading

import jax
import numpy as np

from dal_jax import strategies
from dal_jax.data import pools
from dal_jax.experiment import build, results
from dal_jax.experiment.workdir import config_diff
from dal_jax.model import checkpoint
from dal_jax.training import train
from dal_jax.training.runs import Grid

log = logging.getLogger("dal_jax")
# Config fields that cannot change round 0's training (`shared_first_round`). Not chunk_steps,
# seed_form or shard, which a resumed run may change: they move where the one-step programs
# fall, or the summation order, and so the numbers.
ROUND0_FREE = {
    "strategy",
    "strategies",
    "rounds",
    "expected_accuracy",
    "annotate_host",
    "annotate_port",
    "upper_bound",
}


@dataclasses.dataclass
class LoopState:
    """What a finished round leaves for the next: masks [R, N], the per-round records, human
    labels by pool index, the networks (TrainState [R, ...]) and, with ``--init_from``, the
    prior model's record (round -1)."""

    round: int
    masks: np.ndarray
    history: list
    human_labels: dict
    states: train.TrainState | None
    prior: dict | None = None


def try_resume(workdir: pathlib.Path, template: train.TrainState, num_pool: int):
    """The state after the newest readable round in ``workdir``, or None for a fresh start.

    A round that cannot be read (truncated or corrupt files) is moved aside into
    ``checkpoints.unreadable/`` (never deleted), with one line saying so, and the round
    before it is used. The config was checked by `check_workdir`.
    """
    masks_t = {"masks": np.zeros((template.step.shape[0], num_pool), bool)}
    rnd, states, arrays, meta, skipped = checkpoint.restore_readable(
        workdir, state=template, arrays=masks_t
    )
    note = f"resuming from round {rnd}" if rnd is not None else "starting from round 0"
    for bad, why in skipped if jax.process_index() == 0 else ():  # process 0 moves them
        dest = checkpoint.move_aside(workdir, bad)
        line = f"checkpoint of round {bad} is unreadable ({why}); moved it to {dest}, {note}"
        log.warning(line)
        print(line, flush=True)
    if rnd is None:
        return None
    labels = {int(k): np.asarray(v, np.float64) for k, v in meta["human_labels"].items()}
    masks = np.asarray(arrays["masks"])
    return LoopState(rnd, masks, meta["history"], labels, states, meta.get("prior"))


def shared_first_round(source, c, template: train.TrainState, fresh: np.ndarray):
    """Round 0 of another experiment in folder ``source`` as this one's round 0, when it is the
    very same training: (LoopState after round 0 with nothing selected yet, None) or (None, why
    not, in a few words).

    It is when the two configs differ only in the strategy (and in `ROUND0_FREE`), neither
    strategy trains networks of its own beside GG-CNN (no plug-ins: random sampling, graph
    density, core-set, Gissin's DAL, the kinds control), labels come from ground truth, and
    ``source``'s round 0 started from the same labelled set ``fresh`` [R, N]: then this run's
    round 0 networks and test accuracies are ``source``'s, bit for bit, and a study need not
    train them again. The record's diagnostics are the evaluation's (a source whose strategy
    adds its own is refused); the caller adds this run's strategy's. ``template``: this run's
    TrainState [R, ...] (its trainer has no plug-ins).
    """
    if c.oracle != "gt":
        return None, "labels come from an annotator"
    try:
        _, meta = checkpoint.restore_meta(source, 0)
    except Exception:  # noqa: BLE001 (orbax raises many kinds on a missing or damaged file)
        return None, f"{source} has no readable round 0"
    # Every field counts here, the resumable ones too (see ROUND0_FREE).
    differ = sorted(set(config_diff(meta["config"], c.to_dict(), ignore=())) - ROUND0_FREE)
    if differ:
        return None, f"{source} ran another config ({', '.join(differ)})"
    theirs = meta["config"]["strategy"]
    section = meta["config"]["strategies"].get(theirs, {})
    source_strategy = strategies.get(theirs, **section)
    if source_strategy.plugins(build.train_config(c)):
        return None, f"{theirs} trains networks of its own"
    if type(source_strategy).diagnostics is not strategies.Strategy.diagnostics:
        return None, f"{theirs}'s round 0 record holds diagnostics of its own"
    record = meta["history"][0]
    if meta["human_labels"]:
        return None, f"{source} holds human labels"
    masks_t = {"masks": np.zeros(fresh.shape, bool)}
    try:
        _, states, arrays, _ = checkpoint.restore(source, 0, state=template, arrays=masks_t)
    except Exception:  # noqa: BLE001
        return None, f"{source}'s round 0 does not read into this run's networks"
    started = np.asarray(arrays["masks"]).copy()  # round 0's labelled set and its picks
    if record["selected"]:
        np.put_along_axis(started, np.asarray(record["selected"]), False, axis=1)
    if not np.array_equal(started, fresh):
        return None, f"{source}'s round 0 trained on another labelled set"
    record = {
        **record,
        "selected": [],
        "selected_score": None,
        "seconds": {"train": 0.0, "evaluate": 0.0},
        "shared_from": theirs,
    }
    return LoopState(0, fresh.copy(), [record], {}, states), None


def save_round(workdir, c, grid: Grid, ls: LoopState, ds: pools.Dataset):
    meta = build.checkpoint_meta(
        c,
        strategy=c.strategy,
        round=ls.round,
        history=ls.history,
        accuracy=ls.history[-1]["accuracy_all"],
        human_labels={str(k): v.tolist() for k, v in ls.human_labels.items()},
        num_pool=len(ds.pool),
        alphas=list(grid.alphas),
        prior=ls.prior,
    )
    checkpoint.save(workdir, ls.round, ls.states, {"masks": ls.masks}, meta)


def save(workdir: pathlib.Path, c, grid: Grid, ls: LoopState, ds: pools.Dataset) -> None:
    """The round's checkpoint and the outputs, written whole even if Ctrl-C comes meanwhile."""
    with _sigint_deferred():
        save_round(workdir, c, grid, ls, ds)  # orbax: every process takes part
        if jax.process_index() == 0:  # the other hosts hold the same numbers
            results.write(workdir, c, grid, ls.history, ls.prior)


@contextlib.contextmanager
def _sigint_deferred():
    """Ctrl-C during a save takes effect once the round is completely written (orbax's
    background threads and the results files are never cut off half-way)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def past_order(history: list, shape) -> np.ndarray:
    """[R, N] int32: the order in which the recorded rounds' selections picked each pool image
    (0, 1, ... across rounds; -1 for images never selected, such as the initial set)."""
    order = np.full(shape, -1, np.int32)
    done = np.zeros(shape[0], np.int32)
    for rec in history:
        for r, picks in enumerate(rec.get("selected") or []):
            order[r, picks] = done[r] + np.arange(len(picks))
            done[r] += len(picks)
    return order
