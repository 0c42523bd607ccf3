"""The Trace: one clean run per example, and resuming it at a block changes no result."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

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
from twopath.runtime.hooks import Hook, hooked
from twopath.runtime.interventions import (
    Edit,
    ablate,
    capture,
    intervene,
    read,
    site_key,
)
from twopath.runtime.tabular import TorchTabularClassifier, build_mlp, fitted_preprocessor
from twopath.runtime.trace import Trace, caches, forget, repeat_inputs
from twopath.types import Component, Example, TwopathError

SEED_TEXT = Example(sentiment.SEED_EXAMPLE_ID, sentiment.SEED_SENTENCE)
SEED_ROW = Example(loan.SEED_EXAMPLE_ID, dict(loan.SEED_APPLICANT))
CONTRAST_ROW = Example("loan-contrast", dict(loan.CONTRAST_APPLICANT))
OTHER_TEXT = Example("other", "A dull and tedious film with no good scenes at all.")
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


def _hooked_forward(adapter, inputs, names):
    """The activations at the named sites on one forward pass, read with plain torch hooks."""
    sites = adapter.sites()
    store, handles = {}, []
    for name in names:
        site = sites[name]
        if site.kind == "pre":
            def pre(module, args, _name=name):
                store.setdefault(_name, args[0].detach().clone())
            handles.append(site.module.register_forward_pre_hook(pre))
        else:
            def post(module, args, output, _name=name):
                tensor = output[0] if isinstance(output, tuple) else output
                store.setdefault(_name, tensor.detach().clone())
            handles.append(site.module.register_forward_hook(post))
    try:
        with torch.no_grad():
            adapter.run(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return store


class _Calls:
    """Which blocks (and whether the input layer) ran, and any replaced ``forward`` seen meanwhile."""

    def __init__(self, adapter, first: nn.Module):
        self.adapter = adapter
        self.ran: list[int | str] = []
        self.overrides: list[str] = []
        self._handles = [first.register_forward_pre_hook(self._seen("input"))]
        self._handles += [block.register_forward_pre_hook(self._seen(i))
                          for i, block in enumerate(adapter.layer_modules)]

    def _seen(self, what):
        def hook(module, args):
            self.ran.append(what)
            self.overrides += _forward_overrides(self.adapter)
        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()


def _text_calls(adapter) -> _Calls:
    return _Calls(adapter, adapter.embedding_layer())


def _mlp_calls(adapter) -> _Calls:
    return _Calls(adapter, adapter.model[0])  # the first Linear: runs only on a full pass


def _model_calls(adapter):
    """A counter of whole-model forward passes (a pre-hook on the model; remove it after)."""
    count = [0]
    handle = adapter.model.register_forward_pre_hook(lambda m, a: count.__setitem__(0, count[0] + 1))
    return count, handle


# --- the clean run ------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["text", "tabular"])
def test_trace_logits_are_the_clean_forward_pass(which, tiny_text, loan_adapter):
    adapter, example = (tiny_text, SEED_TEXT) if which == "text" else (loan_adapter, SEED_ROW)
    inputs = adapter.inputs(example)
    assert adapter.forward_inputs(example).keys() == inputs.keys()
    trace = Trace(adapter, inputs)
    count, handle = _model_calls(adapter)
    try:
        first = trace.logits
        again = trace.logits
    finally:
        handle.remove()
    assert count[0] == 1 and again is first  # computed once, then kept
    assert first.dtype == torch.float32 and first.shape == (1, len(adapter.labels))
    torch.testing.assert_close(first, _logits(adapter, inputs).float(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("which", ["text", "tabular"])
def test_trace_of_is_one_trace_per_adapter_and_example(which, tiny_text, loan_adapter):
    adapter, example = (tiny_text, SEED_TEXT) if which == "text" else (loan_adapter, SEED_ROW)
    forget(adapter)
    trace = Trace.of(adapter, example)
    assert Trace.of(adapter, example) is trace
    assert list(caches(adapter).traces.values()) == [trace]
    for name, tensor in adapter.inputs(example).items():
        assert torch.equal(trace.inputs[name], tensor)
    torch.testing.assert_close(trace.logits, _logits(adapter, adapter.inputs(example)).float(), atol=ATOL, rtol=0)
    # the same id with another input is another example: never served the first one's run
    other_raw = OTHER_TEXT.raw if which == "text" else dict(loan.CONTRAST_APPLICANT)
    other = Trace.of(adapter, Example(example.id, other_raw))
    assert other is not trace
    assert not torch.allclose(other.logits, trace.logits)
    forget(adapter)
    assert not caches(adapter).traces
    assert Trace.of(adapter, example) is not trace


def test_trace_activations_equal_a_hooked_forward(tiny_text):
    inputs = tiny_text.inputs(SEED_TEXT)
    n_tokens = inputs["input_ids"].shape[1]
    names = list(tiny_text.sites())
    assert set(names) == {f"blocks.{layer}.{site}" for layer in range(tiny_text.n_layers)
                          for site in ("attn.hook_z", "mlp.hook_post", "hook_resid_pre", "hook_resid_post")}
    with torch.no_grad():
        reference = tiny_text.model(**inputs, output_hidden_states=True)
    before = n_hooks(tiny_text.model)  # transformers leaves its own output recorders on
    trace = Trace(tiny_text, inputs)
    got = trace.activations(names)
    expected = _hooked_forward(tiny_text, inputs, names)
    assert list(got) == names
    for name in names:
        torch.testing.assert_close(got[name], expected[name], atol=ATOL, rtol=0)
    assert got["blocks.0.attn.hook_z"].shape == (1, n_tokens, 32)  # all heads of the layer
    assert got["blocks.0.mlp.hook_post"].shape == (1, n_tokens, 64)  # the neurons
    # the residual stream after block l is the model's hidden state l + 1
    assert len(reference.hidden_states) == tiny_text.n_layers + 1
    for layer in range(tiny_text.n_layers):
        torch.testing.assert_close(got[f"blocks.{layer}.hook_resid_post"], reference.hidden_states[layer + 1],
                                   atol=ATOL, rtol=0)
        torch.testing.assert_close(got[f"blocks.{layer}.hook_resid_pre"], reference.hidden_states[layer],
                                   atol=ATOL, rtol=0)
    # recorded once: asking again (in any order, any subset) runs no forward pass
    count, handle = _model_calls(tiny_text)
    try:
        subset = trace.activations(names[::-2])
    finally:
        handle.remove()
    assert count[0] == 0 and list(subset) == names[::-2]
    count, handle = _model_calls(tiny_text)
    try:  # the recording pass was a clean run: its logits are the trace's, no pass needed
        torch.testing.assert_close(trace.logits, reference.logits.float(), atol=ATOL, rtol=0)
    finally:
        handle.remove()
    assert count[0] == 0
    assert all(subset[n] is got[n] for n in subset)
    assert n_hooks(tiny_text.model) == before


def test_mlp_trace_activations_equal_a_hooked_forward(loan_adapter):
    inputs = loan_adapter.inputs(SEED_ROW)
    names = list(loan_adapter.sites())
    assert names == [f"blocks.{layer}.hook_post" for layer in range(loan_adapter.n_layers)]
    got = Trace(loan_adapter, inputs).activations(names)
    expected = _hooked_forward(loan_adapter, inputs, names)
    for layer, name in enumerate(names):
        torch.testing.assert_close(got[name], expected[name], atol=ATOL, rtol=0)
        assert got[name].shape == (1, loan_adapter.widths[layer])
    assert n_hooks(loan_adapter.model) == 0


# --- resuming at a block ------------------------------------------------------------------------

def test_resuming_at_every_block_gives_the_clean_logits(tiny_text):
    inputs = tiny_text.inputs(SEED_TEXT)
    clean = _logits(tiny_text, inputs)
    assert tiny_text.can_resume() and tiny_text.resume_pays
    before = n_hooks(tiny_text.model)
    assert _forward_overrides(tiny_text) == []
    trace = Trace(tiny_text, inputs)
    count, handle = _model_calls(tiny_text)
    try:
        trace.prepare_resume()
        trace.prepare_resume()  # recorded once
        torch.testing.assert_close(trace.logits, clean.float(), atol=ATOL, rtol=0)  # from the same pass
    finally:
        handle.remove()
    assert count[0] == 1
    for start in range(tiny_text.n_layers + 1):
        for n in (1, 3):
            with torch.no_grad(), _text_calls(tiny_text) as calls:
                out = trace.run_from(start, n)
            assert out.shape == (n, len(tiny_text.labels))
            torch.testing.assert_close(out, clean.expand(n, -1), atol=ATOL, rtol=0)
            if 0 < start < tiny_text.n_layers:  # blocks before ``start`` and the embeddings are skipped
                assert calls.ran == list(range(start, tiny_text.n_layers))
            else:  # nothing to skip: the full pass
                assert calls.ran == ["input", *range(tiny_text.n_layers)]
            assert calls.overrides == []  # no forward is replaced, not even while resuming
    assert n_hooks(tiny_text.model) == before
    assert _forward_overrides(tiny_text) == []


def test_resuming_the_mlp_at_every_hidden_layer_gives_the_clean_logits(loan_adapter):
    inputs = loan_adapter.inputs(SEED_ROW)
    clean = _logits(loan_adapter, inputs)
    assert loan_adapter.can_resume() and not loan_adapter.resume_pays  # supported, but not worth it
    assert _forward_overrides(loan_adapter) == []
    trace = Trace(loan_adapter, inputs)
    trace.prepare_resume()
    for start in range(loan_adapter.n_layers + 1):
        for n in (1, 3):
            with torch.no_grad(), _mlp_calls(loan_adapter) as calls:
                out = trace.run_from(start, n)
            torch.testing.assert_close(out, clean.expand(n, -1), atol=ATOL, rtol=0)
            if 0 < start < loan_adapter.n_layers:  # starts at the ``start``-th ReLU, from its input
                assert calls.ran == list(range(start, loan_adapter.n_layers))
            else:
                assert calls.ran == ["input", *range(loan_adapter.n_layers)]
            assert calls.overrides == []
    assert n_hooks(loan_adapter.model) == 0
    assert _forward_overrides(loan_adapter) == []


@pytest.mark.parametrize("which", ["text", "tabular"])
def test_run_from_without_prepare_resume_raises(which, tiny_text, loan_adapter):
    adapter, example = (tiny_text, SEED_TEXT) if which == "text" else (loan_adapter, SEED_ROW)
    before = n_hooks(adapter.model)
    trace = Trace(adapter, adapter.inputs(example))
    assert adapter.can_resume()
    for start in range(1, adapter.n_layers):
        with pytest.raises(RuntimeError, match="prepare_resume"):
            trace.run_from(start, 2)
    assert n_hooks(adapter.model) == before and _forward_overrides(adapter) == []


def test_a_model_that_cannot_resume_runs_the_full_pass():
    """An MLP that is not a ``Sequential`` cannot start at a hidden layer: ``run_from`` runs it all."""

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = build_mlp(2, [4, 3])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    torch.manual_seed(0)
    pre = fitted_preprocessor(["a", "b"], {}, mean=[0.0, 0.0], scale=[1.0, 1.0])
    adapter = TorchTabularClassifier(Wrapped(), pre, ["a", "b"], {})
    assert not adapter.can_resume() and adapter.n_layers == 2
    inputs = adapter.inputs(Example("w", {"a": 0.3, "b": -1.2}))
    clean = _logits(adapter, inputs)
    trace = Trace(adapter, inputs)
    for start in range(adapter.n_layers + 1):  # no prepare_resume needed
        with torch.no_grad():
            torch.testing.assert_close(trace.run_from(start, 3), clean.expand(3, -1), atol=ATOL, rtol=0)
    trace.prepare_resume()  # nothing to record
    with torch.no_grad():
        torch.testing.assert_close(trace.run_from(1, 2), clean.expand(2, -1), atol=ATOL, rtol=0)


# --- start at block l: every edited component of layer l is computed from the state entering l --

TEXT_KINDS = [Component("head", 1, 1), Component("neuron", 1, 3), Component("attn", 1), Component("mlp", 1),
              Component("resid", 1, position=2), Component("layer", 1)]


@pytest.mark.parametrize("component", TEXT_KINDS, ids=str)
def test_a_row_editing_layer_l_starts_at_block_l(tiny_text, component):
    inputs = tiny_text.inputs(SEED_TEXT)
    before = n_hooks(tiny_text.model)
    trace = Trace(tiny_text, inputs)
    trace.prepare_resume()
    first = Component(component.kind, 0, component.index, component.position)
    rows = [[Edit(0, component, None)], [Edit(0, first, None)], [Edit(0, first, None), Edit(0, component, None)]]
    naive = _naive(tiny_text, inputs, rows)
    with _text_calls(tiny_text) as calls:
        outputs, _, _ = sweep(tiny_text, inputs, rows, 1, "logit_diff", 8, prefix_cache=trace)
    np.testing.assert_allclose(outputs, naive, atol=ATOL)
    # the rows touching layer 0 run everything (one batch); the layer-1 row starts at block 1
    # (a resid or layer edit included: block 1 computes the edited state from the one entering it)
    assert calls.ran == ["input", 0, 1, 1]
    assert calls.overrides == []
    assert n_hooks(tiny_text.model) == before


@pytest.mark.parametrize("component", [Component("neuron", 3, 7), Component("layer", 3), Component("mlp", 3)], ids=str)
def test_an_mlp_row_editing_layer_l_starts_at_the_lth_relu(loan_adapter, component):
    inputs = loan_adapter.inputs(SEED_ROW)
    rows = [[Edit(0, component, None)]]
    naive = _naive(loan_adapter, inputs, rows)
    trace = Trace(loan_adapter, inputs)
    trace.prepare_resume()
    with _mlp_calls(loan_adapter) as calls:
        outputs, _, _ = sweep(loan_adapter, inputs, rows, 1, "logit_diff", 8, prefix_cache=trace)
    np.testing.assert_allclose(outputs, naive, atol=ATOL)
    assert calls.ran == [3, 4, 5]  # the edited ReLU itself runs, so its output can be edited
    if component.kind != "neuron":  # a whole hidden layer zeroed: the comparison is not vacuous
        assert abs(float(naive[0]) - float(loan_adapter.output(_logits(loan_adapter, inputs), 1)[0])) > 1e-4


# --- hooks come off after errors ----------------------------------------------------------------

def _boom(*args):
    raise RuntimeError("boom")


@contextlib.contextmanager
def _raw_hook(module, fn):
    """A plain torch hook (not twopath's ``hooked``, inside which a clean run is refused)."""
    handle = module.register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()


def test_hooks_come_off_after_an_exception_while_recording_or_resuming(tiny_text):
    inputs = tiny_text.inputs(SEED_TEXT)
    before_logits = _logits(tiny_text, inputs)
    before_hooks = n_hooks(tiny_text.model)
    trace = Trace(tiny_text, inputs)
    last = tiny_text.layer_modules[-1]
    with pytest.raises(RuntimeError, match="boom"), _raw_hook(last, _boom):
        trace.prepare_resume()  # the recording hooks are on every block when the pass fails
    assert n_hooks(tiny_text.model) == before_hooks
    assert _forward_overrides(tiny_text) == []
    with pytest.raises(RuntimeError, match="prepare_resume"):
        trace.run_from(1, 2)  # a failed recording is not a recording
    trace.prepare_resume()
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), hooked(tiny_text.model, [Hook(last, _boom)]):
        trace.run_from(1, 2)
    with pytest.raises(RuntimeError, match="boom"), _raw_hook(last, _boom):
        Trace(tiny_text, inputs).activations(list(tiny_text.sites()))
    assert n_hooks(tiny_text.model) == before_hooks
    assert _forward_overrides(tiny_text) == []
    assert torch.equal(_logits(tiny_text, inputs), before_logits)
    with torch.no_grad():
        torch.testing.assert_close(trace.run_from(1, 2), before_logits.expand(2, -1), atol=ATOL, rtol=0)
    # a different input afterwards is computed from its own tokens, not from the trace
    other = tiny_text.inputs(OTHER_TEXT)
    with torch.no_grad():
        direct = tiny_text.model(**other).logits
    assert torch.equal(_logits(tiny_text, other), direct)
    assert not torch.allclose(direct, before_logits)


