"""HTML and Markdown rendering of a report.

The HTML page is one self-contained file: figures are embedded as base64 PNG, there are no
scripts and no external requests, and every user-supplied string (sentences, feature values,
model names) is HTML-escaped by Jinja2's autoescaping.
"""

from __future__ import annotations

from typing import Any

from twopath import __version__
from twopath.types import ExampleResult, Report


def _color(score: float, limit: float) -> str:
    """Diverging, colour-blind-safe background: blue toward the target, red against."""
    t = max(-1.0, min(1.0, score / limit)) if limit else 0.0
    if t >= 0:
        r, g, b = 255 - 185 * t, 255 - 120 * t, 255 - 20 * t
    else:
        r, g, b = 255 + 20 * t, 255 + 160 * t, 255 + 160 * t
    return f"rgb({int(r)},{int(g)},{int(b)})"


def _input_text(raw: Any) -> str:
    return raw if isinstance(raw, str) else ", ".join(f"{k} = {v}" for k, v in raw.items())


def example_context(result: ExampleResult, with_figures: bool = True) -> dict[str, Any]:
    from twopath.reports.figures import report_figures

    attributions = result.attributions
    colored = []
    if result.example.is_text:
        for a in attributions:
            limit = float(max(abs(a.scores).max(), 1e-9))
            colored.append({"method": a.method, "words": [
                {"unit": u, "score": float(s), "color": _color(float(s), limit)} for u, s in zip(a.units, a.scores, strict=True)]})
    patching = [loc for loc in result.localizations if loc.method == "activation_patching"]
    deletion = result.tables.get("deletion")
    return {
        "id": result.example.id,
        "input_text": _input_text(result.example.raw),
        "target": result.target,
        "prediction": result.prediction,
        "output": attributions[0].meta.get("output", "logit_diff") if attributions else "logit_diff",
        "corrupted": None if result.corrupted is None else _input_text(result.corrupted.raw),
        "notes": result.notes,
        "side_by_side": result.tables.get("side_by_side", []),
        "units": list(attributions[0].units) if attributions else [],
        "attributions": [{"method": a.method, "scores": [float(s) for s in a.scores],
                          "base": "" if a.base_value is None else f"{a.base_value:+.3f}",
                          "rows": a.meta.get("n_model_rows", ""), "seconds": a.meta.get("seconds", "")} for a in attributions],
        "colored": colored,
        "layers": patching[0].meta.get("layers") if patching else None,
        "deletion": [] if deletion is None else deletion.to_dict(orient="records"),
        "figures": report_figures(result) if with_figures else {},
    }


def html_report(report: Report) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("twopath.reports", "templates"), autoescape=select_autoescape(["html", "j2"]))
    template = env.get_template("report.html.j2")
    return template.render(report=report, examples=[example_context(e) for e in report.examples], version=__version__)


def _md_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        text = f"{v:.3f}" if isinstance(v, float) else ", ".join(map(str, v)) if isinstance(v, list) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(report: Report) -> str:
    m = report.model
    out = [f"# twopath: {report.task}", "",
           f"Model **{m.get('name')}** ({m.get('architecture')}, {m.get('n_layers')} layers), held-out accuracy "
           f"**{m.get('accuracy', float('nan')):.3f}**. Every number below was measured in this run.", ""]
    for ex in report.examples:
        ctx = example_context(ex, with_figures=False)
        out += [f"## Example `{ctx['id']}`", "", f"- Input: {ctx['input_text']}",
                f"- Prediction: **{ctx['prediction']['label']}** (p = {ctx['prediction']['probability']:.3f}); target {ctx['target']}, output `{ctx['output']}`"]
        if ctx["corrupted"]:
            out.append(f"- Contrast input (patching): {ctx['corrupted']}")
        out += [f"- Note: {n}" for n in ctx["notes"]]
        out += ["", "### Side by side", "", _md_table(ctx["side_by_side"], ["path", "method", "what_it_tells_you", "result_here"]), ""]
        rows = [{"method": a["method"], **dict(zip(ctx["units"], a["scores"], strict=True))} for a in ctx["attributions"]]
        out += ["### Input path scores", "", _md_table(rows, ["method", *ctx["units"]]), ""]
        if ctx["layers"]:
            out += ["### Patching per hidden layer", "", _md_table(ctx["layers"], ["layer", "width", "whole_layer_normalized", "whole_layer_flips", "neurons_to_flip"]), ""]
        out += ["### Deletion check", "", _md_table(ctx["deletion"], ["path", "method", "k", "removed", "probability", "drop"]), ""]
    out += ["## Reproducibility", ""] + [f"- {k}: {v}" for k, v in report.reproducibility.items()]
    return "\n".join(out) + "\n"
