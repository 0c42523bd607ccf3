"""The batched passes of head enrichment and neuron clusters give the one-by-one numbers.

Each test keeps a small naive reference (one sentence per pass, no padding; one pass per layer)
and checks the batched path against it: to 1e-6 (float rounding, which batching may move), and
exactly where the batching must not change a bit (the float64 sums, the tabular passes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from twopath.datasets import loan
from twopath.mechanistic import clusters, heads
from twopath.runtime.interventions import capture
from twopath.runtime.tabular import TorchTabularClassifier
from twopath.types import Component

POSITIVE = ["good", "fun", "great", "moving"]
NEGATIVE = ["bad", "dull", "slow", "boring"]


@pytest.fixture(scope="module")
def texts(corpus) -> list[str]:
    """Sentences from 2 to ~40 words: short ones (run alone) and long ones (batched, padded)."""
    pool = list(corpus["text"].iloc[:400])
    short = [t for t in pool if len(t.split()) <= 5][:3]
    long = [t for t in pool if 12 <= len(t.split()) <= 40][:9]
    mixed = "the plot was slow and the acting dull , but the ending was good fun for the whole family"
    return [*short, "good fun", *long, mixed, "a dull , boring film"]


def naive_attention(adapter: Any, text: str, query: int | None = None) -> np.ndarray:
    """(layers, heads, tokens): one sentence, alone, unpadded."""
    inp = adapter.encode(text)
    inputs = inp.inputs()
    position = int(adapter.reading_position(inputs)[0]) if query is None else query
    return torch.stack(adapter.attention_weights(inputs))[:, 0, :, position, :].numpy()


def naive_enrichment(adapter: Any, texts: list[str]) -> dict[str, np.ndarray]:
    """The per-sentence enrichment loop: mean shares and uniform shares per head."""
    sums = {k: np.zeros((adapter.n_layers, adapter.n_heads)) for k in ("pos", "neg", "pos_uniform", "neg_uniform")}
    counted = {"pos": 0, "neg": 0}
    for text in texts:
        inp = adapter.encode(text)
        att = naive_attention(adapter, text)
        labels = [w.lower() for w in inp.words]
        for kind, words in (("pos", POSITIVE), ("neg", NEGATIVE)):
            mask = np.array([w >= 0 and labels[w] in words for w in inp.token_word])
            if mask.any():
                counted[kind] += 1
                sums[kind] += att[:, :, mask].sum(-1)
                sums[f"{kind}_uniform"] += mask.sum() / (inp.token_word >= 0).sum()
    return {k: v / max(1, counted[k[:3]]) for k, v in sums.items()}


def test_length_batches_sort_by_length_and_respect_the_limits():
    lengths = [30, 5, 12, 12, 40, 7]
    assert heads.length_batches(lengths, max_rows=2) == [[1, 5], [2, 3], [0, 4]]
    assert heads.length_batches(lengths, max_rows=10, row_cost=lambda w: w, budget=40) == [[1, 5, 2], [3], [0], [4]]
    assert heads.length_batches([100], max_rows=4, row_cost=lambda w: w, budget=1) == [[0]]  # one always fits


def test_batched_attention_rows_equal_one_sentence_at_a_time(tiny_text, texts):
    inps = [tiny_text.encode(t) for t in texts]
    assert any(i.n_tokens < heads.SOLO_BELOW for i in inps) and sum(i.n_tokens >= heads.SOLO_BELOW for i in inps) > 2
    for query in (None, 1):
        rows = heads.attention_rows(tiny_text, inps, query, max_rows=3)
        assert len(rows) == len(texts)
        for text, inp, row in zip(texts, inps, rows, strict=True):
            expected = naive_attention(tiny_text, text, query)
            assert row.shape == (tiny_text.n_layers, tiny_text.n_heads, inp.n_tokens)
            np.testing.assert_allclose(row, expected, rtol=0, atol=1e-6)


def test_attention_enrichment_equals_the_per_sentence_loop(tiny_text, texts):
    frame = heads.attention_enrichment(tiny_text, texts, POSITIVE, NEGATIVE)
    expected = naive_enrichment(tiny_text, texts)
    for kind in ("pos", "neg"):
        share = frame[f"{kind}_share"].to_numpy().reshape(tiny_text.n_layers, tiny_text.n_heads)
        np.testing.assert_allclose(share, expected[kind], rtol=0, atol=1e-6)
        enrichment = frame[f"{kind}_enrichment"].to_numpy().reshape(share.shape)
        np.testing.assert_allclose(enrichment, expected[kind] / expected[f"{kind}_uniform"], rtol=1e-5)
    assert frame.attrs["n_sentences"]["pos"] >= 2 and frame.attrs["n_sentences"]["neg"] >= 2


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny_decoder(request) -> Any:
    """A tiny random decoder: it reads its last real token, so a batch reads each row elsewhere."""
    from tests.tiny_models import build_tiny
    from twopath.runtime.text import HFTextClassifier

    model, tokenizer = build_tiny(request.param)
    return HFTextClassifier(model, tokenizer)


@pytest.fixture
def decoder_texts(tiny_decoder, texts) -> list[str]:
    """The sentences within the tiny decoder's 128 tokens, short and long."""
    fits = [t for t in texts if len(tiny_decoder.tokenizer(t)["input_ids"]) <= tiny_decoder.max_length]
    lengths = [tiny_decoder.encode(t).n_tokens for t in fits]
    assert min(lengths) < heads.SOLO_BELOW and sum(n >= heads.SOLO_BELOW for n in lengths) > 4
    return fits


