"""Prefix caching: start a forward pass at layer ``l`` from the clean run's cached state.

An intervention at layer ``l`` changes nothing in layers ``< l``: their outputs are those of the
clean run. A sweep over layer-``l`` components can therefore skip the embeddings and layers
``0..l-1`` and start from the residual stream that entered layer ``l`` on the clean run.

:class:`PrefixCache` records that state once, at every layer boundary, with one forward pass
(:func:`capture_layer_inputs`), and :meth:`PrefixCache.run` runs ``n`` copies of the input from
any layer with whatever intervention hooks are registered:

* **transformer encoders** (BERT/MiniLM, RoBERTa, DistilBERT): inside :func:`skip_layers` the
  embeddings module returns the cached state (no lookup), layers ``< l - 1`` pass their input
  through without computing, and layer ``l - 1`` returns the cached state — in the type the
  layer normally returns (a tensor in transformers 5, a 1-tuple in older versions). Forward
  hooks on skipped layers still fire, so a residual-stream edit on the output of layer ``l - 1``
  applies to the cached state. Everything is restored in a ``finally``;
* **inside the first layer**, the submodules that finish before the first edited site starts
  (for a head: the query/key/value projections or the whole self-attention; for an MLP neuron:
  the attention block and the MLP's input projection, and the activation itself) are
  *replayed*: their ``forward`` returns the clean run's output, recorded once per submodule.
  Only submodules called exactly once per pass are replayed;
* **tabular MLPs** (``nn.Sequential``): only the modules from the ``l``-th ReLU on are run, fed
  with that ReLU's cached input.

Where a model has neither shape, :meth:`PrefixCache.capture` returns ``None`` and callers run
the full forward pass. :func:`pays_off` says whether the cache is worth it: for a transformer
yes; for a small MLP, whose layers cost less than a forward call, one full pass is faster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from twopath.models.hooks import first_tensor
from twopath.models.interventions import repeat_inputs, site
from twopath.types import Component

_AFTER_LAYER = ("resid", "layer")  # kinds edited on a layer's output: layer l itself can be skipped


@dataclass
class _Call:
    """One submodule call inside a layer on the clean run."""

    enter: int
    exit: int = -1
    calls: int = 0
    output: Any = None


@dataclass
class PrefixCache:
    """The clean run's state entering every layer (and leaving the last) for one input."""

    adapter: Any
    inputs: dict[str, torch.Tensor]
    states: list[torch.Tensor]  # states[l]: input of layer l (batch 1); states[n]: output of the last layer
    logits: torch.Tensor  # clean logits (batch 1)
    tuple_out: list[bool]  # per layer: does the layer return a tuple?
    calls: list[dict[int, _Call]] = field(default_factory=list)  # per layer, by id(submodule)
    parents: dict[int, nn.Module] = field(default_factory=dict)  # id(submodule) -> parent module

    @classmethod
    def capture(cls, adapter: Any, inputs: dict[str, torch.Tensor], replay: bool = True) -> PrefixCache | None:
        """One clean forward pass recording every layer boundary; ``None`` if unsupported.

        With ``replay`` (text models) it also records each layer's submodule calls, so a pass can
        start inside a layer (:meth:`key`).
        """
        if not supports(adapter):
            return None
        record = replay and adapter.modality == "text"
        states, logits, tuple_out, calls = _capture(adapter, inputs, record)
        parents = {}
        if record:
            for layer in adapter.layer_modules:
                for module in layer.modules():
                    for child in module.children():
                        parents[id(child)] = module
        return cls(adapter, inputs, states, logits, tuple_out, calls, parents)

    @property
    def n_layers(self) -> int:
        return len(self.states) - 1

    def start(self, components: Sequence[Component]) -> int:
        """The first layer a forward pass editing ``components`` has to compute."""
        return self.key(components)[0]

    def key(self, components: Sequence[Component]) -> tuple[int, int]:
        """(first layer to compute, where inside it the first edit happens).

        The second number is the clean-run order in which the earliest edited site of that layer
        is entered (``-1``: the layer's input is edited, nothing in it can be replayed).
        """
        text = self.adapter.modality == "text"
        keys = [(start_layer(c, text), self._rank(c, text)) for c in components]
        return min(keys, default=(self.n_layers, -1))

    def run(self, key: int | tuple[int, int], n: int) -> torch.Tensor:
        """Logits of ``n`` copies of the input, computed from ``key`` (a layer, or :meth:`key`) on.

        Hooks registered on the model (interventions) apply as in a full pass on every layer
        after the start, on the sites of the start layer from the key's site on, and on the
        output of the layer before.
        """
        start, rank = (key, -1) if isinstance(key, int) else key
        if not 0 <= start <= self.n_layers:
            raise ValueError(f"start layer {start} out of range 0..{self.n_layers}")
        if self.adapter.modality == "tabular":
            return _run_sequential(self.adapter, self.states[start], start, n)
        replay = [(module, _batched(call.output, n)) for module, call in self._replayed(start, rank)]
        if start == 0 and not replay:
            return self.adapter.run(repeat_inputs(self.inputs, n))
        state = self.states[start].expand(n, *self.states[start].shape[1:]).contiguous()
        with skip_layers(self.adapter, state, start, self.tuple_out, replay):
            return self.adapter.run(repeat_inputs(self.inputs, n))

    def _rank(self, component: Component, text: bool) -> int:
        if not text or component.kind in _AFTER_LAYER or component.layer >= len(self.calls):
            return -1
        module, _ = site(self.adapter, component)
        call = self.calls[component.layer].get(id(module))
        return call.enter if call is not None and call.calls == 1 else -1

    def _replayed(self, layer: int, rank: int) -> list[tuple[nn.Module, _Call]]:
        """Submodules of ``layer`` that finish before the site entered at ``rank`` starts
        (outermost only), and the site itself if its edit reads its output."""
        if rank < 0 or layer >= len(self.calls):
            return []
        calls = self.calls[layer]
        modules = {id(m): m for m in self.adapter.layer_modules[layer].modules()}
        done = {key for key, call in calls.items() if call.calls == 1 and 0 <= call.exit < rank}
        out = [(modules[key], calls[key]) for key in done if id(self.parents.get(key)) not in done]
        site_key = next(key for key, call in calls.items() if call.enter == rank)
        if self._reads_output(modules[site_key]):
            out.append((modules[site_key], calls[site_key]))
        if not all(_replayable(call.output) for _, call in out):
            return []  # an output that cannot be repeated per row: compute the layer instead
        return out

    def _reads_output(self, module: nn.Module) -> bool:
        """Whether the site is edited on its output (neurons), not its input (heads)."""
        adapter = self.adapter
        return any(adapter.neuron_site(layer) is module for layer in range(adapter.n_layers))


