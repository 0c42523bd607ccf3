"""The model runtime: how twopath opens a model.

* :mod:`~twopath.runtime.adapter` — the :class:`ModelAdapter` contract every method programs
  against, the resolved :class:`Target`, the explained output space;
* :mod:`~twopath.runtime.families` — one entry per architecture family with its named sites;
* :mod:`~twopath.runtime.text` / :mod:`~twopath.runtime.tabular` — the adapters;
* :mod:`~twopath.runtime.trace` — one clean run per example, reused by every method;
* :mod:`~twopath.runtime.hooks` / :mod:`~twopath.runtime.interventions` — hooks as context
  managers, edits of component activations;
* :mod:`~twopath.runtime.devices` — ``--device`` and ``--dtype``.
"""

from twopath.runtime.adapter import (
    OUTPUT_SPACES,
    ModelAdapter,
    OutputSpace,
    Site,
    Target,
    target_output,
)

__all__ = ["OUTPUT_SPACES", "ModelAdapter", "OutputSpace", "Site", "Target", "target_output"]
