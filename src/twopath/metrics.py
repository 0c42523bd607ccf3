"""Small rank metrics shared by the rooms (agreement, stability, bridges)."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> set[int]:
    """Indices of the ``k`` largest absolute scores (ties broken by position)."""
    return set(np.argsort(-np.abs(np.asarray(scores)), kind="stable")[: min(k, len(scores))].tolist())


def top_k_jaccard(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Jaccard overlap of the top-``k`` units by absolute score."""
    top_a, top_b = top_k(a, k), top_k(b, k)
    union = top_a | top_b
    return len(top_a & top_b) / len(union) if union else 1.0


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; two constant vectors agree only if equal."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float(np.array_equal(a, b))
    return float(spearmanr(a, b).statistic)


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float(np.array_equal(a, b))
    return float(kendalltau(a, b).statistic)


def sign_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sign(a) == np.sign(b)))
