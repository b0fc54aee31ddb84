"""Algorithm 1 of the paper: rounds of train -> test -> select -> annotate, all runs batched.

A *run* is one (alpha, seed) pair; R = len(alphas) * seeds runs advance together in one
compiled program (alpha-major order: run r has alpha index r // S and seed index r % S).
Every run's randomness derives from ``config.seed + seed index`` and the round number only, so

* the initial labelled pool of a seed is the same for every strategy and alpha (comparable
  curves), and
* an interrupted run resumed from its last checkpoint ends with the same numbers as an
  uninterrupted one.

Round r (0-based) trains on the labelled set, evaluates on the test split, and (unless it is
the last round or the expected accuracy is reached) selects ``budget`` new examples per run,
which the oracle labels before round r + 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib
import signal
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dal_jax import checkpoint, data, distributed, fit, protocols, strategies, train
from dal_jax.workdir import claim

log = logging.getLogger("dal_jax")
ORACLES = ("gt", "human")
# Config fields that may differ between a run and its resumption.
RESUMABLE_FIELDS = (
    "rounds",
    "expected_accuracy",
    "chunk_steps",
    "annotate_host",
    "annotate_port",
    "shard",
    "seed_form",
    "upper_bound",
)


# ----------------------------------------------------------------------------- configuration


def parse_alphas(alpha) -> list[float]:
    """'0,0.05,0.1' / 0.1 / [0.1, 0.5] -> list of floats; ValueError naming --alpha for a value
    that is not a finite number >= 0, or one given twice."""
    items = alpha.split(",") if isinstance(alpha, str) else alpha
    items = [items] if isinstance(items, (int, float)) else items
    try:
        vals = [float(a) for a in items if not isinstance(a, str) or a.strip()]
    except (TypeError, ValueError):
        vals = []
    if not vals or any(not np.isfinite(a) or a < 0 for a in vals):
        raise ValueError(
            f"--alpha={alpha}: alpha must be one or more finite values >= 0, comma-separated "
            "(e.g. --alpha=0.1 or --alpha=0,0.05,0.1)"
        )
    twice = sorted({a for a in vals if vals.count(a) > 1})
    if twice:
        raise ValueError(
            f"--alpha={alpha}: {', '.join(f'{a:g}' for a in twice)} given more than once; "
            "give each alpha once"
        )
    return vals


def resolve_dataset(name: str, data_dir=None) -> str:
    """CLI dataset name -> TFDS builder name; 'auto' is Cornell when prepared, else synthetic."""
    if name not in protocols.DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(protocols.DATASETS)}")
    if name != "auto":
        return protocols.BUILDER_NAMES.get(name, name)
    if data.is_prepared("cornell", data_dir):
        log.info("dataset=auto: using the prepared Cornell dataset")
        print("dataset=auto: using Cornell (prepared in the TFDS data dir).", flush=True)
        return "cornell"
    print(
        "dataset=auto: Cornell is not prepared, so this runs on the built-in synthetic grasp "
        "set. To use Cornell: python -m datasets.prepare --dataset=cornell --manual_dir=DIR "
        "(see BUILD.md).",
        flush=True,
    )
    return "synthetic_grasps"


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Validates names and fills fields left as None from the dataset's protocol.

    Returns a new, locked config with ``dataset`` set to the TFDS builder name.
    """
    c = ml_collections.ConfigDict(config.to_dict())
    if c.strategy not in strategies.NAMES:
        raise ValueError(f"unknown strategy {c.strategy!r}; valid: {', '.join(strategies.NAMES)}")
    if c.oracle not in ORACLES:
        raise ValueError(f"unknown oracle {c.oracle!r}; valid: {', '.join(ORACLES)}")
    c.dataset = resolve_dataset(c.dataset, c.data_dir)
    for field, value in protocols.PROTOCOLS[c.dataset].items():
        if c.get(field) is None:
            c[field] = value
    c.alpha = ",".join(str(a) for a in parse_alphas(c.alpha))
    if c.seeds < 1 or c.rounds < 1 or c.budget < 1 or c.steps_per_round < 1:
        raise ValueError("seeds, rounds, budget and steps_per_round must all be >= 1")
    if c.image_size % 12:
        raise ValueError(f"image_size must be a multiple of 12; got {c.image_size}")
    if c.oracle == "human" and c.seeds * len(parse_alphas(c.alpha)) != 1:
        raise ValueError("--oracle=human labels for one run: use --seeds=1 and a single alpha")
    c.lock()
    return c


