"""Activation patching: swap one activation between two runs and see whether the answer follows.

Take a *clean* input (the example) and a *corrupted* one that differs minimally (``good`` →
``bad``; credit score 720 → 600) and gets a different answer. Run one input and overwrite a
single site with its activation from the other run:

* ``denoise`` (default for text) — run the corrupted input and patch in the clean activation.
  If the output comes back, the site is *sufficient* to carry the difference;
* ``noise`` (default for tables) — run the clean input and patch in the corrupted activation. If
  the output breaks, the site is *necessary*.

Effects are the normalized output of the patched run: 0 = the corrupted run, 1 = the clean run
(Wang et al., 2022; Heimersheim & Nanda, 2024). Sites are residual positions ``Ll.resid@p``
(layer × position) for text, and whole hidden layers ``Ll`` and single neurons ``LlNi`` for an
MLP. For every layer twopath also reports whether the decision *flips*, and for an MLP the
fewest of the layer's neurons (taken in order of their single-neuron effect) whose patch flips it.
Beyond 128 positions the residual positions are patched a word at a time (every token of the word
at once, named by its first position; ``meta["position_groups"]``), as position ablation does:
the sweep is ``layers x positions`` rows of a cost that grows with the length.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from twopath.mechanistic.ablation import grouped, position_groups
from twopath.mechanistic.base import MECHANISTIC_METHODS, InterventionMethod, logits_output, sweep
from twopath.runtime.adapter import OutputSpace
from twopath.runtime.interventions import Edit, capture, read, site_key
from twopath.runtime.trace import Trace
from twopath.types import Component, Example, TwopathError

DIRECTIONS = ("denoise", "noise", "auto")


@MECHANISTIC_METHODS.register("activation_patching")
class ActivationPatching(InterventionMethod):
    """Patch activations between the example and a contrast input; where does the answer follow?"""

    what_it_tells_you = "which sites carry the clean-vs-corrupted difference (causal)"
    needs_contrast = True

    def __init__(self, output: OutputSpace = "logit_diff", batch_size: int = 128, direction: str = "auto",
                 sites: tuple[str, ...] | None = None, prefix_cache: bool = True):
        super().__init__(output, batch_size)
        self.direction = direction
        self.sites = sites
        self.prefix_cache = prefix_cache

    def _effects(self, adapter: Any, example: Example, target: int, corrupted: Example | None) -> dict[str, Any]:
        if corrupted is None:
            raise TwopathError("activation patching needs a corrupted (contrast) example")
        clean_in, corrupt_in, direction = check_contrast(adapter, example, corrupted, self.direction)
        clean, clean_p = logits_output(adapter, Trace.of(adapter, example).logits, target, self.output)
        corr, corr_p = logits_output(adapter, Trace.of(adapter, corrupted).logits, target, self.output)
        if abs(clean - corr) < 1e-6:
            raise TwopathError("the clean and corrupted inputs give the same output; nothing to patch")
        source, base = (clean_in, corrupt_in) if direction == "denoise" else (corrupt_in, clean_in)
        sites = self.sites or (("resid",) if adapter.positional else ("layer", "neuron"))
        components = patch_components(adapter, clean_in, sites)
        groups = (position_groups(adapter, example, int(clean_in["input_ids"].shape[1]))
                  if adapter.positional and "resid" in sites and "input_ids" in clean_in else None)
        components, members = grouped(components, groups)
        values = self._source(adapter, source, [m for part in members for m in part])
        starts = np.cumsum([0] + [len(part) for part in members[:-1]]).tolist() if members else []
        rows = [[Edit(0, m, values[at + j]) for j, m in enumerate(part)] for at, part in zip(starts, members, strict=True)]
        source_acts = [values[at] for at in starts]  # one per component (a group: its first position)
        cache = self.prefix_cache and adapter.resume_pays
        outputs, probs, decisions = sweep(adapter, base, rows, target, self.output, self.batch_size, prefix_cache=cache)
        normalized = (outputs - corr) / (clean - corr)
        base_decision = self._decision(adapter, base)
        flips = decisions != base_decision
        meta: dict[str, Any] = {
            "direction": direction,
            "corrupted_input": corrupted.raw if isinstance(corrupted.raw, str) else dict(corrupted.raw),
            "clean_probability": clean_p,
            "corrupted_probability": corr_p,
            "probability": [float(p) for p in probs],
            "flips": [str(c) for c, f in zip(components, flips, strict=True) if f],
            "n_forward_rows": len(rows) + 2,
        }
        if groups is not None:
            meta["position_groups"] = groups
            meta["grouped_by"] = "word"
        if adapter.positional:
            meta["tokens"] = adapter.tokens(example)
            meta["corrupted_tokens"] = adapter.tokens(corrupted)
        elif {"layer", "neuron"} <= set(sites):
            meta["layers"] = self._layer_flips(adapter, base, components, source_acts, normalized, direction, base_decision)
        return {"metric": "normalized_logit_diff" if self.output == "logit_diff" else "normalized_probability",
                "components": components, "effects": normalized, "clean": clean, "corrupted": corr, "meta": meta}

    def _source(self, adapter: Any, inputs: dict[str, torch.Tensor], components: list[Component]) -> list[torch.Tensor]:
        with torch.no_grad(), capture(adapter, components) as store:
            adapter.run(inputs)
        return [read(adapter, c, store[site_key(c)]) for c in components]

    def _decision(self, adapter: Any, inputs: dict[str, torch.Tensor]) -> int:
        with torch.no_grad():
            return int(adapter.run(inputs).argmax(-1)[0])

    def _layer_flips(self, adapter: Any, base: dict[str, torch.Tensor], components: list[Component], acts: list[torch.Tensor],
                     normalized: np.ndarray, direction: str, base_decision: int) -> list[dict[str, Any]]:
        """Per hidden layer: does patching it flip the decision, and with how few neurons?"""
        by_label = {str(c): i for i, c in enumerate(components)}
        summary = []
        for layer in range(adapter.n_layers):
            idx = [i for i, c in enumerate(components) if c.kind == "neuron" and c.layer == layer]
            # neurons ordered by how far their single patch moves the output toward the source run
            strength = normalized[idx] if direction == "denoise" else 1 - normalized[idx]
            order = [idx[j] for j in np.argsort(-strength, kind="stable")]
            rows = [[Edit(0, components[i], acts[i]) for i in order[:k]] for k in range(1, len(order) + 1)]
            _, _, decisions = sweep(adapter, base, rows, 0, "logit_diff", self.batch_size)
            flipped = decisions != base_decision
            k_flip = int(np.argmax(flipped)) + 1 if flipped.any() else None
            whole = by_label[f"L{layer}"]
            summary.append({
                "layer": layer, "width": len(idx),
                "whole_layer_normalized": float(normalized[whole]),
                "whole_layer_flips": bool(flipped[-1]),
                "neurons_to_flip": k_flip,
                "top_neurons": [str(components[i]) for i in order[: (k_flip or 3)]],
            })
        return summary




def shape_problem(adapter: Any, clean_in: dict[str, torch.Tensor], other_in: dict[str, torch.Tensor]) -> str | None:
    """Why two inputs cannot be patched into each other (``None`` when they can): their shapes
    differ (for text, their numbers of tokens)."""
    for key in clean_in:
        if clean_in[key].shape != other_in[key].shape:
            if adapter.positional:
                return (f"has {other_in[key].shape[-1]} tokens where the input has {clean_in[key].shape[-1]}; "
                        "patching needs the same number of tokens")
            return f"has shape {tuple(other_in[key].shape)} where the input has {tuple(clean_in[key].shape)}"
    return None


def check_contrast(adapter: Any, example: Example, corrupted: Example, direction: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], str]:
    """Model inputs of both runs, checked to line up, and the resolved patching direction."""
    if direction not in DIRECTIONS:
        raise TwopathError(f"unknown patching direction {direction!r}; expected one of {list(DIRECTIONS)}")
    clean_in = adapter.forward_inputs(example)
    corrupt_in = adapter.forward_inputs(corrupted)
    problem = shape_problem(adapter, clean_in, corrupt_in)
    if problem:
        raise TwopathError(f"the corrupted input {problem}")
    if direction == "auto":
        direction = "denoise" if adapter.positional else "noise"
    return clean_in, corrupt_in, direction


def patch_components(adapter: Any, inputs: dict[str, torch.Tensor], sites: tuple[str, ...]) -> list[Component]:
    """Every component of the requested site kinds: resid (layer × position), head, neuron, layer."""
    components: list[Component] = []
    for kind in sites:
        if kind == "resid" and adapter.positional:
            components += adapter.components("resid", inputs)
        elif kind in ("head", "neuron", "layer"):
            components += adapter.components(kind)
        else:
            raise TwopathError(f"cannot patch {kind!r} sites of a {adapter.architecture} model")
    return components
