"""Architecture families: where each named site lives, in one table.

A Hugging Face model is a stack of transformer **blocks** with the same inner layout for every
checkpoint of an architecture. twopath needs four facts about that layout, declared here once
per family and nowhere else:

* ``blocks`` — the ``ModuleList`` of blocks, relative to ``model.base_model``;
* ``attn_out`` — inside a block, the attention **output projection**: its *input* is the
  concatenation of the per-head outputs, so head ``h`` is slice ``h`` of it (TransformerLens'
  ``hook_z``; GPT-2's ``Conv1D`` ``c_proj`` included). Grouped-query models (Llama, Mistral,
  Qwen2) have one slice per *query* head there, so heads are named and ablated per query head;
* ``mlp_out`` — inside a block, the MLP **output projection**: its input holds the neurons after
  the non-linearity (and after the gate in gated MLPs) — TransformerLens' ``hook_post``;
* how the classifier **reads** the sequence — ``first`` token for encoders (their own heads
  pool it), ``last`` real token for decoders (then ``final_norm`` and the ``score`` head, or the
  label words' rows of the output embedding for a prompted causal LM).

The residual stream after block ``l`` is the block's output (``hook_resid_post``). Site names:

=============================  =============================================================
``blocks.{l}.attn.hook_z``     input of the attention output projection (all heads of ``l``)
``blocks.{l}.mlp.hook_post``   input of the MLP output projection (all neurons of ``l``)
``blocks.{l}.hook_resid_post`` output of block ``l``
=============================  =============================================================

Adding an architecture = one :class:`Family` entry below (and a tiny config in the contract
suite, ``tests/tiny_models.py``). An architecture not listed is refused before any compute,
with the list of supported families.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from twopath.types import TwopathError

Head = Callable[[Any, torch.Tensor], torch.Tensor]


def _get(root: Any, path: str) -> Any:
    """``root.a.b.c`` for ``path == "a.b.c"`` (``None`` if any step is missing)."""
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


# --- classifier heads of encoders: last hidden states (n, T, d) -> logits -------------------

def _pooled_head(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """BERT, DeBERTa-v2: the base model's pooler on the first token, then the classifier."""
    pooler = getattr(model.base_model, "pooler", None) or getattr(model, "pooler", None)
    pooled = pooler(hidden) if pooler is not None else hidden[:, 0]
    return model.classifier(model.dropout(pooled))


