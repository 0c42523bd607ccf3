"""Cost in F1 units: one batch-size-1 forward pass of the same model on the same input.

Wall-clock seconds depend on the machine; ratios to F1, measured in the same run, do not (much).
Every method's cost is reported as ``seconds / F1``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from twopath.types import Example


def forward_seconds(adapter: Any, example: Example, repeats: int = 15, warmup: int = 3) -> float:
    """Median wall time of one unmodified batch-size-1 forward pass on ``example``."""
    inputs = adapter.forward_inputs(example)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            adapter.run(inputs)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return float(np.median(times))
