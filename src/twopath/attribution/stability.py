"""Stability of a sampled explanation across seeds.

LIME (and sampled SHAP) give a different answer for every seed. Rerunning with ``k`` seeds and
reporting each unit's mean ± standard deviation, and the mean pairwise Jaccard overlap of the
top-k units, says how much of an explanation is signal and how much is sampling noise. With the
shared evaluator the reruns are nearly free on short inputs: every LIME sample is a coalition
already in the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from twopath.attribution.base import ATTRIBUTION_METHODS
from twopath.metrics import top_k_jaccard
from twopath.types import Attribution, Example


def stability(adapter: Any, example: Example, target: str, method: str = "lime",
              seeds: Sequence[int] = (0, 1, 2, 3, 4), k: int = 3, **settings: Any) -> dict[str, Any]:
    """Run ``method`` once per seed; return per-unit mean/sd and the mean top-k Jaccard."""
    runs: list[Attribution] = [
        ATTRIBUTION_METHODS.create(method, seed=seed, **settings).attribute(adapter, example, target=target)
        for seed in seeds
    ]
    scores = np.vstack([r.scores for r in runs])
    pairs = [top_k_jaccard(a.scores, b.scores, k) for a, b in combinations(runs, 2)]
    frame = pd.DataFrame({"unit": list(runs[0].units), "mean": scores.mean(0), "sd": scores.std(0, ddof=1) if len(runs) > 1 else 0.0})
    return {
        "method": method, "seeds": list(seeds), "k": k,
        "units": frame.to_dict(orient="records"),
        "top_k_jaccard": float(np.mean(pairs)) if pairs else 1.0,
        "max_sd": float(frame["sd"].max()),
    }
