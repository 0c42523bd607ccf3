"""The cost table adds up: steps tile the run, methods + overhead = the steps that ran them.

Wall time itself is never asserted: a fake clock drives :class:`StepClock`, and the pipeline's
cost table is checked for its arithmetic against the run's own step rows.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.helpers import linear_adapter, single_threaded
from tests.tiny_models import TEXT, save_tiny
from twopath.cli import app
from twopath.pipeline import explain
from twopath.reports.writers import render_json
from twopath.runtime import cost
from twopath.types import Example, Report


def test_step_clock_tiles_the_run(monkeypatch):
    ticks = iter([0.0, 1.5, 4.0, 4.25])
    monkeypatch.setattr(cost.time, "perf_counter", lambda: next(ticks))
    said: list[str] = []
    clock = cost.StepClock(said.append)
    clock("load")
    clock("shap")
    clock("write")
    rows = clock.stop()
    assert said == ["load", "shap", "write"]
    assert [r["step"] for r in rows] == ["load", "shap", "write"]
    assert [r["seconds"] for r in rows] == [1.5, 2.5, 0.25]
    assert clock.stop() == rows  # stopping twice adds nothing


@pytest.fixture(scope="module")
def tabular_result():
    rng = np.random.default_rng(0)
    background = pd.DataFrame(rng.normal(size=(40, 4)), columns=[f"x{i}" for i in range(4)])
    adapter = linear_adapter(np.array([2.0, -1.0, 0.5, 0.0]), background)
    example = Example("row", {"x0": 1.0, "x1": 0.5, "x2": -1.0, "x3": 2.0})
    with single_threaded():
        return explain(adapter, example, attribution_methods=["shap", "occlusion"],
                       mechanistic_methods=["neuron_ablation", "block_ablation"], stability_seeds=(),
                       with_circuit=False, with_checks=False)


def test_cost_table_adds_up_to_the_method_steps(tabular_result):
    steps = {r["step"]: r["seconds"] for r in tabular_result.tables["timings"]}
    costs = tabular_result.tables["costs"]
    methods = [r for r in costs if r["path"] in ("input", "internal")]
    assert [r["method"] for r in methods] == ["shap", "occlusion", "neuron_ablation", "block_ablation"]
    (overhead,) = [r for r in costs if r["path"] == "overhead"]
    method_steps = sum(steps[f"{r['path']} path: {r['method']}"] for r in methods)
    assert overhead["seconds"] + sum(r["seconds"] for r in methods) == pytest.approx(method_steps, abs=1e-3)
    assert overhead["seconds"] >= 0
    assert costs[-1]["method"] == "F1 (one forward pass)" and costs[-1]["seconds"] > 0
    assert list(steps)[0] == "prediction and target"


def test_timings_stay_out_of_report_json(tabular_result):
    doc = json.loads(render_json(Report("t", {"name": "linear"}, [tabular_result], {})))
    tables = doc["examples"][0]["tables"]
    assert "timings" not in tables
    assert all("seconds" not in row for row in tables["costs"])
    assert "overhead" in [row["path"] for row in tables["costs"]]


def test_cli_prints_one_line_per_step_with_seconds(tmp_path):
    model = save_tiny("bert", tmp_path / "bert")
    config = tmp_path / "light.toml"
    config.write_text('checks = false\n[methods]\nattribution = ["occlusion"]\nmechanistic = ["head_ablation"]\n')
    args = ["explain", "--model", str(model), "--text", TEXT, "--out", str(tmp_path / "out"),
            "--config", str(config), "--format", "json"]
    with single_threaded():
        loud = CliRunner().invoke(app, args)
        quiet = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "quiet"), "-q"])
    assert loud.exit_code == 0, loud.output
    lines = [line for line in loud.output.splitlines() if line.startswith("· ")]
    names = [line[2:].rsplit(" ", 2)[0] for line in lines]
    assert names[:2] == ["prediction and target", "input path: occlusion"]
    assert names[-1] == "writing the report"
    assert all(line.endswith(" s") and float(line.rsplit(" ", 2)[1]) >= 0 for line in lines)
    assert quiet.exit_code == 0 and not [line for line in quiet.output.splitlines() if line.startswith("· ")]


def test_log_progress_prints_a_line_per_tenth_with_eta(capsys):
    from twopath.cli import _LogProgress

    log = _LogProgress()
    for done in range(1, 101):
        log(done, 100, "fine-tune steps")
    lines = capsys.readouterr().err.splitlines()
    assert 10 <= len(lines) <= 11
    assert lines[-1].startswith("  fine-tune steps 100/100,") and "eta 0 s" in lines[-1]
    assert all("elapsed, eta" in line for line in lines)
