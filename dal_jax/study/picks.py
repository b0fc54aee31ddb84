"""What each strategy of a study picked, and how many labels it saves against random sampling.

`pick_composition`: the object kinds, grasps and object sizes of the picked pool images against
the whole pool. `labels_saved`: how many labelled images random sampling needs to reach a
strategy's accuracy, read off random sampling's mean learning curve, with a paired bootstrap CI.
Only numpy; NaN is returned as None, so the results are JSON-ready. `markdown`: the two sections
of study.md that show them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from dal_jax.study.formatting import _fmt, _md_table, _name, _pct


def _f(x):
    """A float, None for NaN/inf (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _shares(counts) -> np.ndarray:
    """[K] object counts -> [K] shares (NaN when there are no objects)."""
    c = np.asarray(counts, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return c / c.sum()


def rare_kinds(kinds) -> np.ndarray:
    """kinds [N, K] object counts per pool image -> [K] bool: the kinds whose share of the
    pool's objects is below 1/K (a pool without objects has none)."""
    share = _shares(np.asarray(kinds).sum(0))
    with np.errstate(invalid="ignore"):
        return share < 1 / share.size


# ---------------------------------------------------------------- composition


def _picks(r: dict) -> tuple[np.ndarray, int]:
    """A round record -> (all seeds' picked pool indices pooled [n], seeds that picked)."""
    sel = [s for s in (r.get("selected") or []) if s]
    idx = np.concatenate([np.asarray(s, int) for s in sel]) if sel else np.zeros(0, int)
    return idx, len(sel)


def _describe(idx, pool_info: dict, rare) -> dict:
    """Composition of the pool images ``idx`` [n] (repeats count again): kind shares [K] among
    their objects, the share of the rare kinds ([K] bool), mean grasps and object pixels."""
    out = {}
    kinds = pool_info.get("kinds")
    if kinds is not None:
        share = _shares(np.asarray(kinds)[idx].sum(0))
        out["kind_share"] = [_f(v) for v in share]
        out["rare_share"] = _f(share[rare].sum()) if np.isfinite(share).all() else None
    for key in ("grasps", "object_pixels"):
        v = pool_info.get(key)
        if v is not None:
            out[key] = _f(np.asarray(v, float)[idx].mean()) if len(idx) else None
    return out


def pick_composition(results_for_label: dict, pool_info: dict) -> dict:
    """The composition of one label's picks per selecting round, over all seeds' picks pooled.

    results_for_label: a results.json dict (rounds with "selected" [S][k] pool indices);
    pool_info: {"kind_names": [K] or None, "kinds": [N, K] object counts per pool image or None,
    "grasps": [N] labelled grasps per pool image, "object_pixels": [N]}. Returns {"kind_names",
    "rare_kinds": the kinds whose pool share is below 1/K, "pool": the composition of all N
    images, "rounds": [{"round", "labeled", "picked" (images, pooled), "seeds", "kind_share" [K],
    "rare_share", "grasps", "object_pixels"}]}; the kind parts only when kinds are given.
    """
    out, rare = {}, None
    if pool_info.get("kinds") is not None:
        rare = rare_kinds(pool_info["kinds"])
        names = list(pool_info.get("kind_names") or [str(i) for i in range(rare.size)])
        out = {"kind_names": names, "rare_kinds": [k for k, r in zip(names, rare) if r]}
    n = _pool_size(pool_info)
    out["pool"] = {"images": n, **_describe(np.arange(n), pool_info, rare)}
    out["rounds"] = []
    for r in results_for_label["rounds"]:
        idx, seeds = _picks(r)
        if seeds:
            head = {"round": r["round"], "labeled": r["labeled"], "picked": int(idx.size),
                    "seeds": seeds}  # fmt: skip
            out["rounds"].append({**head, **_describe(idx, pool_info, rare)})
    return out


def _pool_size(pool_info: dict) -> int:
    """N, the pool images, from whichever per-image array is given."""
    given = [pool_info.get(k) for k in ("kinds", "grasps", "object_pixels")]
    return len(next(v for v in given if v is not None))


# ---------------------------------------------------------------- labels saved


def _inverse(curve, x, y):
    """Labels at which each curve first reaches y, by linear interpolation.

    curve: [B, T] increasing (running maxima) accuracies at labelled counts x [T]; y: [B].
    Returns (needed [B], flag [B]): flag 0 found, -1 below the first point, 1 above the best,
    2 no accuracy (needed NaN unless flag 0).
    """
    reach = curve >= y[:, None]  # [B, T]
    j = np.argmax(reach, axis=1)  # the first round at or above y
    j0 = np.maximum(j - 1, 0)
    rows = np.arange(len(y))
    c0, c1 = curve[rows, j0], curve[rows, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(j == 0, 1.0, (y - c0) / (c1 - c0))
    needed = x[j0] + frac * (x[j] - x[j0])
    flag = np.where(y < curve[:, 0], -1, np.where(reach.any(1), 0, 1))
    flag = np.where(np.isnan(y) | np.isnan(curve[:, 0]), 2, flag)
    return np.where(flag == 0, needed, np.nan), flag


def _means(acc, idx):
    """acc [S, T], seed indices [B, S] -> [B, T] mean curves over the resampled seeds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a round no seed has is NaN, as meant
        return np.nanmean(acc[idx], axis=1)


FLAGS = {0: None, -1: "below", 1: "above", 2: "missing"}


def labels_saved(rs_acc, acc, labeled, n_boot, seed) -> list[dict]:
    """Labels random sampling (RS) needs to reach a strategy's mean accuracy, per round.

    rs_acc: [S, T] RS accuracies, acc: [S', T] the strategy's, on the same labelled counts
    labeled [T]; paired by seed index (the first min(S, S') seeds). RS's mean curve is made
    increasing by its running maximum and inverted by linear interpolation. Per round: labeled,
    accuracy (the strategy's mean), needed (None when the strategy is below RS's first point,
    flag "below", or above RS's best, flag "above": RS needs more than labeled[-1]), saved =
    needed - labeled (> 0: the strategy saves labels), ci: 2.5/97.5 percentiles of saved over a
    paired bootstrap of seeds (replicates where it is defined), censored and below: the fractions
    of replicates above RS's best and below its first point, n: seeds paired.
    """
    x = np.asarray(labeled, float)
    s = min(len(rs_acc), len(acc))
    rs, st = np.asarray(rs_acc, float)[:s], np.asarray(acc, float)[:s]
    idx = np.concatenate(
        [np.arange(s)[None], np.random.default_rng(seed).integers(0, max(s, 1), (n_boot, s))]
    )
    rs_m, st_m = _means(rs, idx), _means(st, idx)  # [1 + B, T]; row 0 the observed seeds
    curve = np.fmax.accumulate(rs_m, axis=1)  # NaN rounds keep the maximum so far
    out = []
    for t, n in enumerate(labeled):
        needed, flag = _inverse(curve, x, st_m[:, t])
        saved = needed - n
        ok = flag[1:] == 0
        ci = np.percentile(saved[1:][ok], [2.5, 97.5]) if ok.any() else [np.nan, np.nan]
        out.append({"labeled": int(n), "accuracy": _f(st_m[0, t]), "needed": _f(needed[0]),
                    "flag": FLAGS[int(flag[0])], "saved": _f(saved[0]), "ci": [_f(v) for v in ci],
                    "censored": _f(np.mean(flag[1:] == 1)), "below": _f(np.mean(flag[1:] == -1)),
                    "n": s})  # fmt: skip
    return out


def saved_part(acc: dict, baseline: str, labeled, n_boot, seed) -> dict:
    """study.json's "labels_saved": label -> `labels_saved` against the baseline, for every label
    but the baseline. acc: label -> [S, T] accuracies on ``labeled``."""
    return {
        k: labels_saved(acc[baseline], a, labeled, n_boot, seed)
        for k, a in acc.items()
        if k != baseline
    }


# ---------------------------------------------------------------- text


def _share_cells(d: dict, kinds: bool) -> list[str]:
    cells = [_pct(v) for v in d.get("kind_share", [])] + (
        [_pct(d.get("rare_share"))] if kinds else []
    )
    return cells + [_fmt(d.get("grasps"), ".2f"), _fmt(d.get("object_pixels"), ".0f")]


def _md_picks(rep: dict) -> list[str]:
    """Per label, per selecting round: the kind shares (%), grasps and object pixels per picked
    image, against the pool."""
    if not rep.get("picks"):
        return []
    intro = (
        "Shares of the object kinds among the objects in the picked images (%, all seeds' picks "
        "pooled), mean labelled grasps and object pixels per picked image; the first row is the "
        "whole pool."
    )
    out = ["## What each strategy picked", "", intro, ""]
    for k, pk in rep["picks"].items():
        kinds = "kind_names" in pk
        head = ["labelled", "images"] + pk.get("kind_names", [])
        head += (["rare kinds"] if kinds else []) + ["grasps / image", "object px / image"]
        rows = [["pool", str(pk["pool"]["images"])] + _share_cells(pk["pool"], kinds)]
        rows += [
            [str(r["labeled"]), str(r["picked"])] + _share_cells(r, kinds) for r in pk["rounds"]
        ]
        out += [f"### {_name(rep, k)}", ""] + _md_table(head, rows) + [""]
        if kinds:
            out += [
                f"Rare kinds (pool share below 1/K): {', '.join(pk['rare_kinds']) or 'none'}.",
                "",
            ]
    return out


def _needed(r: dict, labeled: list[int]) -> str:
    if r["flag"] == "above":
        return f"more than {labeled[-1]}"
    if r["flag"] == "below":
        return f"fewer than {labeled[0]}"
    return _fmt(r["needed"], ".0f")


def _saved(r: dict, labeled: list[int]) -> str:
    """Labels saved with its CI; beyond the baseline's best only a lower bound, because the CI
    over the replicates that stayed within its range would be biased low."""
    if r["flag"] == "above":
        return f"more than {labeled[-1] - r['labeled']:+d}"
    return f"{_fmt(r['saved'], '+.0f')} [{_fmt(r['ci'][0], '+.0f')}, {_fmt(r['ci'][1], '+.0f')}]"


def _md_saved(rep: dict) -> list[str]:
    """Per label and round: how many labels random sampling needs for the same accuracy."""
    if not rep.get("labels_saved"):
        return []
    base, labeled = rep["baseline"], rep["labeled"]
    intro = (
        f"Labelled images {base} needs to reach each strategy's mean accuracy (read off {base}'s "
        "mean curve, made increasing, by linear interpolation); saved = needed − labelled, > 0: "
        "fewer labels; paired bootstrap 95 % CI over seeds, and the share of bootstrap replicates "
        f"above {base}'s best (censored)."
    )
    out = ["## Labels saved against random sampling", "", intro, ""]
    rows = [
        [_name(rep, k), str(r["labeled"]), _pct(r["accuracy"]), _needed(r, labeled),
         _saved(r, labeled), f"{_pct(r['censored'])} %"]
        for k, rs in rep["labels_saved"].items()
        for r in rs
    ]  # fmt: skip
    head = ["strategy", "labelled", "accuracy (%)", f"{base} needs", "saved [95 % CI]",
            "replicates censored"]  # fmt: skip
    return out + _md_table(head, rows) + [""]


def markdown(rep: dict) -> list[str]:
    """The lines of study.md's sections on what each strategy picked and the labels it saves
    (none when the report has neither)."""
    return _md_picks(rep) + _md_saved(rep)
