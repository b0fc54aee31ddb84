"""Robot-side inference (`dal_jax.robot`): checkpoint loading, raw frames to grasps in frame
pixels, bad inputs.

Most tests use planted GG-CNN weights (quality = how much closer than the region's mean depth a
spot is), so where the grasp must be is known without training. One 96 px checkpoint (seed 1
planted, seed 0 random) serves the module; the real Cornell test uses a 300 px one.
"""

import json
import math
import pathlib

import jax
import numpy as np
import pytest

from dal_jax import robot
from dal_jax.data import grasp, preprocess
from dal_jax.evaluation import metric, postprocess
from dal_jax.model import checkpoint, models
from dal_jax.robot import cli, network
from dal_jax.training import train

SIZE = 96
BOX = (100, 140, 150, 190)  # rows r0:r1, cols c0:c1 of the object in the synthetic frame


def planted_params(size: int = SIZE, in_channels: int = 1):
    """GG-CNN weights whose quality map is high where the depth is below the region's mean.

    conv1 is a negated 9x9 mean (closer = positive after the ReLU) on channel 0; every other
    layer passes channel 0 through (centre taps / all-ones transposed kernels); pos = channel 0,
    cos = 1, sin = 0, width = 40 px everywhere (angle 0, opening 40 network px).
    """
    x = jax.ShapeDtypeStruct((1, size, size, in_channels), np.float32)
    shapes = jax.eval_shape(lambda x: models.GGCNN().init(jax.random.key(0), x), x)["params"]
    p = jax.tree.map(lambda a: np.zeros(a.shape, np.float32), shapes)  # shapes only: no compile
    enc, dec = p["encoder"], p["decoder"]
    enc["conv1"]["kernel"][:, :, 0, 0] = -10.0 / 81
    enc["conv2"]["kernel"][2, 2, 0, 0] = 1.0
    enc["conv3"]["kernel"][1, 1, 0, 0] = 1.0
    for name in ("convt1", "convt2", "convt3"):
        k = dec[name]["kernel"]
        k[:, :, 0, 0] = 1.0 / (k.shape[0] // 2) ** 2
    dec["pos"]["kernel"][:, :, 0, 0] = 0.25
    dec["cos"]["bias"][:] = 1.0
    dec["width"]["bias"][:] = 40 / grasp.width_scale(size)
    return p


def make_checkpoint(workdir, size: int = SIZE):
    """A run-like checkpoint with two seeds: 0 random (accuracy 0.1), 1 planted (0.3)."""
    tr = train.Trainer(train.TrainConfig.reference())
    st = tr.init_states(jax.random.split(jax.random.key(0), 2), (size, size, 1))
    planted = planted_params(size)
    ggcnn = jax.tree.map(lambda r, p: np.stack([np.asarray(r[0]), p]), st.params["ggcnn"], planted)
    st = st.replace(params=dict(st.params, ggcnn=ggcnn))
    meta = {"accuracy": [0.1, 0.3], "in_channels": 1, "image_size": size, "strategy": "test"}
    checkpoint.save(workdir, 0, st, {"labelled": np.zeros((2, 4), bool)}, meta)
    return workdir


def scene(shape=(240, 320), box=BOX, holes=True):
    """Depth frame [H, W] metres: a table at 0.8 m, one box (0.7 m) at ``box``, NaN/0 holes."""
    d = np.full(shape, 0.8, np.float32)
    r0, r1, c0, c1 = box
    d[r0:r1, c0:c1] = 0.7
    if holes:
        d[::7, ::5] = 0.0
        d[3::11, 2::13] = np.nan
    return d


def on_box(g, box=BOX, margin=0):
    r0, r1, c0, c1 = box
    r, c = g.centre
    return r0 - margin <= r < r1 + margin and c0 - margin <= c < c1 + margin


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("run96"))


@pytest.fixture(scope="module")
def det(ckpt):
    return robot.GraspDetector.from_checkpoint(ckpt)


