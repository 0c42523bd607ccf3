"""One clean run per example: the :class:`Trace`.

Every method of both paths needs the same clean forward pass of the example: its logits (the
prediction, the clean output of an ablation), the activations at the sites it intervenes on
(patching reads them from the corrupted run, attribution patching from both), and the state
entering every block (so a sweep over layer-``l`` components can skip the blocks before ``l``).
The Trace computes each of these once, on the model's device, and keeps them for the run —
TransformerLens' ``run_with_cache``, but lazy: a site is recorded the first time it is asked for.

:meth:`Trace.run_from` starts ``n`` copies of the input at block ``l`` from the clean state
entering it, by calling the blocks ``l..`` directly with the arguments recorded on the clean run
and then the model's head (:meth:`~twopath.runtime.adapter.ModelAdapter.resume`). Intervention
hooks registered on the model fire inside those blocks as in a full pass, so the results are the
same; no module's ``forward`` is ever replaced. Models that cannot resume (ALBERT's shared
block) run the full pass.

Traces, the coalition evaluators and the background means live in a per-adapter cache
(:func:`caches`), keyed by the adapter object itself and dropped with it; :func:`forget` clears
it when a model's weights change.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from twopath.runtime.adapter import Inputs, ModelAdapter
from twopath.runtime.hooks import Hook, at, first_tensor, hooked, intervened
from twopath.types import Example

_MAX_TRACES = 16


@dataclass
class AdapterCache:
    """What one adapter has computed and may reuse: traces, evaluators, background means, component lists."""

    traces: OrderedDict[Any, Trace] = field(default_factory=OrderedDict)
    evaluators: dict[Any, Any] = field(default_factory=dict)
    means: dict[Any, torch.Tensor] = field(default_factory=dict)
    #: component lists by (kind, number of positions)
    components: dict[Any, list[Any]] = field(default_factory=dict)


_CACHES: weakref.WeakKeyDictionary[Any, AdapterCache] = weakref.WeakKeyDictionary()


def caches(adapter: Any) -> AdapterCache:
    """The cache of ``adapter`` (created on first use)."""
    cache = _CACHES.get(adapter)
    if cache is None:
        cache = _CACHES[adapter] = AdapterCache()
    return cache


def forget(adapter: Any) -> None:
    """Drop everything computed for ``adapter`` (after its weights or background change)."""
    _CACHES.pop(adapter, None)


def example_key(example: Example) -> Any:
    """(id, content): a changed input under the same id is another example."""
    raw = example.raw
    if isinstance(raw, str):
        return (example.id, raw)
    return (example.id, tuple(sorted((k, str(v)) for k, v in raw.items())))


def repeat_inputs(inputs: Inputs, n: int) -> Inputs:
    return {k: v.expand(n, *v.shape[1:]).contiguous() for k, v in inputs.items()}


class Trace:
    """The clean run of one input (batch of one) through one adapter, computed lazily."""

    def __init__(self, adapter: ModelAdapter, inputs: Inputs):
        self.adapter = adapter
        self.inputs = inputs
        self._logits: torch.Tensor | None = None
        self._states: list[torch.Tensor] | None = None
        self._calls: list[tuple[tuple[Any, ...], dict[str, Any]]] | None = None
        self._sites: dict[str, torch.Tensor] = {}

    @classmethod
    def of(cls, adapter: ModelAdapter, example: Example) -> Trace:
        """The run-wide trace of ``example`` (one per adapter and example)."""
        traces = caches(adapter).traces
        key = example_key(example)
        trace = traces.get(key)
        if trace is None:
            # a weak reference: the cache must not keep its own key (the adapter) alive
            trace = cls(weakref.proxy(adapter), adapter.inputs(example))
            traces[key] = trace
            while len(traces) > _MAX_TRACES:
                traces.popitem(last=False)
        return trace

    @property
    def logits(self) -> torch.Tensor:
        """Clean logits (1, n_labels), float32."""
        if self._logits is None:
            self._check_clean()
            with torch.no_grad():
                self._logits = self.adapter.run(self.inputs).float()
        return self._logits

    def _check_clean(self) -> None:
        if intervened(self.adapter.model):
            raise RuntimeError("the clean run of a Trace was requested inside an intervention; "
                               "compute it (trace.logits, trace.prepare_resume()) before registering hooks")

    def activations(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Clean activations at the named sites (``adapter.sites()``), one pass for the missing."""
        missing = [n for n in dict.fromkeys(names) if n not in self._sites]
        if missing:
            self._check_clean()
            logits: list[torch.Tensor] = []
            self._sites.update(record(self.adapter, self.inputs, missing, logits))
            if self._logits is None:  # the recording pass is a clean run: keep its logits too
                self._logits = logits[0].float()
        return {n: self._sites[n] for n in names}

    def prepare_resume(self) -> None:
        """Record the state entering every block now (one clean pass), so that a later
        :meth:`run_from` inside intervention hooks never records an edited run as clean."""
        if self._states is None and self.adapter.can_resume():
            self._record_states()

    def _record_states(self) -> None:
        """One clean pass recording the input (and call arguments) of every block."""
        self._check_clean()
        states, calls, logits = block_inputs(self.adapter, lambda: self.adapter.run(self.inputs))
        self._states = states
        self._calls = calls
        if self._logits is None:
            self._logits = logits.float()

    def run_from(self, start: int, n: int) -> torch.Tensor:
        """Logits of ``n`` copies of the input computed from block ``start`` on (hooks apply)."""
        adapter = self.adapter
        if start <= 0 or start >= adapter.n_layers or not adapter.can_resume():
            return adapter.run(repeat_inputs(self.inputs, n))
        if self._states is None:
            raise RuntimeError("Trace.run_from: call prepare_resume() before registering intervention hooks")
        assert self._calls is not None
        state = self._states[start]
        return adapter.resume(start, state.expand(n, *state.shape[1:]).contiguous(), self._calls, self.inputs)


