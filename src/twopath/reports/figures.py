"""Figures as scikit-learn-style Display objects.

Each figure is built from a result with ``XDisplay.from_result(example_result)`` and drawn with
``.plot(ax=None)``, so the same figure can go into a notebook, a slide or the HTML report. Colours
are colour-blind safe: the input path is blue, the internal path green (as in the two-path
diagram), and signed values use the diverging ``RdBu`` palette (red = against the target,
blue = toward it).
"""

from __future__ import annotations

import base64
import io
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from twopath.types import ExampleResult

INPUT_BLUE = "#2b6cb0"
INTERNAL_GREEN = "#2f855a"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(ax: Any, size: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    _, ax = _plt().subplots(figsize=size)
    return ax


def to_png_base64(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class AttributionBarsDisplay:
    """Signed scores of every input-path method, side by side per unit."""

    frame: pd.DataFrame
    output: str

    @classmethod
    def from_result(cls, result: ExampleResult) -> AttributionBarsDisplay:
        frame = pd.concat([a.to_frame() for a in result.attributions], ignore_index=True)
        output = result.attributions[0].meta.get("output", "logit_diff") if result.attributions else ""
        return cls(frame, output)

    def plot(self, ax: Any = None) -> Any:
        import seaborn as sns

        first = self.frame["method"].iloc[0]
        labels = list(self.frame.loc[self.frame["method"] == first, "unit"])
        ax = _axes(ax, (max(6.0, 0.9 * len(labels) + 2), 3.6))
        frame = self.frame.assign(unit_pos=self.frame.groupby("method").cumcount())
        sns.barplot(data=frame, x="unit_pos", y="score", hue="method", ax=ax, palette="colorblind")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlabel("")
        ax.set_ylabel(f"attribution ({self.output})")
        ax.set_title("Input path: attribution per unit, all methods")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
        return ax


@dataclass
class AblationHeatmapDisplay:
    """Ablation effect per component: layer × head (text) or layer × neuron (MLP)."""

    matrix: pd.DataFrame
    method: str
    metric: str

    @classmethod
    def from_result(cls, result: ExampleResult, method: str | None = None) -> AblationHeatmapDisplay:
        candidates = [loc for loc in result.localizations if loc.method in ("head_ablation", "neuron_ablation")]
        loc = result.localization(method) if method else candidates[0]
        rows = [{"layer": c.layer, "index": c.index, "effect": e} for c, e in zip(loc.components, loc.effects, strict=True)]
        matrix = pd.DataFrame(rows).pivot(index="layer", columns="index", values="effect")
        return cls(matrix, loc.method, loc.metric)

    def plot(self, ax: Any = None) -> Any:
        import seaborn as sns

        ax = _axes(ax, (max(5.0, 0.28 * self.matrix.shape[1] + 2), 0.45 * self.matrix.shape[0] + 1.6))
        limit = float(np.nanmax(np.abs(self.matrix.to_numpy()))) or 1.0
        annotate = self.matrix.size <= 100
        sns.heatmap(self.matrix, cmap="RdBu", center=0, vmin=-limit, vmax=limit, ax=ax, annot=annotate,
                    fmt=".2f", annot_kws={"fontsize": 7}, cbar_kws={"label": self.metric})
        kind = "head" if self.method == "head_ablation" else "neuron"
        ax.set_xlabel(kind)
        ax.set_ylabel("layer")
        ax.set_title(f"Internal path: {self.method.replace('_', ' ')} (effect on the target)")
        return ax


@dataclass
class PatchingDisplay:
    """Activation patching: layer × position (text) or per-layer flips (MLP)."""

    matrix: pd.DataFrame | None
    layers: list[dict[str, Any]] | None
    direction: str

    @classmethod
    def from_result(cls, result: ExampleResult) -> PatchingDisplay:
        loc = result.localization("activation_patching")
        if "layers" in loc.meta:
            return cls(None, list(loc.meta["layers"]), loc.meta["direction"])
        tokens = loc.meta.get("tokens", [])
        corrupted = loc.meta.get("corrupted_tokens", tokens)
        rows = [{"layer": c.layer, "position": c.position, "effect": e}
                for c, e in zip(loc.components, loc.effects, strict=True) if c.kind == "resid"]
        matrix = pd.DataFrame(rows).pivot(index="layer", columns="position", values="effect")
        labels = [t if t == u else f"{t}/{u}" for t, u in zip(tokens, corrupted, strict=False)]
        matrix.columns = [f"{p}:{labels[p]}" if p < len(labels) else str(p) for p in matrix.columns]
        return cls(matrix, None, loc.meta["direction"])

    def plot(self, ax: Any = None) -> Any:
        import seaborn as sns

        if self.matrix is not None:
            ax = _axes(ax, (max(6.0, 0.7 * self.matrix.shape[1] + 2), 0.5 * self.matrix.shape[0] + 2))
            sns.heatmap(self.matrix, cmap="Greens", vmin=0, vmax=1, ax=ax, annot=True, fmt=".2f",
                        annot_kws={"fontsize": 7}, cbar_kws={"label": "normalized logit diff (0 corrupted, 1 clean)"})
            ax.set_xlabel("position: clean token / corrupted token")
            ax.set_ylabel("residual stream after layer")
            ax.set_xticklabels(ax.get_xticklabels(), rotation=40, ha="right")
            ax.set_title(f"Internal path: activation patching ({self.direction})")
            return ax
        assert self.layers is not None
        ax = _axes(ax, (6.5, 3.2))
        layers = [f"L{x['layer']}" for x in self.layers]
        counts = [x["neurons_to_flip"] or 0 for x in self.layers]
        widths = [x["width"] for x in self.layers]
        ax.bar(layers, widths, color="#d9d9d9", label="layer width")
        ax.bar(layers, counts, color=INTERNAL_GREEN, label="neurons patched until the decision flips")
        for i, x in enumerate(self.layers):
            if x["neurons_to_flip"] is None:
                ax.text(i, 1, "no flip", ha="center", fontsize=8)
        ax.set_ylabel("neurons")
        ax.set_title(f"Patching from the contrast applicant ({self.direction}), per hidden layer")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
        return ax


@dataclass
class AgreementDisplay:
    """Spearman rank correlation between every pair of attribution methods."""

    matrix: pd.DataFrame

    @classmethod
    def from_result(cls, result: ExampleResult) -> AgreementDisplay:
        from twopath.comparisons.agreement import agreement_matrix

        return cls(agreement_matrix(_table(result, "agreement")))

    def plot(self, ax: Any = None) -> Any:
        import seaborn as sns

        ax = _axes(ax, (4.8, 3.8))
        sns.heatmap(self.matrix, cmap="RdBu", vmin=-1, vmax=1, annot=True, fmt=".2f", ax=ax,
                    cbar_kws={"label": "Spearman ρ"})
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_title("Agreement between input-path methods")
        return ax


@dataclass
class DeletionDisplay:
    """Probability drop when removing top-k units (input) vs ablating top-k components (internal)."""

    frame: pd.DataFrame

    @classmethod
    def from_result(cls, result: ExampleResult) -> DeletionDisplay:
        return cls(_table(result, "deletion"))

    def plot(self, ax: Any = None) -> Any:
        import seaborn as sns

        ax = _axes(ax, (6.5, 3.4))
        sns.lineplot(data=self.frame, x="k", y="drop", hue="method", style="path", markers=True, ax=ax)
        ax.set_xticks(sorted(self.frame["k"].unique()))
        ax.set_xlabel("k (units removed / components ablated)")
        ax.set_ylabel("drop in target probability")
        ax.set_title("Deletion check: both paths, same metric")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
        return ax


@dataclass
class TwoPathDisplay:
    """The two-path diagram drawn with this example's actual top units and components."""

    units: list[tuple[str, float]]
    components: list[tuple[str, float]]
    prediction: str
    input_label: str

    @classmethod
    def from_result(cls, result: ExampleResult, k: int = 3) -> TwoPathDisplay:
        units = result.attribution("shap").top(k) if any(a.method == "shap" for a in result.attributions) else result.attributions[0].top(k)
        ablations = [loc for loc in result.localizations if loc.method in ("head_ablation", "neuron_ablation")]
        components = ablations[0].top(k) if ablations else []
        label = f"{result.prediction['label']} (p={result.prediction['probability']:.2f})"
        raw = result.example.raw
        text = raw if isinstance(raw, str) else ", ".join(f"{k}={v}" for k, v in raw.items())
        return cls(units, components, label, text if len(text) < 70 else text[:67] + "...")

    def plot(self, ax: Any = None) -> Any:
        from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

        ax = _axes(ax, (10, 4.2))
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 6)
        ax.axis("off")

        def box(x: float, y: float, w: float, h: float, text: str, color: str) -> None:
            ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.1", facecolor="white", edgecolor=color, linewidth=2))
            ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8)

        def arrow(x0: float, y0: float, x1: float, y1: float, color: str) -> None:
            ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=15, color=color, linewidth=2))

        import textwrap

        lines = textwrap.wrap(self.input_label, 24)
        shown = lines[:3] + (["…"] if len(lines) > 3 else [])
        box(0.1, 1.9, 2.6, 2.2, "Input\n" + "\n".join(shown), "#4a5568")
        box(7.6, 2.4, 2.2, 1.2, "Output\n" + self.prediction, "#4a5568")
        box(4.0, 0.3, 2.2, 1.5, "Model internals\n" + "\n".join(f"{c} {e:+.2f}" for c, e in self.components), INTERNAL_GREEN)
        arrow(2.85, 3.5, 7.45, 3.5, INPUT_BLUE)
        ax.text(5.0, 4.55, "Input path (SHAP): " + ",  ".join(f"{u} {s:+.2f}" for u, s in self.units),
                ha="center", color=INPUT_BLUE, fontsize=10)
        ax.text(5.0, 5.3, "inputs → outputs: which units pushed the prediction (correlational)",
                ha="center", color=INPUT_BLUE, fontsize=9, style="italic")
        arrow(1.4, 1.75, 3.85, 1.05, INTERNAL_GREEN)
        arrow(6.35, 1.05, 8.7, 2.25, INTERNAL_GREEN)
        ax.text(5.1, 2.55, "Internal path (ablation):\nwhich components cause it (interventions)",
                ha="center", va="center", color=INTERNAL_GREEN, fontsize=9, style="italic")
        return ax


