"""Algorithm 1 of the paper: rounds of train -> test -> select -> annotate, all runs batched.

The runs (seeds x alphas) advance together in one compiled program; `dal_jax.training.runs` holds their
layout and randomness. Round r (0-based) trains on the labelled set (`dal_jax.training.fit`), tests on
the test split, and (unless it is the last round or the expected accuracy is reached) selects
``budget`` new examples per run, which the oracle (`dal_jax.experiment.oracle`) labels before round r + 1.
After every round the state is saved (orbax, `dal_jax.model.checkpoint`) and the outputs written
(`dal_jax.experiment.results`), so a run stopped at any point resumes after its last finished round.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dal_jax import strategies
from dal_jax.data import pools
from dal_jax.experiment import build, oracle, results, room, round_state
from dal_jax.experiment.round_state import LoopState
from dal_jax.experiment.workdir import check_workdir, claim
from dal_jax.training import distributed, fit, train
from dal_jax.training.runs import INIT, SELECT, Grid

log = logging.getLogger("dal_jax")


# ----------------------------------------------------------------------------- the loop


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every round of one experiment uses (built once by `run`)."""

    c: ml_collections.ConfigDict
    workdir: pathlib.Path
    grid: Grid
    strategy: strategies.Strategy
    trainer: train.Trainer
    ds: pools.Dataset
    pool: pools.Pool  # ds.pool with its inputs and targets on the device once
    on_annotate_url: object
    prior: dict | None  # --init_from's GG-CNN parameters


def run(
    config, workdir, progress: bool = True, on_annotate_url=None, bar=None, first_round_from=None
) -> dict:
    """Runs (or resumes) the active-learning experiment of a complete config; returns the
    results dict of the first alpha (every alpha's results are written under ``workdir``).

    ``first_round_from``: the folder of another experiment whose round 0 is this one's (a
    study's random sampling, `round_state.shared_first_round` says when): a fresh start takes
    its networks and test results instead of training round 0 again, and says so in the log
    and in the round's record (``shared_from``). Ignored with ``split_from_seed``.

    ``on_annotate_url(url)``: with ``oracle='human'``, called with the annotation page's URL
    each round (default: printed). Holds the workdir's lock (`dal_jax.experiment.workdir`) while it runs;
    a workdir in use, unwritable or holding another run raises ValueError before any training.
    ``bar``: a progress bar shared with other experiments (a study's); it is advanced past the
    rounds already finished and by every training step, and left open.
    """
    c = build.resolve(config)
    if c.split_from_seed:
        return _run_trials(c, workdir, progress, on_annotate_url, bar)
    with claim(workdir, exclusive=jax.process_index() == 0) as path:
        check_workdir(path, c)
        if jax.process_index() == 0:
            _log_to(path / "log.txt")
        try:
            ctx, ls = _start(c, path, on_annotate_url, first_round_from)
            return _run_rounds(ctx, ls, progress, bar)
        finally:
            _stop_logging_to(path / "log.txt")


def _run_trials(c, workdir, progress, on_annotate_url, bar) -> dict:
    """``split_from_seed``: trial s runs alone in ``workdir/seed_<s>/`` on the split drawn from
    its seed (each trial has its own pool, so they cannot share one program); their results
    are merged into ``workdir`` as one experiment's. Returns the first alpha's results."""
    grid = Grid.of(c)
    with claim(workdir) as path:
        check_workdir(path, c)
        for s in range(c.seeds):
            run(build.for_trial_split(c, s), path / f"seed_{s}", progress, on_annotate_url, bar)
        per_group = []
        for alpha in grid.alphas:
            sub = "" if grid.groups == 1 else f"alpha_{alpha:g}"
            trials = [path / f"seed_{s}" / sub / "results.json" for s in range(c.seeds)]
            per_group.append(results.merge_trials([json.loads(t.read_text()) for t in trials]))
        results.write_groups(path, c, grid, per_group)
        return per_group[0]


