"""Data room: the sentiment corpus, the loan generators and the two seed examples.

The submodules load on first use (``from twopath.datasets import loan``, or the attribute
``twopath.datasets.loan``), so a command that only needs the neutral background sentences or
the file reader does not pay for pandas before it has checked its arguments.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["loan", "sentiment"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"twopath.datasets.{name}")
    raise AttributeError(f"module 'twopath.datasets' has no attribute {name!r}")
