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

from twopath.editing.compare import LOCALIZATIONS, EditComparison, Relearning, compare_localizations
from twopath.editing.finetune import EditResult, LocalizedFineTuning, counterfactual_gap, relearn
from twopath.editing.mask import ParameterMask, all_parameters, component_mask, fill_budget
from twopath.editing.tasks import EditTask, feature_task, word_task

__all__ = [
    "LOCALIZATIONS", "EditComparison", "EditResult", "EditTask", "LocalizedFineTuning", "ParameterMask",
    "Relearning", "all_parameters", "compare_localizations", "component_mask", "counterfactual_gap",
    "feature_task", "fill_budget", "relearn", "word_task",
]
