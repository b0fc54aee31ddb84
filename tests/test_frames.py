"""Teaching the robot a new room, first half: recording depth frames (``python -m dal_jax.robot
--record=DIR``) and the ``frames`` dataset built from such a folder or any folder of depth files.

Real frames: the shared Cornell depth images (480 x 640) and Jacquard views (1024 x 1024),
copied into tmp_path; synthetic frames are made from the Cornell ones (noise, a raised box).
"""

import json
import os
import pathlib
import re
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

import datasets
from dal_jax.data import pools, preprocess
from dal_jax.robot import cli, read_depth
from dal_jax.robot.record import Recorder, frame_change
from datasets import common, prepare
from tests.test_bad_input import JAC_OBJECT

NOISE = 0.001  # metres: a Kinect's frame-to-frame noise at ~1 m


def _cornell(shared: pathlib.Path, scene: str) -> np.ndarray:
    return read_depth(shared / "cornell" / f"pcd{scene}d.tiff")


def _noisy(d: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (d + rng.normal(0, NOISE, d.shape)).astype(np.float32)


def _boxed(d: np.ndarray, lift: float) -> np.ndarray:
    """A box ``lift`` metres high over ~60 % of the frame (most pixels change) and a hole."""
    out = d.copy()
    out[40:440, 80:560] -= lift
    out[:10, :10] = 0.0  # a hole: recorded as NaN
    return out


@pytest.fixture(scope="module")
def source(shared_data, tmp_path_factory) -> pathlib.Path:
    """A replay folder: a, c, e kept; b (a + noise) and d (c + noise) near-duplicates."""
    folder = tmp_path_factory.mktemp("room")
    a = _cornell(shared_data, "0100")
    boxed = _boxed(a, 0.10)
    shutil.copy(shared_data / "cornell" / "pcd0100d.tiff", folder / "a_pcd0100d.tiff")
    shutil.copy(shared_data / "cornell" / "pcd0100r.png", folder / "a_pcd0100r.png")
    tifffile.imwrite(folder / "b_noisy.tiff", _noisy(a, 1))
    tifffile.imwrite(folder / "c_box.tiff", boxed)
    tifffile.imwrite(folder / "d_box_noisy.tiff", np.where(boxed > 0, _noisy(boxed, 2), 0))
    shutil.copy(shared_data / "cornell" / "pcd0101d.tiff", folder / "e_pcd0101d.tiff")
    shutil.copy(shared_data / "cornell" / "pcd0101r.png", folder / "e_pcd0101r.png")
    return folder


def _record(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def _manifest(folder: pathlib.Path) -> dict:
    return json.loads((folder / "frames.json").read_text())


@pytest.fixture(scope="module")
def recorded(source, shared_data, tmp_path_factory) -> pathlib.Path:
    """The room folder after two recordings (see `test_record`), labels beside frame 1."""
    out = tmp_path_factory.mktemp("recorded") / "room"
    rec = Recorder(out, f"folder:{source}")
    from dal_jax.robot import FolderSource
    from dal_jax.robot.record import record

    record(FolderSource(source), rec)
    rec.close()
    # Cornell order, x y = col row: one rectangle centred on (row 110, col 410), one left of
    # the centred 480 x 480 region (cols 80..559), which must be dropped.
    (out / "frame_000001_cpos.txt").write_text(
        "400 100\n420 100\n420 120\n400 120\n10 200\n30 200\n30 215\n10 215\n"
    )
    return out


def test_frame_change_counts_regions_not_noise(shared_data):
    a, b = _cornell(shared_data, "0100"), _cornell(shared_data, "0101")
    # The same table, one object put down elsewhere: 1.9% of the pixels changed.
    assert 0.01 < frame_change(a, b) < 0.05
    assert frame_change(a, _noisy(a, 3)) == 0.0  # pixel noise is filtered out
    c = np.full((20, 20), 1.0, np.float32)
    d = c.copy()
    d[:10, :10] = 0.9  # a 10 x 10 region moved by 10 cm: a quarter of the pixels
    d[15:] = np.nan  # only rows 0..14 are valid in both
    assert frame_change(c, d) == pytest.approx(100 / 300, abs=0.05)
    assert frame_change(c, np.full((20, 20), np.nan, np.float32)) == 1.0


def test_record(source, tmp_path, capsys):
    out = tmp_path / "room"
    code, err = _record(capsys, f"--source=folder:{source}", f"--record={out}")
    assert code == 0, err
    assert "\rrecording to" in err and "3 kept / 5 seen / 2 skipped" in err
    assert "recorded 3 frame(s)" in err and "skipped 2 near-duplicate(s)" in err
    m = _manifest(out)
    assert m["format"] == 1 and m["source"] == f"folder:{source}"
    assert [f["name"] for f in m["frames"]] == ["frame_000000", "frame_000001", "frame_000002"]
    assert [f["source_name"] for f in m["frames"]] == [
        "a_pcd0100d.tiff",
        "c_box.tiff",
        "e_pcd0101d.tiff",
    ]
    assert all(f["shape"] == [480, 640] and f["stamp"] is None for f in m["frames"])
    # RGB where the source paired one (Cornell naming), none for the synthetic frame.
    assert sorted(p.name for p in out.glob("*.png")) == [
        "frame_000000_rgb.png",
        "frame_000002_rgb.png",
    ]
    src_rgb = np.asarray(Image.open(source / "a_pcd0100r.png").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "frame_000000_rgb.png")), src_rgb)
    # Depth: float32 metres as in the source, holes NaN.
    d = preprocess.read_tiff_raw(out / "frame_000001_depth.tiff")
    assert d.dtype == np.float32 and np.isnan(d[:10, :10]).all() and not np.isnan(d[10:]).any()
    np.testing.assert_array_equal(d[10:], read_depth(source / "c_box.tiff")[10:])

    # Again into the same folder: a user's file holds number 4, so the numbering goes on at 5;
    # the first frame of this recording repeats the last kept one (skipped), the next is new.
    user_file = out / "frame_000004_rgb.png"
    user_file.write_bytes(b"mine")
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(source / "e_pcd0101d.tiff", again / "a.tiff")
    tifffile.imwrite(again / "b.tiff", _boxed(read_depth(source / "e_pcd0101d.tiff"), 0.2))
    code, err = _record(capsys, f"--source=folder:{again}", f"--record={out}", "--checkpoint=x")
    assert code == 0, err
    assert (
        "--checkpoint ignored" in err and "recorded 1 frame(s)" in err and "(frame_000005)" in err
    )
    assert user_file.read_bytes() == b"mine"
    m = _manifest(out)
    assert [f["name"] for f in m["frames"]][-2:] == ["frame_000002", "frame_000005"]
    assert [s["source"] for s in m["sessions"]] == [f"folder:{source}", f"folder:{again}"]
    assert m["sessions"][1]["first"] == "frame_000005"

    # --max_frames counts frames seen; --record_min_fraction=0 keeps even exact repeats.
    argv = [f"--source=folder:{source}", f"--record={out}", "--max_frames=2"]
    code, err = _record(capsys, *argv, "--record_min_fraction=0")
    assert code == 0 and "recorded 2 frame(s) to" in err and "of 2 seen" in err, err
    assert len(_manifest(out)["frames"]) == 6
    assert not list(out.glob(".*.tmp"))  # nothing half-written left behind


