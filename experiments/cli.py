"""What the experiment commands share: leaving on Ctrl-C."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn


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
