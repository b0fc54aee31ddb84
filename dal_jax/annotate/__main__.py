"""Serve an annotation queue on its own: ``python -m dal_jax.annotate --queue=DIR``."""

from __future__ import annotations

import argparse
import pathlib
import sys
import webbrowser

import numpy as np

from dal_jax.annotate import queue as queue_lib
from dal_jax.annotate import server as server_lib

_DESCRIPTION = """\
Serve the grasp annotation page for one queue folder (written by the active-learning loop with
--oracle=human, or by --demo). Open the printed URL in a browser, draw grasps, press Finish.

Every change is saved at once, atomically, to QUEUE/samples/NNNN/cpos.txt (Cornell "x y" lines)
and grasps.json; stopping the server (Ctrl+C) loses nothing, and serving the folder again
resumes at the sample the labeller was on. The command exits 0 when Finish is pressed.
"""

_EPILOG = """\
drawing: press at the grasp centre, drag to one jaw, release (sets angle and opening);
  mouse wheel or [ ] sets the jaw size; click selects; drag a selected grasp to move it;
  Delete removes it; Ctrl+Z undoes; D toggles RGB/depth; N/P next/previous; H shows all keys.

examples:
  python -m dal_jax.annotate --queue=runs/exp1/round_03/queue
  python -m dal_jax.annotate --queue=/tmp/demo_queue --demo=4 --open
  python -m dal_jax.annotate --queue=DIR --host=0.0.0.0 --port=8765   # exposes it to the LAN

security: binds 127.0.0.1 by default; only bind another address on a network you trust,
as anyone who can reach the port can change the labels.
"""


def _demo_queue(queue_dir, k: int, seed: int = 0) -> None:
    """Writes k synthetic table-top scenes (boxes on a plane) so the page can be tried."""
    rng = np.random.default_rng(seed)
    h = w = 300
    rgb = np.zeros((k, h, w, 3), np.uint8)
    depth = np.full((k, h, w), 0.70, np.float32)
    rgb[:] = (150, 140, 125)  # table colour
    for i in range(k):
        for _ in range(rng.integers(3, 7)):
            r0, c0 = rng.integers(30, 230, size=2)
            rh, cw = rng.integers(15, 60, size=2)
            rgb[i, r0 : r0 + rh, c0 : c0 + cw] = rng.integers(30, 255, size=3)
            depth[i, r0 : r0 + rh, c0 : c0 + cw] = 0.70 - rng.uniform(0.02, 0.1)
    ids = [f"demo/scene_{i:03d}" for i in range(k)]
    queue_lib.write_queue(queue_dir, ids, rgb, depth, round_index=0)


def main(argv: list[str] | None = None) -> int:
    """Parses the command line, serves the queue until Finish; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m dal_jax.annotate",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--queue", required=True, metavar="DIR", help="the queue folder")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback)"
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: 0 = any free port)")
    parser.add_argument("--open", action="store_true", help="open the page in a web browser")
    parser.add_argument(
        "--demo",
        type=int,
        default=0,
        metavar="K",
        help="first write K synthetic scenes to --queue if it holds no queue yet",
    )
    args = parser.parse_args(argv)

    if args.demo and not (pathlib.Path(args.queue) / queue_lib.MANIFEST).exists():
        _demo_queue(args.queue, args.demo)
    try:
        server = server_lib.serve(args.queue, args.host, args.port)
    except FileNotFoundError:
        parser.error(f"{args.queue} holds no {queue_lib.MANIFEST}; is it an annotation queue?")
    except OSError as e:
        parser.error(f"cannot listen on {args.host}:{args.port}: {e}")
    with server:
        n = len(server.manifest["samples"])
        if queue_lib.is_finished(args.queue):
            print("note: this queue was already finished; edits are still saved.", flush=True)
        print(f"Annotating {n} samples of round {server.manifest['round']}.", flush=True)
        print(f"Open {server.url} in a browser (Ctrl+C stops; nothing is lost).", flush=True)
        if args.open:
            webbrowser.open(server.url)
        try:
            while not server.wait_finished(0.5):
                pass
        except KeyboardInterrupt:
            print(f"\nstopped; labels so far are saved in {args.queue}", flush=True)
            return 130
    labels = queue_lib.read_labels(args.queue)
    total = sum(len(r) for r in labels.values())
    print(f"Finished: {total} grasps on {len(labels)} samples in {args.queue}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
