"""The Fig. 9-style figure is written with the promised pixel size."""

import numpy as np
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
