"""Ablation: knock a component out and measure what breaks.

Ablating a component replaces its activation with a neutral value and reruns the model; the
drop in the target's output is the component's *necessity* for this decision. Two neutral values
are offered:

* ``zero`` — the activation is set to 0 (simple, but 0 may be far outside what the model ever
  sees, so the effect can overstate importance);
* ``mean`` — the activation is set to its mean over a reference set (the adapter's
  ``background``: held-out sentences or applicants), which removes the *information* the
  component carries for this input while keeping its typical magnitude.

Effects are ``clean output - ablated output`` (positive: the component pushes toward the target)
in the run's output space; ``meta["probability"]`` holds the target probability under each
ablation. One batch row per component, so a sweep over 72 heads is one or two forward passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from twopath.mechanistic.base import MECHANISTIC_METHODS, InterventionMethod, run_output, sweep
from twopath.models.base import OutputSpace
from twopath.models.interventions import ablate, capture
from twopath.types import Component, Example, TwopathError

MODES = ("zero", "mean")


class _Ablation(InterventionMethod):
    kind = "neuron"

    def __init__(self, output: OutputSpace = "logit_diff", batch_size: int = 128, mode: str = "mean"):
        super().__init__(output, batch_size)
        self.mode = mode

    def _effects(self, adapter: Any, example: Example, target: int, corrupted: Example | None) -> dict[str, Any]:
        inputs = adapter.forward_inputs(example)
        components = self.components(adapter, inputs)
        clean, clean_prob = run_output(adapter, inputs, target, self.output)
        if self.mode not in MODES:
            raise TwopathError(f"unknown ablation mode {self.mode!r}; expected one of {list(MODES)}")
        edits = ablate(adapter, components, self.mode)
        outputs, probs, _ = sweep(adapter, inputs, [[e] for e in edits], target, self.output, self.batch_size)
        return {
            "metric": f"{self.output}_drop",
            "components": components,
            "effects": clean - outputs,
            "clean": clean,
            "meta": {"mode": self.mode, "clean_probability": clean_prob, "probability": [float(p) for p in probs],
                     "n_forward_rows": len(components) + 1},
        }

    def components(self, adapter: Any, inputs: dict[str, Any]) -> list[Component]:
        return adapter.components(self.kind)


@MECHANISTIC_METHODS.register("head_ablation", modalities=("text",))
class HeadAblation(_Ablation):
    """Ablate each attention head alone (zero or mean); effect on the target output."""

    kind = "head"
    what_it_tells_you = "how much the decision needs each attention head"


@MECHANISTIC_METHODS.register("neuron_ablation")
class NeuronAblation(_Ablation):
    """Ablate each hidden neuron alone (zero or mean); effect on the target output."""

    kind = "neuron"
    what_it_tells_you = "how much the decision needs each hidden neuron"

    def components(self, adapter: Any, inputs: dict[str, Any]) -> list[Component]:
        if adapter.modality == "tabular":
            return adapter.components("neuron")
        probe = [Component("neuron", layer, 0) for layer in range(adapter.n_layers)]
        with torch.no_grad(), capture(adapter, probe) as store:
            adapter.run(inputs)
        return [Component("neuron", layer, i) for layer in range(adapter.n_layers) for i in range(store[(layer, "neuron")].shape[-1])]


def top_components(effects: np.ndarray, components: list[Component], k: int) -> list[Component]:
    order = np.argsort(-effects, kind="stable")
    return [components[i] for i in order[:k]]