@dataclass
class PathwayCurveDisplay:
    """Approval probability against credit score, before and after ablating the pathway."""

    x: list[float]
    before: list[float]
    after: list[float]
    layer: int
    marks: tuple[float, float] = (600.0, 720.0)

    @classmethod
    def from_result(cls, result: ExampleResult) -> PathwayCurveDisplay:
        mech = _table(result, "mechanisms")
        curve = mech["pathway_curve"]
        return cls(list(curve["x"]), list(curve["before"]), list(curve["after"]), int(mech["pathway_layer"]))

    def plot(self, ax: Any = None) -> Any:
        ax = _axes(ax, (6.5, 3.4))
        ax.plot(self.x, self.before, color=INPUT_BLUE, marker="o", markersize=3, label="model as trained")
        ax.plot(self.x, self.after, color=INTERNAL_GREEN, marker="s", markersize=3, label=f"credit pathway of L{self.layer} ablated")
        for mark in self.marks:
            ax.axvline(mark, color="#a0aec0", linestyle=":", linewidth=1)
        ax.axhline(0.5, color="black", linewidth=0.6)
        ax.set_xlabel("credit score (all other features of the seed applicant fixed)")
        ax.set_ylabel("approval probability")
        ax.set_ylim(0, 1)
        ax.set_title("720 vs 600: does the model still tell them apart?")
        ax.legend(fontsize=8)
        return ax


