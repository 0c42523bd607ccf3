"""How many CPU threads a model's work runs on: one, for a small tabular model.

torch splits a matrix product over its threads whatever the product's size. For a model whose
layers are a few dozen units wide, such as a tabular MLP, each product takes a few microseconds
and waking a second thread costs more: under ``OMP_WAIT_POLICY=PASSIVE``, which the CLI sets so
that waiting threads sleep instead of spinning, about 50 µs per product. Measured on a 2-core
machine with the loan MLP (6 layers of 32 units): a forward pass over 16-8,192 rows took 4-10x
longer on two threads than on one, and ``NeuronAblation.localize`` 791 µs against 171 µs;
``reproduce loan`` (its editing section included) took 14.5-15.8 s before this rule and
10.2-10.9 s with it, the editing section's fine-tunes 9.3-10.4 s against 4.7 s. With spinning
threads two were no faster either (the whole command 12.1 s against 11.5 s on one).

The numbers: MKL picks its kernel by the product's shape and the thread count, so most batches
give the same bits on one thread or two and a few differ in the last place (a 7-row batch of the
loan MLP, by 5e-7); the loan report's JSON is identical either way. On one thread, a small
model's numbers no longer depend on the machine's core count, and they match the dataset
workers', which run on one thread already (:mod:`twopath.datasets.engines`).

:func:`sized_for` therefore runs a small **tabular** model's work on one thread: every input and
internal method's work (``attribute`` and ``localize`` of the rooms' base classes), and, through
:func:`adapter_sized`, the whole of ``explain`` (curves, sanity check, edit test) and of the
editing comparison (its fine-tunes). *Small* is at most :data:`SMALL_MODEL_PARAMETERS`
parameters outside embedding tables (a lookup has no product to split). Larger models
(MiniLM's 384-wide layers gain about 1.5x from a second thread) and text models are left as torch set them: a tiny random BERT (16 k parameters) and the 4-layer GPT-2 of
``reproduce sentiment-gpt2`` gained nothing measurable on one thread (``explain`` 6.6-6.9 s
against 6.6-7.5 s; 8.5 s against 9.1 s), and their attention products round differently there
(differences of about 1e-7 in their reports), so their numbers would change for no gain. The
thread count is process-wide: it is restored when the block ends, and work running meanwhile in
other Python threads of the process runs on one thread too.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

#: the most parameters, outside embedding tables, of a model whose work runs on one thread
SMALL_MODEL_PARAMETERS = 1_000_000


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` CPU threads inside the block (the count before is restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread() -> AbstractContextManager[None]:
    """Run torch on one CPU thread inside the block (the count before is restored after)."""
    return torch_threads(1)


def product_parameters(model: Any) -> int:
    """The model's parameters outside ``torch.nn.Embedding`` tables."""
    import torch

    return sum(p.numel() for module in model.modules() if not isinstance(module, torch.nn.Embedding)
               for p in module.parameters(recurse=False))


#: :func:`product_parameters` of each model seen (counting them took 50 µs, a third of a sweep)
_COUNTED: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def is_small(adapter: Any) -> bool:
    """Whether the adapter is a tabular model on the CPU with at most
    :data:`SMALL_MODEL_PARAMETERS` parameters outside embeddings."""
    model = getattr(adapter, "model", None)
    if getattr(adapter, "modality", None) != "tabular" or model is None or not hasattr(model, "modules"):
        return False
    first = next(model.parameters(), None)
    if first is None or first.device.type != "cpu":
        return False
    if model not in _COUNTED:
        _COUNTED[model] = product_parameters(model)
    return _COUNTED[model] <= SMALL_MODEL_PARAMETERS


@contextmanager
def sized_for(adapter: Any) -> Iterator[None]:
    """One thread inside the block when the adapter :func:`is_small`; otherwise nothing."""
    if not is_small(adapter):
        yield
        return
    with one_thread():
        yield


def adapter_sized(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn(adapter, ...)`` run :func:`sized_for` its adapter (the first argument, or ``adapter=``)."""
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with sized_for(args[0] if args else kwargs.get("adapter")):
            return fn(*args, **kwargs)
    return run
