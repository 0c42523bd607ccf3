"""Neuron clusters: a planted MLP's feature groups are found and labelled; the loan model runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from twopath.datasets import loan
from twopath.mechanistic.clusters import (
    cluster_table,
    feature_neurons,
    joint_r2,
    layer_activations,
    layer_encoding,
    neuron_clusters,
    word_presence,
)
from twopath.runtime.tabular import TorchTabularClassifier, fitted_preprocessor
from twopath.types import Component, TwopathError

SCALES = (1.0, 2.0, 0.5, 1.5)


def planted_mlp() -> TorchTabularClassifier:
    """Two hidden layers with known roles, on inputs (credit, income, age, employment one-hot).

    * L0: N0 = credit, N1 = income, N2 = age, N3 = [employment == full]; N4, N5 never fire.
    * L1: N0-3 = credit (at four scales), N4-7 = income + 2·[full] ("stability"), N8-11 = age.
    * Output: logit(yes) = 0.5·sum(L1N0-3) + 0.3·sum(L1N4-7) - 9; age is ignored.

    Inputs are positive, so every ReLU is linear on them and R² against the planted feature is 1.
    """
    first, second, last = nn.Linear(5, 6), nn.Linear(6, 12), nn.Linear(12, 2)
    with torch.no_grad():
        for layer in (first, second, last):
            layer.weight.zero_()
            layer.bias.zero_()
        for i in range(4):
            first.weight[i, i] = 1.0
        first.bias[4:] = -1.0
        for j, s in enumerate(SCALES):
            second.weight[j, 0] = s
            second.weight[4 + j, 1] = s
            second.weight[4 + j, 3] = 2 * s
            second.weight[8 + j, 2] = s
        last.weight[1, :4] = 0.5
        last.weight[1, 4:8] = 0.3
        last.bias[1] = -9.0
    numeric = ["credit", "income", "age"]
    categories = {"employment": ["full", "part"]}
    pre = fitted_preprocessor(numeric, categories, mean=[0.0] * 3, scale=[1.0] * 3)
    model = nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), last)
    adapter = TorchTabularClassifier(model, pre, [*numeric, "employment"], categories, ("no", "yes"), "planted")
    rng = np.random.default_rng(0)
    adapter.background = pd.DataFrame({
        "credit": rng.uniform(0.5, 3.0, 200), "income": rng.uniform(0.5, 3.0, 200),
        "age": rng.uniform(0.5, 3.0, 200), "employment": rng.choice(["full", "part"], 200)})
    return adapter


@pytest.fixture(scope="module")
def planted() -> TorchTabularClassifier:
    return planted_mlp()


def _containing(clusters, neuron: Component):
    return next(c for c in clusters if neuron in c.neurons)


def test_layer_activations_match_the_hand_computed_layer(planted):
    acts = layer_activations(planted, 1)
    bg = planted.background
    full = (bg["employment"] == "full").to_numpy(float)
    assert acts.shape == (200, 12)
    np.testing.assert_allclose(acts[:, 1], 2.0 * bg["credit"], rtol=1e-5)
    np.testing.assert_allclose(acts[:, 5], 2.0 * (bg["income"] + 2 * full), rtol=1e-5)


def test_clusters_partition_the_layer_and_find_the_planted_groups(planted):
    clusters = neuron_clusters(planted, 1, n_clusters=3)
    members = sorted(n.index for c in clusters for n in c.neurons)
    assert members == list(range(12))
    credit = _containing(clusters, Component("neuron", 1, 0))
    assert {n.index for n in credit.neurons} == {0, 1, 2, 3}
    assert credit.top_feature == "credit"
    assert credit.encodes["credit"] > 0.999
    assert credit.correlation["credit"] > 0.999
    assert credit.encodes["income"] < 0.1 and credit.encodes["employment"] < 0.1
    age = _containing(clusters, Component("neuron", 1, 8))
    assert {n.index for n in age.neurons} == {8, 9, 10, 11} and age.top_feature == "age"


def test_more_clusters_than_distinct_profiles_does_not_split_identical_neurons(planted):
    clusters = neuron_clusters(planted, 1, n_clusters=6, seed=3)
    assert len(clusters) == 3
    assert {n.index for n in _containing(clusters, Component("neuron", 1, 2)).neurons} == {0, 1, 2, 3}


def test_dead_neurons_form_their_own_unlabelled_group(planted):
    clusters = neuron_clusters(planted, 0, n_clusters=4)
    dead = clusters[-1]
    assert dead.dead and dead.name == "L0dead"
    assert [n.index for n in dead.neurons] == [4, 5]
    assert dead.top_feature == "none" and max(dead.encodes.values()) == 0.0
    assert not any(c.dead for c in clusters[:-1])


def test_joint_r2_explains_a_mixed_cluster_that_single_features_do_not(planted):
    clusters = neuron_clusters(planted, 1, n_clusters=3)
    stability = _containing(clusters, Component("neuron", 1, 4))
    single = max(stability.encodes["income"], stability.encodes["employment"])
    joint = joint_r2(stability.activation, planted.background, ("income", "employment"))
    assert joint > 0.999
    assert single < 0.9
    assert joint_r2(np.ones(200), planted.background, ("income",)) == 0.0
    with pytest.raises(TwopathError):
        joint_r2(stability.activation, planted.background, ("salary",))


def test_feature_neurons_rank_the_planted_neurons_first(planted):
    ranked = feature_neurons(planted, "credit", top_k=4)
    assert {c.index for c, _ in ranked[1]} == {0, 1, 2, 3}
    assert all(score > 0.999 for _, score in ranked[1])
    assert ranked[0][0][0] == Component("neuron", 0, 0)
    by_employment = feature_neurons(planted, "employment", top_k=1, layers=[0])
    assert by_employment[0][0][0] == Component("neuron", 0, 3) and by_employment[0][0][1] > 0.999


def test_layer_encoding_reports_the_best_cluster_per_feature(planted):
    table = layer_encoding(planted, features=["credit", "age", ("income", "employment")], n_clusters=3)
    assert list(table.columns) == ["layer", "feature", "cluster", "n_neurons", "r2"]
    grid = table.pivot(index="layer", columns="feature", values="r2")
    assert grid.loc[1, "credit"] > 0.999 and grid.loc[1, "income+employment"] > 0.999
    row = table[(table.layer == 1) & (table.feature == "credit")].iloc[0]
    assert row.cluster == "L1C0" and row.n_neurons == 4


def test_cluster_table_has_one_row_per_cluster(planted):
    clusters = neuron_clusters(planted, 1, n_clusters=3)
    table = cluster_table(clusters)
    assert len(table) == len(clusters)
    assert {"r2:credit", "r:credit", "top_feature", "neurons"} <= set(table.columns)
    assert "r:employment" not in table.columns
    assert table.loc[0, "neurons"] == "L1N0 L1N1 L1N2 L1N3"


def test_word_presence_ignores_case_and_punctuation():
    frame = word_presence(["A good, GOOD film.", "bad film"], ["good", "film", "bad", "dull"])
    assert frame.to_dict("list") == {"good": [1, 0], "film": [1, 1], "bad": [0, 1], "dull": [0, 0]}


def test_text_clusters_pool_real_tokens_and_label_by_words(tiny_text, background_texts):
    words = ["the", "a", "film", "movie", "good", "bad"]
    acts = layer_activations(tiny_text, 1, background_texts)
    inputs = tiny_text.batch_encode(background_texts[:1])
    store = {}
    site = tiny_text.site(Component("neuron", 1, 0))
    assert site.kind == "pre"  # the input of the MLP output projection holds the neurons
    hook = site.module.register_forward_pre_hook(lambda m, args: store.setdefault("act", args[0]))
    try:
        with torch.no_grad():
            tiny_text.run(inputs)
    finally:
        hook.remove()
    np.testing.assert_allclose(acts[0], store["act"][0].double().mean(0).numpy(), rtol=1e-4, atol=1e-6)
    clusters = neuron_clusters(tiny_text, 1, background_texts, n_clusters=3, words=words)
    assert sorted(n.index for c in clusters for n in c.neurons) == list(range(acts.shape[1]))
    for c in clusters:
        assert set(c.encodes) == set(words)
        for w in words:
            assert c.encodes[w] == pytest.approx(c.correlation[w] ** 2, abs=1e-9)
    with pytest.raises(TwopathError):
        neuron_clusters(tiny_text, 1, background_texts)


@pytest.fixture(scope="module")
def loan_500(loan_dir):
    adapter = TorchTabularClassifier.load(loan_dir)
    adapter.background = loan.split()[0].sample(500, random_state=0)[list(loan.FEATURES)]
    return adapter


def test_real_loan_model_clusters_every_layer_with_finite_r2(loan_500):
    for layer in range(loan_500.n_layers):
        clusters = neuron_clusters(loan_500, layer)
        assert sum(len(c.neurons) for c in clusters) == loan_500.widths[layer]
        for c in clusters:
            values = np.array([*c.encodes.values(), *c.correlation.values()])
            assert set(c.encodes) == set(loan.FEATURES)
            assert np.isfinite(values).all() and (np.array(list(c.encodes.values())) <= 1.0).all()
        assert max(c.encodes["credit_score"] for c in clusters) > 0.3
