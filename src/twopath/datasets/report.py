"""The aggregate report of ``twopath evaluate``, built from the store alone.

:func:`write_report` reads every shard of a store (no model needed: the store holds every
number), aggregates with :func:`twopath.evaluation.summarize` and writes, each atomically:

* ``summary.json`` — the summary with the store's manifest (model hash, settings, seed);
* ``report.md`` and ``report.html`` — the same as readable tables: faithfulness (mean ± sd) beside the random-order
  controls, agreement between input methods, top component vs top unit, the components and the
  words or features most often ranked first, accuracy and gold × predicted counts when a label
  column was given — and, for the examples whose gold label was not predicted, their second
  explanation at the gold label (faithfulness at each label over the same examples, and how much
  the two explanations share) — and the failures with their reasons;
* ``examples.csv`` — one row per example (prediction, top unit, top component, status);
* ``components.png`` — a heatmap over layer × head (or layer × neuron): how often each
  component is ranked first by ablation, beside its mean absolute effect.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from twopath.datasets.store import Store, write_atomic
from twopath.evaluation import DATASET_PROTOCOL


def write_report(store: Store) -> dict[str, Path]:
    """Aggregate the store and write ``summary.json``, ``report.md`` and ``examples.csv``."""
    from twopath.evaluation import at_predicted, summarize

    tables = store.read()
    summary = summarize(tables)
    document = {"manifest": store.manifest, "summary": summary}
    paths = {"json": store.root / "summary.json", "md": store.root / "report.md", "csv": store.root / "examples.csv"}
    write_atomic(paths["json"], json.dumps(document, indent=2, sort_keys=True, default=_json).encode())
    write_atomic(paths["md"], markdown(summary, store.manifest).encode())
    paths["html"] = store.root / "report.html"
    from twopath.reports.escape import csv_cell

    write_atomic(paths["csv"], tables["examples"].astype(object).map(csv_cell).to_csv(index=False).encode())
    figure = heatmap_png(at_predicted(tables)["components"], tables["examples"])
    if figure is not None:
        paths["png"] = store.root / "components.png"
        write_atomic(paths["png"], figure)
    write_atomic(paths["html"], html(summary, store.manifest, figure).encode())
    return paths


def component_grids(components: Any, examples: Any) -> tuple[str, Any, Any] | None:
    """(kind, share ranked first, mean |effect|) as layer × index arrays, ``None`` if empty."""
    import numpy as np

    from twopath.types import Component

    ok = set(examples.loc[examples["status"] == "ok", "example_id"])
    frame = components[components["example_id"].isin(ok)]
    if frame.empty:
        return None
    parsed = [Component.parse(c) for c in frame["component"]]
    layers = np.array([c.layer for c in parsed])
    index = np.array([c.index if c.index is not None else 0 for c in parsed])
    first = np.zeros((layers.max() + 1, index.max() + 1))
    effect = np.zeros_like(first)
    count = np.zeros_like(first)
    np.add.at(first, (layers, index), (frame["rank"].to_numpy() == 0).astype(float))
    np.add.at(effect, (layers, index), np.abs(frame["effect"].to_numpy(float)))
    np.add.at(count, (layers, index), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_effect = np.where(count > 0, effect / count, np.nan)
    return parsed[0].kind, first / max(1, len(ok)), mean_effect


def heatmap_png(components: Any, examples: Any) -> bytes | None:
    """The two heatmaps as PNG bytes (rendered off-screen, once)."""
    grids = component_grids(components, examples)
    if grids is None:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind, first, effect = grids
    width = min(14.0, 3.0 + 0.35 * first.shape[1])
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, 1.2 + 0.45 * first.shape[0]), squeeze=False)
    for ax, grid, title in ((axes[0, 0], first, "share of examples where it is ranked first"),
                            (axes[0, 1], effect, "mean |effect| when ablated")):
        image = ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_xlabel(kind)
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _json(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _pm(mean: float, sd: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.3f} ± {sd:.3f}" if sd == sd else f"{mean:.3f}"


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


Section = tuple[str, str, list[str], list[list[Any]]]  # title, about, header, rows


def sections(summary: dict[str, Any], manifest: dict[str, Any]) -> tuple[str, str, list[Section]]:
    """(title, intro, sections) of the report, rendered as Markdown and HTML alike."""
    settings = manifest.get("settings", {})
    n, failed = summary["n_examples"], summary.get("n_failed", 0)
    title = f"twopath evaluate: {settings.get('model_name', 'model')}"
    intro = (f"{n} examples explained at their predicted label, {failed} failed. Model hash "
             f"{settings.get('model_hash')}, seed {settings.get('seed')}, settings hash {manifest.get('settings_hash')}.")
    metrics = ("aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency")
    out: list[Section] = [(
        "Faithfulness", "Mean ± sd over the examples; a ranking is worth something only where it beats the "
        f"random-order control of its path. Higher is better except sufficiency. The {DATASET_PROTOCOL}.",
        ["path", "method", *metrics],
        [[r["path"], r["method"], *[_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]] for r in summary["faithfulness"]])]
    if summary["agreement"]:
        out.append(("Agreement between input methods", "Spearman ρ of the unit scores, mean ± sd.", ["pair", "spearman"],
                    [[r["pair"], _pm(r["spearman_mean"], r["spearman_sd"])] for r in summary["agreement"]]))
    insight = summary["insight"]
    out.append(("Top component vs top unit", "Drop in target probability when the internal path's top component "
                "is mean-ablated vs when the input path's top unit is deleted.",
                ["top unit deleted", "top component ablated", "share where the component matters more"],
                [[_pm(insight["top_unit_drop_mean"], insight["top_unit_drop_sd"]),
                  _pm(insight["top_component_drop_mean"], insight["top_component_drop_sd"]),
                  insight["share_component_larger"]]]))
    if summary.get("top_components"):
        out.append(("Components most often ranked first (ablation)", "The heatmap over all components: components.png.",
                    ["component", "examples", "share"], [[r["name"], r["count"], r["share"]] for r in summary["top_components"]]))
    if summary.get("top_units"):
        out.append(("Words or features most often ranked first", "Per input method; words lower-cased.",
                    ["method", "unit", "examples", "share"],
                    [[r["method"], r["name"], r["count"], r["share"]] for r in summary["top_units"]]))
    labels = summary.get("labels")
    if labels:
        out.append(("Gold labels", f"Accuracy {labels['accuracy']:.3f} over {labels['n_labelled']} labelled examples; "
                    f"{labels['explained_at_gold']} were explained at their gold label (predicted = gold), "
                    f"{labels['explained_at_other_label']} at another label.", ["gold", "predicted", "examples"],
                    [[r["gold"], r["predicted"], r["count"]] for r in labels["confusion"]]))
    if labels and labels.get("at_gold", {}).get("n_other_label"):
        out += _gold_sections(labels["at_gold"])
    if summary.get("failures"):
        out.append(("Failures", "Examples that could not be explained; they are skipped, never guessed.",
                    ["reason", "examples"], [[r["reason"], r["count"]] for r in summary["failures"]]))
    return title, intro, out


def _gold_sections(gold: dict[str, Any]) -> list[Section]:
    """The examples whose gold label was not predicted, explained at both labels."""
    metrics = ("aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency")
    failed = sum(r["count"] for r in gold["failures"])
    about = (f"{gold['n_other_label']} examples were predicted at another label than their gold one; "
             f"{gold['n_explained']} of them were explained a second time, at the gold label, by the same path"
             + (f" ({failed} could not be: see the failures below)" if failed else "")
             + ". Faithfulness over those examples at each label, mean ± sd (curves in the explained label's "
             "probability).")
    faith = [[r["target_kind"], r["path"], r["method"], *[_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]]
             for r in gold["faithfulness"]]
    out: list[Section] = [("Explained at the gold label", about, ["label", "path", "method", *metrics], faith)]
    if gold["overlap"]:
        out.append(("Predicted vs gold explanation", "Per method, over the same examples: the share whose top unit "
                    "(input path) or top component (internal path) is the same at both labels, and Spearman ρ "
                    "between the two explanations' unit scores (mean ± sd; on a two-label model in logit-difference "
                    "space the explanation at the other label is the negation, ρ = −1).",
                    ["path", "method", "examples", "same top", "spearman"],
                    [[r["path"], r["method"], r["n"], r["same_top"],
                      _pm(r["spearman_mean"], r["spearman_sd"]) if r["path"] == "input" else "–"]
                     for r in gold["overlap"]]))
    if gold["failures"]:
        out.append(("Failures at the gold label", "Explained at the predicted label only.", ["reason", "examples"],
                    [[r["reason"], r["count"]] for r in gold["failures"]]))
    return out


def markdown(summary: dict[str, Any], manifest: dict[str, Any]) -> str:
    from twopath.reports.escape import md_text

    title, intro, parts = sections(summary, manifest)
    lines = [f"# {md_text(title)}", md_text(intro)]
    for name, about, header, rows in parts:
        table = ["| " + " | ".join(md_text(h) for h in header) + " |", "|" + "---|" * len(header)]
        table += ["| " + " | ".join(md_text(_cell(v)) for v in row) + " |" for row in rows]
        lines += [f"## {md_text(name)}", md_text(about), "\n".join(table)]
    return "\n\n".join(lines) + "\n"


def html(summary: dict[str, Any], manifest: dict[str, Any], figure: bytes | None) -> str:
    import base64
    from html import escape

    title, intro, parts = sections(summary, manifest)
    body = [f"<h1>{escape(title)}</h1>", f"<p>{escape(intro)}</p>"]
    for name, about, header, rows in parts:
        head = "".join(f"<th>{escape(h)}</th>" for h in header)
        cells = "".join("<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
        body += [f"<h2>{escape(name)}</h2>", f"<p>{escape(about)}</p>", f"<table><tr>{head}</tr>{cells}</table>"]
        if figure is not None and name.startswith("Components"):
            body.append(f'<img alt="component heatmap" src="data:image/png;base64,{base64.b64encode(figure).decode()}">')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
