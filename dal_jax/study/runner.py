"""A study: every strategy (or every alpha) on the same seeds, and its paired report.

``run(config, DIR, strategies=...)`` runs each strategy as its own experiment in
``DIR/<strategy>/`` (`dal_jax.experiment.loop`: resumable, and seed s starts from the same initial pool
for every strategy, so the trials are paired by seed; random sampling runs first, and the
strategies that train GG-CNN alone take its round 0, the same training, instead of repeating
it). ``run(config, DIR, alphas=...)`` is the
alpha study: one DAL experiment with the alphas batched, in ``DIR/alpha/``. Either way the
report (`dal_jax.study.report`) compares every entry with a baseline (random sampling; alpha 0)
and is written to DIR: study.md, study.json, study.png and per entry selected.png.

A second call with the same DIR finishes what is missing and recomputes the report. A folder
holding a run of another config is refused before anything trains. A strategy that fails does
not stop the others; the report marks it incomplete.
"""

from __future__ import annotations

import json
import logging
import pathlib
import time
import traceback

import ml_collections
import numpy as np

from dal_jax import strategies
from dal_jax.data import pools
from dal_jax.evaluation import plots
from dal_jax.experiment import build, loop, results
from dal_jax.experiment.workdir import check_workdir, claim
from dal_jax.strategies import CONTROLS  # `run`'s argument `strategies` hides the module
from dal_jax.study import controls as control_runs
from dal_jax.study import figures as study_figures
from dal_jax.study import report as study_report
from dal_jax.training import fit
from dal_jax.training.runs import parse_alphas

log = logging.getLogger("dal_jax")
ALPHA_FOLDER = "alpha"


def parse_strategies(names) -> tuple[str, ...]:
    """'rs,dal' or a sequence -> names in the given order; ValueError listing the valid ones."""
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [n.strip().lower() for n in items if n.strip()]
    valid = strategies.NAMES + strategies.VARIANTS
    bad = [n for n in items if n not in valid]
    if bad or not items:
        raise ValueError(
            f"unknown strategy {', '.join(map(repr, bad)) or '(none given)'} in --strategies; "
            f"valid: {', '.join(valid)}"
        )
    if len(set(items)) != len(items):
        raise ValueError(f"--strategies={','.join(items)} names a strategy twice")
    return tuple(items)


def _entries(config, names, alphas) -> dict:
    """folder -> resolved config of every experiment of the study."""
    if alphas is not None:
        c = build.resolve(_with(config, strategy="dal", alpha=alphas))
        return {ALPHA_FOLDER: c}
    return {n: build.resolve(_with(config, strategy=n)) for n in names}


def _with(config, **fields):
    """A copy of ``config`` with ``fields`` replaced (``alpha`` by the parsed weights)."""
    return ml_collections.ConfigDict({**config.to_dict(), **fields})


def run(
    config, workdir, strategies=strategies.NAMES, alphas=None, progress=True, controls=True
) -> dict:
    """Runs (or finishes) the study in ``workdir`` and writes its report; returns study.json's
    dict. ``alphas``: a tuple of two or more DAL weights for the alpha study (then
    ``strategies`` is not used). ``controls``: with random sampling among the strategies, also
    run the controls that show whether the study can see a selection effect (`dal_jax.study.controls`:
    no new labels, doubled steps; and the positive control "kinds" on pools whose object kinds
    are imbalanced).

    One study at a time: the study holds ``workdir``'s lock (`claim`) throughout, so a second
    study (or run) on the same folder is refused at once with a `WorkdirError` naming the
    holder's pid, before it loads or writes anything; a lock left by a dead process does not
    block.
    """
    workdir = pathlib.Path(workdir).expanduser()
    if alphas is not None:
        alphas = parse_alphas(alphas)
        if len(alphas) < 2:
            raise ValueError("an alpha study needs two or more alphas (e.g. --alpha=0,0.1)")
    entries = _entries(config, parse_strategies(strategies), alphas)
    with claim(workdir):
        return _run(config, workdir, entries, progress, controls)