def test_a_failing_edit_inside_a_resumed_sweep_leaves_the_model_unchanged(tiny_text):
    inputs = tiny_text.inputs(SEED_TEXT)
    before_logits = _logits(tiny_text, inputs)
    before_hooks = n_hooks(tiny_text.model)
    bad = [[Edit(0, Component("head", 1, 0), None)], [Edit(0, Component("head", 1, tiny_text.n_heads + 5), None)]]
    with pytest.raises(TwopathError, match="heads per layer"):
        sweep(tiny_text, inputs, bad, 1, "logit_diff", 8, prefix_cache=True)
    assert _forward_overrides(tiny_text) == []
    assert n_hooks(tiny_text.model) == before_hooks
    assert torch.equal(_logits(tiny_text, inputs), before_logits)


# --- ablation sweeps: resumed == full -----------------------------------------------------------

@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_resumed_head_ablation_equals_the_full_sweep(tiny_text, mode):
    full = HeadAblation(mode=mode, prefix_cache=False).localize(tiny_text, SEED_TEXT, target="positive")
    cached = HeadAblation(mode=mode, prefix_cache=True, batch_size=3).localize(tiny_text, SEED_TEXT, target="positive")
    assert cached.components == full.components
    assert cached.clean == pytest.approx(full.clean, abs=ATOL)
    np.testing.assert_allclose(cached.effects, full.effects, atol=ATOL)
    np.testing.assert_allclose(cached.meta["probability"], full.meta["probability"], atol=ATOL)
    assert np.abs(full.effects).max() > 1e-3  # the comparison is not vacuous
    inputs = tiny_text.inputs(SEED_TEXT)
    naive = _naive(tiny_text, inputs, [[e] for e in ablate(tiny_text, list(full.components), mode)])
    np.testing.assert_allclose(full.clean - naive, full.effects, atol=ATOL)


