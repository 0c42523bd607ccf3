"""Reading the residual stream: logit lens, direct logit attribution, direct effects.

People who study language models read a decision with three tools before they ablate anything:

* **Logit lens** (nostalgebraist, 2020) — at which layer the decision appears. The residual
  stream after each block, at the reading position, goes through the model's own final norm and
  head (the ``score`` head, the label words' rows of the output embedding for a prompted causal
  LM, or an encoder's classifier head), giving the explained output *as if* the model stopped
  there. The last layer's value is the model's own output. ``position`` reads the lens at any
  other token instead (what the head would say if it read that token), e.g. to see where in a
  prompt the label starts to form.
* **Direct logit attribution** (DLA; Elhage et al., 2021) — the final residual stream at the
  reading position is a sum: the embeddings, each attention head's output through the output
  projection, each block's MLP (with the attention output bias), then the final norm and the
  head. With the norm's scale frozen at the clean run (the TransformerLens convention) the
  read-out is linear, so every part gets its share of the logit difference (target minus the
  strongest other label) and the shares plus the norm's shift and the head's bias add up to it
  exactly in pre-norm decoders. Post-norm encoders (BERT and its kin) re-normalise the stream
  after every sublayer: with every LayerNorm's scale frozen too, each norm is affine, so the last
  hidden state is still a sum of parts (exactly), but the classifier reads it through a
  non-linear head (BERT's pooler dense + tanh); that head is linearised at the clean run (its
  gradient), a first-order approximation whose error is measured per part and reported. Gemma 2
  (normed sublayer outputs, soft-capped logits) is refused with one line.
* **Direct effect** — activation patching to the logits only: replace one component's output
  by its value on the contrast input while every later component keeps its value (path
  patching), so the final residual stream changes by exactly that component's difference. The
  total effect is what :mod:`~twopath.mechanistic.patching` measures; a component whose direct
  effect is close to its total acts by itself, one with a total but no direct effect acts
  through later components.

All three read the example's :class:`~twopath.runtime.trace.Trace` (one clean forward pass with
the residual stream, the head outputs and the block inputs recorded): the lens and DLA cost no
further forward passes, the direct effect one batched read-out for every component.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from twopath.mechanistic.base import MECHANISTIC_METHODS, InterventionMethod, logits_output
from twopath.mechanistic.patching import DIRECTIONS
from twopath.runtime.adapter import OutputSpace, to_numpy
from twopath.runtime.trace import Trace
from twopath.types import Component, Example, TwopathError


def _resid_names(adapter: Any) -> list[str]:
    return [f"blocks.{layer}.hook_resid_post" for layer in range(adapter.n_layers)]


def _reading_sites(adapter: Any) -> list[str]:
    """Every site the lens, DLA and direct effects read, asked for at once: one recording pass
    serves all three (and gives the clean logits)."""
    heads = [f"blocks.{layer}.attn.hook_z" for layer in range(adapter.n_layers)]
    sites = ["blocks.0.hook_resid_pre", *_resid_names(adapter), *heads]
    if not adapter.family.decoder:  # post-norm encoders: the MLP's output is not the rest of the block's addition
        sites += [f"blocks.{layer}.mlp.hook_post" for layer in range(adapter.n_layers)]
    return sites


@MECHANISTIC_METHODS.register("logit_lens", modalities=("text",))
class LogitLens(InterventionMethod):
    """The decision read from the residual stream after every layer, through the model's own head."""

    what_it_tells_you = "at which layer the decision appears (the output read after each layer)"

    def __init__(self, output: OutputSpace = "logit_diff", batch_size: int = 128, position: int | None = None):
        super().__init__(output, batch_size)
        self.position = position

    def _effects(self, adapter: Any, example: Example, target: int, corrupted: Example | None) -> dict[str, Any]:
        trace = Trace.of(adapter, example)  # lazy: nothing runs before the position is checked
        position = lens_position(adapter, trace.inputs, self.position)
        names = _resid_names(adapter)
        acts = trace.activations(_reading_sites(adapter))
        stack = torch.cat([acts[name] for name in names] + [acts["blocks.0.hook_resid_pre"]])[:, position : position + 1]
        ones = torch.ones(stack.shape[:2], dtype=trace.inputs["attention_mask"].dtype, device=stack.device)
        with torch.no_grad():  # a one-token stream: the head reads that token as it reads its own
            logits = adapter.decode_hidden(stack, {"attention_mask": ones}).float()
        values = to_numpy(adapter.output(logits, target, self.output))
        probs = to_numpy(torch.softmax(logits, -1)[:, target])
        clean, clean_p = logits_output(adapter, trace.logits, target, self.output)
        n = adapter.n_layers
        at_reading = position == int(adapter.reading_position(trace.inputs)[0])
        return {
            "metric": self.output,
            "components": [Component("layer", layer) for layer in range(n)],
            "effects": values[:n],
            "clean": clean,
            "meta": {"embeddings": float(values[n]), "probability": [float(p) for p in probs[:n]],
                     "clean_probability": clean_p, "decisions": [adapter.labels[int(i)] for i in logits[:n].argmax(-1)],
                     # the last layer read at the model's own reading position is its output
                     "last_layer_gap": float(abs(values[n - 1] - clean)) if at_reading else None, "n_forward_rows": 1,
                     "position": position, "token": _token(adapter, trace.inputs, position),
                     "reading_position": at_reading},
        }