def _start(
    c, workdir: pathlib.Path, on_annotate_url, first_round_from=None
) -> tuple[_Context, LoopState]:
    """Loads the data, checks what needs no training, builds the trainer and resumes (or
    starts, possibly after another experiment's round 0) the loop state."""
    grid = Grid.of(c)
    ds = build.load_data(c)
    if room.is_room(c):  # the user's own frames: the user's hold-out is the test set
        ds = room.split_holdout(c, ds, workdir, on_annotate_url)
    fresh = build.initial_masks(c, ds, grid)
    build.check_budget(c, ds)
    strategy = build.strategy(c)
    if hasattr(strategy, "bind_pool"):  # a control strategy that reads the pool's ground truth
        strategy.bind_pool(ds.pool)
    mesh = distributed.runs_mesh(grid.num_runs) if c.shard else None
    trainer = build.trainer(c, strategy, mesh)
    log.info(
        "run: %s, %d pool / %d test, %d runs", c.dataset, len(ds.pool), len(ds.test), grid.num_runs
    )
    template = trainer.init_states(grid.keys(INIT, 0), ds.pool.inputs.shape[1:])
    ls = round_state.try_resume(workdir, template, len(ds.pool))
    shared = ls is None and first_round_from is not None and not trainer.plugins
    if shared:
        ls, why_not = round_state.shared_first_round(first_round_from, c, template, fresh)
        shared = ls is not None
        log.info(
            "round 0: %s",
            f"taken from {first_round_from} (the same training)"
            if shared
            else f"trained here, not taken from {first_round_from}: {why_not}",
        )
    if ls is None:
        labels = {}
        if room.is_room(c):  # no ground truth: the user labels the initial set too
            queue = oracle.round_queue(workdir, 0)
            initial = np.flatnonzero(fresh[0])
            labels = oracle.annotate(c, ds.pool, initial, queue, on_annotate_url, 0, True)
        ls = LoopState(-1, fresh, [], labels, None)
    elif not shared:
        print(f"resuming {workdir} after round {ls.round}", flush=True)
    pool = dataclasses.replace(
        ds.pool, inputs=jnp.asarray(ds.pool.inputs), targets=jnp.asarray(ds.pool.targets)
    )
    prior = build.load_prior(c, trainer, ds.pool.inputs.shape[1:])
    ctx = _Context(c, workdir, grid, strategy, trainer, ds, pool, on_annotate_url, prior)
    if prior is not None and ls.prior is None:
        ls = dataclasses.replace(ls, prior=_prior_record(ctx))
    if shared:  # the evaluation's diagnostics are the source's; this strategy's own are added
        own = strategy.diagnostics(trainer, ls.states, pool.inputs, ls.masks)
        record = ls.history[0]
        diag = {**record["diagnostics"], **{k: fit.finite_or_none(v) for k, v in own.items()}}
        ls = dataclasses.replace(ls, history=[{**record, "diagnostics": diag}])
        _save(ctx, ls)  # round 0 is this run's own from here on (a one-round run ends here)
    return ctx, ls


def _run_rounds(ctx: _Context, ls: LoopState, progress: bool, shared_bar=None) -> dict:
    """Algorithm 1 from ``ls`` on: train, test, select, save, until `_finished`."""
    c = ctx.c
    initial = ls.history[0]["labeled"][0] if ls.history else int(ls.masks[0].sum())
    bar = shared_bar or _progress(c, initial, ls.round + 1, progress)
    if shared_bar is not None:
        bar.update(sum(round_steps(c, initial)[: ls.round + 1]))
    while True:
        if ls.history and not ls.history[-1]["selected"] and not _finished(c, ls):
            # A finished run extended with more rounds: its last round still has to select.
            ls = _select(ctx, ls)
            _save(ctx, ls)
        if _finished(c, ls):
            break
        ls = _train_round(ctx, ls, bar)
        if not _finished(c, ls):
            ls = _select(ctx, ls)
        _save(ctx, ls)
        record = ls.history[-1]
        log.info(
            "round %d: mean accuracy %.4f", ls.round, fit.mean_accuracy(record["accuracy_all"])
        )
        bar.set_postfix_str(_round_summary(record))
    if shared_bar is None:
        bar.close()
    return results.for_group(c, ctx.grid, ls.history, 0, ls.prior)


