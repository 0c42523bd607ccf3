"""The public contract suite over a tiny random model of every supported architecture family.

Each family is built in memory by ``tests/tiny_models.py`` (no hub), saved to a temporary
directory and opened the way a user opens their own model (``from_pretrained``); then
``twopath.testing.check_adapter`` and ``check_method`` run every registered method on it. The
decoder families are also opened as prompted causal LMs (a template and two label words).
"""

from __future__ import annotations

import pytest

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
