"""What the experiment commands share: the config from the flags, and leaving on Ctrl-C."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from dal_jax.experiment import build
from experiments import configs


def exit_interrupted(message: str) -> NoReturn:
    """Ctrl-C: prints ``message`` as one line and exits 130 without tearing down the
    interpreter (os._exit).

    A Ctrl-C during an XLA compile abandons the compile half-way (jaxlib raises
    KeyboardInterrupt from inside it), and the interpreter's teardown after that crashed with a
    segmentation fault (exit 139). Nothing is lost by skipping the teardown: saves defer Ctrl-C
    until a round is completely on disk, and the logs are flushed here.
    """
    print(f"\ninterrupted: {message}", file=sys.stderr, flush=True)
    logging.shutdown()
    sys.stdout.flush()
    os._exit(130)


def config_from_flags(config, overrides: dict):
    """The config file's config with the shortcut flags (field -> absl flag) applied, completed
    from the dataset's experiment file (`experiments.configs.complete`).

    ValueError when --dataset names another dataset than a config file that fixes the protocol
    fields (a dataset's experiment file: its numbers would silently run on the other dataset).
    """
    flag = overrides.get("dataset")
    name = None if flag is None else flag.value
    fixed = all(config[f] is not None for f in configs.default.PROTOCOL_FIELDS if f != "initial")
    if name is not None and fixed and configs.get(name).dataset != config.dataset:
        raise ValueError(
            f"--dataset={name} but the config file is {config.dataset}'s experiment; "
            f"use --config=experiments/configs/{name}.py instead"
        )
    for field, flag in overrides.items():
        if flag.value is not None:
            config[field] = flag.value
    build.check_names(config)
    return configs.complete(config)