def lens_position(adapter: Any, inputs: dict[str, torch.Tensor], position: int | None) -> int:
    """The position the lens reads: ``None`` for the model's own reading position (an encoder's
    first token; a decoder's last real token, which for a prompted LM is where the label word is
    decided), else an index into the tokenized input (negative counts from the end)."""
    mask = inputs["attention_mask"][0]
    if position is None:
        return int(adapter.reading_position(inputs)[0])
    real = [int(i) for i in torch.nonzero(mask > 0).flatten()]
    if isinstance(position, bool) or not isinstance(position, int) or not -len(real) <= position < len(real):
        raise TwopathError(f"logit_lens: position {position!r} is outside the input's {len(real)} tokens "
                           f"(expected an integer from {-len(real)} to {len(real) - 1})")
    return real[position]


def _token(adapter: Any, inputs: dict[str, torch.Tensor], position: int) -> str:
    tokenizer = getattr(adapter, "tokenizer", None)
    if tokenizer is None:
        return ""
    return str(tokenizer.convert_ids_to_tokens(int(inputs["input_ids"][0, position])))


def residual_parts(adapter: Any, trace: Trace) -> tuple[list[Component], torch.Tensor, torch.Tensor, torch.Tensor]:
    """The final residual stream at the reading position as a sum of parts.

    Returns ``(components, parts (k, d), embeddings (d,), final (d,))`` with the heads of every
    layer (``L{l}H{h}``: the head's output through the attention output projection, without its
    bias) and ``L{l}.mlp`` (the rest of block ``l``'s addition to the stream: its MLP and the
    attention output bias); ``embeddings + parts.sum(0) == final``.
    """
    n_layers, n_heads = adapter.n_layers, adapter.n_heads
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    acts = trace.activations(_reading_sites(adapter))
    position = int(adapter.reading_position(trace.inputs)[0])
    before = acts["blocks.0.hook_resid_pre"][0, position]
    embeddings = before
    components: list[Component] = []
    parts: list[torch.Tensor] = []
    width = adapter.head_dim()
    with torch.no_grad():
        for layer in range(n_layers):
            z = acts[names[layer]][0, position]
            masked = torch.zeros(n_heads, z.shape[-1], dtype=z.dtype, device=z.device)
            for head in range(n_heads):
                masked[head, head * width : (head + 1) * width] = z[head * width : (head + 1) * width]
            projection = adapter.site(Component("head", layer, 0)).module
            heads = projection(masked) - projection(torch.zeros_like(masked[:1]))
            after = acts[f"blocks.{layer}.hook_resid_post"][0, position]
            components += [Component("head", layer, h) for h in range(n_heads)] + [Component("mlp", layer)]
            parts += [heads, (after - before - heads.sum(0))[None]]
            before = after
    return components, torch.cat(parts), embeddings, before


