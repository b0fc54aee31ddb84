"""A measured walk-through of "teach the robot a new room" on the real Jacquard sample frames.

    python -m experiments.room_walkthrough --sample_data=DIR --out=runs/room_walkthrough
    python -m experiments.room_walkthrough ... --prior   # every round from the original GG-CNN

Runs the four commands of the README's "Teach the robot a new room" on the 20 Jacquard views
of the sample-data folder (``--sample_data``, else $DAL_JAX_SAMPLE_DATA; its ``jacquard/``: 4
objects x 5 views, 1024 x 1024 depth): records them as a camera would
(``dal_jax.robot --record``), prepares the ``frames`` dataset at 300 px, runs ``experiments.main
--dataset=frames --strategy=dal`` and plays the person at the annotation page in headless
Chromium, drawing on every frame served up to ``--grasps_per_frame`` of the frame's Jacquard
grasps (spread out: each next one the farthest from those drawn) by press-drag-release, as a
person would. Then the robot loop runs the last round's model on the recorded frames.

It measures what the user waits for: the seconds from pressing Finish on a page to the next page
(or the end), that is a round's training, evaluation on the hold-out and selection; and the
accuracy every round reports on the hold-out. The drawn labels are read back from the queue
folders and checked against the grasps meant (centre, angle, opening). Writes ``OUT/
walkthrough.json`` and prints a table. Needs playwright and Chromium (``apt-get install
chromium``), and torch for ``--prior`` (the weights' conversion only).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import queue
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

from dal_jax.annotate import folder, labels
from dal_jax.data import grasp, sample_data

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE = 300  # the frames config's crop side
URL = re.compile(r"annotate \((\w+)\) at (http://\S+)")
WEIGHTS = "weights/ggcnn_epoch_23_cornell_statedict.pt"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def camera_folder(shared: pathlib.Path, out: pathlib.Path) -> list[pathlib.Path]:
    """Links the Jacquard views' depth (and RGB) into ``out`` as a camera's folder; returns the
    grasp files, one per view, in the folder's name order."""
    out.mkdir(parents=True)
    depth = sorted((shared / "jacquard").glob("*/*_perfect_depth.tiff"))
    if not depth:
        raise FileNotFoundError(f"no Jacquard *_perfect_depth.tiff under {shared / 'jacquard'}")
    for d in depth:
        (out / d.name).symlink_to(d.resolve())
        rgb = d.with_name(d.name.replace("perfect_depth.tiff", "RGB.png"))
        if rgb.is_file():
            (out / rgb.name).symlink_to(rgb.resolve())
    return [d.with_name(d.name.replace("perfect_depth.tiff", "grasps.txt")) for d in depth]


def spread_grasps(path: pathlib.Path, k: int) -> np.ndarray:
    """Up to k of a Jacquard file's grasps in the 300 px crop, spread out: [k, 4, 2] (row, col).

    Jacquard lists many grasps per object (the same one at several jaw sizes); a person draws a
    few distinct ones, so each next grasp is the one whose centre is farthest from those taken."""
    rects, _ = grasp.parse_jacquard(path.read_text(), scale=SIZE / 1024)
    centre, _, opening, _ = grasp.rect_params(rects)
    inside = (rects.min(axis=(1, 2)) >= 1) & (rects.max(axis=(1, 2)) <= SIZE - 1)
    rects, centre = rects[inside & (opening >= 6)], centre[inside & (opening >= 6)]
    if not len(rects):
        return rects
    taken = [int(np.argmin(np.linalg.norm(centre - centre.mean(0), axis=1)))]
    while len(taken) < min(k, len(rects)):
        dist = np.linalg.norm(centre[:, None] - centre[taken][None], axis=2).min(axis=1)
        taken.append(int(np.argmax(dist)))
    return rects[taken]


class Main:
    """experiments.main in a subprocess (``cmd``, run in the repository); the annotation pages
    it serves, as (name, url, time served), and its output lines (echoed with ``echo``)."""

    def __init__(self, cmd, env, echo: bool = False):
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.pages, self.lines, self.echo = queue.Queue(), [], echo
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.echo:
                sys.stdout.write(line)
            m = URL.search(line)
            if m:
                self.pages.put((m.group(1), m.group(2), time.monotonic()))
        self.pages.put(None)

    def next_page(self, timeout: float | None = None):
        """The next page served, or None when the program ended first (or ``timeout`` seconds
        passed without one)."""
        try:
            return self.pages.get(timeout=timeout)
        except queue.Empty:
            return None


def draw(page, rects: np.ndarray) -> None:
    """Draws each rectangle as a person does: press at its centre, drag to a jaw, release."""
    box = page.locator("#canvas").bounding_box()
    s = box["width"] / SIZE
    centre, angle, opening, _ = grasp.rect_params(rects)
    for (r, c), a, o in zip(centre, angle, opening):
        x0, y0 = box["x"] + c * s, box["y"] + r * s
        x1, y1 = x0 + o / 2 * np.cos(a) * s, y0 - o / 2 * np.sin(a) * s
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=8)
        page.mouse.up()
        page.keyboard.press("Escape")  # deselect, so the next press draws instead of moving


