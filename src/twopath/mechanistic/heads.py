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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.types import Component


def _word_token_mask(adapter: Any, text: str, words: set[str]) -> np.ndarray:
    inp = adapter.encode(text)
    labels = [w.lower() for w in inp.words]
    mask = np.zeros(inp.n_tokens, dtype=bool)
    for t, w in enumerate(inp.token_word):
        if w >= 0 and labels[w] in words:
            mask[t] = True
    return mask


def _attention_from(adapter: Any, inp: Any, query: int | None) -> np.ndarray:
    """(layers, heads, tokens): attention paid by position ``query`` (default: reading position)."""
    inputs = inp.inputs()
    if query is None:
        query = int(adapter.reading_position(inputs)[0])
    attentions = adapter.attention_weights(inputs)
    return torch.stack(attentions)[:, 0, :, query, :].float().cpu().numpy()


def attention_enrichment(adapter: Any, texts: Sequence[str], positive: Sequence[str], negative: Sequence[str],
                         query: int | None = None) -> pd.DataFrame:
    """Per head: mean attention share from ``query`` (default: the reading position, where the
    classifier reads) to positive/negative words and enrichment."""
    pos_words, neg_words = {w.lower() for w in positive}, {w.lower() for w in negative}
    n_layers, n_heads = adapter.n_layers, adapter.n_heads
    sums = {k: np.zeros((n_layers, n_heads)) for k in ("pos", "neg", "pos_uniform", "neg_uniform")}
    counted = {"pos": 0, "neg": 0}
    for text in texts:
        inp = adapter.encode(text)
        att = _attention_from(adapter, inp, query)  # (layers, heads, tokens)
        real = inp.token_word >= 0
        for kind, words in (("pos", pos_words), ("neg", neg_words)):
            mask = _word_token_mask(adapter, text, words)
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
    mask = _word_token_mask(adapter, text, {w.lower() for w in words})
    inp = adapter.encode(text)
    att = _attention_from(adapter, inp, query)
    share = att[:, :, mask].sum(-1)
    return pd.DataFrame([{"component": str(Component("head", layer, head)), "share": float(share[layer, head])}
                         for layer in range(adapter.n_layers) for head in range(adapter.n_heads)])
