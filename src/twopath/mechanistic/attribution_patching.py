"""Attribution patching: activation patching approximated with one backward pass.

Exact activation patching reruns the model once per site. Attribution patching (Nanda, 2023;
Syed et al., 2023) replaces each rerun with a first-order Taylor estimate: patching site ``a``
from the source run into the base run changes the metric by about
``(a_source - a_base) · ∂metric/∂a``, with the gradient taken once, on the base run. One forward
and one backward pass on the base input, plus one forward pass on the source, estimate every
head, neuron and residual site at once. The estimate is exact when the metric is linear in the
activation and degrades where the model saturates, so twopath reports its correlation with
exact patching on the sites both measured.

Effects are on the same scale as :class:`~twopath.mechanistic.patching.ActivationPatching`:
the estimated normalized output of the patched run (0 = corrupted run, 1 = clean run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from twopath.mechanistic.base import MECHANISTIC_METHODS, InterventionMethod, run_output
from twopath.mechanistic.patching import check_contrast, patch_components
from twopath.models.base import OutputSpace
from twopath.models.hooks import Hook, first_tensor, hooked
from twopath.models.interventions import capture, read, site, site_key
from twopath.types import Component, Example, TwopathError


def _capture_with_grad(adapter: Any, components: Sequence[Component]) -> tuple[list[Hook], dict[tuple[int, str], torch.Tensor]]:
    store: dict[tuple[int, str], torch.Tensor] = {}
    hooks, seen = [], set()
    for component in components:
        key = site_key(component)
        if key in seen:
            continue
        seen.add(key)
        module, kind = site(adapter, component)

        def keep(*hook_args: Any, _key: tuple[int, str] = key, _kind: str = kind) -> None:
            tensor = hook_args[1][0] if _kind == "pre" else first_tensor(hook_args[2])
            tensor.retain_grad()
            store[_key] = tensor

        hooks.append(Hook(module, keep, kind))  # type: ignore[arg-type]
    return hooks, store


@MECHANISTIC_METHODS.register("attribution_patching")
class AttributionPatching(InterventionMethod):
    """Gradient estimate of activation patching for every site at once (one backward pass)."""

    what_it_tells_you = "first-order estimate of patching every head/neuron/position (cheap, approximate)"

    def __init__(self, output: OutputSpace = "logit_diff", batch_size: int = 128, direction: str = "auto",
                 sites: tuple[str, ...] | None = None):
        super().__init__(output, batch_size)
        self.direction = direction
        self.sites = sites

    def _effects(self, adapter: Any, example: Example, target: int, corrupted: Example | None) -> dict[str, Any]:
        if corrupted is None:
            raise TwopathError("attribution patching needs a corrupted (contrast) example")
        clean_in, corrupt_in, direction = check_contrast(adapter, example, corrupted, self.direction)
        clean, _ = run_output(adapter, clean_in, target, self.output)
        corr, _ = run_output(adapter, corrupt_in, target, self.output)
        if abs(clean - corr) < 1e-6:
            raise TwopathError("the clean and corrupted inputs give the same output; nothing to patch")
        source, base = (clean_in, corrupt_in) if direction == "denoise" else (corrupt_in, clean_in)
        components = patch_components(adapter, clean_in, self.sites or default_sites(adapter))
        hooks, base_acts = _capture_with_grad(adapter, components)
        adapter.model.zero_grad(set_to_none=True)
        with hooked(adapter.model, hooks):
            metric = adapter.output(adapter.run(base), target, self.output)[0]
        metric.backward()
        adapter.model.zero_grad(set_to_none=True)
        with torch.no_grad(), capture(adapter, components) as source_acts:
            adapter.run(source)
        start = 0.0 if direction == "denoise" else 1.0
        effects = np.empty(len(components))
        for i, c in enumerate(components):
            key = site_key(c)
            grad = base_acts[key].grad
            assert grad is not None
            delta = read(adapter, c, source_acts[key]) - read(adapter, c, base_acts[key])
            effects[i] = start + float((delta * read(adapter, c, grad)).sum()) / (clean - corr)
        return {"metric": "normalized_logit_diff" if self.output == "logit_diff" else "normalized_probability",
                "components": components, "effects": effects, "clean": clean, "corrupted": corr,
                "meta": {"direction": direction, "n_forward_rows": 2, "n_backward": 1}}


def default_sites(adapter: Any) -> tuple[str, ...]:
    return ("head", "resid") if adapter.modality == "text" else ("layer", "neuron")
