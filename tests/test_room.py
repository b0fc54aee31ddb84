"""Teach the robot a new room, end to end in a real browser: record frames from a folder source,
prepare the ``frames`` dataset, label the hold-out and the initial set by drawing rectangles on
the annotation page (with a restart in the middle of labelling), run a selection round, label it,
and load the resulting checkpoint in the robot loop on the recorded frames."""

import json
import os
import pathlib
import signal
import sys

import numpy as np
import pytest
import tifffile

from dal_jax.data import grasp, pools
from dal_jax.experiment import room
from dal_jax.robot import cli as robot_cli
from dal_jax.robot import read_depth
from experiments import configs
from experiments import room_walkthrough as walk
from tests.test_annotate import CHROMIUM, CHROMIUM_ARGS, _playwright_or_skip


def _frames(shared: pathlib.Path, out: pathlib.Path) -> None:
    """Eight 480 x 640 depth frames of one 'camera': the two real Cornell scenes and six made
    from them, each with a box (1-3 cm high) put down somewhere else, and one near-duplicate."""
    scenes = [read_depth(shared / "cornell" / f"pcd010{i}d.tiff") for i in (0, 1)]
    tifffile.imwrite(out / "f00.tiff", scenes[0])
    tifffile.imwrite(out / "f01.tiff", scenes[1])
    rng = np.random.default_rng(0)
    for i in range(6):
        d = scenes[i % 2].copy()
        r, c = 140 + 40 * (i % 3), 200 + 60 * i
        d[r : r + 60, c : c + 40] -= 0.01 + 0.005 * i
        tifffile.imwrite(out / f"f{i + 2:02d}.tiff", d)
    noisy = scenes[1] + rng.normal(0, 0.001, scenes[1].shape).astype(np.float32)
    tifffile.imwrite(out / "f01b_again.tiff", noisy)  # f01 seen again at once: skipped


class Main(walk.Main):
    """experiments.main on the smoke frames config in a subprocess; the annotation pages it
    serves, as they come."""

    def __init__(self, workdir: pathlib.Path, *flags):
        cmd = [
            sys.executable,
            "-m",
            "experiments.main",
            "--config=experiments/configs/frames.py:smoke",
            f"--workdir={workdir}",
            "--noprogress",
            *flags,
        ]
        super().__init__(cmd, dict(os.environ, JAX_PLATFORMS="cpu"))

    def next_page(self, timeout=300) -> tuple[str, str]:
        got = super().next_page(timeout)
        assert got is not None, "no annotation page served:\n" + "".join(self.lines)
        return got[:2]


def _label(page, expect, url, n: int, skip_first: bool = False) -> None:
    """Opens the queue at ``url`` and draws one grasp on each of its ``n`` frames (from the one
    it resumes on), then presses Finish."""
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=10000)
    box = page.locator("#canvas").bounding_box()
    side = 48  # the smoke config's crops
    scale = box["width"] / side
    for i in range(n):
        if not (skip_first and i == 0):
            before = int(page.text_content("#count"))
            x0, y0 = box["x"] + 18 * scale, box["y"] + 24 * scale
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + 12 * scale, y0, steps=6)
            page.mouse.up()
            expect(page.locator("#count")).to_have_text(str(before + 1))
            expect(page.locator("#status")).to_have_text("saved (revision 1)", timeout=10000)
        if i + 1 < n:
            page.click("#next")
            expect(page.locator("#position")).to_have_text(f"{i + 2} of {n}")
    page.click("#finish")
    page.wait_for_selector("#finish-dialog:not([hidden])")
    page.click("#finish-confirm")
    page.wait_for_selector("#done-dialog:not([hidden])")


