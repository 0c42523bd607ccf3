"""Attention weights of the last layer — a popular but **non-causal** baseline.

Users often read "where the classifier token looks" as an explanation. This method reports, for
each word, the attention the reading token (the first token, [CLS]/<s>, of an encoder; the last
real token of a decoder) pays to the word's sub-tokens in the last layer, averaged over heads
and summed over sub-tokens. It is unsigned (never negative), says
nothing about what the attended information *does*, and is known to disagree with gradient and
perturbation methods (Jain & Wallace, 2019); twopath shows it as a baseline to compare against,
never as evidence. Text models only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twopath.attribution.base import ATTRIBUTION_METHODS, AttributionMethod
from twopath.types import Example


@ATTRIBUTION_METHODS.register("attention", modalities=("text",))
class AttentionWeights(AttributionMethod):
    """Last-layer attention from the reading token (non-causal baseline, unsigned)."""

    what_it_tells_you = "where the reading token looks in the last layer — not what causes the output"

    def _scores(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        inputs = adapter.inputs(example)
        attentions = adapter.attention_weights(inputs)
        reader = int(adapter.reading_position(inputs)[0])
        weights = attentions[-1][0].mean(0)[reader]  # heads averaged; row of the reading token
        return adapter.merge_to_units(example, weights), None, {
            "n_evals": 1, "n_model_rows": 1, "causal": False, "layer": adapter.n_layers - 1, "reading_position": reader}