def _direction(logits: torch.Tensor, target: int) -> int:
    """The strongest label other than the target at the clean run (the logit difference's other side)."""
    others = logits[0].clone()
    others[target] = -torch.inf
    return int(others.argmax())


@MECHANISTIC_METHODS.register("direct_logit_attribution", modalities=("text",))
class DirectLogitAttribution(InterventionMethod):
    """Each head's and MLP's direct share of the logit difference (norm scales frozen; exact on pre-norm decoders, approximate on encoders)."""

    what_it_tells_you = "how much each head and MLP writes the decision directly into the output"
    requires = frozenset({"residual_parts"})  # not Gemma 2 (soft-capped, post-norm blocks)

    def _effects(self, adapter: Any, example: Example, target: int, corrupted: Example | None) -> dict[str, Any]:
        if "linear_residual" not in adapter.capabilities():  # an encoder: through its linearised head
            return encoder_dla(adapter, Trace.of(adapter, example), target)
        trace = Trace.of(adapter, example)
        components, parts, embeddings, final = residual_parts(adapter, trace)
        linear, constant = adapter.frozen_readout(final)
        other = _direction(trace.logits, target)
        with torch.no_grad():
            shares = linear(torch.cat([parts, embeddings[None]]))
        share = to_numpy(shares[:, target] - shares[:, other])
        offset = float(constant[target] - constant[other])
        logit_diff = float(trace.logits[0, target] - trace.logits[0, other])
        total = float(share.sum() + offset)
        return {
            "metric": "logit_diff_contribution",
            "components": components,
            "effects": share[:-1],
            "clean": logit_diff,
            "meta": {"other_label": adapter.labels[other], "embeddings": float(share[-1]), "constant": offset,
                     "sum_of_parts": total, "gap": abs(total - logit_diff), "n_forward_rows": 1,
                     "note": "the final norm's scale is frozen at the clean run; parts + constant = logit difference"},
        }


