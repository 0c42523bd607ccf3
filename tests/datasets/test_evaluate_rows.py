"""The dataset path's row reuse: what it skips is what it would have computed.

The coalition evaluator memoizes logits per example, shared by every target and output space,
and the faithfulness curves send every ranking's points in one batched call. These tests check
that the reuse saves model rows and that the values equal those of a fresh computation, and
that the batched curve masks are the ones the protocol defines (remove / keep the top k).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.tiny_models import CORPUS, save_tiny
from twopath.comparisons.faithfulness import _keep_masks, curve_ks
from twopath.runtime.evaluator import evaluator_for
from twopath.runtime.trace import forget
from twopath.types import Example


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    from twopath.runtime.text import HFTextClassifier

    adapter = HFTextClassifier.from_pretrained(save_tiny("bert", tmp_path_factory.mktemp("rows") / "bert"))
    adapter.background = list(CORPUS[:4])
    return adapter


def test_curve_masks_remove_or_keep_exactly_the_top_k():
    rng = np.random.default_rng(0)
    orders = np.vstack([rng.permutation(7) for _ in range(4)])
    ks = curve_ks(7)
    deletion, insertion = _keep_masks(orders, ks)
    for o, order in enumerate(orders):
        for j, k in enumerate(ks):
            top = set(order[:k].tolist())
            assert set(np.flatnonzero(~deletion[o, j]).tolist()) == top
            assert set(np.flatnonzero(insertion[o, j]).tolist()) == top


def test_one_logit_memo_serves_every_target_and_space(bert):
    example = Example("memo", CORPUS[3])
    forget(bert)
    n = len(bert.units(example))
    keep = np.random.default_rng(1).random((12, n)) < 0.5
    first = evaluator_for(bert, example, 0, "logit_diff")
    first(keep)
    ran = first.n_evaluated
    assert ran == len(np.unique(keep, axis=0))
    other = evaluator_for(bert, example, 1, "probability")  # another label, another space
    reused = other(keep)
    assert other.n_evaluated == 0  # every coalition's logits were already there
    forget(bert)  # a fresh evaluator computes the same values from scratch
    fresh = evaluator_for(bert, example, 1, "probability")
    np.testing.assert_allclose(reused, fresh(keep), rtol=0, atol=1e-6)
    assert fresh.n_evaluated == ran


def test_another_example_or_background_gets_its_own_memo(bert):
    forget(bert)
    a, b = Example("a", CORPUS[3]), Example("b", CORPUS[4])
    evaluator_for(bert, a, 0, "logit_diff").full()
    other = evaluator_for(bert, b, 0, "probability")
    other.full()
    assert other.n_evaluated == 1
    bert.background = list(CORPUS[4:8])
    try:
        again = evaluator_for(bert, a, 1, "probability")
        again.full()
        assert again.n_evaluated == 1  # the text masks do not use the background, but the key does
    finally:
        bert.background = list(CORPUS[:4])


def test_the_dataset_path_draws_one_random_order_on_a_grid_of_k(bert):
    """Beyond 10 units the dataset path's input curves run on the 11-point grid, and each
    example's control is exactly one random order, drawn from the example's own seed."""
    from twopath.comparisons.faithfulness import _curves_from, _random_orders
    from twopath.evaluation import CURVE_POINTS, evaluate_example, example_seed

    example = Example("long", " ".join(" ".join(CORPUS[3:6]).split()[:16]))
    forget(bert)
    tables = evaluate_example(bert, example, seed=0)
    head = tables["examples"][0]
    assert head["status"] == "ok"
    n = head["n_units"]
    assert n > CURVE_POINTS - 1
    rows = {(r["path"], r["method"]): r for r in tables["faithfulness"]}
    control = rows[("input", "random order")]
    ks = np.asarray(control["curve_k"])
    np.testing.assert_array_equal(ks, curve_ks(n, max_points=CURVE_POINTS))
    assert len(ks) < n + 1 and {0, 1, n} <= set(ks.tolist())
    assert all(r["curve_k"] == control["curve_k"] for (path, _), r in rows.items() if path == "input")
    assert rows[("internal", "random order")]["curve_k"] == list(range(len(rows[("internal", "random order")]["deletion_curve"])))
    target = bert.label_index(head["predicted"])
    ev = evaluator_for(bert, example.with_target(head["predicted"]), target, "probability")
    deletion, insertion = _curves_from(_random_orders(n, 1, example_seed(0, example.id)), ev, ks)
    np.testing.assert_allclose(control["deletion_curve"], deletion[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(control["insertion_curve"], insertion[0], rtol=0, atol=1e-6)
