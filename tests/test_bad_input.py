"""Bad input gives one clear line, never a traceback or a silently wrong result.

One table (`CASES`) lists every class of bad input found so far: what is called (a CLI's ``main``
or a function), the input (built in ``tmp_path``), the expected message fragment and the exit
code (2 for the CLIs' "error: ..." line) or the exception. Add a row for each new class.

Kinds of rows:

* ``cli``: ``make(ctx)`` returns argv for ``MAINS[target]``, run in this process; the exit code
  must be ``code``, exactly one stderr line may say "error:", holding ``expect``; no traceback.
  ``code`` 0 rows check a message the CLI prints while it goes on (e.g. the robot's stats).
* ``subprocess``: the same, as ``python -m target``, for what only shows in a fresh interpreter
  (messages printed at exit) or for absl CLIs whose flags cannot be parsed twice in one process
  (experiments.main). Each costs a JAX import, so keep them few.
* ``raises``: ``make(ctx)`` returns a callable; it must raise ``code`` matching ``expect``.
* ``returns``: ``make(ctx)`` returns a callable giving a text (a skip reason, a note) that must
  contain ``expect``: bad input that is skipped and reported rather than refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable

import jax
import numpy as np
import pytest
import tifffile
from PIL import Image

from dal_jax import robot
from dal_jax.annotate import __main__ as annotate_cli
from dal_jax.annotate import queue as queue_lib
from dal_jax.annotate import server as server_lib
from dal_jax.data import grasp, preprocess
from dal_jax.experiment import build, loop, plain, supervised
from dal_jax.experiment.workdir import WorkdirError, claim
from dal_jax.model import checkpoint
from dal_jax.robot import cli as robot_cli
from datasets import common, prepare
from datasets.jacquard_subset import jacquard_subset_dataset_builder as jacquard
from experiments import cli, compare
from tests.conftest import SHARED_DATA
from tests.test_annotate import make_queue, rect
from tests.test_inference import SIZE, planted_params, scene
from tests.test_loop import smoke

REPO = pathlib.Path(__file__).resolve().parents[1]
JAC_OBJECT = "1a9fa4c269cfcc1b738e43095496b061"

MAINS = {
    "dal_jax.robot.detect": robot_cli.detect_main,
    "dal_jax.robot": robot_cli.main,
    "dal_jax.annotate": annotate_cli.main,
    "datasets.prepare": prepare.main,
    "experiments.compare": lambda argv: compare.main(["compare", *argv]),
}


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    kind: str  # cli | subprocess | raises | returns
    target: str  # the module of the CLI, or the function called (for the reader)
    make: Callable  # ctx -> argv (cli, subprocess) or a zero-argument callable
    expect: str  # message fragment (a regular expression for `raises`)
    code: int | type[BaseException] | None = 2
    shared: bool = False  # needs the real sample files in ../shared/data
    quiet: bool = True  # subprocess: nothing on stderr but the error line (False: library logs)


class Ctx:
    """Per-test folder plus lazily built shared inputs (one good 96 px checkpoint per module)."""

    def __init__(self, tmp: pathlib.Path, factory):
        self.tmp = tmp
        self._factory = factory
        self.stack = contextlib.ExitStack()  # held while the row runs (e.g. a workdir lock)

    @property
    def ckpt(self) -> pathlib.Path:
        return _good_checkpoint(self._factory)

    def file(self, name: str, data: bytes = b"") -> pathlib.Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    def tiff(self, name: str, array) -> pathlib.Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(p, np.asarray(array))
        return p


_CKPT: dict = {}


def _good_checkpoint(factory) -> pathlib.Path:
    """A one-seed 96 px checkpoint of the planted GG-CNN, written straight through
    `checkpoint.save` (no optimiser state: loading needs only params/ggcnn), built once."""
    if "good" not in _CKPT:
        run = factory.mktemp("good_run")
        ggcnn = jax.tree.map(lambda a: np.asarray(a)[None], planted_params(SIZE))
        meta = {"accuracy": [0.3], "in_channels": 1, "image_size": SIZE}
        checkpoint.save(run, 0, {"params": {"ggcnn": ggcnn}}, {"x": np.zeros(1)}, meta)
        _CKPT["good"] = run
    return _CKPT["good"]


# ----------------------------------------------------------------------------- inputs


def _depth_tiff(ctx, array, name="frame.tiff") -> str:
    return str(ctx.tiff(name, array))


def _other_pytree_checkpoint(ctx) -> str:
    # An Orbax checkpoint of the same layout holding something else than a GG-CNN.
    state = {"params": {"mlp": {"kernel": np.zeros((2, 3, 4), np.float32)}}}
    checkpoint.save(ctx.tmp / "other", 0, state, {"x": np.zeros(2)}, {"accuracy": [0.1, 0.2]})
    return str(ctx.tmp / "other")


def _truncated_checkpoint(ctx) -> str:
    run = ctx.tmp / "truncated"
    shutil.copytree(ctx.ckpt, run)
    # Cut every array data file of the state to a third (an interrupted copy); cutting only
    # one can miss: which file holds which array is Orbax's choice.
    for data in (run / "checkpoints" / "0" / "state").rglob("d/*"):
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    return str(run)


def _cornell_manual(ctx, tiff_bytes: bytes, pcd: bool = False) -> pathlib.Path:
    """A Cornell manual folder with one scene whose depth TIFF holds ``tiff_bytes``."""
    sub = ctx.tmp / "manual" / "01"
    sub.mkdir(parents=True)
    Image.fromarray(np.zeros((480, 640, 3), np.uint8)).save(sub / "pcd0100r.png")
    (sub / "pcd0100cpos.txt").write_text("253 319\n309 324\n307 350\n251 346\n")
    (sub / "pcd0100d.tiff").write_bytes(tiff_bytes)
    if pcd:
        (sub / "pcd0100.txt").write_text("not a point cloud")
    return ctx.tmp / "manual"


def _truncated(path: pathlib.Path, keep: int = 5000) -> bytes:
    return path.read_bytes()[:keep]


def _jacquard_copy(ctx, views, folders=("a",)) -> pathlib.Path:
    """A Jacquard manual folder with ``views`` of the real object copied into each folder."""
    src = SHARED_DATA / "jacquard" / JAC_OBJECT
    for folder in folders:
        dest = ctx.tmp / "jac" / folder
        dest.mkdir(parents=True)
        for v in views:
            for f in src.glob(f"{v}_*"):
                os.symlink(f, dest / f.name)
    return ctx.tmp / "jac"


def _jacquard_truncated_view(ctx):
    root = _jacquard_copy(ctx, [0])
    tif = root / "a" / f"0_{JAC_OBJECT}_perfect_depth.tiff"
    data = tif.read_bytes()
    tif.unlink()
    tif.write_bytes(data[:20000])
    skips = common.Skips()
    assert jacquard.load_view(root / "a" / f"0_{JAC_OBJECT}_", "perfect", 300, skips) is None
    return skips.items[0][1]


def _cornell_truncated_tiff_reason(ctx, pcd: bool):
    manual = _cornell_manual(ctx, _truncated(SHARED_DATA / "cornell" / "pcd0100d.tiff"), pcd=pcd)
    skips = common.Skips()
    files = common.find_cornell_scenes([manual])["pcd0100"]
    assert common.load_cornell_scene(files, 300, skips) is None
    return " | ".join(why for _, why in skips.items)


def _corrupt_queue(ctx) -> pathlib.Path:
    """A queue whose sample 0 has labels, then both label files damaged."""
    qdir = make_queue(ctx.tmp)
    queue_lib.save_sample(qdir, 0, rect((60, 80), 0, 40, 20)[None], 0)
    sdir = qdir / "samples" / "0000"
    (sdir / "grasps.json").write_text('{"id": "cornell/pcd100", "revis')
    (sdir / "cpos.txt").write_text("80 60\n80 100\ngarbage\n")
    return qdir


def _queue_with_manifest(ctx, text: str) -> str:
    qdir = make_queue(ctx.tmp)
    (qdir / "queue.json").write_text(text)
    return str(qdir)


def _robot_folder_with_bad_frames(ctx) -> list[str]:
    folder = ctx.tmp / "frames"
    folder.mkdir()
    np.save(folder / "a_good.npy", scene())
    (folder / "b_truncated.tiff").write_bytes(b"II*\x00" + b"\x00" * 20)
    np.save(folder / "c_kilometres.npy", scene() * 1e6)  # implausible units
    return ["--checkpoint", str(ctx.ckpt), f"--source=folder:{folder}"]


def _missing_middle_line(_ctx):
    a = ["253 319.7", "309.2 324.1", "307.0 350.5", "251.3 346.9"]
    b = ["100 100", "140 100", "140 120", "100 120"]
    c = ["200 50", "230 80", "216 94", "186 64"]
    text = "\n".join(a + b[:1] + b[2:] + c)  # b's second line is missing
    rects, skipped, notes = grasp.parse_cornell_report(text)
    assert skipped == 1 and len(rects) == 2  # a and c whole, b skipped; nothing mixed
    return notes[0]


SMOKE = ["--config=experiments/configs/default.py:smoke", "--dataset=synthetic", "--noprogress"]


def _busy_workdir(ctx) -> pathlib.Path:
    """A workdir whose lock this (test) process holds while the row runs."""
    wd = ctx.tmp / "busy"
    ctx.stack.enter_context(claim(wd))
    return wd


def _frames_prepared_then_changed(ctx) -> list[str]:
    """argv preparing a frames folder that was prepared before and has since gained a frame of
    another camera size."""
    manual, data = ctx.tmp / "room", ctx.tmp / "tfds"
    manual.mkdir()
    for i in range(2):
        depth = np.full((60, 80), 0.8 + i / 100, np.float32)
        depth[10:30, 20:40] -= 0.1
        tifffile.imwrite(manual / f"frame_00000{i}_depth.tiff", depth)
    argv = ["--dataset=frames", f"--manual_dir={manual}", f"--data_dir={data}", "--set", "size=24"]
    if prepare.main(argv) != 0:
        raise AssertionError("preparing the first frames failed")
    tifffile.imwrite(manual / "frame_000002_depth.tiff", np.full((40, 50), 0.8, np.float32))
    return argv


def _results_only_workdir(ctx) -> pathlib.Path:
    """A workdir holding only the results.json of a DAL run (its checkpoints deleted)."""
    wd = ctx.tmp / "results_only"
    wd.mkdir()
    res = {"strategy": "dal", "dataset": "synthetic_grasps", "alpha": 0.1, "seeds": 2, "rounds": []}
    (wd / "results.json").write_text(json.dumps(res))
    return wd


def _saved_run(ctx, rounds=(0,), **meta) -> pathlib.Path:
    """A workdir with checkpoints of tiny arrays for ``rounds``, each with ``meta``."""
    wd = ctx.tmp / "saved"
    for r in rounds:
        checkpoint.save(wd, r, {"w": np.zeros((2, 3), np.float32)}, {"m": np.zeros(2)}, meta)
    return wd


def _dal_checkpoint(ctx) -> pathlib.Path:
    """A workdir with a checkpoint whose meta holds the (resolved) DAL smoke config."""
    return _saved_run(ctx, config=build.resolve(smoke()).to_dict())


def _results_file(ctx, text: str) -> list[str]:
    (ctx.tmp / "run").mkdir()
    (ctx.tmp / "run" / "results.json").write_text(text)
    return [str(ctx.tmp / "run")]


# ----------------------------------------------------------------------------- the table

INF, ROB, ANN = "dal_jax.robot.detect", "dal_jax.robot", "dal_jax.annotate"
PREP = "datasets.prepare"
MAIN, CMP = "experiments.main", "experiments.compare"
FRAME = scene(holes=False)
NO_SAMPLES = json.dumps({"format": queue_lib.FORMAT, "round": 0, "height": 4, "width": 4})

CASES = [
    # 1. Depth units: decided from the stored dtype and values, implausible ranges refused.
    Case(
        "depth-uint16-kilometres",
        "cli",
        INF,
        lambda c: [
            "--checkpoint",
            str(c.tmp / "never_read"),
            "--depth",
            _depth_tiff(c, np.full((60, 80), 30000, np.uint16)),
        ],
        r"implausible depth.*30 m.*--depth_scale",
    ),
    Case(
        "depth-float-micrometres",
        "raises",
        "robot.read_depth",
        lambda c: lambda: robot.read_depth(_depth_tiff(c, FRAME * 1e6)),
        r"frame\.tiff: implausible depth.*--depth_scale",
        ValueError,
    ),
    Case(
        "depth-no-valid-pixel",
        "raises",
        "preprocess.read_tiff",
        lambda c: lambda: preprocess.read_tiff(_depth_tiff(c, np.zeros((60, 80), np.float32))),
        r"frame\.tiff: no valid depth pixel",
        ValueError,
    ),
    Case(
        "depth-8-bit-image",
        "raises",
        "robot.read_depth",
        lambda c: lambda: robot.read_depth(_depth_tiff(c, np.full((60, 80), 90, np.uint8))),
        r"8-bit image is not a depth frame",
        ValueError,
    ),
    Case(
        "depth-scale-wrong-for-file",
        "cli",
        INF,
        lambda c: [
            "--checkpoint",
            str(c.tmp / "never_read"),
            "--depth_scale=1",
            "--depth",
            _depth_tiff(c, (FRAME * 1000).astype(np.uint16)),
        ],
        r"implausible depth.*check --depth_scale",
    ),
    Case(
        "depth-scale-not-positive",
        "cli",
        ROB,
        lambda c: ["--checkpoint", "x", "--source=folder:x", "--depth_scale=-1"],
        r"--depth_scale: expected a positive number",
    ),
    # 2. A Cornell cpos text with a missing middle line: the broken rectangle is reported.
    Case(
        "cornell-missing-middle-line",
        "returns",
        "grasp.parse_cornell_report",
        lambda c: lambda: _missing_middle_line(c),
        "11 coordinate lines, not a multiple of 4: a line is missing or extra in the rectangle "
        "starting at line 5; 1 rectangle(s) skipped",
        None,
    ),
    # 3. Annotation queue: damaged labels are neither served nor overwritten; bad flags.
    Case(
        "annotate-both-label-files-corrupt",
        "cli",
        ANN,
        lambda c: [f"--queue={_corrupt_queue(c)}"],
        r"labels of 1 sample\(s\) cannot be read: sample 0 \(samples/0000\): grasps.json is "
        r"unreadable .*cpos.txt has 1 damaged rectangle.*--move_aside_corrupt",
    ),
    Case(
        "annotate-save-over-corrupt-labels",
        "raises",
        "annotate.queue.save_sample",
        lambda c: lambda: queue_lib.save_sample(_corrupt_queue(c), 0, [], base_revision=0),
        r"cannot be read.*neither served nor overwritten",
        queue_lib.CorruptLabels,
    ),
    Case(
        "annotate-serve-corrupt-labels",
        "raises",
        "annotate.serve",
        lambda c: lambda: server_lib.serve(_corrupt_queue(c)),
        r"cannot be read",
        queue_lib.CorruptLabels,
    ),
    Case(
        "annotate-queue-json-not-json",
        "cli",
        ANN,
        lambda c: [f"--queue={_queue_with_manifest(c, '{not json')}"],
        r"queue.json is damaged \(Expecting property name",
    ),
    Case(
        "annotate-queue-json-wrong-format",
        "cli",
        ANN,
        lambda c: [f"--queue={_queue_with_manifest(c, json.dumps({'format': 'other/1'}))}"],
        r"queue.json: not a dal_jax annotation queue",
    ),
    Case(
        "annotate-queue-json-no-samples",
        "cli",
        ANN,
        lambda c: [f"--queue={_queue_with_manifest(c, NO_SAMPLES)}"],
        r"queue.json is damaged \('samples' must be a list\)",
    ),
    Case(
        "annotate-port-out-of-range",
        "subprocess",
        ANN,
        lambda c: [f"--queue={make_queue(c.tmp)}", "--port=99999"],
        r"--port=99999: a TCP port is 0..65535",
    ),
    # 4. The robot loop counts the frames it could not read in its final stats.
    Case(
        "robot-bad-frames-counted",
        "cli",
        ROB,
        _robot_folder_with_bad_frames,
        r'"frames_in": 3, "processed": 3, "dropped": 0, "errors": 2',
        0,
    ),
    # 5. datasets.prepare: config errors, empty splits, skip reasons.
    Case(
        "prepare-split-without-readable-scene",
        "cli",
        PREP,
        lambda c: [
            "--dataset=cornell",
            f"--data_dir={c.tmp / 'tfds'}",
            "--set",
            "test_fraction=0.0",
            f"--manual_dir={_cornell_manual(c, b'not a tiff')}",
        ],
        r"cornell: split 'train' has no readable scene: all 1 of its scenes were skipped",
    ),
    Case(
        "prepare-jacquard-duplicate-views",
        "cli",
        PREP,
        lambda c: [
            "--dataset=jacquard_subset",
            f"--data_dir={c.tmp / 'tfds'}",
            f"--manual_dir={_jacquard_copy(c, [0, 1], folders=('a', 'b'))}",
        ],
        rf"skipped items: 2\n.*b/0_{JAC_OBJECT}_grasps.txt: duplicate of view 0",
        0,
        shared=True,
    ),
    Case(
        "prepare-negative-size",
        "cli",
        PREP,
        lambda c: ["--dataset=jacquard_subset", f"--data_dir={c.tmp}", "--set", "size=-5"],
        r"jacquard_subset: --set size=-5: size must be an integer >= 12",
    ),
    Case(
        "prepare-unknown-field",
        "cli",
        PREP,
        lambda c: ["--dataset=synthetic_grasps", f"--data_dir={c.tmp}", "--set", "nosuch=1"],
        r"--set nosuch=1: synthetic_grasps has no config field 'nosuch'; fields: split_mode",
    ),
    Case(
        "prepare-unknown-config",
        "cli",
        PREP,
        lambda c: ["--dataset=synthetic_grasps", f"--data_dir={c.tmp}", "--config=nosuch"],
        r"synthetic_grasps has no config 'nosuch'; choose from \['default'\]",
    ),
    Case(
        "prepare-set-without-value",
        "cli",
        PREP,
        lambda c: ["--dataset=cornell", f"--data_dir={c.tmp}", "--set", "seed"],
        r"--set 'seed': expected KEY=VALUE",
    ),
    Case(
        "jacquard-truncated-tiff-reason",
        "returns",
        "jacquard.load_view",
        lambda c: lambda: _jacquard_truncated_view(c),
        "perfect_depth.tiff: truncated or not a TIFF image",
        None,
        shared=True,
    ),
    Case(
        "cornell-truncated-tiff-without-point-cloud",
        "returns",
        "common.load_cornell_scene",
        lambda c: lambda: _cornell_truncated_tiff_reason(c, pcd=False),
        "truncated or not a TIFF image (image file is truncated",
        None,
        shared=True,
    ),
    Case(
        "cornell-truncated-tiff-reason-says-no-point-cloud",
        "returns",
        "common.load_cornell_scene",
        lambda c: lambda: _cornell_truncated_tiff_reason(c, pcd=False)[-40:],
        ") and no point cloud to use instead",
        None,
        shared=True,
    ),
    Case(
        "cornell-truncated-tiff-with-point-cloud",
        "returns",
        "common.load_cornell_scene",
        lambda c: lambda: _cornell_truncated_tiff_reason(c, pcd=True),
        "; the point cloud is used instead | ",
        None,
        shared=True,
    ),
    # 6. Inference CLI and GraspDetector.from_checkpoint.
    Case(
        "checkpoint-of-another-pytree",
        "cli",
        INF,
        lambda c: ["--checkpoint", _other_pytree_checkpoint(c), "--depth", _depth_tiff(c, FRAME)],
        r"other/checkpoints holds no GG-CNN parameters \(its state has \['mlp'\]",
    ),
    Case(
        "checkpoint-of-another-pytree-api",
        "raises",
        "GraspDetector.from_checkpoint",
        lambda c: lambda: robot.GraspDetector.from_checkpoint(_other_pytree_checkpoint(c)),
        r"holds no GG-CNN parameters",
        ValueError,
    ),
    Case(
        "checkpoint-truncated",  # a subprocess: Orbax's leftovers used to print at exit
        "subprocess",
        INF,
        lambda c: ["--checkpoint", _truncated_checkpoint(c), "--depth", _depth_tiff(c, FRAME)],
        r"truncated/checkpoints \(round 0\) is truncated or corrupt: \w+: .*Copy it again$",
    ),
    Case(
        "depth-npy-empty-file",
        "cli",
        INF,
        lambda c: ["--checkpoint", str(c.tmp / "never_read"), "--depth", str(c.file("empty.npy"))],
        r"cannot read depth file .*empty.npy: the file is empty or truncated \(No data left in file",
    ),
    Case(
        "png-into-missing-folder",  # checked before the checkpoint is even looked at
        "cli",
        INF,
        lambda c: [
            "--checkpoint",
            str(c.tmp / "no_run"),
            "--depth",
            _depth_tiff(c, FRAME),
            "--png",
            str(c.tmp / "no_such_folder" / "out.png"),
        ],
        r"--png=.*out.png: the folder .*no_such_folder does not exist; create it first",
    ),
    Case(
        "top-k-too-large-cli",
        "cli",
        INF,
        lambda c: ["--checkpoint", str(c.tmp), "--depth", "x.tiff", "--top_k=1000"],
        r"--top_k=1000: give 1..100 grasps per frame",
    ),
    Case(
        "top-k-too-large-api",
        "raises",
        "GraspDetector.detect",
        lambda c: (
            lambda: robot.GraspDetector.from_checkpoint(c.ckpt, warmup=False).detect(
                FRAME, top_k=1000
            )
        ),
        r"top_k must be in 1..100; got 1000",
        ValueError,
    ),
]


CASES += [
    # 7. Workdirs: one writer, no silent overwrite of another run, writable folders.
    Case(
        "workdir-in-use",  # the holder is this test process
        "subprocess",
        MAIN,
        lambda c: [*SMOKE, f"--workdir={_busy_workdir(c)}", "--strategy=rs"],
        rf"--workdir=.*busy is in use by another run \(pid {os.getpid()}: .+\); wait for it to "
        r"end or choose another --workdir$",
    ),
    Case(
        "workdir-in-use-supervised",
        "raises",
        "supervised.run",
        lambda c: lambda: supervised.run(smoke(), _busy_workdir(c), progress=False),
        rf"busy is in use by another run \(pid {os.getpid()}: ",
        WorkdirError,
    ),
    Case(
        "workdir-in-use-train-plain-from",
        "raises",
        "plain.train_plain_from",
        lambda c: lambda: plain.train_plain_from(c.tmp / "src", 1, _busy_workdir(c)),
        r"busy is in use by another run",
        WorkdirError,
    ),
    Case(
        "workdir-under-a-file",
        "subprocess",
        MAIN,
        lambda c: [*SMOKE, f"--workdir={c.file('afile')}/sub"],
        r"--workdir=.*afile/sub: .*afile is a file, not a folder; choose another --workdir$",
    ),
    Case(
        "workdir-is-a-file",
        "raises",
        "loop.run",
        lambda c: lambda: loop.run(smoke(), c.file("afile"), progress=False),
        r"afile is a file, not a folder",
        WorkdirError,
    ),
    Case(
        "workdir-cannot-be-created",  # /sys refuses new folders, even to root
        "raises",
        "loop.run",
        lambda c: lambda: loop.run(smoke(), "/sys/dal_jax_test_workdir", progress=False),
        r"--workdir=/sys/dal_jax_test_workdir: cannot create the folder \(.+\); choose a "
        r"writable --workdir",
        WorkdirError,
    ),
    Case(
        "workdir-not-writable",
        "raises",
        "loop.run",
        lambda c: lambda: loop.run(smoke(), "/sys", progress=False),
        r"--workdir=/sys is not writable \(.+\); choose a writable --workdir",
        WorkdirError,
    ),
    Case(
        "workdir-holds-results-json-of-another-strategy",
        "subprocess",
        MAIN,
        lambda c: [*SMOKE, f"--workdir={_results_only_workdir(c)}", "--strategy=rs"],
        r"results_only/results.json belongs to another run \(strategy: 'dal' -> 'rs'\) and "
        r".* has no checkpoint to resume; refusing to overwrite it",
    ),
    Case(
        "workdir-holds-unreadable-results-json",
        "raises",
        "loop.run",
        lambda c: lambda: loop.run(smoke(), c.file("run/results.json", b'{"stra').parent),
        r"run/results.json is unreadable \(.+\) and .* has no checkpoint to resume",
        ValueError,
    ),
    Case(
        "workdir-holds-checkpoint-of-another-strategy",  # refused before any data is loaded
        "raises",
        "loop.run",
        lambda c: lambda: loop.run(smoke(strategy="rs"), _dal_checkpoint(c), progress=False),
        r"holds a run with a different config \(strategy: 'dal' -> 'rs'\); refusing to resume",
        ValueError,
    ),
    Case(
        "workdir-holds-supervised-checkpoint",
        "raises",
        "loop.run",
        lambda c: lambda: loop.run(smoke(), _saved_run(c, kind="supervised"), progress=False),
        r"holds a supervised run \(experiments.train\), not an active-learning one",
        ValueError,
    ),
    Case(
        "checkpoint-save-below-latest",  # Orbax's refusal is no longer ignored
        "raises",
        "checkpoint.save",
        lambda c: lambda: _saved_run(c, rounds=(0, 1, 0)),
        r"round 0 not saved: the folder already holds round 1 \(is another run writing to it\?\)",
        ValueError,
    ),
    # 8. experiments.main flags, checked before any training.
    Case(
        "alpha-given-twice",
        "subprocess",
        MAIN,
        lambda c: [*SMOKE, f"--workdir={c.tmp}", "--alpha=0.1,0.1"],
        r"--alpha=0.1,0.1: 0.1 given more than once; give each alpha once$",
    ),
    Case(
        "alpha-not-a-number",
        "subprocess",
        MAIN,
        lambda c: [*SMOKE, f"--workdir={c.tmp}", "--alpha=abc"],
        r"--alpha=abc: alpha must be one or more finite values >= 0, comma-separated",
    ),
    Case(
        "budget-larger-than-pool",
        "subprocess",
        MAIN,
        lambda c: [*SMOKE, f"--workdir={c.tmp}", "--budget=1000"],
        r"--budget=1000 x 1 selection rounds \(--rounds=2\) \+ 8 initial = 1008 labelled "
        r"images, but the synthetic_grasps pool holds 32; lower --budget or --rounds$",
        quiet=False,  # TFDS logs a warning while it loads the pool
    ),
    # 9. experiments.compare on damaged results.
    Case(
        "compare-truncated-results-json",
        "cli",
        CMP,
        lambda c: _results_file(c, '{"strategy": "dal", "rou'),
        r"run/results.json is unreadable \(.+\); remove it or run that workdir again$",
    ),
    Case(
        "compare-not-a-results-json",
        "cli",
        CMP,
        lambda c: _results_file(c, '{"foo": 1}'),
        r"run/results.json is not a results.json of experiments.main or experiments.train \(no "
        r"'strategy', 'alpha', 'rounds'\)$",
    ),
    # 10. Recording frames (python -m dal_jax.robot --record=DIR): checked before any frame.
    Case(
        "loop-without-checkpoint-or-record",
        "cli",
        ROB,
        lambda c: [f"--source=folder:{_record_source(c)}"],
        r"--checkpoint is required \(or give --record=DIR to record frames\)$",
    ),
    Case(
        "record-folder-not-creatable",  # /sys refuses new folders, even to root
        "cli",
        ROB,
        lambda c: [f"--source=folder:{_record_source(c)}", "--record=/sys/dal_jax_test_frames"],
        r"--record=/sys/dal_jax_test_frames cannot be written \(.+\); choose a writable folder$",
    ),
    Case(
        "record-folder-under-a-file",
        "cli",
        ROB,
        lambda c: [f"--source=folder:{_record_source(c)}", f"--record={c.file('afile')}/sub"],
        r"--record=.*afile/sub: .*afile is a file, not a folder; choose a folder$",
    ),
    Case(
        "record-manifest-damaged",  # never overwritten: it lists the frames already recorded
        "cli",
        ROB,
        lambda c: [
            f"--source=folder:{_record_source(c)}",
            f"--record={c.file('rec/frames.json', TRUNCATED_MANIFEST).parent}",
        ],
        r"rec: frames.json is unreadable or not a frame manifest \(.+\); move it aside or "
        r"record into another folder$",
    ),
    Case(
        "record-two-camera-sizes",  # the frames kept before it stay recorded
        "cli",
        ROB,
        lambda c: [
            f"--source=folder:{_record_source(c, (60, 80), (40, 50))}",
            f"--record={c.tmp / 'rec'}",
        ],
        r"frame 'b.tiff' is 40x50 but .*rec holds 60x80 frames; record one camera per folder",
    ),
]


TRUNCATED_MANIFEST = b'{"format": 1, "source": "folder:x", "fra'


def _record_source(ctx, *shapes) -> pathlib.Path:
    """A replay folder with one plausible depth frame per shape (a.tiff, b.tiff, ...)."""
    folder = ctx.tmp / "camera"
    folder.mkdir(exist_ok=True)
    for i, shape in enumerate(shapes or [(60, 80)]):
        ctx.tiff(f"camera/{'abc'[i]}.tiff", np.full(shape, 0.8, np.float32))
    return folder


# ----------------------------------------------------------------------------- config arguments
# 11. --config of the experiment commands (experiments.cli.define_config): a missing file, an
# unknown field or variant is one line naming it and the valid choices, the same in every
# command that takes --config (checked before absl and ml_collections read the flag).

STUDY, TRAIN = "experiments.study", "experiments.train"
CONFIGS = "experiments/configs"

CASES += [
    Case(
        "config-file-missing",
        "subprocess",
        MAIN,
        lambda c: [f"--config={CONFIGS}/nosuch.py"],
        rf"--config={CONFIGS}/nosuch\.py: no such config file; config files: "
        rf"{CONFIGS}/default\.py, .*{CONFIGS}/synthetic\.py$",
    ),
    Case(
        "config-field-unknown",
        "subprocess",
        MAIN,
        lambda c: ["--config.nosuch=1"],
        rf"--config\.nosuch=1: {CONFIGS}/default\.py has no field 'nosuch'; fields: alpha, .*"
        r"\bbudget\b",
    ),
    Case(
        "config-variant-unknown",
        "subprocess",
        MAIN,
        lambda c: [f"--config={CONFIGS}/synthetic.py:smok"],
        rf"--config={CONFIGS}/synthetic\.py:smok: unknown variant 'smok'; valid: smoke, uniform, "
        r"longtail$",
    ),
    Case(  # the same layer in the other commands that take --config
        "config-field-misspelt-study",
        "subprocess",
        STUDY,
        lambda c: [f"--config={CONFIGS}/synthetic.py:smoke", "--config.budgte=3"],
        rf"--config\.budgte=3: {CONFIGS}/synthetic\.py has no field 'budgte'; did you mean: "
        r"budget$",
    ),
    Case(
        "config-file-missing-train",
        "subprocess",
        TRAIN,
        lambda c: [f"--config={CONFIGS}/cornel.py:smoke"],
        rf"--config={CONFIGS}/cornel\.py:smoke: no such config file; config files: .*"
        rf"{CONFIGS}/cornell\.py",
    ),
    # 12. One study per workdir: a second one is refused at once, in one line.
    Case(
        "study-workdir-in-use",
        "subprocess",
        STUDY,
        lambda c: [
            f"--config={CONFIGS}/synthetic.py:smoke",
            f"--workdir={_busy_workdir(c)}",
            "--strategies=rs",
        ],
        rf"--workdir=.*busy is in use by another run \(pid {os.getpid()}: .+\); wait for it to "
        r"end or choose another --workdir$",
    ),
    # 13. A prepared frames dataset whose folder changed is rebuilt; a rebuild that cannot be
    # made keeps the dataset prepared before and says how to go on.
    Case(
        "prepare-frames-folder-changed-unbuildable",
        "cli",
        PREP,
        _frames_prepared_then_changed,
        r"--set roi=TOP,LEFT,SIDE; the dataset prepared before is kept$",
    ),
    Case(
        "config-nested-field-misspelt",
        "returns",
        "experiments.cli.config_problem",
        lambda c: lambda: cli.config_problem(["--config.strategies.dal.disc_lrr=0.02"]),
        "experiments/configs/default.py (in strategies.dal) has no field 'disc_lrr'; did you "
        "mean: disc_lr",
        None,
    ),
]


# ----------------------------------------------------------------------------- running a row


def _run_main(main, argv, timeout: float = 120.0):
    """``main(argv)``'s exit code, in a thread: a CLI that wrongly goes on (e.g. serves a queue
    it should refuse, waiting for Finish) fails the test instead of hanging it."""
    result = {}

    def target():
        try:
            result["code"] = main(argv)
        except SystemExit as e:  # argparse's own errors (usage line + "error: ...", exit 2)
            result["code"] = e.code
        except BaseException as e:  # noqa: BLE001 - reported below as the test's failure
            result["raised"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"the CLI did not return within {timeout:.0f} s (it went on)"
    if "raised" in result:
        raise result["raised"]
    return result["code"]


def _error_lines(text: str) -> list[str]:
    return [ln.strip() for ln in re.split(r"[\r\n]", text) if "error:" in ln]


def _check_output(case: Case, code: int, out: str, err: str):
    assert "Traceback" not in err, err
    assert code == case.code, (code, err)
    if case.code == 0:  # the CLI goes on; the message is in its output
        assert re.search(case.expect, out + err), (out, err)
        return
    lines = _error_lines(err)
    assert len(lines) == 1, err  # one clear line
    assert re.search(case.expect, lines[0]), lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, tmp_path_factory, capsys, request):
    if case.shared:
        request.getfixturevalue("shared_data")  # skips loudly when the files are absent
    ctx = Ctx(tmp_path, tmp_path_factory)
    with ctx.stack:  # released after the row: e.g. a workdir lock the row holds
        _run_case(case, ctx, capsys)


def _run_case(case: Case, ctx: Ctx, capsys):
    made = case.make(ctx)
    if case.kind == "cli":
        capsys.readouterr()
        code = _run_main(MAINS[case.target], made)
        cap = capsys.readouterr()
        _check_output(case, code, cap.out, cap.err)
    elif case.kind == "subprocess":
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        res = subprocess.run(
            [sys.executable, "-m", case.target, *made],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        _check_output(case, res.returncode, res.stdout, res.stderr)
        if case.quiet:
            assert res.stderr.strip().count("\n") == 0, res.stderr  # nothing else on stderr
    elif case.kind == "raises":
        with pytest.raises(case.code, match=case.expect):
            made()
    elif case.kind == "returns":
        assert case.expect in made()
    else:
        raise AssertionError(case.kind)


@pytest.mark.slow
def test_a_second_study_on_a_busy_workdir_is_refused_at_once(tmp_path):
    """python -m experiments.study on a --workdir whose lock a live process holds: one line on
    stderr naming the folder and the holder's pid, exit 2, before anything is loaded, and the
    folder untouched. Once the holder is killed (its lock file left behind, naming it), the
    next study is not blocked: it goes on to its next check."""
    import time  # here, so this test stays self-contained

    study = tmp_path / "study"
    (study / "rs").mkdir(parents=True)
    (study / "study.md").write_text("the first study's report\n")
    # A results.json of another strategy in rs/: a study that gets past the lock refuses it.
    res = {"strategy": "dal", "dataset": "synthetic_grasps", "alpha": 0.1, "seeds": 2, "rounds": []}
    (study / "rs" / "results.json").write_text(json.dumps(res))
    hold = (
        "import sys, time\n"
        "from dal_jax.experiment.workdir import claim\n"
        "with claim(sys.argv[1]):\n"
        "    time.sleep(600)\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "experiments.study", "--noprogress", "--strategies=rs",
           "--config=experiments/configs/default.py:smoke", f"--workdir={study}"]  # fmt: skip
    lock = study / ".lock"

    def snapshot() -> dict:
        files = sorted(p for p in study.rglob("*") if p.is_file())
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}

    holder = subprocess.Popen([sys.executable, "-c", hold, str(study)], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().startswith(f"{holder.pid}\n")):
            assert holder.poll() is None and time.monotonic() < deadline, "no lock taken"
            time.sleep(0.1)
        before = snapshot()
        second = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert holder.poll() is None, "the holder ended before the second study was refused"
        after = snapshot()
    finally:
        holder.kill()  # SIGKILL: its lock file stays behind
        holder.wait()
    assert second.returncode == 2, second.stderr[-2000:]
    (line,) = second.stderr.strip().splitlines()  # nothing loaded, nothing logged before it
    assert re.fullmatch(
        rf"error: --workdir={re.escape(str(study.resolve()))} is in use by another run "
        rf"\(pid {holder.pid}: .+\); wait for it to end or choose another --workdir",
        line,
    ), line
    assert after == before  # not a byte, not a time stamp of the first study changed
    assert lock.read_text().startswith(f"{holder.pid}\n")  # the dead holder's stale lock file
    third = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    _, err = third.communicate(timeout=300)
    assert third.returncode == 2 and "in use" not in err, err[-2000:]
    assert "rs/results.json belongs to another run (strategy: 'dal' -> 'rs')" in err, err[-2000:]
    assert lock.read_text().startswith(f"{third.pid}\n")  # it took the lock
