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
    parser.add_argument(
        "--move_aside_corrupt",
        action="store_true",
        help="move the label files of samples whose labels cannot be read into the sample's "
        "corrupt-<time>/ folder (kept), so they can be labelled again; without it such a "
        "queue is not served",
    )
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    if not 0 <= args.port <= 65535:
        return fail(f"--port={args.port}: a TCP port is 0..65535 (0 picks a free one)")
    if args.demo < 0:
        return fail(f"--demo={args.demo}: give a number of scenes >= 1")
    queue_dir = pathlib.Path(args.queue)
    if args.demo and not (queue_dir / queue_lib.MANIFEST).exists():
        _demo_queue(queue_dir, args.demo)
    if not (queue_dir / queue_lib.MANIFEST).exists():
        return fail(
            f"{queue_dir} holds no {queue_lib.MANIFEST}; is it an annotation queue? (a run "
            "with --oracle=human writes one; --demo=K writes a demo queue)"
        )
    try:
        if args.move_aside_corrupt:
            for dest in queue_lib.move_aside_corrupt(queue_dir):
                print(f"moved the damaged label files to {dest}", flush=True)
        server = server_lib.serve(queue_dir, args.host, args.port)
    except FileNotFoundError as e:
        return fail(f"{queue_dir}: {e}")
    except ValueError as e:  # a damaged queue.json, or samples whose labels cannot be read
        return fail(str(e))
    except (OSError, OverflowError) as e:
        return fail(f"cannot listen on {args.host}:{args.port}: {e}")
    for index, note in server.notes:
        print(f"note: sample {index}: {note}", flush=True)
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
    try:
        labels = queue_lib.read_labels(queue_dir)
    except ValueError as e:  # damaged on disk while serving
        return fail(str(e))
    total = sum(len(r) for r in labels.values())
    print(f"Finished: {total} grasps on {len(labels)} samples in {args.queue}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