@dataclass
class LayerEncodingDisplay:
    """Best neuron-cluster R² per hidden layer and feature."""

    matrix: pd.DataFrame

    @classmethod
    def from_result(cls, result: ExampleResult) -> LayerEncodingDisplay:
        frame = pd.DataFrame(_table(result, "mechanisms")["layer_encoding"])
        return cls(frame.pivot(index="layer", columns="feature", values="r2"))

    def plot(self, ax: Any = None) -> Any:
        import seaborn as sns

        ax = _axes(ax, (5.5, 3.4))
        sns.heatmap(self.matrix, cmap="Greens", vmin=0, vmax=1, annot=True, fmt=".2f", ax=ax, cbar_kws={"label": "R²"})
        ax.set_ylabel("hidden layer")
        ax.set_xlabel("")
        ax.set_xticklabels([t.get_text().replace("+", "+\n") for t in ax.get_xticklabels()], rotation=0)
        ax.set_title("What the neuron clusters of each layer encode")
        return ax


@dataclass
class FaithfulnessDisplay:
    """Deletion curves of both paths against their random-order controls."""

    rows: list[dict[str, Any]]

    @classmethod
    def from_result(cls, result: ExampleResult) -> FaithfulnessDisplay:
        rows = _table(result, "faithfulness")
        if not rows:
            raise KeyError("faithfulness")
        return cls(list(rows))

    def plot(self, ax: Any = None) -> Any:
        plt = _plt()
        if ax is None:
            _, axes = plt.subplots(1, 2, figsize=(11, 3.6))
        else:
            axes = [ax, ax]
        palette = dict(zip(dict.fromkeys(r["method"] for r in self.rows), itertools.cycle(_colors())))  # noqa: B905
        for panel, path in zip(axes, ("input", "internal"), strict=True):
            for row in (r for r in self.rows if r["path"] == path):
                random = row["method"] == "random order"
                ks = row.get("curve_k") or range(len(row["deletion_curve"]))  # long inputs: a grid of k
                panel.plot(list(ks), row["deletion_curve"], label=row["method"],
                           color="black" if random else palette[row["method"]], linestyle="--" if random else "-",
                           marker="" if random else "o", markersize=3)
            panel.set_xlabel("units removed" if path == "input" else "components mean-ablated")
            panel.set_ylabel("target probability")
            panel.set_title(f"Deletion curves: {path} path")
            panel.legend(fontsize=7)
        return axes[0]


