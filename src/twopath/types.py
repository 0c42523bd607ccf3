"""Core result types shared by both explanation paths.

Everything twopath computes about one decision is keyed by the same :class:`Example` id and the
same target label, so the input path (an :class:`Attribution` over words or features) and the
internal path (a :class:`Localization` over model components) can be put side by side.

Components are named the TransformerLens way, with 0-based indices:

* ``L5H3`` — attention head 3 of layer 5,
* ``L4N17`` — hidden neuron 17 of layer 4 (an MLP hidden layer, or a transformer MLP neuron),
* ``L2.resid@7`` — the residual stream after layer 2 at token position 7,
* ``L3`` — a whole layer (e.g. all neurons of hidden layer 3),
* ``L3.attn`` / ``L3.mlp`` — the attention block (all heads) or MLP block (all neurons) of layer 3.

``str(component)`` gives the label and :meth:`Component.parse` reads it back.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

ComponentKind = Literal["head", "neuron", "resid", "layer", "attn", "mlp"]

_LABEL_RE = re.compile(
    r"^L(?P<layer>\d+)(?:H(?P<head>\d+)|N(?P<neuron>\d+)|\.resid@(?P<pos>\d+)|\.(?P<block>attn|mlp))?$"
)


@dataclass(frozen=True, order=True)
class Component:
    """One internal site of a model: a head, a neuron, a residual position or a whole layer."""

    kind: ComponentKind
    layer: int
    index: int | None = None
    position: int | None = None

    def __post_init__(self) -> None:
        if self.layer < 0:
            raise ValueError(f"component layer must be >= 0, got {self.layer}")
        if self.kind in ("head", "neuron") and (self.index is None or self.index < 0):
            raise ValueError(f"a {self.kind} component needs a non-negative index")
        if self.kind == "resid" and (self.position is None or self.position < 0):
            raise ValueError("a resid component needs a non-negative position")

    def __str__(self) -> str:
        if self.kind == "head":
            return f"L{self.layer}H{self.index}"
        if self.kind == "neuron":
            return f"L{self.layer}N{self.index}"
        if self.kind == "resid":
            return f"L{self.layer}.resid@{self.position}"
        if self.kind in ("attn", "mlp"):
            return f"L{self.layer}.{self.kind}"
        return f"L{self.layer}"

    @classmethod
    def parse(cls, label: str) -> Component:
        """Parse a label such as ``L5H3``, ``L4N17``, ``L2.resid@7`` or ``L3``."""
        match = _LABEL_RE.match(label.strip())
        if match is None:
            raise ValueError(f"not a component label: {label!r} (expected e.g. L5H3, L4N17, L2.resid@7, L3, L3.attn)")
        layer = int(match["layer"])
        if match["head"] is not None:
            return cls("head", layer, int(match["head"]))
        if match["neuron"] is not None:
            return cls("neuron", layer, int(match["neuron"]))
        if match["pos"] is not None:
            return cls("resid", layer, position=int(match["pos"]))
        if match["block"] is not None:
            return cls("attn" if match["block"] == "attn" else "mlp", layer)
        return cls("layer", layer)


@dataclass(frozen=True)
class Example:
    """One input to explain.

    ``raw`` is a sentence (``str``) or a mapping of raw feature name to value (a tabular row in
    the user's own units, e.g. income in ₹). ``target`` is the label whose score is explained;
    ``None`` means "the model's predicted label", resolved by the pipeline.
    """

    id: str
    raw: str | Mapping[str, Any]
    target: str | None = None

    @property
    def is_text(self) -> bool:
        return isinstance(self.raw, str)

    def with_target(self, target: str) -> Example:
        return Example(self.id, self.raw, target)


def _html_rows(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A small escaped HTML table for Jupyter (``_repr_html_``)."""
    def cell(v: Any) -> str:
        return html.escape(f"{v:+.4f}" if isinstance(v, float) else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<p><b>{html.escape(title)}</b></p><table><tr>{head}</tr>{body}</table>"


def _as_float_array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Attribution:
    """Input-path result: one signed score per unit (word or raw feature).

    Scores are in the output space named by ``meta["output"]`` (``logit_diff`` by default: the
    target's log-odds), and ``base_value`` is the output when every unit is absent, where the
    method defines one (SHAP's expected value, IG's baseline output).
    """

    example_id: str
    method: str
    target: str
    units: tuple[str, ...]
    scores: np.ndarray
    base_value: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", tuple(self.units))
        object.__setattr__(self, "scores", _as_float_array(self.scores))
        if self.scores.shape != (len(self.units),):
            raise ValueError(
                f"{self.method}: {len(self.units)} units but scores of shape {self.scores.shape}"
            )

    def ranking(self) -> list[int]:
        """Unit indices from most to least important by absolute score (stable)."""
        return [int(i) for i in np.argsort(-np.abs(self.scores), kind="stable")]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return [(self.units[i], float(self.scores[i])) for i in self.ranking()[:k]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "units": list(self.units),
            "scores": [float(s) for s in self.scores],
            "base_value": None if self.base_value is None else float(self.base_value),
            "meta": dict(self.meta),
        }

    def _repr_html_(self) -> str:
        title = f"{self.method} on {self.example_id} (target {self.target}, {self.meta.get('output', 'logit_diff')})"
        return _html_rows(title, ["unit", "score"], [(u, float(s)) for u, s in zip(self.units, self.scores, strict=True)])

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            {
                "example_id": self.example_id,
                "method": self.method,
                "target": self.target,
                "unit": list(self.units),
                "score": self.scores,
            }
        )


@dataclass(frozen=True)
class Localization:
    """Internal-path result: one effect per component.

    ``effects`` are measured with ``metric`` (e.g. ``logit_diff_drop``: clean target log-odds
    minus the log-odds under the intervention; ``normalized_logit_diff``: 0 = corrupted run,
    1 = clean run). ``clean`` and ``corrupted`` are the reference values of the metric's
    underlying quantity where they exist.
    """

    example_id: str
    method: str
    target: str
    metric: str
    components: tuple[Component, ...]
    effects: np.ndarray
    clean: float | None = None
    corrupted: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        object.__setattr__(self, "effects", _as_float_array(self.effects))
        if self.effects.shape != (len(self.components),):
            raise ValueError(
                f"{self.method}: {len(self.components)} components but effects of shape {self.effects.shape}"
            )

    @property
    def labels(self) -> list[str]:
        return [str(c) for c in self.components]

    @property
    def oriented(self) -> np.ndarray:
        """Signed effects with larger = more important: noising patching reports the normalized
        output left after patching (low = important), so it is flipped to the share removed."""
        return 1.0 - self.effects if self.meta.get("direction") == "noise" else self.effects

    @property
    def importance(self) -> np.ndarray:
        """How much each component matters, larger = more. For ablation, the size of the effect;
        for patching (normalized output, 0 = corrupted, 1 = clean), the share of the
        clean-vs-corrupted gap the site carries: the restored share when denoising, the removed
        share ``1 - effect`` when noising."""
        return self.oriented if self.metric.startswith("normalized") else np.abs(self.effects)

    def ranking(self) -> list[int]:
        """Component indices from most to least important (see :attr:`importance`; stable)."""
        return [int(i) for i in np.argsort(-self.importance, kind="stable")]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return [(str(self.components[i]), float(self.effects[i])) for i in self.ranking()[:k]]

    def subset(self, kind: str) -> Localization:
        """The same result restricted to one kind of component (e.g. the heads of a mixed sweep)."""
        keep = [i for i, c in enumerate(self.components) if c.kind == kind]
        return Localization(self.example_id, self.method, self.target, self.metric,
                            tuple(self.components[i] for i in keep), self.effects[keep],
                            self.clean, self.corrupted, dict(self.meta))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "metric": self.metric,
            "components": self.labels,
            "effects": [float(e) for e in self.effects],
            "clean": None if self.clean is None else float(self.clean),
            "corrupted": None if self.corrupted is None else float(self.corrupted),
            "meta": dict(self.meta),
        }

    def _repr_html_(self) -> str:
        title = f"{self.method} on {self.example_id} (target {self.target}, {self.metric}; top 10 of {len(self.components)})"
        return _html_rows(title, ["component", "effect"], self.top(10))

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            {
                "example_id": self.example_id,
                "method": self.method,
                "target": self.target,
                "component": self.labels,
                "effect": self.effects,
            }
        )


