"""How a study report's numbers are written: JSON-ready for study.json (`_clean`: NaN -> None),
and in study.md and the terminal table as percentages, confidence intervals, p-values and
markdown tables ('—' for None). Shared by `dal_jax.study.report`, `dal_jax.study.controls_report` and
`dal_jax.study.picks`; imports none of them.
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
    """format(x, spec), '—' for None (NaN in the report)."""
    return "—" if x is None else format(x, spec)


def _pct(x, signed=False) -> str:
    """A fraction as percent with one decimal."""
    return _fmt(None if x is None else 100 * x, "+.1f" if signed else ".1f")


def _ci(ci, signed=False) -> str:
    return f"[{_pct(ci[0], signed)}, {_pct(ci[1], signed)}]"


def _p(r: dict) -> str:
    return _fmt(r["p"], ".3g")


def _pm(r: dict) -> str:
    return f"{_pct(r['mean'])} ± {_pct(r['std'])}"


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def _name(rep: dict, k: str) -> str:
    """A label as tables show it: controls are named so."""
    return f"{k} (control)" if k in rep.get("control_labels", ()) else k
