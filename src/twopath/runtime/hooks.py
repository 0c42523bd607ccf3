"""Hooks as context managers.

Every intervention in twopath (ablation, patching, caching activations) is a set of PyTorch
forward hooks registered for the duration of a ``with`` block. :func:`hooked` guarantees the
hooks come off when the block ends, also when it ends with an exception, so a failed sweep
never leaves a model silently modified. A hook site that is not a module of the model raises
instead of doing nothing.

A hook may name one ``occurrence`` of its module: the module is then applied several times per
forward pass (ALBERT shares one block across layers) and the hook acts only on that call. Call
counters restart at every forward pass of the whole model.
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


def at(site: Any, fn: Callable[..., Any]) -> Hook:
    """A hook running ``fn`` at a :class:`~twopath.runtime.adapter.Site`."""
    return Hook(site.module, fn, site.kind, site.occurrence)


@contextmanager
def hooked(model: nn.Module, hooks: Sequence[Hook]) -> Iterator[None]:
    """Register ``hooks`` on ``model`` for the duration of the block; always remove them."""
    owned = {id(m) for m in model.modules()}
    handles = []
    counters: dict[int, int] = {}
    try:
        if any(h.occurrence is not None for h in hooks):
            handles.append(model.register_forward_pre_hook(lambda m, args: counters.clear()))
        for number, hook in enumerate(hooks):
            if id(hook.module) not in owned:
                raise ValueError(f"hook site {type(hook.module).__name__} is not a module of this model")
            fn = hook.fn if hook.occurrence is None else _counted(hook, number, counters)
            if hook.kind == "pre":
                handles.append(hook.module.register_forward_pre_hook(fn))
            else:
                handles.append(hook.module.register_forward_hook(fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _counted(hook: Hook, key: int, counters: dict[int, int]) -> Callable[..., Any]:
    """``hook.fn`` applied only on call number ``hook.occurrence`` of its module in a pass."""

    def fn(*args: Any) -> Any:
        call = counters.get(key, 0)
        counters[key] = call + 1
        return hook.fn(*args) if call == hook.occurrence else None

    return fn


def first_tensor(output: Any) -> Any:
    """The hidden-state tensor of a module output (a tensor, or the first item of a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def replace_first(output: Any, tensor: Any) -> Any:
    """``output`` with its hidden-state tensor replaced, keeping the container type."""
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    return tensor
