"""twopath evaluate refuses bad input in one line, exit 2, before the model loads."""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.datasets.test_evaluate import tabular_model as tabular_model  # noqa: F401 (fixtures)
from tests.datasets.test_evaluate import text_csv as text_csv  # noqa: F401
from tests.datasets.test_evaluate import text_model as text_model  # noqa: F401
from twopath.cli import app

pytest.importorskip("pyarrow")


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded before the error was reported")

    monkeypatch.setattr("twopath.datasets.engines.ModelSpec.open", forbidden)
    monkeypatch.setattr("twopath.runtime.text._load", forbidden)
    monkeypatch.setattr("twopath.runtime.tabular.TorchTabularClassifier.load", forbidden)


def refused(args: list[Any], message: str) -> str:
    result = CliRunner().invoke(app, ["evaluate", *[str(a) for a in args]])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "AssertionError" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    return lines[0]


def base(model: Path, data: Path, out: Path) -> list[Any]:
    return ["--model", model, "--data", data, "--out", out, "--text-column", "review"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


CASES = {
    "unknown text column": (lambda d, t: ["--text-column", "body"], r"column\(s\) \['body'\] not in .*review"),
    "unknown label column": (lambda d, t: ["--label-column", "stars"], r"--label-column: column\(s\) \['stars'\]"),
    "labels the model lacks": (lambda d, t: ["--label-column", "mood"], r"row 0 holds 'ok', which is not one of the model's labels"),
    "workers 0": (lambda d, t: ["--workers", 0], r"--workers 0 is out of range"),
    "limit 0": (lambda d, t: ["--limit", 0], r"--limit 0 is out of range"),
    "unknown engine": (lambda d, t: ["--engine", "spark"], r"--engine 'spark': expected one of local, ray"),
    "address without ray": (lambda d, t: ["--ray-address", "127.0.0.1:1"], r"--ray-address .* needs --engine ray"),
    "unknown method": (lambda d, t: ["--methods", "shap,magic"], r"unknown attribution method 'magic'"),
    "a mechanistic method": (lambda d, t: ["--methods", "head_ablation"], r"unknown attribution method 'head_ablation'"),
    "row columns for a text model": (lambda d, t: ["--row-columns", "a,b"], r"--row-columns is for tabular models"),
    "repeated ids": (lambda d, t: ["--id-column", "film"], r"the id 'film' repeats"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_options(case, text_model, tmp_path):  # noqa: F811
    data = tmp_path / "d.csv"
    pd.DataFrame({"review": ["good film", "bad film"], "mood": ["ok", "meh"], "film": ["film", "film"]}).to_csv(data, index=False)
    extra, message = CASES[case]
    args = base(text_model, data, tmp_path / "out")
    if "--text-column" in extra(data, tmp_path):
        args = args[:-2]
    refused([*args, *extra(data, tmp_path)], message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.csv", "", r"is empty"),
    ("header.csv", "review,gold\n", r"has no rows"),
    ("broken.parquet", b"not a parquet file", r"is not a readable PARQUET table"),
    ("broken.jsonl", "{\"review\": 1\n", r"is not a readable JSONL table"),
    ("data.xlsx", "x", r"unknown suffix '.xlsx'"),
])
def test_unreadable_files(name, content, message, text_model, tmp_path):  # noqa: F811
    refused(base(text_model, _write(tmp_path / name, content), tmp_path / "out"), message)


def test_missing_data_file_and_model(text_model, text_csv, tmp_path):  # noqa: F811
    refused(base(text_model, tmp_path / "nope.csv", tmp_path / "out"), r"--data: no such file")
    refused(base(tmp_path / "no-model", text_csv, tmp_path / "out"), r"model directory does not exist")


def test_wrong_model_kind(tabular_model, text_csv, tmp_path):  # noqa: F811
    refused(base(tabular_model, text_csv, tmp_path / "out"), r"--text-column is for text models")
    refused(["--model", tabular_model, "--data", text_csv, "--out", tmp_path / "out"],
            r"--row-columns: column\(s\) \['income', 'debt', 'kind'\] not in")


def test_out_holding_other_files(text_model, text_csv, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused(base(text_model, text_csv, out), r"holds files that are not a twopath evaluate store \(notes.txt\)")
    assert (out / "notes.txt").read_text() == "mine"


def test_unreachable_ray_address_is_one_line_within_seconds(text_model, text_csv, tmp_path):  # noqa: F811
    pytest.importorskip("ray")
    refused([*base(text_model, text_csv, tmp_path / "out"), "--engine", "ray", "--ray-address", f"127.0.0.1:{closed_port()}"],
            r"--ray-address 127.0.0.1:\d+: no Ray cluster answers there")  # a TCP check, 3 s at most


def test_ray_engine_without_ray_says_how_to_install(text_model, text_csv, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    refused([*base(text_model, text_csv, tmp_path / "out"), "--engine", "ray"], r"pip install 'twopath\[ray\]'")
