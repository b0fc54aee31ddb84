"""Figures: the best grasp and the output maps of one image (like the paper's Fig. 9), and
the learning-curve figure (like the paper's Figs. 6-8) of a run (curves.png), of finished runs
compared (compare.png) and of a study (study.png, with 95 % confidence bands)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np

from dal_jax.evaluation import stats

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


BANDS = ("std", "ci")


def curve_band(results: dict, band: str = "std"):
    """A results.json dict -> (labelled counts [T], mean accuracy [T], band low [T], band high
    [T]) in percent over the seeds, runs without an accuracy (null: diverged before any finite
    weights) left out. band: "std", mean ± 1 std (ddof 1); "ci", the t-based 95 % CI of the
    mean. The band is clipped to 0-100 % and NaN where it needs two seeds."""
    if band not in BANDS:
        raise ValueError(f"band={band!r}: choose one of {', '.join(BANDS)}")
    x = np.array([r["labeled"] for r in results["rounds"]], float)
    per_round = [stats.summary(100 * np.asarray(r["accuracy"], float)) for r in results["rounds"]]
    mean = np.array([s["mean"] for s in per_round])
    if band == "ci":
        lo, hi = (np.array([s["ci"][i] for s in per_round]) for i in (0, 1))
    else:
        std = np.array([s["std"] for s in per_round])
        lo, hi = mean - std, mean + std
    return x, mean, np.clip(lo, 0, 100), np.clip(hi, 0, 100)


def _draw_seeds(ax, x, results: dict, color, marked: bool) -> bool:
    """Every seed's accuracy as a dot at its round; a run flagged collapsed as a red x (named
    in the legend once). Returns whether a collapsed run has been marked so far."""
    for xi, r in zip(x, results["rounds"]):
        acc = 100 * np.asarray(r["accuracy"], float)
        bad = np.asarray(r.get("collapsed") or [False] * len(acc), bool)
        ax.scatter(np.full((~bad).sum(), xi), acc[~bad], s=6, color=color, alpha=0.5)
        if bad.any():
            name = None if marked else "collapsed run"
            ax.scatter(np.full(bad.sum(), xi), np.nan_to_num(acc[bad]), s=30, marker="x",
                       color="red", label=name, zorder=5)  # fmt: skip
            marked = True
    return marked


def plot_curves(
    path,
    runs: dict,
    title: str | None = None,
    upper: dict | None = None,
    band: str = "std",
    baseline: str | None = None,
    seeds: bool = True,
    inset: dict | None = None,
):
    """The learning-curve figure: accuracy (%) vs labelled images, per run its mean over seeds
    and a band (`curve_band`: "std" or the study's "ci"), every round it has.

    runs: label -> results.json dict; upper: label -> results.json of ``experiments.train``
    (supervised on the whole pool), drawn as dashed lines. baseline: a label of ``runs`` drawn
    on top in black and named so. seeds: also every seed as a dot, runs flagged collapsed as a
    red x, on the whole 0-100 % scale (without them the axis zooms to the curves). inset:
    label -> (labelled counts [T], DAL discriminator's held-out balanced accuracy [T]), drawn
    as a small panel. Writes a PNG of 640 x 420 pixels to ``path``.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=DPI)
    marked, colours = False, {}
    for label, res in runs.items():
        x, mean, lo, hi = curve_band(res, band)
        # The baseline on top, so a run equal to it does not hide it.
        style = {"linewidth": 2.2, "color": "black", "zorder": 3} if label == baseline else {}
        name = f"{label} (baseline)" if label == baseline else label
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=name, **style)
        colours[label] = line.get_color()
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
        if seeds:
            marked = _draw_seeds(ax, x, res, line.get_color(), marked)
    for label, res in (upper or {}).items():
        acc = 100 * np.asarray(res["accuracy"], float)
        ax.axhline(np.nanmean(acc), linestyle="--", color="black", linewidth=1, label=label)
    first = next(iter(runs.values()), {})
    default = {"std": f"{first.get('dataset', '')}, {first.get('seeds', '?')} seeds",
               "ci": f"{first.get('dataset', '')}: mean and 95 % CI over seeds"}  # fmt: skip
    ax.set_xlabel("labelled images")
    ax.set_ylabel("rectangle-metric accuracy (%)")
    if seeds:
        ax.set_ylim(-2, 102)
    ax.set_title(title or default[band])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left" if inset else "best")
    if inset:
        _disc_panel(ax, inset, colours)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _disc_panel(ax, inset: dict, colours: dict) -> None:
    """The small panel of DAL discriminators' held-out balanced accuracy per round, each in
    its curve's colour."""
    panel = ax.inset_axes([0.64, 0.07, 0.34, 0.3])
    for label, (x, y) in inset.items():
        y = [np.nan if v is None else v for v in y]
        panel.plot(x, y, marker="o", markersize=2, linewidth=1, label=label,
                   color=colours.get(label))  # fmt: skip
    panel.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    panel.set_ylim(0.3, 1.0)
    panel.set_title("discriminator, held-out balanced acc.", fontsize=6)
    panel.tick_params(labelsize=6)
    panel.legend(fontsize=5, loc="upper left")
