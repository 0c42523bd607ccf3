"""Every registered attribution method honours the same contract on a text and a tabular model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import clear_evaluators
from twopath.attribution import ATTRIBUTION_METHODS, AttributionMethod
from twopath.datasets import loan, sentiment
from twopath.types import Attribution, Example, TwopathError

METHODS = ATTRIBUTION_METHODS.names()
SETTINGS = {"lime": {"num_samples": 300}, "shap": {"max_evals": 200}}


CASES = [
    pytest.param(name, modality, id=f"{modality}-{name}")
    for name in METHODS
    for modality in ("text", "tabular")
    if modality in ATTRIBUTION_METHODS.get(name).modalities
]


@pytest.fixture
def subject(request, modality):
    """(adapter, example, target label as the user may type it, canonical label)."""
    if modality == "text":
        adapter = request.getfixturevalue("tiny_sentiment")
        return adapter, Example(sentiment.SEED_EXAMPLE_ID, sentiment.SEED_SENTENCE), "Positive", "positive"
    adapter = request.getfixturevalue("loan_adapter")
    return adapter, Example(loan.SEED_EXAMPLE_ID, dict(loan.SEED_APPLICANT)), "APPROVED", "approved"


def _make(name: str, **extra) -> AttributionMethod:
    return ATTRIBUTION_METHODS.create(name, **{**SETTINGS.get(name, {}), **extra})


def test_registry_is_complete():
    assert set(METHODS) >= {"shap", "lime", "integrated_gradients", "occlusion"}
    for entry in ATTRIBUTION_METHODS:
        assert issubclass(entry.cls, AttributionMethod) and entry.cls.name == entry.name
        assert entry.summary
    with pytest.raises(TwopathError, match="unknown attribution method"):
        ATTRIBUTION_METHODS.get("saliency-of-vibes")


@pytest.mark.parametrize(("name", "modality"), CASES)
def test_contract(name, subject):
    adapter, example, typed_target, target = subject
    result = _make(name).attribute(adapter, example, target=typed_target)
    assert isinstance(result, Attribution)
    units = adapter.units(example)
    assert result.units == units
    assert result.scores.shape == (len(units),)
    assert np.all(np.isfinite(result.scores))
    assert result.example_id == example.id
    assert result.target == target
    assert result.method == name
    assert result.meta["output"] == "logit_diff"
    assert result.meta["settings"]["seed"] == 0
    assert result.base_value is None or np.isfinite(result.base_value)
    assert np.abs(result.scores).max() > 0  # something was attributed


@pytest.mark.parametrize(("name", "modality"), CASES)
def test_deterministic_under_a_seed(name, subject):
    adapter, example, typed_target, _ = subject
    clear_evaluators(adapter)  # recompute from scratch, not from the memo
    first = _make(name, seed=3).attribute(adapter, example, target=typed_target)
    clear_evaluators(adapter)
    second = _make(name, seed=3).attribute(adapter, example, target=typed_target)
    assert np.array_equal(first.scores, second.scores)
    assert first.base_value == second.base_value


@pytest.mark.parametrize(("name", "modality"), CASES)
def test_unknown_target_raises(name, subject):
    adapter, example, _, _ = subject
    with pytest.raises(TwopathError, match="unknown target label"):
        _make(name).attribute(adapter, example, target="no-such-label")


@pytest.mark.parametrize(("name", "modality"), CASES)
def test_unknown_output_space_raises(name, subject):
    adapter, example, typed_target, _ = subject
    with pytest.raises(TwopathError, match="output space"):
        _make(name, output="log-prob").attribute(adapter, example, target=typed_target)


@pytest.mark.parametrize(("name", "modality"), CASES)
def test_probability_output_is_bounded_sensibly(name, subject):
    """In probability space a perturbation method's unit score is a difference (or average of
    differences) of probabilities, so it is bounded by 1."""
    adapter, example, typed_target, _ = subject
    result = _make(name, output="probability").attribute(adapter, example, target=typed_target)
    assert result.meta["output"] == "probability"
    assert np.all(np.isfinite(result.scores))
    if name in ("shap", "occlusion", "attention"):  # gradients and LIME coefficients are unbounded
        assert np.abs(result.scores).max() <= 1.0 + 1e-6


@pytest.mark.parametrize(("name", "modality"), CASES)
def test_wrong_modality_example_raises(name, subject):
    adapter, example, typed_target, _ = subject
    wrong = Example("wrong", dict(loan.SEED_APPLICANT)) if example.is_text else Example("wrong", "a sentence")
    with pytest.raises(TwopathError):
        _make(name).attribute(adapter, wrong, target=typed_target)


@pytest.mark.parametrize("name", METHODS)
def test_unsupported_modality_raises(name, tiny_sentiment, loan_adapter):
    modalities = ATTRIBUTION_METHODS.get(name).modalities
    assert set(modalities) <= {"text", "tabular"} and modalities
    cases = {"text": (tiny_sentiment, Example("t", sentiment.SEED_SENTENCE), "positive"),
             "tabular": (loan_adapter, Example("l", dict(loan.SEED_APPLICANT)), "approved")}
    for modality, (adapter, example, target) in cases.items():
        if modality not in modalities:
            with pytest.raises(TwopathError, match="does not support"):
                _make(name).attribute(adapter, example, target=target)


def test_settings_are_stored_not_computed():
    method = ATTRIBUTION_METHODS.create("lime", num_samples=123, seed=9)
    assert method.settings() == {"output": "logit_diff", "seed": 9, "num_samples": 123, "kernel_width": None}
