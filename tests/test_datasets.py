"""The TFDS builders: Jacquard and Cornell on the real sample files, the synthetic set through
the Cornell parser, noisy Cornell, bad input and the prepare command."""

import math
import os
import pathlib
import sys
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dal_jax.data import grasp, pools
from datasets import common, prepare
from datasets.synthetic_grasps import scenes as synth

JAC = 300 / 1024


def _build(name, data_dir, manual_dir=None, **kw):
    b = pools.make_builder(name, data_dir, **kw)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return b


def _ex(src, split):
    return {common.as_str(src[split][i]["id"]): src[split][i] for i in range(len(src[split]))}


def test_no_tensorflow_imported():
    assert "tensorflow" not in sys.modules  # building/reading must never need TensorFlow


# ----------------------------------------------------------------------------- Jacquard


@pytest.fixture(scope="module")
def jacquard(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("jac")
    return shared_data / "jacquard", _build("jacquard_subset", d, shared_data / "jacquard")


def test_jacquard_counts_and_split(jacquard):
    _, b = jacquard
    src = b.as_data_source()
    train, test = _ex(src, "train"), _ex(src, "test")
    assert (len(train), len(test)) == (16, 4)  # 4 objects x 5 views: 1 test view each
    objs = lambda exs: sorted(common.as_str(e["object_id"]) for e in exs.values())
    assert len(set(objs(test))) == 4 and len(set(objs(train))) == 4
    initial = [k for k, e in train.items() if bool(e["initial"])]
    assert len(initial) == 4 and len({k.split("_", 1)[1] for k in initial}) == 4
    assert not set(train) & set(test)
    ex = next(iter(test.values()))
    assert ex["depth"].shape == (300, 300) and ex["rgb"].shape == (300, 300, 3)
    assert 1.0 < ex["depth"].min() and ex["depth"].max() < 2.0  # perfect depth, metres
    ds = pools.load_dataset("jacquard_subset", data_dir=b.data_dir_root)
    assert len(ds.initial) == 4 and all(ds.pool.ids[i] in initial for i in ds.initial)


def test_jacquard_grasps_match_text_files(jacquard):
    root, b = jacquard
    src = b.as_data_source()
    for key, ex in list(_ex(src, "train").items())[:3]:
        _, obj = key.split("_", 1)
        lines = (root / obj / f"{key}_grasps.txt").read_text().splitlines()
        assert len(ex["rects"]) == len(lines)
        for k in (0, len(lines) - 1):
            x, y, theta, w, h = (float(v) for v in lines[k].split(";"))
            c, a, o, j = grasp.rect_params(ex["rects"][k].astype(np.float64))
            np.testing.assert_allclose(c, [y * JAC, x * JAC], atol=1e-3)
            assert math.cos(2 * (a + math.radians(theta))) == pytest.approx(1, abs=1e-5)
            assert (o, j) == (pytest.approx(w * JAC, 1e-4), pytest.approx(h * JAC, 1e-4))


def test_jacquard_subset_seeded_and_stereo(shared_data, tmp_path):
    b = _build(
        "jacquard_subset",
        tmp_path,
        shared_data / "jacquard",
        config="stereo",
        num_objects=2,
        views=3,
        seed=1,
    )
    src = b.as_data_source()
    assert (len(src["train"]), len(src["test"])) == (4, 2)
    d = src["test"][0]["depth"]
    assert d.min() > 0.5  # stereo -1 holes were inpainted (stereo noise reaches ~0.6 m)


# ----------------------------------------------------------------------------- Cornell


def _cornell_manual(shared_data, folder: pathlib.Path):
    """A manual folder with the two real scenes (linked), hand-made grasps, and bad input."""
    sub = folder / "01"
    sub.mkdir(parents=True)
    for sid in ("pcd0100", "pcd0101"):
        for suffix in ("d.tiff", "r.png"):
            os.symlink(shared_data / "cornell" / f"{sid}{suffix}", sub / f"{sid}{suffix}")
    # CRLF, a NaN rectangle, and no newline after the last line.
    (sub / "pcd0100cpos.txt").write_bytes(
        b"253 319\r\n309 324\r\n307 350\r\n251 346\r\n"
        b"NaN NaN\r\nNaN NaN\r\nNaN NaN\r\nNaN NaN\r\n"
        b"280 300\r\n300 300\r\n300 310\r\n280 310"
    )
    (sub / "pcd0101cpos.txt").write_text("600 460\n630 460\n630 470\n600 470\n")  # corner
    (sub / "pcd0102cpos.txt").write_text("NaN 1\n1 1\n1 1\n1 1\n")  # no valid rectangle
    (sub / "pcd0102r.png").write_bytes((sub / "pcd0100r.png").read_bytes())
    (sub / "pcd0102d.tiff").write_bytes((sub / "pcd0100d.tiff").read_bytes())
    (sub / "pcd0103cpos.txt").write_text("1 1\n2 2\n3 3\n4 4\n")
    (sub / "pcd0103r.png").write_bytes(b"not a png")  # unreadable
    (sub / "pcd0103d.tiff").write_bytes((sub / "pcd0100d.tiff").read_bytes())
    return folder


@pytest.fixture(scope="module")
def cornell(shared_data, tmp_path_factory):
    manual = _cornell_manual(shared_data, tmp_path_factory.mktemp("manual") / "cornell")
    d = tmp_path_factory.mktemp("corn")
    return manual, _build("cornell", d, manual, test_fraction=0.5)


def test_cornell_preprocessing_on_real_depth(shared_data, cornell):
    _, b = cornell
    src = b.as_data_source()
    exs = {**_ex(src, "train"), **_ex(src, "test")}
    assert sorted(exs) == ["pcd0100", "pcd0101"]  # 0102 (no valid rect), 0103 (bad png) gone
    full = common.read_tiff(shared_data / "cornell" / "pcd0100d.tiff")
    rgb = common.read_rgb(shared_data / "cornell" / "pcd0100r.png")
    e = exs["pcd0100"]
    # Crop centred on the valid corners' mean (row 319.875 -> 319, col 285), 300 x 300.
    top, left = 319 - 150, 285 - 150
    np.testing.assert_array_equal(e["crop_offset"], [top, left])
    np.testing.assert_array_equal(e["depth"], full[top : top + 300, left : left + 300])
    np.testing.assert_array_equal(e["rgb"], rgb[top : top + 300, left : left + 300])
    assert len(e["rects"]) == 2
    np.testing.assert_array_equal(e["rects"][1, 3], [310 - top, 280 - left])
    # A grasp near the image corner: the crop is clamped inside the 480 x 640 frame.
    np.testing.assert_array_equal(exs["pcd0101"]["crop_offset"], [480 - 300, 640 - 300])
    # The skip record is stored with the dataset (read back by a fresh builder).
    meta = pools.make_builder("cornell", b.data_dir_root, test_fraction=0.5).info.metadata
    assert meta["skipped_rects"] == 2
    reasons = {pathlib.Path(w).name: r for w, r in meta["skipped"]}
    assert "no valid positive rectangle" in reasons["pcd0102"]
    assert "unreadable" in reasons["pcd0103r.png"]
    assert "1 rectangle(s)" in reasons["pcd0100cpos.txt"]


def test_cornell_noisy_rotates_training_only(cornell, tmp_path):
    manual, b = cornell
    noisy = _build("cornell_noisy", b.data_dir_root, manual, test_fraction=0.5)
    assert noisy.info.metadata.get("reused")  # the prepared cornell examples were reused
    raw = _build("cornell_noisy", tmp_path, manual, test_fraction=0.5)  # from the raw files
    clean_src, nsrc, rsrc = b.as_data_source(), noisy.as_data_source(), raw.as_data_source()
    for split in ("train", "test"):
        clean, nz, rz = _ex(clean_src, split), _ex(nsrc, split), _ex(rsrc, split)
        assert sorted(clean) == sorted(nz) == sorted(rz)
        for k in clean:
            np.testing.assert_allclose(nz[k]["rects"], rz[k]["rects"], atol=1e-4)
            c0, a0, o0, _ = grasp.rect_params(clean[k]["rects"].astype(np.float64))
            c1, a1, o1, _ = grasp.rect_params(nz[k]["rects"].astype(np.float64))
            np.testing.assert_allclose(c1, c0, atol=1e-3)
            np.testing.assert_allclose(o1, o0, atol=1e-3)
            diff = np.abs(grasp.wrap_angle(a1 - a0))
            if split == "test":
                np.testing.assert_allclose(diff, 0, atol=1e-6)
            else:
                assert (diff <= math.radians(45) + 1e-5).all() and diff.max() > 1e-3


def test_cornell_from_point_cloud_and_archive(shared_data, tmp_path):
    full = common.read_tiff(shared_data / "cornell" / "pcd0100d.tiff")
    h, w = full.shape
    # An unorganised Cornell-style cloud (HEIGHT 1): every 3rd pixel has no point.
    idx = np.arange(h * w)[np.arange(h * w) % 3 != 0]
    xyz = np.zeros((len(idx), 3))
    xyz[:, 2] = full.reshape(-1)[idx] * 1000.0
    body = "".join(f"0 0 {z:.3f} 4.2e6 {i}\r\n" for z, i in zip(xyz[:, 2], idx))
    header = synth.PCD_HEADER.format(w=len(idx), h=1, n=len(idx)).replace("\n", "\r\n")
    text = header + body
    depth = common.depth_from_pcd(text)
    assert depth.shape == (480, 640)
    np.testing.assert_allclose(depth.reshape(-1)[idx], full.reshape(-1)[idx], atol=1e-6)
    assert (depth.reshape(-1)[::3] == 0).all()
    filled = common.inpaint(depth)
    assert filled.min() > 0
    assert np.abs(filled - full)[100:-100, 100:-100].mean() < 0.01
    # The same scene as a .tar.gz archive holding the point cloud instead of the TIFF.
    src = tmp_path / "src" / "01"
    src.mkdir(parents=True)
    (src / "pcd0100.txt").write_text(text)
    (src / "pcd0100r.png").write_bytes((shared_data / "cornell" / "pcd0100r.png").read_bytes())
    (src / "pcd0100cpos.txt").write_text("253 319\n309 324\n307 350\n251 346\n")
    manual = tmp_path / "manual"
    manual.mkdir()
    with tarfile.open(manual / "01.tar.gz", "w:gz") as t:
        t.add(src, arcname="01")
    b = _build("cornell", tmp_path / "tfds", manual, test_fraction=0.0)
    ex = b.as_data_source()["train"][0]
    top, left = ex["crop_offset"]
    np.testing.assert_allclose(ex["depth"], filled[top : top + 300, left : left + 300], atol=1e-6)


def test_missing_manual_folder(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"(?s)nope.*does not exist.*Download"):
        _build("cornell", tmp_path, tmp_path / "nope")
    rc = prepare.main(["--dataset=jacquard_subset", f"--data_dir={tmp_path}"])
    assert rc == 2 and "jacquard" in capsys.readouterr().err


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_round_trips_through_cornell_parser(tmp_path):
    ids = synth.write_scenes(tmp_path, 3, 48, seed=5)
    assert list(ids) == ["pcd0100", "pcd0101", "pcd0102"]
    rng = np.random.default_rng([5, 0])
    scene = None
    while scene is None:
        scene = synth.make_scene(rng, 48)
    rng_depth, rgb, rects, kinds = scene
    assert ids["pcd0100"] == kinds and set(kinds) <= set(synth.KINDS)
    text = (tmp_path / "01" / "pcd0100.txt").read_text()
    assert text.startswith("# .PCD v.7") and "WIDTH 64\nHEIGHT 56\n" in text
    depth = common.depth_from_pcd(text)
    assert depth.shape == synth.frame_shape(48) == (56, 64)
    ok = np.isfinite(rng_depth)
    assert (~ok).any()  # some points are missing, as from a real sensor
    np.testing.assert_allclose(depth[ok], rng_depth[ok], atol=2e-5)
    assert (depth[~ok] == 0).all()
    parsed, skipped = grasp.parse_cornell((tmp_path / "01" / "pcd0100cpos.txt").read_text())
    assert skipped == 0
    np.testing.assert_array_equal(parsed, np.round(rects))
    np.testing.assert_array_equal(common.read_rgb(tmp_path / "01" / "pcd0100r.png"), rgb)


def test_synthetic_builder_deterministic(tmp_path):
    a = _build("synthetic_grasps", tmp_path / "a", num_scenes=10, image_size=48, seed=3)
    b = _build("synthetic_grasps", tmp_path / "b", num_scenes=10, image_size=48, seed=3)
    sa, sb = a.as_data_source(), b.as_data_source()
    assert (len(sa["train"]), len(sa["test"])) == (8, 2)
    ea, eb = _ex(sa, "train"), _ex(sb, "train")
    assert sorted(ea) == sorted(eb)
    for k in ea:
        np.testing.assert_array_equal(ea[k]["depth"], eb[k]["depth"])
        np.testing.assert_array_equal(ea[k]["rects"], eb[k]["rects"])
        assert ea[k]["depth"].shape == (48, 48) and ea[k]["depth"].min() > 0.5
        # Every grasp centre lies inside the crop (the crop is centred on the grasps).
        centres = grasp.rect_params(ea[k]["rects"])[0]
        assert centres.min() >= 0 and centres.max() < 48
    assert a.info.metadata["skipped"] == []


def test_longtail_pool_is_long_tailed_and_its_test_set_balanced(tmp_path):
    b = _build("synthetic_grasps", tmp_path, num_scenes=60, image_size=48, kind_mix="longtail")
    counts = b.info.metadata["kinds"]
    pool, test = counts["train"], counts["test"]
    common_kinds = ("box", "cylinder")
    share = {
        split: sum(c[k] for k in common_kinds) / sum(c.values()) for split, c in counts.items()
    }
    # Pool: 20 of the 24 weight units are boxes and cylinders; test: 2 of 6 kinds.
    assert share["train"] > 0.7, pool
    assert share["test"] < 0.5, test
    assert all(test[k] > 0 for k in synth.KINDS if k != "plate"), test
    src = b.as_data_source()
    assert (len(src["train"]), len(src["test"])) == (48, 12)
    uniform = _build("synthetic_grasps", tmp_path / "u", num_scenes=60, image_size=48)
    assert sum(uniform.info.metadata["kinds"]["train"][k] for k in common_kinds) < sum(
        pool[k] for k in common_kinds
    )


def test_prepare_summary(tmp_path, capsys, cornell):
    manual, _ = cornell
    rc = prepare.main(
        [
            "--dataset=cornell",
            f"--data_dir={tmp_path}",
            f"--manual_dir={manual}",
            "--set",
            "test_fraction=0.5",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "train: 1 examples" in out and "test: 1 examples" in out
    assert "rectangles" in out and "skipped rectangles (NaN / malformed): 2" in out
    assert "pcd0103r.png: unreadable" in out and "pcd0102: no valid positive rectangle" in out