def _train_round(ctx: _Context, ls: LoopState, bar) -> LoopState:
    """Trains round ls.round + 1 from fresh (or warm-started) networks and tests it; returns
    the LoopState with the round's record appended."""
    c, r = ctx.c, ls.round + 1
    states = ls.states if (c.warm_start and ls.states is not None) else None
    if states is None:
        states = fit.initial_states(ctx.trainer, ctx.grid, r, ctx.pool.inputs.shape[1:], ctx.prior)
    targets = oracle.apply_human_labels(ctx.pool.targets, ls.human_labels, c.image_size)
    t0, base = time.time(), bar.n
    states, info, steps, val = fit.train_runs(
        c,
        ctx.trainer,
        ctx.grid,
        ctx.pool,
        ls.masks,
        r,
        targets=targets,
        gt=oracle.pool_ground_truth(ctx.ds, ls.human_labels),
        states=states,
        on_chunk=lambda done: bar.update(base + done - bar.n),
    )
    t1 = time.time()
    if jax.process_count() > 1:
        # Every host evaluates and selects identically; fit's kept params are host copies
        # of all runs already.
        params = states.params
        states = distributed.gather(states.replace(params={})).replace(params=params)
    diag = fit.assess(ctx.trainer, states, ctx.ds.test, info)
    acc = diag.pop("accuracy")
    own = ctx.strategy.diagnostics(ctx.trainer, states, ctx.pool.inputs, ls.masks)
    # NaN (nothing to measure, e.g. no held-out labelled image yet) is written as null.
    diag.update({k: fit.finite_or_none(v) for k, v in own.items()})
    _log_divergence(ctx.grid, r, info)
    record = {
        "round": r,
        "labeled": [int(n) for n in ls.masks.sum(axis=1)],
        "accuracy_all": acc,
        "steps": steps,
        "model_choice": info.rule,
        "validation": [] if val is None else val.idx.tolist(),
        "diagnostics": diag,
        # Wall-clock seconds of the round's parts (selection is added by `_select`).
        "seconds": {"train": round(t1 - t0, 3), "evaluate": round(time.time() - t1, 3)},
        "selected": [],
        "selected_score": None,
    }
    bad = fit.collapsed_runs(diag)
    if bad:
        log.warning("round %d: collapsed runs (no grasp on most test images): %s", r, bad)
    return dataclasses.replace(ls, round=r, states=states, history=[*ls.history, record])


def _prior_record(ctx: _Context) -> dict:
    """Round -1: the ``--init_from`` model on the test set, before this run's labels."""
    states = fit.initial_states(ctx.trainer, ctx.grid, 0, ctx.pool.inputs.shape[1:], ctx.prior)
    diag = fit.assess(ctx.trainer, states, ctx.ds.test)
    acc = diag.pop("accuracy")
    log.info("round -1 (the --init_from model): mean accuracy %.4f", fit.mean_accuracy(acc))
    num = ctx.grid.num_runs
    return {
        "round": -1,
        "labeled": [0] * num,
        "accuracy_all": acc,
        "steps": 0,
        "model_choice": "init_from",
        "diagnostics": diag,
        "selected": [],
        "selected_score": None,
    }


def _log_divergence(grid: Grid, r: int, info: fit.FitInfo) -> None:
    for i in np.flatnonzero(info.diverged_at >= 0):
        log.warning(
            "round %d: run %d (%s) diverged: non-finite loss at step %d; %s",
            r,
            i,
            grid.describe(i),
            info.diverged_at[i],
            f"it reports the weights kept at step {info.step[i]}"
            if info.step[i]
            else "no finite weights were kept, its accuracy is recorded as null",
        )


