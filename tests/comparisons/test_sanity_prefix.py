"""The sanity check's shared clean prefix: a randomized copy's rows resumed from the original
model's states equal the copy's full passes, on encoders and decoders, and the cascade is the
same with and without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import single_threaded
from tests.tiny_models import CORPUS, TEXT, save_tiny
from twopath.attribution import ATTRIBUTION_METHODS
from twopath.comparisons import sanity
from twopath.comparisons.sanity import (
    _first_random_block,
    detached_copy,
    layer_blocks,
    randomization_check,
    randomize_block,
)
from twopath.runtime.hooks import at, hooked
from twopath.runtime.prefix import SharedPrefix
from twopath.runtime.text import HFTextClassifier
from twopath.types import Example

FAMILIES = ("bert", "gpt2", "llama")
EXAMPLE = Example("s", TEXT)


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request, tmp_path_factory):
    with single_threaded():
        model = HFTextClassifier.from_pretrained(save_tiny(request.param, tmp_path_factory.mktemp(request.param)))
        model.background = list(CORPUS[:8])
        yield model


def _coalitions(adapter, n_rows: int = 12, seed: int = 0):
    keep = np.random.default_rng(seed).random((n_rows, len(adapter.units(EXAMPLE)))) > 0.5
    inputs, _ = adapter.masked_inputs(EXAMPLE, keep)
    return inputs


def _cascade(adapter):
    """Each step's copy (top ``s`` blocks randomized) with the block its prefix resumes at."""
    blocks = layer_blocks(adapter)
    clone = detached_copy(adapter)
    generator = torch.Generator().manual_seed(0)
    for step, (_, prefixes) in enumerate(blocks, start=1):
        randomize_block(clone.model, prefixes, generator)
        yield clone, _first_random_block(adapter, blocks[:step])


def test_the_first_random_block_follows_the_cascade(adapter):
    blocks = layer_blocks(adapter, embeddings=True)
    n = adapter.n_layers
    starts = [_first_random_block(adapter, blocks[:s]) for s in range(1, len(blocks) + 1)]
    assert starts == [n, *range(n - 1, -1, -1), None]  # head only, then each layer down, then nothing


def test_resumed_rows_equal_the_copys_full_passes(adapter):
    inputs = _coalitions(adapter)
    starts = [start for _, start in _cascade(adapter)]
    prefix = SharedPrefix(adapter, [s for s in starts if s is not None])
    with torch.no_grad():
        for clone, start in _cascade(adapter):
            prefix.start = start
            full = clone.run(inputs)
            resumed = prefix.run(clone, inputs)
            torch.testing.assert_close(resumed, full, rtol=1e-5, atol=1e-5)
            assert not torch.allclose(full, adapter.run(inputs))  # the copy is another model
    assert prefix.n_resumed == len(starts) * len(next(iter(inputs.values())))


def test_the_copys_logits_go_through_the_prefix(adapter):
    inputs = _coalitions(adapter)
    clone, start = next(_cascade(adapter))
    clone.shared_prefix = prefix = SharedPrefix(adapter, [start])
    prefix.start = start
    torch.testing.assert_close(clone.logits(inputs, batch_size=5), clone.run(inputs), rtol=1e-5, atol=1e-5)
    assert prefix.n_resumed == len(inputs["input_ids"])


def test_hooks_and_a_full_budget_take_the_full_pass(adapter):
    inputs = _coalitions(adapter)
    clone, start = next(_cascade(adapter))
    prefix = SharedPrefix(adapter, [start], max_bytes=0)
    prefix.start = start
    torch.testing.assert_close(prefix.run(clone, inputs), clone.run(inputs))
    assert prefix.n_resumed == 0  # nothing fits: every row ran in full
    prefix = SharedPrefix(adapter, [start])
    prefix.start = start
    noop = at(clone.sites()["blocks.0.hook_resid_post"], lambda module, args, out: None)
    with torch.no_grad(), hooked(clone.model, [noop]):
        prefix.run(clone, inputs)
    assert prefix.n_resumed == 0  # under intervention hooks the prefix would skip them


def _explain(adapter):
    return {m: ATTRIBUTION_METHODS.create(m, seed=0, **settings).attribute(adapter, EXAMPLE, target="positive").scores
            for m, settings in (("shap", {"max_evals": 64}), ("occlusion", {}), ("lime", {"num_samples": 64}))}


def test_the_cascade_is_the_same_with_and_without_the_prefix(adapter, monkeypatch):
    shared = randomization_check(adapter, _explain, seed=0, repeats=2)
    monkeypatch.setattr(sanity, "shared_prefix", lambda *args: None)
    full = randomization_check(adapter, _explain, seed=0, repeats=2)
    np.testing.assert_allclose(shared["spearman_abs"], full["spearman_abs"], atol=1e-9)
    np.testing.assert_allclose(shared["spearman_signed"], full["spearman_signed"], atol=1e-9)
    assert list(shared["verdict"]) == list(full["verdict"])



def _occlusion(model):
    return {"occlusion": ATTRIBUTION_METHODS.create("occlusion").attribute(model, EXAMPLE, target="positive").scores}


def test_the_original_models_rows_run_once(adapter, monkeypatch):
    """The rows of the original model's explanation record their states as they run, so the
    first damaged copy does not run them on the original again."""
    fresh = detached_copy(adapter)  # nothing memoized: the original's explanation runs its rows
    run = type(fresh).run
    rows: list[int] = []

    def counting(self, inputs):
        if self is fresh:
            rows.append(int(inputs["input_ids"].shape[0]))
        return run(self, inputs)

    monkeypatch.setattr(type(fresh), "run", counting)
    randomization_check(fresh, _occlusion, seed=0, n_steps=3)
    coalitions = len(fresh.units(EXAMPLE)) + 1  # each unit removed once, and none
    # each coalition once, plus one row recording the blocks' call arguments and the example's clean run
    assert coalitions <= sum(rows) <= coalitions + 2
