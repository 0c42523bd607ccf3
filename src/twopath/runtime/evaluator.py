"""The shared, memoized, batched coalition evaluator.

Perturbation methods (SHAP, LIME, occlusion, deletion curves) all ask one question many times:
*what does the model output when only these units are present?* A coalition is a boolean row
over the example's units (words or features). The evaluator answers for many coalitions at once:

* identical coalitions are evaluated once, across methods, within a run (a memo keyed by the
  coalition's bits) — LIME's 5,000 samples on an 8-word sentence hold at most 256 distinct masks;
* under that memo sits a second one holding the coalition's *logits* (every label, every
  background row), shared by every target and output space of the example: the deletion curves
  (target probability) reuse the rows SHAP and occlusion ran (logit difference), and an
  explanation at a second label (the dataset path's gold label) reuses every coalition the
  first one ran; the value is the same function of the same logits, so nothing changes but the
  rows run;
* the remaining ones go to the model in batches;
* it counts requested rows (``n_requested``) and model rows evaluated (``n_evaluated``) so every
  method can report its cost.

How a unit is made absent is the adapter's business (:meth:`masked_inputs`): for text an absent
word's tokens are replaced by the mask token; for tables an absent feature takes the values of
a background sample, and the output is averaged over that sample (the interventional
expectation of KernelSHAP).
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.runtime.adapter import OutputSpace
from twopath.runtime.trace import caches, example_key
from twopath.types import Example


class CoalitionEvaluator:
    """``f(keep)`` for boolean coalitions ``keep`` of shape (n, n_units), memoized and batched."""

    def __init__(self, adapter: Any, example: Example, target: int, space: OutputSpace = "logit_diff",
                 batch_size: int = 128, background_size: int = 50, max_rows: int = 16384):
        self.adapter = adapter
        self.example = example
        self.target = target
        self.space = space
        self.batch_size = batch_size
        self.max_rows = max_rows
        self.background_size = background_size
        self.n_requested = 0
        self.n_evaluated = 0
        self._memo: dict[bytes, float] = {}
        self._logits: dict[bytes, torch.Tensor] = {}  # coalition -> (group, n_labels), shared (evaluator_for)
        self.n_units = len(adapter.units(example))
        # rows per coalition: 1 for text, the background size for tables (checked up front)
        _, self._group = self._masked(np.ones((1, self.n_units), dtype=bool))

    def __call__(self, keep: np.ndarray) -> np.ndarray:
        keep = np.asarray(keep).astype(bool).reshape(-1, self.n_units)
        self.n_requested += len(keep)
        packed = np.packbits(keep, axis=1)
        keys = [row.tobytes() for row in packed]
        todo: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._memo and key not in todo:
                todo[key] = i
        if todo:
            missing = {k: i for k, i in todo.items() if k not in self._logits}
            if missing:
                self._run(keep[list(missing.values())], list(missing))
            values = self._values([self._logits[k] for k in todo])
            self._memo.update(zip(todo, values.tolist(), strict=True))
        return np.array([self._memo[k] for k in keys], dtype=float)

    def full(self) -> float:
        return float(self(np.ones((1, self.n_units), dtype=bool))[0])

    def empty(self) -> float:
        return float(self(np.zeros((1, self.n_units), dtype=bool))[0])

    def _masked(self, keep: np.ndarray) -> tuple[dict[str, torch.Tensor], int]:
        inputs, group = self.adapter.masked_inputs(self.example, keep, background_size=self.background_size)
        return inputs, group

    def _run(self, keep: np.ndarray, keys: list[bytes]) -> None:
        """Logits of coalitions into the logit memo, in chunks of at most ``batch_size`` model
        rows (``max_rows`` for grouped rows: a table's coalitions are cheap, so few large batches)."""
        group = self._group
        per_chunk = self.batch_size if group == 1 else max(1, self.max_rows // group)
        with torch.no_grad():
            for start in range(0, len(keep), per_chunk):
                part = keep[start : start + per_chunk]
                inputs, group = self._masked(part)
                logits = self.adapter.logits(inputs, batch_size=self.batch_size if group == 1 else len(part) * group)
                rows = logits.reshape(len(part), group, -1)
                self._logits.update(zip(keys[start : start + len(part)], rows, strict=True))
                self.n_evaluated += len(part) * group

    def _values(self, logits: list[torch.Tensor]) -> np.ndarray:
        """The target's output of each coalition from its logits (the mean over its group)."""
        if not logits:
            return np.zeros(0)
        stacked = torch.stack(logits)  # (n, group, n_labels)
        n, group = stacked.shape[:2]
        values = self.adapter.output(stacked.reshape(n * group, -1), self.target, self.space).cpu().numpy()
        return values.reshape(n, group).mean(axis=1)


def evaluator_for(adapter: Any, example: Example, target: int, space: OutputSpace = "logit_diff",
                  background_size: int = 50) -> CoalitionEvaluator:
    """The run-wide evaluator for (example, target, space, background): one memo shared by all methods."""
    cache = caches(adapter).evaluators
    shared = (example_key(example), background_size, background_key(adapter))
    key = (*shared, target, space)
    if key not in cache:
        if len(cache) > 16:
            cache.clear()
        # a weak reference: the cache must not keep its own key (the adapter) alive
        evaluator = CoalitionEvaluator(weakref.proxy(adapter), example, target, space, background_size=background_size)
        sibling = next((ev for k, ev in cache.items() if k[:3] == shared), None)
        if sibling is not None:  # same example and background: one logit memo for every target and space
            evaluator._logits = sibling._logits
        cache[key] = evaluator
    return cache[key]


def background_key(adapter: Any) -> Any:
    """What identifies the adapter's background for the memo: its version counter where the
    adapter keeps one (the tabular adapter bumps it on every assignment, and its background
    cannot be edited in place), else a hash of the content."""
    version = getattr(adapter, "background_version", None)
    if version is not None:
        return ("version", version)
    background = adapter.background
    if background is None or len(background) == 0:
        return None
    if isinstance(background, (list, tuple)) and all(isinstance(b, str) for b in background):
        digest = hashlib.sha1()
        for text in background:
            digest.update(text.encode("utf-8", "surrogatepass") + b"\x00")
        return ("texts", digest.hexdigest())
    # keyed by content, so replacing or editing the background never serves stale values
    return ("table", hashlib.sha1(pd.util.hash_pandas_object(pd.DataFrame(background).astype(str), index=False)
                                  .to_numpy().tobytes()).hexdigest())
