"""Interventions on model internals: read and overwrite activations at named sites.

A *site* is where a component's activation lives:

* ``head`` ``LlHh`` — slice ``h`` of the input of layer ``l``'s attention output projection
  (the concatenated head outputs), edited with a forward *pre*-hook. This works for BERT,
  RoBERTa and DistilBERT alike (DistilBERT has no ``head_mask``);
* ``neuron`` ``LlNi`` — unit ``i`` of layer ``l``'s MLP activation (a transformer's
  intermediate activation, or the ``l``-th ReLU of a tabular MLP);
* ``resid`` ``Ll.resid@p`` — position ``p`` of the residual stream after layer ``l``;
* ``layer`` ``Ll`` — the whole output of layer ``l``;
* ``attn`` ``Ll.attn`` — all heads of layer ``l`` at once (the whole attention block output);
* ``mlp`` ``Ll.mlp`` — all MLP neurons of layer ``l`` at once.

:func:`intervene` applies a list of edits, each to one *row* of a batch, so a sweep over many
components runs as a few batched forward passes. :func:`capture` records activations. Both are
context managers built on :func:`twopath.runtime.hooks.hooked`: the hooks always come off.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from twopath.runtime.hooks import Hook, at, first_tensor, hooked, replace_first
from twopath.runtime.trace import caches, repeat_inputs
from twopath.types import Component, TwopathError


@dataclass(frozen=True)
class Edit:
    """Set ``component``'s activation in batch row ``row`` to ``value`` (``None`` = zero)."""

    row: int
    component: Component
    value: torch.Tensor | None = None


def _slot(adapter: Any, component: Component, act: torch.Tensor, row: int) -> Any:
    """An indexable view of ``act`` (batch-first) holding ``component`` in ``row``."""
    kind = component.kind
    if kind == "head":
        if component.index is None or component.index >= adapter.n_heads:
            raise TwopathError(f"{component}: the model has {adapter.n_heads} heads per layer")
        b, t, _ = act.shape
        return act.view(b, t, adapter.n_heads, -1)[row, :, component.index, :]
    if kind == "neuron":
        if component.index is None or component.index >= act.shape[-1]:
            raise TwopathError(f"{component}: layer {component.layer} has {act.shape[-1]} neurons")
        return act[row, ..., component.index]
    if kind == "resid":
        if component.position is None or component.position >= act.shape[1]:
            raise TwopathError(f"{component}: the input has {act.shape[1]} positions")
        return act[row, component.position]
    return act[row]  # layer, attn (all heads), mlp (all neurons): the whole site


def read(adapter: Any, component: Component, act: torch.Tensor, row: int = 0) -> torch.Tensor:
    """The activation of ``component`` in ``row`` of a captured site tensor."""
    return _slot(adapter, component, act, row).detach().clone()


def _editor(adapter: Any, edits: Sequence[Edit], kind: str) -> Any:
    def apply(act: torch.Tensor) -> torch.Tensor:
        act = act.clone()
        for edit in edits:
            slot = _slot(adapter, edit.component, act, edit.row)
            if edit.value is None:
                slot.zero_()
            else:
                slot.copy_(edit.value.to(act.dtype).expand_as(slot))
        return act

    if kind == "pre":
        return lambda module, args: (apply(args[0]), *args[1:])
    return lambda module, args, output: replace_first(output, apply(first_tensor(output)))


@contextmanager
def intervene(adapter: Any, edits: Sequence[Edit]) -> Iterator[None]:
    """Apply ``edits`` during every forward pass inside the block."""
    groups: dict[Any, list[Edit]] = defaultdict(list)
    sites: dict[Any, Any] = {}
    for edit in edits:
        where = adapter.site(edit.component)
        key = (id(where.module), where.kind, where.occurrence)
        groups[key].append(edit)
        sites[key] = where
    hooks = [at(sites[key], _editor(adapter, group, key[1])) for key, group in groups.items()]
    with hooked(adapter.model, hooks):
        yield


