"""The localization benchmark (``twopath benchmark``, :mod:`twopath.seed.localization`): on models whose mechanism is
planted by hand, the methods that should find it do, the ones that cannot by construction do
not, and a random ranking does not."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import single_threaded
from twopath.seed import localization as bench


@pytest.fixture(scope="module")
def table():
    with single_threaded():
        return bench.benchmark()


def _score(table, model, method):
    rows = table[(table["model"] == model) & (table["method"] == method)]
    assert len(rows) == 1, (model, method)
    return float(rows["precision_at_k"].iloc[0])


@pytest.mark.parametrize("method", ["shap", "lime", "integrated_gradients", "occlusion", "gradient_x_input"])
def test_input_methods_find_the_planted_feature(table, method):
    assert _score(table, "planted-mlp", method) == 1.0


@pytest.mark.parametrize("method", ["shap", "lime", "integrated_gradients", "occlusion", "attention"])
def test_input_methods_find_the_subject_noun(table, method):
    assert _score(table, "planted-gpt2", method) == 1.0


@pytest.mark.parametrize("method", ["neuron_ablation (zero)", "activation_patching", "attribution_patching"])
def test_internal_methods_find_the_planted_pathway(table, method):
    assert _score(table, "planted-mlp", method) == 1.0


@pytest.mark.parametrize("method", ["head_ablation (mean)", "activation_patching", "attribution_patching",
                                    "direct_logit_attribution", "direct_effect"])
def test_internal_methods_find_the_planted_head(table, method):
    assert _score(table, "planted-gpt2", method) == 1.0


def test_what_an_inactive_pathway_hides(table):
    # zero-ablating neurons that are already 0 changes nothing; gradients through an inactive
    # ReLU are 0: these methods cannot see the pathway for this applicant
    assert _score(table, "planted-mlp off", "neuron_ablation (zero)") == 0.0
    assert _score(table, "planted-mlp off", "gradient_x_input") == 0.0
    assert _score(table, "planted-mlp off", "attribution_patching") < 1.0
    # moving the neurons to where they are active (mean ablation, patching from the other side
    # of the threshold) still finds it
    assert _score(table, "planted-mlp off (mean ablation)", "neuron_ablation (mean)") == 1.0
    assert _score(table, "planted-mlp off", "activation_patching") == 1.0


def test_circuit_and_clusters_recover_the_planted_structure(table):
    for model in ("planted-mlp", "planted-gpt2"):
        row = table[(table["model"] == model) & (table["method"] == "greedy circuit")].iloc[0]
        assert row["precision_at_k"] == 1.0 and row["recall_at_k"] == 1.0
    row = table[(table["model"] == "planted-mlp") & (table["method"] == "neuron clusters")].iloc[0]
    assert row["recall_at_k"] == 1.0 and "(planted label)" in row["top_k"]


def test_a_random_ranking_does_not_recover_the_mechanism(table):
    random = table[table["method"].str.startswith("random ranking")]
    assert len(random) == 6
    assert (random["precision_at_k"] < 0.35).all()
    found = table[~table["method"].str.startswith("random ranking") & ~table["model"].str.contains("off")]
    assert found["precision_at_k"].mean() > 0.8


def test_precision_at_k_of_a_random_ranking_is_k_over_n_and_zeros_are_never_hits():
    rng = np.random.default_rng(0)
    pool = [f"c{i}" for i in range(20)]
    truth = pool[:4]
    scores = [bench.precision_recall(list(rng.permutation(pool)), truth)[0] for _ in range(4000)]
    assert np.mean(scores) == pytest.approx(4 / 20, abs=0.01)
    assert bench.precision_recall(truth, truth) == (1.0, 1.0)
    assert bench.precision_recall(truth, truth, importance=[1.0, 0.5, 0.0, 0.0]) == (0.5, 0.5)


def test_cli_benchmark_prints_the_table_and_refuses_unknown_methods(tmp_path):
    from typer.testing import CliRunner

    from twopath.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["benchmark", "--methods", "shap,telepathy"])
    assert bad.exit_code == 2 and "telepathy" in bad.output
    bad = runner.invoke(app, ["benchmark", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and ".csv" in bad.output
    out = tmp_path / "bench.csv"
    ok = runner.invoke(app, ["benchmark", "--methods", "occlusion,head_ablation,random", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "| planted-gpt2 | internal | head_ablation (mean) | 1 | 8 | 1.000 |" in ok.output
    assert "lime" not in ok.output
    import pandas as pd

    frame = pd.read_csv(out)
    assert set(frame["method"]) == {"occlusion", "head_ablation (mean)", "random ranking (mean of 200)"}


def test_ground_truth_is_machine_readable_and_names_real_components():
    import json

    for case in bench.planted_cases():
        truth = case.ground_truth()
        json.dumps(truth)  # plain data
        kind = case.adapter.default_component
        names = {str(c) for c in case.adapter.components(kind)}
        assert set(truth["components"]) <= names
        assert set(truth["units"]) <= {u.lower() for u in case.adapter.units(case.example)}
