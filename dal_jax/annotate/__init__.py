"""Human-in-the-loop grasp annotation: a queue folder on disk and a local web page.

Typical use from an active-learning round::

    from dal_jax import annotate
    annotate.write_queue(qdir, ids, rgb, depth, round_index)
    labels = annotate.annotate_queue(qdir)        # prints the URL, blocks until Finish
    # labels: {sample id: [G, 4, 2] float (row, col)}

or on its own: ``python -m dal_jax.annotate --queue=DIR``.
"""

from dal_jax.annotate.labels import (
    MAX_GRASPS,
    RevisionConflict,
    read_sample,
    save_sample,
    validate_rects,
)
from dal_jax.annotate.queue import is_finished, read_labels, write_queue
from dal_jax.annotate.server import Server, annotate_queue, serve

__all__ = [
    "MAX_GRASPS",
    "RevisionConflict",
    "Server",
    "annotate_queue",
    "is_finished",
    "read_labels",
    "read_sample",
    "save_sample",
    "serve",
    "validate_rects",
    "write_queue",
]