def load_data(c) -> data.Dataset:
    """The dataset a resolved config names, at ``c.image_size``."""
    import tensorflow_datasets as tfds

    tfds.display_progress_bar(False)  # the loop has its own progress bar
    kwargs = dict(c.dataset_kwargs)
    if c.dataset == "synthetic_grasps":
        kwargs = dict(c.synthetic)
    size = None if kwargs.get("crop_size") == c.image_size else c.image_size
    ds = data.load_dataset(
        c.dataset, c.data_dir, size=size, channels=c.channels, config=c.dataset_config, **kwargs
    )
    if len(ds.pool) == 0 or len(ds.test) == 0:
        raise ValueError(f"{c.dataset}: empty pool ({len(ds.pool)}) or test split ({len(ds.test)})")
    if ds.pool.inputs.shape[1] != c.image_size:
        raise ValueError(f"{c.dataset} loaded at {ds.pool.inputs.shape[1]} px, not {c.image_size}")
    return ds


def check_budget(c, ds: data.Dataset) -> None:
    """Refuses (ValueError) a budget the pool cannot supply: the initial labelled set plus
    ``budget`` for every round but the last must fit in the pool."""
    initial = c.initial if c.initial is not None else len(ds.initial or ())
    need = initial + c.budget * (c.rounds - 1)
    if need > len(ds.pool):
        raise ValueError(
            f"--budget={c.budget} x {c.rounds - 1} selection rounds (--rounds={c.rounds}) + "
            f"{initial} initial = {need} labelled images, but the {c.dataset} pool holds "
            f"{len(ds.pool)}; lower --budget or --rounds"
        )


def train_config(c, uses_disc: bool) -> train.TrainConfig:
    return train.TrainConfig(
        in_channels=4 if c.channels == "rgbd" else 1,
        batch_size=c.batch_size,
        lr=c.lr,
        disc_lr=c.disc_lr,
        disc_momentum=c.disc_momentum,
        disc_hidden=tuple(c.disc_hidden),
        use_disc=uses_disc,
        seed_form=c.seed_form,
        chunk_steps=c.chunk_steps,
        input_scale=c.input_scale,
        init=c.init,
        pos_weight=c.pos_weight,
        weight_heads=c.weight_heads,
        warmup=c.warmup,
        lr_final=c.lr_final,
        augment=c.augment,
        zoom_min=c.zoom_min,
    )


# ----------------------------------------------------------------------------- randomness


def seed_key(c, seed_index: int):
    return jax.random.key(c.seed + seed_index)


def run_keys(c, num_alphas: int, purpose: int, round_index: int):
    """[R] keys for one purpose (0 init, 1 train, 2 select, 3 validation split) of one round; a
    seed's key does not depend on the alpha or strategy."""
    keys = [
        jax.random.fold_in(jax.random.fold_in(seed_key(c, s), purpose), round_index)
        for _ in range(num_alphas)
        for s in range(c.seeds)
    ]
    return jnp.stack(keys)


def initial_masks(c, ds: data.Dataset, num_alphas: int) -> np.ndarray:
    """[R, N] bool: ``c.initial`` random pool examples per seed (the same for every strategy
    and alpha), or, when ``c.initial`` is None, the dataset's recorded initial set (Jacquard)."""
    n = len(ds.pool)
    masks = np.zeros((c.seeds, n), bool)
    if c.initial is None:
        if ds.initial is None:
            raise ValueError(f"{c.dataset} records no initial labelled set: set --initial")
        masks[:, ds.initial] = True
    elif not 0 < c.initial <= n:
        raise ValueError(f"initial labelled count {c.initial} must be in 1..{n} (pool size)")
    else:
        for s in range(c.seeds):
            rng = np.random.default_rng(np.asarray(jax.random.key_data(seed_key(c, s))))
            masks[s, rng.choice(n, c.initial, replace=False)] = True
    return np.tile(masks, (num_alphas, 1))


def run_rngs(c, num_alphas: int, purpose: int, round_index: int) -> list:
    """One NumPy generator per run from `run_keys` (host-side draws)."""
    keys = run_keys(c, num_alphas, purpose, round_index)
    return [np.random.default_rng(np.asarray(jax.random.key_data(k))) for k in keys]


# ----------------------------------------------------------------------------- state


@dataclasses.dataclass
class LoopState:
    """What a finished round leaves for the next: masks [R, N], the per-round records, human
    labels by pool index, and the networks (TrainState [R, ...])."""

    round: int
    masks: np.ndarray
    history: list
    human_labels: dict
    states: train.TrainState | None