def label_queue(page, url: str, qdir: pathlib.Path, wanted) -> dict:
    """Labels every sample of the queue at ``url``; wanted(frame id) -> rects to draw."""
    from playwright.sync_api import expect

    ids = [s["id"] for s in folder.load_manifest(qdir)["samples"]]
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=30000)
    t0, drawn = time.monotonic(), 0
    for i, sid in enumerate(ids):
        rects = wanted(sid)
        draw(page, rects)
        drawn += len(rects)
        expect(page.locator("#count")).to_have_text(str(len(rects)))
        if len(rects):
            expect(page.locator("#status")).to_have_text(re.compile("saved"), timeout=10000)
        if i + 1 < len(ids):
            page.click("#next")
            expect(page.locator("#position")).to_have_text(f"{i + 2} of {len(ids)}")
    page.click("#finish")
    page.wait_for_selector("#finish-dialog:not([hidden])")
    page.click("#finish-confirm")
    page.wait_for_selector("#done-dialog:not([hidden])")
    return {"frames": len(ids), "grasps": drawn, "ids": ids, "label_s": time.monotonic() - t0}


def check_labels(qdir: pathlib.Path, wanted) -> int:
    """Grasps whose saved rectangle is off the drawn one by > 1.5 px or > 2 degrees."""
    manifest, bad = folder.load_manifest(qdir), 0
    for i, sample in enumerate(manifest["samples"]):
        got = labels.read_sample(qdir, i, manifest)[0].astype(np.float64)
        want = wanted(sample["id"])
        if len(got) != len(want):
            bad += abs(len(got) - len(want))
            continue
        cg, ag, og, _ = grasp.rect_params(got)
        cw, aw, ow, _ = grasp.rect_params(want)
        da = np.abs(grasp.wrap_angle(ag - aw))
        off = (np.linalg.norm(cg - cw, axis=1) > 1.5) | (np.abs(og - ow) > 3) | (da > 0.035)
        bad += int(off.sum())
    return bad


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        sample_data.FLAG,
        default=None,
        help=f"sample-data folder with jacquard/ (and weights/ for --prior); default: "
        f"${sample_data.ENV}",
    )
    p.add_argument("--out", default="runs/room_walkthrough", help="output folder (must not exist)")
    p.add_argument(
        "--prior",
        action="store_true",
        help="start every round from the original Cornell-trained GG-CNN (--init_from)",
    )
    p.add_argument("--grasps_per_frame", type=int, default=4, help="grasps drawn per frame")
    p.add_argument("--test_size", type=int, default=8, help="hold-out frames")
    p.add_argument("--initial", type=int, default=4, help="initially labelled frames")
    p.add_argument("--budget", type=int, default=4, help="frames selected per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds, the initial one included")
    return p.parse_args(argv)


def holdout_accuracy(out: pathlib.Path, run: pathlib.Path, source_of: dict) -> dict:
    """Each model's accuracy on the hold-out against the person's labels (what the loop
    reports) and against all of Jacquard's labels of the same frames (tens to hundreds a frame,
    so a prediction is not counted wrong only for missing the few grasps a person drew).
    -> {"prior" | "round r": {"drawn": acc, "jacquard": acc}}."""
    from dal_jax.data import pools
    from dal_jax.evaluation import metric
    from dal_jax.experiment import oracle
    from dal_jax.model import checkpoint
    from dal_jax.training import train

    qdir = run / "annotate" / "holdout"
    manifest = folder.load_manifest(qdir)
    ds = pools.load_dataset("frames", str(out / "tfds"), channels="depth")
    pool_ids = [i.decode() if isinstance(i, bytes) else str(i) for i in ds.pool.ids]
    idx = [pool_ids.index(s["id"]) for s in manifest["samples"]]
    x = ds.pool.inputs[idx]
    drawn = {j: labels.read_sample(qdir, i, manifest)[0] for i, j in enumerate(idx)}
    full = {
        j: grasp.parse_jacquard(source_of[pool_ids[j]].read_text(), SIZE / 1024)[0] for j in idx
    }
    # Padded as the loop pads a user's labels (the frames have none of their own), then the
    # hold-out's rows.
    drawn, full = (
        tuple(a[idx] for a in oracle.pool_ground_truth(ds, given)) for given in (drawn, full)
    )
    models = [("prior", out / "prior", None)] if (out / "prior").exists() else []
    models += [(f"round {r}", run, r) for r in checkpoint.rounds(run)]
    res = {}
    for name, path, r in models:
        params, meta, _ = checkpoint.load_ggcnn(path, r)
        cfg = train.TrainConfig(input_scale=float(meta.get("input_scale", 1.0)))
        preds = train.Trainer(cfg).predict(params, x)[None]
        res[name] = {
            k: float(np.asarray(metric.evaluate(preds, *gt).acc)[0])
            for k, gt in (("drawn", drawn), ("jacquard", full))
        }
    return res


