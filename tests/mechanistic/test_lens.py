"""Logit lens, direct logit attribution and direct effects on tiny random decoders of every
family with a linear residual stream (and the refusals for those without one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import single_threaded
from tests.tiny_models import DECODERS, TEXT, build_tiny
from twopath.mechanistic import MECHANISTIC_METHODS
from twopath.mechanistic.lens import residual_parts, verdicts
from twopath.runtime.text import HFTextClassifier, PromptedLM
from twopath.runtime.trace import Trace
from twopath.types import Example, TwopathError

LINEAR = tuple(f for f in DECODERS if f != "gemma2")
EXAMPLE = Example("e", TEXT)
CONTRAST = Example("c", TEXT.replace("good", "bad"))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_threaded():
        yield


def _adapter(family: str, prompted: bool = False) -> HFTextClassifier:
    model, tokenizer = build_tiny(family, causal_lm=prompted)
    if prompted:
        return PromptedLM(model, tokenizer, "Review: {text}\nSentiment:", (" negative", " positive"))
    return HFTextClassifier(model, tokenizer)


def _run(name, adapter, corrupted=None, **settings):
    return MECHANISTIC_METHODS.create(name, **settings).localize(adapter, EXAMPLE, target="positive",
                                                                 corrupted=corrupted)


def _logit_diff(adapter: HFTextClassifier) -> float:
    logits = Trace.of(adapter, EXAMPLE).logits[0]
    return float(logits[1] - logits[0])


@pytest.mark.parametrize("family", LINEAR)
def test_dla_parts_sum_to_the_logit_difference_and_the_lens_ends_at_the_output(family):
    adapter = _adapter(family)
    dla = _run("direct_logit_attribution", adapter)
    total = dla.effects.sum() + dla.meta["embeddings"] + dla.meta["constant"]
    assert total == pytest.approx(_logit_diff(adapter), abs=1e-4)
    assert dla.meta["gap"] < 1e-4
    assert len(dla.components) == adapter.n_layers * (adapter.n_heads + 1)
    lens = _run("logit_lens", adapter)
    assert lens.effects[-1] == pytest.approx(_logit_diff(adapter), abs=1e-5)
    assert [str(c) for c in lens.components] == [f"L{layer}" for layer in range(adapter.n_layers)]


@pytest.mark.parametrize("family", ("gpt2", "llama", "opt"))
def test_prompted_decoders_too(family):
    adapter = _adapter(family, prompted=True)
    dla = _run("direct_logit_attribution", adapter)
    assert dla.effects.sum() + dla.meta["embeddings"] + dla.meta["constant"] == pytest.approx(_logit_diff(adapter), abs=1e-4)
    assert _run("logit_lens", adapter).effects[-1] == pytest.approx(_logit_diff(adapter), abs=1e-5)


@pytest.mark.parametrize("family", ("gpt2", "llama", "gpt_neox", "phi"))
def test_frozen_norm_direct_effects_are_dla_differences_and_add_up(family):
    adapter = _adapter(family)
    direct = _run("direct_effect", adapter, corrupted=CONTRAST, frozen_norm=True)
    assert direct.meta["direction"] == "denoise"
    base, source = Trace.of(adapter, CONTRAST), Trace.of(adapter, EXAMPLE)
    components, source_parts, source_embed, source_final = residual_parts(adapter, source)
    _, base_parts, base_embed, base_final = residual_parts(adapter, base)
    linear, _ = adapter.frozen_readout(base_final)
    with torch.no_grad():
        share = linear(source_parts) - linear(base_parts)
    expected = (share[:, 1] - share[:, 0]).numpy()
    raw_change = np.asarray(direct.meta["raw"]) - direct.corrupted
    np.testing.assert_allclose(raw_change, expected, atol=1e-5)
    # with the norm frozen the read-out is linear: every part's direct change, the embeddings'
    # change included, adds up to the frozen read-out of the whole change of the stream
    with torch.no_grad():
        embed = linear((source_embed - base_embed)[None])[0]
        whole = linear((source_final - base_final)[None])[0]
    assert raw_change.sum() + float(embed[1] - embed[0]) == pytest.approx(float(whole[1] - whole[0]), abs=1e-4)


def test_direct_effect_of_a_component_patched_with_itself_is_zero():
    adapter = _adapter("llama")
    trace = Trace.of(adapter, EXAMPLE)
    _, parts, _, final = residual_parts(adapter, trace)
    rows = final[None] + (parts - parts)
    ones = torch.ones(len(rows), 1, dtype=torch.long)
    with torch.no_grad():
        logits = adapter.decode_hidden(rows[:, None, :], {"attention_mask": ones})
    np.testing.assert_allclose((logits[:, 1] - logits[:, 0]).numpy(), _logit_diff(adapter), atol=1e-5)


def test_verdicts_compare_direct_and_total_effects():
    adapter = _adapter("gpt2")
    direct = _run("direct_effect", adapter, corrupted=CONTRAST)
    total = _run("activation_patching", adapter, corrupted=CONTRAST, sites=("head",))
    rows = verdicts(direct, total, k=4)
    assert len(rows) == 4
    for row in rows:
        assert row["verdict"] in ("acts directly", "acts through later components", "no effect")
        assert np.isfinite(row["total"]) and np.isfinite(row["direct"])


@pytest.mark.parametrize(("family", "method"), [("gemma2", "direct_logit_attribution"), ("gemma2", "direct_effect"),
                                                ("bert", "direct_effect")])
def test_families_without_a_linear_residual_stream_are_refused_in_one_line(family, method):
    adapter = _adapter(family)
    needs = "residual parts" if method == "direct_logit_attribution" else "linear residual"
    with pytest.raises(TwopathError, match=rf"^{method} needs a model with {needs}") as err:
        _run(method, adapter, corrupted=CONTRAST)
    assert "\n" not in str(err.value)
    lens = _run("logit_lens", adapter)  # the lens only reads: it works on every family
    assert np.isfinite(lens.effects).all()


ENCODERS = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert", "deberta-v2")


def _last_hidden(adapter: HFTextClassifier) -> torch.Tensor:
    with torch.no_grad():
        return adapter.model.base_model(**adapter.inputs(EXAMPLE)).last_hidden_state[0, 0]


@pytest.mark.parametrize("family", ENCODERS)
def test_encoder_parts_rebuild_the_last_hidden_state_and_the_shares_add_up(family):
    from twopath.mechanistic.lens import encoder_parts

    adapter = _adapter(family)
    components, parts, embeddings, constant, _ = encoder_parts(adapter, Trace.of(adapter, EXAMPLE))
    assert len(components) == len(parts) == adapter.n_layers * (adapter.n_heads + 1)
    # every LayerNorm frozen at the clean run: the parts rebuild HF's own last hidden state
    torch.testing.assert_close(embeddings + parts.sum(0) + constant, _last_hidden(adapter), atol=1e-4, rtol=1e-4)
    dla = _run("direct_logit_attribution", adapter)
    assert dla.meta["approximate"] is True
    total = dla.effects.sum() + dla.meta["embeddings"] + dla.meta["constant"]
    assert total == pytest.approx(_logit_diff(adapter), abs=1e-4)


def _naive_errors(adapter: HFTextClassifier) -> np.ndarray:
    """|true change of the logit difference when one part is removed - its linear share|, one
    forward read-out per part and a finite-difference-free gradient from torch.func."""
    from twopath.mechanistic.lens import encoder_parts

    _, parts, embeddings, _, final = encoder_parts(adapter, Trace.of(adapter, EXAMPLE))
    ones = torch.ones(1, 1, dtype=torch.long)

    def diff(h: torch.Tensor) -> torch.Tensor:
        logits = adapter.decode_hidden(h[None, None, :], {"attention_mask": ones})[0]
        return logits[1] - logits[0]

    gradient = torch.func.grad(diff)(final)
    errors = []
    with torch.no_grad():
        for part in [*parts, embeddings]:
            errors.append(abs(float(diff(final) - diff(final - part)) - float(part @ gradient)))
    return np.array(errors)


@pytest.mark.parametrize("family", ("bert", "distilbert"))
def test_the_encoder_linearisation_error_is_the_measured_one(family):
    adapter = _adapter(family)
    dla = _run("direct_logit_attribution", adapter)
    errors = _naive_errors(adapter)
    assert dla.meta["linearisation_error_max"] == pytest.approx(errors.max(), abs=1e-5)
    assert dla.meta["linearisation_error_max"] > 1e-3  # tanh / ReLU: the approximation is not exact here


def test_a_linear_encoder_head_has_no_linearisation_error():
    adapter = _adapter("bert")
    model = adapter.model
    model.bert.pooler.activation = torch.nn.Identity()  # dense, then the classifier: an affine head
    with torch.no_grad():  # an affine head's remainder is its biases: classifier(pooler bias) + classifier bias
        model.bert.pooler.dense.bias.normal_(generator=torch.Generator().manual_seed(1))
        model.classifier.bias.copy_(torch.tensor([0.3, -0.2]))
        biases = model.classifier(model.bert.pooler.dense.bias)
    dla = _run("direct_logit_attribution", adapter)
    assert dla.meta["linearisation_error_max"] < 1e-4
    assert dla.meta["head_remainder"] == pytest.approx(float(biases[1] - biases[0]), abs=1e-4)



def _planted_gpt2() -> HFTextClassifier:
    """A 2-layer GPT-2 wired by hand (uniform attention, no MLPs, residual dims as wires):

    * the word ``good`` / ``bad`` writes +3 / -3 on dim 0;
    * L1H0 reads dim 0 and writes dim 3, which the score reads: it acts **directly**;
    * L0H0 reads dim 0 and writes dim 1, which only L1H1 reads (writing dim 2, which the score
      reads): L0H0 acts **through a later head**, with no direct effect of its own.
    """
    model, tokenizer = build_tiny("gpt2")
    d, hd = model.config.n_embd, model.config.n_embd // model.config.n_head
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for block in model.transformer.h:
            for norm in (block.ln_1, block.ln_2):
                norm.weight.fill_(1.0)
        model.transformer.ln_f.weight.fill_(1.0)
        wires = {(0, 0): (0, 1), (1, 0): (0, 3), (1, 1): (1, 2)}  # (layer, head): (reads, writes)
        for (layer, head), (reads, writes) in wires.items():
            attn = model.transformer.h[layer].attn
            attn.c_attn.weight[reads, 2 * d + head * hd] = 1.0  # value component 0 of the head
            attn.c_proj.weight[head * hd, writes] = 1.0
        wte = model.transformer.wte.weight
        wte[:, 4:] = torch.randn(wte.shape[0], d - 4, generator=torch.Generator().manual_seed(0)) * 0.1
        for word, sign in ((" good", 3.0), (" bad", -3.0)):
            (token,) = tokenizer(word, add_special_tokens=False)["input_ids"]
            wte[token, 0] = sign
        model.score.weight[1, 2] = model.score.weight[1, 3] = 4.0
    return HFTextClassifier(model, tokenizer)


def test_a_planted_direct_head_and_an_indirect_head_are_told_apart():
    adapter = _planted_gpt2()
    dla = _run("direct_logit_attribution", adapter)
    by_dla = dict(zip(dla.labels, dla.effects, strict=True))
    assert max(by_dla, key=lambda c: abs(by_dla[c])) in ("L1H0", "L1H1")
    assert abs(by_dla["L1H0"]) > 10 * abs(by_dla["L0H0"])
    direct = _run("direct_effect", adapter, corrupted=CONTRAST)
    total = _run("activation_patching", adapter, corrupted=CONTRAST, sites=("head",))
    d = dict(zip(direct.labels, direct.effects, strict=True))
    t = dict(zip(total.labels, total.effects, strict=True))
    assert t["L1H0"] > 0.05 and d["L1H0"] == pytest.approx(t["L1H0"], rel=0.05)  # acts directly
    assert t["L0H0"] > 0.1 and abs(d["L0H0"]) < 0.2 * t["L0H0"]  # acts through L1H1
    rows = {r["component"]: r["verdict"] for r in verdicts(direct, total, k=3)}
    assert rows["L1H0"] == "acts directly"
    assert rows["L0H0"] == "acts through later components"


def _lens_by_hand(adapter: HFTextClassifier, position: int) -> list[float]:
    """The naive lens: run the model with its hidden states and decode the embeddings and every
    layer's state but the last (HF stores that one after the final norm) at one token."""
    inputs = adapter.inputs(EXAMPLE)
    with torch.no_grad():
        hidden = adapter.model.base_model(**inputs, output_hidden_states=True).hidden_states
        ones = torch.ones(1, 1, dtype=torch.long)
        logits = [adapter.decode_hidden(state[:, position : position + 1], {"attention_mask": ones})
                  for state in hidden[: adapter.n_layers]]
    return [float(x[0, 1] - x[0, 0]) for x in logits]


