"""SHAP: Shapley values of the units of one example.

A unit's Shapley value is its average marginal contribution to the output over all orders in
which units can be added, starting from "all absent" (Lundberg & Lee, 2017). The values add up:
``base_value + sum(scores) == f(x)``, where ``base_value`` is the output with every unit absent
(all words masked; for tables, the mean output over the background sample).

twopath hands shap a model over *coalitions* (boolean rows over words or features) evaluated by
the shared memoized evaluator, so shap does the game theory and twopath does the batching:

* ``partition`` (default for text) — shap's Partition explainer (Owen values) over a balanced
  binary tree of adjacent words, so neighbouring words are grouped as in shap's text masker;
* ``exact`` (default for tables and for sentences of at most ``exact_max_units`` words) — shap's
  Exact explainer; it evaluates all ``2^n`` coalitions, cheap for short inputs and free of
  sampling noise;
* ``permutation`` and ``kernel`` — sampled estimates for wide inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twopath.attribution.base import ATTRIBUTION_METHODS, AttributionMethod, evaluator_meta
from twopath.models.base import OutputSpace
from twopath.models.evaluator import evaluator_for
from twopath.types import Example, TwopathError

ALGORITHMS = ("auto", "partition", "exact", "permutation", "kernel")


def adjacent_word_tree(n: int) -> np.ndarray:
    """A scipy linkage matrix that merges neighbouring units pairwise, level by level."""
    nodes = list(range(n))
    sizes = {i: 1 for i in range(n)}
    rows: list[list[float]] = []
    next_id, level = n, 1
    while len(nodes) > 1:
        merged = []
        for i in range(0, len(nodes) - 1, 2):
            a, b = nodes[i], nodes[i + 1]
            sizes[next_id] = sizes[a] + sizes[b]
            rows.append([a, b, float(level), float(sizes[next_id])])
            merged.append(next_id)
            next_id += 1
        if len(nodes) % 2:
            merged.append(nodes[-1])
        nodes, level = merged, level + 1
    return np.asarray(rows, dtype=float)


@ATTRIBUTION_METHODS.register("shap")
class Shap(AttributionMethod):
    """SHAP values over words or raw features (shap's Partition/Exact/Permutation/Kernel)."""

    what_it_tells_you = "each unit's fair share of the output (Shapley values), additive"

    def __init__(self, output: OutputSpace = "logit_diff", seed: int = 0, algorithm: str = "auto",
                 max_evals: int = 500, exact_max_units: int = 10):
        super().__init__(output, seed)
        self.algorithm = algorithm
        self.max_evals = max_evals
        self.exact_max_units = exact_max_units

    def resolve_algorithm(self, modality: str, n_units: int) -> str:
        if self.algorithm not in ALGORITHMS:
            raise TwopathError(f"unknown SHAP algorithm {self.algorithm!r}; expected one of {list(ALGORITHMS)}")
        if self.algorithm != "auto":
            return self.algorithm
        if modality == "tabular":
            return "exact" if n_units <= self.exact_max_units else "permutation"
        return "partition"

    def _scores(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        import shap

        ev = evaluator_for(adapter, example, target, self.output)
        before = (ev.n_requested, ev.n_evaluated)
        n = ev.n_units
        algorithm = self.resolve_algorithm(adapter.modality, n)
        x = np.ones((1, n))
        absent = np.zeros((1, n))
        if algorithm == "partition":
            masker = shap.maskers.Partition(absent, clustering=adjacent_word_tree(n)) if n > 1 else shap.maskers.Independent(absent)
            explainer = shap.explainers.Partition(ev, masker) if n > 1 else shap.explainers.Exact(ev, masker)
            result = explainer(x, max_evals=max(self.max_evals, 2 * n + 1), silent=True)
        elif algorithm == "exact":
            explainer = shap.explainers.Exact(ev, shap.maskers.Independent(absent))
            result = explainer(x, silent=True)
        elif algorithm == "permutation":
            explainer = shap.explainers.Permutation(ev, shap.maskers.Independent(absent), seed=self.seed)
            result = explainer(x, max_evals=max(self.max_evals, 2 * n + 1), silent=True)
        else:
            kernel = shap.KernelExplainer(ev, absent, seed=self.seed)
            values = kernel.shap_values(x, nsamples=self.max_evals, silent=True)
            scores = np.asarray(values, dtype=float).reshape(-1)
            base = float(np.asarray(kernel.expected_value).reshape(-1)[0])
            return scores, base, {"algorithm": algorithm, **evaluator_meta(ev, *before)}
        scores = np.asarray(result.values, dtype=float).reshape(-1)
        base = float(np.asarray(result.base_values).reshape(-1)[0])
        return scores, base, {"algorithm": algorithm, **evaluator_meta(ev, *before)}
