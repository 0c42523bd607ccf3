"""The per-example side-by-side summary: one row per method, both paths.

Columns: ``path`` (input / internal), ``method``, ``what_it_tells_you`` (what the method
measures, from its class) and ``result_here`` (filled from this run: the top units with their
signed scores, or the top components with their effects and what happened to the decision).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from twopath.types import Attribution, Localization


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def describe_attribution(attribution: Attribution, k: int = 3) -> str:
    top = ", ".join(f"{unit} {_signed(score)}" for unit, score in attribution.top(k))
    if attribution.meta.get("causal") is False:
        return f"top: {top} (attention weights: where the model looks, not a cause)"
    return f"top: {top} ({attribution.meta.get('output', 'logit_diff')})"


def describe_localization(localization: Localization, k: int = 3) -> str:
    meta = localization.meta
    if localization.method == "activation_patching":
        if "layers" in meta:  # MLP
            parts = []
            for layer in meta["layers"]:
                n = layer["neurons_to_flip"]
                parts.append(f"L{layer['layer']}: " + (f"{n}/{layer['width']} neurons flip it" if n else "no flip"))
            return f"patching from the contrast input ({meta['direction']}): " + "; ".join(parts)
        tokens = meta.get("tokens", [])
        best = []
        order = [i for i in np.argsort(-localization.effects, kind="stable") if localization.components[i].kind == "resid"]
        for i in order[:k]:
            pos = localization.components[i].position or 0
            token = tokens[pos] if pos < len(tokens) else "?"
            best.append(f"{localization.components[i]} '{token}' {localization.effects[i]:.2f}")
        heads = [i for i in np.argsort(-localization.effects, kind="stable") if localization.components[i].kind == "head"]
        text = f"{meta['direction']} patching, share of clean logit diff restored: " + ", ".join(best)
        if heads:
            text += "; best single heads: " + ", ".join(f"{localization.components[i]} {localization.effects[i]:.2f}" for i in heads[:k])
        return text
    if localization.method == "attribution_patching":
        return f"gradient estimate of {meta['direction']} patching; top: " + ", ".join(
            f"{label} {effect:.2f}" for label, effect in localization.top(k))
    reading = _READINGS.get(localization.method)
    if reading is not None:
        return reading(localization, k)
    probs = meta.get("probability")
    clean_p = meta.get("clean_probability")
    parts = []
    for i in localization.ranking()[:k]:
        text = f"{localization.components[i]} {_signed(float(localization.effects[i]))}"
        if probs is not None and clean_p is not None:
            text += f" (p {clean_p:.2f}→{probs[i]:.2f})"
        parts.append(text)
    return f"{meta.get('mode', '')} ablation, drop in {meta.get('output', 'logit_diff')}: " + ", ".join(parts)


def _describe_lens(localization: Localization, k: int = 3) -> str:
    """The decision read after the embeddings and every layer, and the first layer from which
    the read-out's decision stays the model's own."""
    meta = localization.meta
    values = [f"emb {_signed(float(meta['embeddings']))}"]
    values += [f"{c} {_signed(float(v))}" for c, v in zip(localization.components, localization.effects, strict=True)]
    text = (f"{meta.get('output', localization.metric)} read through the final norm and head at position "
            f"{meta.get('position', '?')}: " + ", ".join(values))
    decisions = list(meta.get("decisions", []))
    if localization.clean is not None:
        text += f" (model output {_signed(float(localization.clean))})"
    if decisions:
        final = decisions[-1]
        first = len(decisions) - 1
        while first > 0 and decisions[first - 1] == final:
            first -= 1
        text += f"; decision '{final}' from {localization.components[first]} on"
    return text


def _describe_dla(localization: Localization, k: int = 3) -> str:
    meta = localization.meta
    top = ", ".join(f"{label} {_signed(effect)}" for label, effect in localization.top(k))
    text = (f"direct share of the logit diff (target vs '{meta.get('other_label', '?')}', final norm frozen): {top}; "
            f"embeddings {_signed(float(meta.get('embeddings', 0.0)))}, constant {_signed(float(meta.get('constant', 0.0)))}")
    if meta.get("approximate"):
        text += (f"; approximate (classifier head linearised at the clean run): removing a part changes the logit diff "
                 f"by up to {meta['linearisation_error_max']:.3f} more or less than its share "
                 f"({meta['linearisation_error_relative']:.0%} of the parts' true effects)")
    elif "sum_of_parts" in meta:
        text += f"; parts sum to {meta['sum_of_parts']:.3f} (gap {meta.get('gap', 0.0):.2g})"
    return text


def _describe_direct(localization: Localization, k: int = 3) -> str:
    meta = localization.meta
    top = ", ".join(f"{label} {effect:.2f}" for label, effect in localization.top(k))
    norm = "frozen" if meta.get("frozen_norm") else "recomputed"
    return (f"{meta.get('direction', '')} patching to the logits only (later components frozen, final norm {norm}), "
            f"share of the clean-vs-corrupted {meta.get('output', 'logit_diff')} gap: {top}")


_READINGS = {"logit_lens": _describe_lens, "direct_logit_attribution": _describe_dla, "direct_effect": _describe_direct}


def side_by_side(attributions: Sequence[Attribution], localizations: Sequence[Localization],
                 what: Mapping[str, str]) -> list[dict[str, Any]]:
    rows = [{"path": "input", "method": a.method, "what_it_tells_you": what.get(a.method, ""),
             "result_here": describe_attribution(a)} for a in attributions]
    rows += [{"path": "internal", "method": loc.method, "what_it_tells_you": what.get(loc.method, ""),
              "result_here": describe_localization(loc)} for loc in localizations]
    return rows
