"""Adapters for Hugging Face language models: sequence classifiers and prompted causal LMs.

The adapter hides tokenizers and architectures from the methods:

* **Units are words.** A sentence is split on whitespace; each whitespace-separated chunk is one
  unit, punctuation stays attached to its word (``"good,"`` is one unit shown as ``good``).
  Sub-token scores are merged into their word by **summing** (the rule that keeps SHAP's and
  IG's additivity), using the fast tokenizer's character offsets, so WordPiece (``##``) and BPE
  (``Ġ``) tokenizers are handled the same way.
* **Absent words** are replaced, token by token, by the tokenizer's mask token (unknown or pad
  token where there is none) with the attention mask kept, so the sequence length, the
  positions and the reading position stay fixed.
* **Sites** come from the architecture's :mod:`~twopath.runtime.families` entry.
* **Reading.** Encoders classify from their first token through their own head. Decoders
  classify from the **last real token**: the adapter runs the base model, takes that position
  (found from the attention mask, so right-padded batches give the numbers of single rows) and
  applies the ``score`` head — or, for a *prompted* causal LM (:class:`PromptedLM`), the rows
  of the output embedding of the label words' first tokens, so the decision is the next-token
  choice between the label words and the explained output is their logit difference.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from twopath.runtime.adapter import Inputs, ModelAdapter, ParameterSlice, Site, position_scores
from twopath.runtime.families import Family, _get, family_for
from twopath.runtime.families import parameter_slices as block_parameter_slices
from twopath.runtime.hooks import first_tensor
from twopath.types import Component, Example, TwopathError

_WORD_RE = re.compile(r"\S+")
_MAX_LENGTH = 512


@dataclass(frozen=True)
class TextInput:
    """A tokenized sentence with the word each token belongs to (``-1`` for special tokens and
    a prompt's template)."""

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

    def inputs(self) -> Inputs:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}


