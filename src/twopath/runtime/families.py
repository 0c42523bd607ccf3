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

For editing (``twopath.editing``) a family also names the **input projections**: ``attn_in``
(query, key and value, or one fused projection laid out ``stacked`` ``[q | k | v]`` as GPT-2's
``c_attn`` and Phi-3's ``qkv_proj``, or ``per_head`` ``[(q k v) of head 0, ...]`` as GPT-NeoX)
and ``mlp_in`` (the up projection, and the gate in gated MLPs; Phi-3 fuses ``[gate | up]``).
:meth:`Family.parameter_slices` turns a head or neuron into the weight rows and columns that
belong to it alone.

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
    #: inside a block, the attention input projections (q, k, v; or one fused projection)
    attn_in: tuple[str, ...] = ()
    #: layout of a fused ``attn_in``: ``stacked`` [q | k | v] or ``per_head`` [(q k v) per head]
    qkv_layout: Literal["separate", "stacked", "per_head"] = "separate"
    #: inside a block, the MLP input projections (up; gate and up in gated MLPs)
    mlp_in: tuple[str, ...] = ()
    #: Phi-3: one fused [gate | up] input projection
    fused_mlp_in: bool = False

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


@dataclass(frozen=True)
class BlockSlice:
    """Entries ``start:stop`` along ``dim`` of the parameter ``module.param`` of a block."""

    module: str
    param: str
    dim: int
    start: int
    stop: int


def _axes(module: nn.Module) -> tuple[int, int]:
    """(output axis, input axis) of a projection's weight: ``Linear`` is (out, in), GPT-2's
    ``Conv1D`` (in, out)."""
    if isinstance(module, nn.Linear):
        return 0, 1
    if hasattr(module, "nf"):  # transformers.pytorch_utils.Conv1D
        return 1, 0
    raise TwopathError(f"cannot slice a {type(module).__name__}: expected a Linear or Conv1D projection")


def _rows(block: nn.Module, path: str, start: int, stop: int) -> list[BlockSlice]:
    """Output rows ``start:stop`` of a projection: its weight and, if it has one, its bias."""
    module = _get(block, path)
    if not isinstance(module, nn.Module):
        raise TwopathError(f"{type(block).__name__} has no {path!r}")
    out_axis, _ = _axes(module)
    slices = [BlockSlice(path, "weight", out_axis, start, stop)]
    if getattr(module, "bias", None) is not None:
        slices.append(BlockSlice(path, "bias", 0, start, stop))
    return slices


def _columns(block: nn.Module, path: str, start: int, stop: int) -> list[BlockSlice]:
    """Input columns ``start:stop`` of a projection's weight (its bias is shared by all inputs)."""
    module = _get(block, path)
    if not isinstance(module, nn.Module):
        raise TwopathError(f"{type(block).__name__} has no {path!r}")
    return [BlockSlice(path, "weight", _axes(module)[1], start, stop)]


def _out_width(block: nn.Module, path: str) -> int:
    module = _get(block, path)
    return int(module.weight.shape[_axes(module)[0]])  # type: ignore[union-attr]


def _head_slices(family: Family, block: nn.Module, head: int, n_heads: int, head_dim: int) -> list[BlockSlice]:
    """Head ``head``'s query rows, its key/value head's rows (shared by the query heads of a
    grouped-query group) and its columns of the output projection."""
    q0 = head * head_dim
    out = _columns(block, family.attn_out, q0, q0 + head_dim)
    if family.qkv_layout == "per_head":
        (fused,) = family.attn_in
        return _rows(block, fused, 3 * q0, 3 * (q0 + head_dim)) + out
    if family.qkv_layout == "stacked":
        (fused,) = family.attn_in
        n_kv = (_out_width(block, fused) // head_dim - n_heads) // 2
        kv0 = (head // (n_heads // n_kv)) * head_dim
        q_width, kv_width = n_heads * head_dim, n_kv * head_dim
        return (_rows(block, fused, q0, q0 + head_dim)
                + _rows(block, fused, q_width + kv0, q_width + kv0 + head_dim)
                + _rows(block, fused, q_width + kv_width + kv0, q_width + kv_width + kv0 + head_dim) + out)
    query, key, value = family.attn_in
    n_kv = _out_width(block, key) // head_dim
    kv0 = (head // (n_heads // n_kv)) * head_dim
    return (_rows(block, query, q0, q0 + head_dim) + _rows(block, key, kv0, kv0 + head_dim)
            + _rows(block, value, kv0, kv0 + head_dim) + out)


def _neuron_slices(family: Family, block: nn.Module, neuron: int) -> list[BlockSlice]:
    """Neuron ``neuron``'s rows of the MLP input projection(s) and its column of the output one."""
    out = _columns(block, family.mlp_out, neuron, neuron + 1)
    if family.fused_mlp_in:
        (fused,) = family.mlp_in
        width = _out_width(block, fused) // 2
        return _rows(block, fused, neuron, neuron + 1) + _rows(block, fused, width + neuron, width + neuron + 1) + out
    return [s for path in family.mlp_in for s in _rows(block, path, neuron, neuron + 1)] + out


def parameter_slices(family: Family, block: nn.Module, kind: str, index: int, n_heads: int,
                     head_dim: int) -> list[BlockSlice]:
    """The parameters of one head or neuron of ``block``, as slices of the block's parameters."""
    if not family.attn_in or not family.mlp_in:
        raise TwopathError(f"the {family.name} family does not name its input projections; it cannot be edited")
    if kind == "head":
        return _head_slices(family, block, index, n_heads, head_dim)
    if kind == "neuron":
        return _neuron_slices(family, block, index)
    raise TwopathError(f"only heads and neurons own parameters of their own; got a {kind!r} component")


def _albert_blocks(base: Any) -> list[nn.Module]:
    """ALBERT: layer ``l`` runs group ``l * n_groups // n_layers``'s (single) inner layer."""
    config = base.config
    groups = base.encoder.albert_layer_groups
    if int(getattr(config, "inner_group_num", 1)) != 1:
        raise TwopathError("ALBERT with inner_group_num != 1 is not supported")
    n, g = int(config.num_hidden_layers), int(config.num_hidden_groups)
    return [groups[layer * g // n].albert_layers[0] for layer in range(n)]


_BERT_QKV = ("attention.self.query", "attention.self.key", "attention.self.value")
_BERT_LIKE = {"attn_out": "attention.output.dense", "mlp_out": "output.dense", "reads": "first",
              "mlp_in": ("intermediate.dense",)}
_SELF_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
_LLAMA_LIKE = {"blocks": "layers", "attn_out": "self_attn.o_proj", "mlp_out": "mlp.down_proj",
               "reads": "last", "final_norm": "norm", "linear_residual": True, "attn_in": _SELF_QKV,
               "mlp_in": ("mlp.gate_proj", "mlp.up_proj")}

FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert", "megatron-bert"), "encoder.layer", head=_pooled_head, attn_in=_BERT_QKV,
           **_BERT_LIKE),  # type: ignore[arg-type]
    Family("roberta", ("roberta", "xlm-roberta", "camembert"), "encoder.layer", head=_classifier_head,
           attn_in=_BERT_QKV, **_BERT_LIKE),  # type: ignore[arg-type]
    Family("electra", ("electra",), "encoder.layer", head=_classifier_head, attn_in=_BERT_QKV,
           **_BERT_LIKE),  # type: ignore[arg-type]
    Family("deberta-v2", ("deberta-v2",), "encoder.layer", head=_pooled_head,
           attn_in=("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj"),
           **_BERT_LIKE),  # type: ignore[arg-type]
    Family("distilbert", ("distilbert",), "transformer.layer", "attention.out_lin", "ffn.lin2", "first",
           head=_distilbert_head, attn_in=("attention.q_lin", "attention.k_lin", "attention.v_lin"),
           mlp_in=("ffn.lin1",)),
    Family("albert", ("albert",), "encoder.albert_layer_groups", "attention.dense", "ffn_output", "first",
           head=_albert_head, shared_blocks=True, attn_in=("attention.query", "attention.key", "attention.value"),
           mlp_in=("ffn",)),
    Family("gpt2", ("gpt2",), "h", "attn.c_proj", "mlp.c_proj", "last", final_norm="ln_f", linear_residual=True,
           attn_in=("attn.c_attn",), qkv_layout="stacked", mlp_in=("mlp.c_fc",)),
    Family("gpt-neox", ("gpt_neox",), "layers", "attention.dense", "mlp.dense_4h_to_h", "last",
           final_norm="final_layer_norm", linear_residual=True, attn_in=("attention.query_key_value",),
           qkv_layout="per_head", mlp_in=("mlp.dense_h_to_4h",)),
    Family("llama", ("llama", "mistral", "qwen2", "qwen3", "gemma"), **_LLAMA_LIKE),  # type: ignore[arg-type]
    # Gemma 2 normalises each sublayer's output before adding it and soft-caps the logits
    Family("gemma2", ("gemma2",), **{**_LLAMA_LIKE, "linear_residual": False}),  # type: ignore[arg-type]
    Family("phi", ("phi",), "layers", "self_attn.dense", "mlp.fc2", "last", final_norm="final_layernorm",
           linear_residual=True, attn_in=_SELF_QKV, mlp_in=("mlp.fc1",)),
    Family("phi3", ("phi3",), **{**_LLAMA_LIKE, "attn_in": ("self_attn.qkv_proj",), "qkv_layout": "stacked",  # type: ignore[arg-type]
                                 "mlp_in": ("mlp.gate_up_proj",), "fused_mlp_in": True}),
    Family("opt", ("opt",), "decoder.layers", "self_attn.out_proj", "fc2", "last",
           final_norm="decoder.final_layer_norm", flat_mlp=True, linear_residual=True, attn_in=_SELF_QKV,
           mlp_in=("fc1",)),
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
