"""HFTextClassifier on three tiny architectures (BERT, DistilBERT, RoBERTa) and the trained tiny BERT."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import SEED_WORDS, swapped, text_output
from twopath.attribution import ATTRIBUTION_METHODS
from twopath.datasets.sentiment import SEED_SENTENCE
from twopath.mechanistic import MECHANISTIC_METHODS
from twopath.runtime.interventions import capture
from twopath.runtime.text import HFTextClassifier, split_words
from twopath.types import Component, Example, TwopathError

SEED = Example("seed", SEED_SENTENCE)
FAST_SETTINGS = {"lime": {"num_samples": 300}, "shap": {"max_evals": 100}, "integrated_gradients": {"max_steps": 128}}


def _is_module_of(adapter, module) -> bool:
    return any(m is module for m in adapter.model.modules())


# --- words and tokens ---------------------------------------------------------------------------

def test_loaded_adapter_describes_itself(tiny_text):
    assert tiny_text.labels == ("negative", "positive")
    assert tiny_text.n_layers == 2 and tiny_text.n_heads == 2 and tiny_text.head_dim() == 16
    assert tiny_text.describe()["n_layers"] == 2
    assert tiny_text.architecture.endswith("ForSequenceClassification")


def test_seed_sentence_words(tiny_text):
    assert tiny_text.units(SEED) == SEED_WORDS
    inp = tiny_text.encode(SEED_SENTENCE)
    assert inp.words == SEED_WORDS
    assert inp.token_word.shape == (inp.n_tokens,) and len(inp.tokens) == inp.n_tokens


def test_every_word_has_tokens_and_specials_have_none(tiny_text):
    inp = tiny_text.encode(SEED_SENTENCE)
    tw = inp.token_word
    for w in range(len(SEED_WORDS)):
        assert (tw == w).sum() >= 1, f"word {w} has no token"
    assert set(tw[tw >= 0].tolist()) == set(range(len(SEED_WORDS)))
    special = set(tiny_text.tokenizer.all_special_ids)
    ids = inp.input_ids[0].tolist()
    assert tw[0] == -1 and tw[-1] == -1
    for t, word in enumerate(tw):
        assert (word == -1) == (ids[t] in special), inp.tokens[t]
    # word indices never go backwards along the sequence
    assert np.all(np.diff(tw[tw >= 0]) >= 0)


def test_word_tokens_spell_the_word(tiny_text):
    """The tokens mapped to each word reassemble that whitespace chunk (WordPiece and BPE)."""
    text = "Honestly, the unbelievably slow plot wasn't worth it."
    inp = tiny_text.encode(text)
    for w, (start, end) in enumerate(split_words(text)):
        tokens = [tok for tok, k in zip(inp.tokens, inp.token_word, strict=True) if k == w]
        spelled = tiny_text.tokenizer.convert_tokens_to_string(tokens).replace(" ", "").strip()
        assert spelled.lower() == text[start:end].lower()


def test_masked_ids_all_false_masks_every_word_token(tiny_text):
    inp = tiny_text.encode(SEED_SENTENCE)
    ids = tiny_text.masked_ids(inp, np.zeros((1, len(inp.words)), dtype=bool))
    assert ids.shape == inp.input_ids.shape
    is_word = torch.from_numpy(inp.token_word >= 0)
    assert torch.equal(ids[0, ~is_word], inp.input_ids[0, ~is_word])  # specials kept
    assert bool((ids[0, is_word] == tiny_text.mask_token_id).all())
    assert tiny_text.mask_token_id == tiny_text.tokenizer.mask_token_id


def test_masked_ids_rows_follow_their_mask(tiny_text):
    inp = tiny_text.encode(SEED_SENTENCE)
    n = len(inp.words)
    keep = np.ones((3, n), dtype=bool)
    keep[1, 4] = False  # drop "good,"
    keep[2] = False
    keep[2, 0] = True  # keep only "The"
    ids = tiny_text.masked_ids(inp, keep)
    assert ids.shape == (3, inp.n_tokens)
    assert torch.equal(ids[0], inp.input_ids[0])
    for t, w in enumerate(inp.token_word):
        original = int(inp.input_ids[0, t])
        assert int(ids[1, t]) == (tiny_text.mask_token_id if w == 4 else original)
        assert int(ids[2, t]) == (original if w in (-1, 0) else tiny_text.mask_token_id)


def test_baseline_ids_pad_keeps_specials(tiny_text):
    inp = tiny_text.encode(SEED_SENTENCE)
    ids = tiny_text.baseline_ids(inp, "pad")
    is_word = torch.from_numpy(inp.token_word >= 0)
    assert bool((ids[0, is_word] == tiny_text.tokenizer.pad_token_id).all())
    assert torch.equal(ids[0, ~is_word], inp.input_ids[0, ~is_word])


def test_sites_exist_for_every_layer(tiny_text):
    inputs = tiny_text.forward_inputs(SEED)
    n_tokens = inputs["input_ids"].shape[1]
    sites = []
    for layer in range(tiny_text.n_layers):
        head_site = tiny_text.site(Component("head", layer, 0))
        neuron_site = tiny_text.site(Component("neuron", layer, 0))
        resid_site = tiny_text.site(Component("layer", layer))
        # heads and neurons are read on the input of the attention / MLP output projection,
        # the residual stream on the output of the block
        assert (head_site.kind, neuron_site.kind, resid_site.kind) == ("pre", "pre", "forward")
        head, neuron, resid = head_site.module, neuron_site.module, resid_site.module
        assert isinstance(head, nn.Linear) and head.in_features == tiny_text.n_heads * tiny_text.head_dim()
        assert isinstance(neuron, nn.Linear) and neuron.in_features == tiny_text.mlp_width(layer) == 64
        assert resid is tiny_text.layer_modules[layer]
        assert tiny_text.site(Component("resid", layer, position=0)) == resid_site
        for module in (head, neuron, resid):
            assert _is_module_of(tiny_text, module)
        sites.append((head, neuron, resid))
        assert len({id(head), id(neuron), id(resid)}) == 3
    assert len({id(s[0]) for s in sites}) == tiny_text.n_layers  # one per layer, not shared
    comps = [Component(kind, layer, 0) for layer in range(2) for kind in ("head", "neuron")]
    comps += [Component("resid", layer, position=0) for layer in range(2)]
    with torch.no_grad(), capture(tiny_text, comps) as store:
        tiny_text.run(inputs)
    for layer in range(2):
        assert store[(layer, "head")].shape == (1, n_tokens, 32)
        assert store[(layer, "neuron")].shape == (1, n_tokens, 64)  # intermediate size
        assert store[(layer, "resid")].shape == (1, n_tokens, 32)
    for component in (Component("head", 2, 0), Component("neuron", 2, 0), Component("layer", 2)):
        with pytest.raises(TwopathError):
            tiny_text.site(component)


def test_run_and_logits_agree(tiny_text):
    inputs = tiny_text.forward_inputs(SEED)
    with torch.no_grad():
        run = tiny_text.run(inputs)
    assert torch.allclose(run, tiny_text.logits({"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}), atol=1e-6)
    proba = tiny_text.predict_proba([SEED_SENTENCE, "bad."])
    assert proba.shape == (2, 2) and np.allclose(proba.sum(1), 1.0)
    assert np.allclose(proba[0], torch.softmax(run, -1)[0].numpy(), atol=1e-5)


# --- every method runs on every architecture ---------------------------------------------------

@pytest.mark.parametrize("method", ATTRIBUTION_METHODS.names("text"))
def test_attribution_methods_run(tiny_text, method):
    result = ATTRIBUTION_METHODS.create(method, **FAST_SETTINGS.get(method, {})).attribute(
        tiny_text, SEED, target="positive")
    assert result.units == SEED_WORDS
    assert result.scores.shape == (len(SEED_WORDS),)
    assert np.all(np.isfinite(result.scores))
    assert result.base_value is None or np.isfinite(result.base_value)
    assert result.method == method and result.target == "positive"


@pytest.mark.parametrize("method", MECHANISTIC_METHODS.names("text"))
def test_mechanistic_methods_run(tiny_text, method):
    corrupted = swapped(tiny_text, SEED_SENTENCE)
    settings = {"mode": "mean"} if "ablation" in method else {}
    if not MECHANISTIC_METHODS.get(method).cls.requires <= tiny_text.capabilities():
        # DLA and direct effects need a pre-norm decoder: an encoder is refused in one line
        with pytest.raises(TwopathError, match=f"{method} needs a model with linear residual"):
            MECHANISTIC_METHODS.create(method, **settings).localize(tiny_text, SEED, target="positive",
                                                                    corrupted=corrupted)
        return
    result = MECHANISTIC_METHODS.create(method, **settings).localize(
        tiny_text, SEED, target="positive", corrupted=corrupted)
    n_tokens = tiny_text.encode(SEED_SENTENCE).n_tokens
    expected = {"head_ablation": 2 * 2, "neuron_ablation": 2 * 64, "activation_patching": 2 * n_tokens,
                "position_ablation": 2 * n_tokens}.get(method)
    assert result.effects.shape == (len(result.components),)
    assert len(result.components) > 0 and len(set(result.components)) == len(result.components)
    if expected is not None:
        assert len(result.components) == expected
    assert all(0 <= c.layer < tiny_text.n_layers for c in result.components)
    assert np.all(np.isfinite(result.effects))
    assert result.clean == pytest.approx(text_output(tiny_text, SEED_SENTENCE), abs=1e-4)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablation_modes_change_the_output(tiny_text, mode):
    result = MECHANISTIC_METHODS.create("head_ablation", mode=mode).localize(tiny_text, SEED, target="positive")
    assert np.abs(result.effects).max() > 0


def test_background_means_take_one_pass_for_every_site_and_equal_the_full_activations(tiny_text):
    """The first mean ablation computes every site's background mean in one pass, each equal to
    the masked mean of that site's full activations; later kinds run no pass of their own."""
    from twopath.runtime.interventions import background_means
    from twopath.runtime.trace import forget

    forget(tiny_text)
    calls = []
    run = tiny_text.run
    tiny_text.run = lambda inputs: calls.append(1) or run(inputs)
    try:
        heads = background_means(tiny_text, [Component("head", 0, 1)])
        rest = background_means(tiny_text, [Component("neuron", tiny_text.n_layers - 1, 3), Component("layer", 1)])
    finally:
        del tiny_text.run
    assert len(calls) == 1
    reference = tiny_text.reference_inputs()
    probes = [Component("head", 0, 0), Component("neuron", tiny_text.n_layers - 1, 0), Component("layer", 1)]
    with torch.no_grad(), capture(tiny_text, probes) as store:
        tiny_text.run(reference)
    weights = reference["attention_mask"][..., None].float()
    for key, value in {**heads, **rest}.items():
        full = (store[key] * weights).sum((0, 1)) / weights.sum((0, 1))
        assert torch.equal(value, full), key