def split_words(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of ``text``."""
    return [(m.start(), m.end()) for m in _WORD_RE.finditer(text)]


def word_label(chunk: str) -> str:
    """Display form of a word: surrounding punctuation stripped (kept if nothing else is left)."""
    stripped = chunk.strip(string.punctuation + "“”‘’")
    return stripped or chunk


def word_presence(texts: Sequence[str], words: Sequence[str]) -> Any:
    """One 0/1 column per word: does the sentence contain it (case and punctuation ignored)."""
    import pandas as pd

    bags = [{word_label(text[s:e]).lower() for s, e in split_words(text)} for text in texts]
    return pd.DataFrame({w: [int(w.lower() in bag) for bag in bags] for w in words})


class HFTextClassifier(ModelAdapter):
    """A local Hugging Face sequence classifier (encoder or decoder) behind the adapter contract."""

    modality = "text"
    baselines = ("pad", "mask", "zero")
    resume_pays = True
    positional = True
    default_component = "head"

    def __init__(self, model: nn.Module, tokenizer: Any, name: str = "model", max_length: int | None = None,
                 family: Family | None = None):
        config: Any = model.config
        self.family: Family = family or family_for(getattr(config, "model_type", None))
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length or _position_limit(config, self.family)
        self.labels = self._read_labels(config)
        self.layer_modules: list[nn.Module] = self.family.block_modules(model)
        self.n_layers = len(self.layer_modules)
        self.n_heads = int(getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
                           or config.n_heads)
        self._sites = self._build_sites()
        self.mask_token_id = _absent_token_id(tokenizer)
        self.batch_size: int | None = 64
        self.background: list[str] = []
        self.architecture = type(model).__name__
        if tokenizer.pad_token_id is None:
            if getattr(tokenizer, "eos_token", None) is None:
                raise TwopathError("the tokenizer has no pad token and no end-of-sequence token to pad with")
            tokenizer.pad_token = tokenizer.eos_token  # decoders (GPT-2): pad with EOS, masked out
        tokenizer.padding_side = "right"  # the reading position is found from the attention mask

    def _read_labels(self, config: Any) -> tuple[str, ...]:
        id2label = getattr(config, "id2label", None) or {}
        n_labels = int(getattr(config, "num_labels", len(id2label)))
        return tuple(str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n_labels))

    # --- loading --------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, name: str | None = None, *, device: str = "cpu",
                        dtype: str = "float32", allow_new_head: bool = False) -> HFTextClassifier:
        """Load a sequence classifier saved with ``save_pretrained`` (no network access)."""
        from transformers import AutoModelForSequenceClassification

        directory, config = check_model_dir(path, task="classifier")
        tokenizer = _load_tokenizer(directory)
        model = _load(AutoModelForSequenceClassification, directory, config, device, dtype, allow_new_head)
        return cls(model, tokenizer, name=name or directory.name)

    # --- inputs ---------------------------------------------------------------------------

    def check_example(self, example: Example) -> str:
        if not isinstance(example.raw, str):
            raise TwopathError(f"example {example.id}: a text model needs a sentence")
        if not example.raw.strip():
            raise TwopathError(f"example {example.id}: the text is empty")
        return example.raw

    def units(self, example: Example) -> tuple[str, ...]:
        return self.encode(self.check_example(example)).words

    def full_text(self, text: str) -> tuple[str, int]:
        """The text the model reads and the offset of ``text`` in it (a prompt adds a template)."""
        return text, 0

    def encode(self, text: str) -> TextInput:
        """Tokens of ``text`` with the word each belongs to."""
        spans = split_words(text)
        if not spans:
            raise TwopathError("the text is empty")
        full, offset = self.full_text(text)
        enc = self.tokenizer(full, return_offsets_mapping=True, return_tensors="pt", truncation=True,
                             max_length=self.max_length)
        encodings = getattr(enc, "encodings", None)
        if encodings and encodings[0].overflowing:  # truncation cut tokens off: never explain a cut text
            raise TwopathError(f"the text is longer than the model's {self.max_length} tokens; shorten it "
                               "(or let twopath cut it: --truncate)")
        offsets = enc.pop("offset_mapping")[0].tolist()
        # tokens added by the tokenizer ([CLS], <s>) and a prompt's template cover no word; a mask
        # token written in the text ("[MASK]") does, and belongs to its word
        token_word = np.full(len(offsets), -1, dtype=int)
        for t, (start, end) in enumerate(offsets):
            if end <= start:
                continue
            for w, (ws, we) in enumerate(spans):
                if start < we + offset and end > ws + offset:
                    token_word[t] = w
                    break
        missing = sorted(set(range(len(spans))) - set(token_word[token_word >= 0].tolist()))
        if missing:
            if len(offsets) >= self.max_length and missing[0] > int(token_word.max(initial=-1)):
                raise TwopathError(f"the text is longer than the model's {self.max_length} tokens; shorten it "
                                   "(or let twopath cut it: --truncate)")
            bad = [text[spans[i][0] : spans[i][1]] for i in missing]
            raise TwopathError(f"word(s) {bad} produce no tokens for this tokenizer (zero-width or control characters?); remove them")
        tokens = tuple(self.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist()))
        return TextInput(
            text=text,
            words=tuple(word_label(text[s:e]) for s, e in spans),
            input_ids=enc["input_ids"].to(self.device),
            attention_mask=enc["attention_mask"].to(self.device),
            token_word=token_word,
            tokens=tokens,
        )

    def inputs(self, example: Example) -> Inputs:
        return self.encode(self.check_example(example)).inputs()

    def capabilities(self) -> frozenset[str]:
        found = {"positions", "attention"}
        softcap = getattr(self.model.config, "final_logit_softcapping", None) and isinstance(self, PromptedLM)
        if self.family.decoder and self.family.linear_residual and not softcap:
            found.add("linear_residual")
        if "linear_residual" in found or not self.family.decoder:  # encoders: through the linearised head
            found.add("residual_parts")
        return frozenset(found)

    def tokens(self, example: Example) -> list[str] | None:
        return list(self.encode(self.check_example(example)).tokens)

    def batch_encode(self, texts: Sequence[str]) -> Inputs:
        """A right-padded batch of texts."""
        full = [self.full_text(t)[0] for t in texts]
        enc = self.tokenizer(full, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    def batch_inputs(self, raws: Sequence[Any]) -> Inputs:
        return self.batch_encode([str(r) for r in raws])

    def data_features(self, raws: Sequence[Any], words: Sequence[str] | None = None) -> Any:
        if not words:
            raise TwopathError("labelling text neurons needs a word list (words=[...])")
        return word_presence([str(r) for r in raws], words)

    def without_units(self, example: Example, units: Sequence[int]) -> Example:
        """Each chosen word replaced by as many mask tokens as it has tokens (where the tokenizer
        has a mask token; else the word is kept)."""
        text = self.check_example(example)
        chosen = set(units)
        mask = self.tokenizer.mask_token
        pieces, last = [], 0
        for i, (start, end) in enumerate(split_words(text)):
            pieces.append(text[last:start])
            n_tok = len(self.tokenizer.tokenize(text[start:end]))
            pieces.append(mask * n_tok if i in chosen and mask else text[start:end])
            last = end
        return Example(f"{example.id}-units-removed", "".join(pieces) + text[last:], example.target)

    def masked_ids(self, inp: TextInput, keep: np.ndarray) -> torch.Tensor:
        """Input ids for each row of the boolean word mask ``keep`` (n, n_words)."""
        keep = np.asarray(keep, dtype=bool).reshape(-1, len(inp.words))
        ids = inp.input_ids.repeat(keep.shape[0], 1)
        is_word = inp.token_word >= 0
        token_keep = np.ones((keep.shape[0], inp.n_tokens), dtype=bool)
        token_keep[:, is_word] = keep[:, inp.token_word[is_word]]
        ids[torch.from_numpy(~token_keep).to(ids.device)] = self.mask_token_id
        return ids

    def masked_inputs(self, example: Example, keep: np.ndarray, *, background_size: int = 50
                      ) -> tuple[Inputs, int]:
        inp = self.encode(self.check_example(example))
        ids = self.masked_ids(inp, keep)
        return {"input_ids": ids, "attention_mask": inp.attention_mask.expand(ids.shape[0], -1)}, 1

    def reference_inputs(self) -> Inputs:
        if not self.background:
            raise TwopathError("mean ablation needs a reference sample (adapter.background)")
        return self.batch_encode(list(self.background))

    def position_mask(self, inputs: Inputs) -> torch.Tensor | None:
        return inputs.get("attention_mask")

    def row_bytes(self, inputs: Inputs) -> int:
        """Per row: the residual stream, the MLP and the attention scores of one block at a time
        (about 16 hidden-widths per token plus heads x tokens per token), over every block's
        kept outputs, in the model's precision."""
        config: Any = self.model.config
        tokens = int(inputs["input_ids"].shape[1])
        hidden = int(getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 768)
        element = torch.finfo(self.dtype).bits // 8
        per_token = hidden * (16 + self.n_layers) + self.n_heads * tokens
        return tokens * per_token * element

    def reading_position(self, inputs: Inputs) -> torch.Tensor:
        mask = inputs["attention_mask"]
        if not self.family.decoder:
            return torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
        positions = torch.arange(mask.shape[1], device=mask.device)
        return (positions * (mask > 0)).argmax(-1)

    def baseline_ids(self, inp: TextInput, token: str = "pad") -> torch.Tensor:
        """Ids with every word token replaced by the pad or mask token (special tokens kept)."""
        ids = inp.input_ids.clone()
        fill = self.tokenizer.pad_token_id if token == "pad" else self.mask_token_id
        if fill is None:
            fill = self.mask_token_id
        ids[0, torch.from_numpy(inp.token_word >= 0).to(ids.device)] = int(fill)
        return ids

    # --- running --------------------------------------------------------------------------

    def run(self, inputs: Inputs) -> torch.Tensor:
        if not self.family.decoder:
            return self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        hidden = self.model.base_model(input_ids=inputs["input_ids"],  # type: ignore[operator]
                                       attention_mask=inputs["attention_mask"], use_cache=False)
        return self._read(hidden.last_hidden_state, inputs)

    def _read(self, hidden: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        """Decoder logits from the last hidden states (n, T, d), read at the last real token."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self._score(hidden[rows, self.reading_position(inputs)])

    def _score(self, hidden: torch.Tensor) -> torch.Tensor:
        score: nn.Module = self.model.score  # type: ignore[assignment]
        return score(hidden)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        logits = self.logits(self.batch_encode(texts))
        return torch.softmax(logits, -1).cpu().numpy()

    def embedding_layer(self) -> nn.Module:
        layer: nn.Module = self.model.get_input_embeddings()  # type: ignore[operator]
        return layer

    def embed(self, inputs: Inputs) -> torch.Tensor:
        return self.embedding_layer()(inputs["input_ids"])

    def run_embedded(self, embeds: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        mask = inputs["attention_mask"].expand(embeds.shape[0], -1)
        if not self.family.decoder:
            return self.model(inputs_embeds=embeds, attention_mask=mask).logits
        hidden = self.model.base_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)  # type: ignore[operator]
        return self._read(hidden.last_hidden_state, {"attention_mask": mask})

    def baseline(self, example: Example, kind: Any = None) -> torch.Tensor:
        kind = kind or self.baselines[0]
        if kind not in self.baselines:
            raise TwopathError(f"unknown text IG baseline {kind!r}; expected one of {list(self.baselines)}")
        inp = self.encode(self.check_example(example))
        with torch.no_grad():
            if kind == "zero":
                base = self.embed(inp.inputs()).clone()
                base[0, torch.from_numpy(inp.token_word >= 0).to(base.device)] = 0.0
                return base
            return self.embedding_layer()(self.baseline_ids(inp, kind))

    def merge_to_units(self, example: Example, scores: Any) -> np.ndarray:
        values = position_scores(scores)
        return self.encode(self.check_example(example)).merge(values)

    def attention_weights(self, inputs: Inputs) -> tuple[torch.Tensor, ...]:
        """Attention weights of every layer, (n, heads, T, T) each (eager attention)."""
        with torch.no_grad():
            target = self.model.base_model if self.family.decoder else self.model
            kwargs = {"use_cache": False} if self.family.decoder else {}
            out = target(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],  # type: ignore[operator]
                         output_attentions=True, **kwargs)
        if not out.attentions or out.attentions[0] is None:
            raise TwopathError("the model returned no attention weights (load it with eager attention)")
        return tuple(out.attentions)

    # --- sites ----------------------------------------------------------------------------

    def _build_sites(self) -> dict[str, Site]:
        sites: dict[str, Site] = {}
        seen: dict[int, int] = {}
        for layer, block in enumerate(self.layer_modules):
            occurrence = None
            if self.family.shared_blocks:
                occurrence = seen.get(id(block), 0)
                seen[id(block)] = occurrence + 1
            sites[f"blocks.{layer}.attn.hook_z"] = Site(self.family.child(block, self.family.attn_out), "pre", occurrence)
            mlp = self.family.child(block, self.family.mlp_out)
            flat = block if self.family.flat_mlp else None
            sites[f"blocks.{layer}.mlp.hook_post"] = Site(mlp, "pre", occurrence, flat)
            sites[f"blocks.{layer}.hook_resid_pre"] = Site(block, "pre", occurrence)
            sites[f"blocks.{layer}.hook_resid_post"] = Site(block, "forward", occurrence)
        return sites

    def sites(self) -> dict[str, Site]:
        return dict(self._sites)

    def site(self, component: Component) -> Site:
        layer = self._check_layer(component.layer)
        kind = component.kind
        if kind in ("head", "attn"):
            return self._sites[f"blocks.{layer}.attn.hook_z"]
        if kind in ("neuron", "mlp"):
            return self._sites[f"blocks.{layer}.mlp.hook_post"]
        if kind in ("resid", "layer"):
            return self._sites[f"blocks.{layer}.hook_resid_post"]
        raise TwopathError(f"unknown component kind {kind!r}")

    def mlp_width(self, layer: int) -> int:
        module = self._sites[f"blocks.{self._check_layer(layer)}.mlp.hook_post"].module
        return _in_features(module)

    def head_dim(self) -> int:
        return _in_features(self._sites["blocks.0.attn.hook_z"].module) // self.n_heads

    def components(self, kind: str, inputs: Inputs | None = None) -> list[Component]:
        """Every component of ``kind`` (a new list each call; the components are built once per
        adapter and length: a transformer has thousands of neurons, and a sweep over every site
        asked for them on each call)."""
        from twopath.runtime.trace import caches

        n_pos = int(inputs["input_ids"].shape[1]) if kind == "resid" and inputs is not None else None
        built = caches(self).components
        if (kind, n_pos) not in built:
            built[(kind, n_pos)] = self._components(kind, inputs)
        return list(built[(kind, n_pos)])

    def _components(self, kind: str, inputs: Inputs | None) -> list[Component]:
        if kind == "head":
            return [Component("head", layer, h) for layer in range(self.n_layers) for h in range(self.n_heads)]
        if kind == "neuron":
            return [Component("neuron", layer, i) for layer in range(self.n_layers) for i in range(self.mlp_width(layer))]
        if kind == "layer":
            return [Component("layer", layer) for layer in range(self.n_layers)]
        if kind == "block":
            return [Component(k, layer) for layer in range(self.n_layers) for k in ("attn", "mlp")]
        if kind == "resid":
            if inputs is None:
                raise TwopathError("residual positions are enumerable only for an input")
            n_pos = int(inputs["input_ids"].shape[1])
            return [Component("resid", layer, position=p) for layer in range(self.n_layers) for p in range(n_pos)]
        raise TwopathError(f"unknown component kind {kind!r} for a text model")

    def parameter_slices(self, component: Component) -> list[ParameterSlice]:
        """A head's or neuron's slices of its block's projections (:func:`families.parameter_slices`);
        ALBERT's shared block: the same parameters at every layer."""
        layer = self._check_layer(component.layer)
        if component.kind not in ("head", "neuron"):
            raise TwopathError(f"{component}: only heads and neurons own parameters of their own")
        limit = self.n_heads if component.kind == "head" else self.mlp_width(layer)
        if component.index is None or not 0 <= component.index < limit:
            raise TwopathError(f"{component}: layer {layer} has {limit} {component.kind}s")
        block = self.layer_modules[layer]
        prefix = {id(m): name for name, m in self.model.named_modules()}[id(block)]
        return [ParameterSlice(f"{prefix}.{s.module}.{s.param}", s.dim, s.start, s.stop)
                for s in block_parameter_slices(self.family, block, component.kind, component.index,
                                                self.n_heads, self.head_dim())]

    def _check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_layers:
            raise TwopathError(f"layer {layer} out of range: the model has {self.n_layers} layers")
        return layer

    def parameter_blocks(self, embeddings: bool = False) -> list[tuple[str, tuple[str, ...]]]:
        names = {id(m): name for name, m in self.model.named_modules()}
        layers = [names[id(m)] for m in self.layer_modules]
        embed_name = names[id(self.embedding_layer())]
        embed_prefix = embed_name.rsplit(".", 1)[0] if "." in embed_name else embed_name
        taken = (*layers, embed_prefix)
        head = tuple(sorted({
            name for name, module in self.model.named_modules()
            if any(True for _ in module.parameters(recurse=False))
            and not any(_under(name, prefix) for prefix in taken)
        }))
        if not head:
            raise TwopathError("cannot find the classifier head: every parameter is in the embeddings or the layers")
        blocks = [("head", head)]
        blocks += [(f"L{i}", (layers[i],)) for i in reversed(range(len(layers)))]
        if embeddings:
            blocks.append(("embeddings", (embed_prefix,)))
        return blocks

    # --- resuming a forward pass at a block ---------------------------------------------------

    def can_resume(self) -> bool:
        return not self.family.shared_blocks and (self.family.decoder or self.family.head is not None)

    def resume(self, start: int, state: torch.Tensor, layer_calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
               inputs: Inputs) -> torch.Tensor:
        # the recorded arguments (masks, positions, rotary tables) keep their batch of one and
        # broadcast over the rows, as they do inside the model
        n = state.shape[0]
        hidden = state
        for layer in range(start, self.n_layers):
            args, kwargs = layer_calls[layer]
            if args:
                out = self.layer_modules[layer](hidden, *args[1:], **kwargs)
            else:
                out = self.layer_modules[layer](**{**kwargs, "hidden_states": hidden})
            hidden = first_tensor(out)
        return self.decode_hidden(hidden, {"attention_mask": inputs["attention_mask"].expand(n, -1)})

    # --- reading the residual stream: logit lens, direct logit attribution ------------------

    def decode_hidden(self, hidden: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        """Logits read from a residual stream (n, T, d) the way the model reads its last one:
        the encoder's head, or the decoder's final norm and head at the reading position."""
        if not self.family.decoder:
            if self.family.head is None:
                raise TwopathError(f"{self.family.name}: no classifier head is described for reading a residual stream")
            return self.family.head(self.model, hidden)
        for module in self._final_modules():
            hidden = module(hidden)
        return self._read(hidden, inputs)

    def _final_modules(self) -> list[nn.Module]:
        base = self.model.base_model
        found = [_get(base, path) for path in (self.family.final_norm, "decoder.project_out") if path]
        return [m for m in found if isinstance(m, nn.Module)]

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight (n_labels, d), bias) of the decoder's linear read-out of its final hidden state."""
        score: Any = self.model.score
        return score.weight, getattr(score, "bias", None)

    def frozen_readout(self, final: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The decoder's read-out with its final norm's scale frozen at ``final`` (d,), the clean
        residual stream at the reading position: ``(linear, constant)`` where ``linear(parts)``
        maps parts of the stream (k, d) to their logits (k, n_labels) and ``constant`` is what
        the norm's shift and the head's bias add. The parts' logits plus the constant are the
        model's logits whenever the parts sum to ``final`` (LayerNorm and RMSNorm are linear once
        their scale is fixed)."""
        if not (self.family.decoder and self.family.linear_residual):
            raise TwopathError(f"direct logit attribution needs a pre-norm decoder with a linear read-out; "
                               f"{self.family.name} ({self.architecture}) is not one")
        modules = self._final_modules()
        norm: Any = modules[0]
        centred = isinstance(norm, nn.LayerNorm)
        eps = float(getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", None) or 1e-6)
        x = final.detach().float()
        scale = torch.sqrt((x - x.mean()).pow(2).mean() + eps) if centred else torch.sqrt(x.pow(2).mean() + eps)
        gain = norm.weight.detach().float() if getattr(norm, "weight", None) is not None else torch.ones_like(x)
        if type(norm).__name__.startswith("Gemma"):
            gain = 1.0 + gain  # Gemma's RMSNorm multiplies by (1 + weight)
        shift = getattr(norm, "bias", None)
        shift = None if shift is None else shift.detach()
        weight, bias = self.head_weights()
        weight = weight.detach().float()
        bias = None if bias is None else bias.detach()
        for extra in modules[1:]:  # OPT's project_out: linear, no bias
            weight = weight @ extra.weight.detach().float()  # type: ignore[operator]

        def linear(parts: torch.Tensor) -> torch.Tensor:
            parts = parts.float()
            if centred:
                parts = parts - parts.mean(-1, keepdim=True)
            return (parts / scale * gain) @ weight.T

        constant = torch.zeros(weight.shape[0], device=weight.device)
        if shift is not None:
            constant = constant + shift.float() @ weight.T
        if bias is not None:
            constant = constant + bias.float()
        return linear, constant


class PromptedLM(HFTextClassifier):
    """A causal LM turned into a classifier by a prompt template and label words.

    The decision is the next-token choice, after ``template`` with ``{text}`` filled in, between
    the label words' first tokens; the logits are those tokens' logits, so the explained output
    (the target's logit difference) is the same number on both paths. Units are the words of
    ``{text}`` only: the template is fixed context, never masked.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, template: str, label_words: Sequence[str],
                 name: str = "model", max_length: int | None = None):
        self.template = check_template(template)
        self.label_words = tuple(label_words)
        super().__init__(model, tokenizer, name=name, max_length=max_length)
        if not self.family.decoder:
            raise TwopathError(f"a prompted decision needs a decoder (causal LM); {self.architecture} is an encoder")
        self.label_ids = label_token_ids(tokenizer, self.label_words)

    def _read_labels(self, config: Any) -> tuple[str, ...]:
        labels = tuple(w.strip() for w in self.label_words)
        if len(labels) < 2:
            raise TwopathError("a prompted decision needs at least two label words (--labels ' negative, positive')")
        return labels

    @classmethod
    def from_pretrained_prompted(cls, path: str | Path, template: str, label_words: Sequence[str],
                                 name: str | None = None, *, device: str = "cpu", dtype: str = "float32") -> PromptedLM:
        from transformers import AutoModelForCausalLM

        check_template(template)
        directory, config = check_model_dir(path, task="causal_lm")
        tokenizer = _load_tokenizer(directory)
        label_token_ids(tokenizer, label_words)  # label errors before the weights load
        model = _load(AutoModelForCausalLM, directory, config, device, dtype, allow_new_head=False)
        return cls(model, tokenizer, template, label_words, name=name or directory.name)

    def full_text(self, text: str) -> tuple[str, int]:
        start = self.template.index("{text}")
        return self.template[:start] + text + self.template[start + len("{text}") :], start

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The label words' rows of the output embedding (and of its bias, if any)."""
        head: nn.Module = self.model.get_output_embeddings()  # type: ignore[operator]
        ids = torch.as_tensor(self.label_ids, device=self.device)
        weight: torch.Tensor = head.weight[ids]  # type: ignore[index]
        bias: torch.Tensor | None = head.bias[ids] if getattr(head, "bias", None) is not None else None  # type: ignore[index]
        return weight, bias

    def frozen_readout(self, final: torch.Tensor) -> tuple[Any, torch.Tensor]:
        if getattr(self.model.config, "final_logit_softcapping", None):
            raise TwopathError(f"direct logit attribution: {self.architecture} soft-caps its logits (not linear)")
        return super().frozen_readout(final)

    def _score(self, hidden: torch.Tensor) -> torch.Tensor:
        weight, bias = self.head_weights()
        logits = torch.nn.functional.linear(hidden, weight, bias)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "prompt": self.template, "label_words": list(self.label_words)}


@dataclass(frozen=True)
class Truncation:
    """A text cut to the model's limit after its last whole word that fits."""

    text: str
    dropped_tokens: int
    dropped_words: int
    max_length: int

    def note(self) -> str:
        return (f"the text was longer than the model's {self.max_length} tokens and was cut after its last whole "
                f"word that fits (--truncate): {self.dropped_tokens} tokens ({self.dropped_words} words) dropped; "
                "both paths explain the cut text")


def truncate_text(adapter: HFTextClassifier, text: str) -> Truncation:
    """``text`` cut after the last whole word whose tokens (with a prompt's template and the special
    tokens) fit ``adapter.max_length``, and how many of the text's tokens and words were dropped."""
    spans = split_words(text)

    def length(n_words: int) -> int:
        cut = text[: spans[n_words - 1][1]] if n_words else ""
        return len(adapter.tokenizer(adapter.full_text(cut)[0])["input_ids"])

    total = length(len(spans))
    if total <= adapter.max_length or not spans:
        return Truncation(text, 0, 0, adapter.max_length)
    low, high = 0, len(spans)  # the longest prefix of words that fits: length() grows with it
    while low < high:
        mid = (low + high + 1) // 2
        if length(mid) <= adapter.max_length:
            low = mid
        else:
            high = mid - 1
    if low == 0:
        raise TwopathError(f"not even the first word fits the model's {adapter.max_length} tokens")
    return Truncation(text[: spans[low - 1][1]], total - length(low), len(spans) - low, adapter.max_length)


def check_template(template: str) -> str:
    if "{text}" not in template:
        raise TwopathError("the prompt template must contain {text} where the input goes")
    if template.count("{text}") > 1:
        raise TwopathError("the prompt template must contain {text} exactly once")
    return template


def label_token_ids(tokenizer: Any, label_words: Sequence[str]) -> tuple[int, ...]:
    """The first token of each label word; one error for empty or colliding label words."""
    ids = []
    for word in label_words:
        tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not word.strip() or not tokens:
            raise TwopathError(f"label word {word!r} tokenizes to nothing")
        ids.append(int(tokens[0]))
    if len(set(ids)) != len(ids):
        first = [tokenizer.convert_ids_to_tokens(i) for i in ids]
        raise TwopathError(f"label words {list(label_words)} share a first token ({first}); choose words that start differently")
    return tuple(ids)


# --- loading helpers ------------------------------------------------------------------------

def check_model_dir(path: str | Path, task: str) -> tuple[Path, dict[str, Any]]:
    """Validate a model directory and its config before any weights load."""
    directory = Path(path)
    if not directory.is_dir():
        raise TwopathError(f"model directory does not exist: {directory}")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise TwopathError(f"not a Hugging Face model directory (no config.json): {directory}")
    try:
        config = json.loads(config_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TwopathError(f"{config_path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise TwopathError(f"{config_path} is not a JSON object")
    family_for(config.get("model_type"))  # unsupported architectures fail here
    archs = config.get("architectures") or []
    wanted = "ForSequenceClassification" if task == "classifier" else "ForCausalLM"
    endings = (wanted,) if task == "classifier" else (wanted, "LMHeadModel")
    if archs and not any(str(a).endswith(endings) for a in archs):
        hint = (" (a causal LM needs --prompt and --labels)" if task == "classifier"
                and any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs) else "")
        raise TwopathError(f"{directory} holds a {archs[0]}, expected an architecture ending in {wanted}{hint}")
    if not any((directory / f).is_file() for f in ("tokenizer.json", "vocab.txt", "vocab.json")):
        raise TwopathError(f"{directory}: no tokenizer files (tokenizer.json, vocab.txt or vocab.json) next to the model")
    return directory, config


def _load_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise TwopathError(f"cannot load the tokenizer in {directory}: {_first_line(err)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise TwopathError(f"{directory}: a fast tokenizer (tokenizer.json) is required for word offsets")
    if tokenizer.pad_token_id is None and getattr(tokenizer, "eos_token", None) is None:
        raise TwopathError(f"{directory}: the tokenizer has no pad token and no end-of-sequence token to pad with")
    return tokenizer


def _load(auto: Any, directory: Path, config: dict[str, Any], device: str, dtype: str, allow_new_head: bool) -> nn.Module:
    from transformers.utils import logging as hf_logging

    from twopath.runtime.devices import resolve_device, resolve_dtype

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        model, info = auto.from_pretrained(directory, local_files_only=True, attn_implementation="eager",
                                           output_loading_info=True, dtype=torch_dtype)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise TwopathError(f"cannot load the model in {directory}: {_first_line(err)}") from None
    missing = [k for k in info.get("missing_keys", []) if k.split(".")[0] in ("classifier", "score", "pre_classifier")]
    if missing and not allow_new_head:
        raise TwopathError(f"{directory}: the weights have no classification head ({missing[0]} is missing); "
                           "a random head would be explained. Fine-tune the model first, or pass --allow-new-head")
    model.to(torch_device)
    if missing:
        model.config.twopath_new_head = True
    return model.eval()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _position_limit(config: Any, family: Family) -> int:
    """Longest input the model takes: its position table (RoBERTa's less its padding offset)."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not limit:
        return _MAX_LENGTH
    if family.name == "roberta":
        limit -= int(getattr(config, "pad_token_id", 1) or 1) + 1
    return max(1, min(int(limit), _MAX_LENGTH))


def _in_features(module: nn.Module) -> int:
    width = getattr(module, "in_features", None) or getattr(module, "nx", None)
    if width is None:
        width = module.weight.shape[0]  # type: ignore[union-attr,index]
    return int(width)


def _absent_token_id(tokenizer: Any) -> int:
    for attr in ("mask_token_id", "unk_token_id", "pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    raise TwopathError("the tokenizer has no mask, unknown or pad token to stand for an absent word")


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")
