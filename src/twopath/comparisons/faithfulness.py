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
* a **random-order control**: the same curves for random rankings, averaged over seeds (10
  orders up to 8 words or 24 table features; 4 beyond, where each order's curves are many passes
  of a longer input), with the sd of AOPC over the orders. A ranking that does no better than random has
  told you nothing about the model.

Units are ranked by signed score (toward the target first); components by effect.

**Long inputs.** A full input curve has ``n + 1`` points per ranking (17 rankings: six methods and
ten random orders, twice), so its rows grow with the number of words and its cost with the
square of the length. Beyond ``MAX_CURVE_POINTS - 1`` units the input curves are evaluated on a
grid of k (25 points, 13 beyond 128 units: :func:`curve_points_for`; evenly spaced, always with
0, 1, the top 20 % and n; listed in the row's ``curve_k``) and AOPC is the mean of the curve
interpolated linearly between grid points over every k — the exact mean on the grid points
themselves. Rows, comprehensiveness and sufficiency are exact; the
seed sentence (8 words) and every input up to 24 units keep the full curve. Component curves
(30 components) never need a grid. Masked-ablation batches are sized by the adapter's memory
budget (:meth:`~twopath.runtime.adapter.ModelAdapter.rows_per_pass`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from twopath.mechanistic.circuits import masked_logits
from twopath.runtime.evaluator import background_key, evaluator_for
from twopath.runtime.interventions import MaskedAblation
from twopath.runtime.trace import caches, example_key
from twopath.types import Attribution, Component, Example, Localization

#: input curves with more points than this are evaluated on a grid of k ...
MAX_CURVE_POINTS = 25
#: ... of this many points beyond ``LONG_CURVE_UNITS`` units (:func:`curve_points_for`)
MAX_CURVE_POINTS_LONG = 13
LONG_CURVE_UNITS = 128
#: random orders of the control: ``N_RANDOM``, or ``N_RANDOM_LONG`` on longer inputs
#: (:func:`random_orders_for`)
N_RANDOM = 10
N_RANDOM_LONG = 4
#: the most units that keep ``N_RANDOM`` orders: text up to the seed sentence's 8 words, tables
#: up to 24 features (a row of an MLP costs next to nothing)
FULL_CONTROL_UNITS = {"text": 8, "tabular": MAX_CURVE_POINTS - 1}


def random_orders_for(n_units: int, positional: bool = True) -> int:
    """How many random orders the control averages on an input of ``n_units`` units: 10 up to 8
    words (the seed sentence) or 24 table features (the loan and HMDA applicants), 4 beyond.
    Each order is two whole curves of model rows of the input, so on a 12-word review the ten
    orders were two thirds of the curves' rows; the random row reports the spread of AOPC over its
    orders (``aopc_*_sd``), so the reader sees what 4 orders leave uncertain (on a 12-word review
    the sd of the input control's AOPC is about 0.09, so the mean of 4 orders is known to about
    +-0.05, against gaps of about 0.2 between the methods and the control)."""
    limit = FULL_CONTROL_UNITS["text" if positional else "tabular"]
    return N_RANDOM if n_units <= limit else N_RANDOM_LONG


def curve_points_for(n_units: int) -> int:
    """The most points of an input curve over ``n_units`` units: 25, or 13 beyond 128 units.

    On a 190-word passage the 13-point grid's AOPC differs from a 49-point grid's by at most
    0.007 (the 25-point grid's by 0.002; the gaps between methods there are 0.017 and more), at
    about half the rows of the 25-point one; on a 48-word review it would differ by 0.011, so
    shorter inputs keep 25 points."""
    return MAX_CURVE_POINTS if n_units <= LONG_CURVE_UNITS else MAX_CURVE_POINTS_LONG


def curve_ks(n: int, k_max: int | None = None, max_points: int | None = None) -> np.ndarray:
    """The k of a curve over ``n`` units: 0…k_max, or (beyond ``max_points`` points) an even grid
    that always holds 0, 1, the top 20 % and k_max."""
    k_max = n if k_max is None else k_max
    if max_points is None or k_max + 1 <= max_points:
        return np.arange(k_max + 1)
    fixed = [0, min(1, k_max), min(max(1, math.ceil(0.2 * n)), k_max), k_max]
    grid = np.rint(np.linspace(0, k_max, max_points)).astype(int)
    return np.unique(np.concatenate([grid, fixed]))


def _keep_masks(order_rows: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion coalitions (orders × len(ks) × n): deletion keeps every unit
    ranked at or below k, insertion the top k."""
    n_orders, n = order_rows.shape
    rank = np.empty_like(order_rows)
    rank[np.arange(n_orders)[:, None], order_rows] = np.arange(n)  # rank[o, u]: place of unit u in order o
    inserted = rank[:, None, :] < np.asarray(ks)[None, :, None]
    return ~inserted, inserted


def _curves_from(order_rows: np.ndarray, f: Any, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves at ``ks`` for every ordering (rows = orderings of indices),
    every point of every ordering in one call of ``f`` (``f`` batches and memoizes)."""
    n_orders, n = order_rows.shape
    keep_del, keep_ins = _keep_masks(order_rows, ks)
    values = f(np.concatenate([keep_del.reshape(-1, n), keep_ins.reshape(-1, n)]))
    deletion, insertion = values.reshape(2, n_orders, len(ks))
    return deletion, insertion


def _distinct(f: Any) -> Any:
    """``f`` over distinct rows only (the curves' shared points: everything kept, nothing kept)."""
    def once(keep: np.ndarray) -> np.ndarray:
        rows, back = distinct_rows(np.asarray(keep, dtype=bool))
        return np.asarray(f(rows))[back]
    return once


def distinct_rows(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keep, axis=0, return_inverse=True)`` for a boolean matrix, in the same order
    (rows sorted lexicographically: their packed bytes sort alike), without its structured-dtype
    sort, which took a millisecond for a tabular model's 40 curve rows of 192 neurons."""
    keys = [row.tobytes() for row in np.packbits(keep, axis=1)]
    first: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    ordered = sorted(first)
    place = {key: i for i, key in enumerate(ordered)}
    return keep[[first[key] for key in ordered]], np.array([place[key] for key in keys], dtype=np.intp)


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


def _random_row(path: str, deletion: np.ndarray, insertion: np.ndarray, n: int, ks: np.ndarray | None = None
                ) -> dict[str, Any]:
    """The random-order control: the curves averaged over the orders (rows of ``deletion`` and
    ``insertion``), with the number of orders and the sd of each order's AOPC."""
    row = _summary("random order", path, deletion.mean(0), insertion.mean(0), n, ks)
    per_order = [_summary("random order", path, d, i, n, ks) for d, i in zip(deletion, insertion, strict=True)]
    row["n_orders"] = len(per_order)
    for metric in ("aopc_deletion", "aopc_insertion"):  # one order has no spread to report
        spread = [r[metric] for r in per_order]
        row[f"{metric}_sd"] = float(np.std(spread, ddof=1)) if len(spread) > 1 else None
    return row


def _random_orders(n: int, seeds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.permutation(n) for _ in range(seeds)])


def input_faithfulness(adapter: Any, example: Example, attributions: Sequence[Attribution],
                       n_random: int | None = None, seed: int = 0, max_points: int | None | Literal["rule"] = "rule"
                       ) -> list[dict[str, Any]]:
    """Curves for each attribution method and the random-order control, in target probability
    (on a grid of k beyond ``max_points`` points: by default :func:`curve_points_for` the input's
    units; ``None``: every k), with ``n_random`` random orders (default: :func:`random_orders_for`
    the input's units)."""
    target = adapter.label_index(attributions[0].target)
    ev = evaluator_for(adapter, example, target, "probability")
    n = ev.n_units
    n_random = random_orders_for(n, adapter.positional) if n_random is None else n_random
    max_points = curve_points_for(n) if max_points == "rule" else max_points
    ks = curve_ks(n, max_points=max_points)
    ranked = [np.argsort(-a.scores, kind="stable") for a in attributions]
    orders = np.vstack([*ranked, _random_orders(n, n_random, seed)])
    deletion, insertion = _curves_from(orders, ev, ks)  # every ranking and random order: one call
    m = len(attributions)
    rows = [_summary(a.method, "input", deletion[i], insertion[i], n, ks) for i, a in enumerate(attributions)]
    rows.append(_random_row("input", deletion[m:], insertion[m:], n, ks))
    return rows


def internal_faithfulness(adapter: Any, example: Example, localizations: Sequence[Localization],
                          k_max: int = 30, n_random: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Curves for component rankings (mean ablation of the top-k), with a random-order control of
    ``n_random`` orders (default: :func:`random_orders_for` the input's units: each row is a pass
    over the whole input).

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
    n_random = random_orders_for(len(adapter.units(example)), adapter.positional) if n_random is None else n_random

    memo = _ablation_memo(adapter, example, candidates)

    def f(keep: np.ndarray) -> np.ndarray:
        keys = [row.tobytes() for row in np.packbits(keep, axis=1)]
        missing = [i for i, key in enumerate(keys) if key not in memo]
        if missing:
            logits = masked_logits(adapter, masked, inputs, keep[missing], batch_size=256)
            memo.update(zip([keys[i] for i in missing], logits, strict=True))
        return torch.softmax(torch.stack([memo[key] for key in keys]), -1)[:, target].cpu().numpy()

    ks = curve_ks(n, k_max)
    index = {c: i for i, c in enumerate(candidates)}
    ranked = [np.array([index[loc.components[i]] for i in np.argsort(-loc.effects, kind="stable")])
              for loc in localizations]
    orders = np.vstack([*ranked, _random_orders(n, n_random, seed)])
    deletion, insertion = _curves_from(orders, _distinct(f), ks)  # every ranking and random order: one call
    m = len(localizations)
    rows = [_summary(loc.method, "internal", deletion[i], insertion[i], k_max) for i, loc in enumerate(localizations)]
    rows.append(_random_row("internal", deletion[m:], insertion[m:], k_max))
    return rows


def _ablation_memo(adapter: Any, example: Example, candidates: Sequence[Component]) -> dict[bytes, torch.Tensor]:
    """Logits of mean-ablated component sets of one example, shared by every target (a second
    explanation at another label reuses the random-order rows): keyed by the set's bits."""
    cache = caches(adapter).evaluators
    key = ("masked ablation", example_key(example), tuple(candidates), background_key(adapter))
    if key not in cache:
        cache[key] = {}
    memo: dict[bytes, torch.Tensor] = cache[key]
    return memo
