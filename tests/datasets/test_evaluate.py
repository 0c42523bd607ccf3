"""twopath evaluate: the per-example path, the store, resume, the report from the store alone.

Tiny random models (a 2-layer BERT from tests/tiny_models.py, a 2-layer tabular MLP) on a few
rows; the local engine in this process. Engines with several workers: test_evaluate_engines.py;
bad input: test_evaluate_bad_input.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from tests.tiny_models import CORPUS, save_tiny
from twopath.cli import app
from twopath.datasets.reader import load_dataset
from twopath.datasets.report import write_report
from twopath.datasets.store import Store
from twopath.evaluation import TABLES, at_predicted, evaluate_all, example_seed, summarize
from twopath.types import Example

pytest.importorskip("pyarrow")

TEXTS = [CORPUS[1], CORPUS[2], CORPUS[5], "", CORPUS[9], CORPUS[10]]  # row 3: an empty sentence
GOLD = ["positive", "negative", "positive", "negative", "POSITIVE", "0"]  # names (any case) or numbers
LIGHT = "occlusion,integrated_gradients"  # cheap methods for the repeated runs


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    return save_tiny("bert", tmp_path_factory.mktemp("evaluate") / "bert")


@pytest.fixture(scope="module")
def text_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    pd.DataFrame({"review": TEXTS, "gold": GOLD}).to_csv(path, index=False)
    return path


FEATURES = ("income", "debt", "kind")


@pytest.fixture(scope="module")
def tabular_model(tmp_path_factory) -> Path:
    from twopath.runtime.tabular import TorchTabularClassifier, build_mlp, fitted_preprocessor

    torch.manual_seed(0)
    categories = {"kind": ("salaried", "self")}
    pre = fitted_preprocessor(["income", "debt"], categories, mean=[50.0, 10.0], scale=[20.0, 5.0])
    adapter = TorchTabularClassifier(build_mlp(4, [6, 5], 2), pre, FEATURES, categories, ("denied", "approved"), "tiny")
    path = tmp_path_factory.mktemp("tabular") / "mlp"
    adapter.save(path)
    return path


@pytest.fixture(scope="module")
def tabular_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"income": rng.normal(50, 20, 12).round(1), "debt": rng.normal(10, 5, 12).round(1),
                          "kind": rng.choice(["salaried", "self"], 12), "approved": rng.integers(0, 2, 12)})
    frame["income"] = frame["income"].astype(object)
    frame.loc[4, "income"] = "n/a"  # a bad cell: that row fails, the run goes on
    path = tmp_path_factory.mktemp("tabdata") / "applicants.csv"
    frame.to_csv(path, index=False)
    return path


def evaluate(*args: Any) -> Any:
    result = CliRunner().invoke(app, ["evaluate", *[str(a) for a in args], "-q"])
    assert result.exit_code == 0, result.output
    return result


def text_args(model: Path, data: Path, out: Path, *extra: Any) -> list[Any]:
    return ["--model", model, "--data", data, "--out", out, "--text-column", "review", "--label-column", "gold", *extra]


def rows(out: Path) -> dict[str, list[dict[str, Any]]]:
    """The store's tables as plain rows (lists for the curves, None for NaN), for exact comparison."""
    tables = Store.existing(out).read()

    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return list(v)
        return None if isinstance(v, float) and np.isnan(v) else v

    return {name: [{k: plain(v) for k, v in r.items()} for r in tables[name].to_dict(orient="records")]
            for name in TABLES}


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())["summary"]


