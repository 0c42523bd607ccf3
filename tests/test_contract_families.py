"""The public contract suite over a tiny random model of every supported architecture family.

Each family is built in memory by ``tests/tiny_models.py`` (no hub), saved to a temporary
directory and opened the way a user opens their own model (``from_pretrained``); then
``twopath.testing.check_adapter`` and ``check_method`` run every registered method on it. The
decoder families are also opened as prompted causal LMs (a template and two label words).
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import single_threaded
from tests.tiny_models import CORPUS, DECODERS, FAMILIES, TEXT, save_tiny
from twopath.attribution import ATTRIBUTION_METHODS
from twopath.mechanistic import MECHANISTIC_METHODS
from twopath.runtime.text import HFTextClassifier, PromptedLM
from twopath.testing import check_adapter, check_method
from twopath.types import Example, TwopathError

PROMPT = "Review: {text}\nSentiment:"
LABEL_WORDS = (" negative", " positive")
EXAMPLE = Example("tiny", TEXT)
OTHER = Example("tiny-other", "A boring film.")
SWAPS = (("good", "bad"), ("good", "great"), ("slow", "fast"), ("movie", "film"))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_threaded():
        yield


def _open(family: str, tmp_path_factory: pytest.TempPathFactory, prompted: bool = False) -> HFTextClassifier:
    directory = save_tiny(family, tmp_path_factory.mktemp(family), causal_lm=prompted)
    if prompted:
        adapter: HFTextClassifier = PromptedLM.from_pretrained_prompted(directory, PROMPT, LABEL_WORDS)
    else:
        adapter = HFTextClassifier.from_pretrained(directory)
    adapter.background = list(CORPUS[:8])
    return adapter


def _contrast(adapter: HFTextClassifier) -> Example:
    """The example with one word swapped, keeping the token count (patching needs it)."""
    n_tokens = adapter.encode(TEXT).n_tokens
    for old, new in SWAPS:
        text = TEXT.replace(old, new)
        if adapter.encode(text).n_tokens == n_tokens:
            return Example("tiny-contrast", text)
    raise AssertionError("no same-length contrast for this tokenizer")


def _check_all_methods(adapter: HFTextClassifier) -> None:
    for name in ATTRIBUTION_METHODS.names("text"):
        check_method(name, adapter, EXAMPLE)
    contrast = _contrast(adapter)
    for name in MECHANISTIC_METHODS.names("text"):
        settings = {"layers": (adapter.n_layers - 1,)} if name == "neuron_ablation" else {}
        if MECHANISTIC_METHODS.get(name).cls.requires <= adapter.capabilities():
            check_method(name, adapter, EXAMPLE, corrupted=contrast, **settings)
        else:  # refused in one line, before any compute
            with pytest.raises(TwopathError, match=f"{name} needs a model with"):
                check_method(name, adapter, EXAMPLE, corrupted=contrast, **settings)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_passes_the_contract(family, tmp_path_factory):
    adapter = _open(family, tmp_path_factory)
    assert adapter.family.decoder == (family in DECODERS)
    check_adapter(adapter, EXAMPLE, OTHER)
    _check_all_methods(adapter)


@pytest.mark.parametrize("family", DECODERS)
def test_prompted_decoder_passes_the_contract(family, tmp_path_factory):
    adapter = _open(family, tmp_path_factory, prompted=True)
    assert adapter.labels == ("negative", "positive")
    assert adapter.units(EXAMPLE) == HFTextClassifier.units(adapter, EXAMPLE)  # the words of {text} only
    check_adapter(adapter, EXAMPLE, OTHER)
    _check_all_methods(adapter)


# --- parameter slices (editing): what a head or neuron owns -----------------------------------

def _slice_masks(adapter: HFTextClassifier, component) -> dict[str, torch.Tensor]:
    params = dict(adapter.model.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    for piece in adapter.parameter_slices(component):
        mask = masks.setdefault(piece.name, torch.zeros_like(params[piece.name], dtype=torch.bool))
        mask.narrow(piece.dim, piece.start, piece.stop - piece.start).fill_(True)
    return masks


def _out_projection(adapter: HFTextClassifier, kind: str) -> str:
    return adapter.family.attn_out if kind == "head" else adapter.family.mlp_out


def _zeroing_the_output_slice_is_zero_ablation(adapter: HFTextClassifier, component) -> None:
    """Zeroing the component's columns of the output projection = zeroing its activation (at
    every layer that shares the block)."""
    from twopath.runtime.interventions import Edit, intervene

    inputs = adapter.inputs(EXAMPLE)
    block = adapter.layer_modules[component.layer]
    sharing = [layer for layer, b in enumerate(adapter.layer_modules) if b is block]
    edits = [Edit(0, type(component)(component.kind, layer, component.index)) for layer in sharing]
    with torch.no_grad(), intervene(adapter, edits):
        ablated = adapter.run(inputs)
    params = dict(adapter.model.named_parameters())
    out_name = f".{_out_projection(adapter, component.kind)}."
    saved = {}
    with torch.no_grad():
        for name, mask in _slice_masks(adapter, component).items():
            if out_name in f".{name}":
                saved[name] = params[name].clone()
                params[name][mask] = 0.0
        assert saved, f"no output-projection slice for {component}"
        zeroed = adapter.run(inputs)
        for name, value in saved.items():
            params[name].copy_(value)
    torch.testing.assert_close(zeroed, ablated, atol=1e-5, rtol=1e-5)


def _input_slices_hold_all_the_gradient(adapter: HFTextClassifier, component) -> None:
    """The gradient of the component's activation (layer 0) w.r.t. the block's input
    projections is zero outside the component's slices and not zero inside them."""
    from twopath.runtime.hooks import at, hooked

    store = {}

    def keep(module, args):
        store["act"] = args[0]

    params = dict(adapter.model.named_parameters())
    masks = _slice_masks(adapter, component)
    out_name = f".{_out_projection(adapter, component.kind)}."
    inside = {n: m for n, m in masks.items() if out_name not in f".{n}"}
    with hooked(adapter.model, [at(adapter.site(component), keep)]):
        adapter.run(adapter.inputs(EXAMPLE))
    act = store["act"]
    if component.kind == "head":
        value = act.view(*act.shape[:2], adapter.n_heads, -1)[..., component.index, :]
    else:
        value = act[..., component.index]
    names = sorted(inside)
    grads = torch.autograd.grad((value * torch.linspace(0.5, 1.5, value.numel()).view_as(value)).sum(),
                                [params[n] for n in names], allow_unused=True)
    for name, grad in zip(names, grads, strict=True):
        assert grad is not None, name
        assert torch.count_nonzero(grad[~inside[name]]) == 0, f"{component}: gradient outside the slice of {name}"
        assert torch.count_nonzero(grad[inside[name]]) > 0, f"{component}: no gradient inside the slice of {name}"


@pytest.mark.parametrize("family", FAMILIES)
def test_family_slices_the_parameters_of_heads_and_neurons(family):
    from tests.tiny_models import build_tiny
    from twopath.types import Component

    model, tokenizer = build_tiny(family)
    adapter = HFTextClassifier(model, tokenizer)
    for component in (Component("head", 1, 1), Component("neuron", 1, 5), Component("head", 0, 2)):
        _zeroing_the_output_slice_is_zero_ablation(adapter, component)
    for component in (Component("head", 0, 3), Component("neuron", 0, 7)):
        _input_slices_hold_all_the_gradient(adapter, component)
    with pytest.raises(TwopathError, match="has 4 heads"):
        adapter.parameter_slices(Component("head", 0, 4))
