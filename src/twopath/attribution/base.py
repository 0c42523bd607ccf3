"""The input-path contract: one class per method, settings in ``__init__``, one verb.

``method.attribute(adapter, example, target=label) -> Attribution`` returns one signed score per
unit (the sentence's words or the table's raw features) in the run's output space. Settings are
stored, never computed, in ``__init__`` (scikit-learn style), so a method object is cheap to
build and can be listed, compared and serialised.

**Budgets.** A sampled method's cost grows with the number of units it explains, so its budget
(LIME's samples, SHAP's evaluations, IG's steps) follows a documented rule in that number unless
the user sets it. Every result records the rule, what it asked for, what ran and the convergence
evidence the method has (LIME's fit R², SHAP's unresolved share, IG's completeness delta) under
``meta["budget"]``; when a rule holds a method below its full budget, ``capped`` says so, so a
cheaper answer is never a silent one.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from twopath.registry import Registry
from twopath.runtime.adapter import OUTPUT_SPACES, OutputSpace
from twopath.runtime.threads import sized_for
from twopath.types import Attribution, Example, TwopathError

ATTRIBUTION_METHODS = Registry("attribution")


class AttributionMethod:
    """Base class: subclasses implement :meth:`_scores` and are registered by name."""

    name: ClassVar[str] = "base"
    what_it_tells_you: ClassVar[str] = ""
    #: modules the method imports on first use; :meth:`prepare` loads them outside its timing
    libraries: ClassVar[tuple[str, ...]] = ()

    def __init__(self, output: OutputSpace = "logit_diff", seed: int = 0):
        self.output = output
        self.seed = seed

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def attribute(self, adapter: Any, example: Example, *, target: str) -> Attribution:
        if self.output not in OUTPUT_SPACES:
            raise TwopathError(f"unknown output space {self.output!r}; expected one of {list(OUTPUT_SPACES)}")
        if adapter.modality not in ATTRIBUTION_METHODS.get(self.name).modalities:
            raise TwopathError(f"{self.name} does not support {adapter.modality} models")
        target_idx = adapter.label_index(target)
        units = adapter.units(example)
        self.prepare()
        start = time.perf_counter()
        with sized_for(adapter):  # a small tabular model: one thread (twopath.runtime.threads)
            scores, base_value, meta = self._scores(adapter, example, target_idx)
        scores = np.asarray(scores, dtype=float)
        if scores.shape != (len(units),):
            raise RuntimeError(f"{self.name} returned {scores.shape} scores for {len(units)} units")
        meta = {
            "output": self.output,
            "settings": self.settings(),
            "seconds": round(time.perf_counter() - start, 4),
            **meta,
        }
        return Attribution(example.id, self.name, adapter.labels[target_idx], units, scores, base_value, meta)

    def prepare(self) -> None:
        """One-off, per-process work kept out of the method's measured cost (imports, JIT
        compiles): the cost table reports it in its overhead row, not as model cost."""
        for name in self.libraries:
            importlib.import_module(name)

    def _scores(self, adapter: Any, example: Example, target: int) -> tuple[np.ndarray, float | None, dict[str, Any]]:
        raise NotImplementedError


@dataclass(frozen=True)
class Budget:
    """How much a method spent on one input and why.

    ``setting`` names the method's setting (``num_samples``, ``max_evals``, ``max_steps``);
    ``used`` is what ran, ``full`` what the method would need without a cap (LIME's default 5,000
    samples, every node of SHAP's partition tree, IG's step cap) and ``rule`` says where ``used``
    came from ("set by the user", or the rule in the number of units). ``error`` is the measured
    convergence evidence, named by ``error_name``.
    """

    setting: str
    used: int
    full: int
    rule: str
    error_name: str
    error: float | None = None

    @property
    def capped(self) -> bool:
        return self.used < self.full

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "capped": self.capped}


def gradient_rows(adapter: Any, inputs: Any) -> int:
    """Rows one forward-and-backward pass may take: the rows of the adapter's budget for passes
    with gradients (:meth:`~twopath.runtime.adapter.ModelAdapter.pass_budget`) divided by three
    copies of every layer's activations, which a backward pass keeps (at 60 MiniLM tokens: 6 rows,
    not 121)."""
    layers = max(1, int(getattr(adapter, "n_layers", 1) or 1))
    rows = adapter.rows_per_pass(inputs, adapter.pass_budget(gradients=True))
    return max(1, rows // (3 * layers))


def evaluator_meta(evaluator: Any, requested_before: int, evaluated_before: int) -> dict[str, Any]:
    """Cost of one method on the shared evaluator: rows it asked for and rows the model ran."""
    return {
        "n_evals": evaluator.n_requested - requested_before,
        "n_model_rows": evaluator.n_evaluated - evaluated_before,
    }
