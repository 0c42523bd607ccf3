"""Hooks as context managers.

Every intervention in twopath (ablation, patching, caching activations) is a set of PyTorch
forward hooks registered for the duration of a ``with`` block. :func:`hooked` guarantees the
hooks come off when the block ends, also when it ends with an exception, so a failed sweep
never leaves a model silently modified. A hook site that is not a module of the model raises
instead of doing nothing.

A hook may name one ``occurrence`` of its module: the module is then applied several times per
forward pass (ALBERT shares one block across layers) and the hook acts only on that call. Call
counters restart at every forward pass of the whole model (or of its base model). Models whose
sites have occurrences run full passes only (they cannot resume at a block).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

HookKind = Literal["forward", "pre"]


@dataclass(frozen=True)
class Hook:
    """A function attached to one module: ``forward`` sees and may replace the output, ``pre``
    sees and may replace the positional inputs; ``occurrence`` limits it to one call per pass."""

    module: nn.Module
    fn: Callable[..., Any]
    kind: HookKind = "forward"
    occurrence: int | None = None
    #: the block whose input gives (batch, positions) when the module sees them flattened
    #: into one dimension (OPT's MLP): ``fn`` then sees and returns (batch, positions, width)
    unflatten: nn.Module | None = None


def at(site: Any, fn: Callable[..., Any]) -> Hook:
    """A hook running ``fn`` at a :class:`~twopath.runtime.adapter.Site`."""
    return Hook(site.module, fn, site.kind, site.occurrence, site.unflatten)


_ACTIVE: dict[int, int] = {}  # id(model) -> open hooked() blocks


def intervened(model: nn.Module) -> bool:
    """Whether a :func:`hooked` block is open on ``model`` (a clean run must not happen there)."""
    return _ACTIVE.get(id(model), 0) > 0


@contextmanager
def hooked(model: nn.Module, hooks: Sequence[Hook]) -> Iterator[None]:
    """Register ``hooks`` on ``model`` for the duration of the block; always remove them."""
    owned = {id(m) for m in model.modules()}
    handles = []
    counters: dict[int, int] = {}
    _ACTIVE[id(model)] = _ACTIVE.get(id(model), 0) + 1
    try:
        if any(h.occurrence is not None for h in hooks):
            # a pass starts at the model or, for adapters that run the backbone and read its
            # output themselves (decoders), at the base model
            for root in {id(m): m for m in (model, getattr(model, "base_model", model))}.values():
                handles.append(root.register_forward_pre_hook(lambda m, args: counters.clear()))
        for number, hook in enumerate(hooks):
            if id(hook.module) not in owned:
                raise ValueError(f"hook site {type(hook.module).__name__} is not a module of this model")
            fn = hook.fn
            if hook.unflatten is not None:
                fn, handle = _unflattened(hook)
                handles.append(handle)
            if hook.occurrence is not None:
                fn = _counted(hook, fn, number, counters)
            if hook.kind == "pre":
                handles.append(hook.module.register_forward_pre_hook(fn))
            else:
                handles.append(hook.module.register_forward_hook(fn))
        yield
    finally:
        for handle in handles:
            handle.remove()
        _ACTIVE[id(model)] -= 1
        if not _ACTIVE[id(model)]:
            del _ACTIVE[id(model)]


def _counted(hook: Hook, inner: Callable[..., Any], key: int, counters: dict[int, int]) -> Callable[..., Any]:
    """``inner`` applied only on call number ``hook.occurrence`` of its module in a pass."""

    def fn(*args: Any) -> Any:
        call = counters.get(key, 0)
        counters[key] = call + 1
        return inner(*args) if call == hook.occurrence else None

    return fn


def _unflattened(hook: Hook) -> tuple[Callable[..., Any], Any]:
    """``hook.fn`` seeing (batch, positions, width) where the module sees (batch * positions,
    width); the shape comes from the input of ``hook.unflatten`` (a pre-hook, returned)."""
    shape: list[int] = []

    def remember(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        shape[:] = list(hidden.shape[:2])

    assert hook.unflatten is not None
    handle = hook.unflatten.register_forward_pre_hook(remember, with_kwargs=True)

    def view(flat: Any) -> Any:
        return flat.view(*shape, flat.shape[-1]) if flat.dim() == 2 else flat

    def fn(module: nn.Module, *rest: Any) -> Any:
        if hook.kind == "pre":
            (args,) = rest
            out = hook.fn(module, (view(args[0]), *args[1:]))
            return None if out is None else (out[0].reshape(args[0].shape), *out[1:])
        args, output = rest
        out = hook.fn(module, args, replace_first(output, view(first_tensor(output))))
        return None if out is None else replace_first(out, first_tensor(out).reshape(first_tensor(output).shape))

    return fn, handle


def first_tensor(output: Any) -> Any:
    """The hidden-state tensor of a module output (a tensor, or the first item of a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def replace_first(output: Any, tensor: Any) -> Any:
    """``output`` with its hidden-state tensor replaced, keeping the container type."""
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    return tensor
