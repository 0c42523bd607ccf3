"""One faithfulness protocol for both paths: deletion and insertion curves.

An explanation ranks units (words, features) or components (heads, neurons). If the ranking is
faithful, removing what it ranks highest should hurt the prediction fast, and adding it back
alone should restore it fast. The protocol, applied identically to both paths:

* **deletion curve** — remove the top-k (k = 0…K) and track the target probability. Words are
  *masked* (each of their tokens replaced by the mask token, so positions stay fixed); features
  are set to background values (averaged over the background sample); components are
  mean-ablated;
* **insertion curve** — start from everything removed and add the top-k back;
* **AOPC** (Samek et al., 2017) — the mean drop ``p(x) - p_k`` over k = 1…K of the deletion
  curve (higher = more faithful); for insertion, the mean of ``p_k - p(empty)``;
* **comprehensiveness** and **sufficiency** (DeYoung et al., 2020) at the top 20 % of units:
  ``p(x) - p(x without top)`` (higher = more faithful) and ``p(x) - p(top only)`` (lower = more
  faithful);
* a **random-order control**: the same curves for random rankings, averaged over seeds. A
  ranking that does no better than random has told you nothing about the model.

Units are ranked by signed score (toward the target first); components by effect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from twopath.runtime.evaluator import evaluator_for
from twopath.runtime.interventions import MaskedAblation
from twopath.types import Attribution, Component, Example, Localization


def _curves_from(order_rows: np.ndarray, f: Any, k_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves (k = 0…k_max) for every ordering (rows = orderings of indices)."""
    n_orders, n = order_rows.shape
    k_max = n if k_max is None else k_max
    keep_del = np.ones((n_orders, k_max + 1, n), dtype=bool)
    keep_ins = np.zeros((n_orders, k_max + 1, n), dtype=bool)
    for o, order in enumerate(order_rows):
        for k in range(1, k_max + 1):
            keep_del[o, k, order[:k]] = False
            keep_ins[o, k, order[:k]] = True
    deletion = f(keep_del.reshape(-1, n)).reshape(n_orders, k_max + 1)
    insertion = f(keep_ins.reshape(-1, n)).reshape(n_orders, k_max + 1)
    return deletion, insertion


def _summary(method: str, path: str, deletion: np.ndarray, insertion: np.ndarray, n: int) -> dict[str, Any]:
    k = max(1, math.ceil(0.2 * n))
    full, empty = deletion[0], insertion[0]
    return {
        "path": path, "method": method, "n_units": n, "k20": k,
        "aopc_deletion": float(np.mean(full - deletion[1:])),
        "aopc_insertion": float(np.mean(insertion[1:] - empty)),
        "comprehensiveness": float(full - deletion[k]),
        "sufficiency": float(full - insertion[k]),
        "deletion_curve": [float(v) for v in deletion],
        "insertion_curve": [float(v) for v in insertion],
    }


def _random_orders(n: int, seeds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.permutation(n) for _ in range(seeds)])


def input_faithfulness(adapter: Any, example: Example, attributions: Sequence[Attribution],
                       n_random: int = 10, seed: int = 0) -> list[dict[str, Any]]:
    """Curves for each attribution method and the random-order control, in target probability."""
    target = adapter.label_index(attributions[0].target)
    ev = evaluator_for(adapter, example, target, "probability")
    n = ev.n_units
    rows = []
    for a in attributions:
        deletion, insertion = _curves_from(np.argsort(-a.scores, kind="stable")[None], ev)
        rows.append(_summary(a.method, "input", deletion[0], insertion[0], n))
    deletion, insertion = _curves_from(_random_orders(n, n_random, seed), ev)
    rows.append(_summary("random order", "input", deletion.mean(0), insertion.mean(0), n))
    return rows


def internal_faithfulness(adapter: Any, example: Example, localizations: Sequence[Localization],
                          k_max: int = 30, n_random: int = 10, seed: int = 0) -> list[dict[str, Any]]:
    """Curves for component rankings (mean ablation of the top-k), with a random-order control.

    All localizations must rank the same kind of candidates (heads, or neurons).
    """
    if not localizations:
        return []
    target = adapter.label_index(localizations[0].target)
    candidates: list[Component] = list(localizations[0].components)
    masked = MaskedAblation(adapter, candidates)
    inputs = adapter.forward_inputs(example)
    n = len(candidates)
    k_max = min(k_max, n)

    def f(keep: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(keep), 256):
            logits = masked.run(inputs, keep[start : start + 256])
            out.append(torch.softmax(logits, -1)[:, target].numpy())
        return np.concatenate(out)

    rows = []
    for loc in localizations:
        index = {c: i for i, c in enumerate(candidates)}
        order = np.array([index[loc.components[i]] for i in np.argsort(-loc.effects, kind="stable")])
        deletion, insertion = _curves_from(order[None], f, k_max)
        rows.append(_summary(loc.method, "internal", deletion[0], insertion[0], k_max))
    deletion, insertion = _curves_from(_random_orders(n, n_random, seed), f, k_max)
    rows.append(_summary("random order", "internal", deletion.mean(0), insertion.mean(0), k_max))
    return rows
