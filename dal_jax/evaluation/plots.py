"""Figures: the best grasp and the output maps of one image (like the paper's Fig. 9), and
active-learning curves (like the paper's Figs. 6-8)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np

FIG_HEIGHT_IN = 3.2
PANEL_WIDTH_IN = 3.2
DPI = 100


def _draw_rect(ax, rect, color, lw=1.5):
    """Draws one [4, 2] (row, col) rectangle as a closed outline."""
    pts = np.concatenate([rect, rect[:1]], axis=0)
    ax.plot(pts[:, 1], pts[:, 0], color=color, linewidth=lw)


def plot_grasp_figure(path, depth, preds, gt_rects, gt_mask=None, rgb=None, dpi: int = DPI):
    """Writes a PNG: [RGB,] depth with ground truth (green) and the best grasp (red), and the
    blurred quality, angle and width maps.

    Args:
      path: output file (.png).
      depth: [H, W] depth image.
      preds: [H, W, 4] network outputs (pos, cos, sin, width) for this image.
      gt_rects: [G, 4, 2] ground-truth rectangles (row, col); gt_mask: [G] bool or None (all).
      rgb: optional [H, W, 3] image (uint8 or float in [0, 1]).
    Returns:
      (width_px, height_px) of the written figure: panels * 3.2 in x 3.2 in at ``dpi``.
    """
    from dal_jax.data import grasp
    from dal_jax.evaluation import postprocess

    preds = np.asarray(preds, np.float32)
    q, angle, width = (np.asarray(m) for m in postprocess.postprocess(preds))
    g = postprocess.detect_grasps(q, angle, width, top_n=1)
    gt_rects = np.asarray(gt_rects, np.float64).reshape(-1, 4, 2)
    if gt_mask is not None:
        gt_rects = gt_rects[np.asarray(gt_mask, bool)]

    panels = (["rgb"] if rgb is not None else []) + ["depth", "quality", "angle", "width"]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(PANEL_WIDTH_IN * len(panels), FIG_HEIGHT_IN), dpi=dpi
    )
    for ax, name in zip(axes, panels):
        if name in ("rgb", "depth"):
            img = rgb if name == "rgb" else depth
            ax.imshow(np.asarray(img), cmap=None if name == "rgb" else "gray")
            for r in gt_rects:
                _draw_rect(ax, r, "lime", 1.0)
            if bool(np.asarray(g.valid)[0]):
                best = grasp.grasp_to_rect(
                    np.asarray(g.centre, np.float64)[0],
                    np.asarray(g.angle, np.float64)[0],
                    np.asarray(g.opening, np.float64)[0],
                    np.asarray(g.jaw, np.float64)[0],
                )
                _draw_rect(ax, best, "red", 2.0)
            ax.set_title(f"{name.upper() if name == 'rgb' else 'Depth'} + grasps")
        elif name == "quality":
            im = ax.imshow(q, cmap="jet", vmin=0, vmax=1)
            ax.set_title("Quality")
            fig.colorbar(im, ax=ax, fraction=0.046)
        elif name == "angle":
            im = ax.imshow(angle, cmap="hsv", vmin=-np.pi / 2, vmax=np.pi / 2)
            ax.set_title("Angle")
            fig.colorbar(im, ax=ax, fraction=0.046)
        else:
            im = ax.imshow(width, cmap="jet", vmin=0, vmax=max(100.0, float(np.max(width))))
            ax.set_title("Width")
            fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    # No bbox_inches='tight', so the image size is exactly figsize * dpi.
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return round(PANEL_WIDTH_IN * len(panels) * dpi), round(FIG_HEIGHT_IN * dpi)


def curve_stats(results: dict):
    """results.json dict -> (labelled counts [K], mean accuracy [K], std [K]) in percent."""
    rounds = results["rounds"]
    x = np.array([r["labeled"] for r in rounds], float)
    acc = [100 * np.asarray(r["accuracy"], float) for r in rounds]
    # Runs without an accuracy (null: diverged before any finite weights) are left out.
    return x, np.array([np.nanmean(a) for a in acc]), np.array([np.nanstd(a) for a in acc])


def plot_curves(path, runs: dict, title: str | None = None, upper: dict | None = None):
    """Accuracy vs labelled images: per curve the mean, a +-1 std band (clipped to 0-100 %)
    and every run as a dot; runs flagged collapsed in results.json are marked with a red x.

    runs: label -> results.json dict; upper: label -> results.json of ``experiments.train``
    (supervised on the whole pool), drawn as dashed lines. Writes a PNG to ``path``.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=DPI)
    marked = False
    for label, res in runs.items():
        x, mean, std = curve_stats(res)
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=label)
        lo, hi = np.clip(mean - std, 0, 100), np.clip(mean + std, 0, 100)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
        for xi, r in zip(x, res["rounds"]):
            acc = 100 * np.asarray(r["accuracy"], float)
            bad = np.asarray(r.get("collapsed") or [False] * len(acc), bool)
            ax.scatter(np.full((~bad).sum(), xi), acc[~bad], s=6, color=line.get_color(), alpha=0.5)
            if bad.any():
                ax.scatter(
                    np.full(bad.sum(), xi),
                    np.nan_to_num(acc[bad]),
                    s=30,
                    marker="x",
                    color="red",
                    label=None if marked else "collapsed run",
                    zorder=5,
                )
                marked = True
    for label, res in (upper or {}).items():
        acc = 100 * np.asarray(res["accuracy"], float)
        ax.axhline(np.nanmean(acc), linestyle="--", color="black", linewidth=1, label=label)
    first = next(iter(runs.values()), {})
    ax.set_xlabel("labelled images")
    ax.set_ylabel("rectangle-metric accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title or f"{first.get('dataset', '')}, {first.get('seeds', '?')} seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