@contextmanager
def capture(adapter: Any, components: Sequence[Component],
            reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[dict[tuple[int, str], torch.Tensor]]:
    """Record the site tensors of ``components`` (keyed by (layer, kind)) during the block;
    with ``reduce``, record ``reduce(tensor)`` instead (the full tensor is not kept)."""
    store: dict[tuple[int, str], torch.Tensor] = {}
    hooks = []
    seen = set()
    for component in components:
        key = site_key(component)
        if key in seen:
            continue
        seen.add(key)
        where = adapter.site(component)

        def grab(*hook_args: Any, _key: tuple[int, str] = key, _kind: str = where.kind) -> None:
            tensor = hook_args[1][0] if _kind == "pre" else first_tensor(hook_args[2])
            store[_key] = tensor.detach().clone() if reduce is None else reduce(tensor.detach())

        hooks.append(at(where, grab))
    with hooked(adapter.model, hooks):
        yield store


def site_key(component: Component) -> tuple[int, str]:
    """(layer, site) where a component's activation lives: head, neuron or resid."""
    kind = {"head": "head", "attn": "head", "neuron": "neuron", "mlp": "neuron"}.get(component.kind, "resid")
    return (component.layer, kind)


def mean_activations(adapter: Any, components: Sequence[Component], reference: dict[str, torch.Tensor]) -> dict[tuple[int, str], torch.Tensor]:
    """Mean site activation over a reference batch (over examples and, for text, real tokens).

    Returned per site as a vector over the site's last dimension, ready to be sliced per head or
    neuron and broadcast over positions. Each site is reduced as the pass reaches it, so the
    pass keeps one vector per site, not its activations.
    """
    mask = adapter.position_mask(reference)

    def mean(act: torch.Tensor) -> torch.Tensor:
        if act.dim() == 3 and mask is not None:
            weights = mask[..., None].to(act.dtype)
            return (act * weights).sum((0, 1)) / weights.sum((0, 1))
        return act.reshape(-1, act.shape[-1]).mean(0)

    with torch.no_grad(), capture(adapter, components, reduce=mean) as store:
        adapter.run(reference)
    return dict(store)


def mean_value(adapter: Any, component: Component, means: dict[tuple[int, str], torch.Tensor]) -> torch.Tensor:
    """The mean activation of one component, shaped to broadcast into its slot."""
    vector = means[site_key(component)]
    if component.kind == "head":
        return vector.view(adapter.n_heads, -1)[component.index]
    if component.kind == "neuron":
        return vector[component.index]
    return vector


def example_activations(adapter: Any, components: Sequence[Component], inputs: dict[str, torch.Tensor]) -> list[dict[tuple[int, str], torch.Tensor]]:
    """Per example of a batch, each site's activation averaged over real tokens (for resampling)."""
    with torch.no_grad(), capture(adapter, components) as store:
        adapter.run(inputs)
    mask = adapter.position_mask(inputs)
    out: list[dict[tuple[int, str], torch.Tensor]] = []
    n = next(iter(inputs.values())).shape[0]
    for i in range(n):
        per: dict[tuple[int, str], torch.Tensor] = {}
        for key, act in store.items():
            if act.dim() == 3 and mask is not None:
                w = mask[i][:, None].to(act.dtype)
                per[key] = (act[i] * w).sum(0) / w.sum()
            else:
                per[key] = act[i]
        out.append(per)
    return out


def background_means(adapter: Any, components: Sequence[Component]) -> dict[tuple[int, str], torch.Tensor]:
    """Mean activations over ``adapter.background`` for every site of ``components``, cached.

    The cache (:func:`~twopath.runtime.trace.caches`) is keyed by the background's content, so a
    sweep over a dataset computes the reference means once, and changing the background
    recomputes them.
    """
    reference = adapter.reference_inputs()
    digest = hashlib.sha1()
    for name in sorted(reference):
        digest.update(name.encode())
        digest.update(reference[name].detach().cpu().numpy().tobytes())
    fingerprint = digest.hexdigest()
    cache = caches(adapter).means
    keys = sorted({site_key(c) for c in components})
    if any((fingerprint, k) not in cache for k in keys):
        # one pass for every site of the model: the other methods' means come free
        probes = [_probe(key) for key in keys] + _every_site(adapter)
        for key, value in mean_activations(adapter, probes, reference).items():
            cache[(fingerprint, key)] = value
    return {k: cache[(fingerprint, k)] for k in keys}


def _probe(key: tuple[int, str]) -> Component:
    layer, kind = key
    if kind == "head":
        return Component("head", layer, 0)
    return Component("neuron", layer, 0) if kind == "neuron" else Component("layer", layer)


def _every_site(adapter: Any) -> list[Component]:
    """A probe for every (layer, site) ``adapter`` places (a tabular MLP has no heads)."""
    probes = []
    for layer in range(int(getattr(adapter, "n_layers", 0) or 0)):
        for kind in ("head", "neuron", "resid"):
            probe = _probe((layer, kind))
            try:
                adapter.site(probe)
            except TwopathError:
                continue
            probes.append(probe)
    return probes


def reference_inputs(adapter: Any) -> dict[str, torch.Tensor]:
    """The adapter's background sample as one model-input batch (for mean ablation)."""
    result: dict[str, torch.Tensor] = adapter.reference_inputs()
    return result


def ablate(adapter: Any, components: Sequence[Component], mode: str = "mean") -> list[Edit]:
    """Edits (for batch row 0) that zero- or mean-ablate ``components`` together."""
    if mode not in ("zero", "mean"):
        raise TwopathError(f"unknown ablation mode {mode!r}; expected zero or mean")
    if mode == "zero":
        return [Edit(0, c, None) for c in components]
    means = background_means(adapter, components)
    return [Edit(0, c, mean_value(adapter, c, means)) for c in components]


class MaskedAblation:
    """Ablate many components per batch row at once: row ``r`` keeps the candidates where
    ``keep[r]`` is True and replaces the others by their reference value — the mean activation
    over ``adapter.background``, or the activation on a corrupted input (per position).

    One hook per layer blends with a boolean mask, so scoring hundreds of component sets is one
    batched forward pass. Candidates are heads or neurons.
    """

    def __init__(self, adapter: Any, candidates: Sequence[Component], corrupted: dict[str, torch.Tensor] | None = None):
        self.adapter = adapter
        self.candidates = list(candidates)
        self.by_layer: dict[int, list[int]] = defaultdict(list)
        for i, c in enumerate(self.candidates):
            self.by_layer[c.layer].append(i)
        if corrupted is None:
            self.means = background_means(adapter, self.candidates)
        else:
            with torch.no_grad(), capture(adapter, self.candidates) as store:
                adapter.run(corrupted)
            self.means = {key: act[0] for key, act in store.items()}

    def run(self, inputs: dict[str, torch.Tensor], keep: np.ndarray) -> torch.Tensor:
        """Logits, one row per row of ``keep``."""
        hooks = self.hooks(keep)
        with torch.no_grad(), hooked(self.adapter.model, hooks):
            logits = self.adapter.run(repeat_inputs(inputs, len(keep)))
        return logits

    def hooks(self, keep: np.ndarray, start: int = 0) -> list[Hook]:
        """The blending hooks of the rows of ``keep`` on the layers from ``start`` on (what
        :meth:`run` registers), for callers that run the same rows again and again."""
        keep_t = torch.as_tensor(np.asarray(keep, dtype=bool), device=self.adapter.device)
        return [self._hook(layer, idx, keep_t) for layer, idx in self.by_layer.items() if layer >= start]

    def run_from(self, start: int, state: torch.Tensor, layer_calls: Any, inputs: dict[str, torch.Tensor],
                 keep: np.ndarray) -> torch.Tensor:
        """Logits of the rows of ``keep`` computed from block ``start`` on ``state`` (the input
        of that block, one row per row of ``keep``): :meth:`run` without the blocks before
        ``start``, for rows that agree with the run ``state`` came from before that block."""
        hooks = self.hooks(keep, start)
        with torch.no_grad(), hooked(self.adapter.model, hooks):
            logits: torch.Tensor = self.adapter.resume(start, state, layer_calls, inputs)
        return logits

    def _hook(self, layer: int, idx: list[int], keep: torch.Tensor) -> Hook:
        first = self.candidates[idx[0]]
        where = self.adapter.site(first)
        units = torch.as_tensor([self.candidates[i].index for i in idx], device=keep.device)
        drop_rows = ~keep[:, idx]  # (B, n_units_in_layer): True where the unit is ablated
        head = first.kind == "head"
        key = (layer, "head" if head else "neuron")
        whole = not head and [self.candidates[i].index for i in idx] == list(range(self.adapter.mlp_width(layer)))

        def blend(act: torch.Tensor) -> torch.Tensor:
            mean = self.means[key]
            if not head and whole:  # every unit of the layer, in order: one blend, no gathers
                return torch.where(drop_rows if act.dim() == 2 else drop_rows[:, None, :], mean, act)
            act = act.clone()
            if head:
                b, t, _ = act.shape
                view = act.view(b, t, self.adapter.n_heads, -1)
                mean_h = mean.view(*mean.shape[:-1], self.adapter.n_heads, -1)[..., units, :]  # ([T,] n, dh)
                drop = drop_rows[:, None, :, None]  # (B, 1, n, 1)
                view[:, :, units, :] = torch.where(drop, mean_h, view[:, :, units, :])
            else:
                drop = drop_rows
                if act.dim() == 3:
                    drop = drop[:, None, :]
                act[..., units] = torch.where(drop, mean[units], act[..., units])
            return act

        if where.kind == "pre":
            return at(where, lambda m, args: (blend(args[0]), *args[1:]))
        return at(where, lambda m, args, out: replace_first(out, blend(first_tensor(out))))
