"""Helpers shared by the test modules: tiny offline models, outputs, hook counting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from twopath.runtime.adapter import target_output
from twopath.runtime.tabular import TorchTabularClassifier, fitted_preprocessor
from twopath.runtime.threads import one_thread
from twopath.runtime.trace import forget
from twopath.types import Example

TEXT_LABELS = ("negative", "positive")
ID2LABEL = dict(enumerate(TEXT_LABELS))
LABEL2ID = {v: k for k, v in ID2LABEL.items()}
ARCHITECTURES = ("bert", "distilbert", "roberta")
SEED_WORDS = ("The", "movie", "was", "surprisingly", "good", "despite", "slow", "pacing")
MAX_LEN = 128


#: tiny models: thread start-up costs more than the arithmetic on a busy 2-core machine
single_threaded = one_thread


def build_bpe_tokenizer(directory: Path, texts: list[str]) -> Any:
    """A small byte-level BPE tokenizer with RoBERTa's special tokens, trained offline."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=1000, min_frequency=2, show_progress=False,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    directory.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(directory))
    # positional (vocab, merges) works for transformers 4 (file names) and 5 (paths)
    return RobertaTokenizerFast(str(directory / "vocab.json"), str(directory / "merges.txt"))


def build_tiny_model(arch: str, tokenizer: Any, seed: int = 0) -> nn.Module:
    """A randomly initialised 2-layer, 2-head, hidden-32 sequence classifier."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    torch.manual_seed(seed)
    # a large init range makes the random models opinionated: outputs differ visibly between inputs
    common = {"num_labels": 2, "id2label": ID2LABEL, "label2id": LABEL2ID, "attn_implementation": "eager",
              "initializer_range": 0.3}
    vocab = len(tokenizer)
    if arch == "bert":
        config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=MAX_LEN, **common)
        model = BertForSequenceClassification(config)
    elif arch == "distilbert":
        config = DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                  max_position_embeddings=MAX_LEN, **common)
        model = DistilBertForSequenceClassification(config)
    elif arch == "roberta":
        pad = tokenizer.pad_token_id
        config = RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=pad + MAX_LEN + 2,
                               pad_token_id=pad, bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id, **common)
        model = RobertaForSequenceClassification(config)
    else:  # pragma: no cover - test helper misuse
        raise ValueError(arch)
    return model.eval()


def text_output(adapter: Any, text: str, target: int = 1, space: str = "logit_diff") -> float:
    """The explained output of one unmodified forward pass, computed independently."""
    enc = adapter.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = adapter.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    return float(target_output(logits, target, space)[0])


def tabular_output(adapter: Any, rows: Any, target: int = 1) -> np.ndarray:
    with torch.no_grad():
        return target_output(adapter.model(adapter.transform(rows)), target).numpy()


def n_hooks(model: nn.Module) -> int:
    """Forward and forward-pre hooks registered anywhere in ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def clear_evaluators(adapter: Any) -> None:
    """Drop everything memoized for the adapter, its coalition evaluators included (forces recomputation)."""
    forget(adapter)


def swapped(adapter: Any, text: str, old: str = "good", new: str = "bad", example_id: str = "corrupted") -> Example:
    """``text`` with ``old`` replaced by ``new``, checked to keep the token count."""
    out = text.replace(old, new)
    assert out != text
    assert adapter.encode(out).n_tokens == adapter.encode(text).n_tokens
    return Example(example_id, out)


def linear_adapter(w: np.ndarray, background: pd.DataFrame | None = None) -> TorchTabularClassifier:
    """A ReLU MLP computing exactly ``logit1 - logit0 = w . x`` on raw numeric features."""
    d = len(w)
    first, last = nn.Linear(d, 2 * d), nn.Linear(2 * d, 2)
    with torch.no_grad():
        first.weight.copy_(torch.cat([torch.eye(d), -torch.eye(d)]))
        first.bias.zero_()
        last.weight.zero_()
        last.weight[1] = torch.as_tensor(np.concatenate([w, -w]), dtype=torch.float32)
        last.bias.zero_()
    features = [f"x{i}" for i in range(d)]
    pre = fitted_preprocessor(features, {}, mean=[0.0] * d, scale=[1.0] * d)
    adapter = TorchTabularClassifier(nn.Sequential(first, nn.ReLU(), last), pre, features, {},
                                     ("no", "yes"), "linear")
    adapter.background = background
    return adapter
