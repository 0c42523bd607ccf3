"""Integrated Gradients (captum).

IG (Sundararajan et al., 2017) integrates the gradient of the output along the straight line
from a *baseline* input to the real one. Its scores satisfy **completeness**:
``sum(scores) == f(x) - f(baseline)``; the gap, measured by captum as the convergence delta,
shrinks as the number of integration steps grows. twopath starts at ``n_steps`` and doubles the
steps until the delta is at most ``max_delta`` (relative to ``|f(x) - f(baseline)|``) or
``max_steps`` is reached, and reports the delta it reached.

* Text: ``IntegratedGradients`` on the word-embedding layer's output (passed to the model as
  ``inputs_embeds``, so position embeddings are untouched); the baseline replaces every
  word token by the pad token (``baseline="pad"``), the mask token (``"mask"``) or a zero
  embedding (``"zero"``); special tokens and positions are kept. Token scores are summed over the
  embedding dimension and then over each word's sub-tokens.
* Tables: ``IntegratedGradients`` on the transformed feature vector, with the background mean or
  median (or a user row) as baseline; one-hot columns are summed back into their feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from twopath.attribution.base import ATTRIBUTION_METHODS, AttributionMethod
from twopath.models.base import OutputSpace
from twopath.types import Example, TwopathError

TEXT_BASELINES = ("pad", "mask", "zero")
TABLE_BASELINES = ("mean", "median")


@ATTRIBUTION_METHODS.register("integrated_gradients")
class IntegratedGradients(AttributionMethod):
    """Integrated Gradients from a baseline (captum), with completeness checked."""

    what_it_tells_you = "gradient path integral from a baseline; sums to f(x) - f(baseline)"

    def __init__(self, output: OutputSpace = "logit_diff", seed: int = 0, baseline: str | Mapping[str, Any] | None = None,
                 n_steps: int = 32, max_steps: int = 512, max_delta: float = 0.01, internal_batch_size: int = 64):
        super().__init__(output, seed)
        self.baseline = baseline
        self.n_steps = n_steps
        self.max_steps = max_steps
        self.max_delta = max_delta
        self.internal_batch_size = internal_batch_size

    def _scores(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        if adapter.modality == "text":
            return self._text(adapter, example, target)
        return self._tabular(adapter, example, target)

    def _integrate(self, explainer: Any, inputs: Any, baselines: Any, args: Any, gap: float) -> tuple[torch.Tensor, float, int]:
        steps = self.n_steps
        while True:
            attr, delta = explainer.attribute(
                inputs, baselines=baselines, additional_forward_args=args, n_steps=steps,
                internal_batch_size=self.internal_batch_size, return_convergence_delta=True,
            )
            rel = abs(float(delta.reshape(-1)[0])) / max(abs(gap), 1e-8)
            if rel <= self.max_delta or steps >= self.max_steps:
                return attr, rel, steps
            steps *= 2

    def _text(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        from captum.attr import IntegratedGradients as CaptumIG

        baseline = self.baseline or "pad"
        if baseline not in TEXT_BASELINES:
            raise TwopathError(f"unknown text IG baseline {baseline!r}; expected one of {list(TEXT_BASELINES)}")
        inp = adapter.encode(adapter.check_example(example))
        mask = inp.attention_mask
        layer = adapter.embedding_layer()
        with torch.no_grad():
            emb = layer(inp.input_ids)
            if baseline == "zero":
                base = emb.clone()
                base[0, torch.from_numpy(inp.token_word >= 0)] = 0.0
            else:
                base = layer(adapter.baseline_ids(inp, baseline))

        def forward(embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            logits = adapter.model(inputs_embeds=embeds, attention_mask=attention_mask.expand(embeds.shape[0], -1)).logits
            return adapter.output(logits, target, self.output)

        with torch.no_grad():
            f_base = forward(base, mask)
            gap = float(forward(emb, mask) - f_base)
        attr, rel, steps = self._integrate(CaptumIG(forward), emb, base, (mask,), gap)
        scores = inp.merge(attr.sum(-1)[0].detach().numpy())
        return scores, float(f_base.reshape(-1)[0]), {
            "baseline": baseline, "n_steps": steps, "completeness_delta": rel,
            "n_evals": steps, "n_model_rows": steps,
        }

    def _tabular(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        from captum.attr import IntegratedGradients as CaptumIG

        x = adapter.transform(adapter.check_example(example))
        baseline_name = self.baseline if self.baseline is not None else "mean"
        if isinstance(baseline_name, Mapping):
            base = adapter.transform(baseline_name)
            baseline_name = "row"
        elif baseline_name in TABLE_BASELINES:
            if adapter.background is None:
                raise TwopathError("IG on a table needs a background sample (adapter.background) for its baseline")
            transformed = adapter.transform(adapter.background)
            base = transformed.mean(0, keepdim=True) if baseline_name == "mean" else transformed.median(0, keepdim=True).values
        else:
            raise TwopathError(f"unknown table IG baseline {baseline_name!r}; expected mean, median or a feature mapping")

        def forward(inputs: torch.Tensor) -> torch.Tensor:
            return adapter.output(adapter.model(inputs), target, self.output)

        with torch.no_grad():
            f_base = forward(base)
            gap = float(forward(x) - f_base)
        attr, rel, steps = self._integrate(CaptumIG(forward), x, base, None, gap)
        scores = adapter.merge_columns(attr.detach().numpy()[0])
        return scores, float(f_base.reshape(-1)[0]), {
            "baseline": baseline_name, "n_steps": steps, "completeness_delta": rel,
            "n_evals": steps, "n_model_rows": steps,
        }
