"""Budgets that follow the number of units, and LIME's stability from one neighbourhood (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from tests.tiny_models import CORPUS, build_tiny
from twopath.attribution import ATTRIBUTION_METHODS, lime_, shap_
from twopath.attribution.stability import (
    bootstrap_coefficients,
    resample_counts,
    stability,
    weighted_ridge,
)
from twopath.runtime.evaluator import evaluator_for
from twopath.runtime.text import HFTextClassifier
from twopath.types import Example, TwopathError

SEED = "The movie was surprisingly good, despite slow pacing."  # 8 words, as the seed sentence


def words(n: int) -> str:
    """A deterministic sentence of ``n`` words from the tiny models' corpus."""
    pool = " ".join(CORPUS).split()
    return " ".join(pool[:n])


@pytest.fixture(scope="module")
def bert() -> HFTextClassifier:
    model, tokenizer = build_tiny("bert")
    adapter = HFTextClassifier(model, tokenizer, name="tiny-bert")
    adapter.background = list(CORPUS[:6])
    return adapter


def _attr(adapter, name, text, **settings):
    return ATTRIBUTION_METHODS.create(name, **settings).attribute(adapter, Example("x", text), target="positive")


# --- the rules --------------------------------------------------------------------------------------


def test_lime_rule_keeps_the_seed_budget_and_stops_growing_with_length():
    assert [lime_.samples_rule(n) for n in (1, 8, 10)] == [5000] * 3  # free: exact SHAP's table holds them
    assert [lime_.samples_rule(n) for n in (11, 48, 50, 51, 190, 900)] == [1000] * 6
    assert lime_.samples_rule(40, positional=False) == 5000  # tables: an MLP row costs nothing


def test_lime_on_a_seed_length_sentence_is_not_capped(bert):
    result = _attr(bert, "lime", SEED)
    budget = result.meta["budget"]
    assert (budget["setting"], budget["used"], budget["full"], budget["capped"]) == ("num_samples", 5000, 5000, False)
    assert budget["error_name"] == "fit_r2" and budget["error"] == result.meta["fit_r2"]


def test_lime_on_a_long_sentence_is_capped_and_says_so(bert):
    result = _attr(bert, "lime", words(30))
    budget = result.meta["budget"]
    assert (budget["used"], budget["full"], budget["capped"]) == (1000, 5000, True)
    assert 0.0 <= budget["error"] <= 1.0 and budget["error"] == result.meta["fit_r2"]
    user = _attr(bert, "lime", words(30), num_samples=300).meta["budget"]
    assert (user["used"], user["capped"], user["rule"]) == (300, False, "set by the user")


def test_partition_full_evals_is_the_threshold_of_a_fully_expanded_tree():
    import shap

    rng = np.random.default_rng(0)
    for n in (3, 13, 24):
        tree = shap_.adjacent_word_tree(n)
        w = rng.normal(size=n)

        def f(m, w=w):
            return (m * w).sum(1) + m[:, 0] * m[:, -1]  # an interaction: nothing is free

        masker = shap.maskers.Partition(np.zeros((1, n)), clustering=tree)
        full = shap_.partition_full_evals(tree, n)
        shares = [shap_.unresolved_share(shap.explainers.Partition(f, masker)(np.ones((1, n)), max_evals=e, silent=True)
                                         .hierarchical_values, n) for e in (full - 1, full)]
        assert shares[0] > 0 and shares[1] == 0, (n, full, shares)


def test_shap_budget_exact_then_partition_then_capped(bert):
    exact = _attr(bert, "shap", SEED).meta["budget"]
    assert exact["setting"] == "coalitions" and exact["used"] == 2**8 and not exact["capped"]
    assert _attr(bert, "shap", words(10)).meta["algorithm"] == "exact"  # words: exact up to 10
    assert _attr(bert, "shap", words(11)).meta["algorithm"] == "partition"
    assert shap_.Shap().exact_limit(ordered=False) == 12 and shap_.Shap(exact_max_units=11).exact_limit(True) == 11
    short = _attr(bert, "shap", words(20))
    assert short.meta["algorithm"] == "partition"
    assert short.meta["budget"]["full"] == shap_.partition_full_evals(shap_.adjacent_word_tree(20), 20) <= 500
    assert not short.meta["budget"]["capped"] and short.meta["budget"]["error"] == 0.0
    long = _attr(bert, "shap", words(30))
    budget = long.meta["budget"]
    assert budget["used"] == 500 and budget["full"] == shap_.partition_full_evals(shap_.adjacent_word_tree(30), 30) > 500
    assert budget["capped"] and budget["error"] > 0
    f_x = evaluator_for(bert, Example("x", words(30)), bert.label_index("positive")).full()
    assert long.base_value + long.scores.sum() == pytest.approx(f_x, abs=1e-4)  # additive whatever the cap
    user = _attr(bert, "shap", words(30), max_evals=300).meta["budget"]
    assert user["rule"] == "set by the user" and user["used"] == 300


