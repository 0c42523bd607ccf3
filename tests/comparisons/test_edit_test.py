"""The edit test: planted neurons move the output, inert ones do not; specificity by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from twopath.comparisons.edit_test import (
    edit_test,
    nearby_applicants,
    paraphrases,
    specificity,
    target_changes,
    winner,
)
from twopath.datasets import loan
from twopath.runtime.tabular import TorchTabularClassifier, fitted_preprocessor
from twopath.types import Component, Example, TwopathError

SENTENCE = "The movie was surprisingly good, despite slow pacing."
N = {i: Component("neuron", 0, i) for i in range(4)}
BIAS = -6.0


def planted_mlp(background: bool = True) -> TorchTabularClassifier:
    """One hidden layer over raw features (x0, x1), identity scaling.

    L0N0 = relu(x0) and L0N1 = relu(x1) carry the decision: logit(yes) - logit(no) =
    2·N0 + N1 - 6. L0N2 = relu(x0) and L0N3 = relu(x1) fire but are read by nothing (inert).
    The background has x0, x1 in {1, 3}, so the mean of every neuron is 2.
    """
    first, last = nn.Linear(2, 4), nn.Linear(4, 2)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
        first.bias.zero_()
        last.weight.zero_()
        last.weight[1] = torch.tensor([2.0, 1.0, 0.0, 0.0])
        last.bias.copy_(torch.tensor([0.0, BIAS]))
    pre = fitted_preprocessor(["x0", "x1"], {}, mean=[0.0, 0.0], scale=[1.0, 1.0])
    adapter = TorchTabularClassifier(nn.Sequential(first, nn.ReLU(), last), pre, ["x0", "x1"], {}, ("no", "yes"), "planted")
    if background:
        adapter.background = pd.DataFrame({"x0": [1.0, 1.0, 3.0, 3.0], "x1": [1.0, 3.0, 1.0, 3.0]})
    return adapter


def sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


def p_yes(x0: float, x1: float, n0: float | None = None, n1: float | None = None) -> float:
    """The planted model's P(yes), by hand, with N0 / N1 optionally fixed (ablated)."""
    n0 = max(x0, 0.0) if n0 is None else n0
    n1 = max(x1, 0.0) if n1 is None else n1
    return sigmoid(2 * n0 + n1 + BIAS)


def row(x0: float, x1: float) -> dict[str, float]:
    return {"x0": x0, "x1": x1}


EXAMPLE = row(4.0, 2.0)
RELATED = [row(4.5, 2.0), row(3.5, 2.0), row(4.0, 2.5)]
UNRELATED = [row(2.0, 5.0), row(2.0, 1.0), row(2.5, 3.0)]


def test_planted_neurons_move_the_output_inert_ones_do_not():
    adapter = planted_mlp()
    ex = [Example("e", EXAMPLE)]
    planted = target_changes(adapter, [N[0]], "yes", ex)[0]
    inert = target_changes(adapter, [N[2], N[3]], "yes", ex)[0]
    assert planted == pytest.approx(p_yes(4, 2, n0=2.0) - p_yes(4, 2), abs=1e-6)
    assert abs(inert) < 1e-7
    assert abs(planted) > abs(inert) + 0.1


def test_changes_and_specificity_match_a_hand_computation():
    adapter = planted_mlp()
    frame = edit_test(adapter, {"N0": [N[0]], "N1": [N[1]]}, "yes", EXAMPLE, RELATED, UNRELATED)
    assert list(frame["source"]) == ["N0", "N1"]
    ablated = {"N0": {"n0": 2.0}, "N1": {"n1": 2.0}}
    for _, r in frame.iterrows():
        fixed = ablated[r["source"]]
        example = p_yes(**EXAMPLE, **fixed) - p_yes(**EXAMPLE)
        related = np.array([p_yes(**x, **fixed) - p_yes(**x) for x in RELATED])
        unrelated = np.array([p_yes(**x, **fixed) - p_yes(**x) for x in UNRELATED])
        assert r["example_change"] == pytest.approx(example, abs=1e-6)
        assert r["related_change"] == pytest.approx(related.mean(), abs=1e-6)
        assert r["related_abs_change"] == pytest.approx(np.abs(related).mean(), abs=1e-6)
        assert r["unrelated_change"] == pytest.approx(unrelated.mean(), abs=1e-6)
        assert r["unrelated_abs_change"] == pytest.approx(np.abs(unrelated).mean(), abs=1e-6)
        expected = np.abs(related).mean() / (np.abs(unrelated).mean() + 1e-9)
        assert r["specificity"] == pytest.approx(expected, rel=1e-4)
        assert (r["n_related"], r["n_unrelated"], r["n_components"]) == (3, 3, 1)
    # N0 is the stronger lever on the example and its neighbours, and the unrelated rows sit
    # near N0's mean (x0 = 2), so N0 is also the more specific edit
    by = frame.set_index("source")
    assert by.loc["N0", "specificity"] > 1 > by.loc["N1", "specificity"]
    assert frame.attrs["winner"] == {"example": "N0", "related": "N0", "specificity": "N0"}
    json.dumps(frame.attrs["winner"])


def test_zero_ablation_by_hand():
    adapter = planted_mlp()
    change = target_changes(adapter, [N[0], N[1]], "yes", [Example("e", EXAMPLE)], mode="zero")[0]
    assert change == pytest.approx(p_yes(**EXAMPLE, n0=0.0, n1=0.0) - p_yes(**EXAMPLE), abs=1e-6)


