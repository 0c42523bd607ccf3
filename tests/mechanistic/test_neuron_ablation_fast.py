"""The MLP neuron sweep's fast path (memoized keep-mask rows, hooks called in the MLP's loop, the
clean row read out with the ablated ones) gives the numbers of the plain paths, and never serves
numbers of another model, background or component list."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from tests.helpers import n_hooks
from twopath.comparisons.sanity import randomized_copy
from twopath.datasets import loan
from twopath.mechanistic.ablation import NeuronAblation, each_masked
from twopath.mechanistic.base import logits_output
from twopath.mechanistic.circuits import masked_logits
from twopath.runtime.adapter import target_output
from twopath.runtime.hooks import Hook, hooked
from twopath.runtime.interventions import Edit, MaskedAblation, ablate, intervene
from twopath.runtime.tabular import TorchTabularClassifier
from twopath.runtime.trace import Trace, caches, forget
from twopath.types import Component, Example

SEED_ROW = Example(loan.SEED_EXAMPLE_ID, dict(loan.SEED_APPLICANT))


def _fresh(loan_dir, background) -> TorchTabularClassifier:
    adapter = TorchTabularClassifier.load(loan_dir)
    adapter.background = background
    return adapter


def _reference(adapter, components, example=SEED_ROW, target=1) -> tuple[np.ndarray, np.ndarray]:
    """The keep-mask path as it was: a fresh MaskedAblation, registered hooks, masked_logits."""
    inputs = adapter.forward_inputs(example)
    keep = ~np.eye(len(components), dtype=bool)
    logits = masked_logits(adapter, MaskedAblation(adapter, components), inputs, keep).float()
    return target_output(logits, target).numpy(), torch.softmax(logits, -1)[:, target].numpy()


def _naive(adapter, example=SEED_ROW, target=1) -> np.ndarray:
    """One batch-size-1 forward pass per neuron, each under its own edit."""
    inputs = adapter.forward_inputs(example)
    with torch.no_grad():
        clean = float(target_output(adapter.run(inputs), target)[0])
        out = []
        for edit in ablate(adapter, adapter.components("neuron"), "mean"):
            with intervene(adapter, [Edit(0, edit.component, edit.value)]):
                out.append(float(target_output(adapter.run(inputs), target)[0]))
    return clean - np.asarray(out)


def test_localize_equals_the_registered_hook_path_bit_for_bit(loan_dir, loan_background):
    adapter = _fresh(loan_dir, loan_background)
    components = adapter.components("neuron")
    outputs, probs = _reference(adapter, components)
    clean, clean_prob = logits_output(adapter, Trace.of(adapter, SEED_ROW).logits, 1, "logit_diff")
    for _ in range(2):  # the second call runs the memoized rows
        result = NeuronAblation().localize(adapter, SEED_ROW, target="approved")
        assert result.clean == clean and result.meta["clean_probability"] == clean_prob
        np.testing.assert_array_equal(result.effects, (clean - outputs).astype(float))
        assert result.meta["probability"] == [float(p) for p in probs]
        assert all(type(p) is float for p in result.meta["probability"])
    assert n_hooks(adapter.model) == 0
    np.testing.assert_allclose(result.effects, _naive(adapter), atol=1e-6)


def test_each_masked_in_several_passes_equals_the_reference(loan_dir, loan_background):
    adapter = _fresh(loan_dir, loan_background)
    adapter.max_rows = 50  # four passes of at most 50 rows
    components = adapter.components("neuron")
    outputs, probs = each_masked(adapter, adapter.forward_inputs(SEED_ROW), components, 1, "logit_diff")
    ref_outputs, ref_probs = _reference(adapter, components)
    np.testing.assert_array_equal(outputs, ref_outputs)
    np.testing.assert_array_equal(probs, ref_probs)
    empty = each_masked(adapter, adapter.forward_inputs(SEED_ROW), [], 1, "logit_diff")
    assert [len(a) for a in empty] == [0, 0]


def test_a_subset_of_layers_is_not_served_the_whole_sweep(loan_adapter):
    every = NeuronAblation().localize(loan_adapter, SEED_ROW, target="approved")
    last = NeuronAblation(layers=(5,)).localize(loan_adapter, SEED_ROW, target="approved")
    assert last.components == every.components[-32:]
    ref_outputs, _ = _reference(loan_adapter, list(last.components))
    np.testing.assert_array_equal(last.effects, (last.clean - ref_outputs).astype(float))
    again = NeuronAblation().localize(loan_adapter, SEED_ROW, target="approved")
    np.testing.assert_array_equal(again.effects, every.effects)


def test_new_weights_after_forget_give_the_new_models_numbers(loan_dir, loan_background):
    """The memoized rows hold reference means of the weights they were built on: forget() (which
    every weight change calls) drops them, and a randomized copy never sees the original's."""
    adapter = _fresh(loan_dir, loan_background)
    before = NeuronAblation().localize(adapter, SEED_ROW, target="approved")
    clone = randomized_copy(adapter, n_blocks=2, seed=3)
    on_clone = NeuronAblation().localize(clone, SEED_ROW, target="approved")
    assert not np.allclose(on_clone.effects, before.effects)
    np.testing.assert_allclose(on_clone.effects, _naive(clone), atol=1e-6)
    with torch.no_grad():  # an in-place edit of the weights, announced with forget()
        adapter.model[-1].weight.mul_(2.0)
    forget(adapter)
    after = NeuronAblation().localize(adapter, SEED_ROW, target="approved")
    np.testing.assert_array_equal(after.effects,
                                  NeuronAblation().localize(_scaled(loan_dir, loan_background), SEED_ROW,
                                                            target="approved").effects)


