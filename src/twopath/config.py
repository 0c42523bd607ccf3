"""Run configuration from a TOML file.

A configuration chooses the methods of both paths and their settings, e.g.::

    output = "logit_diff"            # or "probability"

    [methods]
    attribution = ["shap", "lime", "integrated_gradients"]
    mechanistic = ["head_ablation", "activation_patching"]

    [settings.lime]
    num_samples = 2000

    [settings.head_ablation]
    mode = "resample"

Unknown keys, methods or settings are rejected with a one-line error naming them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import tomllib

from twopath.types import TwopathError

_TOP = {"output", "methods", "settings", "checks"}


def load_config(path: str | Path) -> dict[str, Any]:
    """Keyword arguments for :func:`twopath.pipeline.explain` from a TOML file."""
    from twopath.attribution import ATTRIBUTION_METHODS
    from twopath.mechanistic import MECHANISTIC_METHODS

    path = Path(path)
    if not path.is_file():
        raise TwopathError(f"config file does not exist: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise TwopathError(f"{path}: not valid TOML ({err})") from None
    unknown = set(data) - _TOP
    if unknown:
        raise TwopathError(f"{path}: unknown key(s) {sorted(unknown)}; expected some of {sorted(_TOP)}")
    options: dict[str, Any] = {}
    if "output" in data:
        options["output"] = data["output"]
    methods = data.get("methods", {})
    for key, registry, option in (("attribution", ATTRIBUTION_METHODS, "attribution_methods"),
                                  ("mechanistic", MECHANISTIC_METHODS, "mechanistic_methods")):
        if key in methods:
            for name in methods[key]:
                registry.get(name)  # raises on an unknown method
            options[option] = list(methods[key])
    settings = data.get("settings", {})
    for name, values in settings.items():
        registry = ATTRIBUTION_METHODS if name in ATTRIBUTION_METHODS else MECHANISTIC_METHODS
        cls = registry.get(name).cls
        allowed = set(inspect.signature(cls).parameters) - {"seed", "output"}
        shared = {"seed", "output"} & set(values)
        if shared:
            raise TwopathError(f"{path}: [settings.{name}] cannot set {sorted(shared)}: output is set at the top level "
                               "and the seed with --seed, the same for every method")
        bad = set(values) - allowed
        if bad:
            raise TwopathError(f"{path}: {name} has no setting(s) {sorted(bad)}; it takes {sorted(allowed)}")
    if settings:
        options["settings"] = {k: {s: tuple(v) if isinstance(v, list) else v for s, v in vals.items()} for k, vals in settings.items()}
    if "checks" in data:
        options["with_checks"] = bool(data["checks"])
    return options
