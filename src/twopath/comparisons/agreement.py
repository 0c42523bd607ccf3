"""Agreement between explanations of the same decision.

Two attribution methods agree when they order the units alike. twopath reports, for every pair
of methods: Spearman's and Kendall's rank correlation of the scores, the Jaccard overlap of their top-k units
by absolute score, and the share of units whose score has the same sign. A method always agrees
with itself (1, 1, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from twopath.metrics import kendall, sign_agreement, spearman, top_k_jaccard
from twopath.types import Attribution, Localization


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


def internal_agreement(localizations: Sequence[Localization], min_shared: int = 3) -> pd.DataFrame:
    """Agreement between internal-path methods on the components both measured.

    Ablation effects (output drop), exact patching and attribution patching (normalized output)
    are on different scales, so only rank (Spearman) and linear (Pearson) correlation are given.
    Pairs sharing fewer than ``min_shared`` components are skipped.
    """
    from scipy.stats import pearsonr

    rows: list[dict[str, Any]] = []
    for i, a in enumerate(localizations):
        for b in localizations[i + 1 :]:
            effects_b = dict(zip(b.labels, b.oriented, strict=True))
            shared = [(e, effects_b[label]) for label, e in zip(a.labels, a.oriented, strict=True) if label in effects_b]
            if len(shared) < min_shared:
                continue
            x, y = np.array(shared).T
            kinds = sorted({c.kind for c in a.components if str(c) in effects_b})
            rows.append({"method_a": a.method, "method_b": b.method, "sites": ",".join(kinds), "n": len(shared),
                         "spearman": spearman(x, y),
                         "pearson": float(pearsonr(x, y).statistic) if np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")})
    return pd.DataFrame(rows, columns=["method_a", "method_b", "sites", "n", "spearman", "pearson"])