def test_record_refuses_a_second_camera_size(source, tmp_path, capsys):
    out = tmp_path / "room"
    code, _ = _record(capsys, f"--source=folder:{source}", f"--record={out}", "--max_frames=1")
    assert code == 0
    other = tmp_path / "other"
    other.mkdir()
    tifffile.imwrite(other / "small.tiff", np.full((424, 512), 0.9, np.float32))
    code, err = _record(capsys, f"--source=folder:{other}", f"--record={out}")
    assert code == 2
    errors = [ln for ln in re.split(r"[\r\n]", err) if "error:" in ln]
    assert (
        len(errors) == 1 and "is 424x512 but" in errors[0] and "holds 480x640 frames" in errors[0]
    )
    assert len(_manifest(out)["frames"]) == 1  # what was recorded stays


def test_record_folder_lock_and_lost_manifest(source, tmp_path, capsys):
    out = tmp_path / "room"
    first = Recorder(out, "x")
    with pytest.raises(ValueError, match="another recording is writing to it"):
        Recorder(out, "y")
    first.close()
    code, _ = _record(capsys, f"--source=folder:{source}", f"--record={out}", "--max_frames=3")
    assert code == 0 and len(_manifest(out)["frames"]) == 2
    # frames.json deleted: the frames on disk keep their numbers and set the folder's size.
    (out / "frames.json").unlink()
    code, err = _record(capsys, f"--source=folder:{source}", f"--record={out}")
    assert code == 0, err
    names = [(f["name"], f["source_name"]) for f in _manifest(out)["frames"]]
    assert names[:3] == [
        ("frame_000000", None),
        ("frame_000001", None),
        ("frame_000002", "a_pcd0100d.tiff"),  # compared with frame_000001, the boxed one
    ]
    assert len(names) == 5


