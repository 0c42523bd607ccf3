"""The edit section of a task's report, and the inflection probe of the word edit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.editing.planted import planted_adapter, table
from tests.tiny_models import CORPUS, build_tiny
from twopath.editing import feature_task, word_task
from twopath.editing.section import SectionPlan, run_plan
from twopath.editing.tasks import delete_word, inflections, vocabulary
from twopath.reports import render_json, write_report
from twopath.types import Report

TOY = vocabulary(["He loved it; she loves the lovely film, loving every lover's line.",
                  "Stopped, stopping, stops: a stop. Funnier and funniest, funnily funny, fun.",
                  "Goodness, goods. The pace was paced; pacing paces. Dull."])


@pytest.mark.parametrize(("word", "expected"), [
    ("love", ["loved", "lovely", "loves", "loving"]),  # e-drop: loving, loved
    ("stop", ["stopped", "stopping", "stops"]),  # consonant doubling
    ("funny", ["funnier", "funniest", "funnily"]),  # y to i
    ("funnier", ["funniest", "funnily", "funny"]),  # from an inflected form back to its stem and on
    ("pacing", ["pace", "paced", "paces"]),
    ("good", ["goodness", "goods"]),  # goodly is not in the data, so it is not returned
    ("Dull", []),  # no inflection in the data
    ("fun", []),  # funny is not an inflection of fun (-y is not one of the suffixes)
])
def test_inflections_come_from_the_data(word, expected):
    assert inflections(word, TOY) == expected


def _tiny_text():
    from twopath.runtime.text import HFTextClassifier

    model, tokenizer = build_tiny("bert")
    adapter = HFTextClassifier(model, tokenizer, name="tiny-bert")
    adapter.background = list(CORPUS[:8])
    return adapter


def test_the_inflection_probe_uses_held_out_sentences_with_an_inflection_and_is_absent_without():
    from twopath.editing.compare import Relearning, compare_localizations
    from twopath.editing.finetune import LocalizedFineTuning

    adapter = _tiny_text()
    with_good = [s for s in CORPUS if "good" in s.lower()]
    others = [s for s in CORPUS if "good" not in s.lower()]
    train = with_good[::2] + others[::2]
    heldout = with_good[1::2] + others[1::2] + ["The goodness of the cast carried it.", "Goodness, what a mess."]
    labels = lambda texts: [int("good" in t.lower()) for t in texts]  # noqa: E731
    task = word_task(adapter, train, labels(train), heldout, labels(heldout), "good", n_train=8, n_heldout=8,
                     n_maintain=8)
    assert task.meta["inflections"] == ["goodness"] and task.meta["n_inflection_sentences"] == 2
    groups = task.robust_groups["inflections"]
    assert sorted(g[0] for g in groups) == sorted(heldout[-2:])
    assert all(g[1] == delete_word(g[0], "goodness") and "goodness" not in g[1].lower() for g in groups)

    plain = word_task(adapter, train, labels(train), heldout[:-2], labels(heldout[:-2]), "good", n_train=8,
                      n_heldout=8, n_maintain=8)
    assert plain.meta["inflections"] == [] and plain.robust_groups["inflections"] == []
    table_ = compare_localizations(adapter, plain, kind="head", k=1, n_random=1, localizations=("random",),
                                   editor=LocalizedFineTuning(steps=1), relearning=Relearning(steps=1))
    for row in table_.to_dict()["rows"]:
        assert row["robust_gap[inflections]"] is None  # absent, not zero
        assert row["robust_gap[new contexts]"] is not None


PLAN = SectionPlan("neuron", k=2, n_random=2, n_train=200, n_heldout=200, editor={"steps": 15, "lr": 0.05},
                   relearning={"steps": 3, "lr": 0.01})


def _planted_report() -> Report:
    adapter = planted_adapter()
    task = feature_task(adapter, table(400, 0), table(200, 2), "x0", "y", values=(-1.0, 1.0), n_train=PLAN.n_train,
                        n_heldout=PLAN.n_heldout)
    report = Report("planted", {"name": "planted", "architecture": "mlp", "n_layers": 1}, [], {"seed": 0})
    report.edit = run_plan(adapter, task, PLAN, seed=0)
    return report


def test_a_task_report_carries_the_edit_section_with_matched_budgets_and_its_figure(tmp_path):
    report = _planted_report()
    paths = write_report(report, tmp_path / "planted", ["html", "md", "json", "csv"])
    section = json.loads(paths["json"].read_text())["edit"]
    budget = section["budget"]
    rows = section["rows"]
    assert [r["localization"] for r in rows][:1] == ["original"]
    matched = [r for r in rows if r["localization"] not in ("original", "all_parameters")]
    assert matched and all(r["n_parameters"] == budget and r["budget_matched"] for r in matched)
    assert all(r["outside_unchanged"] for r in rows)
    full = next(r for r in rows if r["localization"] == "all_parameters")
    assert not full["budget_matched"] and full["n_parameters"] > budget
    assert {r["localization"] for r in section["summary"]} == {r["localization"] for r in rows}
    assert next(r for r in section["summary"] if r["localization"] == "random")["n_runs"] == 2
    assert {"criterion", "most_robust", "paper_finding"} <= set(section["verdicts"])
    assert "seconds" not in json.dumps(section) and "timings" not in section  # volatile: kept out of the JSON
    assert report.edit is not None and report.edit["timings"]["cpu_seconds"] > 0  # ...but measured
    html = paths["html"].read_text()
    assert 'alt="forget vs maintain per localization" src="data:image/png;base64,' in html
    assert "Editing: verdicts" in html and "Editing: verdicts" in paths["md"].read_text()
    edit_csv = (paths["csv"] / "edit.csv").read_text().splitlines()
    assert edit_csv[0].startswith("localization,n_runs,budget_matched,n_parameters")
    assert len(edit_csv) == 1 + len(section["summary"])


def test_the_edit_section_json_is_the_same_for_the_same_seed():
    first, second = _planted_report(), _planted_report()
    assert render_json(first) == render_json(second)
    assert np.isfinite(first.edit["summary"][0]["forget_gap"])


def test_reproduce_refuses_edit_for_a_task_without_a_section(tmp_path):
    from typer.testing import CliRunner

    from twopath.cli import app

    result = CliRunner().invoke(app, ["reproduce", "agreement", "--edit", "--out", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 2
    assert "no edit section" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_the_loan_task_report_has_the_credit_score_edit_table(tmp_path):
    from twopath.seed import tasks

    report = tasks.loan(seed=0, say=lambda _: None, dataset_size=0, edit=True)
    section = json.loads(render_json(report))["edit"]
    assert section["meta"]["feature"] == "credit_score" and section["meta"]["values"] == [720, 600]
    rows = [r for r in section["rows"] if r["localization"] not in ("original", "all_parameters")]
    assert all(r["n_parameters"] == section["budget"] for r in rows)
    original = section["rows"][0]
    assert original["forget_gap"] > 0.3
    assert section["verdicts"]["paper_finding"]["verdict"] in ("holds", "reversed", "within noise")
    paths = write_report(report, tmp_path / "loan", ["html"])
    assert "forget vs maintain per localization" in paths["html"].read_text()
