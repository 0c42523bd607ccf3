"""TorchTabularClassifier: preprocessing, coded matrix, persistence, and the loan reference model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import tabular_output
from twopath.datasets import loan
from twopath.runtime.tabular import TorchTabularClassifier, build_mlp, fitted_preprocessor
from twopath.types import Component, Example, TwopathError


def test_loan_model_approves_seed_and_rejects_contrast(loan_adapter):
    proba = loan_adapter.predict_proba([loan.SEED_APPLICANT, loan.CONTRAST_APPLICANT])
    approved = loan_adapter.label_index("approved")
    assert loan_adapter.labels == ("rejected", "approved")
    assert proba[0, approved] > 0.5
    assert proba[1, approved] < 0.5
    assert np.allclose(proba.sum(1), 1.0)


def test_loan_model_agrees_with_the_rule(loan_adapter):
    _, test = loan.split()
    sample = test.iloc[:1000]
    pred = loan_adapter.predict_proba(sample)[:, 1] > 0.5
    truth = loan.approval_logit(sample) > 0
    assert (pred == truth).mean() > 0.9


def test_shape_of_the_loan_model(loan_adapter):
    assert loan_adapter.features == loan.FEATURES
    assert loan_adapter.n_layers == 6 and loan_adapter.widths == [32] * 6
    assert len(loan_adapter.components("neuron")) == 6 * 32
    assert loan_adapter.components("layer") == [Component("layer", i) for i in range(6)]
    with pytest.raises(TwopathError):
        loan_adapter.components("head")
    with pytest.raises(TwopathError):
        loan_adapter.site(Component("neuron", 6, 0))
    neuron = loan_adapter.site(Component("neuron", 2, 0))
    relus = [m for m in loan_adapter.model.modules() if isinstance(m, torch.nn.ReLU)]
    assert neuron.kind == "forward" and neuron.module is relus[2]  # the output of the l-th ReLU
    # in an MLP the hidden layer is the residual state: neuron, layer and resid sites coincide
    assert loan_adapter.site(Component("resid", 2, position=0)).module is neuron.module
    assert loan_adapter.site(Component("layer", 2)).module is neuron.module


def test_transform_scales_numbers_and_one_hot_encodes(loan_adapter):
    x = loan_adapter.transform(loan.SEED_APPLICANT)[0].numpy()
    scaler = loan_adapter.preprocessor.named_transformers_["num"]
    raw = np.array([loan.SEED_APPLICANT[f] for f in loan_adapter.numeric], dtype=float)
    n_num = len(loan_adapter.numeric)
    assert np.allclose(x[:n_num], (raw - scaler.mean_) / scaler.scale_, atol=1e-5)
    one_hot = x[n_num:]
    assert one_hot.tolist() == [1.0, 0.0, 0.0, 0.0]  # "full-time" is the first category
    assert len(loan_adapter.column_feature) == len(x)


def test_encode_decode_round_trip(loan_adapter, loan_background):
    rows = loan_background.iloc[:20]
    coded = loan_adapter.encode(rows)
    assert coded.shape == (20, len(loan.FEATURES))
    j = loan.FEATURES.index("employment_type")
    assert set(np.unique(coded[:, j])) <= {0.0, 1.0, 2.0, 3.0}
    decoded = loan_adapter.decode(coded)
    pd.testing.assert_frame_equal(decoded, loan_adapter.frame(rows).reset_index(drop=True), check_dtype=False)
    assert torch.allclose(loan_adapter.transform_coded(coded), loan_adapter.transform(rows), atol=1e-6)


def test_merge_columns_sums_one_hot_columns(loan_adapter):
    n_cols = len(loan_adapter.column_feature)
    merged = loan_adapter.merge_columns(np.arange(n_cols, dtype=float) + 1)
    n_num = len(loan_adapter.numeric)
    expected = dict(zip(loan_adapter.numeric, range(1, n_num + 1), strict=True))
    expected["employment_type"] = sum(range(n_num + 1, n_cols + 1))
    assert dict(zip(loan_adapter.features, merged, strict=True)) == expected
    assert merged.sum() == pytest.approx(sum(range(1, n_cols + 1)))


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({k: v for k, v in loan.SEED_APPLICANT.items() if k != "credit_score"}, "missing"),
        ({**loan.SEED_APPLICANT, "employment_type": "astronaut"}, "unknown employment_type"),
        ({**loan.SEED_APPLICANT, "monthly_income": "lots"}, "numeric"),
    ],
)
def test_bad_rows_raise(loan_adapter, row, match):
    with pytest.raises(TwopathError, match=match):
        loan_adapter.frame(row)
    with pytest.raises(TwopathError):
        loan_adapter.units(Example("bad", row))


def test_extra_columns_are_ignored(loan_adapter):
    row = {**loan.SEED_APPLICANT, "name": "Asha"}
    assert np.allclose(loan_adapter.predict_proba(row), loan_adapter.predict_proba(loan.SEED_APPLICANT))


def test_units_and_labels(loan_adapter):
    assert loan_adapter.units(Example("l", loan.SEED_APPLICANT)) == loan.FEATURES
    assert loan_adapter.label_index("APPROVED") == 1 and loan_adapter.label_index(0) == 0
    assert loan_adapter.label_index("1") == 1
    for bad in ("maybe", 5):
        with pytest.raises(TwopathError, match="unknown target label"):
            loan_adapter.label_index(bad)
    with pytest.raises(TwopathError, match="feature mapping"):
        loan_adapter.units(Example("t", "a sentence"))


def test_save_load_round_trip(tmp_path, loan_adapter, loan_background):
    loan_adapter.save(tmp_path / "copy")
    again = TorchTabularClassifier.load(tmp_path / "copy")
    assert again.features == loan_adapter.features and again.labels == loan_adapter.labels
    assert again.categories == loan_adapter.categories and again.widths == loan_adapter.widths
    rows = loan_background.iloc[:50]
    assert np.array_equal(again.predict_proba(rows), loan_adapter.predict_proba(rows))


def test_load_rejects_non_model_directories(tmp_path):
    with pytest.raises(TwopathError):
        TorchTabularClassifier.load(tmp_path / "missing")
    (tmp_path / "twopath_tabular.json").write_text("{}")
    with pytest.raises(TwopathError):
        TorchTabularClassifier.load(tmp_path)  # no weights


def test_identity_preprocessor_passes_values_through():
    pre = fitted_preprocessor(["a", "b"], {}, mean=[0.0, 0.0], scale=[1.0, 1.0])
    adapter = TorchTabularClassifier(build_mlp(2, [3]), pre, ["a", "b"], {})
    x = adapter.transform([{"a": 2.5, "b": -7.0}, {"a": 0.0, "b": 1e6}])
    assert x.tolist() == [[2.5, -7.0], [0.0, 1e6]]


def test_model_without_relu_is_rejected():
    pre = fitted_preprocessor(["a"], {}, mean=[0.0], scale=[1.0])
    with pytest.raises(TwopathError, match="ReLU"):
        TorchTabularClassifier(torch.nn.Linear(1, 2), pre, ["a"], {})


def test_output_is_logit_difference(loan_adapter):
    with torch.no_grad():
        logits = loan_adapter.logits({"x": loan_adapter.transform(loan.SEED_APPLICANT)})
    diff = float(logits[0, 1] - logits[0, 0])
    assert tabular_output(loan_adapter, loan.SEED_APPLICANT, 1)[0] == pytest.approx(diff, abs=1e-5)
    assert tabular_output(loan_adapter, loan.SEED_APPLICANT, 0)[0] == pytest.approx(-diff, abs=1e-5)
    p = float(loan_adapter.output(logits, 1, "probability")[0])
    assert p == pytest.approx(1 / (1 + np.exp(-diff)), abs=1e-6)


# --- the background's encodings are computed once, and never served stale ------------------------


def _fresh(loan_dir, background):
    adapter = TorchTabularClassifier.load(loan_dir)
    adapter.background = background
    return adapter


def test_background_encodings_equal_the_naive_ones(loan_dir, loan_background):
    adapter = _fresh(loan_dir, loan_background)
    np.testing.assert_array_equal(adapter.coded_background(), adapter.encode(loan_background))
    reference = adapter.reference_inputs()["x"]
    naive = torch.as_tensor(np.asarray(adapter.preprocessor.transform(adapter.frame(loan_background)), dtype=np.float32))
    assert torch.equal(reference, naive)
    assert torch.equal(adapter.baseline(Example("a", loan.SEED_APPLICANT), "mean"), naive.mean(0, keepdim=True)[..., None])
    assert torch.equal(adapter.baseline(Example("a", loan.SEED_APPLICANT), "median"),
                       naive.median(0, keepdim=True).values[..., None])
    # callers get copies: editing one never reaches the cache
    reference.add_(1.0)
    assert torch.equal(adapter.reference_inputs()["x"], naive)
    with pytest.raises(ValueError):
        adapter.coded_background()[0, 0] = 1.0


def test_reassigning_the_background_changes_every_result(loan_dir, loan_background):
    """A cache kept across a new background would be a silent wrong answer: after reassigning,
    every background-derived result equals a fresh adapter's with the new background."""
    from twopath.evaluation import evaluate_example
    from twopath.runtime.evaluator import evaluator_for

    other = loan_background.sample(200, random_state=7, replace=True).reset_index(drop=True)
    other["monthly_income"] = other["monthly_income"] * 1.5
    example = Example("seed", loan.SEED_APPLICANT)
    adapter = _fresh(loan_dir, loan_background)
    keep = np.eye(len(loan.FEATURES), dtype=bool)
    before_value = evaluator_for(adapter, example, 1)(keep)
    before_rows = evaluate_example(adapter, example, seed=0)
    version = adapter.background_version

    adapter.background = other
    assert adapter.background_version > version
    fresh = _fresh(loan_dir, other)
    after_value = evaluator_for(adapter, example, 1)(keep)
    assert not np.array_equal(before_value, after_value)
    np.testing.assert_array_equal(after_value, evaluator_for(fresh, example, 1)(keep))
    assert torch.equal(adapter.reference_inputs()["x"], fresh.reference_inputs()["x"])
    assert torch.equal(adapter.baseline(example), fresh.baseline(example))
    assert adapter.without_units(example, [0]).raw == fresh.without_units(example, [0]).raw
    after_rows = evaluate_example(adapter, example, seed=0)
    assert after_rows == evaluate_example(fresh, example, seed=0)
    assert after_rows["faithfulness"] != before_rows["faithfulness"]


def test_the_background_is_a_snapshot(loan_dir, loan_background):
    """Edits of the caller's frame after assignment, or of the frame read back, do not reach
    the adapter's sample (assigning is the one way to change it)."""
    mine = loan_background.copy()
    adapter = _fresh(loan_dir, mine)
    coded = adapter.coded_background().copy()
    mine.iloc[0, mine.columns.get_loc("monthly_income")] = 1e9
    read = adapter.background
    read.iloc[1, read.columns.get_loc("monthly_income")] = 1e9
    np.testing.assert_array_equal(adapter.encode(adapter.background), coded)
    np.testing.assert_array_equal(adapter.coded_background(), coded)
    adapter.background = read
    assert adapter.coded_background()[1, adapter.features.index("monthly_income")] == 1e9
    adapter.background = None
    with pytest.raises(TwopathError, match="background"):
        adapter.coded_background()