def main(argv=None):
    a = parse_args(argv)
    try:  # before anything else: without the frames there is nothing to walk through
        shared = sample_data.require(a.sample_data, "jacquard/ and, for --prior, weights/")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    from playwright.sync_api import sync_playwright

    from dal_jax.robot import cli as robot_cli

    out = pathlib.Path(a.out).resolve()
    if out.exists():
        raise SystemExit(f"--out={out} exists; give a new folder (nothing is overwritten)")
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no chromium on PATH (apt-get install chromium)")
    env = dict(os.environ, TFDS_DATA_DIR=str(out / "tfds"), JAX_PLATFORMS="cpu")
    grasp_files = camera_folder(shared, out / "camera")
    t0 = time.monotonic()
    if robot_cli.main(["--source", f"folder:{out / 'camera'}", "--record", str(out / "room")]):
        raise RuntimeError("recording failed")
    record_s = time.monotonic() - t0
    manifest = json.loads((out / "room" / "frames.json").read_text())
    by_name = {f.name.removesuffix("_grasps.txt"): f for f in grasp_files}
    source_of = {
        f["name"]: by_name[f["source_name"].split("_perfect")[0]] for f in manifest["frames"]
    }
    t0 = time.monotonic()
    py = sys.executable
    prep = [py, "-m", "datasets.prepare", "--dataset=frames", f"--manual_dir={out / 'room'}"]
    subprocess.run(prep, cwd=REPO, env=env, check=True)
    prepare_s = time.monotonic() - t0
    main_flags = [
        f"--config.test_size={a.test_size}",
        f"--config.initial={a.initial}",
        f"--config.budget={a.budget}",
        f"--config.rounds={a.rounds}",
    ]
    if a.prior:
        prior = out / "prior"
        conv = [py, "-m", "dal_jax.model.convert_torch", f"--state_dict={shared / WEIGHTS}"]
        subprocess.run([*conv, f"--out={prior}"], cwd=REPO, env=env, check=True)
        main_flags += [f"--init_from={prior}", "--config.input_scale=1"]
    run = out / "run"
    cmd = [py, "-m", "experiments.main", "--dataset=frames", "--strategy=dal", f"--workdir={run}"]

    @functools.cache
    def wanted(frame_id):
        return spread_grasps(source_of[frame_id], a.grasps_per_frame)

    pages, started = [], time.monotonic()
    main_ = Main([*cmd, "--noprogress", *main_flags], env, echo=True)
    finished_at = started
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            while (got := main_.next_page()) is not None:
                name, url, served = got
                rec = label_queue(page, url, run / "annotate" / name, wanted)
                rec.update(page=name, wait_s=served - finished_at)
                finished_at = time.monotonic()
                pages.append(rec)
        finally:
            browser.close()
    if main_.proc.wait() != 0:
        raise RuntimeError("experiments.main failed:\n" + "".join(main_.lines[-30:]))
    last_wait = time.monotonic() - finished_at
    results = json.loads((run / "results.json").read_text())
    bad = sum(check_labels(run / "annotate" / pg["page"], wanted) for pg in pages)
    t0 = time.monotonic()
    detect = subprocess.run(
        [py, "-m", "dal_jax.robot", f"--checkpoint={run}", f"--source=folder:{out / 'room'}"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    robot_s = time.monotonic() - t0
    accuracy = holdout_accuracy(out, run, source_of)
    detections = [json.loads(line) for line in detect.stdout.splitlines() if line.startswith("{")]
    summary = {
        "frames_recorded": len(manifest["frames"]),
        "record_s": record_s,
        "prepare_s": prepare_s,
        "prior": a.prior,
        "pages": pages,
        "wait_after_last_page_s": last_wait,
        "labels_off": bad,
        "rounds": [
            {k: r.get(k) for k in ("round", "labeled", "accuracy", "steps")}
            for r in results["rounds"]
        ],
        "holdout_accuracy": accuracy,
        "robot_s": robot_s,
        "robot_status": [d.get("status") for d in detections],
        "total_s": time.monotonic() - started,
    }
    (out / "walkthrough.json").write_text(json.dumps(summary, indent=1))
    print(
        f"\nrecorded {summary['frames_recorded']} frames in {record_s:.1f} s, "
        f"prepared in {prepare_s:.1f} s; labels off: {bad}"
    )
    print("| page | frames | grasps | wait before it (s) |")
    print("|---|---|---|---|")
    for pg in pages:
        print(f"| {pg['page']} | {pg['frames']} | {pg['grasps']} | {pg['wait_s']:.0f} |")
    print(f"| (end) | | | {last_wait:.0f} |")
    for r in summary["rounds"]:
        print(f"round {r['round']}: {r['labeled']} labelled, accuracy {r['accuracy']}")
    for name, acc in accuracy.items():
        print(
            f"{name}: hold-out accuracy {100 * acc['drawn']:.1f}% against the drawn grasps, "
            f"{100 * acc['jacquard']:.1f}% against all of Jacquard's"
        )
    print(f"robot loop: {len(detections)} frames in {robot_s:.1f} s")


if __name__ == "__main__":
    main()
