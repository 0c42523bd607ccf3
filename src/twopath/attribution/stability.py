"""Stability of a sampled explanation: how much of LIME's answer is sampling noise?

LIME fits a weighted ridge regression to one random neighbourhood of the example; another
seed draws another neighbourhood and gives other coefficients. The stability table reports each
unit's mean ± standard deviation over replicates and the mean pairwise Jaccard overlap of the
replicates' top-k units.

**Bootstrap (the default, ``mode="bootstrap"``).** Rather than re-running LIME with new seeds
(new samples, each a model row once a sentence has more than 10 words), twopath keeps the one
neighbourhood LIME fitted — rows, outputs, kernel weights — and refits the same ridge regression
(``alpha = 1``, weighted, with intercept, as LIME does) on ``resamples`` bootstrap resamples of
its rows; the example's own row is kept in every resample, as LIME keeps it. A resample is a
vector of row counts, so every refit is one weighted least-squares solve on the same table, and
the whole check costs no model rows. The spread of the refits estimates the spread of LIME
across seeds at the same sample count (Efron's bootstrap of a regression estimator), which is
what the table has always meant; the mean is over refits.

``mode="seeds"`` re-runs LIME once per seed, as twopath did before (kept for comparison; on
long inputs it costs ``len(seeds)`` times LIME's samples in model rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from twopath.attribution.base import ATTRIBUTION_METHODS
from twopath.attribution.lime_ import LimeTable
from twopath.metrics import top_k_jaccard
from twopath.types import Attribution, Example, TwopathError

MODES = ("bootstrap", "seeds")
RIDGE_ALPHA = 1.0  # LIME's surrogate: sklearn Ridge(alpha=1, fit_intercept=True)


def stability(adapter: Any, example: Example, target: str, method: str = "lime",
              seeds: Sequence[int] = (0, 1, 2, 3, 4), k: int = 3, mode: str = "bootstrap",
              resamples: int = 100, fitted: tuple[Any, Attribution] | None = None, **settings: Any) -> dict[str, Any]:
    """Per-unit mean/sd and the mean top-k Jaccard of ``method`` across replicates.

    ``bootstrap``: one run with ``seeds[0]`` and ``resamples`` ridge refits on resampled rows;
    ``fitted`` is that run when the caller already made it, as ``(the Lime instance, its
    attribution)`` with the same seed, target and settings (the pipeline passes its own LIME
    run, so the check re-runs nothing: on a 256-token passage re-running LIME on its memoized
    rows was 20 CPU s); ``seeds``: one run per seed."""
    if mode not in MODES:
        raise TwopathError(f"unknown stability mode {mode!r}; expected one of {list(MODES)}")
    if not seeds:
        raise TwopathError("stability needs at least one seed")
    if mode == "seeds" or method != "lime":
        return _across_seeds(adapter, example, target, method, seeds, k, **settings)
    if resamples < 2:
        raise TwopathError("the LIME bootstrap needs resamples >= 2")
    if fitted is None:
        lime = ATTRIBUTION_METHODS.create("lime", seed=seeds[0], **settings)
        run = lime.attribute(adapter, example, target=target)
    else:
        lime, run = fitted
        if lime.seed != seeds[0] or run.target != target or lime._table is None:
            raise TwopathError(f"the fitted LIME run (seed {lime.seed}, target {run.target!r}) is not the "
                               f"bootstrap's (seed {seeds[0]}, target {target!r})")
    assert lime._table is not None  # set by every LIME fit
    scores = bootstrap_coefficients(lime._table, resamples, seed=seeds[0])
    report = _summary(method, list(run.units), scores, k)
    return {**report, "mode": "bootstrap", "seeds": [seeds[0]], "resamples": resamples,
            "num_samples": run.meta["budget"]["used"], "fit_r2": run.meta["fit_r2"]}


def _across_seeds(adapter: Any, example: Example, target: str, method: str, seeds: Sequence[int], k: int,
                  **settings: Any) -> dict[str, Any]:
    runs: list[Attribution] = [
        ATTRIBUTION_METHODS.create(method, seed=seed, **settings).attribute(adapter, example, target=target)
        for seed in seeds
    ]
    report = _summary(method, list(runs[0].units), np.vstack([r.scores for r in runs]), k)
    return {**report, "mode": "seeds", "seeds": list(seeds)}


def _summary(method: str, units: list[str], scores: np.ndarray, k: int) -> dict[str, Any]:
    """Per-unit mean and sd over replicate rows of ``scores``, and the mean pairwise top-k Jaccard."""
    pairs = [top_k_jaccard(a, b, k) for a, b in combinations(scores, 2)]
    sd = scores.std(0, ddof=1) if len(scores) > 1 else np.zeros(scores.shape[1])
    frame = pd.DataFrame({"unit": units, "mean": scores.mean(0), "sd": sd})
    return {
        "method": method, "k": k, "replicates": len(scores),
        "units": frame.to_dict(orient="records"),
        "top_k_jaccard": float(np.mean(pairs)) if pairs else 1.0,
        "max_sd": float(frame["sd"].max()),
    }


def resample_counts(n_rows: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_rows) bootstrap counts: row 0 (the example) once in every resample, the other
    rows drawn ``n_rows - 1`` times with replacement."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, n_rows))
    counts[:, 0] = 1.0
    if n_rows > 1:
        counts[:, 1:] = rng.multinomial(n_rows - 1, np.full(n_rows - 1, 1.0 / (n_rows - 1)), size=resamples)
    return counts


def weighted_ridge(data: np.ndarray, labels: np.ndarray, weights: np.ndarray, alpha: float = RIDGE_ALPHA) -> np.ndarray:
    """Coefficients of sklearn's ``Ridge(alpha).fit(data, labels, sample_weight=weights)``:
    centre by the weighted means, then solve ``(X'WX + alpha I) b = X'Wy``."""
    total = weights.sum()
    x_mean = weights @ data / total
    y_mean = weights @ labels / total
    xc, yc = data - x_mean, labels - y_mean
    gram = (xc * weights[:, None]).T @ xc + alpha * np.eye(data.shape[1])
    return np.linalg.solve(gram, (xc * weights[:, None]).T @ yc)


def bootstrap_coefficients(table: LimeTable, resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, n_units) LIME coefficients refitted on bootstrap resamples of ``table``."""
    counts = resample_counts(len(table.labels), resamples, seed)
    return np.vstack([weighted_ridge(table.data, table.labels, table.weights * c) for c in counts])
