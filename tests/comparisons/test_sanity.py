"""Model-randomization sanity check: constant explanations fail, IG passes, the original is safe."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from twopath.attribution import ATTRIBUTION_METHODS
from twopath.comparisons.sanity import (
    detached_copy,
    layer_blocks,
    randomization_check,
    randomize_block,
    randomized_copy,
    verdict,
    verdicts,
)
from twopath.datasets import loan
from twopath.runtime.trace import caches
from twopath.types import Example, TwopathError

SENTENCE = "The movie was surprisingly good, despite slow pacing."
LOAN_EXAMPLE = Example("loan-seed", loan.SEED_APPLICANT)


class Recorder:
    """``explain`` for one attribution method that also keeps every score vector it returned."""

    def __init__(self, method: str, example: Example, target: str, **settings: Any):
        self.method, self.example, self.target, self.settings = method, example, target, settings
        self.calls: list[np.ndarray] = []

    def __call__(self, adapter: Any) -> dict[str, np.ndarray]:
        scores = ATTRIBUTION_METHODS.create(self.method, seed=0, **self.settings).attribute(
            adapter, self.example, target=self.target).scores
        self.calls.append(np.array(scores))
        return {self.method: scores}


def snapshot(adapter: Any, inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    state = {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}
    with torch.no_grad():
        return state, adapter.run(inputs).clone()


def assert_unchanged(adapter: Any, inputs: dict[str, torch.Tensor], before: tuple[dict[str, torch.Tensor], torch.Tensor]) -> None:
    state, logits = before
    now_state, now_logits = snapshot(adapter, inputs)
    assert state.keys() == now_state.keys()
    assert all(torch.equal(state[k], now_state[k]) for k in state)
    assert torch.equal(logits, now_logits)  # bit-identical outputs


def final_rows(frame: Any) -> Any:
    return frame[frame["step"] == frame["step"].max()]


# --- layers and randomization -----------------------------------------------------------------

def test_tabular_layers_run_from_the_output_down(loan_adapter):
    blocks = layer_blocks(loan_adapter)
    assert [label for label, _ in blocks] == ["output", "L5", "L4", "L3", "L2", "L1", "L0"]
    modules = dict(loan_adapter.model.named_modules())
    linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
    assert [prefixes[0] for _, prefixes in blocks] == linears[::-1]


def test_text_layers_are_head_then_last_layer_first(tiny_sentiment):
    blocks = layer_blocks(tiny_sentiment)
    assert [label for label, _ in blocks] == ["head", "L1", "L0"]
    head = blocks[0][1]
    assert "classifier" in head and "bert.pooler.dense" in head
    assert not any(p.startswith(("bert.embeddings", "bert.encoder")) for p in head)
    assert blocks[1][1] == ("bert.encoder.layer.1",)
    with_embeddings = layer_blocks(tiny_sentiment, embeddings=True)
    assert with_embeddings[-1] == ("embeddings", ("bert.embeddings",))


def test_randomized_copy_changes_only_the_top_layers(loan_adapter):
    inputs = {"x": loan_adapter.transform(loan_adapter.background.head(16))}
    before = snapshot(loan_adapter, inputs)
    clone = randomized_copy(loan_adapter, n_blocks=2, seed=0)
    assert clone.model is not loan_adapter.model
    assert clone.hidden_modules[0] is not loan_adapter.hidden_modules[0]
    assert all(any(m is h for m in clone.model.modules()) for h in clone.hidden_modules)
    linears = [(a, b) for a, b in zip(loan_adapter.model.modules(), clone.model.modules(), strict=True)
               if isinstance(a, nn.Linear)]
    for i, (orig, new) in enumerate(linears):
        same = torch.equal(orig.weight, new.weight) and torch.equal(orig.bias, new.bias)
        assert same == (i < len(linears) - 2), f"Linear {i}"
    orig, new = linears[-2]
    ratio = float(new.weight.detach().std() / orig.weight.detach().std())
    assert 0.7 < ratio < 1.4  # redrawn at the scale of the weights it replaced
    with torch.no_grad():
        assert not torch.allclose(clone.run(inputs), before[1])
    assert_unchanged(loan_adapter, inputs, before)


def test_same_seed_same_randomization(loan_adapter):
    a, b = randomized_copy(loan_adapter, seed=3), randomized_copy(loan_adapter, seed=3)
    c = randomized_copy(loan_adapter, seed=4)
    sa, sb, sc = (m.model.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_the_cascade_copy_shares_only_what_it_never_redraws(tiny_sentiment):
    """Embeddings outside the cascade are the original's own tensors (not duplicated); every
    redrawn layer is the copy's own; with the embeddings in the cascade nothing is shared."""
    inputs = tiny_sentiment.forward_inputs(Example("s", SENTENCE))
    before = snapshot(tiny_sentiment, inputs)
    embedding = tiny_sentiment.embedding_layer().weight
    clone = randomized_copy(tiny_sentiment, seed=0)
    assert clone.embedding_layer().weight is embedding
    redrawn = [p for _, prefixes in layer_blocks(tiny_sentiment) for p in prefixes]
    original = dict(tiny_sentiment.model.named_parameters())
    for name, param in clone.model.named_parameters():
        assert (param is original[name]) == (not any(name == p or name.startswith(p + ".") for p in redrawn)), name
    full = randomized_copy(tiny_sentiment, seed=0, embeddings=True)
    assert not any(a is b for a, b in zip(full.model.parameters(), tiny_sentiment.model.parameters(), strict=True))
    assert not torch.equal(full.embedding_layer().weight, embedding)
    assert_unchanged(tiny_sentiment, inputs, before)