# ----------------------------------------------------------------------------- the dataset


def _prepare(capsys, manual: pathlib.Path, data_dir: pathlib.Path, *sets) -> tuple[int, str, str]:
    capsys.readouterr()
    argv = ["--dataset=frames", f"--manual_dir={manual}", f"--data_dir={data_dir}"]
    code = prepare.main(argv + [a for s in sets for a in ("--set", s)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _examples(data_dir, **config) -> list[dict]:
    src = datasets.make_builder("frames", data_dir, **config).as_data_source()
    assert list(src) == ["train"]  # one split: the loop draws its own hold-out
    return [src["train"][i] for i in range(len(src["train"]))]


def test_prepare_a_recorded_folder(recorded, tmp_path, capsys):
    code, out, err = _prepare(capsys, recorded, tmp_path, "size=96")
    assert code == 0, err
    assert "train: 3 examples, 1 rectangles, 1 labelled" in out
    assert "1 rectangle(s) outside the crop dropped" in out
    exs = _examples(tmp_path, size=96)
    assert [common.as_str(e["id"]) for e in exs] == ["frame_000000", "frame_000001", "frame_000002"]
    assert [bool(e["labelled"]) for e in exs] == [False, True, False]
    assert [len(e["rects"]) for e in exs] == [0, 1, 0]
    # The centred 480 square starts at col 80; 480 -> 96 px is x 0.2: (110, 410) -> (22, 66).
    np.testing.assert_allclose(exs[1]["rects"][0].mean(axis=0), [22, 66], atol=1e-4)
    np.testing.assert_array_equal(exs[1]["crop_offset"], [0, 80])
    for e in exs:  # inpainted crops like the training data
        assert e["depth"].shape == (96, 96) and np.isfinite(e["depth"]).all()
        assert (e["depth"] > 0).all()
    assert exs[0]["rgb"].any() and not exs[1]["rgb"].any()  # frame 1 was recorded without RGB

    ds = pools.load_dataset("frames", tmp_path, size=48, crop_size=96)
    assert (len(ds.pool), len(ds.test)) == (3, 0)  # no test split: an empty test Pool
    np.testing.assert_allclose(ds.pool.gt_rects[1, 0].mean(axis=0), [11, 33], atol=1e-4)
    assert ds.pool.inputs.shape == (3, 48, 48, 1) and ds.pool.gt_mask.sum() == 1


def test_prepare_with_a_roi(recorded, tmp_path, capsys):
    code, out, err = _prepare(capsys, recorded, tmp_path, "size=48", "roi=60,360,120")
    assert code == 0, err
    assert "train: 3 examples, 1 rectangles, 1 labelled" in out
    exs = _examples(tmp_path, size=48, roi="60,360,120")
    # (110, 410) - (60, 360) = (50, 50), x 48 / 120.
    np.testing.assert_allclose(exs[1]["rects"][0].mean(axis=0), [20, 20], atol=1e-4)


def test_prepare_a_folder_of_jacquard_depth_files(shared_data, tmp_path, capsys):
    manual = tmp_path / "jac"
    manual.mkdir()
    for f in (shared_data / "jacquard" / JAC_OBJECT).glob("*"):
        if f.name.endswith(("_perfect_depth.tiff", "_RGB.png", "_mask.png")):
            shutil.copy(f, manual / f.name)
    code, out, err = _prepare(capsys, manual, tmp_path / "tfds", "size=48")
    assert code == 0, err
    assert "train: 5 examples, 0 rectangles" in out and "skipped items: 0" in out
    exs = _examples(tmp_path / "tfds", size=48)
    assert [common.as_str(e["id"]) for e in exs] == [
        f"{v}_{JAC_OBJECT}_perfect_depth.tiff" for v in range(5)
    ]
    assert all(e["rgb"].any() and not e["labelled"] for e in exs)  # RGB paired by name


# ----------------------------------------------------------------------------- bad folders


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    return lines[0]


def _frame(value: float = 0.8, shape=(60, 80)) -> np.ndarray:
    d = np.full(shape, value, np.float32)
    d[10:30, 20:40] -= 0.1
    return d


def test_prepare_refuses_a_folder_without_depth_frames(tmp_path, capsys):
    manual = tmp_path / "junk"
    manual.mkdir()
    (manual / "notes.txt").write_text("not a frame")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(manual / "photo.png")
    (manual / "broken.tiff").write_bytes(b"II*\x00" + b"\x00" * 20)
    code, _, err = _prepare(capsys, manual, tmp_path / "tfds")
    assert code == 2
    line = _error_line(err)
    assert "no readable depth frames in" in line and "(3 files looked at: broken.tiff" in line
    assert "broken.tiff: cannot read depth file" in line


def test_prepare_refuses_mixed_sizes_unless_a_roi_fits(tmp_path, capsys):
    manual = tmp_path / "mixed"
    manual.mkdir()
    for i in range(3):
        tifffile.imwrite(manual / f"a{i}.tiff", _frame(0.8 + i / 100))
    np.save(manual / "b.npy", _frame(shape=(40, 50)))
    code, _, err = _prepare(capsys, manual, tmp_path / "tfds", "size=24")
    assert code == 2
    assert _error_line(err).endswith(
        "frames have different sizes: 60x80 (3 frames), 40x50 (1 frames); record one camera "
        "per folder or give --set roi=TOP,LEFT,SIDE"
    )
    code, out, err = _prepare(capsys, manual, tmp_path / "tfds", "size=24", "roi=0,0,40")
    assert code == 0 and "train: 4 examples" in out, err
    code, _, err = _prepare(capsys, manual, tmp_path / "tfds", "size=24", "roi=10,0,40")
    assert code == 2 and "does not fit 1 frame(s) of 40x50 (b.npy)" in _error_line(err)


def test_prepare_skips_frames_without_valid_depth(tmp_path, capsys):
    manual = tmp_path / "holes"
    manual.mkdir()
    tifffile.imwrite(manual / "frame_000000_depth.tiff", _frame())
    for i in (1, 2):
        tifffile.imwrite(manual / f"frame_00000{i}_depth.tiff", np.full((60, 80), np.nan, "f4"))
    tifffile.imwrite(manual / "frame_000003_depth.tiff", _frame(0.9))
    code, out, err = _prepare(capsys, manual, tmp_path / "tfds", "size=24")
    assert code == 0, err
    assert (
        "warning: 2 of 4 frames have no valid depth: frame_000001, frame_000002; they are "
        "skipped" in err
    )
    assert "train: 2 examples" in out and "frame_000001_depth.tiff: no valid depth pixel" in out
    for p in manual.glob("frame_00000[03]*"):
        p.unlink()
    code, _, err = _prepare(capsys, manual, tmp_path / "tfds2", "size=24")
    assert code == 2
    assert _error_line(err).endswith(
        "2 of 2 frames have no valid depth: frame_000001, frame_000002; no frame is left to "
        "build from"
    )


# ----------------------------------------------------------------------------- a changed folder


def _rebuild_notes(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if "rebuilding it" in ln]


def test_prepare_rebuilds_a_dataset_whose_folder_changed(tmp_path, capsys):
    manual, data = tmp_path / "room", tmp_path / "tfds"
    manual.mkdir()
    for i in range(2):
        tifffile.imwrite(manual / f"frame_00000{i}_depth.tiff", _frame(0.8 + i / 100))
    code, out, err = _prepare(capsys, manual, data, "size=24")
    assert code == 0 and "train: 2 examples" in out and not _rebuild_notes(out), err
    # Unchanged: reused as it is, without a note.
    code, out, err = _prepare(capsys, manual, data, "size=24")
    assert code == 0 and "train: 2 examples" in out and not _rebuild_notes(out), err

    # A frame recorded since and a rectangle file beside an old frame: rebuilt, said in one line.
    tifffile.imwrite(manual / "frame_000002_depth.tiff", _frame(0.85))
    (manual / "frame_000000_cpos.txt").write_text("30 20\n50 20\n50 30\n30 30\n")
    mine = {p.name: p.read_bytes() for p in manual.iterdir()}
    code, out, err = _prepare(capsys, manual, data, "size=24")
    assert code == 0, err
    (note,) = _rebuild_notes(out)
    assert note.startswith(f"frames: {manual} changed since the dataset prepared in {data}")
    assert note.endswith(
        "2 file(s) added (frame_000000_cpos.txt, frame_000002_depth.tiff); rebuilding it"
    )
    assert "train: 3 examples, 1 rectangles, 1 labelled" in out and "skipped items: 0" in out
    assert len(_examples(data, size=24)) == 3
    assert {p.name: p.read_bytes() for p in manual.iterdir()} == mine  # the folder only read

    # A frame rewritten in place (same name and size, a new modification time).
    tifffile.imwrite(manual / "frame_000001_depth.tiff", _frame(0.9))
    st = (manual / "frame_000001_depth.tiff").stat()
    os.utime(manual / "frame_000001_depth.tiff", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    code, out, err = _prepare(capsys, manual, data, "size=24")
    assert code == 0, err
    assert _rebuild_notes(out)[0].endswith(
        "1 file(s) rewritten (frame_000001_depth.tiff); rebuilding it"
    )
    exs = _examples(data, size=24)
    np.testing.assert_allclose(exs[1]["depth"].max(), 0.9, atol=1e-6)  # the new frame's depth

    # Another folder than the one it was made from.
    other = tmp_path / "copy"
    shutil.copytree(manual, other)
    code, out, err = _prepare(capsys, other, data, "size=24")
    assert code == 0, err
    assert f"was made from {manual.resolve()}, not {other.resolve()}; rebuilding it" in out

    # A rebuild that fails (a second camera size) keeps the dataset prepared before.
    tifffile.imwrite(other / "frame_000003_depth.tiff", _frame(shape=(40, 50)))
    code, out, err = _prepare(capsys, other, data, "size=24")
    assert code == 2 and _rebuild_notes(out)
    assert _error_line(err).endswith("--set roi=TOP,LEFT,SIDE; the dataset prepared before is kept")
    assert len(_examples(data, size=24)) == 3
    assert not list((data / "frames").rglob("*.previous"))  # nothing left set aside


def test_prepare_help_says_when_it_rebuilds(capsys):
    with pytest.raises(SystemExit) as stop:
        prepare.main(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "frames dataset is rebuilt when this folder's frames changed since" in text
    assert "kept when the rebuild fails" in text