@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_resumed_neuron_ablation_equals_the_full_sweep(tiny_text, mode):
    kwargs = {"mode": mode, "n_resamples": 2}
    full = NeuronAblation(prefix_cache=False, **kwargs).localize(tiny_text, SEED_TEXT, target="positive")
    cached = NeuronAblation(prefix_cache=True, batch_size=40, **kwargs).localize(tiny_text, SEED_TEXT, target="positive")
    assert cached.components == full.components
    np.testing.assert_allclose(cached.effects, full.effects, atol=ATOL)
    assert np.abs(full.effects).max() > 1e-4


def test_resumed_block_and_position_ablation_equal_the_full_sweep(tiny_text):
    for method in (BlockAblation, PositionAblation):
        full = method(prefix_cache=False).localize(tiny_text, SEED_TEXT, target="positive")
        cached = method(prefix_cache=True, batch_size=5).localize(tiny_text, SEED_TEXT, target="positive")
        np.testing.assert_allclose(cached.effects, full.effects, atol=ATOL)
        assert np.abs(full.effects).max() > 1e-4


@pytest.mark.parametrize("method", [NeuronAblation, BlockAblation])
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_resumed_mlp_ablation_equals_the_full_sweep(loan_adapter, method, mode):
    full = method(mode=mode, prefix_cache=False).localize(loan_adapter, SEED_ROW, target="approved")
    default = method(mode=mode, batch_size=7).localize(loan_adapter, SEED_ROW, target="approved")
    np.testing.assert_allclose(default.effects, full.effects, atol=ATOL)
    assert np.abs(full.effects).max() > 1e-3
    inputs = loan_adapter.inputs(SEED_ROW)
    rows = [[e] for e in ablate(loan_adapter, list(full.components), mode)]
    naive = _naive(loan_adapter, inputs, rows)
    np.testing.assert_allclose(full.clean - naive, full.effects, atol=ATOL)
    # the MLP runs the full pass by default (cheaper); resuming itself gives the same numbers
    cached, _, _ = sweep(loan_adapter, inputs, rows, 1, "logit_diff", 7, prefix_cache=True)
    np.testing.assert_allclose(full.clean - cached, full.effects, atol=ATOL)