@dataclass
class BridgeDisplay:
    """Units × top components: how much each input unit drives each component."""

    matrix: pd.DataFrame
    share: float
    control: float | None

    @classmethod
    def from_result(cls, result: ExampleResult) -> BridgeDisplay:
        bridge = _table(result, "bridges")
        if not bridge:
            raise KeyError("bridges")
        m = bridge["map"]
        return cls(pd.DataFrame(m["values"], index=m["units"], columns=m["components"]),
                   bridge["share_on_top_units"], bridge["control_mean"])

    def plot(self, ax: Any = None) -> Any:
        import seaborn as sns

        ax = _axes(ax, (0.9 * self.matrix.shape[1] + 3, 0.35 * self.matrix.shape[0] + 1.8))
        limit = float(np.abs(self.matrix.to_numpy()).max()) or 1.0
        sns.heatmap(self.matrix, cmap="RdBu", center=0, vmin=-limit, vmax=limit, annot=True, fmt=".2g",
                    annot_kws={"fontsize": 7}, ax=ax, cbar_kws={"label": "IG of the component's contribution"})
        control = "n/a" if self.control is None else f"{self.control:.2f}"
        ax.set_title(f"Bridges: input units → top components (share on top units {self.share:.2f}, random components {control})",
                     fontsize=9)
        return ax


def _colors() -> list[Any]:
    import seaborn as sns

    return list(sns.color_palette("colorblind", 10))


def _table(result: ExampleResult, name: str) -> Any:
    """A comparison table of the result; ``KeyError`` when it was not computed (or is empty)."""
    table = result.tables.get(name)
    if table is None or (hasattr(table, "__len__") and len(table) == 0):
        raise KeyError(name)
    return table


@dataclass
class LensDisplay:
    """The decision read after every layer (logit lens), with the clean output marked."""

    values: list[float]
    clean: float
    metric: str

    @classmethod
    def from_result(cls, result: ExampleResult) -> LensDisplay:
        loc = result.localization("logit_lens")
        return cls([float(loc.meta["embeddings"]), *map(float, loc.effects)], float(loc.clean or 0.0), loc.metric)

    def plot(self, ax: Any = None) -> Any:
        ax = _axes(ax, (6.0, 3.2))
        xs = list(range(len(self.values)))
        ax.plot(xs, self.values, marker="o", color=_colors()[0], label="read after the layer")
        ax.axhline(self.clean, color=_colors()[3], linestyle="--", label="the model's output")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(xs, ["emb", *[f"L{i}" for i in range(len(xs) - 1)]])
        ax.set_ylabel(self.metric.replace("_", " "))
        ax.set_title("Logit lens: where the decision appears")
        ax.legend(loc="best", fontsize=8)
        return ax


@dataclass
class DLADisplay:
    """Top heads and MLPs by their direct share of the logit difference."""

    labels: list[str]
    shares: list[float]

    @classmethod
    def from_result(cls, result: ExampleResult, k: int = 12) -> DLADisplay:
        loc = result.localization("direct_logit_attribution")
        order = loc.ranking()[:k]
        return cls([str(loc.components[i]) for i in order], [float(loc.effects[i]) for i in order])

    def plot(self, ax: Any = None) -> Any:
        ax = _axes(ax, (6.0, 0.3 * len(self.labels) + 1.2))
        colors = [_colors()[0] if v >= 0 else _colors()[3] for v in self.shares]
        ax.barh(self.labels[::-1], self.shares[::-1], color=colors[::-1])
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("direct share of the logit difference")
        ax.set_title("Direct logit attribution: top heads and MLPs")
        return ax


