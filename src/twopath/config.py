"""Run configuration from a TOML file.

A configuration chooses the methods of both paths and their settings, e.g.::

    output = "logit_diff"            # or "probability"
    checks = true                    # a TOML boolean

    [methods]
    attribution = ["shap", "lime", "integrated_gradients"]
    mechanistic = ["head_ablation", "activation_patching"]

    [settings.lime]
    num_samples = 2000

    [settings.head_ablation]
    mode = "resample"

Everything is checked when the file is read, against the typed schema of every method's
settings in :mod:`twopath.validation` (types, ranges, choices, the methods a kind of model
supports): an unknown key, method or setting, or a value of the wrong type or out of range, is a
one-line error naming it, before any model loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twopath.validation import check_config, check_settings

__all__ = ["check_config", "check_settings", "load_config"]


def load_config(path: str | Path, modality: str | None = None) -> dict[str, Any]:
    """Keyword arguments for :func:`twopath.pipeline.explain` from a TOML file.

    ``modality`` ("text" or "tabular") also refuses methods that do not support that kind of
    model; without it only what holds for every model is checked.
    """
    from twopath import validation

    return validation.load_config(path, modality)
