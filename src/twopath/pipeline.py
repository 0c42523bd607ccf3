"""Run both paths on one example, with the same model, target and output space, and compare.

:func:`explain` is the one entry point the CLI, the tasks and the notebooks share:

1. resolve the target (default: the predicted label) and the prediction;
2. input path: every requested attribution method;
3. a corrupted counterpart (given, or produced from the input path's top unit) for patching;
4. internal path: every requested intervention method;
5. comparisons: side-by-side summary, rank agreement, deletion check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from twopath.attribution import ATTRIBUTION_METHODS
from twopath.comparisons import agreement, deletion, summary
from twopath.mechanistic import MECHANISTIC_METHODS
from twopath.models.base import OutputSpace
from twopath.types import Attribution, Example, ExampleResult, Localization, TwopathError

Say = Callable[[str], None]
DEFAULT_ATTRIBUTION = ("shap", "lime", "integrated_gradients", "occlusion")
DEFAULT_MECHANISTIC = {"text": ("head_ablation", "activation_patching"),
                       "tabular": ("neuron_ablation", "activation_patching")}
Counterfactual = Callable[[Example, Attribution], "Example | None"]


def _quiet(_: str) -> None:
    return None


def predict(adapter: Any, example: Example) -> tuple[int, np.ndarray]:
    with torch.no_grad():
        probs = torch.softmax(adapter.run(adapter.forward_inputs(example)), -1)[0].numpy()
    return int(probs.argmax()), probs


def explain(adapter: Any, example: Example, *, corrupted: Example | Counterfactual | None = None,
            attribution_methods: Sequence[str] = DEFAULT_ATTRIBUTION,
            mechanistic_methods: Sequence[str] | None = None, seed: int = 0,
            output: OutputSpace = "logit_diff", settings: dict[str, dict[str, Any]] | None = None,
            say: Say = _quiet) -> ExampleResult:
    """Explain ``example`` both ways; ``corrupted`` is a contrast input or a function making one."""
    torch.manual_seed(seed)
    settings = settings or {}
    pred_idx, probs = predict(adapter, example)
    target = example.target or adapter.labels[pred_idx]
    target_idx = adapter.label_index(target)
    target = adapter.labels[target_idx]
    example = example.with_target(target)
    notes: list[str] = []

    attributions: list[Attribution] = []
    for name in attribution_methods:
        say(f"input path: {name}")
        method = ATTRIBUTION_METHODS.create(name, output=output, seed=seed, **settings.get(name, {}))
        attributions.append(method.attribute(adapter, example, target=target))

    contrast = corrupted
    if callable(contrast):
        contrast = contrast(example, attributions[0]) if attributions else None
        if contrast is None:
            notes.append("no same-length counterfactual could be built; activation patching skipped")
    localizations: list[Localization] = []
    for name in mechanistic_methods or DEFAULT_MECHANISTIC[adapter.modality]:
        if name == "activation_patching" and contrast is None:
            continue
        say(f"internal path: {name}")
        method = MECHANISTIC_METHODS.create(name, output=output, **settings.get(name, {}))
        localizations.append(method.localize(adapter, example, target=target, corrupted=contrast))  # type: ignore[arg-type]

    say("comparing the two paths")
    what = {e.name: e.cls.what_it_tells_you for e in [*ATTRIBUTION_METHODS, *MECHANISTIC_METHODS]}
    ablations = [loc for loc in localizations if loc.method.endswith("_ablation")]
    tables = {
        "side_by_side": summary.side_by_side(attributions, localizations, what),
        "agreement": agreement.agreement_table(attributions) if len(attributions) > 1 else None,
        "deletion": deletion.deletion_table(adapter, example, attributions, ablations),
    }
    prediction = {"label": adapter.labels[pred_idx], "probability": float(probs[pred_idx]),
                  "target_probability": float(probs[target_idx])}
    return ExampleResult(example, target, prediction, attributions, localizations,
                         contrast if isinstance(contrast, Example) else None, tables, notes)


def check_methods(modality: str, attribution_methods: Sequence[str], mechanistic_methods: Sequence[str]) -> None:
    """Fail early, before any work, on unknown or unsupported method names."""
    for name in attribution_methods:
        if modality not in ATTRIBUTION_METHODS.get(name).modalities:
            raise TwopathError(f"{name} does not support {modality} models")
    for name in mechanistic_methods:
        if modality not in MECHANISTIC_METHODS.get(name).modalities:
            raise TwopathError(f"{name} does not support {modality} models")
