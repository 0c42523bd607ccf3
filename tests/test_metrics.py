"""The rank metrics: equal to scipy's, bit for bit, on the short vectors of one example."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from twopath.comparisons.faithfulness import distinct_rows
from twopath.metrics import average_ranks, spearman


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Scores with ties (rounded) or without, as one example's units give them."""
    x = rng.normal(size=n)
    return np.round(x, 1) if rng.random() < 0.5 else x


def test_average_ranks_equal_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        x = _vectors(rng, int(rng.integers(1, 40)))
        assert np.array_equal(average_ranks(x), rankdata(x))


def test_spearman_equals_scipy_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(500):
        n = int(rng.integers(2, 40))
        a, b = _vectors(rng, n), _vectors(rng, n)
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        assert spearman(a, b) == float(spearmanr(a, b).statistic)
        checked += 1
    assert checked > 400


def test_spearman_edge_cases() -> None:
    assert spearman(np.ones(4), np.ones(4)) == 1.0  # two equal constants agree
    assert spearman(np.ones(4), np.arange(4.0)) == 0.0  # a constant agrees with nothing else
    assert np.isnan(spearman(np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0])))
    assert spearman(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="one length"):
        spearman(np.arange(3.0), np.arange(4.0))


def test_distinct_rows_equal_numpy_unique() -> None:
    rng = np.random.default_rng(2)
    for _ in range(200):
        m, n = int(rng.integers(1, 50)), int(rng.integers(0, 70))
        pool = rng.random((max(1, m // 3), n)) < rng.random()
        keep = pool[rng.integers(0, len(pool), size=m)]
        rows, back = distinct_rows(keep)
        want_rows, want_back = np.unique(keep, axis=0, return_inverse=True)
        assert np.array_equal(rows, want_rows) and rows.shape == want_rows.shape
        assert np.array_equal(back, want_back.reshape(-1))
        assert np.array_equal(rows[back], keep)
