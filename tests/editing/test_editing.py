"""Localized fine-tuning: masks, budgets, frozen parameters, determinism, the planted mechanism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.editing.planted import ELSEWHERE, PLANTED, planted_adapter, table
from tests.tiny_models import CORPUS, build_tiny
from twopath.editing import (
    LocalizedFineTuning,
    Relearning,
    compare_localizations,
    component_mask,
    counterfactual_gap,
    feature_task,
    fill_budget,
    relearn,
    word_task,
)
from twopath.editing.localizations import by_random
from twopath.editing.mask import model_size
from twopath.editing.save import save_edited
from twopath.runtime.tabular import TorchTabularClassifier
from twopath.runtime.text import HFTextClassifier
from twopath.types import Component, TwopathError

SENTENCES = [s for s in CORPUS if "good" in s.lower()] + [s for s in CORPUS if "good" not in s.lower()]


@pytest.fixture(scope="module")
def planted():
    adapter = planted_adapter()
    task = feature_task(adapter, table(400, 0), table(200, 2), "x0", "y", values=(-1.0, 1.0), n_train=200,
                        n_heldout=200)
    return adapter, task


def _text_adapter(family: str) -> HFTextClassifier:
    model, tokenizer = build_tiny(family)
    adapter = HFTextClassifier(model, tokenizer, name=f"tiny-{family}")
    adapter.background = list(CORPUS[:8])
    return adapter


def _word(adapter: HFTextClassifier):
    labels = [int("good" in s or "great" in s) for s in SENTENCES]
    return word_task(adapter, SENTENCES[::2], labels[::2], SENTENCES[1::2], labels[1::2], "good", n_train=8,
                     n_heldout=8, n_maintain=8)


def _snapshot(adapter) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in adapter.model.named_parameters()}


def _check_only_mask_changed(adapter, result, before):
    """Inside ``applied``: entries outside the mask are bit-identical; some inside changed."""
    changed_inside = 0
    with result.applied(adapter):
        for name, p in adapter.model.named_parameters():
            mask = result.mask.masks.get(name)
            if mask is None:
                assert torch.equal(p, before[name]), name
            else:
                assert torch.equal(p[~mask], before[name][~mask]), name
                changed_inside += int((p[mask] != before[name][mask]).sum())
    assert changed_inside == result.n_changed > 0
    for name, p in adapter.model.named_parameters():  # and the adapter is back to the original
        assert torch.equal(p, before[name]), name


def test_parameters_outside_the_mask_are_bit_identical_on_a_tabular_mlp(planted):
    adapter, task = planted
    before = _snapshot(adapter)
    result = LocalizedFineTuning(steps=5, lr=0.05).edit(adapter, task, component_mask(adapter, PLANTED))
    assert result.outside_unchanged
    _check_only_mask_changed(adapter, result, before)


@pytest.mark.parametrize("family,kind", [("gpt2", "head"), ("gpt2", "neuron"), ("bert", "head"), ("bert", "neuron"),
                                         ("llama", "head"), ("llama", "neuron")])
def test_parameters_outside_the_mask_are_bit_identical_on_tiny_transformers(family, kind):
    adapter = _text_adapter(family)
    task = _word(adapter)
    before = _snapshot(adapter)
    mask = component_mask(adapter, [Component(kind, 1, 1), Component(kind, 0, 2)])
    result = LocalizedFineTuning(steps=3, lr=1e-2).edit(adapter, task, mask)
    _check_only_mask_changed(adapter, result, before)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_heads_mask_covers_its_qkv_and_output_slices(family):
    adapter = _text_adapter(family)
    hd = adapter.head_dim()
    mask = component_mask(adapter, [Component("head", 0, 3)])
    # per head: q rows (hd x d + bias), its k/v head's rows, and hd columns of the output projection
    d = adapter.model.config.hidden_size if family != "gpt2" else adapter.model.config.n_embd
    bias = 3 * hd if family == "gpt2" else 0
    assert mask.count == 4 * hd * d + bias


def test_grouped_query_heads_share_their_key_value_slices():
    adapter = _text_adapter("llama")  # 4 query heads, 2 key/value heads
    one = component_mask(adapter, [Component("head", 0, 0)]).count
    pair = component_mask(adapter, [Component("head", 0, 0), Component("head", 0, 1)]).count
    apart = component_mask(adapter, [Component("head", 0, 0), Component("head", 0, 2)]).count
    assert pair < apart == 2 * one


@pytest.mark.parametrize("which", ["tabular", "gpt2"])
def test_the_budget_is_filled_exactly_from_every_ranking(which, planted):
    adapter = planted[0] if which == "tabular" else _text_adapter("gpt2")
    kind = "neuron" if which == "tabular" else "head"
    budget = 37 if which == "tabular" else 1000  # not a multiple of any component's size
    for seed in range(4):
        mask = fill_budget(adapter, by_random(adapter, kind, seed), budget)
        assert mask.count == budget
        assert mask.partial is not None


def test_budgets_larger_than_the_ranking_or_empty_are_refused(planted):
    adapter, _ = planted
    with pytest.raises(TwopathError, match="fewer than the budget"):
        fill_budget(adapter, PLANTED, 10_000)
    with pytest.raises(TwopathError, match="at least 1"):
        fill_budget(adapter, PLANTED, 0)
    from twopath.editing.mask import check_budget
    with pytest.raises(TwopathError, match="parameter count"):
        check_budget(adapter, model_size(adapter) + 1)


def test_a_component_the_model_does_not_have_is_refused(planted):
    adapter, task = planted
    with pytest.raises(TwopathError, match="has 8 neurons"):
        component_mask(adapter, [Component("neuron", 0, 8)])
    with pytest.raises(TwopathError, match="out of range"):
        component_mask(adapter, [Component("neuron", 3, 0)])
    with pytest.raises(TwopathError, match="empty"):
        LocalizedFineTuning().edit(adapter, task, component_mask(adapter, []))


def test_editing_the_planted_neurons_removes_the_feature_and_editing_others_does_not(planted):
    adapter, task = planted
    original = counterfactual_gap(adapter, task.heldout_groups, task.target)["gap"]
    # at a fixed step budget: neurons elsewhere can learn to cancel x0 given many more steps
    editor = LocalizedFineTuning(steps=30, lr=0.05, maintain_weight=1.0, tol=0.0)
    gaps = {}
    for name, components in (("planted", PLANTED), ("elsewhere", ELSEWHERE)):
        result = editor.edit(adapter, task, component_mask(adapter, components))
        with result.applied(adapter):
            gaps[name] = counterfactual_gap(adapter, task.heldout_groups, task.target)["gap"]
    assert original > 0.5
    assert gaps["planted"] < 0.01 * original
    assert gaps["elsewhere"] > 0.05 * original
    assert counterfactual_gap(adapter, task.heldout_groups, task.target)["gap"] == original  # adapter untouched


def test_weights_flags_mode_and_hooks_are_restored_after_an_exception(planted, monkeypatch):
    adapter, task = planted
    before = _snapshot(adapter)
    adapter.model.train()
    flags = {n: p.requires_grad for n, p in adapter.model.named_parameters()}
    calls = {"n": 0}
    run = type(adapter).run

    def failing(self, inputs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("boom")
        return run(self, inputs)

    monkeypatch.setattr(type(adapter), "run", failing)
    with pytest.raises(RuntimeError, match="boom"):
        LocalizedFineTuning(steps=10, lr=0.5, check_every=100).edit(adapter, task, component_mask(adapter, PLANTED))
    from twopath.editing.localizations import by_probe

    calls["n"] = 3  # the probe's capture pass fails with its hooks on
    with pytest.raises(RuntimeError, match="boom"):
        by_probe(adapter, task, "neuron")
    monkeypatch.undo()
    assert adapter.model.training
    adapter.model.eval()
    assert {n: p.requires_grad for n, p in adapter.model.named_parameters()} == flags
    assert all(torch.equal(p, before[n]) for n, p in adapter.model.named_parameters())
    assert all(p.grad is None for p in adapter.model.parameters())
    from tests.helpers import n_hooks
    assert n_hooks(adapter.model) == 0


def test_relearning_is_deterministic_and_restores_the_model(planted):
    adapter, task = planted
    before = _snapshot(adapter)
    result = LocalizedFineTuning(steps=20, lr=0.05).edit(adapter, task, component_mask(adapter, PLANTED))
    first = relearn(adapter, result, task.relearn_inputs, task.relearn_labels, steps=5, lr=0.01, seed=3)
    second = relearn(adapter, result, task.relearn_inputs, task.relearn_labels, steps=5, lr=0.01, seed=3)
    other = relearn(adapter, result, task.relearn_inputs, task.relearn_labels, steps=5, lr=0.01, seed=4)
    assert all(torch.equal(first[n], second[n]) for n in first)
    assert any(not torch.equal(first[n], other[n]) for n in first)
    assert all(torch.equal(p, before[n]) for n, p in adapter.model.named_parameters())


def _no_seconds(value):
    if isinstance(value, dict):
        return {k: _no_seconds(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_no_seconds(v) for v in value]
    return value


def test_the_same_seed_gives_the_same_comparison_json(planted):
    adapter, task = planted

    def run():
        table = compare_localizations(adapter, task, kind="neuron", k=2,
                                      localizations=("ablation", "probe", "random", "last_layer", "all_parameters"),
                                      n_random=2, editor=LocalizedFineTuning(steps=15, lr=0.05, seed=1),
                                      relearning=Relearning(steps=3, lr=0.01))
        return json.dumps(_no_seconds(table.to_dict()), sort_keys=True)

    first = run()
    assert first == run()
    data = json.loads(first)
    budget = data["budget"]
    rows = {(r["localization"], r["seed"]): r for r in data["rows"]}
    for (name, _), row in rows.items():
        if name not in ("original", "all_parameters"):
            assert row["n_parameters"] == budget and row["budget_matched"]
    assert not rows[("all_parameters", None)]["budget_matched"]
    assert rows[("all_parameters", None)]["n_parameters"] == model_size(adapter)
    assert {("random", 0), ("random", 1)} <= set(rows)


def test_the_probe_finds_where_the_feature_is_written(planted):
    from twopath.editing.localizations import by_probe

    adapter, task = planted
    assert set(by_probe(adapter, task, "neuron")[:2]) == set(PLANTED)


def test_a_saved_edited_model_reloads_with_the_same_outputs(planted, tmp_path):
    adapter, task = planted
    result = LocalizedFineTuning(steps=20, lr=0.05).edit(adapter, task, component_mask(adapter, PLANTED))
    rows = task.heldout[:20]
    with result.applied(adapter):
        expected = adapter.predict_proba(rows)
    out = save_edited(adapter, result, tmp_path / "edited", metrics={"gap": 0.0})
    reloaded = TorchTabularClassifier.load(out)
    np.testing.assert_array_equal(reloaded.predict_proba(rows), expected)
    manifest = json.loads((out / "edit.json").read_text())
    assert manifest["edit"]["components"] == ["L0N0", "L0N1"]
    assert manifest["edit"]["n_parameters"] == result.mask.count
    with pytest.raises(TwopathError, match="already exists"):
        save_edited(adapter, result, out)


def test_bad_tasks_are_refused_in_one_line(planted):
    adapter, _ = planted
    with pytest.raises(TwopathError, match="unknown feature 'white'"):
        feature_task(adapter, table(20), table(20), "white", "y")
    text = _text_adapter("bert")
    with pytest.raises(TwopathError, match="in no held-out sentence"):
        word_task(text, SENTENCES, [0] * len(SENTENCES), ["A boring film."], [0], "good")


def test_every_localization_runs_on_a_text_model_at_one_budget():
    adapter = _text_adapter("bert")
    task = _word(adapter)
    assert task.pairs and all(len(adapter.batch_inputs([c])["input_ids"][0]) == len(adapter.batch_inputs([t])["input_ids"][0])
                              for t, c in task.pairs)  # same-length contrasts for patching
    table = compare_localizations(adapter, task, kind="head", k=1, n_random=1,
                                  localizations=("ablation", "attribution_patching", "probe", "bridge", "random"),
                                  editor=LocalizedFineTuning(steps=3, lr=1e-2), relearning=Relearning(steps=1))
    rows = table.to_dict()["rows"]
    assert [r["localization"] for r in rows] == ["original", "ablation", "attribution_patching", "probe", "bridge", "random"]
    assert all(r["n_parameters"] == table.budget and r["outside_unchanged"] for r in rows[1:])
    assert set(table.to_dict()["verdicts"]) >= {"criterion", "most_robust", "paper_finding"}
    assert all(np.isfinite(r["forget_gap"]) for r in rows)


def test_a_saved_edited_text_model_reloads_with_the_same_outputs(tmp_path):
    adapter = _text_adapter("gpt2")
    task = _word(adapter)
    result = LocalizedFineTuning(steps=3, lr=1e-2).edit(adapter, task, component_mask(adapter, [Component("head", 1, 0)]))
    texts = list(CORPUS[:4])
    with result.applied(adapter):
        expected = adapter.predict_proba(texts)
    before = adapter.predict_proba(texts)
    out = save_edited(adapter, result, tmp_path / "edited-gpt2")
    reloaded = HFTextClassifier.from_pretrained(out)
    np.testing.assert_allclose(reloaded.predict_proba(texts), expected, atol=1e-6)
    assert not np.allclose(expected, before)
    assert json.loads((out / "edit.json").read_text())["edit"]["components"] == ["L1H0"]
