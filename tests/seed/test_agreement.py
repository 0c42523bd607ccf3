"""The agreement task: the corpus, the claim rule on a planted head, the cached training.

The reference LM itself is trained and judged in the slow test at the end; the fast tests use
the hand-wired model of :func:`twopath.seed.agreement.planted_agreement_model`, whose agreement
head (``L1H1``) is known by construction, and a tiny training recipe.
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tests.helpers import single_threaded  # noqa: E402
from twopath.datasets import agreement as data  # noqa: E402
from twopath.seed import agreement, claims, zoo  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_threaded():
        yield


@pytest.fixture(scope="module")
def tokenizer():
    return agreement.planted_tokenizer()


@pytest.fixture(scope="module")
def items():
    return agreement.held_out_claim_items(8)


def _planted(tokenizer, remove_head=False):
    adapter = agreement.planted_agreement_model(tokenizer, remove_head=remove_head)
    adapter.background = [i.prefix for i in data.held_out(10, "pp", seed=2) + data.held_out(10, "none", seed=2)]
    return adapter


# --- the corpus -------------------------------------------------------------------------------

def test_corpus_is_deterministic_and_balanced():
    texts = data.corpus(3000, seed=0)
    assert texts == data.corpus(3000, seed=0)
    assert texts != data.corpus(3000, seed=1)
    verbs = [s.split() for s in texts]
    n_is = sum("is" in w for w in verbs)
    n_are = sum("are" in w for w in verbs)
    assert abs(n_is - n_are) <= 1 and n_is > 600  # subjects alternate in number
    assert all(not ("is" in w and "are" in w) for w in verbs)
    # in training text the attractor's number is independent of the subject's: both occur
    pp = [w for w in verbs if "to" in w[:5] or "near" in w[:5]]
    assert pp


@pytest.mark.parametrize("kind", data.ATTRACTORS)
def test_held_out_items_are_balanced_unseen_and_have_opposite_attractors(kind):
    train = data.corpus(3000, seed=0)
    items = data.held_out(40, kind, seed=1, exclude=train)
    assert items == data.held_out(40, kind, seed=1, exclude=train)
    assert sum(i.plural for i in items) == 20
    assert len({i.prefix for i in items}) == 40
    starts = {" ".join(s.split()[:3]) for s in train}
    for item in items:
        words = item.prefix.split()
        assert words[item.subject_index] == item.subject
        assert data.held_out_pair(item.subject, words[item.subject_index - 1])  # a held-out subject
        assert " ".join(words[:3]) not in starts  # ... never a training sentence's subject
        plural_nouns = {p for _, p in data.NOUNS}
        assert (item.subject in plural_nouns) == item.plural
        assert item.verb == ("are" if item.plural else "is")
        if kind == "none":
            assert item.attractor_index is None
        else:
            assert (words[item.attractor_index] in plural_nouns) != item.plural
        flipped = item.flipped.split()
        assert [i for i, (a, b) in enumerate(zip(words, flipped, strict=True)) if a != b] == [item.subject_index]


def test_flipped_counterparts_have_the_same_token_length(tokenizer):
    adapter = agreement.planted_agreement_model(tokenizer)
    for kind in data.ATTRACTORS:
        for item in data.held_out(20, kind, seed=7):
            clean, flipped = adapter.encode(item.prefix), adapter.encode(item.flipped)
            assert clean.n_tokens == flipped.n_tokens
            differs = np.flatnonzero((clean.input_ids != flipped.input_ids).numpy()[0])
            assert set(clean.token_word[differs]) == {item.subject_index}
    assert adapter.encode(agreement.SEED_TEXT).n_tokens == adapter.encode(agreement.SEED_FLIPPED).n_tokens


def test_unknown_attractor_kind_is_refused():
    with pytest.raises(ValueError, match="unknown attractor kind"):
        data.agreement_item(random.Random(0), True, "adverb")


# --- the claim rule ---------------------------------------------------------------------------

def _row(name, enrichment, ablation, share):
    return {"component": name, "subject_enrichment": enrichment, "ablation": ablation, "patching_share": share}


def test_claim_rule_on_measured_numbers():
    quiet = [_row(f"L0H{i}", 1.0, 0.01 * i, 0.01 * i) for i in range(6)]
    claim, head = claims.head_carries_agreement([*quiet, _row("L2H1", 3.0, 2.0, 0.6)])
    assert (claim.verdict, head) == (claims.SUPPORTED, "L2H1")
    # attends and moves the decision, but is not among the top heads by ablation: partly
    strong = [_row(f"L1H{i}", 1.0, 5.0, 0.0) for i in range(3)]
    claim, head = claims.head_carries_agreement([*quiet, *strong, _row("L2H1", 3.0, 0.0, 0.6)])
    assert (claim.verdict, head) == (claims.PARTLY, "L2H1")
    # the right head by every intervention but it does not look at the subject: not supported
    claim, _ = claims.head_carries_agreement([*quiet, _row("L2H1", 1.5, 2.0, 0.6)])
    assert claim.verdict == claims.NOT_SUPPORTED
    # attention and ranks without the stated share moved: partly
    claim, _ = claims.head_carries_agreement([*quiet, _row("L2H1", 3.0, 2.0, 0.2)])
    assert claim.verdict == claims.PARTLY
    assert "25%" in claim.rule and "2.0x" in claim.rule


def test_planted_head_supports_the_claim_and_its_removal_refutes_it(tokenizer, items):
    frame = agreement.head_measurements(_planted(tokenizer), items)
    by_head = frame.set_index("component")
    assert by_head.loc["L1H1", "subject_enrichment"] > 4
    assert by_head.loc["L1H3", "attractor_enrichment"] > 4  # the recency head reads the attractor
    claim, head = claims.head_carries_agreement(frame.to_dict(orient="records"))
    assert (claim.verdict, head) == (claims.SUPPORTED, agreement.PLANTED_HEAD)
    assert agreement.PLANTED_HEAD in claim.measured

    removed = agreement.head_measurements(_planted(tokenizer, remove_head=True), items)
    assert removed.set_index("component").loc["L1H1", "patching_share"] == pytest.approx(0.0, abs=1e-6)
    claim, _ = claims.head_carries_agreement(removed.to_dict(orient="records"))
    assert claim.verdict == claims.NOT_SUPPORTED


def test_planted_model_gets_agreement_right_and_falls_for_attractors_without_its_head(tokenizer):
    plain = data.held_out(20, "none", seed=5)
    hard = data.held_out(20, "pp", seed=5)
    model = _planted(tokenizer)
    assert agreement.accuracy(model, plain) == 1.0 and agreement.accuracy(model, hard) == 1.0
    without = _planted(tokenizer, remove_head=True)
    assert agreement.accuracy(without, hard) < 0.5  # the recency head follows the attractor


def test_head_attention_is_a_distribution_over_the_tokens(tokenizer):
    att = agreement.head_attention(_planted(tokenizer), agreement.SEED_TEXT, agreement.PLANTED_HEAD)
    assert len(att["tokens"]) == len(att["weights"])
    assert sum(att["weights"]) == pytest.approx(1.0, abs=1e-5)
    assert att["tokens"][int(np.argmax(att["weights"]))] == "keys"


# --- training and the report ------------------------------------------------------------------

TINY = {"architecture": {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_inner": 32},
        "training": {"n_sentences": 400, "epochs": 1, "batch_size": 64}, "n_eval": 10}


def test_training_manifest_records_accuracy_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TWOPATH_CACHE", str(tmp_path))
    said: list[str] = []
    path = agreement.agreement_model(seed=0, say=said.append, **TINY)
    manifest = zoo.read_manifest(path)
    for key in ("accuracy_no_attractor", "accuracy_pp_attractor", "accuracy_rc_attractor", "accuracy_with_attractors"):
        assert 0.0 <= manifest[key] <= 1.0
    assert manifest["accuracy"] == manifest["accuracy_no_attractor"]
    assert manifest["training_seconds"] >= 0 and manifest["n_train"] == 400
    assert manifest["decision"]["label_words"] == [" is", " are"]
    adapter = agreement.load(path)
    assert adapter.labels == ("is", "are")
    n_said = len(said)
    assert agreement.agreement_model(seed=0, say=said.append, **TINY) == path  # cached: no retraining
    assert len(said) == n_said
    other = agreement.agreement_model(seed=1, say=said.append, **TINY)
    assert other != path  # the seed is part of the key


def _report(tokenizer, **kwargs):
    manifest = {"accuracy": 1.0, "trained_from": "hand-wired"}
    return agreement.agreement_report(_planted(tokenizer), manifest, seed=0, say=lambda _: None, dataset_size=0,
                                      n_claim=4, checks=False, **kwargs)


def test_same_seed_same_json_and_the_report_names_the_planted_head(tokenizer, tmp_path):
    from twopath.reports import render_json, write_report

    first, again = _report(tokenizer), _report(tokenizer)
    assert render_json(first) == render_json(again)
    doc = json.loads(render_json(first))
    (example,) = doc["examples"]
    assert example["target"] == "are" and example["prediction"]["label"] == "are"
    verdicts = {c["claim"]: c["verdict"] for c in example["tables"]["claims"]}
    assert verdicts["one attention head carries the subject-verb agreement signal"] == claims.SUPPORTED
    assert verdicts["input path: the subject noun is the word that decides the verb, above the attractor"] == claims.SUPPORTED
    assert example["tables"]["mechanisms"]["named_head"] == agreement.PLANTED_HEAD
    methods = {loc["method"] for loc in example["localizations"]}
    assert {"head_ablation", "activation_patching", "attribution_patching", "logit_lens",
            "direct_logit_attribution", "direct_effect"} <= methods
    patching = next(loc for loc in example["localizations"] if loc["method"] == "activation_patching")
    assert any("resid@" in c for c in patching["components"]) and any("H" in c for c in patching["components"])
    assert example["tables"]["circuit"]["components"] == [agreement.PLANTED_HEAD]
    paths = write_report(first, tmp_path / "agreement", ("md", "html"))
    markdown = paths["md"].read_text()
    assert "Heads: subject-verb agreement" in markdown and "The seed's claims, measured" in markdown
    assert "agreement head attention" in paths["html"].read_text()  # the head's attention figure


@pytest.mark.slow
def test_reference_model_reaches_95_percent_and_its_agreement_head_supports_the_claim():
    path = agreement.agreement_model(say=lambda _: None)
    manifest = zoo.read_manifest(path)
    assert manifest["accuracy_no_attractor"] >= 0.95
    assert manifest["accuracy_with_attractors"] >= 0.9
    report = agreement.agreement_task(say=lambda _: None, dataset_size=0)
    (result,) = report.examples
    assert result.prediction["label"] == "are"
    head_claim = result.tables["claims"][1]
    named = result.tables["mechanisms"]["named_head"]
    # the documented result (docs/agreement.md): one head, supported on all three counts ...
    assert head_claim["verdict"] == claims.SUPPORTED
    row = next(r for r in result.tables["mechanisms"]["agreement_heads"] if r["component"] == named)
    assert row["subject_enrichment"] >= 2.0 and row["patching_share"] >= 0.25
    # ... and the seed example's own head ablation (the pipeline's) ranks the same head first
    assert result.localization("head_ablation").top(1)[0][0] == named
    att = result.tables["mechanisms"]["agreement_attention"]
    assert att["tokens"][int(np.argmax(att["weights"]))] == "keys"


def test_cli_lists_the_agreement_task_and_refuses_a_misspelt_one():
    from typer.testing import CliRunner

    from twopath.cli import app

    result = CliRunner().invoke(app, ["reproduce", "agreemnt"])
    assert result.exit_code == 2
    assert "agreement" in result.output and "agreemnt" in result.output