def test_specificity_formula():
    assert specificity([0.2, -0.4], [0.1, -0.1]) == pytest.approx(0.3 / (0.1 + 1e-9))
    assert specificity([0.0], [0.0]) == 0.0
    assert np.isfinite(specificity([0.5], [0.0]))
    with pytest.raises(TwopathError):
        specificity([], [0.1])


def test_winner_reports_ties_as_none():
    adapter = planted_mlp()
    frame = edit_test(adapter, {"a": [N[0]], "b": [N[0]]}, "yes", EXAMPLE, RELATED, UNRELATED)
    assert winner(frame) == {"example": None, "related": None, "specificity": None}


def test_changes_are_finite_on_the_loan_model(loan_adapter, loan_background):
    comps = [Component("neuron", 5, i) for i in range(4)]
    unrelated = loan_background[list(loan.FEATURES)].head(10).to_dict("records")
    related = nearby_applicants(loan.SEED_APPLICANT, loan_adapter, n=10, seed=0)
    frame = edit_test(loan_adapter, {"first4": comps, "whole L5": [Component("layer", 5)]}, "approved",
                      Example("seed", loan.SEED_APPLICANT), related, unrelated)
    values = frame[["example_change", "related_change", "related_abs_change", "unrelated_change",
                    "unrelated_abs_change", "specificity"]].to_numpy(dtype=float)
    assert np.isfinite(values).all()
    assert (frame[["related_abs_change", "unrelated_abs_change"]].to_numpy() <= 1).all()
    assert frame.loc[frame["source"] == "whole L5", "related_abs_change"].iloc[0] > 0


def test_text_model_accepts_raw_sentences(tiny_sentiment):
    frame = edit_test(tiny_sentiment, {"L1 heads": [Component("head", 1, 0), Component("head", 1, 1)]},
                      "positive", SENTENCE, paraphrases(SENTENCE), list(tiny_sentiment.background[:3]))
    assert np.isfinite(frame[["example_change", "related_change", "unrelated_change", "specificity"]].to_numpy(float)).all()
    assert frame["n_related"].iloc[0] == len(paraphrases(SENTENCE))


def test_bad_input_raises():
    adapter = planted_mlp()
    with pytest.raises(TwopathError):
        edit_test(adapter, {"empty": []}, "yes", EXAMPLE, RELATED, UNRELATED)
    with pytest.raises(TwopathError):
        edit_test(adapter, {}, "yes", EXAMPLE, RELATED, UNRELATED)
    with pytest.raises(TwopathError):
        edit_test(adapter, {"N0": [N[0]]}, "yes", EXAMPLE, [], UNRELATED)
    with pytest.raises(TwopathError):
        edit_test(adapter, {"N0": [N[0]]}, "maybe", EXAMPLE, RELATED, UNRELATED)
    with pytest.raises(TwopathError):
        target_changes(adapter, [], "yes", [Example("e", EXAMPLE)])
    with pytest.raises(TwopathError):  # mean ablation needs a background
        edit_test(planted_mlp(background=False), {"N0": [N[0]]}, "yes", EXAMPLE, RELATED, UNRELATED)


# --- related inputs ---------------------------------------------------------------------------

def test_nearby_applicants_are_small_seeded_perturbations(loan_adapter):
    rows = nearby_applicants(loan.SEED_APPLICANT, loan_adapter, n=20, seed=0)
    assert len(rows) == 20
    assert rows == nearby_applicants(loan.SEED_APPLICANT, loan_adapter, n=20, seed=0)
    assert rows != nearby_applicants(loan.SEED_APPLICANT, loan_adapter, n=20, seed=1)
    loan_adapter.frame(rows)  # valid rows for the model
    for r in rows:
        assert r["employment_type"] == loan.SEED_APPLICANT["employment_type"]
        for f in ("age", "monthly_income", "credit_score", "existing_loans"):
            original = loan.SEED_APPLICANT[f]
            assert abs(r[f] - original) <= 0.05 * abs(original) + 0.5  # +0.5: integers are rounded
        assert isinstance(r["credit_score"], int) and isinstance(r["age"], int)
    incomes = {r["monthly_income"] for r in rows}
    assert len(incomes) == 20  # every neighbour moves
    with pytest.raises(TwopathError):
        nearby_applicants(loan.SEED_APPLICANT, loan_adapter, n=0)
    with pytest.raises(TwopathError):
        nearby_applicants({**loan.SEED_APPLICANT, "employment_type": "astronaut"}, loan_adapter)


def test_paraphrases_are_deterministic_and_keep_the_sentiment_words():
    out = paraphrases(SENTENCE)
    assert out == [
        "Movie was surprisingly good, despite slow pacing.",
        "This film was surprisingly good, despite slow pacing.",
        "The movie was surprisingly good, despite slow pacing. Really.",
        "Despite slow pacing, the movie was surprisingly good.",
    ]
    assert out == paraphrases(SENTENCE)
    for text in out:
        assert "good" in text and "slow" in text and text != SENTENCE
    assert paraphrases("Great film!") == ["Great movie!", "Great film! Really."]  # sentiment word kept
    with pytest.raises(TwopathError):
        paraphrases("   ")
