"""Long inputs (issue 18): sweeps batched by the memory budget give the unbatched numbers, input
curves on a grid keep their exact points, and a text longer than the model is an error unless
``--truncate`` cuts it (and the report says how many tokens were dropped)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests import tiny_models
from tests.helpers import single_threaded
from tests.tiny_models import CORPUS, build_tiny, save_tiny
from twopath.cli import app
from twopath.comparisons import bridges, faithfulness
from twopath.mechanistic import MECHANISTIC_METHODS
from twopath.mechanistic.circuits import greedy_circuit, masked_logits
from twopath.runtime.interventions import (
    Edit,
    MaskedAblation,
    ablate,
    capture,
    intervene,
    read,
    site_key,
)
from twopath.runtime.text import HFTextClassifier, truncate_text
from twopath.runtime.trace import forget
from twopath.types import Attribution, Component, Example

TEXT = " ".join(" ".join(CORPUS).split()[:14])  # 14 words, ~17 tokens
CONTRAST = TEXT.replace("good", "bad", 1)
#: (max_rows, memory budget in rows): one row per pass, a few, and a budget that forces many chunks
BUDGETS = [(1, None), (3, None), (None, 2), (None, None)]


@pytest.fixture(scope="module")
def bert():
    model, tokenizer = build_tiny("bert")
    adapter = HFTextClassifier(model, tokenizer, name="tiny-bert")
    adapter.background = list(CORPUS[:6])
    with single_threaded():
        yield adapter


def _budget(adapter, max_rows, rows):
    """Set a hard cap, or a memory budget worth ``rows`` rows of TEXT; forget what was cached."""
    forget(adapter)
    adapter.max_rows = max_rows
    inputs = adapter.inputs(Example("t", TEXT))
    adapter.memory_budget = rows * adapter.row_bytes(inputs) if rows else type(adapter).memory_budget
    if rows:
        assert adapter.rows_per_pass(inputs) == rows


@pytest.fixture(autouse=True)
def _restore(bert):
    yield
    _budget(bert, None, None)


def _output(adapter, inputs, target=1):
    with torch.no_grad():
        return float(adapter.output(adapter.run(inputs), target)[0])


# --- per-position sweeps: batched == one intervention per forward pass ------------------------------


@pytest.mark.parametrize(("max_rows", "rows"), BUDGETS)
def test_position_ablation_batched_equals_one_row_per_pass(bert, max_rows, rows):
    _budget(bert, max_rows, rows)
    example = Example("t", TEXT)
    loc = MECHANISTIC_METHODS.create("position_ablation").localize(bert, example, target="positive")
    inputs = bert.inputs(example)
    clean = _output(bert, inputs)
    assert len(loc.components) == bert.n_layers * inputs["input_ids"].shape[1]
    reference = []
    for c in loc.components:
        with intervene(bert, ablate(bert, [c], "mean")):
            reference.append(clean - _output(bert, inputs))
    assert np.allclose(loc.effects, reference, atol=1e-6)


@pytest.mark.parametrize(("max_rows", "rows"), BUDGETS)
def test_per_position_patching_batched_equals_one_row_per_pass(bert, max_rows, rows):
    _budget(bert, max_rows, rows)
    example, contrast = Example("t", TEXT), Example("c", CONTRAST)
    loc = MECHANISTIC_METHODS.create("activation_patching", sites=("resid",)).localize(
        bert, example, target="positive", corrupted=contrast)
    clean_in, corrupt_in = bert.inputs(example), bert.inputs(contrast)
    clean, corr = _output(bert, clean_in), _output(bert, corrupt_in)
    with torch.no_grad(), capture(bert, loc.components) as store:
        bert.run(clean_in)
    reference = []
    for c in loc.components:  # denoise: the corrupted run with one clean activation patched in
        with intervene(bert, [Edit(0, c, read(bert, c, store[site_key(c)]))]):
            reference.append(_output(bert, corrupt_in))
    patched = loc.effects * (loc.clean - loc.corrupted) + loc.corrupted  # the outputs, un-normalized
    assert (loc.clean, loc.corrupted) == pytest.approx((clean, corr), abs=1e-6)
    assert np.allclose(patched, reference, atol=1e-6)


@pytest.mark.parametrize(("max_rows", "rows"), [(1, None), (None, 3), (None, None)])
def test_long_position_sweeps_group_tokens_by_word_and_equal_the_reference(bert, monkeypatch, max_rows, rows):
    from twopath.mechanistic import ablation

    monkeypatch.setattr(ablation, "GROUP_ABOVE_TOKENS", 8)  # TEXT (~17 tokens) counts as long
    _budget(bert, max_rows, rows)
    example, contrast = Example("t", TEXT), Example("c", CONTRAST)
    inputs, corrupt_in = bert.inputs(example), bert.inputs(contrast)
    inp = bert.encode(TEXT)
    groups = ablation.position_groups(bert, example, inp.n_tokens)
    assert groups is not None and sorted(p for g in groups for p in g) == list(range(inp.n_tokens))
    for g in groups:  # a word's tokens together, every other position alone
        assert len({int(inp.token_word[p]) for p in g}) == 1 and (len(g) == 1 or inp.token_word[g[0]] >= 0)
    assert len(groups) == len(inp.words) + int((inp.token_word < 0).sum()) < inp.n_tokens

    loc = MECHANISTIC_METHODS.create("position_ablation").localize(bert, example, target="positive")
    assert loc.meta["position_groups"] == groups and len(loc.components) == bert.n_layers * len(groups)
    clean = _output(bert, inputs)
    reference = []
    for c in loc.components:
        members = [Component("resid", c.layer, position=p) for p in groups[[g[0] for g in groups].index(c.position)]]
        with intervene(bert, ablate(bert, members, "mean")):
            reference.append(clean - _output(bert, inputs))
    assert np.allclose(loc.effects, reference, atol=1e-6)

    patch = MECHANISTIC_METHODS.create("activation_patching", sites=("resid",)).localize(
        bert, example, target="positive", corrupted=contrast)
    assert patch.meta["position_groups"] == groups and patch.components == loc.components
    with torch.no_grad(), capture(bert, patch.components) as store:
        bert.run(inputs)
    patched = patch.effects * (patch.clean - patch.corrupted) + patch.corrupted
    for c, value in zip(patch.components, patched, strict=True):
        members = [Component("resid", c.layer, position=p) for p in groups[[g[0] for g in groups].index(c.position)]]
        with intervene(bert, [Edit(0, m, read(bert, m, store[site_key(m)])) for m in members]):
            assert value == pytest.approx(_output(bert, corrupt_in), abs=1e-6)


# --- masked ablation (circuits, component curves): chunked by the budget ------------------------------


@pytest.mark.parametrize(("max_rows", "rows"), BUDGETS)
def test_masked_ablation_chunks_equal_single_rows(bert, max_rows, rows):
    _budget(bert, max_rows, rows)
    inputs = bert.inputs(Example("t", TEXT))
    candidates = bert.components("head")
    masked = MaskedAblation(bert, candidates)
    keep = np.random.default_rng(0).random((9, len(candidates))) < 0.5
    batched = masked_logits(bert, masked, inputs, keep)
    single = torch.cat([masked.run(inputs, keep[i : i + 1]) for i in range(len(keep))])
    assert batched.shape == single.shape == (9, 2)
    assert torch.allclose(batched, single, atol=1e-6)


def test_pass_budget_by_device_and_pass_kind(bert):
    """On the CPU forward passes take the cache-sized budget and passes with a backward pass the
    larger one; a set ``memory_budget`` or ``max_rows`` overrides both; IG's rows follow it."""
    from twopath.attribution.base import gradient_rows
    from twopath.runtime.adapter import CPU_PASS_BUDGET, PASS_BUDGET

    inputs = bert.inputs(Example("t", TEXT))
    per_row = bert.row_bytes(inputs)
    assert bert.device.type == "cpu" and CPU_PASS_BUDGET < PASS_BUDGET
    assert bert.pass_budget() == CPU_PASS_BUDGET and bert.pass_budget(gradients=True) == PASS_BUDGET
    assert bert.rows_per_pass(inputs) == CPU_PASS_BUDGET // per_row
    assert gradient_rows(bert, inputs) == (PASS_BUDGET // per_row) // (3 * bert.n_layers)
    bert.memory_budget = 40 * per_row
    assert bert.pass_budget() == bert.pass_budget(gradients=True) == 40 * per_row
    assert bert.rows_per_pass(inputs) == 40 and gradient_rows(bert, inputs) == 40 // (3 * bert.n_layers)
    bert.max_rows = 3
    assert bert.rows_per_pass(inputs) == 3 and bert.rows_per_pass(inputs, PASS_BUDGET) == 3


def test_circuit_search_does_not_depend_on_the_budget(bert):
    example = Example("t", TEXT)
    results = []
    for max_rows, rows in BUDGETS:
        _budget(bert, max_rows, rows)
        results.append(greedy_circuit(bert, example, 1, threshold=0.6, max_size=4, n_controls=5))
    first = results[0]
    for other in results[1:]:  # the float32 outputs agree to 1e-6; the shares divide them by a small gap
        assert other.components == first.components
        assert (other.clean, other.none) == pytest.approx((first.clean, first.none), abs=1e-6)
        assert other.sufficiency == pytest.approx(first.sufficiency, rel=1e-5)
        assert other.necessity == pytest.approx(first.necessity, rel=1e-5)
        assert other.control["sufficiency_mean"] == pytest.approx(first.control["sufficiency_mean"], rel=1e-5)


def test_component_curves_do_not_depend_on_the_budget(bert):
    example = Example("t", TEXT)
    loc = MECHANISTIC_METHODS.create("head_ablation").localize(bert, example, target="positive")
    curves = []
    for max_rows, rows in BUDGETS:
        _budget(bert, max_rows, rows)
        curves.append(faithfulness.internal_faithfulness(bert, example, [loc], k_max=5, n_random=2))
    for other in curves[1:]:
        for a, b in zip(curves[0], other, strict=True):
            assert np.allclose(a["deletion_curve"], b["deletion_curve"], atol=1e-6)
            assert np.allclose(a["insertion_curve"], b["insertion_curve"], atol=1e-6)


@pytest.mark.parametrize(("max_rows", "rows"), [(1, None), (None, 8), (None, None)])
def test_bridge_map_shares_its_passes_and_equals_one_captum_run_per_component(bert, max_rows, rows):
    _budget(bert, max_rows, rows)
    example = Example("t", TEXT)
    components = [Component("head", 0, 1), Component("head", 1, 3), Component("neuron", 1, 5), Component("head", 1, 0)]
    shared = bridges.components_input_attribution(bert, example, components, 1)
    alone = np.vstack([bridges.component_input_attribution(bert, example, c, 1) for c in components])
    assert shared.shape == (len(components), len(bert.units(example)))
    assert np.abs(alone).max() > 1e-3 and np.allclose(shared, alone, atol=1e-6)


def test_bridge_score_equals_one_map_per_draw(bert):
    """The top components and the control draws share one map: the same shares as one map each."""
    _budget(bert, None, None)
    example = Example("t", TEXT)
    pool = bert.components("head")
    units = bert.units(example)
    scores = np.arange(len(units), dtype=float)
    attribution = Attribution("t", "made-up", "positive", units, scores)
    score = bridges.bridge_score(bert, example, attribution, pool[::-1], pool, k_components=3, n_random=3, seed=4)
    top_units = attribution.ranking()[:3]
    top = pool[::-1][:3]
    others = [c for c in pool if c not in top]
    rng = np.random.default_rng(4)
    control = []
    for _ in range(3):
        draw = [others[i] for i in rng.choice(len(others), size=3, replace=False)]
        control.append(bridges._share_on(bridges.bridge_map(bert, example, draw, 1), top_units))
    alone = bridges.bridge_map(bert, example, top, 1)
    assert score["share_on_top_units"] == pytest.approx(bridges._share_on(alone, top_units), abs=1e-6)
    assert score["control_mean"] == pytest.approx(float(np.mean(control)), abs=1e-6)
    assert score["control_sd"] == pytest.approx(float(np.std(control)), abs=1e-6)
    assert np.allclose(score["map"]["values"], alone.to_numpy(), atol=1e-6)


# --- input curves: a grid of k beyond 25 points ------------------------------------------------------


def test_curve_grid_keeps_the_fixed_points_and_is_full_for_short_inputs():
    assert list(faithfulness.curve_ks(8, max_points=25)) == list(range(9))  # the seed sentence
    assert list(faithfulness.curve_ks(24, max_points=25)) == list(range(25))
    grid = faithfulness.curve_ks(100, max_points=25)
    assert grid[0] == 0 and grid[1] == 1 and 20 in grid and grid[-1] == 100 and len(grid) <= 27
    assert (np.diff(grid) > 0).all()


def test_gridded_input_curves_equal_the_full_curve_at_their_points(bert):
    text = " ".join(" ".join(CORPUS).split()[:30])
    example = Example("long", text)
    n = len(bert.units(example))
    scores = np.random.default_rng(1).normal(size=n)
    attribution = Attribution("long", "made-up", "positive", bert.units(example), scores)
    full = faithfulness.input_faithfulness(bert, example, [attribution], n_random=2, max_points=None)
    grid = faithfulness.input_faithfulness(bert, example, [attribution], n_random=2)
    ks = grid[0]["curve_k"]
    assert len(ks) < n + 1 and "curve_k" not in full[0]
    for g, f in zip(grid, full, strict=True):
        assert np.allclose(g["deletion_curve"], np.asarray(f["deletion_curve"])[ks], atol=1e-12)
        assert g["comprehensiveness"] == pytest.approx(f["comprehensiveness"], abs=1e-12)
        assert g["sufficiency"] == pytest.approx(f["sufficiency"], abs=1e-12)
        interpolated = np.interp(np.arange(1, n + 1), ks, g["deletion_curve"])
        assert g["aopc_deletion"] == pytest.approx(float(np.mean(f["deletion_curve"][0] - interpolated)), abs=1e-12)
        assert abs(g["aopc_deletion"] - f["aopc_deletion"]) < 0.05  # close to the every-k mean


# --- truncation: an error unless --truncate, and then the report says what was dropped -------------


@pytest.fixture(scope="module")
def bert16(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    with pytest.MonkeyPatch.context() as mp:  # a model that takes 16 positions
        mp.setattr(tiny_models, "MAX_LEN", 16)
        return save_tiny("bert", root / "bert16")


LONG = " ".join([tiny_models.TEXT] * 3)
LIGHT = 'checks = false\n[methods]\nattribution = ["occlusion"]\nmechanistic = ["head_ablation"]\n'


def test_truncate_text_cuts_after_the_last_whole_word_and_counts_the_drop(bert16):
    adapter = HFTextClassifier.from_pretrained(bert16)
    cut = truncate_text(adapter, LONG)
    assert LONG.startswith(cut.text) and LONG[len(cut.text)] == " "  # whole words
    kept = adapter.encode(cut.text).n_tokens
    total = len(adapter.tokenizer(LONG)["input_ids"])
    assert kept <= 16 < total and cut.dropped_tokens == total - kept > 0
    assert cut.dropped_words == len(LONG.split()) - len(cut.text.split())
    assert truncate_text(adapter, "The movie was good.").dropped_tokens == 0


def test_over_long_text_is_an_error_unless_truncate(bert16, tmp_path):
    config = tmp_path / "light.toml"
    config.write_text(LIGHT)
    runner = CliRunner()
    base = ["explain", "--model", str(bert16), "--text", LONG, "-q", "--config", str(config), "--format", "json"]
    refused = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "longer than the model's 16 tokens" in lines[0] and "--truncate" in lines[0]
    assert not (tmp_path / "a").exists()
    cut = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--truncate"])
    assert cut.exit_code == 0, cut.output
    doc = json.loads((tmp_path / "b" / "report.json").read_text())
    dropped = truncate_text(HFTextClassifier.from_pretrained(bert16), LONG).dropped_tokens
    notes = doc["examples"][0]["notes"]
    assert any(f"{dropped} tokens" in n and "--truncate" in n for n in notes), notes


def test_position_groups_beyond_the_cap_are_spans_of_consecutive_words():
    from twopath.mechanistic.ablation import spans

    words = [[0], *[[1 + 2 * i, 2 + 2 * i] for i in range(100)], [201]]  # CLS, 100 two-token words, SEP
    merged = spans(words, 10)
    assert len(merged) == 10 and merged[0] == [0] and merged[-1] == [201]  # where the model reads stays alone
    assert [p for g in merged for p in g] == list(range(202))  # every position once, in order
    sizes = [len(g) for g in merged[1:-1]]
    assert max(sizes) - min(sizes) <= 2  # runs of nearly equal length, words never split
    assert all(len(g) % 2 == 0 for g in merged[1:-1])
    assert spans(words[:5], 10) == words[:5]


def test_a_passage_gets_the_coarser_curve_grid():
    assert faithfulness.curve_points_for(8) == faithfulness.curve_points_for(128) == faithfulness.MAX_CURVE_POINTS
    assert faithfulness.curve_points_for(129) == faithfulness.MAX_CURVE_POINTS_LONG < faithfulness.MAX_CURVE_POINTS
    grid = faithfulness.curve_ks(190, max_points=faithfulness.curve_points_for(190))
    assert grid[0] == 0 and grid[1] == 1 and 38 in grid and grid[-1] == 190 and len(grid) <= 15


def test_input_curves_follow_the_grid_rule_by_default(bert, monkeypatch):
    text = " ".join(" ".join(CORPUS).split()[:30])
    example = Example("long", text)
    n = len(bert.units(example))
    attribution = Attribution("long", "made-up", "positive", bert.units(example), np.arange(n, dtype=float))
    before = faithfulness.input_faithfulness(bert, example, [attribution], n_random=1)[0]["curve_k"]
    monkeypatch.setattr(faithfulness, "LONG_CURVE_UNITS", n - 1)  # this input is now "a passage"
    after = faithfulness.input_faithfulness(bert, example, [attribution], n_random=1)[0]["curve_k"]
    assert len(before) >= faithfulness.MAX_CURVE_POINTS and len(after) <= faithfulness.MAX_CURVE_POINTS_LONG + 2
