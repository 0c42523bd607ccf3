"""Cost in F1 units: one batch-size-1 forward pass of the same model on the same input.

Wall-clock seconds depend on the machine; ratios to F1, measured in the same run, do not (much).
Every method's cost is reported as ``seconds / F1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


class StepClock:
    """Wall time of a run's named steps, for the cost table's "where the time went".

    Calling the clock with a step's name ends the previous step and starts the new one (and
    passes the name on to ``say``, the progress display); :meth:`stop` ends the last step and
    returns one row per step, in order: ``{"step": name, "seconds": wall}``. The steps tile the
    run, so their seconds add up to its wall time.
    """

    def __init__(self, say: Callable[[str], None] | None = None):
        self.say = say
        self.rows: list[dict[str, Any]] = []
        self._name: str | None = None
        self._start = 0.0

    def __call__(self, name: str) -> None:
        now = time.perf_counter()  # one reading ends one step and starts the next: they tile
        self._end(now)
        if self.say is not None:
            self.say(name)
        self._name, self._start = name, now

    def _end(self, now: float) -> None:
        if self._name is not None:
            self.rows.append({"step": self._name, "seconds": now - self._start})
            self._name = None

    def stop(self) -> list[dict[str, Any]]:
        if self._name is not None:
            self._end(time.perf_counter())
        return self.rows
