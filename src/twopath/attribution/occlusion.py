"""Occlusion (leave one unit out).

The simplest perturbation baseline: a unit's score is how much the output drops when that unit
alone is removed, ``f(x) - f(x without unit)``. It needs one model evaluation per unit and is
easy to explain, but it misses interactions: two words that each suffice (redundancy) both get
a score near zero. Absent words become mask tokens; absent features take background values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twopath.attribution.base import ATTRIBUTION_METHODS, AttributionMethod, evaluator_meta
from twopath.runtime.evaluator import evaluator_for
from twopath.types import Example


@ATTRIBUTION_METHODS.register("occlusion")
class Occlusion(AttributionMethod):
    """Leave-one-unit-out: drop in output when each word or feature alone is removed."""

    what_it_tells_you = "output drop when each unit alone is removed"

    def _scores(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        ev = evaluator_for(adapter, example, target, self.output)
        before = (ev.n_requested, ev.n_evaluated)
        n = ev.n_units
        masks = np.vstack([np.ones((1, n), dtype=bool), ~np.eye(n, dtype=bool)])
        values = ev(masks)
        return values[0] - values[1:], None, evaluator_meta(ev, *before)
