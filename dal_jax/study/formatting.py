"""How a study report's numbers are written: JSON-ready for study.json (`_clean`: NaN -> None),
and in study.md and the terminal table as percentages, confidence intervals, p-values and
markdown tables ('—' for None or NaN). Shared by `dal_jax.study.report`,
`dal_jax.study.controls_report`, `dal_jax.study.picks` and `experiments.compare`
(`mean_std_table`); imports none of them.
"""

from __future__ import annotations

import math

import numpy as np


def _clean(x):
    """numpy scalars/arrays -> Python floats/lists, NaN -> None, so json.dump is exact."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_clean(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    return x


def _fmt(x, spec: str) -> str:
    """format(x, spec), '—' for None (NaN in a cleaned report) and NaN."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _pct(x, signed=False) -> str:
    """A fraction as percent with one decimal."""
    return _fmt(None if x is None else 100 * x, "+.1f" if signed else ".1f")


def _ci(ci, signed=False) -> str:
    return f"[{_pct(ci[0], signed)}, {_pct(ci[1], signed)}]"


def _p(r: dict) -> str:
    return _fmt(r["p"], ".3g")


def _pm(r: dict | None) -> str:
    """A {"mean", "std"} of fractions as "mean ± std" in percent; "" for None (no value)."""
    return "" if r is None else f"{_pct(r['mean'])} ± {_pct(r['std'])}"


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def _name(rep: dict, k: str) -> str:
    """A label as tables show it: controls are named so."""
    return f"{k} (control)" if k in rep.get("control_labels", ()) else k


def mean_std_table(head: list[str], rows: list[tuple[list[str], list]]) -> list[str]:
    """The lines of a markdown table of accuracies as mean ± std (%, one decimal).

    head: [C] column names; rows: (leading cells [k], summaries [C - k]), a summary being a
    dict with "mean" and "std" as fractions (None or NaN: '—'), or None for an empty cell
    (e.g. a run without that round).
    """
    return _md_table(head, [lead + [_pm(s) for s in cells] for lead, cells in rows])
