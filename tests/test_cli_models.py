"""``twopath explain`` end to end on users' own decoder and encoder directories (tiny, offline).

Each run writes a report with both paths; the prompted causal LM explains the next-token choice
between its label words. A light configuration keeps the runs short; the default method set is
covered by the contract suite (``tests/test_contract_families.py``).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.helpers import single_threaded
from tests.tiny_models import TEXT, save_tiny
from twopath.cli import app

CONFIG = """
checks = false
[methods]
attribution = ["shap", "integrated_gradients"]
mechanistic = ["head_ablation", "activation_patching"]
[settings.shap]
max_evals = 200
"""
CONTRAST = TEXT.replace("good", "bad")


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "light.toml"
    path.write_text(CONFIG)
    return path


@pytest.mark.parametrize(("family", "prompted"), [
    ("gpt2", False), ("llama", False), ("qwen2", False), ("deberta-v2", False), ("llama", True),
])
def test_explain_writes_both_paths(family, prompted, config, tmp_path):
    model = save_tiny(family, tmp_path / family, causal_lm=prompted)
    out = tmp_path / "out"
    args = ["explain", "--model", str(model), "--text", TEXT, "--corrupt", CONTRAST, "--out", str(out),
            "--config", str(config), "--format", "json", "-q"]
    if prompted:
        args += ["--prompt", "Review: {text}\\nSentiment:", "--labels", " negative, positive"]
    with single_threaded():
        result = CliRunner().invoke(app, args)
    if result.exit_code == 2 and "same number of tokens" in result.output:
        pytest.skip("the tiny tokenizer splits the contrast word differently")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    (example,) = doc["examples"]
    assert {a["method"] for a in example["attributions"]} == {"shap", "integrated_gradients"}
    assert {loc["method"] for loc in example["localizations"]} == {"head_ablation", "activation_patching"}
    assert example["attributions"][0]["units"] == ["The", "movie", "was", "surprisingly", "good", "despite", "slow", "pacing"]
    if prompted:
        assert doc["model"]["prompt"] == "Review: {text}\nSentiment:"
        assert example["prediction"]["label"] in ("negative", "positive")
    assert doc["model"]["background"] == "built-in neutral sentences"
