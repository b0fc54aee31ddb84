"""The figures of an active-learning study report (see `dal_jax.study.report`) but its
learning curves: per strategy selected.png (the images it picked), picks.png (what the picks
hold against the pool) and controls.png (whether the study can see a selection effect at all).
study.png is the learning-curve figure every run draws (`dal_jax.evaluation.plots.plot_curves`,
with 95 % confidence bands). matplotlib draws to files only (the Agg backend), so no display
is needed.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np

DPI = 100


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


# ---------------------------------------------------------------- picks and controls


def _pick_panels(picks: dict) -> list:
    """[(title, key, kind index or None, in %)] of the panels picks.png draws."""
    first = next(iter(picks.values()))
    panels = []
    if "kind_names" in first:
        rare = ", ".join(first["rare_kinds"]) or "none"
        panels.append((f"rare kinds ({rare}): share of objects", "rare_share", None, True))
        panels += [(f"kind {k}: share of objects", "kind_share", i, True)
                   for i, k in enumerate(first["kind_names"])]  # fmt: skip
    panels.append(("object pixels per picked image", "object_pixels", None, False))
    panels.append(("labelled grasps per picked image", "grasps", None, False))
    return [p for p in panels if p[1] in first["pool"]]


def _value(d: dict, key: str, i, pct: bool) -> float:
    v = d.get(key)
    v = v[i] if i is not None and v is not None else v
    return np.nan if v is None else (100 * v if pct else v)


def _bars(ax, picks: dict, key: str, i, pct: bool, controls=()) -> None:
    """Grouped bars: per selecting round (x, by its labelled count), one bar per label; the
    pool's value as a dashed line. controls: labels named "(control)"."""
    labels = list(picks)
    width = 0.8 / len(labels)
    # Placed by labelled count, so labels with fewer rounds still line up.
    counts = sorted({r["labeled"] for k in labels for r in picks[k]["rounds"]})
    at = {n: i for i, n in enumerate(counts)}
    for j, label in enumerate(labels):
        rounds = picks[label]["rounds"]
        x = np.array([at[r["labeled"]] for r in rounds]) + (j - (len(labels) - 1) / 2) * width
        name = f"{label} (control)" if label in controls else label
        ax.bar(x, [_value(r, key, i, pct) for r in rounds], width, label=name)
    ax.set_xticks(range(len(counts)), [str(n) for n in counts])
    pool = _value(next(iter(picks.values()))["pool"], key, i, pct)
    ax.axhline(pool, color="black", linestyle="--", linewidth=1, label="pool")


def plot_picks(path, rep: dict):
    """picks.png: what each label picked per selecting round against the pool (dashed line):
    the rare kinds' share of the picked objects and each kind's share (%) when the pool has
    kinds, mean object pixels and labelled grasps per picked image. rep: a study report with
    "picks". Returns (width_px, height_px)."""
    picks = rep.get("picks") or {}
    panels = _pick_panels(picks) if picks else []
    cols = min(max(len(panels), 1), 3)
    n_rows = max(-(-len(panels) // cols), 1)
    size = (4.2 * cols, 3.2 * n_rows)
    fig, axes = plt.subplots(n_rows, cols, figsize=size, dpi=DPI, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    for ax, (title, key, i, pct) in zip(axes.flat, panels):
        _bars(ax, picks, key, i, pct, rep.get("control_labels", ()))
        ax.set_title(title + (" (%)" if pct else ""), fontsize=9)
        ax.set_xlabel("labelled images when picking", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    if panels:
        axes.flat[0].legend(fontsize=7)
    else:
        axes[0, 0].text(0.5, 0.5, "no pick data", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return round(size[0] * DPI), round(size[1] * DPI)


def _control_points(c1: dict) -> list:
    """[(name, summary)] of control 1's accuracies: RS first and last, no new labels, doubled."""
    lo, hi = c1["labeled"]
    pts = [(f"RS at {lo}", c1["rs_first"]), (f"RS at {hi}", c1["rs_last"])]
    if c1["no_new_labels"] is not None:
        pts.append((f"no new labels\n({lo} labelled)", c1["no_new_labels"]))
    if c1["doubling"] is not None:
        pts.append((f"RS at {hi},\n2x steps", c1["doubling"]["doubled"]))
    return pts


def _errorbar(ax, x, mean, lo, hi, **kw) -> None:
    if mean is None:
        return
    lo, hi = (mean if v is None else v for v in (lo, hi))
    ax.errorbar([x], [mean], yerr=[[mean - lo], [hi - mean]], fmt="o", capsize=4, **kw)


def plot_controls(path, rep: dict):
    """controls.png: control 1's accuracies (%; mean, t-based 95 % CI) of RS at its first and
    last round, the no-new-labels run and RS's last round with twice the steps; control 2's
    AULC difference to RS (accuracy points, bootstrap 95 % CI) against 0. rep: a study report.
    Returns (width_px, height_px)."""
    c = rep["controls"]
    size = (9.0, 3.6)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=size, dpi=DPI, width_ratios=(2, 1))
    pts = _control_points(c["label_sensitivity"]) if c.get("label_sensitivity") else []
    for x, (_, s) in enumerate(pts):
        _errorbar(a1, x, *(None if v is None else 100 * v for v in (s["mean"], *s["ci"])))
    a1.set_xticks(range(len(pts)), [name for name, _ in pts], fontsize=8)
    a1.set_ylabel("accuracy (%)")
    a1.set_title("labels matter, rounds converged?", fontsize=9)
    a1.grid(alpha=0.3, axis="y")
    c2 = c.get("positive") or {}
    d = c2.get("diff")
    if d is not None:
        _errorbar(a2, 0, *(None if v is None else 100 * v for v in (d["mean"], *d["ci"])))
        a2.set_xticks([0], [f"{c2['name']} − {rep['baseline']}"], fontsize=8)
    else:
        a2.set_xticks([])
        why = (c2.get("why") if c2 else None) or "not run"
        a2.text(0.5, 0.5, f"positive control:\n{why}", ha="center", va="center", fontsize=8,
                transform=a2.transAxes)  # fmt: skip
    a2.axhline(0, color="black", linewidth=1)
    a2.set_ylabel("AULC difference (points)")
    a2.set_title("selection known to help seen?", fontsize=9)
    a2.grid(alpha=0.3, axis="y")
    outcome = {True: "controls pass", False: "a control FAILS: verdicts uninformative"}
    fig.suptitle(outcome.get(c.get("informative"), "no controls run"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return round(size[0] * DPI), round(size[1] * DPI)