def block_inputs(adapter: ModelAdapter, run: Callable[[], torch.Tensor]
                 ) -> tuple[list[torch.Tensor], list[tuple[tuple[Any, ...], dict[str, Any]]], torch.Tensor]:
    """What enters every block during ``run()`` (a pass of batch one, under whatever hooks the
    caller has registered): the hidden state and the other call arguments of each block, and the
    pass's logits. The states are what :meth:`ModelAdapter.resume` starts from."""
    blocks = adapter.layer_modules
    states: list[torch.Tensor | None] = [None] * len(blocks)
    calls: list[Any] = [None] * len(blocks)
    handles = []

    def grab(i: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            states[i] = hidden.detach().clone()
            calls[i] = (tuple(args), {k: v for k, v in kwargs.items() if k != "hidden_states"})
        return hook

    try:
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_pre_hook(grab(i), with_kwargs=True))
        with torch.no_grad():
            logits = run()
    finally:
        for handle in handles:
            handle.remove()
    if any(s is None for s in states):
        raise RuntimeError("trace: not every block ran on the input")
    return [s for s in states if s is not None], calls, logits


def record(adapter: ModelAdapter, inputs: Inputs, names: Sequence[str],
           logits: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Activations at the named sites on one forward pass of ``inputs`` (detached copies); the
    pass's logits are appended to ``logits`` when a list is given."""
    sites = adapter.sites()
    store: dict[str, torch.Tensor] = {}
    hooks: list[Hook] = []
    for name in names:
        site = sites[name]

        def grab(*hook_args: Any, _name: str = name, _kind: str = site.kind) -> None:
            tensor = hook_args[1][0] if _kind == "pre" else first_tensor(hook_args[2])
            store[_name] = tensor.detach().clone()

        hooks.append(at(site, grab))
    with torch.no_grad(), hooked(adapter.model, hooks):
        out = adapter.run(inputs)
    if logits is not None:
        logits.append(out.detach())
    return store