@dataclass
class AgreementAttentionDisplay:
    """The named agreement head's attention from the verb position over the seed sentence."""

    head: str
    tokens: list[str]
    weights: list[float]

    @classmethod
    def from_result(cls, result: ExampleResult) -> AgreementAttentionDisplay:
        att = _table(result, "mechanisms")["agreement_attention"]
        return cls(str(att["head"]), list(att["tokens"]), [float(w) for w in att["weights"]])

    def plot(self, ax: Any = None) -> Any:
        ax = _axes(ax, (0.6 * len(self.tokens) + 2.0, 3.0))
        ax.bar(range(len(self.tokens)), self.weights, color=INTERNAL_GREEN)
        ax.set_xticks(range(len(self.tokens)), self.tokens, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("attention weight")
        ax.set_title(f"{self.head}: attention from the verb position (the last token)", fontsize=9)
        return ax


def report_figures(result: ExampleResult) -> dict[str, str]:
    """Every figure of one example as base64 PNG, keyed by name."""
    _plt()  # the Agg backend: no display needed
    figures: dict[str, str] = {}
    builders: list[tuple[str, Any]] = [
        ("two_path", lambda: TwoPathDisplay.from_result(result)),
        ("attributions", lambda: AttributionBarsDisplay.from_result(result)),
        ("ablation", lambda: AblationHeatmapDisplay.from_result(result)),
        ("patching", lambda: PatchingDisplay.from_result(result)),
        ("agreement", lambda: AgreementDisplay.from_result(result)),
        ("deletion", lambda: DeletionDisplay.from_result(result)),
        ("pathway", lambda: PathwayCurveDisplay.from_result(result)),
        ("layer_encoding", lambda: LayerEncodingDisplay.from_result(result)),
        ("faithfulness", lambda: FaithfulnessDisplay.from_result(result)),
        ("bridges", lambda: BridgeDisplay.from_result(result)),
        ("logit_lens", lambda: LensDisplay.from_result(result)),
        ("direct_logit_attribution", lambda: DLADisplay.from_result(result)),
        ("agreement_attention", lambda: AgreementAttentionDisplay.from_result(result)),
    ]
    for name, build in builders:
        try:
            display = build()
        except (KeyError, IndexError):
            continue  # the method behind this figure was not run
        ax = display.plot()
        figures[name] = to_png_base64(ax.figure)
    return figures


@dataclass
class EditDisplay:
    """Localized edits (issue 15): forget vs maintain, one point per localization; random
    components as their mean with error bars (one sd over seeds); an arrow to the gap left after
    relearning."""

    summary: pd.DataFrame
    task: str
    budget: int

    @classmethod
    def from_result(cls, comparison: Any) -> EditDisplay:
        """From a :class:`twopath.editing.EditComparison`."""
        return cls(comparison.summary(), comparison.task, comparison.budget)

    @classmethod
    def from_section(cls, edit: dict[str, Any]) -> EditDisplay:
        """From a report's edit section (``Report.edit``: :mod:`twopath.editing.section`)."""
        summary = pd.DataFrame(edit["summary"]).astype({"forget_gap": float, "heldout_accuracy": float})
        if "relearned_gap" in summary:
            summary["relearned_gap"] = summary["relearned_gap"].astype(float)
        return cls(summary, edit["task"], int(edit["budget"]))

    def plot(self, ax: Any = None) -> Any:
        ax = _axes(ax, (6.4, 4.4))
        frame = self.summary
        colors = itertools.cycle(_colors())
        for _, row in frame.iterrows():
            color = next(colors)
            x = row["forget_gap"]
            y = row["heldout_accuracy"]
            xerr = row.get("forget_gap_sd", 0.0) if row["n_runs"] > 1 else None
            yerr = row.get("heldout_accuracy_sd", 0.0) if row["n_runs"] > 1 else None
            label = row["localization"] + ("" if row["budget_matched"] else " (budget not matched)")
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color=color, label=label, capsize=3)
            if "relearned_gap" in frame and np.isfinite(row["relearned_gap"]):
                ax.annotate("", xy=(row["relearned_gap"], y), xytext=(x, y),
                            arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.5})
        ax.set_xlabel("held-out counterfactual gap (forget; lower is better) → after relearning")
        ax.set_ylabel("held-out accuracy (maintain)")
        ax.set_title(f"{self.task}: localized edits at {self.budget} parameters", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
        return ax


def edit_figure(edit: dict[str, Any] | None) -> str | None:
    """The edit section's forget-vs-maintain figure as base64 PNG (``None`` without a section)."""
    if not edit or not edit.get("summary"):
        return None
    _plt()
    return to_png_base64(EditDisplay.from_section(edit).plot().figure)