def test_a_weight_tied_to_a_redrawn_head_is_copied(tmp_path):
    """A causal LM's output head is its input embedding: redrawing the head must not reach the original."""
    from tests.tiny_models import save_tiny
    from twopath.runtime.text import PromptedLM

    adapter = PromptedLM.from_pretrained_prompted(save_tiny("gpt2", tmp_path / "lm", causal_lm=True),
                                                  "Review: {text} Sentiment:", [" bad", " good"])
    assert adapter.model.lm_head.weight is adapter.embedding_layer().weight  # tied
    inputs = adapter.forward_inputs(Example("s", SENTENCE))
    before = snapshot(adapter, inputs)
    clone = randomized_copy(adapter, n_blocks=1, seed=0)  # the head only
    assert clone.embedding_layer().weight is not adapter.embedding_layer().weight
    assert clone.model.lm_head.weight is clone.embedding_layer().weight  # still tied in the copy
    assert_unchanged(adapter, inputs, before)


def test_randomize_block_rejects_an_empty_block(loan_adapter):
    clone = detached_copy(loan_adapter)
    with pytest.raises(TwopathError):
        randomize_block(clone.model, ("no.such.module",), torch.Generator().manual_seed(0))


# --- the check --------------------------------------------------------------------------------

def test_a_constant_attribution_fails(loan_adapter):
    def constant(_: Any) -> dict[str, np.ndarray]:
        return {"constant": np.array([0.5, -2.0, 1.0, 3.0, 0.1])}

    frame = randomization_check(loan_adapter, constant, seed=0)
    assert set(frame["verdict"]) == {"fails"}
    assert np.allclose(frame["spearman_abs"], 1.0) and np.allclose(frame["spearman_signed"], 1.0)
    assert sorted(frame["step"].unique()) == list(range(8))  # step 0 plus 7 layers
    assert final_rows(frame)["randomized"].iloc[0] == "output+L5+L4+L3+L2+L1+L0"


def test_integrated_gradients_passes_on_the_tiny_text_model(tiny_sentiment):
    inputs = tiny_sentiment.forward_inputs(Example("s", SENTENCE))
    before = snapshot(tiny_sentiment, inputs)
    explain = Recorder("integrated_gradients", Example("s", SENTENCE), "positive")
    frame = randomization_check(tiny_sentiment, explain, seed=0, repeats=3)
    assert len(explain.calls) == 1 + 3 * 3  # the original once, then 3 layers x 3 repeats
    assert (frame.loc[frame["step"] == 0, "spearman_abs"] == 1.0).all()
    summary = verdicts(frame)["integrated_gradients"]
    assert summary["verdict"] == "passes"
    assert abs(summary["spearman_abs"]) < 0.5
    assert len(summary["spearman_abs_per_repeat"]) == 3
    json.dumps(verdicts(frame))  # JSON-friendly
    assert_unchanged(tiny_sentiment, inputs, before)


