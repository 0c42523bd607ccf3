"""Agreement between explanations of the same decision.

Two attribution methods agree when they order the units alike. twopath reports, for every pair
of methods: Spearman's and Kendall's rank correlation of the scores, the Jaccard overlap of their top-k units
by absolute score, and the share of units whose score has the same sign. A method always agrees
with itself (1, 1, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from twopath.metrics import kendall, sign_agreement, spearman, top_k_jaccard
from twopath.types import Attribution


def agreement_table(attributions: Sequence[Attribution], k: int = 3) -> pd.DataFrame:
    """One row per ordered pair of methods: Spearman, Kendall, top-k Jaccard, sign agreement."""
    rows: list[dict[str, Any]] = []
    for a in attributions:
        for b in attributions:
            if a.units != b.units:
                raise ValueError(f"{a.method} and {b.method} explain different units")
            rows.append({
                "method_a": a.method, "method_b": b.method,
                "spearman": spearman(a.scores, b.scores),
                "kendall": kendall(a.scores, b.scores),
                f"top{k}_jaccard": top_k_jaccard(a.scores, b.scores, k),
                "sign_agreement": sign_agreement(a.scores, b.scores),
            })
    return pd.DataFrame(rows)


def agreement_matrix(table: pd.DataFrame, value: str = "spearman") -> pd.DataFrame:
    return table.pivot(index="method_a", columns="method_b", values=value)