def _scaled(loan_dir, background) -> TorchTabularClassifier:
    adapter = _fresh(loan_dir, background)
    with torch.no_grad():
        adapter.model[-1].weight.mul_(2.0)
    return adapter


def test_a_new_background_gives_new_reference_means(loan_dir, loan_background):
    adapter = _fresh(loan_dir, loan_background)
    before = NeuronAblation().localize(adapter, SEED_ROW, target="approved")
    other = loan_background.sample(200, random_state=7, replace=True).reset_index(drop=True)
    other["monthly_income"] = other["monthly_income"] * 1.5
    adapter.background = other
    after = NeuronAblation().localize(adapter, SEED_ROW, target="approved")
    fresh = NeuronAblation().localize(_fresh(loan_dir, other), SEED_ROW, target="approved")
    assert not np.array_equal(after.effects, before.effects)
    np.testing.assert_array_equal(after.effects, fresh.effects)


def test_the_memo_does_not_keep_the_adapter_alive(loan_dir, loan_background):
    adapter = _fresh(loan_dir, loan_background)
    NeuronAblation().localize(adapter, SEED_ROW, target="approved")
    assert any(isinstance(k, tuple) and k[0] == "each masked" for k in caches(adapter).evaluators)
    ref = weakref.ref(adapter)
    del adapter
    gc.collect()
    assert ref() is None


# --- the adapter's parts of the fast path ---------------------------------------------------------


def test_run_hooked_equals_registered_hooks(loan_adapter):
    inputs = {"x": loan_adapter.forward_inputs(SEED_ROW)["x"].repeat(4, 1)}
    relus = loan_adapter.hidden_modules
    seen: list[tuple[int, int]] = []

    def double(m, args, out):
        seen.append((id(m), id(args[0])))
        return out * 2.0

    def observe(m, args, out):
        seen.append((id(m), -1))  # returns None: the output stays

    def shift(m, args):
        return (args[0] + 1.0,)

    cases = [
        [],
        [Hook(relus[0], double), Hook(relus[3], observe), Hook(relus[3], double)],
        [Hook(relus[1], double), Hook(relus[2], shift, "pre")],  # a pre-hook: registered the ordinary way
    ]
    for hooks in cases:
        with torch.no_grad():
            seen.clear()
            direct = loan_adapter.run_hooked(inputs, hooks)
            order = list(seen)
            seen.clear()
            with hooked(loan_adapter.model, hooks):
                registered = loan_adapter.run(inputs)
        assert torch.equal(direct, registered)
        assert [m for m, _ in order] == [m for m, _ in seen]
    assert n_hooks(loan_adapter.model) == 0
    other = torch.nn.ReLU()
    with pytest.raises(ValueError, match="not a module"):
        loan_adapter.run_hooked(inputs, [Hook(other, double)])


def test_run_hooked_respects_hooks_already_on_the_model(loan_adapter):
    inputs = loan_adapter.forward_inputs(SEED_ROW)
    calls = []
    handle = loan_adapter.model.register_forward_hook(lambda m, a, out: calls.append(1))
    try:
        with torch.no_grad():
            loan_adapter.run_hooked(inputs, [Hook(loan_adapter.hidden_modules[0], lambda m, a, o: o * 0)])
    finally:
        handle.remove()
    assert calls == [1]


def test_two_label_output_is_target_output_bit_for_bit(loan_adapter):
    torch.manual_seed(0)
    logits = torch.randn(2000, 2) * torch.logspace(-40, 38, 2000)[:, None]
    special = torch.tensor([[0.0, -0.0], [-0.0, -0.0], [-0.0, 0.0], [float("inf"), 1.0], [1.0, float("inf")],
                            [float("-inf"), 1.0], [1.0, float("-inf")], [float("nan"), 1.0], [1.0, float("nan")],
                            [float("inf"), float("inf")], [float("-inf"), float("-inf")]])
    for dtype, bits in ((torch.float32, torch.int32), (torch.float64, torch.int64)):
        x = torch.cat([logits, special]).to(dtype)
        for target in (0, 1):
            for space in ("logit_diff", "probability"):
                mine, reference = loan_adapter.output(x, target, space), target_output(x, target, space)
                assert torch.equal(mine.view(bits), reference.view(bits))
    three = torch.randn(5, 3)
    assert torch.equal(loan_adapter.output(three, 2), target_output(three, 2))


def test_component_lists_are_built_once_and_handed_out_as_copies(loan_adapter):
    first = loan_adapter.components("neuron")
    first.clear()
    second = loan_adapter.components("neuron")
    assert second == [Component("neuron", layer, i) for layer in range(6) for i in range(32)]
    assert all(a is b for a, b in zip(second, loan_adapter.components("neuron"), strict=True))
    assert loan_adapter.components("block") == [Component("layer", layer) for layer in range(6)]
