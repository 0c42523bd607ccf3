"""Ablation: batched sweeps equal one-at-a-time runs, known mechanisms are found, dead heads do nothing."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.helpers import n_hooks, text_output
from twopath.datasets import loan, sentiment
from twopath.mechanistic import MECHANISTIC_METHODS
from twopath.mechanistic.ablation import HeadAblation, NeuronAblation
from twopath.runtime.adapter import target_output
from twopath.runtime.interventions import Edit, intervene
from twopath.runtime.tabular import TorchTabularClassifier, fitted_preprocessor
from twopath.runtime.text import HFTextClassifier
from twopath.types import Component, Example, Localization, TwopathError

SEED_TEXT = Example(sentiment.SEED_EXAMPLE_ID, sentiment.SEED_SENTENCE)
SEED_ROW = Example(loan.SEED_EXAMPLE_ID, dict(loan.SEED_APPLICANT))


def _out(adapter, inputs, target=1) -> float:
    with torch.no_grad():
        return float(target_output(adapter.run(inputs), target)[0])


def _manual_head_means(adapter) -> torch.Tensor:
    """Mean of each layer's head-site input over the background's real tokens: (layers, hidden)."""
    enc = adapter.tokenizer(list(adapter.background), padding=True, return_tensors="pt")
    means, store = [], {}

    def grab(layer):
        def hook(module, args):
            store[layer] = args[0].detach()
        return hook

    handles = [adapter.site(Component("head", layer, 0)).module.register_forward_pre_hook(grab(layer)) for layer in range(adapter.n_layers)]
    try:
        with torch.no_grad():
            adapter.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    finally:
        for h in handles:
            h.remove()
    mask = enc["attention_mask"][..., None].float()
    for layer in range(adapter.n_layers):
        means.append((store[layer] * mask).sum((0, 1)) / mask.sum((0, 1)))
    return torch.stack(means)


def test_head_ablation_zero_equals_a_manual_loop(tiny_sentiment):
    adapter = tiny_sentiment
    result = HeadAblation(mode="zero").localize(adapter, SEED_TEXT, target="positive")
    assert isinstance(result, Localization)
    assert result.components == tuple(adapter.components("head"))
    inputs = adapter.forward_inputs(SEED_TEXT)
    clean = _out(adapter, inputs)
    assert result.clean == pytest.approx(clean, abs=1e-5)
    manual = []
    for comp in result.components:
        d = adapter.head_dim()
        sl = slice(comp.index * d, (comp.index + 1) * d)

        def zero_head(module, args, sl=sl):
            x = args[0].clone()
            x[..., sl] = 0.0
            return (x,)

        handle = adapter.site(Component("head", comp.layer, 0)).module.register_forward_pre_hook(zero_head)
        try:
            manual.append(clean - _out(adapter, inputs))
        finally:
            handle.remove()
    np.testing.assert_allclose(result.effects, manual, atol=1e-5)
    assert np.abs(result.effects).max() > 1e-3
    assert result.metric == "logit_diff_drop"


def test_head_ablation_mean_equals_a_manual_loop(tiny_sentiment):
    adapter = tiny_sentiment
    result = HeadAblation(mode="mean").localize(adapter, SEED_TEXT, target="positive")
    inputs = adapter.forward_inputs(SEED_TEXT)
    clean = _out(adapter, inputs)
    means = _manual_head_means(adapter)
    d = adapter.head_dim()
    manual = []
    for comp in result.components:
        value = means[comp.layer, comp.index * d:(comp.index + 1) * d]
        with intervene(adapter, [Edit(0, comp, value)]):
            manual.append(clean - _out(adapter, inputs))
    np.testing.assert_allclose(result.effects, manual, atol=1e-5)
    probs = result.meta["probability"]
    assert len(probs) == len(result.components) and all(0 <= p <= 1 for p in probs)
    assert result.meta["clean_probability"] == pytest.approx(float(adapter.predict_proba([sentiment.SEED_SENTENCE])[0, 1]), abs=1e-5)


@pytest.mark.parametrize(("mode", "small_batch"), [("zero", 1), ("mean", 5)])
def test_neuron_ablation_batch_size_does_not_matter(tiny_text, mode, small_batch):
    one = NeuronAblation(mode=mode, batch_size=small_batch).localize(tiny_text, SEED_TEXT, target="positive")
    many = NeuronAblation(mode=mode, batch_size=128).localize(tiny_text, SEED_TEXT, target="positive")
    assert one.components == many.components
    assert len(one.components) == tiny_text.n_layers * 64
    scale = max(np.abs(many.effects).max(), 1e-6)
    np.testing.assert_allclose(one.effects, many.effects, atol=1e-4 * scale + 1e-7)
    assert np.abs(many.effects).max() > 0


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_head_with_a_dead_output_projection_has_no_effect(tiny_text, mode):
    """Zeroing a head whose slice of the output projection is already zero changes nothing."""
    model = copy.deepcopy(tiny_text.model)
    adapter = HFTextClassifier(model, tiny_text.tokenizer, name="dead-head")
    adapter.background = list(tiny_text.background)
    dead = [Component("head", 0, 1), Component("head", 1, 0)]
    d = adapter.head_dim()
    with torch.no_grad():
        for comp in dead:
            adapter.site(Component("head", comp.layer, 0)).module.weight[:, comp.index * d:(comp.index + 1) * d] = 0.0
    result = HeadAblation(mode=mode).localize(adapter, SEED_TEXT, target="positive")
    effects = dict(zip(result.components, result.effects, strict=True))
    alive = [c for c in result.components if c not in dead]
    scale = max(abs(effects[c]) for c in alive)
    assert scale > 0
    for comp in dead:
        assert abs(effects[comp]) <= 1e-3 * scale + 1e-7, comp


# --- a planted mechanism -----------------------------------------------------------------------

PLANTED = 5


@pytest.fixture(scope="module")
def planted():
    """One hidden layer of 8 ReLU units; unit 5 alone reads x0 and alone drives the decision."""
    torch.manual_seed(0)
    d, h = 4, 8
    first, last = nn.Linear(d, h), nn.Linear(h, 2)
    with torch.no_grad():
        first.weight.copy_(0.1 * torch.randn(h, d))
        first.weight[PLANTED] = torch.tensor([2.0, 0.0, 0.0, 0.0])
        first.bias.fill_(0.2)
        last.weight.zero_()
        last.weight[1] = 0.1 * torch.randn(h)
        last.weight[1, PLANTED] = 3.0
        last.bias.zero_()
    features = [f"x{i}" for i in range(d)]
    pre = fitted_preprocessor(features, {}, mean=[0.0] * d, scale=[1.0] * d)
    adapter = TorchTabularClassifier(nn.Sequential(first, nn.ReLU(), last), pre, features, {}, ("no", "yes"), "planted")
    rng = np.random.default_rng(0)
    adapter.background = pd.DataFrame(rng.normal(size=(30, d)), columns=features)
    return adapter, first, last


X = {"x0": 1.0, "x1": 0.5, "x2": -0.3, "x3": 0.8}


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_neuron_ablation_finds_the_planted_neuron(planted, mode):
    adapter, first, last = planted
    result = NeuronAblation(mode=mode).localize(adapter, Example("p", X), target="yes")
    assert result.components == tuple(Component("neuron", 0, i) for i in range(8))
    assert result.components[result.ranking()[0]] == Component("neuron", 0, PLANTED)
    assert result.top(1)[0][0] == f"L0N{PLANTED}"
    # with a linear read-out the effect is analytic: readout weight times (activation - replacement)
    with torch.no_grad():
        act = torch.relu(first(adapter.transform(X)))[0].numpy()
        bg = torch.relu(first(adapter.transform(adapter.background))).mean(0).numpy()
    readout = (last.weight[1] - last.weight[0]).detach().numpy()
    replacement = 0.0 if mode == "zero" else bg
    np.testing.assert_allclose(result.effects, readout * (act - replacement), atol=1e-5)


def test_loan_last_layer_ablation_is_analytic(loan_adapter):
    """Zeroing a last-layer neuron removes exactly its read-out contribution."""
    result = NeuronAblation(mode="zero").localize(loan_adapter, SEED_ROW, target="approved")
    assert len(result.components) == 6 * 32
    captured = {}
    site = loan_adapter.site(Component("neuron", 5, 0))
    assert site.kind == "forward"  # a tabular neuron is read on the output of the l-th ReLU
    handle = site.module.register_forward_hook(lambda m, a, out: captured.setdefault("a", out.detach()))
    try:
        with torch.no_grad():
            loan_adapter.run(loan_adapter.forward_inputs(SEED_ROW))
    finally:
        handle.remove()
    readout = list(loan_adapter.model.modules())[-1]
    assert isinstance(readout, nn.Linear)
    contribution = ((readout.weight[1] - readout.weight[0]) * captured["a"][0]).detach().numpy()
    last = [i for i, c in enumerate(result.components) if c.layer == 5]
    np.testing.assert_allclose(result.effects[last], contribution, atol=1e-5)
    assert n_hooks(loan_adapter.model) == 0


# --- errors -------------------------------------------------------------------------------------

def test_unknown_mode_raises(tiny_sentiment):
    with pytest.raises(TwopathError, match="ablation mode"):
        HeadAblation(mode="median").localize(tiny_sentiment, SEED_TEXT, target="positive")


def test_mean_ablation_needs_a_background(tiny_sentiment, loan_dir):
    bare = HFTextClassifier(tiny_sentiment.model, tiny_sentiment.tokenizer)
    assert bare.background == []
    with pytest.raises(TwopathError, match="reference sample"):
        HeadAblation(mode="mean").localize(bare, SEED_TEXT, target="positive")
    table = TorchTabularClassifier.load(loan_dir)
    with pytest.raises(TwopathError, match="reference sample"):
        NeuronAblation(mode="mean").localize(table, SEED_ROW, target="approved")
    # zero ablation needs none
    assert NeuronAblation(mode="zero").localize(table, SEED_ROW, target="approved").effects.size == 192


def test_head_ablation_is_text_only(loan_adapter):
    with pytest.raises(TwopathError, match="does not support"):
        MECHANISTIC_METHODS.create("head_ablation").localize(loan_adapter, SEED_ROW, target="approved")


def test_unknown_target_and_output_raise(tiny_sentiment):
    with pytest.raises(TwopathError, match="unknown target label"):
        HeadAblation().localize(tiny_sentiment, SEED_TEXT, target="neutral")
    with pytest.raises(TwopathError, match="output space"):
        HeadAblation(output="odds").localize(tiny_sentiment, SEED_TEXT, target="positive")


def test_probability_output_space(tiny_sentiment):
    result = HeadAblation(mode="zero", output="probability").localize(tiny_sentiment, SEED_TEXT, target="positive")
    assert result.metric == "probability_drop"
    clean_p = result.meta["clean_probability"]
    np.testing.assert_allclose(result.effects, clean_p - np.asarray(result.meta["probability"]), atol=1e-6)
    assert result.clean == pytest.approx(clean_p, abs=1e-6)
    assert text_output(tiny_sentiment, sentiment.SEED_SENTENCE, space="probability") == pytest.approx(clean_p, abs=1e-5)
