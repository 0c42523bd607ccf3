"""Bridges between the paths: which input units drive the components that matter?

The input path ranks words (features); the internal path ranks components. A bridge asks
whether they describe the same computation: do the top words *flow through* the top components?

For each top component ``c`` twopath defines a scalar "what ``c`` contributes to the target":
for an attention head, its output projected on the gradient of the target's output with respect
to it (the head's linearised contribution, ``<h_c(x), ∂f/∂h_c>``); for an MLP neuron, its
activation. Integrated Gradients of that scalar with respect to the input (word embeddings from a
pad baseline; transformed features from the background mean), merged into words or raw features
by summing, gives a **units × components** map. The bridge score is the share of the top-k
components' absolute input attribution that lands on the input path's top-k units, compared
with the same share for random components of the same kind (the control).

The map is computed for all its components at once (:func:`components_input_attribution`): the
interpolated inputs of the integral are the same for every component, so they run forward once
(in batches the adapter's memory budget allows) and each component takes one backward pass
through that graph; the heads' directions come from one backward pass of the example. The top
components and the control's random draws share one such map. The
numbers are captum's (the same Gauss-Legendre points and weights; checked against one captum
run per component), at about two thirds of the cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.attribution.base import gradient_rows
from twopath.runtime.hooks import at, first_tensor, hooked
from twopath.types import Attribution, Component, Example


def _component_scalar(adapter: Any, component: Component, direction: torch.Tensor | None):
    """A function act -> (B,) reading the component from its captured site tensor."""
    def read(act: torch.Tensor) -> torch.Tensor:
        if component.kind == "head":
            b, t, _ = act.shape
            head = act.view(b, t, adapter.n_heads, -1)[:, :, component.index, :]
            assert direction is not None
            return (head * direction).sum((1, 2))
        return act[..., component.index].reshape(act.shape[0], -1).sum(-1)
    return read


def _head_direction(adapter: Any, component: Component, inputs: dict[str, torch.Tensor], target: int) -> torch.Tensor:
    """Gradient of the target output w.r.t. the head's output slice on the example."""
    where = adapter.site(component)
    store: dict[str, torch.Tensor] = {}

    def keep(m: Any, args: Any) -> None:
        args[0].retain_grad()
        store["act"] = args[0]

    adapter.model.zero_grad(set_to_none=True)
    with hooked(adapter.model, [at(where, keep)]):
        adapter.output(adapter.run(inputs), target)[0].backward()
    grad = store["act"].grad
    assert grad is not None
    adapter.model.zero_grad(set_to_none=True)
    return grad[0].view(grad.shape[1], adapter.n_heads, -1)[:, component.index, :].detach()


def component_input_attribution(adapter: Any, example: Example, component: Component, target: int, n_steps: int = 16) -> np.ndarray:
    """IG of the component's contribution scalar with respect to the input, per unit."""
    from captum.attr import IntegratedGradients

    where = adapter.site(component)
    store: dict[str, torch.Tensor] = {}

    def grab(*hook_args: Any) -> None:
        store["act"] = hook_args[1][0] if where.kind == "pre" else first_tensor(hook_args[2])

    inputs = adapter.inputs(example)
    direction = _head_direction(adapter, component, inputs, target) if component.kind == "head" else None
    read = _component_scalar(adapter, component, direction)
    with torch.no_grad():
        emb, base = adapter.embed(inputs), adapter.baseline(example)

    def forward(embeds: torch.Tensor) -> torch.Tensor:
        with hooked(adapter.model, [at(where, grab)]):
            adapter.run_embedded(embeds, inputs)
        return read(store["act"])

    attr = IntegratedGradients(forward).attribute(emb, baselines=base, n_steps=n_steps, internal_batch_size=64)
    return adapter.merge_to_units(example, attr)


def _site_key(where: Any) -> tuple[int, str, int | None]:
    return (id(where.module), where.kind, where.occurrence)


def _grab_sites(adapter: Any, components: Sequence[Component], store: dict[Any, torch.Tensor]) -> list[Any]:
    """Hooks keeping (with their graph) the site tensor of every component, keyed by site."""
    hooks, seen = [], set()
    for component in components:
        where = adapter.site(component)
        key = _site_key(where)
        if key in seen:
            continue
        seen.add(key)

        def grab(*hook_args: Any, _key: Any = key, _kind: str = where.kind) -> None:
            store[_key] = hook_args[1][0] if _kind == "pre" else first_tensor(hook_args[2])

        hooks.append(at(where, grab))
    return hooks


