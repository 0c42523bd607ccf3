"""The internal-path contract: one class per intervention, settings in ``__init__``, one verb.

``method.localize(adapter, example, target=label, corrupted=None) -> Localization`` returns one
effect per component. Interventions run as batched forward passes: each batch row carries one
intervention, so a sweep over every head or neuron costs a handful of passes, not one per
component.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch

from twopath.registry import Registry
from twopath.runtime.adapter import OUTPUT_SPACES, OutputSpace
from twopath.runtime.hooks import Hook, at, first_tensor, hooked, replace_first
from twopath.runtime.interventions import Edit, intervene, read
from twopath.runtime.threads import sized_for
from twopath.runtime.trace import Trace, repeat_inputs
from twopath.types import Example, Localization, TwopathError

MECHANISTIC_METHODS = Registry("mechanistic")


class InterventionMethod:
    """Base class: subclasses implement :meth:`_effects` and are registered by name."""

    name: ClassVar[str] = "base"
    what_it_tells_you: ClassVar[str] = ""
    #: whether the method needs a contrast (corrupted) input
    needs_contrast: ClassVar[bool] = False
    #: model capabilities the method needs (``adapter.capabilities()``)
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, output: OutputSpace = "logit_diff", batch_size: int = 128):
        self.output = output
        self.batch_size = batch_size

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def localize(self, adapter: Any, example: Example, *, target: str, corrupted: Example | None = None) -> Localization:
        if self.output not in OUTPUT_SPACES:
            raise TwopathError(f"unknown output space {self.output!r}; expected one of {list(OUTPUT_SPACES)}")
        if adapter.modality not in MECHANISTIC_METHODS.get(self.name).modalities:
            raise TwopathError(f"{self.name} does not support {adapter.modality} models")
        missing = sorted(self.requires - adapter.capabilities())
        if missing:
            raise TwopathError(f"{self.name} needs a model with {', '.join(missing).replace('_', ' ')}; "
                               f"{adapter.architecture} ({getattr(adapter.family, 'name', adapter.family)}) has none")
        target_idx = adapter.target(target).index
        start = time.perf_counter()
        with sized_for(adapter):  # a small tabular model: one thread (twopath.runtime.threads)
            result = self._effects(adapter, example, target_idx, corrupted)
        meta = {"output": self.output, "settings": self.settings(), "seconds": round(time.perf_counter() - start, 4), **result.pop("meta", {})}
        return Localization(example.id, self.name, adapter.labels[target_idx], meta=meta, **result)

    def _effects(self, adapter: Any, example: Example, target: int, corrupted: Example | None) -> dict[str, Any]:
        raise NotImplementedError


def run_output(adapter: Any, inputs: dict[str, torch.Tensor], target: int, space: OutputSpace) -> tuple[float, float]:
    """(explained output, target probability) of one unmodified forward pass."""
    with torch.no_grad():
        logits = adapter.run(inputs)
    return logits_output(adapter, logits, target, space)


def logits_output(adapter: Any, logits: torch.Tensor, target: int, space: OutputSpace) -> tuple[float, float]:
    """(explained output, target probability) of the first row of ``logits``."""
    return float(adapter.output(logits.float(), target, space)[0]), float(torch.softmax(logits.float(), -1)[0, target])


def sweep(adapter: Any, inputs: dict[str, torch.Tensor], rows: Sequence[Sequence[Edit]], target: int,
          space: OutputSpace, batch_size: int, prefix_cache: bool | Trace = False,
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run one forward pass per row of edits, batched.

    Returns (explained outputs, target probabilities, predicted label indices), one per row.

    ``rows[i]`` lists the edits of row ``i``; their ``row`` fields are ignored and reassigned.

    With ``prefix_cache`` (``True``, or the :class:`~twopath.runtime.trace.Trace` of ``inputs``),
    rows are grouped by the first block their edits touch, and each group starts there from the
    clean run's state (:meth:`Trace.run_from`) instead of re-running the blocks before it; the
    results are the same. Models that cannot resume run the full pass.
    """
    trace: Trace | None = None
    if isinstance(prefix_cache, Trace):
        trace = prefix_cache
    elif prefix_cache and len(rows) > 0:
        trace = Trace(adapter, inputs)
    groups: list[tuple[int, list[int]]]
    if trace is None:
        groups = [(0, list(range(len(rows))))]
    else:
        by_start: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            by_start[min((e.component.layer for e in row), default=adapter.n_layers)].append(i)
        groups = [(start, by_start[start]) for start in sorted(by_start)]
        trace.prepare_resume()  # the clean pass runs before any edit hook is registered
    order: list[int] = []
    outputs, probs, decisions = [], [], []
    step = adapter.chunk(batch_size, inputs)
    for start, indices in groups:
        for lo in range(0, len(indices), step):
            chunk = indices[lo : lo + step]
            pairs = [(r, e) for r, i in enumerate(chunk) for e in rows[i]]
            with torch.no_grad(), _row_edits(adapter, pairs):
                if trace is None:
                    logits = adapter.run(repeat_inputs(inputs, len(chunk)))
                else:
                    logits = trace.run_from(start, len(chunk))
            order += chunk
            outputs.append(adapter.output(logits, target, space).cpu().numpy())
            probs.append(torch.softmax(logits, -1)[:, target].cpu().numpy())
            decisions.append(logits.argmax(-1).cpu().numpy())
    if not order:
        return np.empty(0), np.empty(0), np.empty(0, dtype=int)
    return _reorder(outputs, order), _reorder(probs, order), _reorder(decisions, order)


