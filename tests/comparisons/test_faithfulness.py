"""Faithfulness curves and agreement on models whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from twopath.comparisons import agreement, faithfulness
from twopath.runtime.tabular import TorchTabularClassifier, fitted_preprocessor
from twopath.types import Attribution, Component, Example, Localization

FEATURES = ("a", "b", "c", "d")


def planted() -> TorchTabularClassifier:
    """Only feature ``a`` matters, through hidden neurons 0-3; neurons 4-7 are inert."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[0].weight[:4, 0] = torch.tensor([1.0, 1.5, 2.0, 2.5])
        model[2].weight.zero_()
        model[2].bias.zero_()
        model[2].weight[1, :4] = 1.0
    adapter = TorchTabularClassifier(model, fitted_preprocessor(FEATURES, {}, [0.0] * 4, [1.0] * 4), FEATURES, {},
                                     ("no", "yes"))
    rng = np.random.default_rng(0)
    adapter.background = pd.DataFrame(rng.normal(0, 0.3, size=(40, 4)), columns=list(FEATURES))
    return adapter


def test_true_order_beats_random_on_a_planted_mechanism():
    adapter = planted()
    example = Example("x", {"a": 2.0, "b": 0.5, "c": -0.5, "d": 0.1}, "yes")
    truth = Attribution("x", "truth", "yes", FEATURES, [3.0, 0.1, 0.05, 0.01])
    rows = faithfulness.input_faithfulness(adapter, example, [truth], n_random=10)
    true_row, random_row = rows[0], rows[-1]
    assert random_row["method"] == "random order"
    assert true_row["aopc_deletion"] > random_row["aopc_deletion"] + 0.05
    assert true_row["comprehensiveness"] > random_row["comprehensiveness"]

    components = [Component("neuron", 0, i) for i in range(8)]
    effects = [4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    loc = Localization("x", "planted", "yes", "drop", components, effects)
    internal = faithfulness.internal_faithfulness(adapter, example, [loc], k_max=8, n_random=10)
    assert internal[0]["aopc_deletion"] > internal[-1]["aopc_deletion"] + 0.05


def test_curves_start_at_the_full_and_empty_outputs():
    adapter = planted()
    example = Example("x", {"a": 2.0, "b": 0.5, "c": -0.5, "d": 0.1}, "yes")
    truth = Attribution("x", "truth", "yes", FEATURES, [3.0, 0.1, 0.05, 0.01])
    row = faithfulness.input_faithfulness(adapter, example, [truth], n_random=2)[0]
    assert row["deletion_curve"][0] == row["insertion_curve"][-1]  # everything present
    assert row["deletion_curve"][-1] == row["insertion_curve"][0]  # everything absent


def test_a_method_agrees_with_itself():
    a = Attribution("x", "m1", "yes", FEATURES, [0.3, -0.2, 0.1, 0.0])
    b = Attribution("x", "m2", "yes", FEATURES, [-0.3, 0.2, -0.1, 0.05])
    table = agreement.agreement_table([a, b])
    same = table[(table.method_a == "m1") & (table.method_b == "m1")].iloc[0]
    assert same.spearman == 1.0 and same.kendall == 1.0 and same.top3_jaccard == 1.0 and same.sign_agreement == 1.0
    opposite = table[(table.method_a == "m1") & (table.method_b == "m2")].iloc[0]
    assert opposite.spearman < 0 and opposite.sign_agreement == 0.0


def test_the_random_control_reports_its_orders_and_their_spread():
    adapter = planted()
    example = Example("x", {"a": 2.0, "b": 0.5, "c": -0.5, "d": 0.1}, "yes")
    truth = Attribution("x", "truth", "yes", FEATURES, [3.0, 0.1, 0.05, 0.01])
    random_row = faithfulness.input_faithfulness(adapter, example, [truth], n_random=6, seed=3)[-1]
    assert random_row["n_orders"] == 6
    # the control is the mean of its orders' curves, and the sd is over the orders' own AOPC
    orders = [faithfulness.input_faithfulness(adapter, example, [Attribution("x", "o", "yes", FEATURES, -rank)],
                                              n_random=1)[0]
              for rank in np.argsort(faithfulness._random_orders(4, 6, 3), axis=1).astype(float)]
    np.testing.assert_allclose(random_row["deletion_curve"], np.mean([o["deletion_curve"] for o in orders], 0))
    np.testing.assert_allclose(random_row["aopc_deletion_sd"], np.std([o["aopc_deletion"] for o in orders], ddof=1))
    assert random_row["aopc_deletion_sd"] > 0
    single = faithfulness.input_faithfulness(adapter, example, [truth], n_random=1, seed=3)[-1]
    assert single["n_orders"] == 1  # one order has no spread: none is reported (not a zero)
    assert single["aopc_deletion_sd"] is None and single["aopc_insertion_sd"] is None
    np.testing.assert_allclose(single["deletion_curve"], orders[0]["deletion_curve"])


def test_longer_inputs_average_fewer_random_orders():
    assert faithfulness.random_orders_for(5) == faithfulness.random_orders_for(8) == 10
    assert faithfulness.random_orders_for(9) == faithfulness.random_orders_for(256) == 4
    assert faithfulness.random_orders_for(24, positional=False) == 10  # a table's rows are cheap
    assert faithfulness.random_orders_for(25, positional=False) == 4
