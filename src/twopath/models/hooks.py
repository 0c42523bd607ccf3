"""Hooks as context managers.

Every intervention in twopath (ablation, patching, caching activations) is a set of PyTorch
forward hooks registered for the duration of a ``with`` block. :func:`hooked` guarantees the
hooks come off when the block ends, also when it ends with an exception, so a failed sweep
never leaves a model silently modified. A hook site that is not a module of the model raises
instead of doing nothing.
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
    sees and may replace the positional inputs."""

    module: nn.Module
    fn: Callable[..., Any]
    kind: HookKind = "forward"


@contextmanager
def hooked(model: nn.Module, hooks: Sequence[Hook]) -> Iterator[None]:
    """Register ``hooks`` on ``model`` for the duration of the block; always remove them."""
    owned = {id(m) for m in model.modules()}
    handles = []
    try:
        for hook in hooks:
            if id(hook.module) not in owned:
                raise ValueError(
                    f"hook site {type(hook.module).__name__} is not a module of this model"
                )
            if hook.kind == "pre":
                handles.append(hook.module.register_forward_pre_hook(hook.fn))
            else:
                handles.append(hook.module.register_forward_hook(hook.fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


def first_tensor(output: Any) -> Any:
    """The hidden-state tensor of a module output (a tensor, or the first item of a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def replace_first(output: Any, tensor: Any) -> Any:
    """``output`` with its hidden-state tensor replaced, keeping the container type."""
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    return tensor