def test_from_checkpoint_picks_best_seed(ckpt, det):
    assert det.seed == 1 and det.image_size == SIZE and det.in_channels == 1
    np.testing.assert_array_equal(
        np.asarray(det.params["encoder"]["conv1"]["kernel"]),
        planted_params()["encoder"]["conv1"]["kernel"],
    )
    d0 = robot.GraspDetector.from_checkpoint(ckpt / "checkpoints", seed=0, warmup=False)
    assert d0.seed == 0
    assert not np.allclose(
        d0.params["encoder"]["conv1"]["kernel"], det.params["encoder"]["conv1"]["kernel"]
    )


def test_object_found_centre_crop(det):
    d = scene()
    out = det.analyse(d)
    assert out.status == "ok" and len(out.grasps) == 1
    assert out.roi == ((240 - SIZE) // 2, (320 - SIZE) // 2, SIZE)
    g = out.grasps[0]
    assert on_box(g), g
    # Planted heads: angle 0, opening 40 px, jaw 20 px at scale 1.
    assert abs(g.angle) < 1e-5 and g.opening == pytest.approx(40, rel=1e-4)
    assert g.jaw == pytest.approx(20, rel=1e-4) and g.quality > 0.2


def test_roi_resized_maps_back_to_frame(det):
    # A 192 px region is shrunk to 96: the centre must map back onto the box in frame pixels
    # and the opening doubles.
    box = (60, 100, 200, 250)
    g = det.detect(scene(box=box), roi=(10, 120, 192))[0]
    assert on_box(g, box), g
    assert g.opening == pytest.approx(80, rel=1e-4) and g.jaw == pytest.approx(40, rel=1e-4)
    with pytest.raises(ValueError, match="not inside"):
        det.detect(scene(), roi=(100, 200, 192))


def test_top_k_two_objects(det):
    # Two objects 40 px apart inside the centre crop (rows 72:168, cols 112:208).
    a, b = (104, 120, 132, 148), (104, 120, 172, 188)
    d = scene(box=a, holes=False)
    d[b[0] : b[1], b[2] : b[3]] = 0.65  # taller: the best grasp
    gs = det.detect(d, top_k=2)
    assert len(gs) == 2 and gs[0].quality >= gs[1].quality
    assert on_box(gs[0], b) and on_box(gs[1], a), gs
    assert len(det.detect(d, top_k=1)) == 1


def test_intrinsics_position_and_metres(det):
    fx, fy, cx, cy = 500.0, 480.0, 160.0, 120.0
    g = det.detect(scene(), intrinsics=(fx, fy, cx, cy))[0]
    x, y, z = g.position
    assert z == pytest.approx(0.7, abs=1e-6)  # the box's depth, holes ignored
    assert x == pytest.approx((g.centre[1] - cx) * z / fx)
    assert y == pytest.approx((g.centre[0] - cy) * z / fy)
    assert g.opening_m == pytest.approx(40 * 0.7 / fx, rel=1e-4)  # angle 0: along x
    assert g.jaw_m == pytest.approx(20 * 0.7 / fy, rel=1e-4)
    assert json.loads(json.dumps(g.to_dict()))["position"][2] == pytest.approx(0.7)


def test_float32_postprocess_matches_reference(det):
    # The robot path (float32 blur, windowed angle/width) against dal_jax.evaluation.postprocess's
    # SciPy-exact post-processing, on the random seed's output of a real-looking frame.
    rng = np.random.default_rng(1)
    d0 = robot.GraspDetector(
        jax.tree.map(lambda a: np.asarray(a) * 3, det.params), SIZE, warmup=False
    )
    d = scene() + rng.normal(0, 0.01, (240, 320)).astype(np.float32)
    x = d0._inputs(d, None, None)[1]
    rows, cols, ang, wid, q, valid, preds = jax.device_get(
        network.run_network(det.params, x, 3, with_maps=True)
    )
    ref = postprocess.detect_grasps(*postprocess.postprocess(preds), top_n=3)
    np.testing.assert_array_equal(valid, np.asarray(ref.valid))
    assert valid.any()
    np.testing.assert_array_equal(np.stack([rows, cols], -1)[valid], np.asarray(ref.centre)[valid])
    np.testing.assert_allclose(ang[valid], np.asarray(ref.angle)[valid], atol=1e-5)
    np.testing.assert_allclose(wid[valid], np.asarray(ref.opening)[valid], rtol=1e-5)
    np.testing.assert_allclose(q[valid], np.asarray(ref.quality)[valid], rtol=1e-5)


def test_integer_millimetres_same_as_metres(det):
    d = scene(holes=False)
    g_m = det.detect(d)[0]
    g_mm = det.detect(np.round(d * 1000).astype(np.uint16))[0]
    assert g_m.centre == g_mm.centre and g_m.quality == pytest.approx(g_mm.quality, rel=1e-5)


@pytest.mark.parametrize("fill", [np.nan, 0.0])
def test_no_valid_depth_is_no_grasp(det, fill):
    out = det.analyse(np.full((240, 320), fill, np.float32))
    assert out.grasps == [] and out.status == "no valid depth"


def test_flat_scene_is_no_grasp(det):
    out = det.analyse(np.full((240, 320), 0.8, np.float32))
    assert out.grasps == [] and out.status == "no grasp"


@pytest.mark.parametrize(
    "frame, match",
    [
        (np.zeros((0, 0), np.float32), "empty"),
        (np.zeros((240, 320, 3), np.float32), "shape"),
        (np.zeros((240,), np.float32), "shape"),
        (np.ones((240, 320), bool), "dtype"),
        (np.ones((240, 320), complex), "dtype"),
        (np.ones((8, 320), np.float32), "too small"),
        (None, "None"),
    ],
)
def test_bad_frames_raise_clear_errors(det, frame, match):
    with pytest.raises(ValueError, match=match):
        det.detect(frame)


def test_rgbd_model_needs_rgb():
    d4 = robot.GraspDetector(planted_params(SIZE, 4), SIZE, in_channels=4, warmup=False)
    with pytest.raises(ValueError, match="RGB-D"):
        d4.detect(scene())
    with pytest.raises(ValueError, match="registered"):
        d4.detect(scene(), rgb=np.zeros((10, 10, 3), np.uint8))


def test_missing_and_corrupt_checkpoint(tmp_path):
    missing = tmp_path / "nothing_here"
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        robot.GraspDetector.from_checkpoint(missing)
    bad = tmp_path / "corrupt_run"
    (bad / "checkpoints" / "0" / "state").mkdir(parents=True)
    (bad / "checkpoints" / "0" / "meta").write_text("{not json")
    (bad / "checkpoints" / "0" / "state" / "garbage").write_bytes(b"\x00" * 10)
    with pytest.raises((ValueError, FileNotFoundError), match="corrupt_run"):
        robot.GraspDetector.from_checkpoint(bad)
    rc = cli.detect_main(["--checkpoint", str(missing), "--depth", str(missing)])
    assert rc == 2


@pytest.mark.slow
def test_cornell_real_frames_end_to_end(shared_data, tmp_path, capsys):
    """The CLI on the real Cornell depth frames with a 300 px checkpoint: a grasp in the centre
    crop on something raised from the table, 3D position from the frame's depth, a PNG."""
    run = make_checkpoint(tmp_path / "run300", 300)
    frames = sorted((shared_data / "cornell").glob("pcd*d.tiff"))
    assert frames
    for i, f in enumerate(frames):
        png = tmp_path / f"{f.stem}.png"
        args = ["--checkpoint", str(run), "--depth", str(f), "--json"]
        args += ["--intrinsics", "525,525,320,240", "--top_k", "2"]
        args += ["--png", str(png)] if i == 0 else []
        assert cli.detect_main(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["status"] == "ok" and out["roi"] == [90, 170, 300]
        depth = robot.read_depth(f)
        crop = depth[90:390, 170:470]
        for g in out["grasps"]:
            r, c = g["centre"]
            assert 90 + 20 <= r < 390 - 20 and 170 + 20 <= c < 470 - 20  # peak border rule
            assert depth[round(r), round(c)] < np.median(crop)  # planted: closer than the median
            assert g["position"][2] == pytest.approx(depth[round(r), round(c)], rel=0.05)
            assert math.isfinite(g["opening_m"]) and g["opening_m"] > 0
        if i == 0:
            from PIL import Image

            with Image.open(png) as im:
                assert im.size[0] > 3 * im.size[1]  # frame + 3 map panels side by side


def test_warmup_compiles_what_detect_runs():
    # After construction (warm-up) the first frame must not trace a new program: the robot's
    # first grasp would otherwise take seconds.
    d48 = robot.GraspDetector(planted_params(48), 48)
    before = network.run_network._cache_size()
    d48.detect(scene())
    assert network.run_network._cache_size() == before


# ----------------------------------------------------------------------------- depth units


def _cornell_metres(shared_data):
    return robot.read_depth(shared_data / "cornell" / "pcd0100d.tiff")


def test_uint16_millimetre_tiff_same_grasps_as_float_metres(shared_data, ckpt, det, tmp_path):
    """A 16-bit millimetre TIFF of the real Cornell frame gives the float original's depth,
    quality map and grasp (before the fix it was read as metres: z came out ~1200 m)."""
    import tifffile
    from PIL import Image

    d = _cornell_metres(shared_data)
    assert d.dtype == np.float32 and 1.0 < np.median(d) < 1.5  # metres
    mm = np.round(d * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "tifffile_mm.tiff", mm)
    Image.fromarray(mm).save(tmp_path / "pillow_mm.tiff")
    intr = (525.0, 525.0, 320.0, 240.0)
    ref = det.analyse(d, maps=True, intrinsics=intr)
    assert ref.status == "ok"
    for name in ("tifffile_mm.tiff", "pillow_mm.tiff"):
        dm = robot.read_depth(tmp_path / name)
        assert dm.dtype == np.float32
        np.testing.assert_allclose(dm, d, atol=5.1e-4)  # rounding to whole millimetres
        out = det.analyse(dm, maps=True, intrinsics=intr)
        np.testing.assert_allclose(out.maps["q"], ref.maps["q"], atol=2e-3)
        g, r = out.grasps[0], ref.grasps[0]
        assert g.centre == r.centre and g.angle == pytest.approx(r.angle, abs=1e-3)
        assert g.position[2] == pytest.approx(r.position[2], abs=1e-3) and g.position[2] < 2
    # The CLI on the 16-bit file: the grasp's depth is in metres.
    args = ["--checkpoint", str(ckpt), "--depth", str(tmp_path / "pillow_mm.tiff"), "--json"]
    assert cli.detect_main([*args, "--intrinsics=525,525,320,240"]) == 0


def test_float_millimetre_tiff_warns_and_is_converted(shared_data, tmp_path, capsys):
    import tifffile

    d = _cornell_metres(shared_data)
    tifffile.imwrite(tmp_path / "float_mm.tiff", d * 1000)
    with pytest.warns(
        preprocess.DepthUnitsWarning, match=r"median of 1\d{3} is taken as millimetres"
    ):
        dm = robot.read_depth(tmp_path / "float_mm.tiff")
    np.testing.assert_allclose(dm, d, rtol=1e-6)
    # An explicit scale overrides the rule (and says nothing).
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(
            robot.read_depth(tmp_path / "float_mm.tiff", depth_scale=0.001), d, rtol=1e-6
        )
        tifffile.imwrite(tmp_path / "tenth_mm.tiff", np.round(d * 10000).astype(np.uint16))
        np.testing.assert_allclose(
            robot.read_depth(tmp_path / "tenth_mm.tiff", depth_scale=1e-4), d, atol=6e-5
        )
    # The CLI prints the warning as one line (checked before the checkpoint is read).
    rc = cli.detect_main(
        ["--checkpoint", str(tmp_path / "no_run"), "--depth", str(tmp_path / "float_mm.tiff")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[0].startswith("warning: ") and "millimetres" in err[0]
    assert err[1].startswith("error: ") and "no_run" in err[1] and len(err) == 2


def test_depth_units_rule_on_arrays():
    frame = scene(holes=False)
    np.testing.assert_array_equal(robot.as_depth_metres(frame), frame)  # metres as they are
    mm16 = np.round(frame * 1000).astype(np.uint16)
    np.testing.assert_allclose(robot.as_depth_metres(mm16), frame, atol=1e-6)
    mm32 = np.round(frame * 1000).astype(np.int32)
    mm32[0, 0] = -1  # a negative hole stays a hole
    assert robot.as_depth_metres(mm32)[0, 0] < 0
    with pytest.warns(preprocess.DepthUnitsWarning):
        np.testing.assert_allclose(robot.as_depth_metres(frame * 1000), frame, rtol=1e-6)
    # A camera frame with no valid pixel passes (the detector answers "no valid depth")...
    assert np.isnan(robot.as_depth_metres(np.full((4, 4), np.nan, np.float32))).all()
    # ...a file does not; implausible ranges are refused either way.
    with pytest.raises(ValueError, match="no valid depth pixel"):
        robot.as_depth_metres(np.zeros((4, 4), np.uint16), allow_empty=False)
    for bad in (frame * 1e6, frame / 100, np.full((4, 4), 25000, np.uint16)):
        with pytest.raises(ValueError, match="implausible depth"):
            robot.as_depth_metres(bad)


# ------------------------------------------------------------------- original GG-CNN weights


def _jacquard_samples(shared_data):
    """(perfect depth path, ground-truth rectangles [G, 4, 2] in frame pixels) per sample."""
    out = []
    for gfile in sorted((shared_data / "jacquard").rglob("*_grasps.txt")):
        rects, _ = grasp.parse_jacquard(gfile.read_text())
        depth = pathlib.Path(str(gfile).replace("_grasps.txt", "_perfect_depth.tiff"))
        out.append((depth, rects))
    return out


@pytest.mark.slow
def test_converted_original_weights_find_grasps_on_real_jacquard_frames(shared_data, tmp_path):
    """The GG-CNN weights released with the paper (trained on Cornell), converted: on the 20
    shared Jacquard frames (objects it never saw, whole 1024 px frame as the region) its best
    grasp is correct far more often than a grasp at the frame centre."""
    pytest.importorskip("torch", reason="converting the original weights needs torch")
    from dal_jax.model import convert_torch

    weights = shared_data / "weights" / "ggcnn_epoch_23_cornell_statedict.pt"
    convert_torch.convert(weights, tmp_path / "orig")
    det = robot.GraspDetector.from_checkpoint(tmp_path / "orig")
    assert det.input_scale == 1.0  # PyTorch weights take the input as GG-CNN did
    samples = _jacquard_samples(shared_data)
    assert len(samples) == 20
    found, centre = [], []
    for path, rects in samples:
        depth = robot.read_depth(path)
        h, w = depth.shape
        g = det.detect(depth, roi=(0, 0, h))
        found.append((g[0].centre, g[0].angle, g[0].opening, g[0].jaw) if g else None)
        _, _, opening, jaw = grasp.rect_params(rects)
        centre.append((((h - 1) / 2, (w - 1) / 2), 0.0, np.median(opening), np.median(jaw)))
    gt, mask = _padded([rects for _, rects in samples])
    hits = int(_success(found, gt, mask, h).sum())
    centre_hits = int(_success(centre, gt, mask, h).sum())
    print(f"original weights: {hits}/20 correct; frame centre: {centre_hits}/20")
    assert hits >= 8 and hits >= centre_hits + 5, (hits, centre_hits)


def _padded(rect_lists):
    """Ground truth of several images as [N, G, 4, 2] float64 and mask [N, G]."""
    g = max(len(r) for r in rect_lists)
    gt = np.zeros((len(rect_lists), g, 4, 2))
    mask = np.zeros((len(rect_lists), g), bool)
    for i, r in enumerate(rect_lists):
        gt[i, : len(r)], mask[i, : len(r)] = r, True
    return gt, mask


def _success(grasps, gt, mask, size) -> np.ndarray:
    """Rectangle-metric success [N] of one grasp per image ((centre, angle, opening, jaw), or
    None for no grasp) in one call (one compiled program)."""
    valid = np.array([g is not None for g in grasps])
    fill = [g if g is not None else ((0.0, 0.0), 0.0, 1.0, 1.0) for g in grasps]
    field = lambda i: np.asarray([f[i] for f in fill], np.float32)[:, None]
    found = postprocess.Grasps(
        field(0), field(1), field(2), field(3), np.ones_like(field(1)), valid[:, None]
    )
    return np.asarray(metric.grasp_success(found, gt, mask, image_size=size))
