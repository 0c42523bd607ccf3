"""Component lists are built once per adapter and length, and every caller gets its own list."""

from __future__ import annotations

from twopath.runtime.trace import caches, forget
from twopath.types import Component, Example


def test_component_lists_are_built_once_and_handed_out_as_copies(tiny_sentiment):
    inputs = tiny_sentiment.forward_inputs(Example("t", "the movie was good"))
    first = tiny_sentiment.components("neuron")
    first.append(Component("layer", 0))  # a caller's list is its own
    again = tiny_sentiment.components("neuron")
    assert again == first[:-1] and again is not first
    n_pos = int(inputs["input_ids"].shape[1])
    resid = tiny_sentiment.components("resid", inputs)
    assert len(resid) == tiny_sentiment.n_layers * n_pos
    longer = tiny_sentiment.forward_inputs(Example("u", "the movie was good and the cast was fine"))
    assert len(tiny_sentiment.components("resid", longer)) > len(resid)  # keyed by the input's length
    assert ("resid", n_pos) in caches(tiny_sentiment).components
    forget(tiny_sentiment)
    assert tiny_sentiment.components("head") == [Component("head", layer, h) for layer in range(tiny_sentiment.n_layers)
                                                 for h in range(tiny_sentiment.n_heads)]
