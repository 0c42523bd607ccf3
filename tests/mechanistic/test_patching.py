"""Activation patching: identities that must hold exactly, and the loan bottleneck."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import n_hooks, swapped, tabular_output, text_output
from twopath.datasets import loan, sentiment
from twopath.mechanistic.patching import ActivationPatching
from twopath.runtime.adapter import target_output
from twopath.runtime.interventions import Edit, capture, intervene, read, site_key
from twopath.types import Component, Example, TwopathError

SEED_TEXT = Example(sentiment.SEED_EXAMPLE_ID, sentiment.SEED_SENTENCE)
SEED_ROW = Example(loan.SEED_EXAMPLE_ID, dict(loan.SEED_APPLICANT))
CONTRAST_ROW = Example("loan-contrast", dict(loan.CONTRAST_APPLICANT))


def _every_text_site(adapter, n_tokens: int) -> list[Component]:
    comps = [Component("head", layer, h) for layer in range(adapter.n_layers) for h in range(adapter.n_heads)]
    with torch.no_grad(), capture(adapter, [Component("neuron", layer, 0) for layer in range(adapter.n_layers)]) as store:
        adapter.run(adapter.forward_inputs(SEED_TEXT))
    comps += [Component("neuron", layer, i) for layer in range(adapter.n_layers)
              for i in range(store[(layer, "neuron")].shape[-1])]
    comps += [Component("resid", layer, position=p) for layer in range(adapter.n_layers) for p in range(n_tokens)]
    comps += adapter.components("layer")
    return comps


def _patch(adapter, source_inputs, base_inputs, components):
    """Run ``base_inputs`` with ``components`` overwritten by their values in the ``source_inputs`` run."""
    with torch.no_grad(), capture(adapter, components) as store:
        adapter.run(source_inputs)
    edits = [Edit(0, c, read(adapter, c, store[site_key(c)])) for c in components]
    with torch.no_grad(), intervene(adapter, edits):
        return adapter.run(base_inputs)


# --- clean into clean ---------------------------------------------------------------------------

def test_patching_a_copy_of_the_clean_input_is_refused(tiny_sentiment):
    copy = Example("copy", str(SEED_TEXT.raw))
    with pytest.raises(TwopathError, match="same output"):
        ActivationPatching().localize(tiny_sentiment, SEED_TEXT, target="positive", corrupted=copy)


def test_patching_clean_into_clean_text_changes_nothing(tiny_text):
    inputs = tiny_text.forward_inputs(SEED_TEXT)
    before = n_hooks(tiny_text.model)  # transformers may keep its own output-capturing hooks
    with torch.no_grad():
        clean = tiny_text.run(inputs)
    patched = _patch(tiny_text, inputs, inputs, _every_text_site(tiny_text, inputs["input_ids"].shape[1]))
    assert torch.equal(patched, clean)
    assert n_hooks(tiny_text.model) == before


def test_patching_clean_into_clean_tabular_changes_nothing(loan_adapter):
    inputs = loan_adapter.forward_inputs(SEED_ROW)
    with torch.no_grad():
        clean = loan_adapter.run(inputs)
    comps = loan_adapter.components("neuron") + loan_adapter.components("layer")
    assert torch.equal(_patch(loan_adapter, inputs, inputs, comps), clean)


# --- a whole layer carries everything ---------------------------------------------------------

def test_patching_a_whole_text_layer_restores_the_clean_run(tiny_text):
    corrupted = swapped(tiny_text, sentiment.SEED_SENTENCE)
    clean_in, corrupt_in = tiny_text.forward_inputs(SEED_TEXT), tiny_text.forward_inputs(corrupted)
    with torch.no_grad():
        clean, corrupt = tiny_text.run(clean_in), tiny_text.run(corrupt_in)
    assert not torch.allclose(clean, corrupt)
    n_tokens = clean_in["input_ids"].shape[1]
    for layer in range(tiny_text.n_layers):
        whole = _patch(tiny_text, clean_in, corrupt_in, [Component("layer", layer)])
        assert torch.allclose(whole, clean, atol=1e-5)
        every_position = [Component("resid", layer, position=p) for p in range(n_tokens)]
        assert torch.allclose(_patch(tiny_text, clean_in, corrupt_in, every_position), clean, atol=1e-5)


def test_patching_a_whole_mlp_layer_restores_the_clean_run(loan_adapter):
    clean_in, corrupt_in = loan_adapter.forward_inputs(SEED_ROW), loan_adapter.forward_inputs(CONTRAST_ROW)
    with torch.no_grad():
        clean, corrupt = loan_adapter.run(clean_in), loan_adapter.run(corrupt_in)
    for layer in range(loan_adapter.n_layers):
        assert torch.allclose(_patch(loan_adapter, clean_in, corrupt_in, [Component("layer", layer)]), clean, atol=1e-5)
        assert torch.allclose(_patch(loan_adapter, corrupt_in, clean_in, [Component("layer", layer)]), corrupt, atol=1e-5)


# --- ActivationPatching on text -------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_text_patching_reads_out_at_the_first_position(direction, tiny_sentiment):
    """The classifier reads position 0 of the last layer: that site alone restores (or breaks) it all."""
    adapter = tiny_sentiment
    corrupted = swapped(adapter, sentiment.SEED_SENTENCE)
    result = ActivationPatching(direction=direction).localize(adapter, SEED_TEXT, target="positive", corrupted=corrupted)
    n_tokens = adapter.encode(sentiment.SEED_SENTENCE).n_tokens
    assert result.components == tuple(Component("resid", layer, position=p)
                                       for layer in range(adapter.n_layers) for p in range(n_tokens))
    assert result.metric == "normalized_logit_diff"
    assert result.clean == pytest.approx(text_output(adapter, sentiment.SEED_SENTENCE), abs=1e-4)
    assert result.corrupted == pytest.approx(text_output(adapter, str(corrupted.raw)), abs=1e-4)
    effects = dict(zip(result.components, result.effects, strict=True))
    last = adapter.n_layers - 1
    restored, untouched = (1.0, 0.0) if direction == "denoise" else (0.0, 1.0)
    assert effects[Component("resid", last, position=0)] == pytest.approx(restored, abs=1e-3)
    for p in range(1, n_tokens):
        assert effects[Component("resid", last, position=p)] == pytest.approx(untouched, abs=1e-3)
    # in the first layer the swapped word's own position carries part of the difference
    swapped_position = adapter.encode(sentiment.SEED_SENTENCE).tokens.index("good")
    assert abs(effects[Component("resid", 0, position=swapped_position)] - untouched) > 0.05
    assert result.meta["direction"] == direction
    assert result.meta["tokens"][swapped_position] == "good"
    assert result.meta["corrupted_tokens"][swapped_position] == "bad"


def test_text_patching_on_every_architecture(tiny_text):
    corrupted = swapped(tiny_text, sentiment.SEED_SENTENCE)
    result = ActivationPatching().localize(tiny_text, SEED_TEXT, target="positive", corrupted=corrupted)
    effects = dict(zip(result.components, result.effects, strict=True))
    # normalizing by a tiny clean-corrupted gap (random weights) amplifies float noise
    tol = 1e-3 + 1e-5 / abs(result.clean - result.corrupted)
    assert effects[Component("resid", tiny_text.n_layers - 1, position=0)] == pytest.approx(1.0, abs=tol)
    assert np.all(np.isfinite(result.effects))


def test_patching_input_errors(tiny_sentiment):
    before = n_hooks(tiny_sentiment.model)
    with pytest.raises(TwopathError, match="corrupted"):
        ActivationPatching().localize(tiny_sentiment, SEED_TEXT, target="positive")
    longer = Example("longer", sentiment.SEED_SENTENCE.replace("good", "very good"))
    with pytest.raises(TwopathError, match="same"):
        ActivationPatching().localize(tiny_sentiment, SEED_TEXT, target="positive", corrupted=longer)
    corrupted = swapped(tiny_sentiment, sentiment.SEED_SENTENCE)
    with pytest.raises(TwopathError, match="direction"):
        ActivationPatching(direction="sideways").localize(tiny_sentiment, SEED_TEXT, target="positive", corrupted=corrupted)
    assert n_hooks(tiny_sentiment.model) == before


# --- ActivationPatching on the loan MLP -----------------------------------------------------------

@pytest.fixture(scope="module")
def loan_patching(loan_adapter):
    return ActivationPatching().localize(loan_adapter, SEED_ROW, target="approved", corrupted=CONTRAST_ROW)


def test_loan_patching_every_layer_is_a_bottleneck(loan_patching, loan_adapter):
    result = loan_patching
    assert result.meta["direction"] == "noise"  # default for tables
    layers = result.meta["layers"]
    assert [entry["layer"] for entry in layers] == list(range(loan_adapter.n_layers))
    for entry in layers:
        assert entry["width"] == 32
        assert entry["whole_layer_flips"] is True
        assert entry["whole_layer_normalized"] == pytest.approx(0.0, abs=1e-4)
        assert entry["neurons_to_flip"] is not None and 1 <= entry["neurons_to_flip"] <= 32
    effects = dict(zip(result.components, result.effects, strict=True))
    for layer in range(loan_adapter.n_layers):
        assert effects[Component("layer", layer)] == pytest.approx(0.0, abs=1e-4)
        assert f"L{layer}" in result.meta["flips"]
    f = tabular_output(loan_adapter, [loan.SEED_APPLICANT, loan.CONTRAST_APPLICANT])
    assert result.clean == pytest.approx(float(f[0]), abs=1e-4)
    assert result.corrupted == pytest.approx(float(f[1]), abs=1e-4)
    assert len(result.components) == 6 + 6 * 32


def test_loan_neurons_to_flip_is_minimal(loan_patching, loan_adapter):
    """Patching the reported top neurons flips the decision; one fewer does not."""
    clean_in, corrupt_in = loan_adapter.forward_inputs(SEED_ROW), loan_adapter.forward_inputs(CONTRAST_ROW)
    with torch.no_grad():
        clean_decision = int(loan_adapter.run(clean_in).argmax(-1))
    for entry in loan_patching.meta["layers"]:
        k = entry["neurons_to_flip"]
        top = [Component.parse(label) for label in entry["top_neurons"]]
        assert len(top) == k and all(c.kind == "neuron" and c.layer == entry["layer"] for c in top)
        flipped = int(_patch(loan_adapter, corrupt_in, clean_in, top).argmax(-1))
        assert flipped != clean_decision
        if k > 1:
            assert int(_patch(loan_adapter, corrupt_in, clean_in, top[:-1]).argmax(-1)) == clean_decision


def test_loan_denoising_restores_approval(loan_adapter):
    result = ActivationPatching(direction="denoise").localize(loan_adapter, SEED_ROW, target="approved",
                                                              corrupted=CONTRAST_ROW)
    for entry in result.meta["layers"]:
        assert entry["whole_layer_flips"] is True
        assert entry["whole_layer_normalized"] == pytest.approx(1.0, abs=1e-4)
    with torch.no_grad():
        logits = loan_adapter.run(loan_adapter.forward_inputs(SEED_ROW))
    assert float(target_output(logits, 1)[0]) == pytest.approx(result.clean, abs=1e-5)


def test_attribution_patching_is_exact_where_the_output_is_linear_in_the_site():
    """The loan MLP's logits are a linear function of its last hidden layer, so the gradient
    estimate of patching a last-layer neuron equals exact patching."""
    from twopath.datasets import loan
    from twopath.mechanistic import MECHANISTIC_METHODS
    from twopath.runtime.tabular import TorchTabularClassifier
    from twopath.seed import zoo
    from twopath.types import Example

    adapter = TorchTabularClassifier.load(zoo.loan_model(say=lambda _: None))
    example, contrast = Example("x", loan.SEED_APPLICANT), Example("c", loan.CONTRAST_APPLICANT)
    last = adapter.n_layers - 1
    exact = MECHANISTIC_METHODS.create("activation_patching", sites=("neuron",)).localize(
        adapter, example, target="approved", corrupted=contrast)
    approx = MECHANISTIC_METHODS.create("attribution_patching", sites=("neuron",)).localize(
        adapter, example, target="approved", corrupted=contrast)
    pairs = [(e, a) for c, e, a in zip(exact.components, exact.effects, approx.effects, strict=True) if c.layer == last]
    assert exact.labels == approx.labels
    assert len(pairs) == adapter.widths[last]
    exact_last, approx_last = map(np.array, zip(*pairs, strict=True))
    np.testing.assert_allclose(approx_last, exact_last, atol=1e-4)
    assert np.ptp(exact_last) > 1e-3  # the test is not vacuous: the neurons' effects differ
