"""Integrated Gradients (captum).

IG (Sundararajan et al., 2017) integrates the gradient of the output along the straight line
from a *baseline* input to the real one. Its scores satisfy **completeness**:
``sum(scores) == f(x) - f(baseline)``; the gap, measured by captum as the convergence delta,
shrinks as the number of integration steps grows. twopath starts at ``n_steps`` and doubles the
steps until the delta is at most ``max_delta`` (relative to ``|f(x) - f(baseline)|``) or
``max_steps`` is reached, and reports the delta it reached.

**Budget rule.** The steps follow the measured error, not the length: a longer input makes each
step dearer (one forward and backward pass over more tokens) but rarely needs more of them.
``meta["budget"]`` records the steps used; it is marked ``capped`` when ``max_steps`` stopped
the doubling before the delta reached ``max_delta`` (``full`` is then the next doubling), with
the delta reached as its error. Steps run in batches of ``internal_batch_size`` interpolation
points, at most what the adapter's memory budget allows for the input's length once the backward
pass's kept activations are counted (:func:`~twopath.attribution.base.gradient_rows`).

The path runs through the adapter's embedding (``adapter.embed`` / ``run_embedded``):

* Text: the word-embedding layer's output (passed to the model as ``inputs_embeds``, so
  position embeddings are untouched); the baseline replaces every word token by the pad token
  (``baseline="pad"``), the mask token (``"mask"``) or a zero embedding (``"zero"``); special
  tokens, a prompt's template and positions are kept. Token scores are summed over the
  embedding dimension and then over each word's sub-tokens.
* Tables: the transformed feature vector, with the background mean or median (or a user row)
  as baseline; one-hot columns are summed back into their feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from twopath.attribution.base import ATTRIBUTION_METHODS, AttributionMethod, Budget, gradient_rows
from twopath.runtime.adapter import OutputSpace
from twopath.types import Example


@ATTRIBUTION_METHODS.register("integrated_gradients")
class IntegratedGradients(AttributionMethod):
    """Integrated Gradients from a baseline (captum), with completeness checked."""

    what_it_tells_you = "gradient path integral from a baseline; sums to f(x) - f(baseline)"
    libraries = ("captum.attr",)

    def __init__(self, output: OutputSpace = "logit_diff", seed: int = 0, baseline: str | Mapping[str, Any] | None = None,
                 n_steps: int = 32, max_steps: int = 512, max_delta: float = 0.01, internal_batch_size: int = 64):
        super().__init__(output, seed)
        self.baseline = baseline
        self.n_steps = n_steps
        self.max_steps = max_steps
        self.max_delta = max_delta
        self.internal_batch_size = internal_batch_size

    def _scores(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        from captum.attr import IntegratedGradients as CaptumIG

        inputs = adapter.inputs(example)
        base = adapter.baseline(example, self.baseline)
        with torch.no_grad():
            emb = adapter.embed(inputs)

        def forward(embeds: torch.Tensor) -> torch.Tensor:
            return adapter.output(adapter.run_embedded(embeds, inputs), target, self.output)

        with torch.no_grad():
            f_base = forward(base)
            gap = float(forward(emb) - f_base)
        batch = max(1, min(self.internal_batch_size, gradient_rows(adapter, inputs)))
        attr, rel, steps, rows = self._integrate(CaptumIG(forward), emb, base, gap, batch)
        name = self.baseline if isinstance(self.baseline, str) else ("row" if self.baseline else adapter.baselines[0])
        converged = rel <= self.max_delta
        budget = Budget("max_steps", steps, steps if converged else 2 * steps,
                        f"{self.n_steps} steps doubled until the completeness delta <= {self.max_delta}, "
                        f"at most {self.max_steps}", "completeness_delta", rel)
        return adapter.merge_to_units(example, attr), float(f_base.reshape(-1)[0]), {
            "baseline": name, "n_steps": steps, "completeness_delta": rel,
            "n_evals": rows, "n_model_rows": rows, "budget": budget.to_dict(),
        }

    def _integrate(self, explainer: Any, inputs: Any, baselines: Any, gap: float, batch: int
                   ) -> tuple[torch.Tensor, float, int, int]:
        """The attribution at the first step count whose delta is small enough, that delta, the
        steps and the interpolation rows run over every doubling (each doubling starts afresh:
        Gauss-Legendre nodes of two step counts do not overlap)."""
        steps = self.n_steps
        rows = 0
        while True:
            attr, delta = explainer.attribute(
                inputs, baselines=baselines, n_steps=steps,
                internal_batch_size=batch, return_convergence_delta=True,
            )
            rows += steps
            rel = abs(float(delta.reshape(-1)[0])) / max(abs(gap), 1e-8)
            if rel <= self.max_delta or steps >= self.max_steps:
                return attr, rel, steps, rows
            steps *= 2

