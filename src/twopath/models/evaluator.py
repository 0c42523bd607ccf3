"""The shared, memoized, batched coalition evaluator.

Perturbation methods (SHAP, LIME, occlusion, deletion curves) all ask one question many times:
*what does the model output when only these units are present?* A coalition is a boolean row
over the example's units (words or features). The evaluator answers for many coalitions at once:

* identical coalitions are evaluated once, across methods, within a run (a memo keyed by the
  coalition's bits) — LIME's 5,000 samples on an 8-word sentence hold at most 256 distinct masks;
* the remaining ones go to the model in batches;
* it counts requested rows (``n_requested``) and model rows evaluated (``n_evaluated``) so every
  method can report its cost.

For text an absent word's tokens are replaced by the mask token. For tables an absent feature
takes the values of a background sample, and the output is averaged over that sample (the
interventional expectation of KernelSHAP).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from twopath.models.base import OutputSpace
from twopath.types import Example, TwopathError


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
        self.n_requested = 0
        self.n_evaluated = 0
        self._memo: dict[bytes, float] = {}
        if adapter.modality == "text":
            self._text = adapter.encode(adapter.check_example(example))
            self.n_units = len(self._text.words)
        else:
            if adapter.background is None or len(adapter.background) == 0:
                raise TwopathError("a tabular model needs a background sample (adapter.background) for masking")
            self._x = adapter.encode(adapter.check_example(example))[0]
            bg = adapter.encode(adapter.background)
            self._bg = bg[:background_size]
            self.n_units = len(self._x)

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
            rows = keep[list(todo.values())]
            values = self._evaluate(rows)
            self._memo.update(zip(todo, values.tolist(), strict=True))
        return np.array([self._memo[k] for k in keys], dtype=float)

    def full(self) -> float:
        return float(self(np.ones((1, self.n_units), dtype=bool))[0])

    def empty(self) -> float:
        return float(self(np.zeros((1, self.n_units), dtype=bool))[0])

    def _evaluate(self, keep: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            if self.adapter.modality == "text":
                for start in range(0, len(keep), self.batch_size):
                    ids = self.adapter.masked_ids(self._text, keep[start : start + self.batch_size])
                    logits = self.adapter.logits(ids, self._text.attention_mask, batch_size=self.batch_size)
                    out.append(self.adapter.output(logits, self.target, self.space).numpy())
                    self.n_evaluated += len(ids)
            else:
                m = len(self._bg)
                per_batch = max(1, self.max_rows // m)  # an MLP is cheap: few, large batches
                for start in range(0, len(keep), per_batch):
                    part = keep[start : start + per_batch]
                    rows = np.where(part[:, None, :], self._x[None, None, :], self._bg[None, :, :])
                    x = self.adapter.transform_coded(rows.reshape(-1, self.n_units))
                    values = self.adapter.output(self.adapter.logits(x), self.target, self.space).numpy()
                    out.append(values.reshape(len(part), m).mean(axis=1))
                    self.n_evaluated += len(x)
        return np.concatenate(out) if out else np.zeros(0)


def evaluator_for(adapter: Any, example: Example, target: int, space: OutputSpace = "logit_diff",
                  background_size: int = 50) -> CoalitionEvaluator:
    """The run-wide evaluator for (example, target, space, background): one memo shared by all methods."""
    cache: dict[tuple[Any, ...], CoalitionEvaluator] = adapter.__dict__.setdefault("_evaluators", {})
    raw = example.raw if isinstance(example.raw, str) else tuple(sorted((k, str(v)) for k, v in example.raw.items()))
    background = None
    if adapter.modality == "tabular" and adapter.background is not None:
        # keyed by content, so replacing or editing the background never serves stale values
        background = hashlib.sha1(adapter.encode(adapter.background)[:background_size].tobytes()).hexdigest()
    key = (example.id, raw, target, space, background_size, background)
    if key not in cache:
        if len(cache) > 16:
            cache.clear()
        cache[key] = CoalitionEvaluator(adapter, example, target, space, background_size=background_size)
    return cache[key]
