"""Both paths over a dataset: faithfulness, agreement and "which matters more", as mean ± sd.

One example can mislead. This module runs a light version of the pipeline over many held-out
examples (default 200 sentences or 500 applicants) and aggregates:

* per input method and for the internal path's ablation ranking: deletion / insertion AOPC,
  comprehensiveness and sufficiency, each beside its random-order control;
* rank agreement (Spearman) between every pair of input methods;
* the *type of insight* comparison of the aspect table: the probability drop when the top
  component is mean-ablated versus when the top unit is deleted, and how often each is larger.

Per-example costs are kept small: SHAP uses the Partition explainer with a budget of 100
evaluations (or the exact table on inputs of at most 8 units), IG at most 64 steps, the internal
curves the top 10 components, and LIME is left out (its stability is measured on the seed
example).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.attribution import ATTRIBUTION_METHODS
from twopath.comparisons import faithfulness
from twopath.mechanistic import MECHANISTIC_METHODS
from twopath.metrics import spearman
from twopath.types import Example

DATASET_METHODS = ("shap", "integrated_gradients", "occlusion", "gradient_x_input")
METRICS = ("aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency")


def _one(adapter: Any, example: Example, methods: Sequence[str], seed: int) -> dict[str, Any]:
    with torch.no_grad():
        probs = torch.softmax(adapter.run(adapter.forward_inputs(example)), -1)[0].numpy()
    target = adapter.labels[int(probs.argmax())]
    example = example.with_target(target)
    settings = {"shap": {"max_evals": 100, "exact_max_units": 8}, "integrated_gradients": {"max_steps": 64}}
    attributions = [ATTRIBUTION_METHODS.create(m, seed=seed, **settings.get(m, {})).attribute(adapter, example, target=target)
                    for m in methods if adapter.modality in ATTRIBUTION_METHODS.get(m).modalities]
    kind = f"{adapter.default_component}_ablation"
    ablation = MECHANISTIC_METHODS.create(kind).localize(adapter, example, target=target)
    rows = faithfulness.input_faithfulness(adapter, example, attributions, n_random=3, seed=seed)
    rows += faithfulness.internal_faithfulness(adapter, example, [ablation], k_max=10, n_random=3, seed=seed)
    unit_drop = next(r for r in rows if r["method"] == attributions[0].method)
    comp_drop = next(r for r in rows if r["method"] == kind)
    agreement = {f"{a.method} vs {b.method}": spearman(a.scores, b.scores) for a, b in combinations(attributions, 2)}
    return {
        "faithfulness": rows,
        "agreement": agreement,
        "top_unit_drop": unit_drop["deletion_curve"][0] - unit_drop["deletion_curve"][1],
        "top_component_drop": comp_drop["deletion_curve"][0] - comp_drop["deletion_curve"][1],
    }


def dataset_summary(adapter: Any, examples: Sequence[Example], methods: Sequence[str] = DATASET_METHODS,
                    seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Aggregate faithfulness, agreement and the unit-vs-component comparison over ``examples``."""
    per_example = []
    for i, example in enumerate(examples):
        per_example.append(_one(adapter, example, methods, seed))
        if progress is not None:
            progress(i + 1, len(examples))
    faith = pd.DataFrame([dict(r, example=i) for i, e in enumerate(per_example) for r in e["faithfulness"]])
    summary = (faith.groupby(["path", "method"], sort=False)[list(METRICS)].agg(["mean", "std"]))
    summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
    agreement = pd.DataFrame([e["agreement"] for e in per_example])
    unit = np.array([e["top_unit_drop"] for e in per_example])
    comp = np.array([e["top_component_drop"] for e in per_example])
    return {
        "n_examples": len(examples),
        "faithfulness": summary.reset_index().to_dict(orient="records"),
        "agreement": [{"pair": c, "spearman_mean": float(agreement[c].mean()), "spearman_sd": float(agreement[c].std())}
                      for c in agreement.columns],
        "insight": {"top_unit_drop_mean": float(unit.mean()), "top_unit_drop_sd": float(unit.std()),
                    "top_component_drop_mean": float(comp.mean()), "top_component_drop_sd": float(comp.std()),
                    "share_component_larger": float(np.mean(np.abs(comp) > np.abs(unit)))},
    }
