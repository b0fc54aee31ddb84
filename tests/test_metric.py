"""The rectangle metric against a plain NumPy + scikit-image version of GG-CNN's reference
evaluation (post-processing, peak, rectangle IoU > 0.25 within 30 degrees)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.draw import polygon
from skimage.feature import peak_local_max

from dal_jax.data import grasp
from dal_jax.evaluation import metric, postprocess
from tests.test_postprocess import near_tie_maps, ref_post

# --------------------------------------------------------------------------- reference


def ref_iou(a, b):
    """Jaccard index of two [4, 2] rectangles as the reference computes it."""
    a1 = grasp.rect_params(a)[1]
    a2 = grasp.rect_params(b)[1]
    if abs((a1 - a2 + np.pi / 2) % np.pi - np.pi / 2) > np.pi / 6:
        return 0.0
    rr1, cc1 = polygon(a[:, 0], a[:, 1])
    rr2, cc2 = polygon(b[:, 0], b[:, 1])
    try:
        r_max = max(rr1.max(), rr2.max()) + 1
        c_max = max(cc1.max(), cc2.max()) + 1
    except ValueError:
        return 0.0
    canvas = np.zeros((r_max, c_max))
    canvas[rr1, cc1] += 1
    canvas[rr2, cc2] += 1
    union = np.sum(canvas > 0)
    return 0.0 if union == 0 else np.sum(canvas == 2) / union


def ref_success(p, gts):
    """p [H, W, 4]; gts [G, 4, 2] (unpadded) -> bool."""
    q, ang, wid = ref_post(p)
    peaks = peak_local_max(
        q, min_distance=postprocess.peak_distance(q.shape[0]), threshold_abs=0.2, num_peaks=1
    )
    for r, c in peaks:
        o = np.float64(wid[r, c])
        rect = grasp.grasp_to_rect(np.array([r, c], np.float64), np.float64(ang[r, c]), o, o / 2)
        if any(ref_iou(rect, g) > 0.25 for g in gts):
            return True
    return False


def random_rect(rng, lo, hi):
    """A random grasp rectangle of one of several kinds (border-crossing, near +-90 degrees,
    thin, tiny, integer corners)."""
    kind = rng.integers(6)
    c = rng.uniform(lo, hi, 2)
    a = rng.uniform(-np.pi / 2, np.pi / 2)
    o, j = rng.uniform(5, 50), rng.uniform(2, 25)
    if kind == 1:
        a = np.pi / 2 * rng.choice([-1, 1]) + rng.uniform(-1e-3, 1e-3)
    if kind == 2:
        o, j = rng.uniform(0.1, 2.5), rng.uniform(0.05, 1.5)
    if kind == 3:
        j = rng.uniform(0.05, 0.9)
    r = grasp.grasp_to_rect(c, np.float64(a), np.float64(o), np.float64(j))
    if kind == 4:
        r = np.round(r)
    return r


# --------------------------------------------------------------------------- rasteriser

_rows = jax.jit(metric.row_intervals, static_argnums=1)
_rows_win = jax.jit(metric.row_intervals, static_argnums=(1, 3))


def pixel_set(lo, hi, v, ok, row0=0):
    s = {(int(row0) + y, x) for y in range(lo.shape[0]) for x in range(lo[y], hi[y] + 1)}
    return s | {(int(a), int(b)) for (a, b), k in zip(v, ok) if k}


def test_rasteriser_matches_skimage_polygon():
    rng = np.random.default_rng(0)
    rects = []
    for i in range(1200):
        c, a = rng.uniform(-15, 75, 2), rng.uniform(-np.pi, np.pi)
        o, j = rng.uniform(0, 40), rng.uniform(0, 20)
        kind = i % 5
        if kind == 1:  # integral corners / edges through pixel centres, incl. zero area
            c, o, j = np.round(c), float(rng.integers(0, 12)), float(rng.integers(0, 6))
            a = rng.choice([0.0, np.pi / 2, -np.pi / 2, np.pi / 4, np.arctan2(1, 2)])
        if kind == 2:  # tiny and thin
            o, j = rng.uniform(0, 2), rng.uniform(0, 1)
        r = grasp.grasp_to_rect(c, np.float64(a), np.float64(o), np.float64(j))
        if kind == 3:
            r = np.round(r)
        if kind == 4:
            r = np.round(r * 2) / 2
        rects.append(r)
    rects = np.array(rects)
    with jax.enable_x64(True):
        out = [np.asarray(x) for x in _rows(jnp.asarray(rects), 100)]
    # The same with each polygon in its own 48-row window (as `accuracy` rasterises).
    with jax.enable_x64(True):
        row0, fits = metric._window(jnp.asarray(rects), 48, 100)
        win = [np.asarray(x) for x in _rows_win(jnp.asarray(rects), 48, row0, 100)]
    fits = np.asarray(fits)
    assert fits.mean() > 0.95
    for i, r in enumerate(rects):
        rr, cc = polygon(r[:, 0], r[:, 1])
        want = set(zip(rr.tolist(), cc.tolist()))
        got = pixel_set(*(x[i] for x in out))
        assert got == want, (i, r.tolist(), sorted(got ^ want)[:5])
        if fits[i]:
            got = pixel_set(*(x[i] for x in win))
            assert got == want, (i, r.tolist(), sorted(got ^ want)[:5])


# --------------------------------------------------------------------------- pipeline


def make_case(rng, n, size, g_max):
    """Random smooth outputs and ground truth near (and far from) the likely peak."""
    preds = np.zeros((n, size, size, 4), np.float32)
    gts = np.zeros((n, g_max, 4, 2))
    mask = np.zeros((n, g_max), bool)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cr, cc = rng.uniform(15, size - 15, 2)
        amp = rng.choice([0.1, 0.6, 1.0])  # 0.1: no peak above threshold
        blob = amp * np.exp(-((yy - cr) ** 2 + (xx - cc) ** 2) / (2 * rng.uniform(3, 10) ** 2))
        preds[i, ..., 0] = blob + 0.05 * rng.standard_normal((size, size))
        a = rng.uniform(-np.pi / 2, np.pi / 2)
        if rng.random() < 0.3:
            a = np.pi / 2 * rng.choice([-1, 1]) + rng.uniform(-0.05, 0.05)
        preds[i, ..., 1] = np.cos(2 * a) + 0.2 * rng.standard_normal((size, size))
        preds[i, ..., 2] = np.sin(2 * a) + 0.2 * rng.standard_normal((size, size))
        preds[i, ..., 3] = rng.uniform(0.02, 0.4) + 0.02 * rng.standard_normal((size, size))
        g = 1 if rng.random() < 0.3 else (g_max if rng.random() < 0.3 else rng.integers(1, g_max))
        for k in range(g):
            if rng.random() < 0.6:  # around the blob, jittered: near the 0.25 / 30 deg limits
                o = preds[i, int(cr), int(cc), 3] * grasp.width_scale(size) * rng.uniform(0.6, 1.6)
                gts[i, k] = grasp.grasp_to_rect(
                    np.array([cr, cc]) + rng.normal(0, 4, 2),
                    np.float64(a + rng.normal(0, 0.4)),
                    np.float64(o),
                    np.float64(o * rng.uniform(0.2, 0.8)),
                )
                if rng.random() < 0.3:
                    gts[i, k] = np.round(gts[i, k])  # Cornell-style integer corners
            else:
                gts[i, k] = random_rect(rng, -10, size + 10)
            mask[i, k] = True
        # Padding with a rectangle that would match: it must never count.
        gts[i, g:] = grasp.grasp_to_rect(np.array([cr, cc]), np.float64(a), 30.0, 15.0)
    return preds, gts, mask


@pytest.mark.slow
def test_decisions_identical_to_reference_1000_cases():
    rng = np.random.default_rng(2)
    s, n, size, g_max = 4, 250, 72, 30
    preds = np.zeros((s, n, size, size, 4), np.float32)
    base, gts, mask = make_case(rng, n, size, g_max)
    for k in range(s):  # seeds: perturbed copies of the same test set
        preds[k] = base + 0.05 * k * rng.standard_normal(base.shape).astype(np.float32)
    acc, success = metric.accuracy(preds, gts, mask)
    success = np.asarray(success)
    ref = np.array(
        [[ref_success(preds[k, i], gts[i][mask[i]]) for i in range(n)] for k in range(s)]
    )
    assert success.shape == (s, n) and success.dtype == bool
    mismatch = np.argwhere(success != ref)
    assert len(mismatch) == 0, mismatch[:10]
    np.testing.assert_allclose(np.asarray(acc), ref.mean(axis=1), rtol=1e-6)
    # These decisions came from the certified float32 fast path, not the exact fallback.
    with jax.enable_x64(True):
        n_exact = metric._accuracy(
            jnp.asarray(preds), jnp.asarray(gts), jnp.asarray(mask), n_rows=2 * size, chunk=6
        )[2]
    assert int(n_exact) < 0.02 * s * n
    # The sample exercises both outcomes and the no-peak case.
    assert 0.1 < ref.mean() < 0.9
    q = np.asarray(postprocess.postprocess(preds[0])[0])
    assert any(
        len(peak_local_max(x, postprocess.peak_distance(size), threshold_abs=0.2, num_peaks=1)) == 0
        for x in q
    )


@pytest.mark.slow
def test_full_size_300_matches_reference():
    rng = np.random.default_rng(3)
    preds, gts, mask = make_case(rng, 4, 300, 30)
    _, success = metric.accuracy(preds[None], gts, mask)
    ref = [ref_success(preds[i], gts[i][mask[i]]) for i in range(4)]
    assert np.asarray(success)[0].tolist() == ref


# --------------------------------------------------------------------------- hand-built cases


def _success(centre, angle, opening, gt, mask=None, image_size=100):
    g = postprocess.Grasps(
        centre=np.array([[[centre]]], np.float32),
        angle=np.array([[[angle]]], np.float32),
        opening=np.array([[[opening]]], np.float32),
        jaw=np.array([[[opening / 2]]], np.float32),
        quality=np.ones((1, 1, 1), np.float32),
        valid=np.ones((1, 1, 1), bool),
    )
    gt = np.asarray(gt, np.float64).reshape(1, -1, 4, 2)
    mask = np.ones(gt.shape[:2], bool) if mask is None else np.asarray(mask).reshape(1, -1)
    return bool(np.asarray(metric.grasp_success(g, gt, mask, image_size=image_size))[0, 0])


def test_identical_rectangle_succeeds_and_31_degrees_fails():
    gt = grasp.grasp_to_rect(np.array([50.0, 50.0]), 0.3, 40.0, 20.0)
    assert _success((50, 50), 0.3, 40.0, gt)
    assert _success((50, 50), 0.3 + math.radians(29), 40.0, gt)
    assert not _success((50, 50), 0.3 + math.radians(31), 40.0, gt)
    # Wrapped over pi: 179 degrees apart is 1 degree apart.
    assert _success((50, 50), 0.3 + math.radians(179), 40.0, gt)


@pytest.mark.slow
def test_iou_threshold_is_strict_and_counted_in_pixels():
    # Axis-aligned rectangles with integer corners: pred rows 40..60, cols 30..70
    # (21 x 41 = 861 px). A gt sharing rows 40..60 and k columns has IoU k / (82 - k).
    pred = grasp.grasp_to_rect(np.array([50.0, 50.0]), 0.0, 40.0, 20.0)
    for k, want in [(16, False), (17, True)]:  # 16/66 = 0.242, 17/65 = 0.262
        gt = pred + np.array([0.0, 41.0 - k])
        with jax.enable_x64(True):
            iou = float(metric.rect_iou(jnp.asarray(pred), jnp.asarray(gt), 100))
        assert abs(iou - ref_iou(pred, gt)) < 1e-12
        assert (iou > 0.25) == want
        assert _success((50, 50), 0.0, 40.0, gt) == want
    # Exactly 0.25 is a failure: 1-row rectangles, cols 0..7 vs 6..7 -> 2 / 8.
    a = np.array([[5.0, 0.0], [5.0, 7.0], [5.0 + 1e-9, 7.0], [5.0 + 1e-9, 0.0]])
    b = np.array([[5.0, 6.0], [5.0, 7.0], [5.0 + 1e-9, 7.0], [5.0 + 1e-9, 6.0]])
    assert ref_iou(a, b) == pytest.approx(0.25)
    with jax.enable_x64(True):
        assert float(metric.rect_iou(jnp.asarray(a), jnp.asarray(b), 10)) == pytest.approx(0.25)


def test_padding_never_counts():
    gt = grasp.grasp_to_rect(np.array([50.0, 50.0]), 0.3, 40.0, 20.0)
    far = grasp.grasp_to_rect(np.array([10.0, 10.0]), -1.0, 10.0, 5.0)
    both = np.stack([far, gt])
    assert _success((50, 50), 0.3, 40.0, both, [True, True])
    assert not _success((50, 50), 0.3, 40.0, both, [True, False])
    assert not _success((50, 50), 0.3, 40.0, both, [False, False])


# --------------------------------------------------------------------------- near ties


@pytest.mark.slow
def test_near_ties_decided_like_reference():
    """End to end through `accuracy`: the ground truth is the reference grasp, so a wrong
    peak (the twin blob 30 px away) fails, and the exact fallback is exercised."""
    rng = np.random.default_rng(6)
    qmaps = near_tie_maps(rng)
    n = len(qmaps)
    preds = np.zeros((2, n) + qmaps.shape[1:] + (4,), np.float32)
    preds[..., 0] = qmaps
    preds[..., 1] = np.cos(2 * 0.3)
    preds[..., 2] = np.sin(2 * 0.3)
    preds[..., 3] = 0.2
    preds[1, ..., 0] *= np.float32(1 + 2.0**-23)
    gts = np.zeros((n, 2, 4, 2))
    mask = np.zeros((n, 2), bool)
    for i in range(n):
        q, ang, wid = ref_post(preds[0, i])
        peaks = peak_local_max(
            q, min_distance=postprocess.peak_distance(q.shape[0]), threshold_abs=0.2, num_peaks=1
        )
        for r, c in peaks:
            o = np.float64(wid[r, c])
            gts[i, 0] = grasp.grasp_to_rect(np.array([r, c], np.float64), ang[r, c], o, o / 2)
            mask[i, 0] = True
    with jax.enable_x64(True):
        _, success, n_exact, _ = metric._accuracy(
            jnp.asarray(preds), jnp.asarray(gts), jnp.asarray(mask), n_rows=200, chunk=6
        )
    ref = np.array([[ref_success(preds[k, i], gts[i][mask[i]]) for i in range(n)] for k in (0, 1)])
    assert np.array_equal(np.asarray(success), ref)
    assert 0 < int(n_exact) < 2 * n
    assert ref[0].sum() > n // 2  # the reference grasp matches itself where there is a peak


def test_tall_rectangles_use_full_canvas():
    """Rectangles taller than the row windows (huge openings / ground truth) fall back to the
    full canvas and still decide like the reference."""
    cases = [
        ((150, 150), 1.2, 260.0, grasp.grasp_to_rect(np.array([150.0, 150]), 1.2, 250.0, 125.0)),
        ((150, 150), 1.5, 60.0, grasp.grasp_to_rect(np.array([150.0, 150]), 1.5, 220.0, 60.0)),
        ((100, 120), 1.4, 400.0, grasp.grasp_to_rect(np.array([110.0, 120]), 1.3, 380.0, 190.0)),
        ((100, 120), 0.2, 30.0, grasp.grasp_to_rect(np.array([100.0, 121]), 0.2, 30.0, 15.0)),
    ]
    for centre, angle, opening, gt in cases:
        rect = grasp.grasp_to_rect(
            np.array(centre, np.float64), np.float64(angle), np.float64(opening), opening / 2
        )
        want = ref_iou(rect, gt) > 0.25
        assert _success(centre, angle, opening, gt, image_size=300) == want
    assert [
        ref_iou(grasp.grasp_to_rect(np.array(c, float), a, o, o / 2), g) > 0.25
        for c, a, o, g in cases
    ] == [True, False, True, True]