def test_integrated_gradients_passes_on_the_loan_model(loan_adapter):
    inputs = loan_adapter.forward_inputs(LOAN_EXAMPLE)
    before = snapshot(loan_adapter, inputs)
    # randomized MLPs often need IG's full 512 steps to converge, and captum's Gauss-Legendre
    # nodes for 512 steps are slow to compute; 128 steps give the same rankings here
    explain = Recorder("integrated_gradients", LOAN_EXAMPLE, "approved", max_steps=128)
    frame = randomization_check(loan_adapter, explain, seed=0, repeats=5)
    final = final_rows(frame)
    assert len(final) == 5 and (final["verdict"] == "passes").all()
    assert abs(final["spearman_abs"].mean()) < 0.5
    assert not np.allclose(explain.calls[0], explain.calls[-1])
    assert_unchanged(loan_adapter, inputs, before)


def test_shap_on_a_randomized_copy_is_not_served_from_the_cache(loan_adapter):
    shap = Recorder("shap", LOAN_EXAMPLE, "approved", algorithm="exact")
    original = shap(loan_adapter)["shap"]
    assert caches(loan_adapter).evaluators  # the cache the copy must not inherit
    faithful = detached_copy(loan_adapter)
    assert not caches(faithful).evaluators
    np.testing.assert_allclose(shap(faithful)["shap"], original, rtol=1e-6, atol=1e-9)
    randomized = randomized_copy(loan_adapter, seed=0)
    assert not caches(randomized).evaluators
    assert not np.allclose(shap(randomized)["shap"], original)


def test_each_cascade_step_explains_its_own_model(loan_adapter):
    shap = Recorder("shap", LOAN_EXAMPLE, "approved", algorithm="exact")
    randomization_check(loan_adapter, shap, n_steps=3, seed=0)
    assert len(shap.calls) == 4
    for before, after in zip(shap.calls, shap.calls[1:], strict=False):
        assert not np.allclose(before, after)  # no step reuses the previous step's memo


def test_the_check_is_repeatable(loan_adapter):
    explain: Callable[[Any], dict[str, np.ndarray]] = Recorder("gradient_x_input", LOAN_EXAMPLE, "approved")
    a = randomization_check(loan_adapter, explain, seed=1)
    b = randomization_check(loan_adapter, explain, seed=1)
    assert a.equals(b)


def test_verdict_rule():
    assert verdict(0.49) == "passes"
    assert verdict(-0.49) == "passes"
    assert verdict(0.5) == "fails"
    assert verdict(-0.8) == "fails"
    assert verdict(0.3, threshold=0.2) == "fails"
    assert verdict(float("nan")) == "inconclusive"


def test_bad_inputs_raise(loan_adapter):
    explain = Recorder("gradient_x_input", LOAN_EXAMPLE, "approved")
    with pytest.raises(TwopathError):
        randomization_check(loan_adapter, explain, n_steps=0)
    with pytest.raises(TwopathError):
        randomization_check(loan_adapter, explain, n_steps=8)
    with pytest.raises(TwopathError):
        randomization_check(loan_adapter, explain, threshold=0.0)
    with pytest.raises(TwopathError):
        randomization_check(loan_adapter, explain, repeats=0)
    with pytest.raises(TwopathError):
        randomization_check(loan_adapter, lambda _: {})

    def shrinking(adapter: Any) -> dict[str, np.ndarray]:
        n = 5 if adapter is loan_adapter else 4
        return {"m": np.arange(n, dtype=float)}

    with pytest.raises(TwopathError):
        randomization_check(loan_adapter, shrinking, n_steps=1)


# --- the bounded protocol of long inputs ---------------------------------------------------------


def test_coarse_steps_keep_the_top_the_next_and_all():
    from twopath.comparisons.sanity import coarse_steps

    assert coarse_steps(3) == [1, 2, 3]
    assert coarse_steps(7) == [1, 2, 4, 7]
    assert coarse_steps(13)[:2] == [1, 2] and coarse_steps(13)[-1] == 13 and len(coarse_steps(13)) == 4


