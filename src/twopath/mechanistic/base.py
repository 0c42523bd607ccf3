"""The internal-path contract: one class per intervention, settings in ``__init__``, one verb.

``method.localize(adapter, example, target=label, corrupted=None) -> Localization`` returns one
effect per component. Interventions run as batched forward passes: each batch row carries one
intervention, so a sweep over every head or neuron costs a handful of passes, not one per
component.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from twopath.models.base import OUTPUT_SPACES, OutputSpace
from twopath.models.interventions import Edit, intervene, repeat_inputs
from twopath.registry import Registry
from twopath.types import Example, Localization, TwopathError

MECHANISTIC_METHODS = Registry("mechanistic")


class InterventionMethod:
    """Base class: subclasses implement :meth:`_effects` and are registered by name."""

    name: ClassVar[str] = "base"
    what_it_tells_you: ClassVar[str] = ""

    def __init__(self, output: OutputSpace = "logit_diff", batch_size: int = 128):
        self.output = output
        self.batch_size = batch_size

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def localize(self, adapter: Any, example: Example, *, target: str, corrupted: Example | None = None) -> Localization:
        if self.output not in OUTPUT_SPACES:
            raise TwopathError(f"unknown output space {self.output!r}; expected one of {list(OUTPUT_SPACES)}")
        if adapter.modality not in MECHANISTIC_METHODS.get(self.name).modalities:
            raise TwopathError(f"{self.name} does not support {adapter.modality} models")
        target_idx = adapter.label_index(target)
        start = time.perf_counter()
        result = self._effects(adapter, example, target_idx, corrupted)
        meta = {"output": self.output, "settings": self.settings(), "seconds": round(time.perf_counter() - start, 4), **result.pop("meta", {})}
        return Localization(example.id, self.name, adapter.labels[target_idx], meta=meta, **result)

    def _effects(self, adapter: Any, example: Example, target: int, corrupted: Example | None) -> dict[str, Any]:
        raise NotImplementedError


def run_output(adapter: Any, inputs: dict[str, torch.Tensor], target: int, space: OutputSpace) -> tuple[float, float]:
    """(explained output, target probability) of one unmodified forward pass."""
    with torch.no_grad():
        logits = adapter.run(inputs)
    return float(adapter.output(logits, target, space)[0]), float(torch.softmax(logits, -1)[0, target])


def sweep(adapter: Any, inputs: dict[str, torch.Tensor], rows: Sequence[Sequence[Edit]], target: int,
          space: OutputSpace, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run one forward pass per row of edits, batched.

    Returns (explained outputs, target probabilities, predicted label indices), one per row.

    ``rows[i]`` lists the edits of row ``i``; their ``row`` fields are ignored and reassigned.
    """
    outputs, probs, decisions = [], [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        edits = [Edit(r, e.component, e.value) for r, row in enumerate(chunk) for e in row]
        with torch.no_grad(), intervene(adapter, edits):
            logits = adapter.run(repeat_inputs(inputs, len(chunk)))
        outputs.append(adapter.output(logits, target, space).numpy())
        probs.append(torch.softmax(logits, -1)[:, target].numpy())
        decisions.append(logits.argmax(-1).numpy())
    return np.concatenate(outputs), np.concatenate(probs), np.concatenate(decisions)
