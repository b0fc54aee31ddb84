"""Orbax checkpoints: everything a finished round needs to resume, and the trained networks.

Layout of a run's ``workdir``::

    workdir/checkpoints/<round>/state   TrainState of all seeds (every leaf [S, ...])
    workdir/checkpoints/<round>/arrays  loop arrays: labelled masks [S, N], selections, ...
    workdir/checkpoints/<round>/meta    JSON: config, strategy, round, accuracies, ...

Orbax writes each round into a temporary folder and renames it when complete, so a failed or
interrupted write leaves the previous round's checkpoint as it was.

A converted PyTorch model (`dal_jax.convert_torch`) is the same layout with one round and S = 1.
"""

from __future__ import annotations

import pathlib
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
    """Writes round ``round_index`` (blocking until it is complete on disk). A round saved
    before (a resumed run that selects for its last round) is replaced."""
    with _manager(workdir) as mngr:
        if round_index in mngr.all_steps():
            mngr.delete(round_index)
        mngr.save(
            round_index,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                arrays=ocp.args.StandardSave(arrays),
                meta=ocp.args.JsonSave(meta),
            ),
        )
        mngr.wait_until_finished()


def rounds(workdir) -> list[int]:
    """The rounds with a complete checkpoint, ascending ([] if there is none)."""
    path = checkpoint_dir(workdir)
    if not path.is_dir():
        return []
    with _manager(workdir, create=False) as mngr:
        return sorted(mngr.all_steps())


def restore(workdir, round_index: int | None = None, state=None, arrays=None):
    """Restores a round (the latest when ``round_index`` is None).

    ``state`` / ``arrays``: templates (pytrees of arrays or ShapeDtypeStructs) to restore into;
    without them the raw trees of NumPy arrays come back. Returns (round, state, arrays, meta).
    """
    available = rounds(workdir)
    if not available:
        raise FileNotFoundError(f"no checkpoint found under {checkpoint_dir(workdir)}")
    if round_index is None:
        round_index = available[-1]
    if round_index not in available:
        raise FileNotFoundError(
            f"no checkpoint for round {round_index} under {checkpoint_dir(workdir)}; "
            f"available rounds: {available}"
        )
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
    available = rounds(workdir)
    if not available:
        raise FileNotFoundError(f"no checkpoint found under {checkpoint_dir(workdir)}")
    round_index = available[-1] if round_index is None else round_index
    with _manager(workdir, create=False) as mngr:
        meta = mngr.restore(round_index, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return round_index, meta["meta"]


def load_ggcnn(path, round_index: int | None = None, seed: int | None = None):
    """GG-CNN parameters of one seed from a run's workdir (or a converted model).

    ``seed``: index along the seed axis; None picks the seed with the best test accuracy
    recorded in the round's metadata (``meta["accuracy"]``, one float per seed), or seed 0
    when there is none. Returns (params pytree of NumPy arrays, meta dict, seed index).
    """
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    try:
        round_index, state, _, meta = restore(path, round_index)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as e:  # orbax raises many kinds on a corrupt folder
        raise ValueError(f"checkpoint at {checkpoint_dir(path)} cannot be read: {e}") from e
    stacked = state["params"]["ggcnn"]
    num_seeds = int(np.shape(jax.tree.leaves(stacked)[0])[0])
    if seed is None:
        acc = meta.get("accuracy")
        seed = int(np.argmax(acc)) if acc else 0
    if not 0 <= seed < num_seeds:
        raise ValueError(f"seed index {seed} out of range: the checkpoint holds {num_seeds} seeds")
    params = jax.tree.map(lambda a: np.asarray(a)[seed], stacked)
    meta = dict(meta, round=round_index)
    return params, meta, seed