def config_diff(saved: dict, current: dict) -> list[str]:
    """Names of the fields (other than RESUMABLE_FIELDS) that differ, compared as JSON."""
    saved, current = json.loads(json.dumps(saved)), json.loads(json.dumps(current))
    keys = (set(saved) | set(current)) - set(RESUMABLE_FIELDS)
    return sorted(k for k in keys if saved.get(k) != current.get(k))


def check_workdir(workdir: pathlib.Path, c) -> None:
    """Refuses (ValueError, one line) a workdir that holds another run: a checkpoint of a
    supervised run or of a different config, or, with no checkpoint, a results.json of another
    strategy, dataset, alpha or seed count (which this run would overwrite)."""
    _, meta = checkpoint.newest_meta(workdir)
    if meta is not None:
        _check_saved_config(workdir, meta, c)
        return
    for path, res in _results_files(workdir).items():
        diff = _results_diff(res, c, path.parent.relative_to(workdir))
        if diff:
            raise ValueError(
                f"{path} belongs to another run ({diff}) and {workdir} has no checkpoint to "
                "resume; refusing to overwrite it. Use another --workdir, or move it away."
            )


def _check_saved_config(workdir, meta, c) -> None:
    meta = meta if isinstance(meta, dict) else {}
    saved, supervised = meta.get("config"), meta.get("kind") == "supervised"
    if supervised or not isinstance(saved, dict):
        what = (
            "a supervised run (experiments.train), not an active-learning one"
            if supervised
            else "a checkpoint with no run config (not written by experiments.main)"
        )
        raise ValueError(f"{workdir} holds {what}; use another --workdir")
    diff = config_diff(saved, c.to_dict())
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {c.get(k)!r}" for k in diff)
        raise ValueError(
            f"{workdir} holds a run with a different config ({detail}); refusing to resume. "
            "Use another --workdir, or the same settings."
        )


def _results_files(workdir: pathlib.Path) -> dict:
    """path -> parsed JSON of every results.json in ``workdir`` (and its alpha_*/ folders);
    ValueError naming a file that does not parse."""
    out = {}
    for path in [workdir / "results.json", *sorted(workdir.glob("alpha_*/results.json"))]:
        if not path.is_file():
            continue
        try:
            out[path] = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(
                f"{path} is unreadable ({e}) and {workdir} has no checkpoint to resume; "
                "move it away or use another --workdir"
            ) from None
    return out


def _results_diff(res, c, folder: pathlib.Path) -> str:
    """How a results.json found in ``folder`` (relative to the workdir) differs from what
    this run writes there: "" when it is this run's, else "field: saved -> now"."""
    if not isinstance(res, dict) or res.get("kind") == "supervised":
        return "not an active-learning run of this config"
    alphas = parse_alphas(c.alpha)
    here = alphas[0] if len(alphas) == 1 else None
    if len(alphas) > 1 and str(folder).startswith("alpha_"):
        here = next((a for a in alphas if f"alpha_{a:g}" == str(folder)), None)
    now = {"strategy": c.strategy, "dataset": c.dataset, "alpha": here, "seeds": c.seeds}
    return ", ".join(f"{k}: {res.get(k)!r} -> {v!r}" for k, v in now.items() if res.get(k) != v)


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
    return LoopState(rnd, np.asarray(arrays["masks"]), meta["history"], labels, states)


def save_round(workdir, c, ls: LoopState, ds: data.Dataset):
    meta = {
        "config": c.to_dict(),
        "strategy": c.strategy,
        "dataset": c.dataset,
        "round": ls.round,
        "history": ls.history,
        "accuracy": ls.history[-1]["accuracy_all"],
        "human_labels": {str(k): v.tolist() for k, v in ls.human_labels.items()},
        "num_pool": len(ds.pool),
        "image_size": c.image_size,
        "in_channels": 4 if c.channels == "rgbd" else 1,
        "input_scale": float(c.input_scale),
        "alphas": parse_alphas(c.alpha),
        "seeds": c.seeds,
    }
    checkpoint.save(workdir, ls.round, ls.states, {"masks": ls.masks}, meta)


# ----------------------------------------------------------------------------- one round


