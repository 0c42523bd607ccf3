"""HTML and Markdown rendering of a report.

The HTML page is one self-contained file: figures are embedded as base64 PNG, there are no
scripts and no external requests, and every user-supplied string (sentences, feature values,
model names) is HTML-escaped — by Jinja2's autoescaping in the template and by pandas'
``to_html(escape=True)`` in the tables.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from twopath import __version__
from twopath.reports.escape import md_text
from twopath.reports.tables import dataset_tables, edit_tables, example_tables
from twopath.types import ExampleResult, Report

#: Which figures go with which table (figure name -> shown above the table of that name).
FIGURES_FOR = {
    "attributions": ["attributions"],
    "head_ablation": ["ablation"],
    "neuron_ablation": ["ablation"],
    "patching_layers": ["patching"],
    "layer_encoding": ["layer_encoding"],
    "pathway": ["pathway"],
    "agreement": ["agreement"],
    "deletion": ["deletion"],
    "faithfulness": ["faithfulness"],
    "bridges": ["bridges"],
    "agreement_heads": ["agreement_attention"],
    "logit_lens": ["logit_lens"],
    "direct_logit_attribution": ["direct_logit_attribution"],
}
_ALT = {"attributions": "attribution bars", "ablation": "ablation heatmap", "patching": "activation patching",
        "layer_encoding": "layer encoding heatmap", "pathway": "720 vs 600 curve", "agreement": "agreement heatmap",
        "deletion": "deletion check", "faithfulness": "deletion curves", "bridges": "bridges heatmap",
        "agreement_attention": "agreement head attention", "logit_lens": "logit lens curve",
        "direct_logit_attribution": "direct logit attribution bars"}


def _color(score: float, limit: float) -> str:
    """Diverging, colour-blind-safe background: blue toward the target, red against."""
    t = max(-1.0, min(1.0, score / limit)) if limit else 0.0
    if t >= 0:
        r, g, b = 255 - 185 * t, 255 - 120 * t, 255 - 20 * t
    else:
        r, g, b = 255 + 20 * t, 255 + 160 * t, 255 + 160 * t
    return f"rgb({int(r)},{int(g)},{int(b)})"


def input_text(raw: Any) -> str:
    return raw if isinstance(raw, str) else ", ".join(f"{k} = {v}" for k, v in raw.items())


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, float_format=lambda v: f"{v:.3f}", na_rep="")


def _blocks(result: ExampleResult, figures: dict[str, str]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    used: set[str] = set()
    for name, (title, about, frame) in example_tables(result).items():
        figs = [f for f in FIGURES_FOR.get(name, []) if f in figures and f not in used]
        used.update(figs)
        blocks.append({"name": name, "title": title, "about": about, "table": _html_table(frame),
                       "figures": [{"alt": _ALT[f], "data": figures[f]} for f in figs]})
        if name == "neuron_ablation" and "patching" in figures and "patching" not in used and result.example.is_text:
            used.add("patching")
            blocks.append({"name": "patching", "title": "Internal path: activation patching",
                           "about": "Residual stream after each layer at each position, patched from the clean run into the "
                                    "corrupted one: 1 = the clean output is restored, 0 = nothing changes.",
                           "table": None, "figures": [{"alt": _ALT["patching"], "data": figures["patching"]}]})
    return blocks


def example_context(result: ExampleResult, with_figures: bool = True) -> dict[str, Any]:
    from twopath.reports.figures import report_figures

    colored = []
    if result.example.is_text:
        for a in result.attributions:
            limit = float(max(abs(a.scores).max(), 1e-9))
            colored.append({"method": a.method, "words": [
                {"unit": u, "score": float(s), "color": _color(float(s), limit)} for u, s in zip(a.units, a.scores, strict=True)]})
    figures = report_figures(result) if with_figures else {}
    return {
        "id": result.example.id,
        "input_text": input_text(result.example.raw),
        "target": result.target,
        "prediction": result.prediction,
        "output": result.attributions[0].meta.get("output", "logit_diff") if result.attributions else "logit_diff",
        "corrupted": None if result.corrupted is None else input_text(result.corrupted.raw),
        "notes": result.notes,
        "colored": colored,
        "figures": figures,
        "blocks": _blocks(result, figures),
    }


def html_report(report: Report) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("twopath.reports", "templates"), autoescape=select_autoescape(["html", "j2"]))
    template = env.get_template("report.html.j2")
    dataset = _table_blocks(dataset_tables(report.dataset))
    return template.render(report=report, examples=[example_context(e) for e in report.examples], dataset=dataset,
                           edit=_edit_context(report), version=__version__)


def _table_blocks(tables: dict[str, Any]) -> list[dict[str, Any]]:
    """Report-level tables as the template's blocks (name, title, about, HTML table)."""
    return [{"name": name, "title": title, "about": about, "table": _html_table(frame)}
            for name, (title, about, frame) in tables.items()]


def _edit_context(report: Report) -> dict[str, Any] | None:
    """The edit section's tables and its forget-vs-maintain figure (``None`` without a section)."""
    from twopath.reports.figures import edit_figure

    tables = edit_tables(report.edit)
    if not tables:
        return None
    return {"blocks": _table_blocks(tables), "figure": edit_figure(report.edit)}


def _md_cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):  # not measured: an empty cell, as in the HTML
        return ""
    text = f"{v:.3f}" if isinstance(v, float) else ", ".join(map(str, v)) if isinstance(v, list) else str(v)
    return md_text(text)


def md_table(frame: pd.DataFrame) -> str:
    columns = [md_text(c) for c in frame.columns]  # column names are user words and features too
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def markdown_report(report: Report) -> str:
    """report.md: every string that comes from the user, the model or the data goes through
    :func:`~twopath.reports.escape.md_text`; numbers are formatted by us."""
    m = report.model
    accuracy = m.get("accuracy")
    out = [f"# twopath: {md_text(report.task)}", "",
           f"Model **{md_text(m.get('name'))}** ({md_text(m.get('architecture'))}, {md_text(m.get('n_layers'))} layers)"
           + (f", held-out accuracy **{accuracy:.3f}**" if accuracy is not None else "")
           + ". Every number below was measured in this run.", ""]
    for ex in report.examples:
        out += [f"## Example `{_md_code(ex.example.id)}`", "", f"- Input: {md_text(input_text(ex.example.raw))}",
                f"- Prediction: **{md_text(ex.prediction['label'])}** (p = {ex.prediction['probability']:.3f}); "
                f"target {md_text(ex.target)}"]
        if ex.corrupted is not None:
            out.append(f"- Contrast input (patching): {md_text(input_text(ex.corrupted.raw))}")
        out += [f"- Note: {md_text(n)}" for n in ex.notes] + [""]
        for title, about, frame in example_tables(ex).values():
            out += [f"### {md_text(title)}", "", md_text(about), "", md_table(frame), ""]
    for title, about, frame in [*dataset_tables(report.dataset).values(), *edit_tables(report.edit).values()]:
        out += [f"## {md_text(title)}", "", md_text(about), "", md_table(frame), ""]
    out += ["## Reproducibility", ""] + [f"- {md_text(k)}: {md_text(v)}" for k, v in report.reproducibility.items()]
    return "\n".join(out) + "\n"


def _md_code(value: Any) -> str:
    """Text for inside single backticks: backticks and newlines cannot close or break the span."""
    return str(value).replace("`", "'").replace("\n", " ").replace("\r", " ")
