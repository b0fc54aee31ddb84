"""The figures of an active-learning study report (see `dal_jax.study_report`): study.png
(learning curves with 95 % confidence bands) and, per strategy, selected.png (what it picked).
matplotlib draws to files only (the Agg backend), so no display is needed.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np

from dal_jax.study_report import summary

DPI = 100


def _curve(res: dict):
    """results dict -> (labelled [T], mean [T], lo [T], hi [T]) in %, t-based 95 % CI."""
    x = np.array([r["labeled"] for r in res["rounds"]], float)
    stats = [summary(100 * np.array(r["accuracy"], dtype=float)) for r in res["rounds"]]
    mean = np.array([s["mean"] for s in stats])
    lo, hi = (np.clip(np.array([s["ci"][i] for s in stats]), 0, 100) for i in (0, 1))
    return x, mean, lo, hi


def plot(path, results: dict, baseline: str, upper: dict | None = None) -> None:
    """study.png: accuracy (%) vs labelled count per label (every round it has): the mean over
    seeds with a t-based 95 % CI band; the supervised upper bound as a dashed line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=DPI)
    for label, res in results.items():
        x, mean, lo, hi = _curve(res)
        is_base = label == baseline
        # The baseline on top, so a strategy equal to it does not hide it.
        style = {"linewidth": 2.2, "color": "black", "zorder": 3} if is_base else {}
        name = f"{label} (baseline)" if is_base else label
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=name, **style)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    if upper is not None:
        m = np.nanmean(100 * np.array(upper["accuracy"], dtype=float))
        name = f"supervised, all {upper.get('labeled', '?')} labelled"
        ax.axhline(m, linestyle="--", color="gray", linewidth=1, label=name)
    first = next(iter(results.values()), {})
    ax.set_xlabel("labelled images")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{first.get('dataset', '')}: mean and 95 % CI over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _selected_rows(results: dict, seed: int) -> list:
    """[(round record, selected pool indices [k], scores [k] or [])] of the rounds that chose."""
    rows = []
    for r in results["rounds"]:
        sel = (r.get("selected") or [])[seed : seed + 1]
        if sel and sel[0]:
            rows.append((r, sel[0], (r.get("selected_score") or [[]] * (seed + 1))[seed] or []))
    return rows


def plot_selected(path, images, results: dict, seed_index=0, max_per_round=10):
    """selected.png: one row per selection round, thumbnails (grayscale depth) of the images
    the strategy selected for seed ``seed_index``, titled with the selection score when known,
    else the pool index. At most ``max_per_round`` per row; the row label says "+N more".

    images: [N, H, W] (or [N, H, W, 1]) pool images. Returns (width_px, height_px).
    """
    imgs = np.asarray(images, float)
    imgs = imgs[..., 0] if imgs.ndim == 4 else imgs
    rows = _selected_rows(results, seed_index)
    n_rows = max(len(rows), 1)
    n_cols = max([min(len(s), max_per_round) for _, s, _ in rows] + [1])
    size = (1.3 * n_cols + 1.2, 1.5 * n_rows + 0.5)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=size, dpi=DPI, squeeze=False)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[], frame_on=False)
    for i, (r, sel, scores) in enumerate(rows):
        for j, idx in enumerate(sel[:max_per_round]):
            ax = axes[i, j]
            ax.imshow(imgs[int(idx)], cmap="gray")
            score = scores[j] if j < len(scores) else None
            ax.set_title(f"{score:.2f}" if score is not None else f"#{idx}", fontsize=8)
        more = f"\n+{len(sel) - max_per_round} more" if len(sel) > max_per_round else ""
        axes[i, 0].set_ylabel(f"round {r['round']}\n{r['labeled']} lab.{more}", fontsize=8)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no selections", ha="center", va="center")
    fig.suptitle(f"{results.get('strategy', '')}: selected images, seed {seed_index}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)  # no bbox_inches='tight': the size is figsize * dpi
    plt.close(fig)
    return round(size[0] * DPI), round(size[1] * DPI)
