"""report.html / report.md / report.json / CSV writers: escaping, self-containment, atomicity, determinism."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.reports.test_displays import (
    _loan,
    decoder_result,
    explain_loan,
    explain_text,
    loan_report,
    text_report,
)
from twopath.reports import figures, write_report, writers
from twopath.reports.tables import dataset_tables, example_tables

HOSTILE = "Great <script>alert(1)</script> & fun"
ESCAPED = "Great &lt;script&gt;alert(1)&lt;/script&gt; &amp; fun"
REPORT_FILES = {"report.html", "report.md", "report.json"}


@pytest.fixture(scope="module")
def hostile_report():
    return text_report(explain_text(HOSTILE, example_id="hostile"))


@pytest.fixture(scope="module")
def written(hostile_report, tmp_path_factory) -> dict[str, Path]:
    return write_report(hostile_report, tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def html(written) -> str:
    return written["html"].read_text(encoding="utf-8")


def test_writes_html_md_json(written):
    assert set(written) == {"html", "md", "json"}
    for fmt, path in written.items():
        assert path.name == f"report.{fmt}" and path.is_file() and path.stat().st_size > 0
    assert {p.name for p in written["html"].parent.iterdir()} == REPORT_FILES  # no leftover staging folder


def test_user_text_is_escaped_in_html(hostile_report, html):
    (result,) = hostile_report.examples
    assert result.corrupted is not None  # the contrast sentence carries the same markup
    assert "<script" not in html.lower()
    assert ESCAPED in html  # the input row, as text
    assert "&lt;script&gt;" in html and "&amp;" in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 2  # input and contrast input
    assert "alert(1)</" not in html  # no raw closing tag of the sentence either


def test_html_is_self_contained(html):
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"(?i)//[a-z0-9-]+(?:\.[a-z0-9-]+)+/", html)  # protocol-relative URLs
    sources = re.findall(r"""(?i)\bsrc\s*=\s*["']?([^"'\s>]*)""", html)
    assert sources, "no figures embedded"
    assert all(s.startswith("data:image/png;base64,") for s in sources), {s[:40] for s in sources}
    hrefs = re.findall(r"""(?i)\bhref\s*=\s*["']?([^"'\s>]*)""", html)
    assert all(h.startswith("#") for h in hrefs), hrefs  # in-page links only
    assert not re.search(r"(?i)<(?:script|link|iframe|frame|object|embed|base|form|meta\s+http-equiv)\b", html)
    assert not re.search(r"(?i)url\s*\(\s*['\"]?(?!data:)|@import", html)  # no CSS fetches either
    assert not re.search(r"(?i)\son[a-z]+\s*=", html)  # no inline event handlers


def test_markdown_and_json(hostile_report, written):
    md = written["md"].read_text(encoding="utf-8")
    assert md.startswith("# twopath: sentiment")
    assert "## Example `hostile`" in md
    doc = json.loads(written["json"].read_text(encoding="utf-8"))
    (example,) = doc["examples"]
    assert example["id"] == "hostile"
    assert example["input"] == HOSTILE  # JSON keeps the text exactly; escaping is the HTML's job
    assert example["corrupted_input"] == hostile_report.examples[0].corrupted.raw
    assert {a["method"] for a in example["attributions"]} >= {"shap", "lime", "integrated_gradients"}
    text = written["json"].read_text(encoding="utf-8")
    assert '"seconds"' not in text and '"cost_f1"' not in text  # wall-clock timings stay out


@pytest.fixture
def no_figures(monkeypatch):
    """The atomicity tests do not need the figures (the slow part of rendering)."""
    monkeypatch.setattr(figures, "report_figures", lambda result: {})


@pytest.mark.usefixtures("no_figures")
@pytest.mark.parametrize("renderer", ["render_json", "render_markdown", "render_html", "render_csv"])
def test_failed_render_writes_nothing(hostile_report, tmp_path, monkeypatch, renderer):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("not ours")

    def boom(report):
        raise RuntimeError(f"{renderer} failed")

    monkeypatch.setattr(writers, renderer, boom)
    with pytest.raises(RuntimeError, match="failed"):
        write_report(hostile_report, out, formats=("json", "md", "html", "csv"))
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # no report files, no .twopath-* folder


@pytest.mark.usefixtures("no_figures")
def test_failed_render_keeps_previous_report(hostile_report, tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_report(hostile_report, out, formats=("json", "md"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(writers, "render_markdown", lambda report: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_report(hostile_report, out, formats=("json", "md"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.usefixtures("no_figures")
def test_failed_write_leaves_no_temp_folder(hostile_report, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == "report.html":
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(OSError, match="disk full"):
        write_report(hostile_report, out, formats=("json", "md", "html"))
    assert list(out.iterdir()) == []


def test_same_seed_gives_identical_json(tmp_path):
    docs = []
    # seed 0 twice, each on a freshly loaded model (the first run is shared with the other modules)
    for run, (adapter, result) in (("a", _loan()), ("b", explain_loan(seed=0))):
        paths = write_report(loan_report(adapter, result), tmp_path / run, formats=("json",))
        docs.append(paths["json"].read_bytes())
    assert docs[0] == docs[1]
    doc = json.loads(docs[0])
    assert doc["task"] == "loan" and doc["reproducibility"]["seed"] == 0
    assert doc["examples"][0]["tables"]["claims"]


def test_csv_writes_one_file_per_table(hostile_report, tmp_path):
    paths = write_report(hostile_report, tmp_path, formats=("csv",))
    assert set(paths) == {"csv"} and paths["csv"] == tmp_path / "tables"
    assert [p.name for p in tmp_path.iterdir()] == ["tables"]  # no report.* files asked for, none written
    (result,) = hostile_report.examples
    tables = {f"{result.example.id}__{name}.csv": frame for name, (_, _, frame) in example_tables(result).items()}
    tables |= {f"{name}.csv": frame for name, (_, _, frame) in dataset_tables(hostile_report.dataset).items()}
    assert len(tables) >= 10
    assert {p.name for p in paths["csv"].iterdir()} == set(tables)
    for name, frame in tables.items():
        read = pd.read_csv(paths["csv"] / name)
        assert list(read.columns) == [str(c) for c in frame.columns], name
        assert len(read) == len(frame), name


def test_unknown_format_is_rejected_before_writing(hostile_report, tmp_path):
    from twopath.types import TwopathError

    with pytest.raises(TwopathError, match="pdf"):
        write_report(hostile_report, tmp_path / "out", formats=("json", "pdf"))
    assert not (tmp_path / "out").exists()


def test_stability_text_states_the_replicates_used(hostile_report, html):
    stability = hostile_report.examples[0].tables["stability"]
    assert stability["mode"] == "bootstrap" and stability["seeds"] == [0]  # the first of stability_seeds=(0, 1)
    block = _block(html, "stability", "hostile")  # the timings table names its steps, seeds included
    assert f"over {stability['resamples']} bootstrap refits" in block
    assert "over 5 seeds" not in block and "over 2 seeds" not in block


def _block(html: str, name: str, example: str = "tiny") -> str:
    """The HTML of one report block: from its heading to the next heading."""
    start = html.index(f'<h3 id="{example}-{name}">')
    end = html.find("<h3 ", start + 1)
    return html[start:end if end > 0 else len(html)]


def test_a_decoder_report_shows_the_lens_and_dla_figures_and_tables():
    from twopath.reports.html import html_report, markdown_report
    from twopath.types import Report

    result = decoder_result()
    report = Report("tiny decoder", {"name": "tiny gpt2", "architecture": "GPT2", "n_layers": 2}, [result], {})
    html = html_report(report)
    pngs = figures.report_figures(result)
    for name, alt in (("logit_lens", "logit lens curve"), ("direct_logit_attribution", "direct logit attribution bars")):
        block = _block(html, name)
        (source,) = re.findall(rf'<img alt="{alt}" src="data:image/png;base64,([^"]+)"', block)
        assert base64.b64decode(source, validate=True)[:8] == b"\x89PNG\r\n\x1a\n", name
        assert len(source) == pytest.approx(len(pngs[name]), rel=0.2), name  # the same figure, drawn again
        assert "<table" in block, name  # and its table
    lens = result.localization("logit_lens")
    assert html.count('alt="logit lens curve"') == 1
    md = markdown_report(report)
    assert "### Internal path: logit lens" in md and "### Internal path: direct logit attribution" in md
    for component, value in zip(lens.labels, lens.effects, strict=True):
        assert f"| {component} | {value:.3f} |" in md
    for component, effect in result.localization("direct_logit_attribution").top(3):
        assert f"| {component} | {effect:.3f} |" in md
    side = {row["method"]: row["result_here"] for row in result.tables["side_by_side"]}
    assert "ablation" not in side["logit_lens"] and "ablation" not in side["direct_logit_attribution"]
    assert side["logit_lens"].startswith(f"logit_diff read through the final norm and head at position {lens.meta['position']}")
    assert side["direct_logit_attribution"].startswith("direct share of the logit diff")