def pool_ground_truth(ds: data.Dataset, human_labels: dict, size: int):
    """The pool's rectangles with the human labels in place of the dataset's:
    (gt_rects [N, G, 4, 2], gt_mask [N, G])."""
    rects, mask = ds.pool.gt_rects, ds.pool.gt_mask
    if not human_labels:
        return rects, mask
    g = max([rects.shape[1]] + [len(v) for v in human_labels.values()])
    out = np.zeros((len(rects), g, 4, 2), np.float32)
    out_mask = np.zeros((len(rects), g), bool)
    out[:, : rects.shape[1]], out_mask[:, : rects.shape[1]] = rects, mask
    for i, v in human_labels.items():
        out[i], out_mask[i] = 0, False
        out[i, : len(v)], out_mask[i, : len(v)] = v, True
    return out, out_mask


def annotate_human(workdir, c, ds, ls: LoopState, selected: np.ndarray, targets, on_url=None):
    """Serves the annotation page for the selected examples and applies the labels.

    selected [1, k]; on_url(url) is told where the page is (default: print it). Returns the
    updated targets array.
    """
    from dal_jax import annotate

    idx = [int(i) for i in selected[0]]
    queue = pathlib.Path(workdir) / "annotate" / f"round_{ls.round + 1:03d}"
    ids = [str(ds.pool.ids[i]) for i in idx]
    rgb = None if ds.pool.rgb is None else ds.pool.rgb[idx]
    depth = ds.pool.depth[idx] if ds.pool.depth is not None else ds.pool.inputs[idx, ..., 0]
    annotate.write_queue(queue, ids, rgb, depth, ls.round + 1)
    on_url = on_url or (lambda u: print(f"round {ls.round + 1}: annotate at {u}", flush=True))
    labels = annotate.annotate_queue(queue, c.annotate_host, c.annotate_port, on_url=on_url)
    for i, sid in zip(idx, ids):
        ls.human_labels[i] = np.asarray(labels.get(sid, np.zeros((0, 4, 2))), np.float64)
    return apply_human_labels(targets, ls.human_labels, c.image_size)


def apply_human_labels(targets, labels: dict, size: int):
    for i, rects in labels.items():
        new = data.make_targets(rects, None, (size, size)).astype(targets.dtype)
        targets = targets.at[i].set(new)
    return targets


# ----------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class _Context:
    """What every round of one run uses (built once by `run`)."""

    c: ml_collections.ConfigDict
    workdir: pathlib.Path
    alphas: list
    strategy: strategies.Strategy
    trainer: train.Trainer
    ds: data.Dataset
    inputs: jax.Array
    hparams: dict
    on_annotate_url: object


def run(config, workdir, progress: bool = True, on_annotate_url=None) -> dict:
    """Runs (or resumes) the active-learning experiment; returns the results dict of the
    first alpha (every alpha's results are written under ``workdir``).

    ``on_annotate_url(url)``: with ``oracle='human'``, called with the annotation page's URL
    each round (default: printed). Holds the workdir's lock (`dal_jax.workdir`) while it runs;
    a workdir in use, unwritable or holding another run raises ValueError before any training.
    """
    c = resolve(config)
    with claim(workdir, exclusive=jax.process_index() == 0) as path:
        check_workdir(path, c)
        if jax.process_index() == 0:
            _log_to(path / "log.txt")
        ctx, ls = _start(c, path, on_annotate_url)
        return _run_rounds(ctx, ls, progress)


def _start(c, workdir: pathlib.Path, on_annotate_url) -> tuple[_Context, LoopState]:
    """Loads the data, checks what needs no training, builds the trainer and resumes (or
    starts) the loop state."""
    alphas = parse_alphas(c.alpha)
    ds = load_data(c)
    fresh = initial_masks(c, ds, len(alphas))
    check_budget(c, ds)
    strategy = strategies.get(c.strategy, **c.strategy_config.to_dict())
    tcfg = train_config(c, strategy.uses_disc)
    num_runs = len(alphas) * c.seeds
    mesh = distributed.runs_mesh(num_runs) if c.shard else None
    trainer = train.Trainer(tcfg, strategy.plugins(tcfg), mesh=mesh)
    log.info("run: %s, %d pool / %d test, %d runs", c.dataset, len(ds.pool), len(ds.test), num_runs)
    template = trainer.init_states(run_keys(c, len(alphas), 0, 0), ds.pool.inputs.shape[1:])
    ls = try_resume(workdir, template, len(ds.pool))
    if ls is None:
        ls = LoopState(-1, fresh, [], {}, None)
    else:
        print(f"resuming {workdir} after round {ls.round}", flush=True)
    hp = {"alpha": jnp.asarray(np.repeat(alphas, c.seeds), jnp.float32)}
    inputs = jnp.asarray(ds.pool.inputs)
    return _Context(c, workdir, alphas, strategy, trainer, ds, inputs, hp, on_annotate_url), ls


