"""Circuits: a small set of components that is sufficient and necessary for the decision.

A *circuit* here is a set ``S`` of components (attention heads of a transformer, hidden neurons
of an MLP) judged against the run where **every** candidate is ablated (``none``). Ablated means
set to the mean over the reference set (``reference="mean"``), or set to its activation on a
corrupted input of the same shape (``reference="corrupted"``, the ACDC / path-patching
convention; better when the mean-ablated model still leans toward the target, as a sentiment
model trained on a mostly positive corpus does):

* **sufficiency** — keep ``S``, mean-ablate all other candidates: the share of the clean
  output kept, ``(f(S) - f(none)) / (f(clean) - f(none))``;
* **necessity** — mean-ablate only ``S``: the share removed,
  ``(f(clean) - f(without S)) / (f(clean) - f(none))``.

The search is greedy: start empty and repeatedly add the candidate that raises sufficiency most
(all candidates scored in one batched pass), until both shares reach ``threshold`` (default
80 %) or ``max_size`` is hit. A control draws random sets of the same size from the same
candidates, so "this circuit is special" is a measured statement, not an impression.
Interventions are per-row keep-masks blended with the mean activation, so scoring 72 or 192
candidate sets is one forward pass — or, for a long input, as many passes as the adapter's
memory budget needs (:func:`masked_logits`; the values do not depend on the split). Every
greedy step scores each remaining candidate once, so the search costs at most
``max_size x candidates`` rows whatever the input's length: its time grows with the length only
through the cost of a row.

**Pruned steps on longer inputs.** Beyond ``EXACT_SEARCH_UNITS`` input units (8 words of text:
the seed sentence keeps the exact search) the heads' search scores every candidate only at every
``REFRESH``-th step (the first included); in between it re-scores the ``RESCORE`` candidates whose
last scores were highest, and adds the best of those. A candidate's gain rarely jumps from the
bottom of the field to the top in one step, so the circuit is almost always the same set at
about half the rows (on the reference MiniLM, 16 searches from 8 to 48 words, mean and contrast
reference: the same size every time, the same set 15 times, 19 of 20 heads once; the order of
additions often differs). The table's ``search`` says which search ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twopath.mechanistic.patching import shape_problem
from twopath.runtime.adapter import OutputSpace
from twopath.runtime.interventions import MaskedAblation
from twopath.types import Component, Example, TwopathError

#: inputs up to this many units (text) get the exact greedy search (every candidate, every step)
EXACT_SEARCH_UNITS = 8
#: beyond it: the candidates re-scored at a pruned step, and every how many steps all are scored
RESCORE = 16
REFRESH = 4
EXACT_SEARCH = "exact greedy: every candidate scored at every step"


@dataclass
class Circuit:
    """The greedy circuit and its measured sufficiency and necessity, with a random control."""

    components: list[Component]
    sufficiency: float
    necessity: float
    threshold: float
    clean: float
    none: float
    history: list[dict[str, Any]] = field(default_factory=list)
    control: dict[str, float] = field(default_factory=dict)
    search: str = EXACT_SEARCH

    @property
    def found(self) -> bool:
        return self.sufficiency >= self.threshold and self.necessity >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"components": [str(c) for c in self.components], "size": len(self.components),
                "sufficiency": self.sufficiency, "necessity": self.necessity, "threshold": self.threshold,
                "found": self.found, "clean": self.clean, "all_ablated": self.none,
                "history": self.history, "control": self.control, "search": self.search}


def masked_logits(adapter: Any, masked: MaskedAblation, inputs: dict[str, Any], keep: np.ndarray,
                  batch_size: int | None = None) -> Any:
    """:meth:`MaskedAblation.run` over the rows of ``keep`` in batches of at most ``batch_size``
    rows and at most ``adapter.rows_per_pass(inputs)`` (the memory budget for the input's length)."""
    import torch

    keep = np.asarray(keep, dtype=bool)
    step = min(batch_size or len(keep) or 1, adapter.rows_per_pass(inputs))
    parts = [masked.run(inputs, keep[i : i + step]) for i in range(0, len(keep), step)]
    return torch.cat(parts) if parts else torch.zeros(0)


class _Resumed:
    """A greedy step's trial rows, each run from the block of the candidate it adds.

    Every trial row keeps the circuit so far plus one candidate, so rows that add a candidate
    of layer ``L`` agree with the circuit-so-far run on every block before ``L``: that run's
    state entering each block is recorded once per step (one row), and each group of rows is
    resumed from its block (:meth:`~twopath.runtime.adapter.ModelAdapter.resume`, the call
    arguments of the clean run's :class:`~twopath.runtime.trace.Trace`). On a transformer this
    skips about 40 % of a step's block computations; the outputs equal full passes to float
    tolerance. Used where resuming pays and is possible (``adapter.resume_pays`` and
    ``can_resume()``: transformers, whose sites of layer ``L`` are inside block ``L``); an MLP's
    layers are cheaper than the extra calls, so there every row is a full pass.
    """

    def __init__(self, adapter: Any, masked: MaskedAblation, example: Example, layers: Sequence[int]):
        from twopath.runtime.trace import Trace

        self.adapter, self.masked, self.layers = adapter, masked, np.asarray(layers)
        self.ok = adapter.resume_pays and adapter.can_resume() and adapter.n_layers > 1
        self.trace = Trace.of(adapter, example) if self.ok else None  # the example's one clean run
        self.inputs = self.trace.inputs if self.trace is not None else adapter.forward_inputs(example)
        if self.trace is not None:
            self.trace.prepare_resume()  # the clean call arguments, recorded before any hook

    def _states(self, keep: np.ndarray) -> list[Any]:
        """The state entering every block on the run that keeps ``keep`` (one row)."""
        from twopath.runtime.trace import block_inputs

        states, _, _ = block_inputs(self.adapter, lambda: self.masked.run(self.inputs, keep[None]))
        return states

    def step(self, trial: np.ndarray, rest: Sequence[int], target: int, output: OutputSpace) -> np.ndarray:
        import torch

        assert self.trace is not None and self.trace._calls is not None
        current = trial[0].copy()
        current[rest[0]] = False  # the circuit so far
        states = self._states(current)
        starts = self.layers[np.asarray(rest)]
        scores = np.empty(len(rest))
        step = self.adapter.rows_per_pass(self.inputs)
        for start in np.unique(starts):
            rows = np.flatnonzero(starts == start)
            for lo in range(0, len(rows), step):
                chunk = rows[lo : lo + step]
                if start == 0:
                    logits = self.masked.run(self.inputs, trial[chunk])
                else:
                    state = states[start]
                    logits = self.masked.run_from(int(start), state.expand(len(chunk), *state.shape[1:]).contiguous(),
                                                  self.trace._calls, self.inputs, trial[chunk])
                with torch.no_grad():
                    scores[chunk] = self.adapter.output(logits, target, output).cpu().numpy()
        return scores


def greedy_circuit(adapter: Any, example: Example, target: int, candidates: Sequence[Component] | None = None,
                   corrupted: Example | None = None, threshold: float = 0.8, max_size: int | None = None,
                   n_controls: int = 20, seed: int = 0, output: OutputSpace = "logit_diff",
                   rescore: int | None = None, refresh: int = REFRESH) -> Circuit:
    """Grow a circuit greedily by sufficiency; measure necessity and a random-set control.

    With ``corrupted`` the ablation reference is that input's activations, else the mean over
    ``adapter.background``. ``max_size`` defaults to a quarter of the candidates, at least 20.
    With ``rescore``, only every ``refresh``-th step scores every candidate; the others re-score
    the ``rescore`` candidates with the highest last scores (see the module's docstring).
    """
    if rescore is not None and (rescore < 1 or refresh < 1):
        raise TwopathError(f"rescore and refresh must be at least 1, got {rescore} and {refresh}")
    if candidates is None:
        candidates = adapter.components(adapter.default_component)
    candidates = list(candidates)
    inputs = adapter.forward_inputs(example)
    reference = None
    if corrupted is not None:
        reference = adapter.forward_inputs(corrupted)
        problem = shape_problem(adapter, inputs, reference)
        if problem:
            raise TwopathError(f"the corrupted input {problem}")
    masked = MaskedAblation(adapter, candidates, reference)
    n = len(candidates)
    max_size = max_size or max(20, n // 4)

    def f(keep: np.ndarray) -> np.ndarray:
        return adapter.output(masked_logits(adapter, masked, inputs, keep), target, output).cpu().numpy()

    clean, none = f(np.ones((2, n), dtype=bool))[0], f(np.zeros((1, n), dtype=bool))[0]
    gap = clean - none
    if abs(gap) < 1e-6:
        raise TwopathError("mean-ablating every candidate does not change the output; no circuit to find")

    def shares(sets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        suff = (f(sets) - none) / gap
        nec = (clean - f(~sets)) / gap
        return suff, nec

    resumed = _Resumed(adapter, masked, example, [c.layer for c in candidates])
    chosen: list[int] = []
    history = []
    suff = nec = 0.0
    last = np.zeros(n)  # every candidate's score at the step it was last scored
    while len(chosen) < min(max_size, n):
        rest = [i for i in range(n) if i not in chosen]
        if rescore is not None and len(chosen) % refresh and len(rest) > rescore:
            rest = _highest(rest, last, rescore)
        trial = np.zeros((len(rest), n), dtype=bool)
        trial[:, chosen] = True
        trial[np.arange(len(rest)), rest] = True
        scores = resumed.step(trial, rest, target, output) if resumed.ok else f(trial)
        last[rest] = scores
        best = rest[int(np.argmax(scores))]
        chosen.append(best)
        current = np.zeros((1, n), dtype=bool)
        current[0, chosen] = True
        s, v = shares(current)
        suff, nec = float(s[0]), float(v[0])
        history.append({"added": str(candidates[best]), "size": len(chosen), "sufficiency": suff, "necessity": nec})
        if suff >= threshold and nec >= threshold:
            break
    rng = np.random.default_rng(seed)
    random_sets = np.zeros((n_controls, n), dtype=bool)
    for row in random_sets:
        row[rng.choice(n, size=len(chosen), replace=False)] = True
    rs, rn = shares(random_sets)
    control = {"n": n_controls, "sufficiency_mean": float(rs.mean()), "sufficiency_sd": float(rs.std()),
               "necessity_mean": float(rn.mean()), "necessity_sd": float(rn.std())}
    search = (EXACT_SEARCH if rescore is None else
              f"pruned greedy: every candidate scored at every {refresh}th step, else the {rescore} "
              "with the highest last scores")
    return Circuit([candidates[i] for i in chosen], suff, nec, threshold, float(clean), float(none), history, control,
                   search)


def _highest(rest: list[int], last: np.ndarray, k: int) -> list[int]:
    """The ``k`` of ``rest`` with the highest ``last`` scores (ties: the lower index), in index order."""
    order = sorted(rest, key=lambda i: (-last[i], i))
    return sorted(order[:k])


def find_circuit(adapter: Any, example: Example, target: int, corrupted: Example | None = None,
                 threshold: float = 0.8, seed: int = 0) -> dict[str, Any]:
    """The default circuit search for a model.

    * transformer: all attention heads at once (heads are parallel branches around the residual
      stream), ablated to the corrupted input's activations when one is given, else to the mean;
    * MLP: one search per hidden layer (each layer is a bottleneck, so "keep these neurons, ablate
      the rest of the layer" is well defined), mean-ablated; the smallest circuit found wins and
      every layer's result is kept.
    """
    if adapter.default_component == "head":
        pruned = len(adapter.units(example)) > EXACT_SEARCH_UNITS
        circuit = greedy_circuit(adapter, example, target, corrupted=corrupted, threshold=threshold, seed=seed,
                                 rescore=RESCORE if pruned else None, refresh=REFRESH)
        return {**circuit.to_dict(), "reference": "corrupted" if corrupted is not None else "mean", "per_layer": None}
    per_layer = []
    for layer in range(adapter.n_layers):
        width = adapter.mlp_width(layer)
        candidates = [Component("neuron", layer, i) for i in range(width)]
        per_layer.append(greedy_circuit(adapter, example, target, candidates=candidates, threshold=threshold,
                                        max_size=width, seed=seed))
    found = [c for c in per_layer if c.found] or per_layer
    best = min(found, key=lambda c: (len(c.components), -c.necessity))
    return {**best.to_dict(), "reference": "mean", "layer": best.components[0].layer,
            "per_layer": [{"layer": i, **{k: v for k, v in c.to_dict().items() if k not in ("history", "search")}} for i, c in enumerate(per_layer)]}