# --- mixed rows, patching values, vectorized edits -------------------------------------------

def _patch_rows(adapter, source, components):
    with torch.no_grad(), capture(adapter, components) as store:
        adapter.run(source)
    return [[Edit(0, c, read(adapter, c, store[site_key(c)]))] for c in components]


def test_patching_rows_and_rows_across_layers_match_one_forward_per_row(tiny_text):
    inputs = tiny_text.inputs(SEED_TEXT)
    corrupted = tiny_text.inputs(swapped(tiny_text, SEED_TEXT.raw))
    components = patch_components(tiny_text, inputs, ("head", "neuron", "resid", "layer"))
    rows = _patch_rows(tiny_text, corrupted, components)  # values shaped per position: (T, dh), (T,), (D,)
    # rows editing several layers, several kinds, and an empty row
    rows += [rows[0] + rows[-1], rows[5] + rows[len(rows) // 2] + rows[-3], []]
    rows += [[Edit(0, Component("head", 1, 0), None), Edit(0, Component("neuron", 0, 3), torch.tensor(0.5))]]
    naive = _naive(tiny_text, inputs, rows)
    for prefix_cache in (False, True, Trace(tiny_text, inputs)):
        outputs, _, _ = sweep(tiny_text, inputs, rows, 1, "logit_diff", 16, prefix_cache=prefix_cache)
        np.testing.assert_allclose(outputs, naive, atol=ATOL)
    assert np.ptp(naive) > 1e-3


def test_mlp_patching_rows_match_one_forward_per_row(loan_adapter):
    inputs = loan_adapter.inputs(SEED_ROW)
    contrast = loan_adapter.inputs(CONTRAST_ROW)
    components = patch_components(loan_adapter, inputs, ("layer", "neuron"))
    rows = _patch_rows(loan_adapter, contrast, components)
    rows += [rows[3] + rows[-2], []]
    naive = _naive(loan_adapter, inputs, rows)
    for prefix_cache in (False, True, Trace(loan_adapter, inputs)):
        outputs, _, decisions = sweep(loan_adapter, inputs, rows, 1, "logit_diff", 50, prefix_cache=prefix_cache)
        np.testing.assert_allclose(outputs, naive, atol=ATOL)
    assert len(decisions) == len(rows)
    assert np.ptp(naive) > 1e-3


def test_vectorized_edits_fall_back_where_order_matters(tiny_text):
    """The same slot twice in one row: the later edit wins, as with ``intervene``."""
    inputs = repeat_inputs(tiny_text.inputs(SEED_TEXT), 2)
    head = Component("head", 0, 1)
    d = tiny_text.head_dim()
    edits = [Edit(0, head, torch.ones(d)), Edit(0, head, None), Edit(1, Component("attn", 0), None),
             Edit(1, head, torch.full((d,), 3.0))]
    with torch.no_grad(), intervene(tiny_text, edits):
        expected = tiny_text.run(inputs)
    with torch.no_grad(), batched_edits(tiny_text, edits):
        got = tiny_text.run(inputs)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_sweep_with_no_rows_returns_empty_arrays(tiny_text):
    outputs, probs, decisions = sweep(tiny_text, tiny_text.inputs(SEED_TEXT), [], 1, "logit_diff", 8,
                                      prefix_cache=True)
    assert len(outputs) == len(probs) == len(decisions) == 0


def test_an_adapter_with_a_trace_and_an_evaluator_is_freed():
    import gc
    import weakref

    import pandas as pd

    from tests.helpers import linear_adapter
    from twopath.runtime.evaluator import evaluator_for

    adapter = linear_adapter(np.array([1.0, -2.0]), pd.DataFrame({"x0": [0.0, 1.0], "x1": [1.0, 0.0]}))
    ref = weakref.ref(adapter)
    example = Example("e", {"x0": 1.0, "x1": 2.0})
    assert Trace.of(adapter, example).logits.shape == (1, 2)
    assert evaluator_for(adapter, example, 1).full() == pytest.approx(-3.0)
    del adapter
    gc.collect()
    assert ref() is None


def test_a_clean_run_is_never_recorded_inside_an_intervention(tiny_text):
    inputs = tiny_text.forward_inputs(SEED_TEXT)
    trace = Trace(tiny_text, inputs)
    with intervene(tiny_text, [Edit(0, Component("head", 0, 0), None)]):
        with pytest.raises(RuntimeError, match="inside an intervention"):
            trace.logits  # noqa: B018
        with pytest.raises(RuntimeError, match="inside an intervention"):
            trace.prepare_resume()
    assert torch.allclose(trace.logits, _logits(tiny_text, inputs).float())
