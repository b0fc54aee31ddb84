"""The Fig. 9-style figure is written with the promised pixel size."""

import numpy as np
import pytest
from PIL import Image

from dal_jax.data import grasp
from dal_jax.evaluation import plots


def test_figure_written_with_right_size(tmp_path):
    rng = np.random.default_rng(0)
    h = 96
    preds = np.zeros((h, h, 4), np.float32)
    yy, xx = np.mgrid[:h, :h]
    preds[..., 0] = np.exp(-((yy - 48) ** 2 + (xx - 50) ** 2) / 50.0)
    preds[..., 1] = 1.0
    preds[..., 3] = 0.2
    gt = grasp.grasp_to_rect(
        np.array([[48.0, 50.0]]), np.array([0.1]), np.array([30.0]), np.array([15.0])
    )
    depth = rng.random((h, h))
    for rgb, panels in [(None, 4), (rng.random((h, h, 3)), 5)]:
        path = tmp_path / f"fig{panels}.png"
        size = plots.plot_grasp_figure(path, depth, preds, gt, np.array([True]), rgb=rgb)
        assert path.exists() and path.stat().st_size > 5000
        with Image.open(path) as im:
            assert im.size == size == (int(320 * panels), 320)


def _red_pixels(path) -> int:
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    return int(((a[..., 0] > 200) & (a[..., 1] < 60) & (a[..., 2] < 60)).sum())


def test_curves_mark_collapsed_runs_and_draw_the_upper_bound(tmp_path):
    def results(collapsed):
        rounds = [
            {
                "labeled": n,
                "accuracy": [0.8, 0.85, 0.01 if c else 0.9],
                "collapsed": [False, False, c],
            }
            for n, c in zip((20, 40, 60), collapsed)
        ]
        return {"dataset": "synthetic_grasps", "seeds": 3, "rounds": rounds}

    upper = {"supervised": {"accuracy": [0.95]}}
    plots.plot_curves(tmp_path / "ok.png", {"dal": results([False] * 3)}, upper=upper)
    plots.plot_curves(tmp_path / "bad.png", {"dal": results([False, True, False])}, upper=upper)
    assert _red_pixels(tmp_path / "ok.png") == 0
    assert _red_pixels(tmp_path / "bad.png") > 20  # the red x (and its legend entry)
    # The dashed upper bound: one more dark row of pixels across the axes than without it.
    plots.plot_curves(tmp_path / "none.png", {"dal": results([False] * 3)})

    def long_dark_rows(path):
        with Image.open(path) as im:
            a = np.asarray(im.convert("L"))
        return int(((a < 60).sum(axis=1) > 0.4 * a.shape[1]).sum())

    assert long_dark_rows(tmp_path / "ok.png") > long_dark_rows(tmp_path / "none.png")


def test_curve_bands_std_and_ci():
    res = {"rounds": [{"labeled": 20, "accuracy": [0.5, 0.6, 0.7, None]},
                      {"labeled": 40, "accuracy": [0.9, 1.0, 1.0]}]}  # fmt: skip
    x, mean, lo, hi = plots.curve_band(res, "std")
    assert x.tolist() == [20, 40]
    np.testing.assert_allclose(mean, [60, 290 / 3])
    sd = np.std([90, 100, 100], ddof=1)
    np.testing.assert_allclose(lo, [50, 290 / 3 - sd])
    np.testing.assert_allclose(hi, [70, 100])  # clipped at 100 %
    _, _, lo, hi = plots.curve_band(res, "ci")
    half = 4.3027 * 10 / np.sqrt(3)  # Student's t 0.975 quantile for 2 degrees of freedom
    np.testing.assert_allclose([lo[0], hi[0]], [60 - half, 60 + half], rtol=1e-4)
    assert hi[1] == 100


def _dark_rows(path) -> int:
    """Rows of pixels dark across most of the figure (black lines, the frame)."""
    with Image.open(path) as im:
        a = np.asarray(im.convert("L"))
    return int(((a < 60).sum(axis=1) > 0.4 * a.shape[1]).sum())


def test_the_study_figure_is_the_curve_figure_with_a_baseline_and_ci_bands(tmp_path):
    def flat(level, collapsed=False):
        rounds = [{"labeled": n, "accuracy": [level - 0.02, level + 0.02],
                   "collapsed": [collapsed, False]} for n in (20, 40, 60)]  # fmt: skip
        return {"dataset": "synthetic_grasps", "seeds": 2, "rounds": rounds}

    runs = {"rs": flat(0.5, collapsed=True), "dal": flat(0.8)}
    study = {"band": "ci", "seeds": False}
    plots.plot_curves(tmp_path / "plain.png", runs, **study)
    plots.plot_curves(tmp_path / "base.png", runs, baseline="rs", **study)
    # The baseline is drawn in black: one more dark row across the axes.
    assert _dark_rows(tmp_path / "base.png") > _dark_rows(tmp_path / "plain.png")
    # Without the seeds no collapsed run is marked; with them it is.
    assert _red_pixels(tmp_path / "base.png") == 0
    plots.plot_curves(tmp_path / "seeds.png", runs, baseline="rs")
    assert _red_pixels(tmp_path / "seeds.png") > 20
    with Image.open(tmp_path / "base.png") as im:
        assert im.size == (640, 420)
    with pytest.raises(ValueError, match="band='sem'"):
        plots.curve_band(runs["rs"], "sem")
