"""A PNG of one detection: the frame, the region and the grasps, and the region's maps."""

from __future__ import annotations

import numpy as np

from dal_jax.robot.results import Detection


def save_figure(path, depth, det: Detection, rgb=None):
    """PNG: the frame ([RGB,] depth) with the region (white) and the grasps (red, the best
    thicker), and the region's quality, angle and width maps. depth [H, W] metres, rgb
    [H, W, 3] or None; ``det`` from ``analyse(..., maps=True)`` (without maps: frames only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = ([("RGB", rgb)] if rgb is not None else []) + [("Depth", depth)]
    maps = det.maps or {}
    panels = len(frames) + (3 if maps else 0)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4), dpi=100)
    axes = np.atleast_1d(axes)
    for ax, (name, img) in zip(axes, frames):
        _draw_frame(ax, name, img, det)
    if maps:
        _draw_maps(fig, axes[len(frames) :], maps)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _draw_frame(ax, name: str, img, det: Detection):
    """One frame panel: the image, the region (white) and the grasps (red, the best thicker)."""
    import matplotlib

    top, left, size = det.roi
    ax.imshow(img, cmap=None if name == "RGB" else "gray")
    ax.add_patch(
        matplotlib.patches.Rectangle(
            (left - 0.5, top - 0.5), size, size, fill=False, ec="white", lw=1
        )
    )
    for i, g in enumerate(det.grasps):
        pts = np.concatenate([g.rect(), g.rect()[:1]])
        ax.plot(pts[:, 1], pts[:, 0], color="red", lw=2.0 if i == 0 else 1.0)
    ax.set_title(f"{name}: {det.status}")


def _draw_maps(fig, axes, maps: dict):
    """The quality, angle and width maps [N, N] on three panels, each with its colour bar."""
    specs = (("q", "Quality", "jet", 0, 1), ("angle", "Angle", "hsv", -np.pi / 2, np.pi / 2))
    specs += (("width", "Width", "jet", 0, max(100.0, float(np.max(maps.get("width", 0))))),)
    for ax, (key, title, cmap, lo, hi) in zip(axes, specs):
        im = ax.imshow(maps[key], cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046)
