"""Comparison room: put both paths side by side and measure how they relate.

* :mod:`~twopath.comparisons.summary` — the per-example side-by-side table;
* :mod:`~twopath.comparisons.agreement` — rank agreement between attribution methods;
* :mod:`~twopath.comparisons.deletion` — remove the top units vs ablate the top components.
"""

from twopath.comparisons import agreement, deletion, summary

__all__ = ["agreement", "deletion", "summary"]