def _head_directions(adapter: Any, heads: Sequence[Component], inputs: dict[str, torch.Tensor],
                     target: int) -> dict[Component, torch.Tensor]:
    """:func:`_head_direction` of every head, from one forward and backward pass."""
    if not heads:
        return {}
    store: dict[Any, torch.Tensor] = {}
    with hooked(adapter.model, _grab_sites(adapter, heads, store)):
        out = adapter.output(adapter.run(inputs), target)[0]
    keys = list(store)
    grads = dict(zip(keys, torch.autograd.grad(out, [store[k] for k in keys]), strict=True))
    directions = {}
    for head in heads:
        grad = grads[_site_key(adapter.site(head))]
        directions[head] = grad[0].view(grad.shape[1], adapter.n_heads, -1)[:, head.index, :].detach()
    return directions


def components_input_attribution(adapter: Any, example: Example, components: Sequence[Component], target: int,
                                 n_steps: int = 16) -> np.ndarray:
    """(components, units): :func:`component_input_attribution` of every component, sharing the
    forward passes of the integral (captum's Gauss-Legendre rule, ``n_steps`` points)."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    inputs = adapter.inputs(example)
    directions = _head_directions(adapter, [c for c in components if c.kind == "head"], inputs, target)
    readers = [(_site_key(adapter.site(c)), _component_scalar(adapter, c, directions.get(c))) for c in components]
    with torch.no_grad():
        emb, base = adapter.embed(inputs), adapter.baseline(example)
    sizes_fn, alphas_fn = approximation_parameters("gausslegendre")
    sizes, alphas = sizes_fn(n_steps), alphas_fn(n_steps)
    total = torch.zeros(len(components), *emb.shape[1:], dtype=emb.dtype, device=emb.device)
    step = min(n_steps, gradient_rows(adapter, inputs))  # a backward pass keeps every layer's activations
    for lo in range(0, n_steps, step):
        alpha = torch.tensor(alphas[lo : lo + step], dtype=emb.dtype, device=emb.device).view(-1, 1, 1)
        weight = torch.tensor(sizes[lo : lo + step], dtype=emb.dtype, device=emb.device).view(-1, 1, 1)
        scaled = (base + alpha * (emb - base)).requires_grad_()
        store: dict[Any, torch.Tensor] = {}
        with hooked(adapter.model, _grab_sites(adapter, components, store)):
            adapter.run_embedded(scaled, inputs)
        for i, (key, read) in enumerate(readers):
            (grad,) = torch.autograd.grad(read(store[key]).sum(), scaled, retain_graph=i < len(readers) - 1)
            total[i] += (grad * weight).sum(0)
    attributions = (total * (emb - base)).detach()
    return np.vstack([adapter.merge_to_units(example, attributions[i : i + 1]) for i in range(len(components))])


def bridge_map(adapter: Any, example: Example, components: Sequence[Component], target: int) -> pd.DataFrame:
    """Units × components: how much each input unit drives each component's contribution."""
    units = adapter.units(example)
    values = components_input_attribution(adapter, example, components, target) if components else np.zeros((0, len(units)))
    data = {str(c): values[i] for i, c in enumerate(components)}
    return pd.DataFrame(data, index=list(units))


def _share_on(matrix: pd.DataFrame, rows: Sequence[int]) -> float:
    weights = matrix.abs().to_numpy()
    total = weights.sum()
    return float(weights[list(rows)].sum() / total) if total > 0 else float("nan")


def bridge_score(adapter: Any, example: Example, attribution: Attribution, ranked: Sequence[Component],
                 pool: Sequence[Component], k_units: int = 3, k_components: int = 5, n_random: int = 3,
                 seed: int = 0) -> dict[str, Any]:
    """Share of the top components' input attribution on the top units, against random components."""
    target = adapter.label_index(attribution.target)
    top_units = attribution.ranking()[:k_units]
    top = list(ranked[:k_components])
    rng = np.random.default_rng(seed)
    others = [c for c in pool if c not in top]
    draws = [[others[i] for i in rng.choice(len(others), size=min(k_components, len(others)), replace=False)]
             for _ in range(n_random)]
    # one map for the top components and every control draw: they share the integral's forward passes
    whole = bridge_map(adapter, example, list(dict.fromkeys([*top, *(c for d in draws for c in d)])), target)
    matrix = whole[[str(c) for c in top]]
    control = [_share_on(whole[[str(c) for c in draw]], top_units) for draw in draws]
    flows = matrix.abs().iloc[top_units].sum(0).sort_values(ascending=False)
    return {
        "top_units": [attribution.units[i] for i in top_units],
        "top_components": [str(c) for c in top],
        "share_on_top_units": _share_on(matrix, top_units),
        "chance_share": k_units / len(attribution.units),
        "control_mean": float(np.nanmean(control)) if np.isfinite(control).any() else None,
        "control_sd": float(np.nanstd(control)) if np.isfinite(control).any() else None,
        "map": {"units": list(matrix.index), "components": list(matrix.columns), "values": matrix.to_numpy().tolist()},
        "components_by_top_unit_flow": list(flows.index),
    }
