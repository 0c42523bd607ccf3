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

**Long inputs.** A full input curve has ``n + 1`` points per ranking (17 rankings: six methods and
ten random orders, twice), so its rows grow with the number of words and its cost with the
square of the length. Beyond ``MAX_CURVE_POINTS - 1`` units the input curves are evaluated on a
grid of k (evenly spaced, always with 0, 1, the top 20 % and n; listed in the row's ``curve_k``)
and AOPC is the mean of the curve interpolated linearly between grid points over every k — the
exact mean on the grid points themselves. Rows, comprehensiveness and sufficiency are exact; the
seed sentence (8 words) and every input up to 24 units keep the full curve. Component curves
(30 components) never need a grid. Masked-ablation batches are sized by the adapter's memory
budget (:meth:`~twopath.runtime.adapter.ModelAdapter.rows_per_pass`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from twopath.mechanistic.circuits import masked_logits
from twopath.runtime.evaluator import evaluator_for
from twopath.runtime.interventions import MaskedAblation
from twopath.types import Attribution, Component, Example, Localization

#: input curves with more points than this are evaluated on a grid of k
MAX_CURVE_POINTS = 25


def curve_ks(n: int, k_max: int | None = None, max_points: int | None = None) -> np.ndarray:
    """The k of a curve over ``n`` units: 0…k_max, or (beyond ``max_points`` points) an even grid
    that always holds 0, 1, the top 20 % and k_max."""
    k_max = n if k_max is None else k_max
    if max_points is None or k_max + 1 <= max_points:
        return np.arange(k_max + 1)
    fixed = [0, min(1, k_max), min(max(1, math.ceil(0.2 * n)), k_max), k_max]
    grid = np.rint(np.linspace(0, k_max, max_points)).astype(int)
    return np.unique(np.concatenate([grid, fixed]))


def _curves_from(order_rows: np.ndarray, f: Any, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves at ``ks`` for every ordering (rows = orderings of indices)."""
    n_orders, n = order_rows.shape
    keep_del = np.ones((n_orders, len(ks), n), dtype=bool)
    keep_ins = np.zeros((n_orders, len(ks), n), dtype=bool)
    for o, order in enumerate(order_rows):
        for j, k in enumerate(ks):
            keep_del[o, j, order[:k]] = False
            keep_ins[o, j, order[:k]] = True
    deletion = f(keep_del.reshape(-1, n)).reshape(n_orders, len(ks))
    insertion = f(keep_ins.reshape(-1, n)).reshape(n_orders, len(ks))
    return deletion, insertion


def _summary(method: str, path: str, deletion: np.ndarray, insertion: np.ndarray, n: int,
             ks: np.ndarray | None = None) -> dict[str, Any]:
    k = max(1, math.ceil(0.2 * n))
    ks = np.arange(len(deletion)) if ks is None else np.asarray(ks)
    full, empty = deletion[0], insertion[0]
    gridded = len(ks) != int(ks[-1]) + 1
    deleted, inserted = deletion[1:], insertion[1:]
    if gridded:  # AOPC: the mean over every k, the curve interpolated between grid points
        every = np.arange(1, int(ks[-1]) + 1)
        deleted, inserted = np.interp(every, ks, deletion), np.interp(every, ks, insertion)
    at = int(np.flatnonzero(ks == k)[0]) if k in ks else None
    row = {
        "path": path, "method": method, "n_units": n, "k20": k,
        "aopc_deletion": float(np.mean(full - deleted)),
        "aopc_insertion": float(np.mean(inserted - empty)),
        "comprehensiveness": float(full - deletion[at]) if at is not None else None,
        "sufficiency": float(full - insertion[at]) if at is not None else None,
        "deletion_curve": [float(v) for v in deletion],
        "insertion_curve": [float(v) for v in insertion],
    }
    if gridded:  # say which k the points are
        row["curve_k"] = [int(v) for v in ks]
    return row


def _random_orders(n: int, seeds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.permutation(n) for _ in range(seeds)])


def input_faithfulness(adapter: Any, example: Example, attributions: Sequence[Attribution],
                       n_random: int = 10, seed: int = 0, max_points: int | None = MAX_CURVE_POINTS) -> list[dict[str, Any]]:
    """Curves for each attribution method and the random-order control, in target probability
    (on a grid of k beyond ``max_points`` points; ``None``: every k)."""
    target = adapter.label_index(attributions[0].target)
    ev = evaluator_for(adapter, example, target, "probability")
    n = ev.n_units
    ks = curve_ks(n, max_points=max_points)
    rows = []
    for a in attributions:
        deletion, insertion = _curves_from(np.argsort(-a.scores, kind="stable")[None], ev, ks)
        rows.append(_summary(a.method, "input", deletion[0], insertion[0], n, ks))
    deletion, insertion = _curves_from(_random_orders(n, n_random, seed), ev, ks)
    rows.append(_summary("random order", "input", deletion.mean(0), insertion.mean(0), n, ks))
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
        logits = masked_logits(adapter, masked, inputs, keep, batch_size=256)
        return torch.softmax(logits, -1)[:, target].cpu().numpy()

    ks = curve_ks(n, k_max)
    rows = []
    for loc in localizations:
        index = {c: i for i, c in enumerate(candidates)}
        order = np.array([index[loc.components[i]] for i in np.argsort(-loc.effects, kind="stable")])
        deletion, insertion = _curves_from(order[None], f, ks)
        rows.append(_summary(loc.method, "internal", deletion[0], insertion[0], k_max))
    deletion, insertion = _curves_from(_random_orders(n, n_random, seed), f, ks)
    rows.append(_summary("random order", "internal", deletion.mean(0), insertion.mean(0), k_max))
    return rows