# --- bad input ------------------------------------------------------------------------------------

def test_from_pretrained_missing_dir(tmp_path):
    with pytest.raises(TwopathError, match="does not exist"):
        HFTextClassifier.from_pretrained(tmp_path / "nope")


def test_from_pretrained_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(TwopathError, match="config.json"):
        HFTextClassifier.from_pretrained(tmp_path)


def test_from_pretrained_without_tokenizer(tmp_path, tiny_dirs):
    """A model folder with no tokenizer files must be refused at load time.

    (transformers 5 silently builds an empty 5-token tokenizer for such a folder.)
    """
    src = tiny_dirs["bert"]
    for name in ("config.json", "model.safetensors"):
        shutil.copy(src / name, tmp_path / name)
    with pytest.raises(TwopathError):
        HFTextClassifier.from_pretrained(tmp_path)


def test_from_pretrained_rejects_non_classifier(tmp_path, tiny_dirs):
    src = tiny_dirs["bert"]
    shutil.copytree(src, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["architectures"] = ["BertForMaskedLM"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(TwopathError, match="holds a BertForMaskedLM, expected an architecture ending in ForSequenceClassification"):
        HFTextClassifier.from_pretrained(tmp_path / "m")


def test_label_index(tiny_text):
    assert tiny_text.label_index("positive") == 1
    assert tiny_text.label_index("NEGATIVE") == 0
    assert tiny_text.label_index(1) == 1 and tiny_text.label_index("0") == 0
    for bad in ("neutral", 2, "7", ""):
        with pytest.raises(TwopathError, match="unknown target label"):
            tiny_text.label_index(bad)


def test_unknown_target_raises_in_methods(tiny_text):
    with pytest.raises(TwopathError, match="unknown target label"):
        ATTRIBUTION_METHODS.create("occlusion").attribute(tiny_text, SEED, target="neutral")
    with pytest.raises(TwopathError, match="unknown target label"):
        MECHANISTIC_METHODS.create("head_ablation").localize(tiny_text, SEED, target="neutral")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_raises(tiny_text, text):
    example = Example("empty", text)
    with pytest.raises(TwopathError, match="empty"):
        tiny_text.units(example)
    with pytest.raises(TwopathError):
        tiny_text.encode(text)
    with pytest.raises(TwopathError):
        ATTRIBUTION_METHODS.create("occlusion").attribute(tiny_text, example, target="positive")
    with pytest.raises(TwopathError):
        tiny_text.forward_inputs(example)


def test_tabular_example_on_text_model_raises(tiny_text):
    with pytest.raises(TwopathError, match="sentence"):
        tiny_text.units(Example("row", {"a": 1}))


def test_too_long_sentence_raises(tiny_text):
    with pytest.raises(TwopathError, match="longer"):
        tiny_text.encode(" ".join(["word"] * 300))


# --- word merging ------------------------------------------------------------------------------

def _token_ig(adapter, text: str, target: int, n_steps: int) -> tuple[np.ndarray, object]:
    """Token-level IG (pad baseline, on word embeddings), computed here with captum directly."""
    from captum.attr import IntegratedGradients

    inp = adapter.encode(text)
    layer = adapter.embedding_layer()
    with torch.no_grad():
        emb = layer(inp.input_ids)
        base = layer(adapter.baseline_ids(inp, "pad"))

    def forward(embeds):
        mask = inp.attention_mask.expand(embeds.shape[0], -1)
        return adapter.output(adapter.model(inputs_embeds=embeds, attention_mask=mask).logits, target)

    attr = IntegratedGradients(forward).attribute(emb, baselines=base, n_steps=n_steps, internal_batch_size=64)
    return attr.sum(-1)[0].detach().numpy(), inp


@pytest.mark.parametrize("which", ["tiny_sentiment", "roberta"])
def test_ig_sums_sub_token_scores_into_words(which, request, tiny_dirs):
    if which == "roberta":
        adapter = HFTextClassifier.from_pretrained(tiny_dirs["roberta"])
    else:
        adapter = request.getfixturevalue("tiny_sentiment")
    text = "The acting was unbelievably bad, honestly."
    result = ATTRIBUTION_METHODS.create("integrated_gradients").attribute(adapter, Example("w", text), target="positive")
    token_scores, inp = _token_ig(adapter, text, 1, result.meta["n_steps"])
    word = inp.words.index("unbelievably")
    assert (inp.token_word == word).sum() >= 3  # really split into sub-tokens
    tol = 1e-3 * float(np.abs(token_scores).max())  # relative: tiny random models give tiny scores
    for w in range(len(inp.words)):
        assert result.scores[w] == pytest.approx(token_scores[inp.token_word == w].sum(), abs=tol)
    # the word's score is the sum of all its sub-tokens, not just the first one
    subs = token_scores[inp.token_word == word]
    assert abs(subs[1:].sum()) > 10 * tol
    assert abs(result.scores[word] - subs[0]) > 5 * tol


def test_bpe_words_map_to_tokens(bpe_tokenizer, tiny_dirs):
    adapter = HFTextClassifier.from_pretrained(tiny_dirs["roberta"])
    text = "Unbelievably,  the  soundtrack's   charm outlasts its clumsy, meandering plot!"
    inp = adapter.encode(text)
    n = len(split_words(text))
    assert len(inp.words) == n
    assert sorted(set(inp.token_word[inp.token_word >= 0].tolist())) == list(range(n))
    assert inp.words[0] == "Unbelievably" and inp.words[-1] == "plot"
    assert any(tok.startswith("Ġ") for tok in inp.tokens)  # really byte-level BPE
