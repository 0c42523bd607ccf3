"""LIME: a local linear surrogate.

LIME (Ribeiro et al., 2016) samples perturbations around the example (words removed at random;
for tables, feature values redrawn from the training distribution), weights them by closeness to
the example and fits a weighted ridge regression. A unit's score is its coefficient: how much
the output moves when the unit is present, *according to the surrogate*. It is sampled, so it
varies with the seed; twopath seeds it and reports the surrogate's fit (``score``, the weighted
R²) and intercept.

For text the library does the sampling and fitting; its perturbed sentences are mapped back to
word masks and scored by the shared memoized evaluator, so LIME's 5,000 samples cost only as
many model rows as there are *distinct* masks. For tables the library's own
``LimeTabularExplainer`` runs in regression mode on the coded matrix (categorical features
sampled as whole categories, numeric ones discretised into quartiles as in the library's
default).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from twopath.attribution.base import ATTRIBUTION_METHODS, AttributionMethod, evaluator_meta
from twopath.runtime.adapter import OutputSpace
from twopath.runtime.evaluator import evaluator_for
from twopath.types import Example, TwopathError

_SENTINEL = "\u2063TWOPATHMASK\u2063"
_SPLIT = r"\s+"


@ATTRIBUTION_METHODS.register("lime")
class Lime(AttributionMethod):
    """LIME local surrogate coefficients over words or raw features (seeded)."""

    what_it_tells_you = "weights of a local linear model fitted to perturbed inputs"

    def __init__(self, output: OutputSpace = "logit_diff", seed: int = 0, num_samples: int = 5000,
                 kernel_width: float | None = None):
        super().__init__(output, seed)
        self.num_samples = num_samples
        self.kernel_width = kernel_width

    def _scores(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        if self.num_samples < 10:
            raise TwopathError("LIME needs num_samples >= 10")
        if adapter.modality == "text":
            return self._text(adapter, example, target)
        return self._tabular(adapter, example, target)

    def _text(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        from lime.lime_text import LimeTextExplainer

        ev = evaluator_for(adapter, example, target, self.output)
        before = (ev.n_requested, ev.n_evaluated)
        text = example.raw
        assert isinstance(text, str)
        splitter = re.compile(_SPLIT)

        def classifier(strings: list[str]) -> np.ndarray:
            chunks = [[c for c in splitter.split(s) if c] for s in strings]
            keep = np.array([[c != _SENTINEL for c in row] for row in chunks], dtype=bool)
            values = ev(keep)
            return np.column_stack([-values, values])

        explainer = LimeTextExplainer(
            class_names=["other", "target"], bow=False, split_expression=_SPLIT,
            mask_string=_SENTINEL, random_state=self.seed, **self._kernel(),
        )
        exp = explainer.explain_instance(text, classifier, labels=(1,), num_features=ev.n_units,
                                         num_samples=self.num_samples)
        scores = np.zeros(ev.n_units)
        for idx, weight in exp.as_map()[1]:
            scores[idx] = weight
        meta = {"intercept": float(exp.intercept[1]), "fit_r2": float(exp.score), **evaluator_meta(ev, *before)}
        return scores, float(exp.intercept[1]), meta

    def _tabular(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        import torch
        from lime.lime_tabular import LimeTabularExplainer

        if adapter.background is None:
            raise TwopathError("LIME on a table needs a background sample (adapter.background)")
        train = adapter.encode(adapter.background)
        x = adapter.encode(adapter.check_example(example))[0]
        cat_idx = [adapter.features.index(f) for f in adapter.categories]
        counter = {"rows": 0}

        def predict(rows: np.ndarray) -> np.ndarray:
            counter["rows"] += len(rows)
            with torch.no_grad():
                logits = adapter.logits({"x": adapter.transform_coded(rows)})
                return adapter.output(logits, target, self.output).numpy()

        explainer = LimeTabularExplainer(
            train, mode="regression", feature_names=list(adapter.features),
            categorical_features=cat_idx,
            categorical_names={i: list(adapter.categories[adapter.features[i]]) for i in cat_idx},
            random_state=self.seed, **self._kernel(),
        )
        exp = explainer.explain_instance(x, predict, num_features=len(x), num_samples=self.num_samples)
        # In regression mode lime stores the fit under key 1 and its negation under key 0.
        scores = np.zeros(len(x))
        for idx, weight in exp.local_exp[1]:
            scores[idx] = weight
        intercept = float(exp.intercept[1])
        meta = {"intercept": intercept, "fit_r2": float(exp.score), "n_evals": counter["rows"], "n_model_rows": counter["rows"]}
        return scores, intercept, meta

    def _kernel(self) -> dict[str, Any]:
        return {} if self.kernel_width is None else {"kernel_width": self.kernel_width}