def test_a_decoder_reads_each_sentence_at_its_own_last_token(tiny_decoder, decoder_texts):
    texts = decoder_texts
    inps = [tiny_decoder.encode(t) for t in texts]
    rows = heads.attention_rows(tiny_decoder, inps, max_rows=4)
    for text, row in zip(texts, rows, strict=True):
        np.testing.assert_allclose(row, naive_attention(tiny_decoder, text), rtol=0, atol=1e-6)
    frame = heads.attention_enrichment(tiny_decoder, texts, POSITIVE, NEGATIVE)
    share = frame["pos_share"].to_numpy().reshape(tiny_decoder.n_layers, tiny_decoder.n_heads)
    np.testing.assert_allclose(share, naive_enrichment(tiny_decoder, texts)["pos"], rtol=0, atol=1e-6)


def naive_text_activations(adapter: Any, layer: int, batches: list[list[str]]) -> np.ndarray:
    """One padded pass per batch (the former path, 64 sentences a batch): the layer's neurons
    averaged over each sentence's real tokens."""
    rows = []
    for batch in batches:
        inputs = adapter.batch_encode(batch)
        with torch.no_grad(), capture(adapter, [Component("neuron", layer, 0)]) as store:
            adapter.run(inputs)
        for act, mask in zip(store[(layer, "neuron")].double(), inputs["attention_mask"], strict=True):
            rows.append(act[mask.bool()].mean(0).numpy())
    return np.array(rows)


