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
