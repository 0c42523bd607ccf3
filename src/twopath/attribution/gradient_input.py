"""Gradient × Input: the first-order Taylor term of each unit.

The score of an input coordinate is its value times the gradient of the output with respect to
it, summed over a word's embedding dimensions and sub-tokens (text) or a feature's one-hot
columns (tables). It is Integrated Gradients with a single step and a zero baseline: one forward
and one backward pass, cheap, but it only sees the local slope and ignores saturation, so it can
miss words whose effect is already "used up" at the input. Computed with captum's
``InputXGradient``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from twopath.attribution.base import ATTRIBUTION_METHODS, AttributionMethod
from twopath.types import Example


@ATTRIBUTION_METHODS.register("gradient_x_input")
class GradientXInput(AttributionMethod):
    """Gradient times input (captum InputXGradient): a one-step local slope baseline."""

    what_it_tells_you = "local slope times value (first-order Taylor term); cheap, ignores saturation"
    libraries = ("captum.attr",)

    def _scores(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        from captum.attr import InputXGradient

        inputs = adapter.inputs(example)
        with torch.no_grad():
            emb = adapter.embed(inputs)

        def forward(embeds: torch.Tensor) -> torch.Tensor:
            return adapter.output(adapter.run_embedded(embeds, inputs), target, self.output)

        attr = InputXGradient(forward).attribute(emb.clone().requires_grad_(True))
        return adapter.merge_to_units(example, attr), None, {"n_evals": 1, "n_model_rows": 1}