def _frozen_norm(norm: torch.nn.Module, clean: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """A LayerNorm with its scale frozen at ``clean`` (its input at the clean run), as
    ``(linear, shift)``: ``linear(v)`` centres and scales any part ``v`` (..., d), and
    ``sum(linear(parts)) + shift == norm(sum(parts))`` whenever the parts sum to ``clean``."""
    eps = float(getattr(norm, "eps", 1e-12))
    scale = torch.sqrt(clean.var(unbiased=False) + eps)
    weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
    gain = weight.detach().float() if isinstance(weight, torch.Tensor) else torch.ones_like(clean)
    shift = bias.detach().float() if isinstance(bias, torch.Tensor) else torch.zeros_like(clean)

    def linear(v: torch.Tensor) -> torch.Tensor:
        return gain * (v - v.mean(-1, keepdim=True)) / scale

    return linear, shift


def encoder_parts(adapter: Any, trace: Trace) -> tuple[list[Component], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The last hidden state of a post-norm encoder at its reading token as a sum of parts.

    Every block adds its attention output (per head, through the output projection) and then its
    MLP output, each followed by a LayerNorm; with every LayerNorm's scale frozen at the clean run
    each norm is affine, so it maps every part found so far to a centred, rescaled part and adds
    its shift to a constant. Returns ``(components, parts (k, d), embeddings (d,), constant (d,),
    final (d,))`` with ``embeddings + parts.sum(0) + constant == final`` (checked: a block laid out
    otherwise is refused in one line).
    """
    acts = trace.activations(_reading_sites(adapter))
    position = int(adapter.reading_position(trace.inputs)[0])
    width, n_heads = adapter.head_dim(), adapter.n_heads
    embeddings = acts["blocks.0.hook_resid_pre"][0, position].float()
    constant = torch.zeros_like(embeddings)
    parts = embeddings.new_zeros(0, embeddings.shape[-1])
    components: list[Component] = []
    with torch.no_grad():
        for layer, block in enumerate(adapter.layer_modules):
            norms = [m for m in block.modules() if isinstance(m, torch.nn.LayerNorm)]
            if len(norms) != 2:
                raise TwopathError(f"direct_logit_attribution: {adapter.architecture} block {layer} has {len(norms)} "
                                   "LayerNorms, not the post-norm encoder's two (after attention, after the MLP)")
            z = acts[f"blocks.{layer}.attn.hook_z"][0, position]
            masked = torch.zeros(n_heads, z.shape[-1], dtype=z.dtype, device=z.device)
            for head in range(n_heads):
                masked[head, head * width : (head + 1) * width] = z[head * width : (head + 1) * width]
            projection = adapter.site(Component("head", layer, 0)).module
            bias = projection(torch.zeros_like(masked[:1]))[0].float()
            heads = projection(masked).float() - bias
            embeddings, parts, constant = _through_norm(norms[0], embeddings, torch.cat([parts, heads]), constant + bias)
            mlp = adapter.site(Component("neuron", layer, 0)).module
            post = acts[f"blocks.{layer}.mlp.hook_post"][0, position]
            bias = mlp(torch.zeros_like(post)[None])[0].float()
            embeddings, parts, constant = _through_norm(norms[1], embeddings, torch.cat([parts, (mlp(post[None]).float() - bias)]),
                                                        constant + bias)
            components += [Component("head", layer, h) for h in range(n_heads)] + [Component("mlp", layer)]
            recorded = acts[f"blocks.{layer}.hook_resid_post"][0, position].float()
            rebuilt = embeddings + parts.sum(0) + constant
            if not torch.allclose(rebuilt, recorded, atol=1e-3 * (1 + float(recorded.abs().max()))):
                raise TwopathError(f"direct_logit_attribution: {adapter.architecture} block {layer} is not a post-norm "
                                   "block (attention, norm, MLP, norm); its parts do not add up to its output")
    return components, parts, embeddings, constant, recorded


def _through_norm(norm: torch.nn.Module, embeddings: torch.Tensor, parts: torch.Tensor,
                  constant: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    clean = embeddings + parts.sum(0) + constant
    linear, shift = _frozen_norm(norm, clean)
    return linear(embeddings), linear(parts), linear(constant) + shift


def encoder_dla(adapter: Any, trace: Trace, target: int) -> dict[str, Any]:
    """DLA of an encoder: the parts of :func:`encoder_parts` read through the classifier head
    linearised at the clean run (its Jacobian; BERT's pooler is dense + tanh, RoBERTa's head
    dense + tanh, DistilBERT's dense + ReLU), a first-order approximation. The measured error:
    for each part, the true change of the logit difference when the part is removed from the
    final stream (through the non-linear head, every norm frozen) against its linear share."""
    components, parts, embeddings, constant, final = encoder_parts(adapter, trace)
    other = _direction(trace.logits, target)
    ones = torch.ones(1, 1, dtype=torch.long, device=final.device)

    def diff(rows: torch.Tensor) -> torch.Tensor:
        logits = adapter.decode_hidden(rows[:, None, :].to(final.dtype), {"attention_mask": ones.expand(len(rows), 1)}).float()
        return logits[:, target] - logits[:, other]

    with torch.enable_grad():
        point = final.detach().clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(diff(point[None])[0], point)
    with torch.no_grad():
        share = torch.cat([parts, embeddings[None]]) @ gradient
        logit_diff = float(trace.logits[0, target] - trace.logits[0, other])
        removed = diff(torch.cat([final - parts, (final - embeddings)[None]]))
        true_share = float(diff(final[None])[0]) - removed
        remainder = float(diff(final[None])[0] - final @ gradient)
    errors = (true_share - share).abs()
    share_np = to_numpy(share)
    offset = logit_diff - float(share_np.sum())
    return {
        "metric": "logit_diff_contribution",
        "components": components,
        "effects": share_np[:-1],
        "clean": logit_diff,
        "meta": {"other_label": adapter.labels[other], "embeddings": float(share_np[-1]), "constant": offset,
                 "sum_of_parts": logit_diff, "gap": 0.0, "approximate": True, "n_forward_rows": 1,
                 "linearisation_error_max": float(errors.max()),
                 "linearisation_error_relative": float(errors.sum() / max(float(true_share.abs().sum()), 1e-12)),
                 "head_remainder": remainder,
                 "note": "approximate: a first-order linearisation of the classifier head at the clean run (every "
                         "LayerNorm's scale frozen); the constant holds the norms' shifts, the head's biases and the "
                         "linearisation's remainder; linearisation_error_* compare each part's share with the true "
                         "change when the part is removed"},
    }


@MECHANISTIC_METHODS.register("direct_effect", modalities=("text",))
class DirectEffect(InterventionMethod):
    """Patch one head or MLP from the contrast with every later component frozen: its direct effect."""

    what_it_tells_you = "the effect each head and MLP has on the output directly, not through later components"
    needs_contrast = True
    requires = frozenset({"linear_residual"})

    def __init__(self, output: OutputSpace = "logit_diff", batch_size: int = 128, direction: str = "auto",
                 frozen_norm: bool = False):
        super().__init__(output, batch_size)
        self.direction = direction
        self.frozen_norm = frozen_norm

    def _effects(self, adapter: Any, example: Example, target: int, corrupted: Example | None) -> dict[str, Any]:
        from twopath.mechanistic.patching import check_contrast

        if corrupted is None:
            raise TwopathError("the direct effect needs a corrupted (contrast) example")
        if self.direction not in DIRECTIONS:
            raise TwopathError(f"unknown patching direction {self.direction!r}; expected one of {list(DIRECTIONS)}")
        _, _, direction = check_contrast(adapter, example, corrupted, self.direction)
        clean_trace, corrupt_trace = Trace.of(adapter, example), Trace.of(adapter, corrupted)
        for trace in (clean_trace, corrupt_trace):  # one recording pass each, logits included
            trace.activations(_reading_sites(adapter))
        clean, clean_p = logits_output(adapter, clean_trace.logits, target, self.output)
        corr, corr_p = logits_output(adapter, corrupt_trace.logits, target, self.output)
        if abs(clean - corr) < 1e-6:
            raise TwopathError("the clean and corrupted inputs give the same output; nothing to patch")
        source, base = (clean_trace, corrupt_trace) if direction == "denoise" else (corrupt_trace, clean_trace)
        components, source_parts, _, _ = residual_parts(adapter, source)
        _, base_parts, _, base_final = residual_parts(adapter, base)
        rows = base_final[None] + (source_parts - base_parts)
        with torch.no_grad():
            if self.frozen_norm:
                linear, constant = adapter.frozen_readout(base_final)
                logits = linear(rows) + constant
            else:
                ones = torch.ones(len(rows), 1, dtype=torch.long, device=rows.device)
                logits = adapter.decode_hidden(rows[:, None, :], {"attention_mask": ones}).float()
        outputs = to_numpy(adapter.output(logits, target, self.output))
        normalized = (outputs - corr) / (clean - corr)
        return {
            "metric": "normalized_logit_diff" if self.output == "logit_diff" else "normalized_probability",
            "components": components, "effects": normalized, "clean": clean, "corrupted": corr,
            "meta": {"direction": direction, "clean_probability": clean_p, "corrupted_probability": corr_p,
                     "raw": [float(v) for v in outputs], "frozen_norm": self.frozen_norm, "n_forward_rows": 2,
                     "corrupted_input": corrupted.raw if isinstance(corrupted.raw, str) else dict(corrupted.raw)},
        }


def verdicts(direct: Any, total: Any, k: int = 5, floor: float = 0.05) -> list[dict[str, Any]]:
    """Per top component by total effect: acts directly (direct >= half the total), acts through
    later components, or has no effect (|total| below ``floor``), with the numbers."""
    total_by = dict(zip(total.labels, np.asarray(total.oriented, dtype=float).tolist(), strict=True))
    direct_by = dict(zip(direct.labels, np.asarray(direct.oriented, dtype=float).tolist(), strict=True))
    shared = [c for c in total_by if c in direct_by]
    shared.sort(key=lambda c: -abs(total_by[c]))
    rows = []
    for label in shared[:k]:
        t, d = total_by[label], direct_by[label]
        if abs(t) < floor:
            verdict = "no effect"
        elif abs(d) >= 0.5 * abs(t) and np.sign(d) == np.sign(t):
            verdict = "acts directly"
        else:
            verdict = "acts through later components"
        rows.append({"component": label, "total": t, "direct": d, "verdict": verdict})
    return rows
