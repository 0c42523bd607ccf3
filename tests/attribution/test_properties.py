"""Properties the input-path methods must satisfy: completeness, additivity, exactness, seeds, ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import clear_evaluators, linear_adapter, tabular_output, text_output
from twopath.attribution import ATTRIBUTION_METHODS, shap_
from twopath.datasets import loan, sentiment
from twopath.runtime.evaluator import evaluator_for
from twopath.types import Example

SEED_TEXT = Example(sentiment.SEED_EXAMPLE_ID, sentiment.SEED_SENTENCE)
SEED_ROW = Example(loan.SEED_EXAMPLE_ID, dict(loan.SEED_APPLICANT))


def _ig(**settings):
    return ATTRIBUTION_METHODS.create("integrated_gradients", **settings)


def _shap(**settings):
    return ATTRIBUTION_METHODS.create("shap", **settings)


# --- Integrated Gradients: completeness -----------------------------------------------------------

def _assert_complete(result, f_x: float) -> None:
    gap = f_x - result.base_value
    assert abs(gap) > 1e-6
    assert abs(result.scores.sum() - gap) <= 0.01 * abs(gap) + 1e-6
    assert result.meta["completeness_delta"] <= 0.01 or result.meta["n_steps"] >= 512


def test_ig_completeness_text(tiny_sentiment):
    result = _ig().attribute(tiny_sentiment, SEED_TEXT, target="positive")
    _assert_complete(result, text_output(tiny_sentiment, sentiment.SEED_SENTENCE))
    # base_value is f(baseline): every word token replaced by the pad token, specials kept
    inp = tiny_sentiment.encode(sentiment.SEED_SENTENCE)
    with torch.no_grad():
        logits = tiny_sentiment.model(input_ids=tiny_sentiment.baseline_ids(inp, "pad"),
                                      attention_mask=inp.attention_mask).logits
    assert result.base_value == pytest.approx(float(logits[0, 1] - logits[0, 0]), abs=1e-4)


@pytest.mark.parametrize("baseline", ["mask", "zero"])
def test_ig_completeness_other_text_baselines(tiny_sentiment, baseline):
    result = _ig(baseline=baseline).attribute(tiny_sentiment, SEED_TEXT, target="negative")
    _assert_complete(result, text_output(tiny_sentiment, sentiment.SEED_SENTENCE, target=0))
    assert result.meta["baseline"] == baseline


def test_ig_completeness_on_tiny_architectures(tiny_text):
    result = _ig().attribute(tiny_text, SEED_TEXT, target="positive")
    f_x = text_output(tiny_text, sentiment.SEED_SENTENCE)
    gap = f_x - result.base_value
    assert abs(result.scores.sum() - gap) <= 0.01 * abs(gap) + 1e-6


def test_ig_completeness_tabular(loan_adapter, loan_background):
    result = _ig().attribute(loan_adapter, SEED_ROW, target="approved")
    _assert_complete(result, float(tabular_output(loan_adapter, loan.SEED_APPLICANT)[0]))
    mean_row = loan_adapter.transform(loan_background).mean(0, keepdim=True)
    with torch.no_grad():
        logits = loan_adapter.model(mean_row)
    assert result.base_value == pytest.approx(float(logits[0, 1] - logits[0, 0]), abs=1e-4)


def test_ig_with_a_row_baseline(loan_adapter):
    result = _ig(baseline=dict(loan.CONTRAST_APPLICANT)).attribute(loan_adapter, SEED_ROW, target="approved")
    f = tabular_output(loan_adapter, [loan.SEED_APPLICANT, loan.CONTRAST_APPLICANT])
    _assert_complete(result, float(f[0]))
    assert result.base_value == pytest.approx(float(f[1]), abs=1e-4)
    # the two rows differ only in credit score: every other feature gets exactly nothing
    others = [i for i, u in enumerate(result.units) if u != "credit_score"]
    assert np.allclose(result.scores[others], 0.0, atol=1e-7)
    assert result.scores[result.units.index("credit_score")] == pytest.approx(f[0] - f[1], rel=0.01)


# --- SHAP: additivity --------------------------------------------------------------------------

def test_shap_exact_additivity_tabular(loan_adapter, loan_background):
    result = _shap(algorithm="exact").attribute(loan_adapter, SEED_ROW, target="approved")
    target = loan_adapter.label_index("approved")
    f_x = evaluator_for(loan_adapter, SEED_ROW, target, "logit_diff").full()
    assert f_x == pytest.approx(float(tabular_output(loan_adapter, loan.SEED_APPLICANT)[0]), abs=1e-5)
    assert result.base_value + result.scores.sum() == pytest.approx(f_x, abs=1e-4)
    # base value: mean output over the (first 50 rows of the) background
    expected_base = tabular_output(loan_adapter, loan_background.iloc[:50]).mean()
    assert result.base_value == pytest.approx(float(expected_base), abs=1e-4)


@pytest.mark.parametrize("algorithm", ["auto", "partition", "exact"])
def test_shap_additivity_text(tiny_sentiment, algorithm):
    result = _shap(algorithm=algorithm).attribute(tiny_sentiment, SEED_TEXT, target="positive")
    ev = evaluator_for(tiny_sentiment, SEED_TEXT, 1, "logit_diff")
    f_x = ev.full()
    assert f_x == pytest.approx(text_output(tiny_sentiment, sentiment.SEED_SENTENCE), abs=1e-4)
    assert result.base_value + result.scores.sum() == pytest.approx(f_x, abs=1e-4)
    assert result.base_value == pytest.approx(ev.empty(), abs=1e-4)


def test_shap_partition_and_exact_agree_on_what_matters(tiny_sentiment):
    exact = _shap(algorithm="exact").attribute(tiny_sentiment, SEED_TEXT, target="positive")
    owen = _shap(algorithm="partition").attribute(tiny_sentiment, SEED_TEXT, target="positive")
    assert exact.base_value == pytest.approx(owen.base_value, abs=1e-5)
    assert np.corrcoef(exact.scores, owen.scores)[0, 1] > 0.8


# --- exactness on a linear model -----------------------------------------------------------------

W = np.array([1.5, -2.0, 0.5, 3.0])
X = {"x0": 0.7, "x1": -1.2, "x2": 2.0, "x3": 0.3}


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    background = pd.DataFrame(rng.normal(0.5, 1.0, size=(40, len(W))), columns=[f"x{i}" for i in range(len(W))])
    adapter = linear_adapter(W, background)
    x = np.array(list(X.values()))
    expected = W * (x - background.to_numpy().mean(0))
    return adapter, expected


def test_linear_adapter_is_linear(linear):
    adapter, _ = linear
    rows = [X, {k: -v for k, v in X.items()}, {k: 0.0 for k in X}]
    out = tabular_output(adapter, rows)
    assert np.allclose(out, [W @ np.array(list(r.values())) for r in rows], atol=1e-5)


LINEAR_SHAP = [a for a in ("exact", "permutation", "kernel", "partition", "deep", "gradient") if a in shap_.ALGORITHMS]


@pytest.mark.parametrize("algorithm", LINEAR_SHAP)
def test_shap_on_a_linear_model_is_w_times_x_minus_mean(linear, algorithm):
    adapter, expected = linear
    result = _shap(algorithm=algorithm).attribute(adapter, Example("lin", X), target="yes")
    if algorithm == "gradient":
        # expected gradients samples background rows: exact in expectation, noisy per run
        sampling_sd = np.abs(W) * adapter.background.to_numpy().std(0) / np.sqrt(result.meta["settings"]["max_evals"] or shap_.DEFAULT_EVALS)
        assert np.all(np.abs(result.scores - expected) <= 5 * sampling_sd + 1e-4)
        return
    np.testing.assert_allclose(result.scores, expected, atol=1e-4)
    assert result.base_value + result.scores.sum() == pytest.approx(W @ np.array(list(X.values())), abs=1e-4)


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_ig_and_occlusion_on_a_linear_model(linear, method):
    adapter, expected = linear
    result = ATTRIBUTION_METHODS.create(method).attribute(adapter, Example("lin", X), target="yes")
    np.testing.assert_allclose(result.scores, expected, atol=1e-4)


@pytest.mark.skipif("gradient_x_input" not in ATTRIBUTION_METHODS, reason="method not registered")
def test_gradient_x_input_on_a_linear_model(linear):
    adapter, _ = linear
    result = ATTRIBUTION_METHODS.create("gradient_x_input").attribute(adapter, Example("lin", X), target="yes")
    np.testing.assert_allclose(result.scores, W * np.array(list(X.values())), atol=1e-5)


def test_linear_target_flip_negates_scores(linear):
    adapter, expected = linear
    result = _shap(algorithm="exact").attribute(adapter, Example("lin", X), target="no")
    np.testing.assert_allclose(result.scores, -expected, atol=1e-4)


def test_changing_the_background_changes_shap(loan_dir, loan_background):
    """Masking uses the *current* background: no stale memo after it is replaced."""
    from twopath.runtime.tabular import TorchTabularClassifier

    adapter = TorchTabularClassifier.load(loan_dir)
    adapter.background = loan_background.iloc[:50]
    first = _shap(algorithm="exact").attribute(adapter, SEED_ROW, target="approved")
    rich = loan_background[loan_background["credit_score"] > 720].iloc[:50]
    adapter.background = rich
    second = _shap(algorithm="exact").attribute(adapter, SEED_ROW, target="approved")
    assert second.base_value == pytest.approx(float(tabular_output(adapter, rich).mean()), abs=1e-4)
    assert second.base_value != pytest.approx(first.base_value, abs=1e-3)
    # against richer applicants, the seed applicant's credit score no longer helps as much
    ci = first.units.index("credit_score")
    assert second.scores[ci] < first.scores[ci]


# --- LIME: seeded -------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["text", "tabular"])
def test_lime_is_deterministic_under_a_seed(which, tiny_sentiment, loan_adapter):
    adapter, example, target = ((tiny_sentiment, SEED_TEXT, "positive") if which == "text"
                                else (loan_adapter, SEED_ROW, "approved"))

    def run(seed):
        clear_evaluators(adapter)
        return ATTRIBUTION_METHODS.create("lime", seed=seed, num_samples=500).attribute(adapter, example, target=target)

    a, b, c = run(0), run(0), run(1)
    assert np.array_equal(a.scores, b.scores)
    assert a.meta["fit_r2"] == b.meta["fit_r2"]
    assert not np.array_equal(a.scores, c.scores)


def test_lime_text_correlates_with_exact_shap(tiny_sentiment):
    lime = ATTRIBUTION_METHODS.create("lime", num_samples=1000).attribute(tiny_sentiment, SEED_TEXT, target="positive")
    shap = _shap(algorithm="exact").attribute(tiny_sentiment, SEED_TEXT, target="positive")
    assert np.corrcoef(lime.scores, shap.scores)[0, 1] > 0.8


@pytest.mark.skipif("attention" not in ATTRIBUTION_METHODS, reason="method not registered")
def test_attention_scores_are_a_share_of_attention(tiny_sentiment):
    result = ATTRIBUTION_METHODS.create("attention").attribute(tiny_sentiment, SEED_TEXT, target="positive")
    assert np.all(result.scores >= 0)
    assert 0 < result.scores.sum() <= 1 + 1e-5


# --- loan ground truth ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["shap", "integrated_gradients"])
def test_loan_attributions_point_the_ground_truth_way(method, loan_adapter, loan_background):
    settings = {"algorithm": "exact"} if method == "shap" else {}
    result = ATTRIBUTION_METHODS.create(method, **settings).attribute(loan_adapter, SEED_ROW, target="approved")
    scores = dict(zip(result.units, result.scores, strict=True))
    # the reference each method compares the applicant with
    reference = loan_background.iloc[:50] if method == "shap" else loan_background
    assert loan.SEED_APPLICANT["credit_score"] > reference["credit_score"].mean() + 10
    assert loan.SEED_APPLICANT["monthly_income"] > reference["monthly_income"].mean() + 5000
    assert scores["credit_score"] > 0
    assert scores["monthly_income"] > 0
    for feature, direction in loan.GROUND_TRUTH_DIRECTION.items():
        if direction == 0:
            continue
        offset = loan.SEED_APPLICANT[feature] - reference[feature].mean()
        if abs(offset) > 0.1 * reference[feature].std():
            assert np.sign(scores[feature]) == np.sign(offset * direction), feature
    # the applicant has one loan, fewer than average: that cannot count much against them
    assert scores["existing_loans"] >= -0.05
    # credit score dominates the explanation, as in the rule
    assert abs(scores["credit_score"]) >= abs(scores["age"])