def _classifier_head(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """RoBERTa, XLM-R, ELECTRA: the classification head reads the first token itself."""
    return model.classifier(hidden)


def _distilbert_head(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    pooled = torch.relu(model.pre_classifier(hidden[:, 0]))
    return model.classifier(model.dropout(pooled))


def _albert_head(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    base = model.base_model
    pooled = base.pooler_activation(base.pooler(hidden[:, 0]))
    return model.classifier(model.dropout(pooled))


@dataclass(frozen=True)
class Family:
    """Where one architecture keeps its sites, and how its classifier reads the sequence."""

    name: str
    model_types: tuple[str, ...]
    blocks: str
    attn_out: str
    mlp_out: str
    reads: Literal["first", "last"]
    #: encoders: hidden states -> logits after the last block (``None``: cannot resume mid-model)
    head: Head | None = None
    #: decoders: the final norm after the last block, relative to ``model.base_model``
    final_norm: str | None = None
    #: ALBERT: one block module applied at every layer
    shared_blocks: bool = False
    #: OPT: the MLP sees (batch * positions, width)
    flat_mlp: bool = False
    #: a pre-norm residual stream whose blocks add linear head outputs and the final norm is a
    #: LayerNorm / RMSNorm: direct logit attribution is exact (with the norm's scale frozen)
    linear_residual: bool = False

    @property
    def decoder(self) -> bool:
        return self.reads == "last"

    def block_modules(self, model: nn.Module) -> list[nn.Module]:
        """The module run at each layer, in order (a shared module repeats)."""
        base = model.base_model  # type: ignore[attr-defined]
        if self.shared_blocks:
            return _albert_blocks(base)
        blocks = _get(base, self.blocks)
        if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
            raise TwopathError(f"{type(model).__name__}: no transformer blocks at {self.blocks!r}")
        return list(blocks)

    def child(self, block: nn.Module, path: str) -> nn.Module:
        module = _get(block, path)
        if not isinstance(module, nn.Module):
            raise TwopathError(f"{type(block).__name__} has no {path!r} ({self.name} family)")
        return module


def _albert_blocks(base: Any) -> list[nn.Module]:
    """ALBERT: layer ``l`` runs group ``l * n_groups // n_layers``'s (single) inner layer."""
    config = base.config
    groups = base.encoder.albert_layer_groups
    if int(getattr(config, "inner_group_num", 1)) != 1:
        raise TwopathError("ALBERT with inner_group_num != 1 is not supported")
    n, g = int(config.num_hidden_layers), int(config.num_hidden_groups)
    return [groups[layer * g // n].albert_layers[0] for layer in range(n)]


_BERT_LIKE = {"attn_out": "attention.output.dense", "mlp_out": "output.dense", "reads": "first"}
_LLAMA_LIKE = {"blocks": "layers", "attn_out": "self_attn.o_proj", "mlp_out": "mlp.down_proj",
               "reads": "last", "final_norm": "norm", "linear_residual": True}

FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert", "megatron-bert"), "encoder.layer", head=_pooled_head, **_BERT_LIKE),  # type: ignore[arg-type]
    Family("roberta", ("roberta", "xlm-roberta", "camembert"), "encoder.layer", head=_classifier_head,
           **_BERT_LIKE),  # type: ignore[arg-type]
    Family("electra", ("electra",), "encoder.layer", head=_classifier_head, **_BERT_LIKE),  # type: ignore[arg-type]
    Family("deberta-v2", ("deberta-v2",), "encoder.layer", head=_pooled_head, **_BERT_LIKE),  # type: ignore[arg-type]
    Family("distilbert", ("distilbert",), "transformer.layer", "attention.out_lin", "ffn.lin2", "first",
           head=_distilbert_head),
    Family("albert", ("albert",), "encoder.albert_layer_groups", "attention.dense", "ffn_output", "first",
           head=_albert_head, shared_blocks=True),
    Family("gpt2", ("gpt2",), "h", "attn.c_proj", "mlp.c_proj", "last", final_norm="ln_f", linear_residual=True),
    Family("gpt-neox", ("gpt_neox",), "layers", "attention.dense", "mlp.dense_4h_to_h", "last",
           final_norm="final_layer_norm", linear_residual=True),
    Family("llama", ("llama", "mistral", "qwen2", "qwen3", "gemma"), **_LLAMA_LIKE),  # type: ignore[arg-type]
    # Gemma 2 normalises each sublayer's output before adding it and soft-caps the logits
    Family("gemma2", ("gemma2",), **{**_LLAMA_LIKE, "linear_residual": False}),  # type: ignore[arg-type]
    Family("phi", ("phi",), "layers", "self_attn.dense", "mlp.fc2", "last", final_norm="final_layernorm",
           linear_residual=True),
    Family("phi3", ("phi3",), **_LLAMA_LIKE),  # type: ignore[arg-type]
    Family("opt", ("opt",), "decoder.layers", "self_attn.out_proj", "fc2", "last",
           final_norm="decoder.final_layer_norm", flat_mlp=True, linear_residual=True),
)


def supported_model_types() -> list[str]:
    return sorted(t for family in FAMILIES for t in family.model_types)


def family_for(model_type: str | None) -> Family:
    """The family of a ``config.model_type``; one clear error naming the supported ones."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise TwopathError(
        f"unsupported architecture {model_type!r}; supported model types: {', '.join(supported_model_types())}"
    )