def _run(config, workdir: pathlib.Path, entries: dict, progress: bool, controls: bool) -> dict:
    """`run` once the folder is claimed: every entry, then the controls, then the report."""
    first = next(iter(entries.values()))
    # With per-trial splits the thumbnails show seed 0's own pool.
    ds = build.load_data(build.for_trial_split(first, 0) if first.split_from_seed else first)
    control1 = controls and _runs_controls(first, entries)
    positive, not_positive = control_runs.positive_control(ds.pool.kinds)
    if control1 and positive:
        entries.update(_entries(config, CONTROLS, None))
    for folder, c in entries.items():
        if (workdir / folder).exists():
            check_workdir(workdir / folder, c)
    rs_steps = loop.round_steps(first, build.initial_count(first, ds))
    per_entry = (first.seeds if first.split_from_seed else 1) * sum(rs_steps)  # trials one by one
    total = len(entries) * per_entry
    if control1:
        total += control_runs.control_steps(entries["rs"], rs_steps)
    bar = fit.progress_bar(total, f"study x{first.seeds} seeds", progress)
    failed = _run_entries(workdir, entries, progress, bar, per_entry)
    sensitivity = None
    if control1 and "rs" not in failed:
        t0 = time.time()
        sensitivity = control_runs.label_sensitivity(
            entries["rs"], workdir / "rs", workdir / control_runs.FOLDER, ds, bar
        )
        bar.write(f"controls: no new labels, doubled steps ({time.time() - t0:.0f} s)")
    bar.close()
    ctl = None
    if control1:
        ctl = {
            "label_sensitivity": sensitivity,
            "positive": CONTROLS[0] if positive else None,
            "kinds_available": positive,
            "positive_why": not_positive,
        }
    return report(workdir, entries, ds, failed, ctl)


def _run_entries(workdir: pathlib.Path, entries: dict, progress: bool, bar, per_entry) -> dict:
    """Runs each entry in its folder, one after the other, random sampling first: the entries
    whose round 0 is its very training (graph density, core-set, ...: GG-CNN alone, same
    labelled set and keys) take that round from it instead of training it again
    (`round_state.shared_first_round`). Returns entry -> why it failed."""
    failed = {}
    order = sorted(entries, key=lambda folder: folder != "rs")
    for i, folder in enumerate(order):
        c, t0 = entries[folder], time.time()
        source = workdir / "rs" if "rs" in entries and folder != "rs" else None
        try:
            loop.run(c, workdir / folder, progress=progress, bar=bar, first_round_from=source)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one strategy's failure must not end the study
            failed[folder] = f"{type(e).__name__}: {e}"
            log.error("study: %s failed\n%s", folder, traceback.format_exc())
        bar.n = (i + 1) * per_entry
        bar.refresh()
        bar.write(_finished_line(workdir / folder, folder, failed.get(folder), time.time() - t0))
    return failed


def _runs_controls(first, entries) -> bool:
    """Control 1 needs random sampling's finished curve on the study's own pool and labels."""
    return (
        "rs" in entries
        and not first.split_from_seed
        and first.oracle == "gt"
        and not first.get("init_from")
    )


def _finished_line(folder: pathlib.Path, name: str, error, seconds: float) -> str:
    if error:
        return f"{name}: FAILED ({error}); its finished rounds are kept in {folder}"
    res = _load_results(folder)
    last = res[next(iter(res))]["rounds"][-1] if res else None
    if last is None:
        return f"{name}: no results"
    acc = fit.mean_accuracy(last["accuracy"])
    return f"{name}: done, {last['labeled']} labelled, mean accuracy {100 * acc:.1f}% ({seconds:.0f} s)"


def _load_results(folder: pathlib.Path) -> dict:
    """label -> results.json of an experiment folder: its strategy, or per alpha of a grid
    (``alpha_<a>/``) "alpha <a>" by increasing alpha."""
    own = pathlib.Path(folder) / results.FILE
    return {
        res["strategy"] if path == own else f"alpha {res['alpha']:g}": res
        for path, res in results.read_folder(folder).items()
    }


