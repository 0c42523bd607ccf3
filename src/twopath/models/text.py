"""Adapter for Hugging Face sequence classifiers (BERT, DistilBERT, RoBERTa, MiniLM, ...).

The adapter hides tokenizers and architectures from the methods:

* **Units are words.** A sentence is split on whitespace; each whitespace-separated chunk is one
  unit, punctuation stays attached to its word (``"good,"`` is one unit shown as ``good``).
  Sub-token scores are merged into their word by **summing** (the rule that keeps SHAP's and
  IG's additivity), using the fast tokenizer's character offsets, so WordPiece (``##``) and BPE
  (``Ġ``) tokenizers are handled the same way.
* **Absent words** are replaced, token by token, by the tokenizer's mask token (pad or unknown
  token where there is none), which keeps the sequence length and the positions fixed.
* **Sites** for interventions are named per architecture: the input of the attention output
  projection (the concatenated head outputs), the MLP activation (neurons) and each layer's
  output (the residual stream).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from twopath.models.base import OutputSpace, target_output
from twopath.types import Component, Example, TwopathError

_WORD_RE = re.compile(r"\S+")
_ATTN_OUT_NAMES = ("output.dense", "out_lin", "o_proj", "out_proj", "dense")
_MLP_ACT_NAMES = ("intermediate.intermediate_act_fn", "ffn.activation", "mlp.act", "intermediate")


@dataclass(frozen=True)
class TextInput:
    """A tokenized sentence with the word each token belongs to (``-1`` for special tokens)."""

    text: str
    words: tuple[str, ...]
    input_ids: torch.Tensor  # (1, T)
    attention_mask: torch.Tensor  # (1, T)
    token_word: np.ndarray  # (T,) word index or -1
    tokens: tuple[str, ...]

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[1])

    def merge(self, token_scores: np.ndarray) -> np.ndarray:
        """Word scores: each word gets the **sum** of its sub-tokens' scores (special tokens dropped)."""
        scores = np.zeros(len(self.words))
        is_word = self.token_word >= 0
        np.add.at(scores, self.token_word[is_word], np.asarray(token_scores, dtype=float)[is_word])
        return scores


