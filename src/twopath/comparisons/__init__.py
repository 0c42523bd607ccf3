"""Comparison room: put both paths side by side and measure how they relate.

* :mod:`~twopath.comparisons.summary` — the per-example side-by-side table;
* :mod:`~twopath.comparisons.agreement` — rank agreement between attribution methods;
* :mod:`~twopath.comparisons.deletion` — remove the top units vs ablate the top components;
* :mod:`~twopath.comparisons.faithfulness` — deletion / insertion curves for both paths;
* :mod:`~twopath.comparisons.bridges` — which input units drive the top components;
* :mod:`~twopath.comparisons.sanity` — the model-randomization sanity check;
* :mod:`~twopath.comparisons.edit_test` — ablate what each path points to, and compare;
* :mod:`~twopath.comparisons.aspects` — the aspect table with measured evidence.

The seed document's claims and their verdicts live in the seed room (:mod:`twopath.seed`).
"""

from twopath.comparisons import (
    agreement,
    aspects,
    bridges,
    deletion,
    edit_test,
    faithfulness,
    sanity,
    summary,
)

__all__ = [
    "agreement", "aspects", "bridges", "deletion", "edit_test", "faithfulness", "sanity", "summary",
]