def report(workdir: pathlib.Path, entries: dict, ds, failed: dict, controls=None) -> dict:
    """Writes study.md/json/png, picks.png and selected.png from what the folders hold;
    returns the report (with ``incomplete``: entry -> why, for failed or unfinished ones).
    controls: the control runs' outcome (see `run`), None when none were run."""
    found = {}
    for folder in entries:
        found.update(_load_results(workdir / folder))
    if not found:
        raise ValueError(f"{workdir}: no finished round in any experiment of the study")
    c = next(iter(entries.values()))
    incomplete = dict(failed)
    for label, res in found.items():
        if len(res["rounds"]) < c.rounds and label not in incomplete:
            incomplete[label] = f"{len(res['rounds'])} of {c.rounds} rounds"
    baseline = _baseline(found)
    upper = results.upper_bound(workdir, c)
    rep = write_report(
        workdir,
        found,
        baseline,
        upper=next(iter(upper.values()), None),
        incomplete=incomplete,
        controls=controls,
        control_labels=tuple(k for k in found if strategies.is_control(k)),
        pool_info=pool_info(ds),
    )
    images = ds.pool.depth if ds.pool.depth is not None else ds.pool.inputs[..., 0]
    for label, res in found.items():
        out = workdir / (ALPHA_FOLDER if label.startswith("alpha") else label)
        name = "selected.png" if not label.startswith("alpha") else f"selected_{label[6:]}.png"
        study_figures.plot_selected(out / name, np.asarray(images), res, seed_index=0)
    return rep


def pool_info(ds) -> dict:
    """What the report says about the images a strategy picked: per pool image the object
    kinds ([N, K] counts, or None), labelled grasps [N] and object pixels [N]."""
    pool = ds.pool
    return {
        "kind_names": ds.info.get("kind_names") if pool.kinds is not None else None,
        "kinds": None if pool.kinds is None else np.asarray(pool.kinds).tolist(),
        "grasps": np.asarray(pool.gt_mask).sum(axis=1).tolist(),
        "object_pixels": None if pool.depth is None else pools.object_pixels(pool.depth).tolist(),
    }


def _baseline(found: dict) -> str:
    """Random sampling; in an alpha study alpha 0 (else the smallest alpha)."""
    if "rs" in found:
        return "rs"
    alphas = sorted((float(k[6:]), k) for k in found if k.startswith("alpha "))
    return alphas[0][1] if alphas else next(iter(found))


def write_report(directory, results: dict, baseline: str, upper: dict | None = None, **kw) -> dict:
    """Writes study.json (atomically), study.md and study.png (and picks.png, controls.png when
    the report has them) to ``directory``; returns the report (`study_report.build`; kw:
    n_boot, seed, incomplete, ...). upper: a supervised results dict or None."""
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rep = study_report.build(results, baseline, upper, **kw)
    tmp = out / "study.json.tmp"
    tmp.write_text(json.dumps(rep, indent=1, allow_nan=False))
    tmp.replace(out / "study.json")  # a reader never sees half a file
    (out / "study.md").write_text(study_report.markdown(rep))
    bound = {f"supervised, all {upper.get('labeled', '?')} labelled": upper} if upper else None
    inset = {
        k: ([r["labeled"] for r in d["rounds"]], [r["disc_acc"]["mean"] for r in d["rounds"]])
        for k, d in rep.get("discriminator", {}).items()
    }
    plots.plot_curves(out / "study.png", results, upper=bound, band="ci", baseline=baseline,
                      seeds=False, inset=inset or None)  # fmt: skip
    if rep.get("picks"):
        study_figures.plot_picks(out / "picks.png", rep)
    if rep["controls"]["informative"] is not None:
        study_figures.plot_controls(out / "controls.png", rep)
    return rep