def start_layer(component: Component, text: bool = True) -> int:
    """First layer to compute for an edit of ``component``.

    Head and neuron sites live inside layer ``l``; a transformer's residual / layer sites are the
    output of layer ``l``, which the cached input of layer ``l + 1`` already holds. In an MLP
    every site is the output of the ``l``-th ReLU, which is run (it is cheap).
    """
    if text and component.kind in _AFTER_LAYER:
        return component.layer + 1
    return component.layer


def pays_off(adapter: Any) -> bool:
    """Whether skipping layers saves more than the extra forward calls cost.

    A transformer layer costs far more than a call; an MLP's hidden layer costs less than the
    call overhead, so for an MLP one full batched pass is faster than one pass per start layer.
    """
    return getattr(adapter, "modality", None) == "text" and supports(adapter)


def supports(adapter: Any) -> bool:
    """Whether :class:`PrefixCache` can start this adapter's model at a layer."""
    if getattr(adapter, "modality", None) == "text":
        return bool(getattr(adapter, "layer_modules", None)) and _embeddings_module(adapter.model) is not None
    if getattr(adapter, "modality", None) == "tabular":
        return _relu_positions(adapter) is not None
    return False


def capture_layer_inputs(adapter: Any, inputs: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor, list[bool]]:
    """(state entering each layer + state leaving the last, clean logits, per-layer tuple output).

    For a tabular MLP the "layers" are its ReLUs: ``states[l]`` is the input of the ``l``-th ReLU
    and ``states[n]`` the output of the last.
    """
    states, logits, tuple_out, _ = _capture(adapter, inputs, record_calls=False)
    return states, logits, tuple_out