def _run_rounds(ctx: _Context, ls: LoopState, progress: bool) -> dict:
    """Algorithm 1 from ``ls`` on: train, test, select, save, until `_finished`."""
    c, ds = ctx.c, ctx.ds
    targets = apply_human_labels(jnp.asarray(ds.pool.targets), ls.human_labels, c.image_size)
    initial = ls.history[0]["labeled"][0] if ls.history else int(ls.masks[0].sum())
    bar = _progress(c, initial, ls.round + 1, progress)
    while True:
        if ls.history and not ls.history[-1]["selected"] and not _finished(c, ls):
            # A finished run extended with more rounds: its last round still has to select.
            ls, targets = _select(ctx, ls, ls.history[-1], targets)
            _save(ctx, ls)
        if _finished(c, ls):
            break
        ls, record = _train_round(ctx, ls, targets, bar)
        if not _finished(c, ls):
            ls, targets = _select(ctx, ls, record, targets)
        _save(ctx, ls)
        log.info(
            "round %d: mean accuracy %.4f", ls.round, fit.mean_accuracy(record["accuracy_all"])
        )
        bar.set_postfix_str(_round_summary(record))
    bar.close()
    return results_for_alpha(c, ls.history, 0)


def _train_round(ctx: _Context, ls: LoopState, targets, bar):
    """Trains round ls.round + 1 from fresh (or warm-started) networks and tests it.

    Returns the new LoopState (history extended by the round's record) and the record."""
    c, r, num_alphas = ctx.c, ls.round + 1, len(ctx.alphas)
    states = ls.states if (c.warm_start and ls.states is not None) else None
    if states is None:
        states = ctx.trainer.init_states(run_keys(c, num_alphas, 0, r), ctx.inputs.shape[1:])
    gt = pool_ground_truth(ctx.ds, ls.human_labels, c.image_size)
    masks, val = fit.carve_validation(c, ls.masks, *gt, run_rngs(c, num_alphas, 3, r))
    steps = fit.num_steps(c, int(ls.masks[0].sum()))
    t0, base = time.time(), bar.n
    states, info = fit.fit(
        ctx.trainer,
        states,
        ctx.inputs,
        targets,
        masks,
        ctx.hparams,
        run_keys(c, num_alphas, 1, r),
        steps,
        val,
        on_chunk=lambda done: bar.update(base + done - bar.n),
    )
    if jax.process_count() > 1:
        # Every host evaluates and selects identically; fit's kept params are host copies
        # of all runs already.
        params = states.params
        states = distributed.gather(states.replace(params={})).replace(params=params)
    diag = fit.assess(ctx.trainer, states, ctx.ds.test, info)
    acc = diag.pop("accuracy")
    own = ctx.strategy.diagnostics(ctx.trainer, states, ctx.inputs, ls.masks)
    diag.update({k: np.asarray(v, np.float64).tolist() for k, v in own.items()})
    for i in np.flatnonzero(info.diverged_at >= 0):
        log.warning(
            "round %d: run %d (seed index %d) diverged: non-finite loss at step %d; %s",
            r,
            i,
            i % c.seeds,
            info.diverged_at[i],
            f"it reports the weights kept at step {info.step[i]}"
            if info.step[i]
            else "no finite weights were kept, its accuracy is recorded as null",
        )
    record = {
        "round": r,
        "labeled": [int(n) for n in ls.masks.sum(axis=1)],
        "accuracy_all": acc,
        "steps": steps,
        "model_choice": info.rule,
        "validation": [] if val is None else val.idx.tolist(),
        "diagnostics": diag,
        "train_s": round(time.time() - t0, 2),
        "selected": [],
    }
    bad = fit.collapsed_runs(diag)
    if bad:
        log.warning("round %d: collapsed runs (no grasp on most test images): %s", r, bad)
    return dataclasses.replace(ls, round=r, states=states, history=[*ls.history, record]), record


