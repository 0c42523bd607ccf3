"""Editing: judge a localization by fine-tuning only what it found (issue 15).

An explanation names components; *acting* on it is the strongest test of the claim. Guo et
al. (*Mechanistic Unlearning*, arXiv 2410.12949) fine-tune **only** the components a
localization names, every localization at the same parameter budget, and find that the choice
decides whether an edit is robust: output-tracing localizations "tape the mouth" and the
knowledge comes back under another format or after a few relearning steps, while editing where
the information is looked up removes it.

twopath runs that experiment on any adapter. A component owns slices of the weights
(``adapter.parameter_slices``: a head's rows of Q/K/V and columns of O; a neuron's rows of the
up/gate projection and column of the down projection; a tabular neuron's incoming and outgoing
weights); a :class:`~twopath.editing.mask.ParameterMask` is their union, filled to an exact
budget from a ranking (:func:`~twopath.editing.mask.fill_budget`).
:class:`~twopath.editing.finetune.LocalizedFineTuning` trains only those entries (gradient
masking; every other parameter frozen and checked bit-identical afterwards) on a forget term
(members of a counterfactual group — ``white=1`` / ``white=0``, a sentence with and without a
word — should get the same decision) plus a maintain term (keep the original's group-mean
prediction). :func:`~twopath.editing.compare.compare_localizations` runs it for every
localization — ablation, attribution patching, a probe ("where it is written"), the input
path's bridge, random components over seeds, the last layer, all parameters — and measures
forgetting, maintenance, robustness under other input forms, and the gap after a few steps of
relearning.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: public name -> submodule; imported on first use, so ``twopath --help`` never imports torch
_EXPORTS = {
    "LOCALIZATIONS": "compare", "EditComparison": "compare", "Relearning": "compare",
    "compare_localizations": "compare", "EditResult": "finetune", "LocalizedFineTuning": "finetune",
    "counterfactual_gap": "finetune", "relearn": "finetune", "ParameterMask": "mask",
    "all_parameters": "mask", "component_mask": "mask", "fill_budget": "mask", "EditTask": "tasks",
    "feature_task": "tasks", "word_task": "tasks", "save_edited": "save",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'twopath.editing' has no attribute {name!r}")
    return getattr(import_module(f"twopath.editing.{_EXPORTS[name]}"), name)
