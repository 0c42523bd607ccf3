"""Prefix caching: starting a pass at layer l from the clean run's cached state changes no result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import n_hooks, swapped
from twopath.datasets import loan, sentiment
from twopath.mechanistic.ablation import (
    BlockAblation,
    HeadAblation,
    NeuronAblation,
    PositionAblation,
)
from twopath.mechanistic.base import batched_edits, sweep
from twopath.mechanistic.patching import patch_components
from twopath.runtime.interventions import (
    Edit,
    ablate,
    capture,
    intervene,
    read,
    repeat_inputs,
    site_key,
)
from twopath.models.prefix import (
    PrefixCache,
    capture_layer_inputs,
    pays_off,
    skip_layers,
    start_layer,
    supports,
)
from twopath.types import Component, Example, TwopathError

SEED_TEXT = Example(sentiment.SEED_EXAMPLE_ID, sentiment.SEED_SENTENCE)
SEED_ROW = Example(loan.SEED_EXAMPLE_ID, dict(loan.SEED_APPLICANT))
CONTRAST_ROW = Example("loan-contrast", dict(loan.CONTRAST_APPLICANT))
ATOL = 1e-5


def _logits(adapter, inputs):
    with torch.no_grad():
        return adapter.run(inputs)


def _forward_overrides(adapter) -> list[str]:
    """Modules of the model whose ``forward`` is an instance attribute (should be none)."""
    return [name for name, m in adapter.model.named_modules() if "forward" in m.__dict__]


def _naive(adapter, inputs, rows, target=1):
    """One unbatched forward per row with ``intervene``: the reference every sweep must match."""
    out = []
    for row in rows:
        with torch.no_grad(), intervene(adapter, [Edit(0, e.component, e.value) for e in row]):
            out.append(float(adapter.output(adapter.run(inputs), target)[0]))
    return np.asarray(out)


# --- the cache itself -------------------------------------------------------------------------

def test_cached_states_are_the_hidden_states_between_layers(tiny_text):
    inputs = tiny_text.forward_inputs(SEED_TEXT)
    states, logits, tuple_out = capture_layer_inputs(tiny_text, inputs)
    with torch.no_grad():
        reference = tiny_text.model(**inputs, output_hidden_states=True)
    assert len(states) == tiny_text.n_layers + 1 == len(reference.hidden_states)
    for ours, theirs in zip(states, reference.hidden_states, strict=True):
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    torch.testing.assert_close(logits, reference.logits, atol=ATOL, rtol=0)
    assert len(tuple_out) == tiny_text.n_layers


def test_running_from_every_layer_gives_the_clean_logits(tiny_text):
    inputs = tiny_text.forward_inputs(SEED_TEXT)
    clean = _logits(tiny_text, inputs)
    prefix = PrefixCache.capture(tiny_text, inputs)
    assert prefix is not None and supports(tiny_text) and pays_off(tiny_text)
    before = n_hooks(tiny_text.model)
    with torch.no_grad():
        for start in range(tiny_text.n_layers + 1):
            out = prefix.run(start, 3)
            assert out.shape == (3, len(tiny_text.labels))
            torch.testing.assert_close(out, clean.expand(3, -1), atol=ATOL, rtol=0)
    assert n_hooks(tiny_text.model) == before
    assert _forward_overrides(tiny_text) == []


def test_starting_inside_a_layer_replays_the_clean_submodules(tiny_text):
    """Head and neuron sites start inside their layer; with no edit the logits are the clean ones."""
    inputs = tiny_text.forward_inputs(SEED_TEXT)
    clean = _logits(tiny_text, inputs)
    prefix = PrefixCache.capture(tiny_text, inputs)
    assert prefix is not None
    for layer in range(tiny_text.n_layers):
        head, neuron = Component("head", layer, 1), Component("neuron", layer, 3)
        head_key, neuron_key = prefix.key([head]), prefix.key([neuron])
        assert head_key[0] == neuron_key[0] == layer
        assert 0 <= head_key[1] < neuron_key[1]  # the head site comes first in the layer
        assert prefix.key([head, neuron]) == head_key
        assert prefix.key([neuron, Component("resid", layer - 1, position=0)] if layer else [neuron]) == (
            (layer, -1) if layer else neuron_key)
        replayed = {id(m) for m, _ in prefix._replayed(*neuron_key)}
        assert id(tiny_text.neuron_site(layer)) in replayed  # the activation itself is replayed
        assert prefix._replayed(*head_key)  # the query/key/value work is replayed
        assert id(tiny_text.head_site(layer)) not in {id(m) for m, _ in prefix._replayed(*head_key)}
        with torch.no_grad():
            for key in (head_key, neuron_key):
                torch.testing.assert_close(prefix.run(key, 2), clean.expand(2, -1), atol=ATOL, rtol=0)
    assert _forward_overrides(tiny_text) == []


def test_running_the_mlp_from_every_layer_gives_the_clean_logits(loan_adapter):
    inputs = loan_adapter.forward_inputs(SEED_ROW)
    clean = _logits(loan_adapter, inputs)
    prefix = PrefixCache.capture(loan_adapter, inputs)
    assert prefix is not None and prefix.n_layers == loan_adapter.n_layers
    assert supports(loan_adapter) and not pays_off(loan_adapter)
    with torch.no_grad():
        for start in range(loan_adapter.n_layers + 1):
            torch.testing.assert_close(prefix.run(start, 2), clean.expand(2, -1), atol=ATOL, rtol=0)


def test_start_layer_per_site_kind():
    assert start_layer(Component("head", 3, 1)) == 3
    assert start_layer(Component("neuron", 3, 1)) == 3
    assert start_layer(Component("attn", 3)) == 3
    assert start_layer(Component("resid", 3, position=0)) == 4  # the output of layer 3 is cached
    assert start_layer(Component("layer", 3)) == 4
    assert start_layer(Component("layer", 3), text=False) == 3  # an MLP's ReLU output: the ReLU runs


# --- restored after errors --------------------------------------------------------------------

def test_forwards_are_restored_after_an_exception_inside_the_block(tiny_text):
    inputs = tiny_text.forward_inputs(SEED_TEXT)
    before_logits = _logits(tiny_text, inputs)
    before_hooks = n_hooks(tiny_text.model)
    states, _, tuple_out = capture_layer_inputs(tiny_text, inputs)
    start = tiny_text.n_layers  # every layer replaced, the embeddings too
    with pytest.raises(RuntimeError, match="boom"), skip_layers(tiny_text, states[start], start, tuple_out):
        assert _forward_overrides(tiny_text)  # the layers really are replaced inside the block
        raise RuntimeError("boom")
    assert _forward_overrides(tiny_text) == []
    assert n_hooks(tiny_text.model) == before_hooks
    assert torch.equal(_logits(tiny_text, inputs), before_logits)
    # a different input afterwards is computed from its own tokens, not from the cache
    other = tiny_text.forward_inputs(Example("other", "A dull and tedious film with no good scenes at all."))
    with torch.no_grad():
        direct = tiny_text.model(**other).logits
    assert torch.equal(_logits(tiny_text, other), direct)


def test_a_failing_edit_inside_a_prefix_sweep_leaves_the_model_unchanged(tiny_text):
    inputs = tiny_text.forward_inputs(SEED_TEXT)
    before_logits = _logits(tiny_text, inputs)
    before_hooks = n_hooks(tiny_text.model)
    bad = [[Edit(0, Component("head", 1, 0), None)], [Edit(0, Component("head", 1, tiny_text.n_heads + 5), None)]]
    with pytest.raises(TwopathError, match="heads per layer"):
        sweep(tiny_text, inputs, bad, 1, "logit_diff", 8, prefix_cache=True)
    assert _forward_overrides(tiny_text) == []
    assert n_hooks(tiny_text.model) == before_hooks
    assert torch.equal(_logits(tiny_text, inputs), before_logits)


# --- ablation sweeps: cached == full ---------------------------------------------------------

@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_prefix_cached_head_ablation_equals_the_full_sweep(tiny_text, mode):
    full = HeadAblation(mode=mode, prefix_cache=False).localize(tiny_text, SEED_TEXT, target="positive")
    cached = HeadAblation(mode=mode, prefix_cache=True, batch_size=3).localize(tiny_text, SEED_TEXT, target="positive")
    assert cached.components == full.components
    assert cached.clean == pytest.approx(full.clean, abs=ATOL)
    np.testing.assert_allclose(cached.effects, full.effects, atol=ATOL)
    np.testing.assert_allclose(cached.meta["probability"], full.meta["probability"], atol=ATOL)
    assert np.abs(full.effects).max() > 1e-3  # the comparison is not vacuous
    inputs = tiny_text.forward_inputs(SEED_TEXT)
    naive = _naive(tiny_text, inputs, [[e] for e in ablate(tiny_text, list(full.components), mode)])
    np.testing.assert_allclose(full.clean - naive, full.effects, atol=ATOL)


@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_prefix_cached_neuron_ablation_equals_the_full_sweep(tiny_text, mode):
    kwargs = {"mode": mode, "n_resamples": 2}
    full = NeuronAblation(prefix_cache=False, **kwargs).localize(tiny_text, SEED_TEXT, target="positive")
    cached = NeuronAblation(prefix_cache=True, batch_size=40, **kwargs).localize(tiny_text, SEED_TEXT, target="positive")
    assert cached.components == full.components
    np.testing.assert_allclose(cached.effects, full.effects, atol=ATOL)
    assert np.abs(full.effects).max() > 1e-4


def test_prefix_cached_block_and_position_ablation_equal_the_full_sweep(tiny_text):
    for method in (BlockAblation, PositionAblation):
        full = method(prefix_cache=False).localize(tiny_text, SEED_TEXT, target="positive")
        cached = method(prefix_cache=True, batch_size=5).localize(tiny_text, SEED_TEXT, target="positive")
        np.testing.assert_allclose(cached.effects, full.effects, atol=ATOL)
        assert np.abs(full.effects).max() > 1e-4


@pytest.mark.parametrize("method", [NeuronAblation, BlockAblation])
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_prefix_cached_mlp_ablation_equals_the_full_sweep(loan_adapter, method, mode):
    full = method(mode=mode, prefix_cache=False).localize(loan_adapter, SEED_ROW, target="approved")
    default = method(mode=mode, batch_size=7).localize(loan_adapter, SEED_ROW, target="approved")
    np.testing.assert_allclose(default.effects, full.effects, atol=ATOL)
    assert np.abs(full.effects).max() > 1e-3
    inputs = loan_adapter.forward_inputs(SEED_ROW)
    rows = [[e] for e in ablate(loan_adapter, list(full.components), mode)]
    naive = _naive(loan_adapter, inputs, rows)
    np.testing.assert_allclose(full.clean - naive, full.effects, atol=ATOL)
    # the MLP runs the full pass by default (cheaper); the cache itself gives the same numbers
    cached, _, _ = sweep(loan_adapter, inputs, rows, 1, "logit_diff", 7, prefix_cache=True)
    np.testing.assert_allclose(full.clean - cached, full.effects, atol=ATOL)


# --- mixed rows, patching values, vectorized edits -------------------------------------------

def _patch_rows(adapter, source, components):
    with torch.no_grad(), capture(adapter, components) as store:
        adapter.run(source)
    return [[Edit(0, c, read(adapter, c, store[site_key(c)]))] for c in components]


def test_patching_rows_and_rows_across_layers_match_one_forward_per_row(tiny_text):
    inputs = tiny_text.forward_inputs(SEED_TEXT)
    corrupted = tiny_text.forward_inputs(swapped(tiny_text, SEED_TEXT.raw))
    components = patch_components(tiny_text, inputs, ("head", "neuron", "resid", "layer"))
    rows = _patch_rows(tiny_text, corrupted, components)  # values shaped per position: (T, dh), (T,), (D,)
    # rows editing several layers, several kinds, and an empty row
    rows += [rows[0] + rows[-1], rows[5] + rows[len(rows) // 2] + rows[-3], []]
    rows += [[Edit(0, Component("head", 1, 0), None), Edit(0, Component("neuron", 0, 3), torch.tensor(0.5))]]
    naive = _naive(tiny_text, inputs, rows)
    for prefix_cache in (False, True):
        outputs, _, _ = sweep(tiny_text, inputs, rows, 1, "logit_diff", 16, prefix_cache=prefix_cache)
        np.testing.assert_allclose(outputs, naive, atol=ATOL)
    assert np.ptp(naive) > 1e-3


def test_mlp_patching_rows_match_one_forward_per_row(loan_adapter):
    inputs = loan_adapter.forward_inputs(SEED_ROW)
    contrast = loan_adapter.forward_inputs(CONTRAST_ROW)
    components = patch_components(loan_adapter, inputs, ("layer", "neuron"))
    rows = _patch_rows(loan_adapter, contrast, components)
    rows += [rows[3] + rows[-2], []]
    naive = _naive(loan_adapter, inputs, rows)
    for prefix_cache in (False, True):
        outputs, _, decisions = sweep(loan_adapter, inputs, rows, 1, "logit_diff", 50, prefix_cache=prefix_cache)
        np.testing.assert_allclose(outputs, naive, atol=ATOL)
    assert len(decisions) == len(rows)


def test_vectorized_edits_fall_back_where_order_matters(tiny_text):
    """The same slot twice in one row: the later edit wins, as with ``intervene``."""
    inputs = repeat_inputs(tiny_text.forward_inputs(SEED_TEXT), 2)
    head = Component("head", 0, 1)
    d = tiny_text.head_dim
    edits = [Edit(0, head, torch.ones(d)), Edit(0, head, None), Edit(1, Component("attn", 0), None),
             Edit(1, head, torch.full((d,), 3.0))]
    with torch.no_grad(), intervene(tiny_text, edits):
        expected = tiny_text.run(inputs)
    with torch.no_grad(), batched_edits(tiny_text, edits):
        got = tiny_text.run(inputs)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_sweep_with_no_rows_returns_empty_arrays(tiny_text):
    outputs, probs, decisions = sweep(tiny_text, tiny_text.forward_inputs(SEED_TEXT), [], 1, "logit_diff", 8,
                                      prefix_cache=True)
    assert len(outputs) == len(probs) == len(decisions) == 0