@pytest.fixture(scope="module")
def full_store(text_model, text_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stores") / "full"
    evaluate(*text_args(text_model, text_csv, out))
    return out


# --- the per-example path ----------------------------------------------------------------------------


def test_example_seed_is_a_function_of_the_run_seed_and_the_id():
    assert example_seed(0, "row-1") == example_seed(0, "row-1")
    assert len({example_seed(0, "row-1"), example_seed(0, "row-2"), example_seed(1, "row-1")}) == 3
    assert 0 <= example_seed(2**32 - 1, "x") < 2**32


def test_store_holds_every_table_and_the_summary_counts_them(full_store, text_model):
    from twopath.runtime.text import HFTextClassifier

    tables = at_predicted(Store.existing(full_store).read())
    examples = tables["examples"]
    assert list(examples["example_id"]) == [f"row-{i}" for i in range(6)]
    failed = examples[examples["status"] == "failed"]
    assert list(failed["example_id"]) == ["row-3"] and "empty" in failed["reason"].iloc[0]
    ok = examples[examples["status"] == "ok"]
    # the predicted label is the model's own argmax, computed here independently
    adapter = HFTextClassifier.from_pretrained(text_model)
    expected = [adapter.labels[int(p.argmax())] for p in adapter.predict_proba([TEXTS[i] for i in ok["row"]])]
    assert list(ok["predicted"]) == expected
    # every unit of every method, every head of the ablation ranking, for each explained example
    n_units = {r.example_id: len(TEXTS[r.row].split()) for r in ok.itertuples()}
    attributions = tables["attributions"]
    for method in ("shap", "integrated_gradients", "occlusion", "gradient_x_input"):
        per = attributions[attributions["method"] == method].groupby("example_id").size().to_dict()
        assert per == n_units
    heads = tables["components"].groupby("example_id").size()
    assert set(heads) == {adapter.n_layers * adapter.n_heads} and len(heads) == len(ok)
    # ranks are a permutation per example and method; rank 0 is the largest score
    first = attributions[attributions["rank"] == 0].set_index(["example_id", "method"])["score"]
    best = attributions.groupby(["example_id", "method"])["score"].max()
    pd.testing.assert_series_equal(first.sort_index(), best.sort_index(), check_names=False)
    s = summary(full_store)
    assert s["n_examples"] == 5 and s["n_failed"] == 1 and s["failures"][0]["count"] == 1
    gold = ["positive", "negative", "positive", "positive", "negative"]  # rows 0 1 2 4 5, labels resolved
    assert s["labels"]["accuracy"] == pytest.approx(np.mean([g == p for g, p in zip(gold, expected, strict=True)]))
    assert sum(c["count"] for c in s["labels"]["confusion"]) == 5
    assert sum(c["count"] for c in s["top_components"]) == 5
    for name in ("report.md", "examples.csv", "manifest.json", "run.json"):
        assert (full_store / name).is_file()


def test_the_command_and_the_seed_reports_share_one_path(full_store, text_model):
    """dataset_summary (the seed reports) = evaluate_all + summarize = what the store gives."""
    from twopath.datasets.neutral import NEUTRAL_SENTENCES
    from twopath.runtime.text import HFTextClassifier

    adapter = HFTextClassifier.from_pretrained(text_model)
    adapter.background = list(NEUTRAL_SENTENCES)
    examples = [Example(f"row-{i}", t) for i, t in enumerate(TEXTS)]
    tables = evaluate_all(adapter, examples, seed=0, golds=[None] * len(TEXTS))
    mine, stored = summarize(tables), summary(full_store)
    for key in ("n_examples", "faithfulness", "agreement", "insight", "top_components", "top_units"):
        assert json.dumps(mine[key], sort_keys=True) == json.dumps(stored[key], sort_keys=True), key


def test_results_do_not_depend_on_the_order_of_examples(text_model):
    from twopath.datasets.neutral import NEUTRAL_SENTENCES
    from twopath.runtime.text import HFTextClassifier

    adapter = HFTextClassifier.from_pretrained(text_model)
    adapter.background = list(NEUTRAL_SENTENCES)
    examples = [Example(f"row-{i}", t) for i, t in enumerate(TEXTS[:3])]
    forward = evaluate_all(adapter, examples, methods=("occlusion",), seed=3, rows=[0, 1, 2])
    backward = evaluate_all(adapter, examples[::-1], methods=("occlusion",), seed=3, rows=[2, 1, 0])
    # the random-order controls use each example's own seed: same rows in any order
    for name in ("examples", "faithfulness", "attributions"):
        a = forward[name].sort_values(["example_id"], kind="stable").reset_index(drop=True)
        b = backward[name].sort_values(["example_id"], kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)


def test_examples_predicted_at_another_label_are_explained_at_the_gold_too(full_store):
    """A second explanation at the gold label, for exactly the examples whose gold label was not
    predicted: the same path (every unit, every head, every faithfulness row) at that label."""
    tables = Store.existing(full_store).read()
    examples = tables["examples"]
    ok = examples[examples["status"] == "ok"]
    wrong = ok[ok["gold"].str.lower() != ok["predicted"].str.lower()]
    assert len(wrong) > 0 and len(wrong) < len(ok)  # the tiny model gets some right, some wrong
    assert set(wrong["gold_status"]) == {"ok"} and ok.loc[~ok.index.isin(wrong.index), "gold_status"].isna().all()
    for name in ("attributions", "components", "faithfulness", "agreement"):
        frame = tables[name]
        gold = frame[frame["target_kind"] == "gold"]
        assert set(gold["example_id"]) == set(wrong["example_id"]), name
        wanted = dict(zip(wrong["example_id"], wrong["gold"].str.lower(), strict=True))
        assert (gold["target"].to_numpy() == gold["example_id"].map(wanted).to_numpy()).all()
        pred = frame[(frame["target_kind"] == "predicted") & frame["example_id"].isin(set(wrong["example_id"]))]
        assert len(gold) == len(pred) and (pred["target"].to_numpy() != gold["target"].to_numpy()).all(), name
    faith = tables["faithfulness"]
    one = wrong["example_id"].iloc[0]
    at = {kind: faith[(faith["example_id"] == one) & (faith["target_kind"] == kind) & (faith["method"] == "shap")]
          for kind in ("predicted", "gold")}
    # the curves are in the explained label's probability: two labels, so p(gold) = 1 - p(predicted) unmasked
    assert at["gold"]["deletion_curve"].iloc[0][0] == pytest.approx(1 - at["predicted"]["deletion_curve"].iloc[0][0], abs=1e-6)
    # two labels in logit-difference space: every input method's explanation at the other label is the negation
    units = tables["attributions"]
    mine = units[units["example_id"] == one]
    for method, group in mine.groupby("method"):
        pred = group[group["target_kind"] == "predicted"].sort_values("unit_index")["score"].to_numpy()
        gold = group[group["target_kind"] == "gold"].sort_values("unit_index")["score"].to_numpy()
        np.testing.assert_allclose(gold, -pred, rtol=1e-4, atol=1e-5, err_msg=method)
    at_gold = summary(full_store)["labels"]["at_gold"]
    assert (at_gold["n_other_label"], at_gold["n_explained"]) == (len(wrong), len(wrong))
    assert {(r["target_kind"], r["method"]) for r in at_gold["faithfulness"]} >= {("gold", "shap"), ("predicted", "shap")}
    gold_shap = next(r for r in at_gold["faithfulness"] if (r["target_kind"], r["method"]) == ("gold", "shap"))
    expected = faith[(faith["target_kind"] == "gold") & (faith["method"] == "shap")]["aopc_deletion"].mean()
    assert gold_shap["aopc_deletion_mean"] == pytest.approx(expected)
    overlap = {r["method"]: r for r in at_gold["overlap"]}
    assert overlap["shap"]["n"] == len(wrong) and overlap["shap"]["spearman_mean"] == pytest.approx(-1.0)
    assert 0.0 <= overlap["head_ablation"]["same_top"] <= 1.0
    report = (full_store / "report.md").read_text()
    assert "## Explained at the gold label" in report and "## Predicted vs gold explanation" in report
    assert "Explained at the gold label" in (full_store / "report.html").read_text()


# --- resume, settings, the report from the store alone -----------------------------------------------


def test_resume_computes_only_the_rest_and_ends_equal(full_store, text_model, text_csv, tmp_path):
    out = tmp_path / "resumed"
    evaluate(*text_args(text_model, text_csv, out, "--limit", 2))
    first = {p.name: (p.stat().st_mtime_ns, (p / "examples.parquet").read_bytes()) for p in (out / "shards").iterdir()}
    assert json.loads((out / "run.json").read_text())["computed"] == 2
    (out / "shards" / ".tmp-interrupted").mkdir()  # a shard half-written when the run was killed
    evaluate(*text_args(text_model, text_csv, out))
    run = json.loads((out / "run.json").read_text())
    assert (run["computed"], run["skipped"]) == (4, 2)
    for name, (mtime, data) in first.items():  # the finished shards were not rewritten
        assert (out / "shards" / name).stat().st_mtime_ns == mtime
        assert (out / "shards" / name / "examples.parquet").read_bytes() == data
    assert not (out / "shards" / ".tmp-interrupted").exists()
    assert rows(out) == rows(full_store)
    assert summary(out) == summary(full_store)
    evaluate(*text_args(text_model, text_csv, out))  # all done: nothing recomputed
    assert json.loads((out / "run.json").read_text())["computed"] == 0


def test_a_store_with_other_settings_or_changed_data_is_refused(full_store, text_model, text_csv, tmp_path):
    out = tmp_path / "store"
    shutil.copytree(full_store, out)
    for extra, message in ((["--seed", "1"], "other settings .*seed"), (["--methods", "occlusion"], "other settings .*methods")):
        result = CliRunner().invoke(app, ["evaluate", *[str(a) for a in text_args(text_model, text_csv, out, *extra)]])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert re.search(message, lines[0]), lines[0]
    changed = tmp_path / "changed.csv"
    frame = pd.read_csv(text_csv)
    frame.loc[0, "review"] = "The movie was great."
    frame.to_csv(changed, index=False)
    result = CliRunner().invoke(app, ["evaluate", *[str(a) for a in text_args(text_model, changed, out)]])
    assert result.exit_code == 2 and "data changed" in result.stderr, result.output
    assert rows(out) == rows(full_store)  # nothing was added or removed


def test_the_report_is_rebuilt_from_the_store_alone(full_store, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(full_store, out)
    names = ("summary.json", "report.md", "report.html", "examples.csv", "components.png")
    before = [(out / name).read_bytes() for name in names]
    for name in names:
        (out / name).unlink()
    write_report(Store.existing(out))  # no model anywhere: the store holds every number
    assert [(out / name).read_bytes() for name in names] == before


def test_component_heatmap_grids(full_store):
    from twopath.datasets.report import component_grids

    tables = at_predicted(Store.existing(full_store).read())
    kind, first, effect = component_grids(tables["components"], tables["examples"])
    assert kind == "head" and first.shape == (2, 4)  # tiny BERT: 2 layers x 4 heads
    assert first.sum() == pytest.approx(1.0)  # one top component per explained example
    components = tables["components"]
    mean = components.assign(a=components["effect"].abs()).groupby("component")["a"].mean()
    assert effect[1, 2] == pytest.approx(mean["L1H2"]) and effect[0, 0] == pytest.approx(mean["L0H0"])


# --- readers and model kinds --------------------------------------------------------------------------


def test_csv_jsonl_and_parquet_give_the_same_examples(text_csv, tmp_path):
    frame = pd.read_csv(text_csv, keep_default_na=False)
    jsonl, parquet = tmp_path / "d.jsonl", tmp_path / "d.parquet"
    frame.to_json(jsonl, orient="records", lines=True)
    frame.to_parquet(parquet)
    loaded = [load_dataset(p, modality="text", labels=("negative", "positive"), text_column="review",
                           label_column="gold") for p in (text_csv, jsonl, parquet)]
    for other in loaded[1:]:
        assert other.examples == loaded[0].examples and other.golds == loaded[0].golds
    assert loaded[0].golds == ["positive", "negative", "positive", "negative", "positive", "negative"]
    assert loaded[0].examples[3].raw == ""


def test_parquet_input_gives_the_csv_store(full_store, text_model, text_csv, tmp_path):
    parquet = tmp_path / "reviews.parquet"
    pd.read_csv(text_csv, keep_default_na=False).to_parquet(parquet)
    out = tmp_path / "from-parquet"
    evaluate(*text_args(text_model, parquet, out))
    assert rows(out) == rows(full_store)


def test_a_tabular_model_over_its_feature_columns(tabular_model, tabular_csv, tmp_path):
    out = tmp_path / "tab"
    evaluate("--model", tabular_model, "--data", tabular_csv, "--out", out, "--label-column", "approved")
    everything = Store.existing(out).read()
    tables = at_predicted(everything)
    examples = tables["examples"]
    assert examples.loc[examples["status"] == "failed", "example_id"].tolist() == ["row-4"]
    assert "income" in examples.loc[4, "reason"]
    ok = examples[examples["status"] == "ok"]
    units = tables["attributions"].groupby(["example_id", "method"])["unit"].apply(tuple)
    assert set(units) == {FEATURES}
    assert set(tables["components"].groupby("example_id").size()) == {11}  # 6 + 5 hidden neurons
    s = summary(out)
    assert s["n_examples"] == len(ok) == 11 and s["labels"]["n_labelled"] == 11
    assert {r["method"] for r in s["faithfulness"]} == {"shap", "integrated_gradients", "occlusion",
                                                        "gradient_x_input", "random order", "neuron_ablation"}
    wrong = ok[ok["gold"] != ok["predicted"]]
    gold = everything["components"][everything["components"]["target_kind"] == "gold"]
    assert set(gold["example_id"]) == set(wrong["example_id"]) and s["labels"]["at_gold"]["n_explained"] == len(wrong)


@pytest.mark.parametrize("prompted", [False, True], ids=["gpt2-classifier", "gpt2-prompted"])
def test_decoder_and_prompted_models(prompted, text_csv, tmp_path):
    model = save_tiny("gpt2", tmp_path / "gpt2", causal_lm=prompted)
    out = tmp_path / "out"
    extra = ["--prompt", "Review: {text}\\nSentiment:", "--labels", " negative, positive"] if prompted else []
    evaluate(*text_args(model, text_csv, out, "--methods", LIGHT, "--limit", 3, *extra))
    tables = at_predicted(Store.existing(out).read())
    assert list(tables["examples"]["status"]) == ["ok", "ok", "ok"]
    assert set(tables["examples"]["predicted"]) <= {"negative", "positive"}
    assert set(tables["components"].groupby("example_id").size()) == {2 * 4}  # 2 layers x 4 heads
    first = tables["attributions"][(tables["attributions"]["example_id"] == "row-0")
                                   & (tables["attributions"]["method"] == "occlusion")]
    assert len(first) == len(TEXTS[0].split())  # the words of the text only, never the prompt's
    manifest = json.loads((out / "manifest.json").read_text())["settings"]
    assert manifest["kind"] == ("prompted" if prompted else "text")


def test_an_interrupted_run_keeps_its_finished_shards(full_store, text_model, text_csv, tmp_path, monkeypatch):
    """Ctrl-C after the first shard: exit 130, that shard kept, the re-run finishes the rest."""
    written: list[Path] = []
    original = Store.write_shard

    def write_then_interrupt(self: Store, tables: Any) -> Path:
        if written:
            raise KeyboardInterrupt
        written.append(original(self, tables))
        return written[-1]

    monkeypatch.setattr(Store, "write_shard", write_then_interrupt)
    out = tmp_path / "interrupted"
    result = CliRunner().invoke(app, ["evaluate", *[str(a) for a in text_args(text_model, text_csv, out)], "-q"])
    assert result.exit_code == 130, result.output
    assert "run the same command again to finish" in result.stderr
    assert [p.name for p in Store.existing(out).shard_dirs()] == [written[0].name]
    n_first = len(Store.existing(out).read()["examples"])
    assert 0 < n_first < len(TEXTS) and not (out / "summary.json").exists()
    monkeypatch.setattr(Store, "write_shard", original)
    evaluate(*text_args(text_model, text_csv, out))
    assert json.loads((out / "run.json").read_text())["computed"] == len(TEXTS) - n_first
    assert rows(out) == rows(full_store)


def test_a_run_that_leaves_cores_idle_gets_a_hint():
    from twopath.cli_evaluate import HINT_FROM, workers_hint

    assert "--workers 2" in workers_hint(HINT_FROM["text"], 1, 2)
    assert "--workers 4" in workers_hint(1000, 1, 16)  # at most 4 suggested
    assert workers_hint(HINT_FROM["text"] - 1, 1, 2) is None  # start-up would eat the gain
    assert workers_hint(1000, 2, 2) is None and workers_hint(1000, 1, 1) is None
    # a loan applicant takes milliseconds: start-up eats the gain until thousands of them
    assert workers_hint(1000, 1, 2, "tabular") is None
    assert "--workers 2" in workers_hint(HINT_FROM["tabular"], 1, 2, "tabular")