def test_ig_budget_is_capped_when_max_steps_stops_the_doubling(bert):
    capped = _attr(bert, "integrated_gradients", words(20), n_steps=1, max_steps=1, max_delta=1e-9).meta
    assert capped["budget"]["capped"] and capped["budget"]["used"] == 1 and capped["budget"]["full"] == 2
    assert capped["budget"]["error"] == capped["completeness_delta"] > 1e-9
    easy = _attr(bert, "integrated_gradients", words(20), max_delta=1e6).meta["budget"]
    assert not easy["capped"] and easy["used"] == 32


def test_ig_counts_the_rows_of_every_doubling(bert):
    meta = _attr(bert, "integrated_gradients", words(20), n_steps=2, max_steps=8, max_delta=1e-12).meta
    assert meta["n_steps"] == 8
    assert meta["n_model_rows"] == meta["n_evals"] == 2 + 4 + 8  # each doubling is a new integral


# --- stability from one neighbourhood ----------------------------------------------------------------


def test_lime_table_refit_reproduces_lime(bert):
    method = ATTRIBUTION_METHODS.create("lime", seed=3)
    result = method.attribute(bert, Example("t", words(16)), target="positive")
    table = method._table
    assert table is not None and table.data.shape == (lime_.samples_rule(16), 16)
    assert np.allclose(weighted_ridge(table.data, table.labels, table.weights), result.scores, atol=1e-8)


def test_bootstrap_equals_the_naive_refits_on_duplicated_rows(bert):
    method = ATTRIBUTION_METHODS.create("lime", seed=0, num_samples=300)
    method.attribute(bert, Example("t", words(16)), target="positive")
    table = method._table
    counts = resample_counts(len(table.labels), 7, seed=5)
    assert (counts[:, 0] == 1).all() and (counts.sum(1) == len(table.labels)).all()
    fast = bootstrap_coefficients(table, 7, seed=5)
    for c, coef in zip(counts, fast, strict=True):
        rows = np.repeat(np.arange(len(c)), c.astype(int))  # the resample as a list of rows
        naive = Ridge(alpha=1, fit_intercept=True).fit(table.data[rows], table.labels[rows], sample_weight=table.weights[rows])
        assert np.allclose(coef, naive.coef_, atol=1e-8)


def test_bootstrap_stability_is_seeded_and_costs_no_model_rows(bert):
    example = Example("s", words(16))
    ATTRIBUTION_METHODS.create("lime", seed=0).attribute(bert, example, target="positive")  # the pipeline's run
    ev = evaluator_for(bert, example, bert.label_index("positive"))
    rows = ev.n_evaluated
    first = stability(bert, example, "positive", seeds=(0,), resamples=20)
    assert ev.n_evaluated == rows  # every sample was already in the memo
    assert first == stability(bert, example, "positive", seeds=(0,), resamples=20)
    assert first["mode"] == "bootstrap" and first["replicates"] == 20 and first["num_samples"] == lime_.samples_rule(16)
    sd = np.array([u["sd"] for u in first["units"]])
    assert (sd > 0).all() and first["max_sd"] == pytest.approx(sd.max())
    old = stability(bert, example, "positive", seeds=(0, 1, 2), mode="seeds")
    assert old["mode"] == "seeds" and old["replicates"] == 3
    with pytest.raises(TwopathError, match="unknown stability mode"):
        stability(bert, example, "positive", mode="jackknife")


def test_bootstrap_of_a_fitted_run_equals_a_fresh_one_and_checks_it_is_the_same_run(bert, monkeypatch):
    example = Example("f", words(14))
    method = ATTRIBUTION_METHODS.create("lime", seed=0, num_samples=200)
    run = method.attribute(bert, example, target="positive")
    fresh = stability(bert, example, "positive", seeds=(0, 1), resamples=15, num_samples=200)
    with monkeypatch.context() as patch:  # with the fitted run, LIME is not run again
        patch.setattr(lime_.Lime, "_text", lambda *a, **k: pytest.fail("LIME ran again"))
        reused = stability(bert, example, "positive", seeds=(0, 1), resamples=15, fitted=(method, run), num_samples=200)
    assert reused == fresh
    with pytest.raises(TwopathError, match="not the bootstrap's"):
        stability(bert, example, "positive", seeds=(1,), resamples=15, fitted=(method, run))
    with pytest.raises(TwopathError, match="not the bootstrap's"):
        stability(bert, example, "negative", seeds=(0,), resamples=15, fitted=(method, run))