def _reorder(parts: list[np.ndarray], order: list[int]) -> np.ndarray:
    """Concatenated chunk results put back in row order (``order`` lists each chunk's rows)."""
    values = np.concatenate(parts)
    out = np.empty_like(values)
    out[np.asarray(order)] = values
    return out


# --- vectorized edits ------------------------------------------------------------------------

_SLOT_INDEX = {"head": "index", "neuron": "index", "resid": "position"}


@contextmanager
def batched_edits(adapter: Any, edits: Sequence[Edit]) -> Iterator[None]:
    """:func:`~twopath.runtime.interventions.intervene` with one vectorized write per site.

    ``intervene`` writes each edit into its slot in Python, which costs more than the forward
    pass when a sweep carries thousands of neuron edits. Here the edits of one site are stacked
    once and written with a single indexed assignment; the result is the same. Sites whose
    edits cannot be stacked (mixed kinds, the same slot edited twice in a row, values of
    different shapes) fall back to ``intervene``.
    """
    with _row_edits(adapter, [(e.row, e) for e in edits]):
        yield


@contextmanager
def _row_edits(adapter: Any, pairs: Sequence[tuple[int, Edit]]) -> Iterator[None]:
    """Apply each ``(row, edit)`` to batch row ``row`` (the edit's own row field is ignored)."""
    hooks = _vector_hooks(adapter, pairs)
    if hooks is None:
        with intervene(adapter, [Edit(r, e.component, e.value) for r, e in pairs]):
            yield
        return
    with hooked(adapter.model, hooks):
        yield


def _vector_hooks(adapter: Any, pairs: Sequence[tuple[int, Edit]]) -> list[Hook] | None:
    groups: dict[Any, list[tuple[int, Edit]]] = defaultdict(list)
    modules: dict[Any, Any] = {}
    kinds: dict[Any, str] = {}
    sites: dict[tuple[str, int], Any] = {}
    for pair in pairs:
        component = pair[1].component
        where = sites.get((component.kind, component.layer))
        if where is None:
            where = sites[(component.kind, component.layer)] = adapter.site(component)
        key = (id(where.module), where.kind, where.occurrence)
        if kinds.setdefault(key, component.kind) != component.kind:
            return None  # e.g. a head and its whole attention block at one site: order matters
        groups[key].append(pair)
        modules[key] = where
    hooks = []
    for key, group in groups.items():
        kind = kinds[key]
        attr = _SLOT_INDEX.get(kind)
        slots = [(r, getattr(e.component, attr) if attr else 0) for r, e in group]
        if len(set(slots)) != len(slots):
            return None  # one slot edited twice in a row: the later edit wins, in order
        given = [e.value for _, e in group if e.value is not None]
        try:
            if not given:
                values = torch.zeros(len(group))
            elif len(given) == len(group):
                values = torch.stack(given)
            else:
                zero = torch.zeros_like(given[0])
                values = torch.stack([zero if e.value is None else e.value for _, e in group])
        except RuntimeError:  # values of different shapes
            return None
        rows = torch.as_tensor([r for r, _ in slots], device=adapter.device)
        index = torch.as_tensor([i for _, i in slots], device=adapter.device)
        largest = max(i for _, i in slots)
        hooks.append(_vector_hook(adapter, modules[key], key[1], kind, group, rows, index, largest, values))
    return hooks


def _vector_hook(adapter: Any, where: Any, hook_kind: str, kind: str, group: list[tuple[int, Edit]],
                 rows: torch.Tensor, index: torch.Tensor, largest: int, values: torch.Tensor) -> Hook:
    k = len(group)
    cast: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def apply(act: torch.Tensor) -> torch.Tensor:
        act = act.clone()
        if kind == "head":
            if act.dim() != 3 or largest >= adapter.n_heads:
                return _checked(act)
            view = act.view(act.shape[0], act.shape[1], adapter.n_heads, -1)
            view[rows, :, index, :] = _broadcast(2, act)
        elif kind == "neuron":
            if largest >= act.shape[-1]:
                return _checked(act)
            if act.dim() == 2:
                act.index_put_((rows, index), _broadcast(0, act))
            else:
                act[(rows, Ellipsis, index)] = _broadcast(act.dim() - 2, act)
        elif kind == "resid":
            if act.dim() < 2 or largest >= act.shape[1]:
                return _checked(act)
            act.index_put_((rows, index), _broadcast(act.dim() - 2, act))
        else:  # layer, attn, mlp: the whole site
            act[rows] = _broadcast(act.dim() - 1, act)
        return act

    def _checked(act: torch.Tensor) -> torch.Tensor:
        for row, edit in group:  # raises the per-component error of the unvectorized path
            read(adapter, edit.component, act, row)
        raise AssertionError("unreachable: an edit out of range was not reported")  # pragma: no cover

    def _broadcast(slot_dims: int, act: torch.Tensor) -> torch.Tensor:
        # right-aligned against the slot, as ``expand_as`` does in the unvectorized path
        key = (act.device, act.dtype)
        if key not in cast:
            v = values.to(act.device, act.dtype)
            cast[key] = v.reshape(k, *([1] * max(slot_dims - (v.dim() - 1), 0)), *v.shape[1:])
        return cast[key]

    if hook_kind == "pre":
        return at(where, lambda m, args: (apply(args[0]), *args[1:]))
    return at(where, lambda m, args, out: replace_first(out, apply(first_tensor(out))))