def _select(ctx: _Context, ls: LoopState, record: dict, targets):
    """Selects ``budget`` examples per run with the trained networks of round ls.round and has
    the oracle label them. Fills record["selected"]; returns (LoopState, targets)."""
    c = ctx.c
    sel = np.asarray(
        ctx.strategy.select(
            ctx.trainer,
            ls.states,
            ctx.inputs,
            jnp.asarray(ls.masks),
            c.budget,
            run_keys(c, len(ctx.alphas), 2, ls.round),
        )
    )
    _check_selection(sel, ls.masks, c.budget)
    record["selected"] = sel.tolist()
    if c.oracle == "human":
        targets = annotate_human(ctx.workdir, c, ctx.ds, ls, sel, targets, ctx.on_annotate_url)
    masks = ls.masks.copy()
    np.put_along_axis(masks, sel, True, axis=1)
    return dataclasses.replace(ls, masks=masks), targets


def _save(ctx: _Context, ls: LoopState):
    with _sigint_deferred():
        save_round(ctx.workdir, ctx.c, ls, ctx.ds)  # orbax: every process takes part
        if jax.process_index() == 0:  # the other hosts hold the same numbers
            write_results(ctx.workdir, ctx.c, ls.history)


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


# ----------------------------------------------------------------------------- outputs


def results_for_alpha(c, history: list, a: int) -> dict:
    """The results.json dict of alpha index ``a``."""
    s = c.seeds
    alphas = parse_alphas(c.alpha)
    rounds = []
    for rec in history:
        sl = slice(a * s, (a + 1) * s)
        diag = rec.get("diagnostics", {})
        rounds.append(
            {
                "round": rec["round"],
                "labeled": rec["labeled"][a * s],
                "accuracy": rec["accuracy_all"][sl],
                "collapsed": diag.get("collapsed", [False] * len(rec["accuracy_all"]))[sl],
                "steps": rec.get("steps"),
                "model_choice": rec.get("model_choice"),
                "diagnostics": {k: v[sl] for k, v in diag.items() if k != "collapsed"},
                "selected": rec["selected"][sl] if rec["selected"] else [],
            }
        )
    return {
        "strategy": c.strategy,
        "dataset": c.dataset,
        "alpha": alphas[a],
        "seeds": s,
        "rounds": rounds,
    }


def upper_bound(workdir, c) -> dict:
    """The supervised full-pool result to draw on the curves: ``c.upper_bound`` (an
    ``experiments.train`` workdir), else ``<workdir>/../<dataset>_supervised`` if it exists.
    Returns {label: results} (empty when there is none or it is for another dataset/size)."""
    from dal_jax import supervised

    where = c.get("upper_bound") or pathlib.Path(workdir).parent / f"{c.dataset}_supervised"
    res = supervised.find(where)
    if res is None:
        if c.get("upper_bound"):
            log.warning("no supervised results.json in %s: no upper bound drawn", where)
        return {}
    if (res.get("dataset"), res.get("image_size")) != (c.dataset, c.image_size):
        log.warning("%s is for another dataset or image size: no upper bound drawn", where)
        return {}
    return {f"supervised, all {res['labeled']} labelled": res}


def write_results(workdir, c, history):
    """results.json and curves.png (per alpha in alpha_<a>/ when there is a grid)."""
    from dal_jax import plots

    alphas = parse_alphas(c.alpha)
    upper = upper_bound(workdir, c)
    for a, alpha in enumerate(alphas):
        out = workdir if len(alphas) == 1 else workdir / f"alpha_{alpha:g}"
        out.mkdir(parents=True, exist_ok=True)
        res = results_for_alpha(c, history, a)
        _write_json(out / "results.json", res)
        plots.plot_curves(out / "curves.png", {f"{c.strategy} (alpha {alpha:g})": res}, upper=upper)
    if len(alphas) > 1:
        all_res = {f"alpha {al:g}": results_for_alpha(c, history, a) for a, al in enumerate(alphas)}
        _write_json(workdir / "alpha_study.json", list(all_res.values()))
        plots.plot_curves(workdir / "alpha_curves.png", all_res, upper=upper)


def _write_json(path, obj):
    tmp = pathlib.Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def _log_to(path):
    if any(getattr(h, "baseFilename", None) == str(path) for h in log.handlers):
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # the file has the log; the terminal has the progress bar


def _progress(c, initial: int, start_round: int, enabled: bool):
    """The progress bar over every round's steps (``initial``: labelled images in round 0)."""
    from tqdm import tqdm

    steps = [fit.num_steps(c, initial + r * c.budget) for r in range(c.rounds)]
    return tqdm(
        total=sum(steps),
        initial=sum(steps[:start_round]),
        unit="step",
        desc=f"{c.strategy} x{c.seeds} seeds",
        disable=not enabled,
        dynamic_ncols=True,
    )