def _select(ctx: _Context, ls: LoopState) -> LoopState:
    """Selects ``budget`` examples per run with the trained networks of round ls.round and has
    the oracle label them; returns the LoopState with the picks in its masks and last record."""
    c, t0 = ctx.c, time.time()
    sel, scores = ctx.strategy.select(
        ctx.trainer,
        ls.states,
        ctx.pool.inputs,
        jnp.asarray(ls.masks),
        c.budget,
        ctx.grid.keys(SELECT, ls.round),
        with_scores=True,
        past=round_state.past_order(ls.history[:-1], ls.masks.shape),
    )
    sel = np.asarray(sel)
    _check_selection(sel, ls.masks, c.budget)
    record = {
        **ls.history[-1],
        "selected": sel.tolist(),
        "selected_score": None if scores is None else np.asarray(scores).tolist(),
        "seconds": {**ls.history[-1].get("seconds", {}), "select": round(time.time() - t0, 3)},
    }
    labels = ls.human_labels
    if c.oracle == "human":
        queue = oracle.round_queue(ctx.workdir, ls.round + 1)
        new = oracle.annotate(
            c, ctx.ds.pool, sel[0], queue, ctx.on_annotate_url, ls.round + 1, room.is_room(c)
        )
        labels = {**labels, **new}
    masks = ls.masks.copy()
    np.put_along_axis(masks, sel, True, axis=1)
    history = [*ls.history[:-1], record]
    return dataclasses.replace(ls, masks=masks, history=history, human_labels=labels)


def _save(ctx: _Context, ls: LoopState):
    round_state.save(ctx.workdir, ctx.c, ctx.grid, ls, ctx.ds)


def _round_summary(record: dict) -> str:
    """The progress line's note on a finished round: mean accuracy and collapsed runs."""
    text = f"round {record['round']} acc {fit.mean_accuracy(record['accuracy_all']):.3f}"
    bad = fit.collapsed_runs(record.get("diagnostics", {}))
    return text + (f" COLLAPSED {len(bad)}/{len(record['accuracy_all'])}" if bad else "")


def _finished(c, ls: LoopState) -> bool:
    """Algorithm 1's stop: K rounds done, or the mean accuracy reached e."""
    if ls.round + 1 >= c.rounds:
        return True
    if not ls.history:
        return False
    return fit.mean_accuracy(ls.history[-1]["accuracy_all"]) >= c.expected_accuracy


def _check_selection(sel, masks, k):
    if sel.shape != (masks.shape[0], k):
        raise RuntimeError(f"strategy returned shape {sel.shape}, expected {(masks.shape[0], k)}")
    for r, row in enumerate(sel):
        if len(set(row.tolist())) != k or masks[r, row].any():
            raise RuntimeError(f"strategy selected repeated or labelled examples for run {r}")


def _log_to(path):
    if any(getattr(h, "baseFilename", None) == str(path) for h in log.handlers):
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # the file has the log; the terminal has the progress bar


def _stop_logging_to(path):
    """Closes this run's log file (the next run in this process, e.g. a study's next
    strategy, logs to its own)."""
    for h in [h for h in log.handlers if getattr(h, "baseFilename", None) == str(path)]:
        log.removeHandler(h)
        h.close()


def round_steps(c, initial: int) -> list[int]:
    """Training steps of every round (``initial``: labelled images in round 0)."""
    return [fit.num_steps(c, initial + r * c.budget) for r in range(c.rounds)]


def _progress(c, initial: int, start_round: int, enabled: bool):
    """The progress bar over every round's steps."""
    steps = round_steps(c, initial)
    desc = f"{c.strategy} x{c.seeds} seeds"
    return fit.progress_bar(sum(steps), desc, enabled, initial=sum(steps[:start_round]))
