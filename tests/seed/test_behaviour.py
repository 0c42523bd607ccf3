"""Behavioural tests: score separation and pathway ablation on a planted MLP and the loan model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.mechanistic.test_clusters import planted_mlp
from twopath.datasets import loan
from twopath.runtime.interventions import ablate
from twopath.runtime.tabular import TorchTabularClassifier
from twopath.seed.behaviour import (
    CURVE,
    pathway_ablation_test,
    probabilities,
    random_controls,
    score_separation,
)
from twopath.types import Component, TwopathError

APPLICANT = {"credit": 2.0, "income": 1.5, "age": 2.0, "employment": "full"}
CREDIT_NEURONS = [Component("neuron", 1, i) for i in range(4)]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def planted() -> TorchTabularClassifier:
    return planted_mlp()


def test_score_separation_matches_the_planted_logit(planted):
    result = score_separation(planted, APPLICANT, feature="credit", high=2.5, low=1.0)
    stability = 0.3 * 5.0 * (1.5 + 2.0)  # 0.3 * sum(scales) * (income + 2·full)
    expected_high = _sigmoid(0.5 * 5.0 * 2.5 + stability - 9.0)
    expected_low = _sigmoid(0.5 * 5.0 * 1.0 + stability - 9.0)
    assert result.p_high == pytest.approx(expected_high, abs=1e-5)
    assert result.p_low == pytest.approx(expected_low, abs=1e-5)
    assert result.separation == pytest.approx(expected_high - expected_low, abs=1e-5)
    assert result.separation > 0.3


def test_separation_under_edits_removes_the_feature(planted):
    edits = ablate(planted, CREDIT_NEURONS, "mean")
    result = score_separation(planted, APPLICANT, feature="credit", high=2.5, low=1.0, edits=edits)
    assert abs(result.separation) < 1e-6
    assert probabilities(planted, [APPLICANT]).shape == (1,)


def test_pathway_ablation_removes_separation_and_random_controls_do_not(planted):
    result = pathway_ablation_test(planted, APPLICANT, CREDIT_NEURONS, n_controls=10, seed=0,
                                   feature="credit", high=2.5, low=1.0, curve=np.linspace(0.5, 3.0, 6))
    assert result.before.separation > 0.3
    assert abs(result.after.separation) < 1e-6
    assert result.control_mean > 0.8 * result.before.separation
    assert len(result.controls) == 10 and result.control_sd >= 0.0
    for group in result.control_neurons:
        assert len(group) == 4 and all(label.startswith("L1N") for label in group)
        assert not set(group) & {str(c) for c in CREDIT_NEURONS}
    before, after = np.array(result.curve["before"]), np.array(result.curve["after"])
    assert (np.diff(before) > 0).all()
    assert np.ptp(after) < 1e-6
    json.dumps(result.to_dict())


def test_zero_ablation_and_errors(planted):
    result = pathway_ablation_test(planted, APPLICANT, CREDIT_NEURONS, n_controls=2, mode="zero",
                                   feature="credit", high=2.5, low=1.0, curve=[1.0, 2.0])
    assert abs(result.after.separation) < 1e-6
    with pytest.raises(TwopathError):
        pathway_ablation_test(planted, APPLICANT, [Component("neuron", 1, 99)], feature="credit")
    with pytest.raises(TwopathError):
        pathway_ablation_test(planted, APPLICANT, [Component("head", 1, 0)], feature="credit")


def test_random_controls_fall_back_when_the_layer_is_too_small(planted):
    rng = np.random.default_rng(0)
    layer0 = [Component("neuron", 0, i) for i in range(6)]
    assert sorted(random_controls(planted, layer0, rng)) == layer0
    picked = random_controls(planted, [Component("neuron", 0, 0), Component("neuron", 1, 0)], rng)
    assert [c.layer for c in picked] == [0, 1] and Component("neuron", 1, 0) not in picked


def test_real_loan_model_separates_the_seed_applicant(loan_adapter):
    result = score_separation(loan_adapter, loan.SEED_APPLICANT)
    assert result.high == 720 and result.low == 600
    assert result.separation > 0.1
    assert result.p_high > result.p_low
    assert len(CURVE) == 31 and CURVE[0] == 300 and CURVE[-1] == 900