@pytest.mark.slow
def test_teach_the_robot_a_new_room(shared_data, tmp_path, capsys):
    sync_playwright, expect = _playwright_or_skip()
    src, rec, wd = tmp_path / "camera", tmp_path / "room", tmp_path / "run"
    src.mkdir()
    _frames(shared_data, src)
    # 1. Record: the near-duplicate of f01 is skipped.
    assert robot_cli.main(["--source", f"folder:{src}", "--record", str(rec)]) == 0
    manifest = json.loads((rec / "frames.json").read_text())
    assert len(manifest["frames"]) == 8
    # 2. Prepare the frames dataset (48 px crops, the smoke config's).
    c = configs.get("frames", "smoke")
    builder = pools.make_builder("frames", None, **c.dataset_kwargs)
    builder.download_and_prepare(
        download_config=__import__("tensorflow_datasets").download.DownloadConfig(manual_dir=rec)
    )
    # 3. The loop: hold-out (2 frames), initial set (2), one selection round (2).
    main = Main(wd)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            name, url = main.next_page()
            assert name == room.HOLDOUT
            # Label the first hold-out frame, then the program stops (a crash, a Ctrl-C).
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=10000)
            box = page.locator("#canvas").bounding_box()
            s = box["width"] / 48
            page.mouse.move(box["x"] + 18 * s, box["y"] + 24 * s)
            page.mouse.down()
            page.mouse.move(box["x"] + 30 * s, box["y"] + 24 * s, steps=6)
            page.mouse.up()
            expect(page.locator("#status")).to_have_text("saved (revision 1)", timeout=10000)
            main.proc.send_signal(signal.SIGKILL)
            main.proc.wait(timeout=60)
            # Restarted: the same frames, with the saved grasp, resume where the user was.
            main = Main(wd)
            name, url = main.next_page()
            assert name == room.HOLDOUT
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=10000)
            assert page.text_content("#count") == "1"
            _label(page, expect, url, 2, skip_first=True)
            for want in ("round_000", "round_001"):
                name, url = main.next_page()
                assert name == want
                _label(page, expect, url, 2)
        finally:
            browser.close()
    assert main.proc.wait(timeout=300) == 0, "".join(main.lines)
    res = json.loads((wd / "results.json").read_text())
    assert [r["labeled"] for r in res["rounds"]] == [2, 4]
    assert all(a is not None for r in res["rounds"] for a in r["accuracy"])
    # 4. Deploy: the latest round's model in the robot loop on the recorded frames.
    capsys.readouterr()
    assert robot_cli.main(["--checkpoint", str(wd), "--source", f"folder:{rec}"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 8 and all(r["status"] in ("ok", "no grasp") for r in out)


def test_a_hold_out_the_frames_cannot_supply_is_refused_before_anything_is_served():
    c = configs.get("frames", "smoke")
    with pytest.raises(ValueError, match=r"--test_size=2: the folder holds 2 frames"):
        room.check_sizes(c, 2)
    with pytest.raises(ValueError, match=r"2 hold-out \+ 2 initial \+ 2 x 1 selections = 6"):
        room.check_sizes(c, 5)
    room.check_sizes(c, 6)


def test_the_hold_out_is_the_same_frames_on_every_restart():
    c = configs.get("frames", "smoke")
    a, b = room.holdout_indices(c, 40), room.holdout_indices(c, 40)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 2
    c.seed = 1
    assert room.holdout_indices(c, 40).tolist() != a.tolist()


def test_frames_are_labelled_by_the_user():
    from dal_jax.experiment import build

    c = configs.get("frames", "smoke")
    c.oracle = "gt"
    with pytest.raises(ValueError, match="use --oracle=human"):
        build.resolve(c)


def test_the_walkthrough_draws_distinct_jacquard_grasps_inside_the_crop(shared_data, tmp_path):
    files = walk.camera_folder(shared_data, tmp_path / "camera")
    assert len(files) == 20 and all(f.is_file() for f in files)
    assert len(list((tmp_path / "camera").glob("*_perfect_depth.tiff"))) == 20
    rects = walk.spread_grasps(files[0], 4)
    assert rects.shape == (4, 4, 2)
    assert rects.min() >= 1 and rects.max() <= walk.SIZE - 1
    centre = grasp.rect_params(rects)[0]
    gaps = np.linalg.norm(centre[:, None] - centre[None], axis=2)[np.triu_indices(4, 1)]
    assert gaps.min() > 5  # spread out, not the same grasp at several jaw sizes
    everything, _ = grasp.parse_jacquard(files[0].read_text(), scale=walk.SIZE / 1024)
    # Every drawn grasp is one of the file's grasps.
    assert all(np.abs(everything - r).max(axis=(1, 2)).min() < 1e-9 for r in rects)
