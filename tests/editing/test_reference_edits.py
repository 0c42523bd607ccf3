"""Edits on the reference models (slow: they use the cached reference models and full budgets)."""

from __future__ import annotations

import pytest

from twopath.editing import LocalizedFineTuning, Relearning, compare_localizations, feature_task

pytestmark = pytest.mark.slow


def test_the_loan_credit_score_pathway_is_forgotten_at_a_matched_budget(loan_adapter):
    from twopath.datasets import loan

    train, test = loan.split()
    task = feature_task(loan_adapter, train, test, "credit_score", "approved", values=(720, 600), n_train=600,
                        n_heldout=300)
    table = compare_localizations(loan_adapter, task, kind="neuron", k=4, n_random=2,
                                  localizations=("probe", "random", "all_parameters"),
                                  editor=LocalizedFineTuning(steps=150), relearning=Relearning(steps=10))
    rows = {(r["localization"], r["seed"]): r for r in table.to_dict()["rows"]}
    original = rows[("original", None)]
    assert original["forget_gap"] > 0.3  # the model leans on the credit score
    probe = rows[("probe", None)]
    assert probe["n_parameters"] == table.budget == rows[("random", 0)]["n_parameters"]
    assert probe["forget_gap"] < 0.25 * original["forget_gap"]
    assert probe["outside_unchanged"]
    assert rows[("all_parameters", None)]["n_parameters"] > table.budget
