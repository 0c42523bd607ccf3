"""Hooks always come off: after a normal exit, after an exception, and on a bad site."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import n_hooks
from twopath.runtime.hooks import Hook, first_tensor, hooked, replace_first
from twopath.runtime.interventions import Edit, capture, intervene
from twopath.types import Component, Example


@pytest.fixture
def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.tensor([[1.0, -2.0, 0.5]])


def _double(module, args, output):
    return output * 2


def _negate_input(module, args):
    return (-args[0],)


def test_hooked_applies_then_removes_on_normal_exit(mlp, x):
    clean = mlp(x)
    with hooked(mlp, [Hook(mlp[2], _double), Hook(mlp[0], _negate_input, "pre")]):
        assert len(mlp[2]._forward_hooks) == 1 and len(mlp[0]._forward_pre_hooks) == 1
        inside = mlp(x)
    assert not torch.allclose(inside, clean)
    assert n_hooks(mlp) == 0
    assert torch.equal(mlp(x), clean)


def test_hooked_removes_after_exception(mlp, x):
    clean = mlp(x)
    with pytest.raises(RuntimeError, match="boom"), hooked(mlp, [Hook(mlp[2], _double), Hook(mlp[0], _negate_input, "pre")]):
        assert not torch.allclose(mlp(x), clean)
        raise RuntimeError("boom")
    for module in mlp.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert torch.equal(mlp(x), clean)


def test_hook_on_foreign_module_raises_and_leaves_nothing(mlp, x):
    clean = mlp(x)
    foreign = nn.Linear(4, 2)
    # a valid hook first: it must be removed again when the foreign one is rejected
    with pytest.raises(ValueError, match="not a module"), hooked(mlp, [Hook(mlp[2], _double), Hook(foreign, _double)]):
        pytest.fail("the block must not run")  # pragma: no cover
    assert n_hooks(mlp) == 0 and n_hooks(foreign) == 0
    assert torch.equal(mlp(x), clean)


def test_hook_on_the_model_itself_is_allowed(mlp, x):
    clean = mlp(x)
    with hooked(mlp, [Hook(mlp, _double)]):
        assert torch.allclose(mlp(x), 2 * clean)
    assert n_hooks(mlp) == 0


def test_first_tensor_and_replace_first():
    t, u = torch.zeros(2), torch.ones(2)
    assert first_tensor(t) is t
    assert first_tensor((t, "extra")) is t
    replaced = replace_first((t, "extra", 3), u)
    assert isinstance(replaced, tuple) and replaced[0] is u and replaced[1:] == ("extra", 3)
    assert replace_first(t, u) is u


class _SharedTwice(nn.Module):
    """One module applied twice per forward pass (as ALBERT applies its shared block)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(3, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.shared(torch.relu(self.shared(x))))


def test_a_hook_with_an_occurrence_fires_only_on_that_call_of_each_forward_pass(x):
    torch.manual_seed(0)
    model = _SharedTwice().eval()
    seen: list[torch.Tensor] = []
    every: list[torch.Tensor] = []

    def record(module, args, output):
        seen.append(args[0].detach().clone())

    def record_every(module, args, output):
        every.append(args[0].detach().clone())

    with torch.no_grad():
        clean = model(x)
        first = model.shared(x)
        second_input = torch.relu(first)
        expected = model.out(2 * model.shared(second_input))
        hooks = [Hook(model.shared, record, occurrence=1), Hook(model.shared, record_every),
                 Hook(model.shared, _double, occurrence=1)]
        with hooked(model, hooks):
            for _ in range(3):  # the call counters restart at every forward pass of the model
                torch.testing.assert_close(model(x), expected)
    assert len(every) == 6  # no occurrence: every call
    assert len(seen) == 3  # occurrence 1: the second call of each pass only
    for inp in seen:
        torch.testing.assert_close(inp, second_input)
    assert n_hooks(model) == 0
    assert torch.equal(model(x), clean)


