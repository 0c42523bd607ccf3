"""Parameter masks: which entries of which weights an edit may change, at a matched budget.

A component owns slices of its block's parameters (``adapter.parameter_slices``). A
:class:`ParameterMask` is the union of those slices as one boolean tensor per parameter, so a
parameter shared by two components (a grouped-query key head, ALBERT's shared block) is counted
once. :func:`fill_budget` walks a ranking and takes whole components while they fit; the rest of
the budget is taken from the next component's entries in a fixed order (its first slice first),
so every localization touches **exactly** the same number of parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from twopath.types import Component, TwopathError


@dataclass
class ParameterMask:
    """Boolean masks by parameter name; ``components`` are the whole components covered and
    ``partial`` the one whose entries fill the rest of a budget (``None`` if none)."""

    masks: dict[str, torch.Tensor]
    components: list[Component] = field(default_factory=list)
    partial: Component | None = None
    #: True when the mask covers every parameter of the model (the non-localized control)
    everything: bool = False

    @property
    def count(self) -> int:
        """Entries the edit may change (shared entries counted once)."""
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def labels(self) -> list[str]:
        names = [str(c) for c in self.components]
        return names + ([f"{self.partial}(part)"] if self.partial is not None else [])

    def describe(self) -> dict[str, Any]:
        return {"components": self.labels(), "n_parameters": self.count, "everything": self.everything,
                "parameters": sorted(self.masks)}


def _slice_mask(params: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], piece: Any) -> torch.Tensor:
    """A view of the mask of ``piece``'s parameter covering the piece's entries."""
    if piece.name not in params:
        raise TwopathError(f"the model has no parameter {piece.name!r}")
    if piece.name not in masks:
        masks[piece.name] = torch.zeros_like(params[piece.name], dtype=torch.bool)
    return masks[piece.name].narrow(piece.dim, piece.start, piece.stop - piece.start)


def component_mask(adapter: Any, components: Iterable[Component]) -> ParameterMask:
    """The union of the components' parameter slices."""
    params = dict(adapter.model.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    comps = list(components)
    for component in comps:
        for piece in adapter.parameter_slices(component):
            _slice_mask(params, masks, piece).fill_(True)
    return ParameterMask(masks, comps)


def all_parameters(adapter: Any) -> ParameterMask:
    """Every parameter of the model (the non-localized control; its budget is not matched)."""
    masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in adapter.model.named_parameters()}
    return ParameterMask(masks, [], everything=True)


def component_size(adapter: Any, component: Component) -> int:
    return component_mask(adapter, [component]).count


def model_size(adapter: Any) -> int:
    return int(sum(p.numel() for p in adapter.model.parameters()))


def fill_budget(adapter: Any, ranked: Sequence[Component], budget: int) -> ParameterMask:
    """Whole components in rank order while they fit, then the remainder from the next one's
    entries (first slice first, row-major), so ``count == budget`` exactly."""
    if budget < 1:
        raise TwopathError(f"the parameter budget must be at least 1, got {budget}")
    params = dict(adapter.model.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    taken: list[Component] = []
    count = 0
    for component in ranked:
        pieces = adapter.parameter_slices(component)  # disjoint within one component
        views = [_slice_mask(params, masks, piece) for piece in pieces]
        new_count = count + sum(int((~view).sum()) for view in views)
        if new_count <= budget:
            for view in views:
                view.fill_(True)
            count = new_count
            taken.append(component)
            if count == budget:
                return ParameterMask(masks, taken)
            continue
        _fill_partial(params, masks, pieces, budget - count)
        return ParameterMask(masks, taken, partial=component)
    raise TwopathError(f"the ranking's {len(ranked)} components hold {count} parameters, fewer than the budget {budget}")


def _fill_partial(params: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], pieces: Sequence[Any],
                  remaining: int) -> None:
    """Set ``remaining`` more entries of ``pieces`` (not already set) in the masks, in order."""
    for piece in pieces:
        view = _slice_mask(params, masks, piece)
        free = (~view).nonzero()[:remaining]
        if len(free):
            view[tuple(free.T)] = True
        remaining -= len(free)
        if remaining == 0:
            return


def check_budget(adapter: Any, budget: int) -> int:
    total = model_size(adapter)
    if not 1 <= budget <= total:
        raise TwopathError(f"parameter budget {budget} is outside 1..{total} (the model's parameter count)")
    return int(budget)
