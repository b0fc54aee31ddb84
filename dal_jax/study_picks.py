"""What each strategy of a study picked, and how many labels it saves against random sampling.

`pick_composition`: the object kinds, grasps and object sizes of the picked pool images against
the whole pool. `labels_saved`: how many labelled images random sampling needs to reach a
strategy's accuracy, read off random sampling's mean learning curve, with a paired bootstrap CI.
Only numpy; NaN is returned as None, so the results are JSON-ready.
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def _f(x):
    """A float, None for NaN/inf (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _shares(counts) -> np.ndarray:
    """[K] object counts -> [K] shares (NaN when there are no objects)."""
    c = np.asarray(counts, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return c / c.sum()


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
        share = _shares(np.asarray(pool_info["kinds"]).sum(0))
        rare = share < 1 / share.size
        names = list(pool_info.get("kind_names") or [str(i) for i in range(share.size)])
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
