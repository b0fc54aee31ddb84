"""Orbax checkpoints: everything a finished round needs to resume, and the trained networks.

Layout of a run's ``workdir``::

    workdir/checkpoints/<round>/state   TrainState of all seeds (every leaf [S, ...])
    workdir/checkpoints/<round>/arrays  loop arrays: labelled masks [S, N], selections, ...
    workdir/checkpoints/<round>/meta    JSON: config, strategy, round, accuracies, ...

Orbax writes each round into a temporary folder and renames it when complete, so a failed or
interrupted write leaves the previous round's checkpoint as it was. A round written again (the
latest only) goes to ``checkpoints.staging/`` first and replaces the saved copy once complete
(`save`); a round that cannot be read is moved to ``checkpoints.unreadable/`` by the loop's
resume (`move_aside`), never deleted.

A converted PyTorch model (`dal_jax.model.convert_torch`) is the same layout with one round and S = 1.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pathlib
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(workdir) -> pathlib.Path:
    """``workdir/checkpoints`` (or ``workdir`` itself if it already is a checkpoints folder)."""
    path = pathlib.Path(workdir).expanduser().resolve()
    if path.name == CHECKPOINT_DIR or (path.is_dir() and _is_manager_dir(path)):
        return path
    return path / CHECKPOINT_DIR


def _is_manager_dir(path: pathlib.Path) -> bool:
    return any(p.is_dir() and p.name.isdigit() and (p / "meta").exists() for p in path.iterdir())


def _manager(workdir, create: bool = True) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        checkpoint_dir(workdir),
        item_names=("state", "arrays", "meta"),
        options=ocp.CheckpointManagerOptions(create=create, max_to_keep=None),
    )


def save(workdir, round_index: int, state, arrays: dict[str, Any], meta: dict[str, Any]):
    """Writes round ``round_index``, blocking until it is complete on disk.

    A new round must come after every saved one: a round below the latest raises ValueError
    (another writer, or a stale state), as does Orbax refusing to save. The latest round may
    be written again (a resumed run that selects for its last round): the new copy is written
    completely beside it, then swapped in, and only then is the old copy deleted.
    """
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        arrays=ocp.args.StandardSave(arrays),
        meta=ocp.args.JsonSave(meta),
    )
    with _manager(workdir) as mngr:
        latest = mngr.latest_step()
        if latest == round_index:
            _replace(workdir, round_index, args)
            return
        if latest is not None and round_index < latest:
            raise ValueError(_refused(mngr, round_index))
        _save_new(mngr, round_index, args)


def _refused(mngr: ocp.CheckpointManager, round_index: int) -> str:
    return (
        f"{mngr.directory}: round {round_index} not saved: the folder already holds round "
        f"{mngr.latest_step()} (is another run writing to it?)"
    )


def _save_new(mngr: ocp.CheckpointManager, round_index: int, args) -> None:
    """``mngr.save`` of a round that is not on disk yet; its refusal raises ValueError."""
    if not mngr.save(round_index, args=args):
        raise ValueError(_refused(mngr, round_index))
    mngr.wait_until_finished()


def _replace(workdir, round_index: int, args) -> None:
    """Writes round ``round_index`` into ``<checkpoints>.staging`` first; once it is complete,
    moves the saved round to ``<checkpoints>.retired``, the new one into its place, and deletes
    the retired copy. A crash between the two renames leaves both copies on disk (the round is
    then missing from the checkpoints folder, so a resume starts from the round before)."""
    folder = checkpoint_dir(workdir)
    staging, retired = (folder.with_name(f"{folder.name}.{s}") for s in ("staging", "retired"))
    name = str(round_index)
    main_process = jax.process_index() == 0
    if main_process:  # leftovers of an interrupted replacement; the saved round is in place
        for leftover in (staging / name, retired / name):
            shutil.rmtree(leftover, ignore_errors=True)
    _sync("dal_jax_checkpoint_replace_start")
    with ocp.CheckpointManager(
        staging,
        item_names=("state", "arrays", "meta"),
        options=ocp.CheckpointManagerOptions(create=True, max_to_keep=None),
    ) as stage:
        _save_new(stage, round_index, args)
    if main_process:
        retired.mkdir(exist_ok=True)
        (folder / name).rename(retired / name)
        (staging / name).rename(folder / name)
        _fsync_dir(folder)
        shutil.rmtree(retired / name)
        for empty in (staging, retired):
            with contextlib.suppress(OSError):
                empty.rmdir()
    _sync("dal_jax_checkpoint_replace_end")


def _sync(name: str) -> None:
    """A barrier of all hosts (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rounds(workdir) -> list[int]:
    """The rounds with a complete checkpoint, ascending ([] if there is none)."""
    path = checkpoint_dir(workdir)
    if not path.is_dir():
        return []
    with _manager(workdir, create=False) as mngr:
        return sorted(mngr.all_steps())


def _saved_round(workdir, round_index: int | None) -> int:
    """``round_index`` (the latest when None) if ``workdir`` holds it; FileNotFoundError naming
    the available rounds otherwise."""
    available = rounds(workdir)
    if not available:
        raise FileNotFoundError(f"no checkpoint found under {checkpoint_dir(workdir)}")
    if round_index is None:
        return available[-1]
    if round_index not in available:
        raise FileNotFoundError(
            f"no checkpoint for round {round_index} under {checkpoint_dir(workdir)}; "
            f"available rounds: {available}"
        )
    return round_index


def restore(workdir, round_index: int | None = None, state=None, arrays=None):
    """Restores a round (the latest when ``round_index`` is None).

    ``state`` / ``arrays``: templates (pytrees of arrays or ShapeDtypeStructs) to restore into;
    without them the raw trees of NumPy arrays come back. Returns (round, state, arrays, meta).
    """
    round_index = _saved_round(workdir, round_index)
    with _manager(workdir, create=False) as mngr:
        out = mngr.restore(
            round_index,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(state),
                arrays=ocp.args.StandardRestore(arrays),
                meta=ocp.args.JsonRestore(),
            ),
        )
    return round_index, out["state"], out["arrays"], out["meta"]


