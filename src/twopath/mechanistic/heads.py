"""What an attention head reads: attention to sentiment words, measured over a dataset.

"Head 5.3 tracks positive sentiment words" is a claim about *where the head looks*. twopath
measures it as an **enrichment**: over a set of sentences, the share of the attention that the
reading position (the first token, [CLS]/<s>, of an encoder; the last real token of a decoder) pays to tokens of positive-lexicon words,
divided by the share those tokens would get under uniform attention over the sentence (their
fraction of the real tokens). Enrichment 1 means "no preference"; 3 means the head looks at
positive words three times more than chance. The same is computed for negative words, so a head
that reads *any* sentiment word can be told from one specific to positive words. Where the head
looks is not what it does: whether the head matters is the ablation's job, and both numbers are
reported side by side.

The sentences go through the model in batches of similar length (:func:`attention_rows`), with
the numbers of one pass per sentence (see :data:`SOLO_BELOW`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.types import Component

# CPU matmul kernels are picked by problem size: for matrices under 12 rows (a sentence under 12
# tokens, run alone) torch/MKL takes a kernel whose last float bits differ from the one a batch of
# such matrices gets; from 12 rows on, a sentence gives the same bits alone as in any padded
# batch. Sentences that short therefore keep a pass of their own, so that the batched measures
# are the per-sentence ones bit for bit (measured on torch 2.13, CPU; elsewhere they agree to
# float rounding).
SOLO_BELOW = 12
BATCH_ROWS = 16  # sentences per batched pass
ATTENTION_BYTES = 2**28  # at most this much attention (every layer's weights) per batched pass


def length_batches(lengths: Sequence[int], max_rows: int = BATCH_ROWS,
                   row_cost: Callable[[int], float] | None = None, budget: float = float("inf")) -> list[list[int]]:
    """Indices of ``lengths`` in batches of similar length (sorted, stable), for padded passes.

    A batch holds at most ``max_rows`` items, and at most ``budget`` in total where an item
    costs ``row_cost(width)`` at the batch's width (its longest item); one item always fits.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        current = batches[-1] if batches else None
        cost = (len(current) + 1) * row_cost(lengths[i]) if current is not None and row_cost else 0.0
        if current is None or len(current) >= max_rows or cost > budget:
            batches.append([i])
        else:
            current.append(i)
    return batches


def _word_mask(inp: Any, words: set[str]) -> np.ndarray:
    """Tokens of the encoded sentence ``inp`` that belong to one of ``words`` (lower case)."""
    labels = [w.lower() for w in inp.words]
    mask = np.zeros(inp.n_tokens, dtype=bool)
    for t, w in enumerate(inp.token_word):
        if w >= 0 and labels[w] in words:
            mask[t] = True
    return mask


def _word_token_mask(adapter: Any, text: str, words: set[str]) -> np.ndarray:
    return _word_mask(adapter.encode(text), words)


def _attention_from(adapter: Any, inp: Any, query: int | None) -> np.ndarray:
    """(layers, heads, tokens): attention paid by position ``query`` (default: reading position)."""
    inputs = inp.inputs()
    if query is None:
        query = int(adapter.reading_position(inputs)[0])
    attentions = adapter.attention_weights(inputs)
    return torch.stack(attentions)[:, 0, :, query, :].float().cpu().numpy()


def _collate(adapter: Any, inps: Sequence[Any], min_width: int = 0) -> dict[str, torch.Tensor]:
    """The encoded sentences as one right-padded batch (pad token, attention mask 0), at least
    ``min_width`` tokens wide."""
    width = max(min_width, *(inp.n_tokens for inp in inps))
    first = inps[0]
    ids = torch.full((len(inps), width), int(adapter.tokenizer.pad_token_id), dtype=first.input_ids.dtype,
                     device=first.input_ids.device)
    mask = torch.zeros((len(inps), width), dtype=first.attention_mask.dtype, device=first.attention_mask.device)
    for row, inp in enumerate(inps):
        ids[row, : inp.n_tokens] = inp.input_ids[0]
        mask[row, : inp.n_tokens] = inp.attention_mask[0]
    return {"input_ids": ids, "attention_mask": mask}


def pooled_neurons(store: dict[tuple[int, str], torch.Tensor], layers: Sequence[int],
                   mask: torch.Tensor | None) -> dict[int, np.ndarray]:
    """Each layer's recorded neurons (:func:`~twopath.runtime.interventions.capture`) per
    example, in float64; for a token sequence averaged over its real positions (``mask``)."""
    pooled = {}
    for layer in layers:
        act = store[(layer, "neuron")].double()
        if mask is not None:
            weights = mask[..., None].double()
            act = (act * weights).sum(1) / weights.sum(1)
        pooled[layer] = act.cpu().numpy()
    return pooled


