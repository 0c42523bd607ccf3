"""The aggregate report of ``twopath evaluate``, built from the store alone.

:func:`write_report` reads every shard of a store (no model needed: the store holds every
number), aggregates with :func:`twopath.evaluation.summarize` and writes, each atomically:

* ``summary.json`` — the summary with the store's manifest (model hash, settings, seed);
* ``report.md`` — the same as readable tables: faithfulness (mean ± sd) beside the random-order
  controls, agreement between input methods, top component vs top unit, the components and the
  words or features most often ranked first, accuracy and gold × predicted counts when a label
  column was given, and the failures with their reasons;
* ``examples.csv`` — one row per example (prediction, top unit, top component, status).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from twopath.datasets.store import Store, write_atomic


def write_report(store: Store) -> dict[str, Path]:
    """Aggregate the store and write ``summary.json``, ``report.md`` and ``examples.csv``."""
    from twopath.evaluation import summarize

    tables = store.read()
    summary = summarize(tables)
    document = {"manifest": store.manifest, "summary": summary}
    paths = {"json": store.root / "summary.json", "md": store.root / "report.md", "csv": store.root / "examples.csv"}
    write_atomic(paths["json"], json.dumps(document, indent=2, sort_keys=True, default=_json).encode())
    write_atomic(paths["md"], markdown(summary, store.manifest).encode())
    write_atomic(paths["csv"], tables["examples"].to_csv(index=False).encode())
    return paths


def _json(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _pm(mean: float, sd: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.3f} ± {sd:.3f}" if sd == sd else f"{mean:.3f}"


def _cell(value: Any) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(summary: dict[str, Any], manifest: dict[str, Any]) -> str:
    settings = manifest.get("settings", {})
    n, failed = summary["n_examples"], summary.get("n_failed", 0)
    parts = [f"# twopath evaluate: {settings.get('model_name', 'model')}",
             f"{n} examples explained at their predicted label, {failed} failed. Model hash "
             f"`{settings.get('model_hash')}`, seed {settings.get('seed')}, settings hash `{manifest.get('settings_hash')}`."]
    metrics = ("aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency")
    parts += ["## Faithfulness", "Mean ± sd over the examples; a ranking is worth something only where it beats the "
              "random-order control of its path. Higher is better except sufficiency.",
              _table(["path", "method", *metrics],
                     [[r["path"], r["method"], *[_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]]
                      for r in summary["faithfulness"]])]
    if summary["agreement"]:
        parts += ["## Agreement between input methods", "Spearman ρ of the unit scores, mean ± sd.",
                  _table(["pair", "spearman"], [[r["pair"], _pm(r["spearman_mean"], r["spearman_sd"])]
                                                 for r in summary["agreement"]])]
    insight = summary["insight"]
    parts += ["## Top component vs top unit", "Drop in target probability when the internal path's top component "
              "is mean-ablated vs when the input path's top unit is deleted.",
              _table(["top unit deleted", "top component ablated", "share where the component matters more"],
                     [[_pm(insight["top_unit_drop_mean"], insight["top_unit_drop_sd"]),
                       _pm(insight["top_component_drop_mean"], insight["top_component_drop_sd"]),
                       insight["share_component_larger"]]])]
    if summary.get("top_components"):
        parts += ["## Components most often ranked first (ablation)",
                  _table(["component", "examples", "share"], [[r["name"], r["count"], r["share"]]
                                                              for r in summary["top_components"]])]
    if summary.get("top_units"):
        parts += ["## Words or features most often ranked first",
                  _table(["method", "unit", "examples", "share"], [[r["method"], r["name"], r["count"], r["share"]]
                                                                  for r in summary["top_units"]])]
    labels = summary.get("labels")
    if labels:
        parts += ["## Gold labels", f"Accuracy {labels['accuracy']:.3f} over {labels['n_labelled']} labelled examples; "
                  f"{labels['explained_at_gold']} were explained at their gold label (predicted = gold), "
                  f"{labels['explained_at_other_label']} at another label.",
                  _table(["gold", "predicted", "examples"], [[r["gold"], r["predicted"], r["count"]]
                                                             for r in labels["confusion"]])]
    if summary.get("failures"):
        parts += ["## Failures", "Examples that could not be explained; they are skipped, never guessed.",
                  _table(["reason", "examples"], [[r["reason"], r["count"]] for r in summary["failures"]])]
    return "\n\n".join(parts) + "\n"