def restore_meta(workdir, round_index: int | None = None) -> tuple[int, dict]:
    """Only the JSON metadata of a round (the latest by default): (round, meta)."""
    round_index = _saved_round(workdir, round_index)
    with _manager(workdir, create=False) as mngr:
        meta = mngr.restore(round_index, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return round_index, meta["meta"]


def newest_meta(workdir) -> tuple[int | None, dict | None]:
    """(round, meta) of the newest round whose metadata reads; (None, None) if none does."""
    for r in reversed(rounds(workdir)):
        with contextlib.suppress(Exception):  # orbax raises many kinds on a damaged file
            return restore_meta(workdir, r)
    return None, None


def restore_readable(workdir, state=None, arrays=None):
    """Like `restore` of the latest round, falling back to older rounds when one cannot be
    read (truncated or corrupt files): (round, state, arrays, meta, skipped), where ``skipped``
    lists (round, one-line reason) for every newer round passed over. When no round reads,
    round, state, arrays and meta are None. Nothing is moved or deleted."""
    _filter_failed_read_leftovers()
    skipped = []
    for r in reversed(rounds(workdir)):
        failure = None
        try:
            return (*restore(workdir, r, state, arrays), skipped)
        except Exception as e:  # noqa: BLE001 - orbax / tensorstore raise many kinds
            failure = _short_error(e)
        gc.collect()  # the failed read's leftovers, now (filtered) rather than at exit
        skipped.append((r, failure))
    return None, None, None, None, skipped


def move_aside(workdir, round_index: int) -> pathlib.Path:
    """Moves round ``round_index`` out of the checkpoints folder into
    ``<checkpoints>.unreadable/`` (never deleting it); returns its new path."""
    folder = checkpoint_dir(workdir)
    aside = folder.with_name(f"{folder.name}.unreadable")
    aside.mkdir(exist_ok=True)
    dest, n = aside / str(round_index), 1
    while dest.exists():
        dest, n = aside / f"{round_index}-{n}", n + 1
    (folder / str(round_index)).rename(dest)
    return dest


def _short_error(e: BaseException, limit: int = 300) -> str:
    """One line of an Orbax / TensorStore error: its first line without the JSON spec dump
    TensorStore appends (``[tensorstore_spec=...]``), at most ``limit`` characters."""
    text = str(e).strip() or type(e).__name__
    text = text.split(" [tensorstore_spec=", 1)[0].splitlines()[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


_LEFTOVER_FILTERS = []  # installed once per process, by the first `load_ggcnn`
# Words in the paths and messages of Orbax / TensorStore read errors.
_ORBAX_MARKERS = ("orbax", "tensorstore", "OCDBT", "ocdbt", "zarr")


def _from_orbax(exc: BaseException | None, obj=None) -> bool:
    """Whether an exception (or the coroutine it escaped from) belongs to an Orbax/TensorStore
    read: its traceback or message points into them, or it is asyncio's "Event loop is closed"
    raised when a TensorStore callback outlives Orbax's event loop."""
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return True
    code = getattr(obj, "cr_code", None)
    files = [code.co_filename] if code is not None else []
    tb = getattr(exc, "__traceback__", None)
    while tb is not None:
        files.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    text = " ".join(files) + " " + (str(exc)[:2000] if exc is not None else "")
    return any(m in text for m in _ORBAX_MARKERS)


def _filter_failed_read_leftovers() -> None:
    """A failed Orbax restore leaves reads in flight; their callbacks, tasks and coroutines,
    finished or collected later (up to interpreter exit), print hundreds of lines around the
    one-line error: "Exception ignored in: <coroutine ...>", "RuntimeError: Event loop is
    closed", "Task exception was never retrieved", "coroutine ... was never awaited". This
    drops exactly those (everything else is still shown); a successful restore prints none."""
    import sys
    import warnings

    if _LEFTOVER_FILTERS:
        return
    previous = sys.unraisablehook

    def unraisablehook(u):
        if not _from_orbax(u.exc_value, u.object):
            previous(u)

    class _AsyncioFilter(logging.Filter):
        def filter(self, record):
            exc = record.exc_info[1] if record.exc_info else None
            msg = record.getMessage()
            return not (any(m in msg for m in _ORBAX_MARKERS) or _from_orbax(exc))

    sys.unraisablehook = unraisablehook
    logging.getLogger("asyncio").addFilter(_AsyncioFilter())
    warnings.filterwarnings(
        "ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning,
        module="orbax",
    )  # fmt: skip
    _LEFTOVER_FILTERS.append(unraisablehook)


def _best_seed(accuracy, num_seeds: int, where) -> int:
    """The seed with the best recorded accuracy (null = a collapsed run, never chosen); 0 when
    none is recorded (a converted model)."""
    if not accuracy:
        return 0
    try:
        acc = np.asarray(accuracy, np.float64).reshape(-1)  # null -> NaN
    except (TypeError, ValueError):
        raise ValueError(
            f"checkpoint at {where}: meta 'accuracy' is not a list of numbers; pass --seed"
        ) from None
    if len(acc) != num_seeds:
        raise ValueError(
            f"checkpoint at {where}: meta 'accuracy' has {len(acc)} entries but the checkpoint "
            f"holds {num_seeds} seeds; pass --seed"
        )
    finite = np.isfinite(acc)
    return int(np.argmax(np.where(finite, acc, -np.inf))) if finite.any() else 0


def load_ggcnn(path, round_index: int | None = None, seed: int | None = None):
    """GG-CNN parameters of one seed from a run's workdir (or a converted model).

    ``seed``: index along the seed axis; None picks the seed with the best test accuracy
    recorded in the round's metadata (``meta["accuracy"]``, one float per seed), or seed 0
    when there is none. Returns (params pytree of NumPy arrays, meta dict, seed index).

    Raises FileNotFoundError (nothing there, no such round) or ValueError with one line
    naming the checkpoint folder: truncated / corrupt files, or a checkpoint that holds no
    GG-CNN (another program's Orbax checkpoint).
    """
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    where = checkpoint_dir(path)
    try:
        available = rounds(path)
    except Exception as e:  # noqa: BLE001 - orbax raises many kinds on a foreign folder
        raise ValueError(
            f"{where} is not a readable checkpoint folder: {_short_error(e)}"
        ) from None
    if not available:
        raise FileNotFoundError(
            f"no checkpoint found under {where}: expected a run's workdir (experiments.main) "
            "or a folder written by dal_jax.model.convert_torch"
        )
    if round_index is not None and round_index not in available:
        raise FileNotFoundError(
            f"no checkpoint for round {round_index} under {where}; available rounds: {available}"
        )
    chosen = available[-1] if round_index is None else round_index
    failure = None
    _filter_failed_read_leftovers()
    try:
        chosen, state, _, meta = restore(path, chosen)
    except Exception as e:  # noqa: BLE001 - orbax / tensorstore raise many kinds on bad files
        failure = _short_error(e)
    if failure is not None:  # outside the except block, so the traceback can be collected
        gc.collect()  # the failed read's leftovers, now (filtered) rather than at exit
        others = [r for r in available if r != chosen]
        hint = f", or load another round with --round (available: {others})" if others else ""
        raise ValueError(
            f"checkpoint at {where} (round {chosen}) is truncated or corrupt: {failure}. "
            f"Copy it again{hint}"
        )
    if not isinstance(meta, dict):  # a file's content, not an argument: ValueError
        raise ValueError(  # noqa: TRY004
            f"checkpoint at {where} (round {chosen}): its meta is not a JSON object"
        )
    try:
        stacked = state["params"]["ggcnn"]
    except (KeyError, TypeError, IndexError):
        keys = (
            list(state["params"])
            if isinstance(state, dict) and isinstance(state.get("params"), dict)
            else (list(state) if isinstance(state, dict) else type(state).__name__)
        )
        raise ValueError(
            f"checkpoint at {where} holds no GG-CNN parameters (its state has {keys}, not "
            "params/ggcnn): pass a run's workdir from experiments.main or a folder written by "
            "dal_jax.model.convert_torch"
        ) from None
    leaves = jax.tree.leaves(stacked)
    if not leaves or np.ndim(leaves[0]) < 1:
        raise ValueError(f"checkpoint at {where}: params/ggcnn holds no per-seed arrays")
    num_seeds = int(np.shape(leaves[0])[0])
    if seed is None:
        seed = _best_seed(meta.get("accuracy"), num_seeds, where)
    if not 0 <= seed < num_seeds:
        raise ValueError(f"seed index {seed} out of range: the checkpoint holds {num_seeds} seeds")
    params = jax.tree.map(lambda a: np.asarray(a)[seed], stacked)
    meta = dict(meta, round=chosen)
    return params, meta, seed