def test_occurrence_zero_pre_hook_edits_only_the_first_call(x):
    torch.manual_seed(0)
    model = _SharedTwice().eval()
    calls: list[int] = []
    with torch.no_grad():
        expected = model.out(model.shared(torch.relu(model.shared(-x))))
        with hooked(model, [Hook(model.shared, _negate_input, "pre", occurrence=0),
                            Hook(model.shared, lambda m, a: calls.append(0), "pre", occurrence=0),
                            Hook(model.shared, lambda m, a: calls.append(1), "pre", occurrence=1)]):
            torch.testing.assert_close(model(x), expected)
            torch.testing.assert_close(model(x), expected)
    assert calls == [0, 1, 0, 1]
    assert n_hooks(model) == 0


def _text_components(adapter):
    return [Component("head", 0, 0), Component("neuron", 1, 3), Component("resid", 0, position=1),
            Component("layer", 1)]


@pytest.mark.parametrize("which", ["text", "tabular"])
def test_intervene_and_capture_leave_no_hooks_after_exception(which, tiny_sentiment, loan_adapter):
    from twopath.datasets import loan, sentiment

    if which == "text":
        adapter, example = tiny_sentiment, Example("s", sentiment.SEED_SENTENCE)
        components = _text_components(adapter)
    else:
        adapter, example = loan_adapter, Example("l", loan.SEED_APPLICANT)
        components = [Component("neuron", 0, 1), Component("layer", 3)]
    inputs = adapter.forward_inputs(example)
    before = n_hooks(adapter.model)
    with torch.no_grad():
        clean = adapter.run(inputs)
    edits = [Edit(0, c, None) for c in components]
    with pytest.raises(RuntimeError, match="inside"), torch.no_grad(), intervene(adapter, edits):
        edited = adapter.run(inputs)
        assert not torch.allclose(edited, clean)  # the edits were live
        raise RuntimeError("inside")
    assert n_hooks(adapter.model) == before
    with pytest.raises(KeyError), torch.no_grad(), capture(adapter, components) as store:
        adapter.run(inputs)
        assert store
        raise KeyError("inside")
    assert n_hooks(adapter.model) == before
    with torch.no_grad():
        assert torch.equal(adapter.run(inputs), clean)


def test_intervene_bad_component_leaves_no_hooks(tiny_sentiment):
    from twopath.datasets import sentiment
    from twopath.types import TwopathError

    adapter = tiny_sentiment
    inputs = adapter.forward_inputs(Example("s", sentiment.SEED_SENTENCE))
    before = n_hooks(adapter.model)
    # head index out of range: raised from inside the hook during the forward pass
    with pytest.raises(TwopathError), torch.no_grad(), intervene(adapter, [Edit(0, Component("head", 0, 99), None)]):
        adapter.run(inputs)
    assert n_hooks(adapter.model) == before
    # layer out of range: raised while resolving the site, before any hook is registered
    with pytest.raises(TwopathError), intervene(adapter, [Edit(0, Component("layer", 0), None),
                                                          Edit(0, Component("layer", 7), None)]):
        pass  # pragma: no cover
    assert n_hooks(adapter.model) == before


def test_occurrence_counters_restart_when_a_decoder_runs_its_base_model():
    """Decoder adapters call ``model.base_model`` themselves: counters restart there too."""
    from tests.tiny_models import TEXT, build_tiny
    from twopath.runtime.hooks import Hook, hooked
    from twopath.runtime.text import HFTextClassifier

    model, tokenizer = build_tiny("gpt2")
    adapter = HFTextClassifier(model, tokenizer)
    block = adapter.layer_modules[0]
    calls = []
    inputs = adapter.encode(TEXT).inputs()
    with hooked(adapter.model, [Hook(block, lambda m, a, o: calls.append(1), "forward", occurrence=0)]):
        for _ in range(3):
            adapter.run(inputs)
    assert len(calls) == 3