class TwopathError(Exception):
    """A user-facing error: bad input, unknown label, missing model. One line, no traceback."""


@dataclass
class ExampleResult:
    """Both paths on one example: what the reports and report.json are built from."""

    example: Example
    target: str
    prediction: dict[str, Any]
    attributions: list[Attribution]
    localizations: list[Localization]
    corrupted: Example | None = None
    tables: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def attribution(self, method: str) -> Attribution:
        for a in self.attributions:
            if a.method == method:
                return a
        raise KeyError(method)

    def localization(self, method: str) -> Localization:
        for loc in self.localizations:
            if loc.method == method:
                return loc
        raise KeyError(method)

    def _repr_html_(self) -> str:
        raw = self.example.raw if isinstance(self.example.raw, str) else ", ".join(f"{k}={v}" for k, v in self.example.raw.items())
        title = (f"{self.example.id}: {raw} → {self.prediction['label']} (p={self.prediction['probability']:.3f}), "
                 f"target {self.target}")
        rows = [(r["path"], r["method"], r["result_here"]) for r in self.tables.get("side_by_side", [])]
        return _html_rows(title, ["path", "method", "result here"], rows)


@dataclass
class Report:
    """A task's results: model facts, examples and the reproducibility record."""

    task: str
    model: dict[str, Any]
    examples: list[ExampleResult]
    reproducibility: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] | None = None
    #: the localized-edit section (:mod:`twopath.editing.section`), when the task ran it
    edit: dict[str, Any] | None = None
