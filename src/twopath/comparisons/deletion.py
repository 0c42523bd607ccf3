"""The deletion check: remove what each path ranks highest and watch the probability.

For the input path, the top-k units of a method (by signed score toward the target) are removed
together — words replaced by the mask token, features set to background values — and the target
probability is read from the shared evaluator. For the internal path, the top-k components of a
localization (by effect) are mean-ablated together. Both drops are in the same unit (target
probability), so "deleting the top word" and "ablating the top head" can be compared directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.runtime.evaluator import evaluator_for
from twopath.runtime.interventions import ablate, intervene
from twopath.types import Attribution, Example, Localization


def delete_units(adapter: Any, example: Example, attribution: Attribution, ks: Sequence[int]) -> list[dict[str, Any]]:
    target = adapter.label_index(attribution.target)
    ev = evaluator_for(adapter, example, target, "probability")
    order = np.argsort(-attribution.scores, kind="stable")
    clean = ev.full()
    rows = []
    for k in ks:
        if k > len(order):
            break
        keep = np.ones(len(order), dtype=bool)
        keep[order[:k]] = False
        prob = float(ev(keep[None])[0])
        rows.append({"path": "input", "method": attribution.method, "k": k,
                     "removed": [attribution.units[i] for i in order[:k]],
                     "probability": prob, "drop": clean - prob})
    return rows


def ablate_components(adapter: Any, example: Example, localization: Localization, ks: Sequence[int],
                      mode: str = "mean") -> list[dict[str, Any]]:
    target = adapter.label_index(localization.target)
    inputs = adapter.forward_inputs(example)
    with torch.no_grad():
        clean = float(torch.softmax(adapter.run(inputs), -1)[0, target])
    order = np.argsort(-localization.effects, kind="stable")
    rows = []
    for k in ks:
        if k > len(order):
            break
        chosen = [localization.components[i] for i in order[:k]]
        with torch.no_grad(), intervene(adapter, ablate(adapter, chosen, mode)):
            prob = float(torch.softmax(adapter.run(inputs), -1)[0, target])
        rows.append({"path": "internal", "method": localization.method, "k": k,
                     "removed": [str(c) for c in chosen], "probability": prob, "drop": clean - prob})
    return rows


def deletion_table(adapter: Any, example: Example, attributions: Sequence[Attribution],
                   localizations: Sequence[Localization], ks: Sequence[int] = (1, 2, 3)) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for attribution in attributions:
        rows += delete_units(adapter, example, attribution, ks)
    for localization in localizations:
        rows += ablate_components(adapter, example, localization, ks)
    return pd.DataFrame(rows)
