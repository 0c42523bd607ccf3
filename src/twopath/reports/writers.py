"""Report writers: report.json (the stable contract), report.md and a self-contained report.html.

All three are rendered from the same :class:`~twopath.types.Report`. The output folder is
replaced **as a whole**: every file is rendered in memory, written into a sibling staging folder
(``.NAME.twopath-new-*`` next to ``NAME``), and only when that folder is complete are the two
swapped by renames; the previous report is kept until then, and restored if the swap fails. So
a failure or an interrupt at any point leaves either the previous report or the new one, never a
mixture, and never a report file beside files of an older run. A folder that holds anything
other than a twopath report is refused, never deleted (:func:`twopath.validation.check_out`).

CSV file names are built from example ids made file-name safe
(:func:`~twopath.reports.escape.safe_name`), and text cells are guarded against spreadsheet
formula injection (:func:`~twopath.reports.escape.csv_cell`). Wall-clock timings are kept out of
report.json so the same seed gives byte-identical JSON; they appear in the HTML cost table.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from twopath import __version__
from twopath.types import ExampleResult, Report
from twopath.validation import REPORT_FORMATS

FORMATS = REPORT_FORMATS
DEFAULT_FORMATS = ("html", "md", "json")
_VOLATILE = {"seconds", "cost_f1", "timings", "localize_seconds", "edit_seconds"}  # wall-clock fields: never in report.json


def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN to None, volatile keys dropped."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return [_clean(r) for r in value.to_dict(orient="records")]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def example_dict(result: ExampleResult) -> dict[str, Any]:
    raw = result.example.raw
    return {
        "id": result.example.id,
        "input": raw if isinstance(raw, str) else dict(raw),
        "target": result.target,
        "prediction": {"label": result.prediction["label"], "probability": result.prediction["probability"]},
        "corrupted_input": None if result.corrupted is None else (
            result.corrupted.raw if isinstance(result.corrupted.raw, str) else dict(result.corrupted.raw)),
        "attributions": [a.to_dict() for a in result.attributions],
        "localizations": [loc.to_dict() for loc in result.localizations],
        "tables": {k: v for k, v in result.tables.items() if v is not None},
        "notes": list(result.notes),
    }


def report_dict(report: Report) -> dict[str, Any]:
    return _clean({
        "twopath_version": __version__,
        "task": report.task,
        "model": report.model,
        "examples": [example_dict(e) for e in report.examples],
        "dataset": report.dataset,
        "edit": report.edit,
        "reproducibility": report.reproducibility,
    })


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"


def render_markdown(report: Report) -> str:
    from twopath.reports.html import markdown_report

    return markdown_report(report)


def render_html(report: Report) -> str:
    from twopath.reports.html import html_report

    return html_report(report)


def _guarded(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with every text cell and column name safe from spreadsheet formula evaluation."""
    from twopath.reports.escape import csv_cell

    out = frame.copy()
    out.columns = [csv_cell(str(c)) for c in out.columns]
    for i in range(out.shape[1]):
        column = out.iloc[:, i]
        if column.dtype == object or pd.api.types.is_string_dtype(column):
            out[out.columns[i]] = column.map(csv_cell)
    return out


def render_csv(report: Report) -> dict[str, str]:
    """One CSV text per table: ``<example id>__<table>.csv`` (the id made file-name safe)."""
    from twopath.reports.escape import safe_name
    from twopath.reports.tables import dataset_tables, edit_tables, example_tables

    files = {}
    for ex in report.examples:
        prefix = safe_name(ex.example.id)
        for name, (_, _, frame) in example_tables(ex).items():
            files[f"{prefix}__{name}.csv"] = _guarded(frame).to_csv(index=False)
    for name, (_, _, frame) in {**dataset_tables(report.dataset), **edit_tables(report.edit)}.items():
        files[f"{name}.csv"] = _guarded(frame).to_csv(index=False)
    return files


def write_report(report: Report, out_dir: str | Path, formats: Sequence[str] = DEFAULT_FORMATS) -> dict[str, Path]:
    """Write ``report.<fmt>`` for each format into ``out_dir``, replacing the folder as a whole;
    return the paths.

    ``csv`` writes one file per table into ``out_dir/tables/``. ``out_dir`` must be new, empty or
    a previous report's folder; anything else is refused before a file is written.
    """
    from twopath.types import TwopathError
    from twopath.validation import check_out

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise TwopathError(f"unknown report format(s) {unknown}; expected some of {list(FORMATS)}")
    renderers = {"json": render_json, "md": render_markdown, "html": render_html}
    files: dict[str, str] = {}  # everything is rendered before the disk is touched
    with _heap_frozen():
        for fmt in formats:
            if fmt == "csv":
                files.update({f"tables/{name}": text for name, text in render_csv(report).items()})
            else:
                files[f"report.{fmt}"] = renderers[fmt](report)
    out = Path(out_dir)
    check_out(out, "output folder")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.twopath-new-", dir=out.parent))
    try:
        for name, text in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        _swap(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    paths = {fmt: out / f"report.{fmt}" for fmt in formats if fmt != "csv"}
    if "csv" in formats:
        paths["csv"] = out / "tables"
    return paths


@contextlib.contextmanager
def _heap_frozen() -> Iterator[None]:
    """While the report renders, the objects alive before it (the model, torch, the results) are
    left out of the garbage collector's scans (:func:`gc.freeze`). Rendering the figures makes
    many short-lived objects; a full collection they trigger would otherwise walk the whole heap
    (0.3 s CPU in a ``reproduce sentiment`` run). Nothing is done when objects are already frozen
    or the collector is off."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _swap(new: Path, out: Path) -> None:
    """Put the complete folder ``new`` in the place of ``out``: ``out`` is moved aside, ``new``
    renamed into place, then the old folder deleted; if the second rename fails (or is
    interrupted), the old folder is renamed back."""
    old = out.parent / f".{out.name}.twopath-old-{uuid.uuid4().hex[:12]}"
    os.rename(out, old)
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
