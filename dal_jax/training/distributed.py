"""Runs over devices and hosts: the run axis (seeds x alphas) is sharded with jax.sharding.

On one host, every local device takes a block of runs (``shard_map`` over a 1-D mesh named
``runs``); with ``jax.distributed`` the mesh spans every process's devices. Each process
builds the same full arrays deterministically, and `put` hands each device its block.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "runs"


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None):
    """Starts jax.distributed when a coordinator is given (a no-op otherwise)."""
    if coordinator is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ValueError("--num_processes/--process_id need --coordinator_address")
        return
    if num_processes is None or process_id is None:
        raise ValueError("--coordinator_address needs --num_processes and --process_id")
    # Gathering results across CPU hosts needs a CPU collectives backend (GPUs use NCCL).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )


def runs_mesh(num_runs: int, max_devices: int | None = None) -> Mesh | None:
    """A mesh over as many devices as evenly divide ``num_runs`` (None for one device)."""
    devices = jax.devices()[: max_devices or None]
    d = max(n for n in range(1, len(devices) + 1) if num_runs % n == 0)
    return None if d == 1 else Mesh(np.asarray(devices[:d]), (AXIS,))


def put(tree, mesh: Mesh, sharded: bool):
    """Places every leaf of ``tree`` (full host values, identical on all processes) on the mesh:
    split along the leading run axis when ``sharded``, replicated otherwise."""
    spec = PartitionSpec(AXIS) if sharded else PartitionSpec()
    sharding = NamedSharding(mesh, spec)

    def one(x):
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x  # already placed (e.g. the states a previous call returned)
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(one, tree)


def gather(tree):
    """Full host copies of (possibly multi-host) sharded arrays."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
