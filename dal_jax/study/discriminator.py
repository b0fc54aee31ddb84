"""Whether a DAL discriminator can tell labelled from unlabelled images, per round: the part of
the study report that shows it.

`report_part` reads the per-run diagnostics DAL writes after each round's training
(`dal_jax.strategies.dal.discriminator_report`: balanced accuracy on the held-out share of the
pool it never trained on, on the images it trained on, mean P(labelled) on held-out labelled and
unlabelled images) and sets beside them the share of rare kinds among the round's picks (from
the study's "picks" part, where the pool has kinds). `markdown` writes the section of study.md.
"""

from __future__ import annotations

import math

from dal_jax.evaluation import stats
from dal_jax.study.formatting import _fmt, _md_table, _name, _pct

KEYS = ("disc_acc", "disc_acc_train", "p_labelled", "p_unlabelled")
#: A discriminator at least this good on held-out images "discriminates".
GOOD = 0.75


INTRO = (
    "After each round's training: the discriminator's balanced accuracy at p = 0.5 on the "
    "held-out share of the pool it never trained on (0.5 = a coin; in brackets the seeds with "
    "a held-out image of both sets) and on the images it trained on, its mean P(labelled) on "
    "held-out labelled and unlabelled images, and the share of rare kinds among the picks that "
    f"round's scores made. A held-out balanced accuracy of {GOOD:.2f} or more counts as "
    "discriminating."
)


def _summary(values) -> dict:
    s = stats.summary([float("nan") if v is None else v for v in values])
    return {"mean": s["mean"], "std": s["std"], "n": s["n"]}


def report_part(results: dict, picks: dict | None = None) -> dict:
    """label -> per round {"round", "labeled", "disc_acc", "disc_acc_train", "p_labelled",
    "p_unlabelled" (each {"mean", "std", "n"} over seeds), "rare_share" (of the picks made
    after that round's training; None without kinds)}, for every label whose rounds carry the
    discriminator's diagnostics; "pool_rare_share" per label when the pool has kinds."""
    out = {}
    for label, res in results.items():
        rounds = [r for r in res["rounds"] if "disc_acc" in r.get("diagnostics", {})]
        if not rounds:
            continue
        pk = (picks or {}).get(label) or {}
        rare = {p["round"]: p.get("rare_share") for p in pk.get("rounds", [])}
        rows = []
        for r in rounds:
            d = r["diagnostics"]
            row = {"round": r["round"], "labeled": r["labeled"]}
            row.update({k: _summary(d[k]) for k in KEYS if k in d})
            row["rare_share"] = rare.get(r["round"])
            rows.append(row)
        out[label] = {"rounds": rows, "pool_rare_share": pk.get("pool", {}).get("rare_share")}
    return out


def _mean(s: dict | None) -> float:
    """The mean of a summary, -inf when there is none (NaN compares false)."""
    m = None if s is None else s.get("mean")
    return float("-inf") if m is None or math.isnan(m) else m


def _cell(s: dict | None) -> str:
    if s is None or s["n"] == 0:
        return "—"
    return f"{_fmt(s['mean'], '.2f')} ± {_fmt(s['std'], '.2f')} ({s['n']})"


def markdown(rep: dict) -> list[str]:
    """The "Can DAL's discriminator tell the sets apart?" section (empty without one)."""
    part = rep.get("discriminator")
    if not part:
        return []
    out = ["## Can DAL's discriminator tell labelled from unlabelled images?", "", INTRO, ""]
    for label, d in part.items():
        rows = [
            [
                str(r["labeled"]), _cell(r.get("disc_acc")), _cell(r.get("disc_acc_train")),
                _cell(r.get("p_labelled")), _cell(r.get("p_unlabelled")),
                "—" if r["rare_share"] is None else _pct(r["rare_share"]),
            ]
            for r in d["rounds"]
        ]  # fmt: skip
        head = ["labelled", "held-out bal. acc.", "trained-on bal. acc.", "p (labelled)",
                "p (unlabelled)", "rare kinds in picks (%)"]  # fmt: skip
        out += [f"### {_name(rep, label)}", ""] + _md_table(head, rows) + [""]
        good = [r["labeled"] for r in d["rounds"] if _mean(r.get("disc_acc")) >= GOOD]
        words = (
            f"It discriminates (mean held-out balanced accuracy >= {GOOD:.2f}) at "
            f"{', '.join(map(str, good))} labelled."
            if good
            else f"It does not discriminate at any round (held-out balanced accuracy < {GOOD:.2f})."
        )
        if d["pool_rare_share"] is not None:
            words += f" The pool's rare-kind share is {_pct(d['pool_rare_share'])} %."
        out += [words, ""]
    return out
