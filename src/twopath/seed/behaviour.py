"""Behavioural tests of a tabular model: does one feature move the decision, and through which neurons?

The seed question is whether the loan model tells a good credit score from a poor one for an
otherwise identical applicant. :func:`score_separation` asks it directly: the approval
probability with ``credit_score = 720`` and with ``600``, and their difference, the
*separation*. :func:`pathway_ablation_test` then asks whether a hypothesised pathway (a set of
hidden neurons, e.g. those most correlated with credit score) carries that separation. It
mean-ablates the neurons (each is set to its average over the adapter's background, which
removes the information they carry while keeping their typical level) and measures the
separation again. A drop alone proves little, since knocking out *any* neurons may disturb the
model, so as a control the same number of random neurons from the same layers is ablated
``n_controls`` times: the pathway is specific when ablating it removes much more separation than
the controls do. A curve of approval probability against credit score (300 to 900) before and
after the ablation shows the effect at a glance. Results are plain floats, lists and strings
(``to_dict()`` is ready for JSON).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from twopath.runtime.interventions import Edit, ablate, intervene
from twopath.types import Component, TwopathError

CURVE: tuple[float, ...] = tuple(float(v) for v in range(300, 901, 20))


@dataclass(frozen=True)
class Separation:
    """Target probability with ``feature`` at ``high`` and at ``low``, all else equal."""

    feature: str
    high: float
    low: float
    p_high: float
    p_low: float
    separation: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PathwayTest:
    """Separation before and after ablating ``neurons``, against random same-layer controls.

    ``curve`` has ``x`` (feature values) and the target probability ``before`` and ``after``.
    """

    feature: str
    mode: str
    neurons: list[str]
    before: Separation
    after: Separation
    controls: list[float]
    control_neurons: list[list[str]]
    control_mean: float
    control_sd: float
    curve: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(adapter: Any) -> None:
    if adapter.modality != "tabular":
        raise TwopathError("behavioural tests vary one feature of a tabular row; this is a text model")


def _target(adapter: Any, target: str | int | None) -> int:
    """The label index explained: ``target``, or by default the last label (``approved``)."""
    return len(adapter.labels) - 1 if target is None else int(adapter.label_index(target))


def probabilities(adapter: Any, rows: Any, edits: Sequence[Edit] | None = None,
                  target: str | int | None = None) -> np.ndarray:
    """Target probability for each raw row, with ``edits`` (e.g. from ``ablate``) applied to every row."""
    _check(adapter)
    x = adapter.transform(rows)
    every_row = [Edit(r, e.component, e.value) for r in range(len(x)) for e in edits or ()]
    with torch.no_grad(), intervene(adapter, every_row):
        logits = adapter.run({"x": x})
    return torch.softmax(logits.float(), -1)[:, _target(adapter, target)].double().numpy()


def score_separation(adapter: Any, applicant: Mapping[str, Any], feature: str = "credit_score",
                     high: float = 720, low: float = 600, edits: Sequence[Edit] | None = None,
                     target: str | int | None = None) -> Separation:
    """Approval probability with ``feature`` at ``high`` and at ``low``, and the difference."""
    rows = [{**applicant, feature: high}, {**applicant, feature: low}]
    p_high, p_low = probabilities(adapter, rows, edits, target)
    return Separation(feature, float(high), float(low), float(p_high), float(p_low), float(p_high - p_low))


def separations(adapter: Any, applicant: Mapping[str, Any], edit_sets: Sequence[Sequence[Edit]],
                feature: str = "credit_score", high: float = 720, low: float = 600,
                target: str | int | None = None) -> list[float]:
    """:func:`score_separation` under each set of edits, for all sets in one forward pass: rows
    ``2g`` and ``2g + 1`` hold the applicant at ``high`` and ``low`` under the ``g``-th set."""
    _check(adapter)
    if not edit_sets:
        return []
    x = adapter.transform([{**applicant, feature: value} for _ in edit_sets for value in (high, low)])
    every_row = [Edit(2 * g + r, e.component, e.value) for g, edits in enumerate(edit_sets)
                 for r in (0, 1) for e in edits]
    with torch.no_grad(), intervene(adapter, every_row):
        logits = adapter.run({"x": x})
    p = torch.softmax(logits.float(), -1)[:, _target(adapter, target)].double().numpy()
    return [float(p[2 * g] - p[2 * g + 1]) for g in range(len(edit_sets))]


def random_controls(adapter: Any, neurons: Sequence[Component], rng: np.random.Generator) -> list[Component]:
    """As many random neurons per layer as ``neurons`` has there, avoiding ``neurons`` if possible."""
    chosen = []
    targets = set(neurons)
    for layer in sorted({n.layer for n in neurons}):
        count = sum(n.layer == layer for n in neurons)
        everyone = [Component("neuron", layer, i) for i in range(adapter.widths[layer])]
        pool = [c for c in everyone if c not in targets]
        pool = pool if len(pool) >= count else everyone
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), size=count, replace=False))]
    return chosen


def pathway_ablation_test(adapter: Any, applicant: Mapping[str, Any], neurons: Sequence[Component],
                          n_controls: int = 20, seed: int = 0, mode: str = "mean",
                          feature: str = "credit_score", high: float = 720, low: float = 600,
                          curve: Sequence[float] = CURVE, target: str | int | None = None) -> PathwayTest:
    """Does ablating ``neurons`` remove the separation, more than ablating random neurons does?"""
    _check(adapter)
    neurons = list(neurons)
    if not neurons or any(n.kind != "neuron" for n in neurons):
        raise TwopathError("the pathway must be a non-empty list of neuron components (e.g. L2N5)")
    layers = sorted({n.layer for n in neurons})
    pool = [Component("neuron", layer, i) for layer in layers for i in range(adapter.widths[layer])]
    unknown = [str(n) for n in neurons if n not in pool]
    if unknown:
        raise TwopathError(f"no such neuron(s) {unknown} in this model")
    edit = {e.component: e for e in ablate(adapter, pool, mode)}

    def separation(group: Sequence[Component] = ()) -> Separation:
        return score_separation(adapter, applicant, feature, high, low, [edit[c] for c in group], target)

    rng = np.random.default_rng(seed)
    control_sets = [random_controls(adapter, neurons, rng) for _ in range(n_controls)]
    controls = [separation(group).separation for group in control_sets]
    rows = [{**applicant, feature: v} for v in curve]
    return PathwayTest(
        feature=feature, mode=mode, neurons=[str(n) for n in neurons],
        before=separation(), after=separation(neurons), controls=controls,
        control_neurons=[[str(c) for c in group] for group in control_sets],
        control_mean=float(np.mean(controls)) if controls else float("nan"),
        control_sd=float(np.std(controls, ddof=1)) if len(controls) > 1 else 0.0,
        curve={"x": [float(v) for v in curve],
               "before": probabilities(adapter, rows, None, target).tolist(),
               "after": probabilities(adapter, rows, [edit[c] for c in neurons], target).tolist()},
    )
