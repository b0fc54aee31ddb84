import pytest

"""Post-processing (blur, peaks, detection, the certified fast top-1) against SciPy and
scikit-image, the recipe of GG-CNN's reference evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
from skimage.feature import peak_local_max
from skimage.filters import gaussian

from dal_jax.data import grasp
from dal_jax.evaluation import postprocess

# --------------------------------------------------------------------------- reference


def ref_post(p):
    """p [H, W, 4] float32 -> blurred q, angle, width (the GG-CNN reference recipe)."""
    q = gaussian(p[..., 0], 2.0, preserve_range=True)
    ang = gaussian(np.arctan2(p[..., 2], p[..., 1]) / 2.0, 2.0, preserve_range=True)
    # The width scale is 150 px at 300 px and scales with the image (grasp.width_scale).
    wid = gaussian(p[..., 3] * np.float32(grasp.width_scale(p.shape[1])), 1.0, preserve_range=True)
    return q, ang, wid


# --------------------------------------------------------------------------- blur, peaks


def test_blur_bit_identical_to_skimage():
    rng = np.random.default_rng(1)
    p = rng.standard_normal((2, 64, 80, 4)).astype(np.float32)
    q, ang, wid = (np.asarray(m) for m in postprocess.postprocess(p))
    for k in range(2):
        rq, ra, rw = ref_post(p[k])
        assert np.array_equal(q[k], rq)  # bit for bit: the peak is the same pixel
        assert np.array_equal(wid[k], rw)
        np.testing.assert_allclose(ang[k], ra, atol=1e-6)


@pytest.mark.slow
def test_float32_blur_is_one_blur():
    """`blur_at` is the full blur at a pixel in either accumulator (the detector's windowed
    angle / width are the metric's float32 blur), and the float32 blur stays within the
    certificate's error bound of SciPy's."""
    rng = np.random.default_rng(7)
    img = jnp.asarray(rng.standard_normal((40, 52)), jnp.float32)
    pix = [(0, 0), (3, 50), (20, 26), (39, 51), (12, 1)]
    with jax.enable_x64(True):
        for dtype in (np.float64, np.float32):
            full = np.asarray(postprocess.gaussian_blur(img, 2.0, dtype))
            for r, c in pix:
                assert postprocess.blur_at(img, r, c, 2.0, dtype) == full[r, c], (dtype, r, c)
    fast = np.asarray(postprocess.gaussian_blur(img, 2.0, np.float32))
    img = np.asarray(img)
    err = np.abs(fast - gaussian(img, 2.0, preserve_range=True)).max()
    assert err < postprocess._BLUR_ERR_ULPS * 2.0**-24 * np.abs(img).max()


def test_detect_grasps_matches_peak_local_max_top_n():
    rng = np.random.default_rng(4)
    q = rng.random((3, 96, 96)).astype(np.float32)
    q[0] = 0.5  # constant image: no peak at all in peak_local_max
    q[1, 40:45, 50:55] = 2.0  # plateau: ties resolved in row-major order
    g = postprocess.detect_grasps(q, q, q, top_n=3)
    for i in range(3):
        ref = peak_local_max(
            q[i],
            min_distance=postprocess.peak_distance(q.shape[-1]),
            threshold_abs=0.2,
            num_peaks=3,
        )
        valid = np.asarray(g.valid[i])
        assert valid.sum() == len(ref)
        assert np.array_equal(np.asarray(g.centre[i])[valid].astype(int), ref)


# --------------------------------------------------------------------------- fast path guard


def near_tie_maps(rng, size=100):
    """Quality maps [M, size, size] whose exact blurred peak is decided by a few ulps: twin
    blobs (the second scaled by 1 + k 2^-24), plateaus, peaks at the 0.2 threshold, constant
    and border-dominated maps, plus a few generic ones."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)

    def blob(r, c, s=4.0):
        return np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * s * s))

    maps = []
    for k in range(-4, 5):
        for first, second in [((35, 35), (65, 65)), ((65, 35), (35, 65)), ((40, 30), (40, 70))]:
            a = rng.uniform(0.3, 1.0)
            m = a * blob(*first) + a * (1 + k * 2.0**-24) * blob(*second)
            maps.append(m)
    for _ in range(6):  # plateaus above the threshold
        m = np.round(rng.uniform(0, 1) + 0.3 * blob(*rng.uniform(25, 75, 2), s=12.0), 1)
        maps.append(m)
    for k in range(-6, 7):  # the peak value sits on float32(0.2)
        m = blob(50.0, 50.0)
        peak = np.float32(gaussian(m.astype(np.float32), 2.0, preserve_range=True).max())
        maps.append(m * (np.float32(0.2) + k * 2.0**-26) / peak)
    maps.append(np.full((size, size), 0.7))  # constant: no peak
    maps.append(blob(5.0, 50.0) + 0.5 * blob(45.0, 50.0))  # window max in the border band
    maps.append(0.5 * blob(50.0, 50.0) + rng.normal(0, 1e-6, (size, size)))
    return np.stack(maps).astype(np.float32)


def test_fast_peak_certificate_is_sound_on_near_ties():
    rng = np.random.default_rng(5)
    qmaps = near_tie_maps(rng)
    preds = np.zeros(qmaps.shape + (4,), np.float32)
    preds[..., 0] = qmaps
    preds[..., 1] = 1.0
    preds[..., 3] = 0.2
    with jax.enable_x64(True):
        r, c, valid, ok = (np.asarray(a) for a in jax.jit(postprocess._top1_fast)(preds))
    for i, p in enumerate(qmaps):
        ref = peak_local_max(
            gaussian(p, 2.0, preserve_range=True),
            min_distance=postprocess.peak_distance(p.shape[0]),
            threshold_abs=0.2,
            num_peaks=1,
        )
        if ok[i]:  # a certified fast peak is the reference peak
            assert valid[i, 0] == (len(ref) == 1), i
            if len(ref):
                assert (r[i, 0], c[i, 0]) == tuple(ref[0]), i
    # Both outcomes occur: the guard sends the near-ties to the exact path, not everything.
    assert 0 < ok.sum() < len(ok)
    # Non-finite or overflowing inputs are never certified.
    bad = np.repeat(preds[-1:], 3, axis=0)
    bad[0, 3, 4, 0], bad[1, 50, 50, 0], bad[2, 10, 10, 0] = np.inf, np.nan, 3e38
    with jax.enable_x64(True):
        assert not np.asarray(jax.jit(postprocess._top1_fast)(bad)[3]).any()
