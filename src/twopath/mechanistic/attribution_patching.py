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

import torch

from twopath.mechanistic.base import MECHANISTIC_METHODS, InterventionMethod
from twopath.mechanistic.patching import check_contrast, patch_components
from twopath.runtime.adapter import OutputSpace
from twopath.runtime.hooks import at, first_tensor, hooked
from twopath.types import Component, Example, TwopathError


def _site_probes(adapter: Any, sites: Sequence[str]) -> list[Component]:
    """One component per (layer, site kind), enough to hook every site once."""
    probes = []
    for kind in sites:
        for layer in range(adapter.n_layers):
            probes.append(Component("resid", layer, position=0) if kind == "resid"
                          else Component("layer", layer) if kind == "layer" else Component(kind, layer, 0))  # type: ignore[arg-type]
    return probes


def _per_component(adapter: Any, kind: str, contribution: torch.Tensor) -> torch.Tensor:
    """Sum a site's (source - base) * gradient product into one number per component."""
    if kind == "head":
        return contribution.reshape(contribution.shape[0], adapter.n_heads, -1).sum((0, 2))
    if kind == "neuron":
        return contribution.reshape(-1, contribution.shape[-1]).sum(0)
    if kind == "resid":
        return contribution.sum(-1)
    return contribution.sum().reshape(1)  # a whole layer


@MECHANISTIC_METHODS.register("attribution_patching")
class AttributionPatching(InterventionMethod):
    """Gradient estimate of activation patching for every site at once (one backward pass)."""

    what_it_tells_you = "first-order estimate of patching every head/neuron/position (cheap, approximate)"
    needs_contrast = True

    def __init__(self, output: OutputSpace = "logit_diff", batch_size: int = 128, direction: str = "auto",
                 sites: tuple[str, ...] | None = None):
        super().__init__(output, batch_size)
        self.direction = direction
        self.sites = sites

    def _effects(self, adapter: Any, example: Example, target: int, corrupted: Example | None) -> dict[str, Any]:
        if corrupted is None:
            raise TwopathError("attribution patching needs a corrupted (contrast) example")
        clean_in, corrupt_in, direction = check_contrast(adapter, example, corrupted, self.direction)
        source, base = (clean_in, corrupt_in) if direction == "denoise" else (corrupt_in, clean_in)
        sites = tuple(self.sites or default_sites(adapter))
        components = patch_components(adapter, clean_in, sites)
        # one forward of [base, source]; gradients of the base row's output w.r.t. the sites only
        acts: dict[tuple[int, str], torch.Tensor] = {}
        hooks = []
        for probe in _site_probes(adapter, sites):
            where = adapter.site(probe)

            def keep(*hook_args: Any, _key: tuple[int, str] = (probe.layer, probe.kind), _kind: str = where.kind) -> None:
                acts[_key] = hook_args[1][0] if _kind == "pre" else first_tensor(hook_args[2])

            hooks.append(at(where, keep))
        both = {k: torch.cat([base[k], source[k]]) for k in base}
        with torch.enable_grad(), hooked(adapter.model, hooks):
            outputs = adapter.output(adapter.run(both), target, self.output)
        base_out, source_out = float(outputs[0].detach()), float(outputs[1].detach())
        clean, corr = (source_out, base_out) if direction == "denoise" else (base_out, source_out)
        if abs(clean - corr) < 1e-6:
            raise TwopathError("the clean and corrupted inputs give the same output; nothing to patch")
        keys = list(acts)
        grads = dict(zip(keys, torch.autograd.grad(outputs[0], [acts[k] for k in keys]), strict=True))
        with torch.no_grad():
            parts = [_per_component(adapter, kind, (acts[(layer, kind)][1] - acts[(layer, kind)][0]) * grads[(layer, kind)][0])
                     for kind in sites for layer in range(adapter.n_layers)]
        start = 0.0 if direction == "denoise" else 1.0
        effects = start + torch.cat(parts).double().cpu().numpy() / (clean - corr)
        if len(effects) != len(components):
            raise RuntimeError(f"attribution patching estimated {len(effects)} sites for {len(components)} components")
        return {"metric": "normalized_logit_diff" if self.output == "logit_diff" else "normalized_probability",
                "components": components, "effects": effects, "clean": clean, "corrupted": corr,
                "meta": {"direction": direction, "n_forward_rows": 2, "n_backward": 1}}


def default_sites(adapter: Any) -> tuple[str, ...]:
    return ("head", "resid") if adapter.positional else ("layer", "neuron")