def split_words(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of ``text``."""
    return [(m.start(), m.end()) for m in _WORD_RE.finditer(text)]


def word_label(chunk: str) -> str:
    """Display form of a word: surrounding punctuation stripped (kept if nothing else is left)."""
    stripped = chunk.strip(string.punctuation + "“”‘’")
    return stripped or chunk


class HFTextClassifier:
    """A local Hugging Face sequence-classification model behind one interface."""

    modality = "text"

    def __init__(self, model: nn.Module, tokenizer: Any, name: str = "model", max_length: int = 128):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length
        config: Any = model.config
        id2label = getattr(config, "id2label", None) or {}
        n_labels = int(getattr(config, "num_labels", len(id2label)))
        self.labels: tuple[str, ...] = tuple(
            str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n_labels)
        )
        self.layer_modules: list[nn.Module] = _find_layers(model)
        self.n_layers = len(self.layer_modules)
        self.n_heads = int(
            getattr(config, "num_attention_heads", None) or config.n_heads
        )
        self._attn_out = [_find_child(layer, _ATTN_OUT_NAMES, "attention", nn.Linear) for layer in self.layer_modules]
        self._mlp_act = [_find_child(layer, _MLP_ACT_NAMES, None, nn.Module) for layer in self.layer_modules]
        hidden = int(self._attn_out[0].in_features)  # type: ignore[arg-type]
        self.head_dim = hidden // self.n_heads
        self.mask_token_id = _absent_token_id(tokenizer)
        self._mlp_width: int | None = None
        self.background: list[str] = []
        self.architecture = type(model).__name__

    # --- loading --------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, name: str | None = None) -> HFTextClassifier:
        """Load a model directory saved with ``save_pretrained`` (no network access)."""
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        directory = Path(path)
        if not directory.is_dir():
            raise TwopathError(f"model directory does not exist: {directory}")
        if not (directory / "config.json").is_file():
            raise TwopathError(f"not a Hugging Face model directory (no config.json): {directory}")
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        archs = getattr(config, "architectures", None) or []
        if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
            raise TwopathError(
                f"{directory} holds a {archs[0]}, not a sequence classifier "
                "(expected an architecture ending in ForSequenceClassification)"
            )
        if not any((directory / f).is_file() for f in ("tokenizer.json", "vocab.txt", "vocab.json")):
            raise TwopathError(f"{directory}: no tokenizer files (tokenizer.json, vocab.txt or vocab.json) next to the model")
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                directory, local_files_only=True, attn_implementation="eager"
            )
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TwopathError(f"cannot load a sequence classifier from {directory}: {first}") from None
        if not getattr(tokenizer, "is_fast", False):
            raise TwopathError(f"{directory}: a fast tokenizer (tokenizer.json) is required for word offsets")
        return cls(model, tokenizer, name=name or directory.name)

    # --- labels and inputs ----------------------------------------------------------------

    def label_index(self, label: str | int) -> int:
        if isinstance(label, int) or (isinstance(label, str) and label.isdigit()):
            idx = int(label)
            if 0 <= idx < len(self.labels):
                return idx
        lowered = [lab.lower() for lab in self.labels]
        if isinstance(label, str) and label.lower() in lowered:
            return lowered.index(label.lower())
        raise TwopathError(f"unknown target label {label!r}; the model's labels are {list(self.labels)}")

    def check_example(self, example: Example) -> str:
        if not isinstance(example.raw, str):
            raise TwopathError(f"example {example.id}: a text model needs a sentence")
        if not example.raw.strip():
            raise TwopathError(f"example {example.id}: the text is empty")
        return example.raw

    def units(self, example: Example) -> tuple[str, ...]:
        return self.encode(self.check_example(example)).words

    def encode(self, text: str) -> TextInput:
        spans = split_words(text)
        if not spans:
            raise TwopathError("the text is empty")
        enc = self.tokenizer(
            text,
            return_offsets_mapping=True,
            return_tensors="pt",
            truncation=True,
            max_length=self.max_length,
        )
        offsets = enc.pop("offset_mapping")[0].tolist()
        # tokens added by the tokenizer ([CLS], [SEP], <s>) cover no characters; a mask token
        # written in the text ("[MASK]") does, and belongs to its word
        token_word = np.full(len(offsets), -1, dtype=int)
        for t, (start, end) in enumerate(offsets):
            if end <= start:
                continue
            for w, (ws, we) in enumerate(spans):
                if ws <= start < we:
                    token_word[t] = w
                    break
        missing = sorted(set(range(len(spans))) - set(token_word[token_word >= 0].tolist()))
        if missing:
            if len(offsets) >= self.max_length and missing[0] > int(token_word.max(initial=-1)):
                raise TwopathError(f"the sentence is longer than the model's {self.max_length} tokens; shorten it")
            bad = [text[spans[i][0] : spans[i][1]] for i in missing]
            raise TwopathError(f"word(s) {bad} produce no tokens for this tokenizer (zero-width or control characters?); remove them")
        tokens = tuple(self.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist()))
        return TextInput(
            text=text,
            words=tuple(word_label(text[s:e]) for s, e in spans),
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            token_word=token_word,
            tokens=tokens,
        )

    def batch_encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def masked_ids(self, inp: TextInput, keep: np.ndarray) -> torch.Tensor:
        """Input ids for each row of the boolean word mask ``keep`` (n, n_words)."""
        keep = np.asarray(keep, dtype=bool).reshape(-1, len(inp.words))
        ids = inp.input_ids.repeat(keep.shape[0], 1)
        is_word = inp.token_word >= 0
        token_keep = np.ones((keep.shape[0], inp.n_tokens), dtype=bool)
        token_keep[:, is_word] = keep[:, inp.token_word[is_word]]
        ids[torch.from_numpy(~token_keep)] = self.mask_token_id
        return ids

    def baseline_ids(self, inp: TextInput, token: str = "pad") -> torch.Tensor:
        """Ids with every word token replaced by the pad or mask token (special tokens kept)."""
        ids = inp.input_ids.clone()
        fill = self.tokenizer.pad_token_id if token == "pad" else self.mask_token_id
        if fill is None:
            fill = self.mask_token_id
        ids[0, torch.from_numpy(inp.token_word >= 0)] = int(fill)
        return ids

    # --- running ----------------------------------------------------------------------------

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               batch_size: int = 64) -> torch.Tensor:
        """Logits for a batch of ids, evaluated in chunks of ``batch_size``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        elif attention_mask.shape[0] == 1 and input_ids.shape[0] > 1:
            attention_mask = attention_mask.expand(input_ids.shape[0], -1)
        chunks = [
            self.model(input_ids=input_ids[i : i + batch_size],
                       attention_mask=attention_mask[i : i + batch_size]).logits
            for i in range(0, input_ids.shape[0], batch_size)
        ]
        return torch.cat(chunks).float()

    def forward_inputs(self, example: Example) -> dict[str, torch.Tensor]:
        inp = self.encode(self.check_example(example))
        return {"input_ids": inp.input_ids, "attention_mask": inp.attention_mask}

    def run(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One forward pass (gradients allowed) returning logits."""
        return self.model(**inputs).logits

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        enc = self.batch_encode(texts)
        return torch.softmax(self.logits(enc["input_ids"], enc["attention_mask"]), -1).numpy()

    def output(self, logits: torch.Tensor, target: int, space: OutputSpace = "logit_diff") -> torch.Tensor:
        return target_output(logits, target, space)

    # --- sites ------------------------------------------------------------------------------

    def embedding_layer(self) -> nn.Module:
        layer: nn.Module = self.model.get_input_embeddings()  # type: ignore[operator]
        return layer

    def head_site(self, layer: int) -> nn.Module:
        """Module whose input is the concatenation of the layer's head outputs (pre-hook)."""
        return self._attn_out[self._check_layer(layer)]

    def neuron_site(self, layer: int) -> nn.Module:
        """Module whose output holds the layer's MLP neurons after the non-linearity."""
        return self._mlp_act[self._check_layer(layer)]

    def resid_site(self, layer: int) -> nn.Module:
        """Module whose output is the residual stream after the layer."""
        return self.layer_modules[self._check_layer(layer)]

    @property
    def mlp_width(self) -> int:
        """Neurons per MLP layer, read once from the activation site (architecture-agnostic)."""
        if self._mlp_width is None:
            from twopath.models.hooks import Hook, first_tensor, hooked

            seen: dict[str, int] = {}

            def grab(module: nn.Module, args: Any, output: Any) -> None:
                seen["width"] = int(first_tensor(output).shape[-1])

            probe = self.tokenizer("a", return_tensors="pt")
            with torch.no_grad(), hooked(self.model, [Hook(self._mlp_act[0], grab)]):
                self.model(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"])
            self._mlp_width = seen["width"]
        return self._mlp_width

    def components(self, kind: str) -> list[Component]:
        if kind == "head":
            return [Component("head", layer, h) for layer in range(self.n_layers) for h in range(self.n_heads)]
        if kind == "neuron":
            return [Component("neuron", layer, i) for layer in range(self.n_layers) for i in range(self.mlp_width)]
        if kind == "layer":
            return [Component("layer", layer) for layer in range(self.n_layers)]
        raise TwopathError(f"component kind {kind!r} is not enumerable on a text model without an input")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
        }

    def _check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_layers:
            raise TwopathError(f"layer {layer} out of range: the model has {self.n_layers} layers")
        return layer


def _find_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks: the longest ``ModuleList`` whose length is the layer count."""
    config: Any = model.config
    n = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return list(module)
    raise TwopathError(f"cannot find the {n} transformer layers of {type(model).__name__}")


def _find_child(layer: nn.Module, suffixes: Sequence[str], under: str | None, kind: type) -> nn.Module:
    named: dict[str, nn.Module] = dict(layer.named_modules())
    for suffix in suffixes:
        for name, module in named.items():
            if (under is None or under in name) and name.endswith(suffix) and isinstance(module, kind):
                return module
    raise TwopathError(
        f"unsupported architecture: no module ending in {list(suffixes)} inside {type(layer).__name__}"
    )


def _absent_token_id(tokenizer: Any) -> int:
    for attr in ("mask_token_id", "unk_token_id", "pad_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    raise TwopathError("the tokenizer has no mask, unknown or pad token to stand for an absent word")
