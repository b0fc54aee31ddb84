"""The Fig. 9-style figure is written with the promised pixel size."""

import numpy as np
from PIL import Image

from dal_jax import grasp, plots


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
