"""Target maps, pools and load_dataset (tiny synthetic builds in tmp_path data dirs)."""

import math

import numpy as np
import pytest

from dal_jax.data import grasp, pools, target_maps


def test_targets_central_third_axis_aligned():
    # Opening 30 along the columns, jaw 10 along the rows, centre (20, 30).
    rect = grasp.grasp_to_rect(np.array([20.0, 30.0]), 0.0, 30.0, 10.0)
    t = target_maps.make_targets(rect[None], None, (300, 300))
    assert t.shape == (300, 300, 4) and t.dtype == np.float32
    pos = t[..., 0]
    rows, cols = np.nonzero(pos)
    # Central third: cols 25..35 (opening/3 = 10 wide), rows 15..25 (jaw 10), edges included.
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (15, 25, 25, 35)
    assert pos.sum() == 11 * 11
    np.testing.assert_allclose(t[20, 30], [1, 1, 0, 30 / 150], atol=1e-6)  # 300 px: scale 150
    np.testing.assert_allclose(t[0, 0], [0, 1, 0, 0])  # background
    np.testing.assert_allclose(t[20, 38], [0, 1, 0, 0])  # outer thirds are not painted


def test_targets_angle_overwrite_mask_and_clip():
    a = grasp.grasp_to_rect(np.array([30.0, 30.0]), math.pi / 4, 60.0, 12.0)
    b = grasp.grasp_to_rect(np.array([30.0, 30.0]), -math.pi / 4, 300.0, 6.0)
    t = target_maps.make_targets(np.stack([a, b]), None, (300, 300))
    # b came later and overwrites the centre; its opening 300 clips to 1.
    np.testing.assert_allclose(t[30, 30], [1, math.cos(-math.pi / 2), -1, 1], atol=1e-6)
    t_a = target_maps.make_targets(np.stack([a, b]), np.array([True, False]), (300, 300))
    # At another size the width scale follows the image: 150 * 96 / 300 = 48 px.
    c = grasp.grasp_to_rect(np.array([30.0, 30.0]), 0.0, 24.0, 6.0)
    assert target_maps.make_targets(c[None], None, (96, 96))[30, 30, 3] == pytest.approx(24 / 48)
    np.testing.assert_allclose(t_a[30, 30], [1, 0, 1, 60 / 150], atol=1e-6)
    # A rectangle entirely outside the image paints nothing.
    out = grasp.grasp_to_rect(np.array([-50.0, -50.0]), 0.0, 20.0, 5.0)
    assert target_maps.make_targets(out[None], None, (20, 20))[..., 0].sum() == 0


def test_pool_subset_and_normalisation():
    d = np.full((8, 8), 0.7, np.float32)
    d[2:4, 2:4] = 0.5
    x = pools.normalise_depth(d)
    assert abs(x.mean()) < 1e-6 and x.min() < 0
    np.testing.assert_allclose(pools.normalise_depth(d * 100).max(), 1.0)  # clipped
    n = 5
    pool = pools.Pool(
        inputs=np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((n, 4, 4, 1)),
        targets=np.zeros((n, 4, 4, 4), np.float16),
        gt_rects=np.zeros((n, 2, 4, 2), np.float32),
        gt_mask=np.ones((n, 2), bool),
        ids=np.array([f"s{i}" for i in range(n)]),
        rgb=None,
        depth=np.zeros((n, 4, 4), np.float32),
    )
    sub = pool.subset([3, 1])
    assert len(sub) == 2 and list(sub.ids) == ["s3", "s1"] and sub.rgb is None
    assert sub.inputs[0, 0, 0, 0] == 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    return d, pools.load_dataset("synthetic_grasps", data_dir=d, num_scenes=20, image_size=48)


def test_load_synthetic_builds_on_first_use(tiny):
    d, ds = tiny
    assert pools.is_prepared("synthetic_grasps", d, num_scenes=20, image_size=48)
    assert not pools.is_prepared("synthetic_grasps", d)  # the default config is separate
    assert (len(ds.pool), len(ds.test)) == (16, 4) and ds.initial is None
    p = ds.pool
    assert p.inputs.shape == (16, 48, 48, 1) and p.inputs.dtype == np.float32
    assert p.targets.shape == (16, 48, 48, 4) and p.targets.dtype == np.float16
    assert p.rgb.shape == (16, 48, 48, 3) and p.depth.shape == (16, 48, 48)
    assert np.abs(p.inputs).max() <= 1.0
    g = p.gt_rects.shape[1]
    assert p.gt_rects.shape == (16, g, 4, 2) and p.gt_mask.shape == (16, g)
    assert p.gt_mask.sum(1).min() >= 1 and len(set(p.ids) & set(ds.test.ids)) == 0
    # The stored targets are exactly the maps of the stored rectangles.
    for i in (0, 7):
        want = target_maps.make_targets(p.gt_rects[i], p.gt_mask[i], (48, 48))
        np.testing.assert_allclose(p.targets[i].astype(np.float32), want, atol=1e-3)
        assert want[..., 0].sum() > 0
    np.testing.assert_allclose(p.inputs[0, ..., 0], pools.normalise_depth(p.depth[0]), atol=1e-6)


def test_load_resized_and_rgbd(tiny):
    d, ds = tiny
    small = pools.load_dataset(
        "synthetic_grasps", data_dir=d, size=24, channels="rgbd", num_scenes=20, image_size=48
    )
    assert small.pool.inputs.shape == (16, 24, 24, 4)
    assert list(small.pool.ids) == list(ds.pool.ids)
    np.testing.assert_allclose(small.pool.gt_rects, ds.pool.gt_rects / 2, atol=1e-5)
    np.testing.assert_allclose(small.pool.inputs[..., 1:].mean(axis=(1, 2, 3)), 0, atol=1e-4)
    with pytest.raises(ValueError, match="multiple of 12"):
        pools.load_dataset("synthetic_grasps", data_dir=d, size=50)


def test_unprepared_dataset_error(tmp_path):
    assert not pools.is_prepared("cornell", tmp_path)
    with pytest.raises(FileNotFoundError, match="datasets.prepare --dataset=cornell"):
        pools.load_dataset("cornell", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        pools.make_builder("mnist", tmp_path)


def test_targets_match_reference_rasterisation():
    draw = pytest.importorskip("skimage.draw")
    rng = np.random.default_rng(0)
    for _ in range(50):
        c, a = rng.uniform(10, 90, 2), rng.uniform(-1.5, 1.5)
        o, j = rng.uniform(6, 60), rng.uniform(3, 20)
        inner = grasp.grasp_to_rect(c, a, o / 3, j)
        ref = np.zeros((100, 100), bool)
        ref[draw.polygon(inner[:, 0], inner[:, 1], (100, 100))] = True
        got = target_maps.make_targets(grasp.grasp_to_rect(c, a, o, j)[None], None, (100, 100))
        np.testing.assert_array_equal(got[..., 0] > 0, ref)