def check_text_activations(adapter: Any, texts: list[str]) -> None:
    every = clusters.activations_by_layer(adapter, texts, batch_size=3)
    assert sorted(every) == list(range(adapter.n_layers))
    for layer, acts in every.items():
        np.testing.assert_allclose(acts, naive_text_activations(adapter, layer, [texts]), rtol=0, atol=1e-6)
        # alone, a short sentence takes other float32 kernels: equal to float32 rounding
        alone = naive_text_activations(adapter, layer, [[t] for t in texts])
        np.testing.assert_allclose(acts, alone, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(clusters.layer_activations(adapter, layer, texts, batch_size=3), acts)


def test_batched_text_activations_equal_the_former_and_the_one_by_one_passes(tiny_text, texts):
    check_text_activations(tiny_text, texts)


def test_batched_decoder_activations_equal_the_former_and_the_one_by_one_passes(tiny_decoder, decoder_texts):
    check_text_activations(tiny_decoder, decoder_texts)


@pytest.fixture(scope="module")
def loan_200(loan_dir) -> TorchTabularClassifier:
    adapter = TorchTabularClassifier.load(loan_dir)
    adapter.background = loan.split()[0].sample(200, random_state=1)[list(loan.FEATURES)]
    return adapter


def test_tabular_activations_of_every_layer_equal_one_pass_per_layer(loan_200):
    every = clusters.activations_by_layer(loan_200)
    inputs = loan_200.batch_inputs(loan_200.background)
    for layer in range(loan_200.n_layers):
        with torch.no_grad(), capture(loan_200, [Component("neuron", layer, 0)]) as store:
            loan_200.run(inputs)
        np.testing.assert_array_equal(every[layer], store[(layer, "neuron")].double().numpy())


def test_unlabelled_clusters_are_the_labelled_groups(loan_200):
    labelled = clusters.neuron_clusters(loan_200, 1, seed=2)
    plain = clusters.neuron_clusters(loan_200, 1, seed=2, label=False)
    assert [c.name for c in plain] == [c.name for c in labelled]
    assert [c.neurons for c in plain] == [c.neurons for c in labelled]
    for a, b in zip(plain, labelled, strict=True):
        np.testing.assert_array_equal(a.activation, b.activation)
        assert a.encodes == {} and a.top_feature == clusters.NO_FEATURE
    assert any(c.encodes for c in labelled)


def test_feature_neurons_take_given_activations(loan_200):
    every = clusters.activations_by_layer(loan_200)
    assert clusters.feature_neurons(loan_200, "credit_score", top_k=3, activations=every) == \
        clusters.feature_neurons(loan_200, "credit_score", top_k=3)
    partial = {0: every[0]}
    assert clusters.feature_neurons(loan_200, "employment_type", top_k=2, activations=partial) == \
        clusters.feature_neurons(loan_200, "employment_type", top_k=2)


def test_layer_encoding_is_the_per_layer_cluster_search(loan_200):
    """layer_encoding from shared activations = the best labelled cluster per layer, refitted."""
    table = clusters.layer_encoding(loan_200, features=["credit_score", ("monthly_income", "employment_type")])
    frame = loan_200.background
    for layer in range(loan_200.n_layers):
        alive = [c for c in clusters.neuron_clusters(loan_200, layer) if not c.dead]
        for feature, parts in (("credit_score", ("credit_score",)),
                               ("monthly_income+employment_type", ("monthly_income", "employment_type"))):
            best = max(clusters.joint_r2(c.activation, frame, parts) for c in alive)
            row = table[(table["layer"] == layer) & (table["feature"] == feature)].iloc[0]
            assert row["r2"] == best
    assert isinstance(table, pd.DataFrame)


def test_shared_passes_give_the_attention_and_the_layer_activations(tiny_text, texts):
    """One set of passes for both: the same rows as attention_rows (bit for bit) and the same
    activations as layer_activations to float tolerance (its batches hold other rows, and on some
    CPUs the matmul kernel rounds a row differently in a batch of another size: 3e-7 seen)."""
    inps = [tiny_text.encode(t) for t in texts]
    layers = list(range(tiny_text.n_layers))
    rows, acts = heads.attention_passes(tiny_text, inps, max_rows=3, neurons=layers)
    for row, alone in zip(rows, heads.attention_rows(tiny_text, inps, max_rows=3), strict=True):
        np.testing.assert_array_equal(row, alone)
    for layer in layers:
        np.testing.assert_allclose(acts[layer], naive_text_activations(tiny_text, layer, [texts]), rtol=0, atol=1e-6)
        np.testing.assert_allclose(acts[layer], clusters.layer_activations(tiny_text, layer, texts), rtol=0, atol=1e-6)
    assert heads.attention_passes(tiny_text, inps, max_rows=3)[1] == {}
