"""``twopath edit``: a run on a saved planted MLP, and bad input refused in one line with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.editing.planted import planted_adapter, table
from twopath.cli import app
from twopath.runtime.tabular import TorchTabularClassifier


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit-cli")
    planted_adapter().save(root / "model")
    table(300, seed=5).to_csv(root / "data.csv", index=False)
    return root


def _edit(*args):
    return CliRunner().invoke(app, ["edit", *[str(a) for a in args]])


BASE = ("--label", "y", "--localization", "ablation,random", "--n-random", "1", "--steps", "10", "--relearn-steps", "2",
        "--k", "2", "-q")


def test_edit_writes_the_report_and_the_edited_model(files, tmp_path):
    out, saved = tmp_path / "report", tmp_path / "edited"
    result = _edit("--model", files / "model", "--data", files / "data.csv", "--forget", "x0", "--values", "-1,1",
                   "--out", out, "--save-edited", saved, "--save-localization", "ablation", "--components", "L0N0,L0N1",
                   *BASE)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "edit_report.json").read_text())
    assert [r["localization"] for r in report["rows"]] == ["original", "ablation", "random", "given"]
    assert {r["n_parameters"] for r in report["rows"][1:]} == {report["budget"]}
    assert (out / "edits.png").stat().st_size > 0 and (out / "edits.md").is_file()
    manifest = json.loads((saved / "edit.json").read_text())
    assert manifest["localization"] == "ablation" and manifest["edit"]["n_parameters"] == report["budget"]
    edited, original = TorchTabularClassifier.load(saved), TorchTabularClassifier.load(files / "model")
    rows = table(5, seed=9).drop(columns=["y"])
    assert not np.allclose(edited.predict_proba(rows), original.predict_proba(rows))


@pytest.mark.parametrize("args,message", [
    (("--forget", "white"), "--forget 'white' is not a feature"),
    (("--forget", "x0", "--localization", "nowhere"), "--localization: unknown"),
    (("--forget", "x0", "--budget", "100000"), "outside 1.."),
    (("--forget", "x0", "--word", "good"), "exactly one of"),
    (("--forget", "x0", "--label", "nope"), "no label column 'nope'"),
    (("--forget", "x0", "--components", "L0N9"), "L0N9: hidden layer 0 has 8 neurons"),
    (("--forget", "x0", "--components", " , "), "--components is empty"),
    (("--forget", "x0", "--components", "L0H1"), "only neurons own parameters"),
    (("--forget", "x0", "--components", "L0N0"), "fewer than the budget"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(files, tmp_path, args, message):
    out = tmp_path / "report"
    options = dict(zip(BASE[::2], BASE[1::2], strict=False))
    options.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for kv in options.items() for x in kv if x != "-q"] + ["-q"]
    result = _edit("--model", files / "model", "--data", files / "data.csv", "--out", out, *flat)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_word_in_no_held_out_sentence_is_refused(tmp_path):
    import pandas as pd

    from tests.tiny_models import save_tiny

    model = save_tiny("bert", tmp_path / "bert")
    pd.DataFrame({"text": ["A boring film."] * 10, "label": [0] * 10}).to_csv(tmp_path / "d.csv", index=False)
    result = _edit("--model", model, "--data", tmp_path / "d.csv", "--word", "good", "--out", tmp_path / "o", "-q")
    assert result.exit_code == 2 and "in no held-out sentence" in result.output
    assert not (tmp_path / "o").exists()