def test_a_coarse_cascade_equals_the_full_one_at_its_steps(loan_adapter):
    full_explain = Recorder("gradient_x_input", LOAN_EXAMPLE, "approved")
    coarse_explain = Recorder("gradient_x_input", LOAN_EXAMPLE, "approved")
    full = randomization_check(loan_adapter, full_explain, seed=3)
    n = int(full["step"].max())
    coarse = randomization_check(loan_adapter, coarse_explain, seed=3, at_steps=[1])
    assert len(coarse_explain.calls) == 3  # the original, step 1 and the last step (always explained)
    assert sorted(coarse["step"].unique()) == [0, 1, n]
    kept = full[full["step"].isin([0, 1, n])].reset_index(drop=True)
    columns = ["step", "spearman_abs", "spearman_signed", "verdict"]
    assert kept[columns].equals(coarse.reset_index(drop=True)[columns])  # same draws, in the same order
    with pytest.raises(TwopathError, match="at_steps"):
        randomization_check(loan_adapter, coarse_explain, at_steps=[n + 1])


def test_the_sanity_plan_bounds_long_inputs():
    from twopath.pipeline import SANITY_SETTINGS, sanity_plan

    methods = ["shap", "lime", "integrated_gradients", "occlusion"]
    short = sanity_plan(8, 7, methods)
    assert short["repeats"] == 2 and short["steps"] is None and short["settings"] is SANITY_SETTINGS
    text = sanity_plan(12, 7, methods)
    assert text["repeats"] == 1 and text["steps"] == [1, 2, 4, 7]
    assert text["methods"] == ["integrated_gradients", "occlusion"]
    assert set(text["skipped"]) == {"shap", "lime"} and all("12 units" in r for r in text["skipped"].values())
    assert text["settings"]["integrated_gradients"] == {"n_steps": 16, "max_steps": 16}
    table = sanity_plan(12, 7, methods, positional=False)  # a table's rows are cheap: all methods
    assert table["repeats"] == 1 and table["steps"] == [1, 2, 4, 7] and table["methods"] == methods
    assert table["settings"]["integrated_gradients"] == {"max_steps": 32}
    passage = sanity_plan(190, 7, methods)  # a passage: occlusion's rows per randomized model are its words
    assert passage["methods"] == ["integrated_gradients"] and set(passage["skipped"]) == {"shap", "lime", "occlusion"}
    assert sanity_plan(128, 7, methods)["methods"] == ["integrated_gradients", "occlusion"]
    assert sanity_plan(190, 7, methods, positional=False)["methods"] == ["integrated_gradients", "occlusion"]
    long = sanity_plan(48, 7, methods, positional=False)
    assert long["methods"] == ["integrated_gradients", "occlusion"]
    assert set(long["skipped"]) == {"shap", "lime"} and all("48 units" in r for r in long["skipped"].values())


def test_a_light_budget_that_disagrees_with_the_full_run_is_inconclusive(tiny_sentiment):
    from twopath.pipeline import randomization_sanity
    from twopath.types import Attribution

    example = Example("s", SENTENCE, "positive")
    real = ATTRIBUTION_METHODS.create("occlusion").attribute(tiny_sentiment, example, target="positive")
    agreeing = randomization_sanity(tiny_sentiment, example, "positive", ["occlusion"], 0, [real])
    assert agreeing["rows"][0]["budget_spearman_abs"] == pytest.approx(1.0)
    assert agreeing["rows"][0]["verdict"] in ("passes", "fails")
    # a "full run" whose magnitudes are the reverse of the light run's: its budget cannot be trusted
    order = np.argsort(np.argsort(-np.abs(real.scores)))
    reversed_scores = Attribution(real.example_id, real.method, real.target, real.units, (order + 1.0), real.base_value, {})
    doubted = randomization_sanity(tiny_sentiment, example, "positive", ["occlusion"], 0, [reversed_scores])
    assert doubted["rows"][0]["budget_spearman_abs"] < 0 and doubted["rows"][0]["verdict"] == "inconclusive"