@torch.no_grad()
def _capture(adapter: Any, inputs: dict[str, torch.Tensor], record_calls: bool
             ) -> tuple[list[torch.Tensor], torch.Tensor, list[bool], list[dict[int, _Call]]]:
    modules: list[nn.Module] = list(adapter.layer_modules if adapter.modality == "text" else adapter.hidden_modules)
    n = len(modules)
    states: list[torch.Tensor | None] = [None] * (n + 1)
    tuple_out = [False] * n
    calls: list[dict[int, _Call]] = [{} for _ in range(n)] if record_calls else []
    clock = [0]
    handles = []

    def grab_in(i: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            states[i] = _hidden_arg(args, kwargs).detach().clone()
        return hook

    def grab_out(i: int) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tuple_out[i] = isinstance(output, tuple)
            if i == n - 1:
                states[n] = first_tensor(output).detach().clone()
        return hook

    def enter(store: dict[int, _Call]) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            clock[0] += 1
            call = store.setdefault(id(module), _Call(enter=clock[0]))
            call.calls += 1
        return hook

    def leave(store: dict[int, _Call]) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            clock[0] += 1
            call = store[id(module)]
            call.exit, call.output = clock[0], _detached(output)
        return hook

    try:
        for i, module in enumerate(modules):
            handles.append(module.register_forward_pre_hook(grab_in(i), with_kwargs=True))
            handles.append(module.register_forward_hook(grab_out(i)))
            if record_calls:
                for sub in module.modules():
                    if sub is not module:
                        handles.append(sub.register_forward_pre_hook(enter(calls[i])))
                        handles.append(sub.register_forward_hook(leave(calls[i])))
        logits = adapter.run(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if any(s is None for s in states):
        raise RuntimeError("prefix capture: not every layer ran on the clean input")
    return [s for s in states if s is not None], logits.detach(), tuple_out, calls


@contextmanager
def skip_layers(adapter: Any, state: torch.Tensor, start: int, tuple_out: Sequence[bool] | None = None,
                replay: Sequence[tuple[nn.Module, Any]] = ()) -> Iterator[None]:
    """Inside the block, a forward pass of the text model starts at layer ``start`` from ``state``.

    ``state`` is the (batch-sized) hidden state entering layer ``start``. The embeddings module
    returns it without computing, layers ``< start - 1`` pass their input through, and layer
    ``start - 1`` returns ``state`` (so its forward hooks see the clean output of that layer).
    Each ``(module, output)`` of ``replay`` returns ``output`` instead of computing. Original
    ``forward`` methods are restored when the block ends, also on an exception.
    """
    layers: list[nn.Module] = list(adapter.layer_modules)
    if not 0 <= start <= len(layers):
        raise ValueError(f"start layer {start} out of range 0..{len(layers)}")
    tuple_out = list(tuple_out) if tuple_out is not None else [False] * len(layers)
    patched: list[tuple[nn.Module, Any]] = []

    def replace(module: nn.Module, forward: Any) -> None:
        patched.append((module, module.__dict__.get("forward", _MISSING)))
        module.forward = forward  # type: ignore[method-assign]

    try:
        if start > 0:
            embeddings = _embeddings_module(adapter.model)
            if embeddings is not None:
                replace(embeddings, lambda *args, **kwargs: state)
            for i in range(start):
                wrap = tuple_out[i]
                if i == start - 1:
                    replace(layers[i], _returning(state, wrap))
                else:
                    replace(layers[i], _passthrough(wrap))
        for module, output in replay:
            replace(module, _returning(output, False))
        yield
    finally:
        for module, previous in reversed(patched):
            if previous is _MISSING:
                module.__dict__.pop("forward", None)
            else:
                module.forward = previous  # type: ignore[method-assign]


_MISSING = object()


def _passthrough(wrap: bool) -> Any:
    def forward(*args: Any, **kwargs: Any) -> Any:
        hidden = _hidden_arg(args, kwargs)
        return (hidden,) if wrap else hidden
    return forward


def _returning(state: Any, wrap: bool) -> Any:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return (state,) if wrap else state
    return forward


def _detached(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.detach().clone()
    if isinstance(output, tuple | list):
        return type(output)(_detached(o) for o in output)
    return output


def _replayable(output: Any) -> bool:
    if output is None:
        return True
    if isinstance(output, torch.Tensor):
        return output.dim() > 0 and output.shape[0] == 1
    if isinstance(output, tuple | list):
        return all(_replayable(o) for o in output)
    return False


def _batched(output: Any, n: int) -> Any:
    """A recorded batch-1 output repeated to ``n`` rows (tensors batch-first; others as they are)."""
    if isinstance(output, torch.Tensor):
        return output.expand(n, *output.shape[1:]).contiguous()
    if isinstance(output, tuple | list):
        return type(output)(_batched(o, n) for o in output)
    return output


def _hidden_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    if args:
        hidden: torch.Tensor = args[0]
        return hidden
    for key in ("hidden_states", "hidden_state", "x", "input"):
        if key in kwargs:
            value: torch.Tensor = kwargs[key]
            return value
    raise TypeError("cannot find the hidden states among a layer's arguments")


def _embeddings_module(model: nn.Module) -> nn.Module | None:
    """The module holding the input token embeddings (BertEmbeddings, DistilBERT's Embeddings)."""
    get = getattr(model, "get_input_embeddings", None)
    if get is None:
        return None
    words = get()
    for module in model.modules():
        if any(child is words for child in module.children()):
            return module
    return None


def _relu_positions(adapter: Any) -> list[int] | None:
    """Index of each hidden ReLU among the direct children of a Sequential MLP (else ``None``)."""
    model = adapter.model
    if not isinstance(model, nn.Sequential):
        return None
    children = list(model)
    positions = []
    for relu in adapter.hidden_modules:
        found = [i for i, child in enumerate(children) if child is relu]
        if not found:
            return None
        positions.append(found[0])
    return positions


def _run_sequential(adapter: Any, state: torch.Tensor, start: int, n: int) -> torch.Tensor:
    positions = _relu_positions(adapter)
    assert positions is not None
    children = list(adapter.model)
    # states[l] is the input of ReLU l; states[n_layers] is the output of the last ReLU
    first = positions[start] if start < len(positions) else positions[-1] + 1
    x = state.expand(n, *state.shape[1:]).contiguous()
    for module in children[first:]:
        x = module(x)
    return x
