"""Agreement between explanations of the same decision.

Two attribution methods agree when they order the units alike. twopath reports, for every pair
of methods: Spearman's rank correlation of the scores, the Jaccard overlap of their top-k units
by absolute score, and the share of units whose score has the same sign. A method always agrees
with itself (1, 1, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from twopath.types import Attribution


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float(np.array_equal(a, b))
    return float(spearmanr(a, b).statistic)


def top_k_jaccard(a: np.ndarray, b: np.ndarray, k: int) -> float:
    k = min(k, len(a))
    top_a = set(np.argsort(-np.abs(a), kind="stable")[:k].tolist())
    top_b = set(np.argsort(-np.abs(b), kind="stable")[:k].tolist())
    return len(top_a & top_b) / len(top_a | top_b) if top_a | top_b else 1.0


def sign_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sign(a) == np.sign(b)))


def agreement_table(attributions: Sequence[Attribution], k: int = 3) -> pd.DataFrame:
    """One row per ordered pair of methods: spearman, top-k Jaccard, sign agreement."""
    rows: list[dict[str, Any]] = []
    for a in attributions:
        for b in attributions:
            if a.units != b.units:
                raise ValueError(f"{a.method} and {b.method} explain different units")
            rows.append({
                "method_a": a.method, "method_b": b.method,
                "spearman": spearman(a.scores, b.scores),
                f"top{k}_jaccard": top_k_jaccard(a.scores, b.scores, k),
                "sign_agreement": sign_agreement(a.scores, b.scores),
            })
    return pd.DataFrame(rows)


def agreement_matrix(table: pd.DataFrame, value: str = "spearman") -> pd.DataFrame:
    return table.pivot(index="method_a", columns="method_b", values=value)