@pytest.mark.parametrize("prompted", (False, True))
def test_the_lens_reads_any_position_and_defaults_to_the_reading_position(prompted):
    adapter = _adapter("gpt2", prompted=prompted)
    n = adapter.inputs(EXAMPLE)["input_ids"].shape[1]
    default = _run("logit_lens", adapter)
    assert default.meta["position"] == n - 1 and default.meta["reading_position"]  # the label decision: last token
    last = _run("logit_lens", adapter, position=-1)
    np.testing.assert_array_equal(last.effects, default.effects)
    for position in (0, n // 2):
        lens = _run("logit_lens", adapter, position=position)
        assert lens.meta["position"] == position and not lens.meta["reading_position"]
        assert lens.meta["last_layer_gap"] is None  # not the model's output there
        # every layer but the last (HF stores that one after the final norm) against the naive read-out
        by_hand = _lens_by_hand(adapter, position)
        np.testing.assert_allclose([lens.meta["embeddings"], *lens.effects[:-1]], by_hand, atol=1e-5)
        assert not np.allclose(lens.effects, default.effects)


@pytest.mark.parametrize("position", (10_000, -10_000, 1.5, "last", True))
def test_a_lens_position_outside_the_sequence_is_refused_in_one_line(position):
    adapter = _adapter("gpt2")
    with pytest.raises(TwopathError, match=r"^logit_lens: position .* is outside the input's \d+ tokens") as err:
        _run("logit_lens", adapter, position=position)
    assert "\n" not in str(err.value)


def test_a_lens_position_outside_the_sequence_fails_before_any_forward_pass(monkeypatch):
    adapter = _adapter("gpt2")
    monkeypatch.setattr(adapter.model, "forward", lambda *a, **k: pytest.fail("ran the model"))
    monkeypatch.setattr(adapter.model.base_model, "forward", lambda *a, **k: pytest.fail("ran the model"))
    with pytest.raises(TwopathError, match="outside the input"):
        _run("logit_lens", adapter, position=999)
    with pytest.raises(BaseException, match="ran the model"):  # the guard itself is live
        _run("logit_lens", adapter, position=0)


# ---------------------------------------------------------------- the seed's residual-stream claims

def _part(component: str, layer: int, dla: float) -> dict:
    return {"component": component, "layer": layer, "dla": dla}


@pytest.mark.parametrize(
    ("parts", "logit_diff", "verdict"),
    [
        ([_part("L0H0", 0, 0.5), _part("L3H1", 3, 2.0), _part("L2.mlp", 2, 0.5)], 3.0, "supported"),
        ([_part("L0H0", 0, -0.2), _part("L3H1", 3, -2.0)], -2.2, "supported"),  # the model's own (negative) decision
        ([_part("L0.mlp", 0, 2.0), _part("L3H1", 3, 1.5), _part("L2H0", 2, 1.0)], 4.5, "partly"),  # late half writes most, top part is early
        ([_part("L0.mlp", 0, 2.0), _part("L2H1", 2, -1.5), _part("L3H0", 3, 2.4)], 2.9, "partly"),  # top is late, share low
        ([_part("L0.mlp", 0, -1.7), _part("L1H0", 1, -0.6), _part("L3H0", 3, -0.2)], -2.5, "not supported"),
    ],
)
def test_late_components_write_decision_rule(parts, logit_diff, verdict):
    from twopath.seed import claims

    claim = claims.late_components_write_decision(parts, logit_diff, n_layers=4)
    assert claim.verdict == verdict, claim.measured
    assert claim.rule and "layers 2-3" in claim.measured


def _row(component: str, total: float, direct: float) -> dict:
    from types import SimpleNamespace

    one = lambda value: SimpleNamespace(labels=[component], oriented=np.array([value]))  # noqa: E731
    (row,) = verdicts(one(direct), one(total), k=1)
    return row


@pytest.mark.parametrize(
    ("rows", "verdict"),
    [
        ([("L3H0", 0.8, 0.7), ("L1H2", 0.3, 0.02)], "supported"),
        ([("L3H0", 0.8, 0.1), ("L1H2", 0.3, 0.25)], "partly"),  # the strongest acts through later heads
        ([("L3H0", 0.8, 0.1), ("L1H2", 0.3, -0.2)], "not supported"),
        ([("L3H0", 0.01, 0.01)], "not supported"),  # no head has an effect
    ],
)
def test_top_heads_act_directly_rule(rows, verdict):
    from twopath.seed import claims

    claim = claims.top_heads_act_directly([_row(*r) for r in rows], named="L1H2")
    assert claim.verdict == verdict, claim.measured
    if any(r[0] == "L1H2" for r in rows):
        assert "the sentiment-tracking head L1H2: " in claim.measured
    else:
        assert "L1H2 is not among these top heads" in claim.measured


def _claims_of(adapter: HFTextClassifier) -> dict[str, str]:
    from twopath.seed.claims import residual_claims
    from twopath.types import ExampleResult

    localizations = [_run("direct_logit_attribution", adapter), _run("direct_effect", adapter, corrupted=CONTRAST),
                     _run("activation_patching", adapter, corrupted=CONTRAST, sites=("resid", "head"))]
    result = ExampleResult(EXAMPLE, "positive", {"label": "positive", "probability": 0.9}, [], localizations)
    found = residual_claims(result, named="L0H0")
    assert len(found) == 2 and all(c.rule for c in found)
    return {c.claim.split(" (")[0]: c.verdict for c in found} | {"measured": " | ".join(c.measured for c in found)}


def test_residual_claims_on_planted_models_tell_late_writers_from_early_ones():
    late = _claims_of(_planted_gpt2())  # L1H0 and L1H1 (the last layer) write the decision
    assert late["the decision is written directly by late components"] == "supported", late["measured"]
    assert "the sentiment-tracking head L0H0: acts through later components" in late["measured"]
    early = _planted_gpt2()
    with torch.no_grad():  # the score reads L0H0's output wire instead: the decision is written in layer 0
        early.model.score.weight.zero_()
        early.model.score.weight[1, 1] = 4.0
    found = _claims_of(early)
    assert found["the decision is written directly by late components"] == "not supported", found["measured"]
    assert "largest direct share: L0H0" in found["measured"]
    assert "the sentiment-tracking head L0H0: acts directly" in found["measured"]


def test_encoder_dla_tables_and_rows_say_it_is_approximate_with_the_measured_error():
    from twopath.comparisons.summary import describe_localization
    from twopath.reports.tables import example_tables
    from twopath.types import ExampleResult

    for family, approximate in (("bert", True), ("gpt2", False)):
        dla = _run("direct_logit_attribution", _adapter(family))
        result = ExampleResult(EXAMPLE, "positive", {"label": "positive", "probability": 0.9}, [], [dla])
        _, _, frame = example_tables(result)["direct_logit_attribution"]
        row = describe_localization(dla)
        if approximate:
            assert set(frame["exact"]) == {f"no: head linearised at the clean run (removal error up to "
                                           f"{dla.meta['linearisation_error_max']:.3f}, "
                                           f"{dla.meta['linearisation_error_relative']:.0%} of the true effects)"}
            assert "approximate" in row and f"{dla.meta['linearisation_error_max']:.3f}" in row
        else:
            assert "exact" not in frame and "approximate" not in row and "parts sum to" in row


def test_side_by_side_rows_say_what_each_reading_measured():
    from twopath.comparisons.summary import describe_localization

    adapter = _adapter("gpt2")
    direct = _run("direct_effect", adapter, corrupted=CONTRAST)
    row = describe_localization(direct)
    assert row.startswith("denoise patching to the logits only (later components frozen, final norm recomputed)")
    assert "share of the clean-vs-corrupted logit_diff gap" in row and "ablation" not in row
    for label, effect in direct.top(3):
        assert f"{label} {effect:.2f}" in row
    lens = _run("logit_lens", adapter, position=0)
    row = describe_localization(lens)
    assert row.startswith("logit_diff read through the final norm and head at position 0:")
    assert f"emb {lens.meta['embeddings']:+.3f}" in row and f"L1 {lens.effects[1]:+.3f}" in row
    assert f"decision '{lens.meta['decisions'][-1]}' from L" in row


def test_the_direct_vs_total_table_puts_dla_and_ablation_next_to_the_verdicts():
    from twopath.reports.tables import example_tables
    from twopath.types import ExampleResult

    adapter = _adapter("gpt2")
    locs = {name: _run(name, adapter, corrupted=CONTRAST, **settings) for name, settings in (
        ("direct_effect", {}), ("activation_patching", {"sites": ("head",)}), ("direct_logit_attribution", {}),
        ("head_ablation", {"mode": "zero"}))}
    result = ExampleResult(EXAMPLE, "positive", {"label": "positive", "probability": 0.9}, [], list(locs.values()))
    _, _, frame = example_tables(result)["direct_vs_total"]
    expected = verdicts(locs["direct_effect"], locs["activation_patching"])
    assert list(frame["component"]) == [r["component"] for r in expected]
    assert list(frame["verdict"]) == [r["verdict"] for r in expected]
    for column, name in (("DLA (logit diff)", "direct_logit_attribution"), ("ablation (logit diff drop)", "head_ablation")):
        values = dict(zip(locs[name].labels, locs[name].effects, strict=True))
        np.testing.assert_allclose(frame[column], [values[c] for c in frame["component"]])