def attention_passes(adapter: Any, inps: Sequence[Any], query: int | None = None, max_rows: int = BATCH_ROWS,
                     neurons: Sequence[int] = ()) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """:func:`attention_rows`, and from the same passes the neurons of the hidden layers
    ``neurons`` per sentence, averaged over its tokens: (n_sentences, width) per layer, the
    numbers of :func:`~twopath.mechanistic.clusters.layer_activations` on the sentences.

    The sentences that run alone for their attention get their neurons from one more padded
    pass (at least :data:`SOLO_BELOW` tokens wide, as every batch of ``layer_activations``).
    """
    from twopath.runtime.interventions import capture

    layers = list(neurons)
    probes = [Component("neuron", layer, 0) for layer in layers]
    rows: list[np.ndarray | None] = [None] * len(inps)
    found: dict[int, np.ndarray] = {}

    def keep(members: list[int], store: dict[tuple[int, str], torch.Tensor], mask: torch.Tensor) -> None:
        for layer, acts in pooled_neurons(store, layers, mask).items():
            found.setdefault(layer, np.empty((len(inps), acts.shape[1]), dtype=acts.dtype))[members] = acts

    batched = [i for i, inp in enumerate(inps)
               if inp.n_tokens >= SOLO_BELOW and (query is None or query < inp.n_tokens)]
    alone = sorted(set(range(len(inps))) - set(batched))
    for i in alone:
        rows[i] = _attention_from(adapter, inps[i], query)
    if layers:
        for batch in length_batches([inps[i].n_tokens for i in alone], max_rows):
            members = [alone[j] for j in batch]
            inputs = _collate(adapter, [inps[i] for i in members], SOLO_BELOW)
            with torch.no_grad(), capture(adapter, probes) as store:
                adapter.run(inputs)
            keep(members, store, inputs["attention_mask"])
    per_row = 4 * adapter.n_layers * adapter.n_heads  # bytes per query-key pair, every layer
    lengths = [inps[i].n_tokens for i in batched]
    for batch in length_batches(lengths, max_rows, lambda width: per_row * width * width, ATTENTION_BYTES):
        members = [batched[j] for j in batch]
        inputs = _collate(adapter, [inps[i] for i in members])
        reading = adapter.reading_position(inputs).tolist() if query is None else [query] * len(members)
        with capture(adapter, probes) as store:
            attentions = torch.stack(adapter.attention_weights(inputs))  # (layers, n, heads, T, T)
        for row, i in enumerate(members):
            rows[i] = attentions[:, row, :, int(reading[row]), : inps[i].n_tokens].float().cpu().numpy()
        if layers:
            keep(members, store, inputs["attention_mask"])
    done = [r for r in rows if r is not None]
    assert len(done) == len(inps)
    return done, found


def attention_rows(adapter: Any, inps: Sequence[Any], query: int | None = None,
                   max_rows: int = BATCH_ROWS) -> list[np.ndarray]:
    """Per encoded sentence (:meth:`encode`), (layers, heads, tokens): the attention paid by
    position ``query`` (default: the reading position), as :func:`_attention_from` gives it.

    Sentences of similar length share a right-padded pass (padding gets no attention and is cut
    off); those under :data:`SOLO_BELOW` tokens, or too short for ``query``, run alone.
    """
    return attention_passes(adapter, inps, query, max_rows)[0]


def attention_enrichment(adapter: Any, texts: Sequence[str], positive: Sequence[str], negative: Sequence[str],
                         query: int | None = None) -> pd.DataFrame:
    """Per head: mean attention share from ``query`` (default: the reading position, where the
    classifier reads) to positive/negative words and enrichment."""
    inps = [adapter.encode(text) for text in texts]
    return enrichment_table(adapter, inps, attention_rows(adapter, inps, query), positive, negative)


def enrichment_table(adapter: Any, inps: Sequence[Any], attention: Sequence[np.ndarray], positive: Sequence[str],
                     negative: Sequence[str]) -> pd.DataFrame:
    """:func:`attention_enrichment` from the encoded sentences and their :func:`attention_rows`."""
    pos_words, neg_words = {w.lower() for w in positive}, {w.lower() for w in negative}
    n_layers, n_heads = adapter.n_layers, adapter.n_heads
    sums = {k: np.zeros((n_layers, n_heads)) for k in ("pos", "neg", "pos_uniform", "neg_uniform")}
    counted = {"pos": 0, "neg": 0}
    # summed in the order of the sentences, whatever the batches: the same float sums as one by one
    for inp, att in zip(inps, attention, strict=True):  # att: (layers, heads, tokens)
        real = inp.token_word >= 0
        for kind, words in (("pos", pos_words), ("neg", neg_words)):
            mask = _word_mask(inp, words)
            if not mask.any():
                continue
            counted[kind] += 1
            sums[kind] += att[:, :, mask].sum(-1)
            sums[f"{kind}_uniform"] += mask.sum() / max(1, real.sum())
    rows = []
    for layer in range(n_layers):
        for head in range(n_heads):
            row: dict[str, Any] = {"component": str(Component("head", layer, head)), "layer": layer, "head": head}
            for kind in ("pos", "neg"):
                n = max(1, counted[kind])
                share = sums[kind][layer, head] / n
                uniform = sums[f"{kind}_uniform"][layer, head] / n
                row[f"{kind}_share"] = share
                row[f"{kind}_enrichment"] = share / uniform if uniform > 0 else float("nan")
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["n_sentences"] = dict(counted)
    return frame


def attention_to_words(adapter: Any, text: str, words: Sequence[str], query: int | None = None) -> pd.DataFrame:
    """Per head: attention share from ``query`` (default: the reading position) to the given
    words of one sentence."""
    inp = adapter.encode(text)
    mask = _word_mask(inp, {w.lower() for w in words})
    att = _attention_from(adapter, inp, query)
    share = att[:, :, mask].sum(-1)
    return pd.DataFrame([{"component": str(Component("head", layer, head)), "share": float(share[layer, head])}
                         for layer in range(adapter.n_layers) for head in range(adapter.n_heads)])
