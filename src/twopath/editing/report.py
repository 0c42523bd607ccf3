"""The edit report: the comparison table (CSV and Markdown), its JSON and the forget-vs-maintain figure.

Written into a temporary folder next to the destination and renamed when complete, so a failed
run leaves nothing half-written; an existing destination is replaced only when it is empty or
holds a previous edit report (``edit_report.json``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twopath.editing.compare import EditComparison
from twopath.types import TwopathError

REPORT_JSON = "edit_report.json"


def check_report_out(out: str | Path) -> Path:
    path = Path(out)
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / REPORT_JSON).is_file())):
        raise TwopathError(f"--out {path} holds other files; give a new folder, an empty one or a previous edit report's")
    return path


def render_markdown(comparison: EditComparison) -> str:
    frame = comparison.summary()
    columns = [c for c in ("localization", "n_runs", "budget_matched", "n_parameters", "forget_gap", "forget_gap_sd",
                           "flip_share", "heldout_accuracy", "heldout_auc", "agreement", "relearn_set_gap", "relearned_gap",
                           "relearned_gap_sd", "localize_seconds", "edit_seconds") if c in frame]
    robust = [c for c in frame.columns if c.startswith("robust_gap")]
    table = frame[columns[:10] + robust + columns[10:]]
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    body = "".join("| " + " | ".join(_cell(v) for v in row) + " |\n" for row in table.itertuples(index=False))
    verdicts = comparison.verdicts()
    lines = [f"# Localized edits: {comparison.task}", "",
             f"Budget: **{comparison.budget} parameters** per localization ({comparison.kind}s); "
             "`all_parameters` is the non-localized control and its budget is **not** matched.", "",
             header + body, "## Verdicts", "", f"- criterion: {verdicts['criterion']}",
             f"- most robust: {verdicts.get('most_robust')} {verdicts.get('most_robust_metrics', '')}"]
    if "paper_finding" in verdicts:
        finding = verdicts["paper_finding"]
        lines.append(f"- paper's finding ({finding['claim']}): "
                     f"{finding['verdict']} here (margin {finding['margin']}: one sd over random seeds) "
                     f"(attribution patching {finding['attribution_patching']}, probe {finding['probe']})")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")


def write_edit_report(comparison: EditComparison, out: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Path]:
    from twopath.reports.figures import EditDisplay, _plt

    target = check_report_out(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        (work / REPORT_JSON).write_text(json.dumps({**comparison.to_dict(), **(extra or {})}, indent=2, default=str))
        comparison.to_frame().to_csv(work / "edits.csv", index=False)
        (work / "edits.md").write_text(render_markdown(comparison))
        ax = EditDisplay.from_result(comparison).plot()
        ax.figure.savefig(work / "edits.png", dpi=110, bbox_inches="tight")
        _plt().close(ax.figure)
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {name: target / name for name in (REPORT_JSON, "edits.csv", "edits.md", "edits.png")}
