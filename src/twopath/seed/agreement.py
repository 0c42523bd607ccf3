"""The seed's LLM claim, measured: "an attention head carries the subject–verb agreement signal".

The seed document's example of mechanistic localization is about a language model: *"Attention
Head 3.7 is carrying the subject–verb agreement signal that drives the output choice."* This
module gives twopath a language model on which that sentence can be checked:

1. **The model.** A GPT-2-style decoder LM (``GPT2LMHeadModel``, 3 layers x 4 heads) trained
   from scratch on the synthetic corpus of :mod:`twopath.datasets.agreement` — singular/plural
   subjects, prepositional-phrase and relative-clause attractors, filler text — with the
   reference decoder's tokenizer recipe (:func:`twopath.seed.decoder.train_tokenizer`, a
   lower-cased byte-level BPE) and the zoo's atomic cache (:func:`twopath.seed.zoo._cached`,
   keyed by the seed, the grammar and the recipe). The classifier loop of the zoo trains
   sequence classifiers; a language model needs next-token labels, so :func:`train_lm` is the
   same recipe (AdamW, warm-up and linear decay, clipping, seeded shuffling, one thread) with
   the LM loss. The manifest records the held-out accuracy without attractors (it must be
   >= 95 %), with prepositional-phrase and with relative-clause attractors, and the time.
2. **The decision.** The sentence up to the verb is read by the runtime's prompted-decision
   adapter (:class:`~twopath.runtime.text.PromptedLM`) with the template
   ``<|endoftext|>{text}`` and the label words ``" is"`` / ``" are"``: the explained number is
   the logit difference of the two verbs at the last token, the same on both paths.
3. **Both paths** run on the seed example, "The keys to the old cabinet" (→ *are*), with its
   number-flipped counterpart "The key to the old cabinet" (same token length) as the contrast.
4. **The claim.** Over held-out sentences with opposite-number attractors, per head: attention
   from the verb position (the last token) to the subject noun as a multiple of its uniform
   share, the mean drop of the correct verb's logit difference when the head is mean-ablated,
   and the mean share of the clean-vs-flipped gap that patching the head alone from the flipped
   sentence moves (toward the other verb). :func:`twopath.seed.claims.head_carries_agreement`
   turns the numbers into a verdict and names the head the model actually has.

:func:`planted_agreement_model` builds a 2-layer GPT-2 whose agreement head is wired by hand
(``L1H1`` attends from the last token to the first noun and copies its number to the verbs'
read-out); with that head removed the rule must say *not supported*. Tests and the localization
benchmark use it as ground truth.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.datasets import agreement as data
from twopath.types import Example, TwopathError

Say = Callable[[str], None]

NAME = "agreement-gpt2"
SPECIAL_TOKEN = "<|endoftext|>"
TEMPLATE = SPECIAL_TOKEN + "{text}"
LABEL_WORDS = (" is", " are")
SEED_TEXT = "The keys to the old cabinet"
SEED_FLIPPED = "The key to the old cabinet"
SEED_TARGET = "are"
VOCAB_SIZE = 1000
ARCHITECTURE: dict[str, Any] = {
    "n_layer": 3,
    "n_head": 4,
    "n_embd": 64,
    "n_inner": 256,
    "n_positions": 32,
    "activation_function": "gelu",
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
}
TRAINING: dict[str, Any] = {"n_sentences": 24000, "epochs": 2, "lr": 2e-3, "batch_size": 64}
N_EVAL = 200  # held-out prefixes per attractor kind for the accuracies
PLANTED_HEAD = "L1H1"


# --- the reference model ----------------------------------------------------------------------

def build_lm(tokenizer: Any, seed: int, architecture: dict[str, Any] | None = None) -> Any:
    """A randomly initialised GPT-2 language model sized by ``architecture``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    special = int(tokenizer.convert_tokens_to_ids(SPECIAL_TOKEN))
    config = GPT2Config(  # type: ignore[call-arg]
        vocab_size=len(tokenizer), **(architecture or ARCHITECTURE),
        bos_token_id=special, eos_token_id=special, pad_token_id=special, use_cache=False,
        architectures=["GPT2LMHeadModel"], attn_implementation="eager",
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def train_lm(model: Any, tokenizer: Any, texts: Sequence[str], *, epochs: int, lr: float, batch_size: int,
             seed: int, say: Say = print) -> None:
    """Next-token training with the zoo's recipe: AdamW, 6 % warm-up then linear decay, gradient
    clipping at 1, seeded shuffling. Each row is ``<|endoftext|>`` + one sentence, right-padded;
    padding is left out of the loss."""
    torch.manual_seed(seed)
    rows = [SPECIAL_TOKEN + t for t in texts]
    steps = epochs * math.ceil(len(rows) / batch_size)
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(len(rows), generator=gen).tolist()
        for start in range(0, len(order), batch_size):
            enc = tokenizer([rows[i] for i in order[start : start + batch_size]], padding=True, return_tensors="pt")
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            loss = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad()
            step += 1
            if step % 100 == 0:
                say(f"  epoch {epoch + 1}/{epochs} step {step}/{steps} loss {loss.item():.3f}")
    model.eval()


def prompted(model: Any, tokenizer: Any, name: str = "agreement GPT-2") -> Any:
    """The is/are decision of a causal LM as a prompted-decision adapter."""
    from twopath.runtime.text import PromptedLM

    return PromptedLM(model, tokenizer, TEMPLATE, LABEL_WORDS, name=name)


def accuracy(adapter: Any, items: Sequence[data.AgreementItem], batch_size: int = 256) -> float:
    """Share of ``items`` whose correct verb gets the larger logit."""
    correct = 0
    for start in range(0, len(items), batch_size):
        part = items[start : start + batch_size]
        with torch.no_grad():
            picked = adapter.logits(adapter.batch_encode([i.prefix for i in part])).argmax(-1).cpu().numpy()
        correct += sum(adapter.labels[int(p)] == i.verb for p, i in zip(picked, part, strict=True))
    return correct / len(items)


def evaluation_sets(train: Sequence[str], n: int = N_EVAL) -> dict[str, list[data.AgreementItem]]:
    """Held-out prefixes per attractor kind (none, pp, rc), unseen in ``train`` (all
    :data:`~twopath.datasets.agreement.N_PLAIN_HELD_OUT` of them without attractors)."""
    return {kind: data.held_out(min(n, data.N_PLAIN_HELD_OUT) if kind == "none" else n, kind, seed=1, exclude=train)
            for kind in data.ATTRACTORS}


def agreement_model(seed: int = 0, say: Say = print, architecture: dict[str, Any] | None = None,
                    training: dict[str, Any] | None = None, n_eval: int = N_EVAL) -> Path:
    """The reference agreement LM (trained once, cached); ``architecture`` / ``training``
    override the recipe (tests train a tiny one)."""
    from twopath.seed import zoo

    arch = {**ARCHITECTURE, **(architecture or {})}
    train_cfg = {**TRAINING, **(training or {})}
    recipe = {"vocab_size": VOCAB_SIZE, **arch, **train_cfg, "n_eval": n_eval}
    key = zoo._key("agreement-gpt2", seed, data.grammar_hash(), recipe)

    def build(work: Path) -> dict[str, Any]:
        from twopath.runtime.threads import one_thread

        zoo._quiet_transformers()
        texts = data.corpus(train_cfg["n_sentences"], seed=0)
        with one_thread():
            started = time.perf_counter()
            tokenizer = agreement_tokenizer(texts)
            model = build_lm(tokenizer, seed, arch)
            train_lm(model, tokenizer, texts, epochs=train_cfg["epochs"], lr=train_cfg["lr"],
                     batch_size=train_cfg["batch_size"], seed=seed, say=say)
            seconds = time.perf_counter() - started
            adapter = prompted(model, tokenizer)
            scores = {kind: accuracy(adapter, items) for kind, items in evaluation_sets(texts, n_eval).items()}
        say(f"  held-out agreement accuracy: {scores['none']:.3f} without attractors, {scores['pp']:.3f} with a "
            f"prepositional phrase, {scores['rc']:.3f} with a relative clause ({seconds:.0f} s of training)")
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        return {
            "accuracy": scores["none"],
            "accuracy_no_attractor": scores["none"],
            "accuracy_pp_attractor": scores["pp"],
            "accuracy_rc_attractor": scores["rc"],
            "accuracy_with_attractors": (scores["pp"] + scores["rc"]) / 2,
            "n_eval_per_kind": n_eval,
            "seed": seed,
            "data_hash": data.grammar_hash(),
            "n_train": len(texts),
            "training_seconds": round(seconds, 1),
            "architecture": {"model": "GPT2LMHeadModel", **arch},
            "tokenizer": {"kind": "byte-level BPE, lower-cased", "vocab_size": len(tokenizer)},
            "training": train_cfg,
            "decision": {"template": TEMPLATE, "label_words": list(LABEL_WORDS)},
        }

    return zoo._cached(NAME, key, build, say)


def agreement_tokenizer(texts: Sequence[str]) -> Any:
    """The reference decoder's tokenizer recipe on ``texts`` plus the grammar's word list (twice,
    so every word clears the minimum frequency and is one token, however small the corpus)."""
    from twopath.seed import decoder

    words = " ".join(data.vocabulary())
    tokenizer = decoder.train_tokenizer([*texts, words, words], vocab_size=VOCAB_SIZE)
    check_vocabulary(tokenizer)
    return tokenizer


def check_vocabulary(tokenizer: Any) -> None:
    """Every word of the grammar after a space is one token (so flipped prefixes line up)."""
    split = [w for w in data.vocabulary() if len(tokenizer.tokenize(" " + w)) != 1]
    if split:
        raise TwopathError(f"the agreement tokenizer splits grammar words {split[:5]}; raise VOCAB_SIZE")


def load(path: Path) -> Any:
    from twopath.runtime.text import PromptedLM

    return PromptedLM.from_pretrained_prompted(path, TEMPLATE, LABEL_WORDS, name="agreement GPT-2 (3 layers x 4 heads, from scratch)")


# --- a model with a planted agreement head ----------------------------------------------------

_NUMBER, _NOUN, _POSITION, _OUT = 0, 1, 2, 3  # residual dimensions used as wires


def planted_agreement_model(tokenizer: Any, remove_head: bool = False, seed: int = 0) -> Any:
    """A 2-layer, 4-head GPT-2 LM wired by hand, as a prompted is/are decision.

    Residual dimensions are wires (the others hold fixed random values, so LayerNorm only
    rescales): a noun writes its number (+1 singular, -1 plural) on dim 0 and 1 on dim 1; the
    position embedding writes -p/8 on dim 2. Layer 0 and every MLP are zero.

    * ``L1H1`` — **the agreement head**: a constant query against keys ``noun - position``
      attends from the last token to the *first* noun (the subject) and copies its number to
      dim 3, which the output embedding reads (``" is"`` +4, ``" are"`` -4);
    * ``L1H3`` — a weaker *recency* head: it attends to the *last* noun (the attractor, when
      there is one) and writes 0.3 of its number to dim 3;
    * ``L1H0`` — uniform attention, writing 0.3 of the average number;
    * ``L1H2`` and layer 0 — nothing.

    ``remove_head`` zeroes L1H1's weights: it then attends uniformly and writes nothing.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    special = int(tokenizer.convert_tokens_to_ids(SPECIAL_TOKEN))
    config = GPT2Config(  # type: ignore[call-arg]
        vocab_size=len(tokenizer), n_layer=2, n_head=4, n_embd=32, n_inner=32, n_positions=32,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=special, eos_token_id=special,
        pad_token_id=special, use_cache=False, tie_word_embeddings=False, architectures=["GPT2LMHeadModel"],
        attn_implementation="eager",
    )
    model = GPT2LMHeadModel(config).eval()
    d, hd = config.n_embd, config.n_embd // config.n_head
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for block in model.transformer.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
        model.transformer.ln_f.weight.fill_(1.0)
        wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
        junk = torch.randn(wte.shape[0], d - 8, generator=gen)
        wte[:, 8:] = junk - junk.mean(1, keepdim=True)
        wpe[:, _POSITION] = -torch.arange(wpe.shape[0], dtype=wpe.dtype) / 8
        for singular, plural in data.NOUNS:
            for word, number in ((singular, 1.0), (plural, -1.0)):
                (token,) = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
                wte[token, _NUMBER] = number
                wte[token, _NOUN] = 1.0
        attn = model.transformer.h[1].attn
        w, b, proj = attn.c_attn.weight, attn.c_attn.bias, attn.c_proj.weight
        # (head, key weight on "is a noun", key weight on dim 2 = -p/8, gain): scores in nats
        # (the query is sqrt(head_dim), cancelling the scaling); L1H1 scores a noun 10 - 2p
        # (the first noun wins), L1H3 scores it 10 + p (the last noun wins)
        for head, noun_w, position_w, gain in ((1, 10.0, 16.0, 1.0), (3, 10.0, -8.0, 0.3)):
            if head == 1 and remove_head:
                continue
            b[head * hd] = math.sqrt(hd)
            w[_NOUN, d + head * hd] = noun_w
            w[_POSITION, d + head * hd] = position_w
            w[_NUMBER, 2 * d + head * hd] = 1.0
            proj[head * hd, _OUT] = gain
        w[_NUMBER, 2 * d + 0 * hd] = 1.0  # L1H0: uniform attention (no query or key)
        proj[0 * hd, _OUT] = 0.3
        head_out = model.lm_head.weight
        for word, sign in zip(LABEL_WORDS, (4.0, -4.0), strict=True):
            (token,) = tokenizer(word, add_special_tokens=False)["input_ids"]
            head_out[token, _OUT] = sign
    return prompted(model, tokenizer, name="planted agreement GPT-2")


def planted_tokenizer(n_sentences: int = 1000) -> Any:
    """The reference tokenizer recipe on a small sample of the corpus (a second)."""
    return agreement_tokenizer(data.corpus(n_sentences, seed=0))


# --- measurements -----------------------------------------------------------------------------

def _example(item: data.AgreementItem, i: int) -> tuple[Example, Example]:
    clean = Example(f"agreement-{item.attractor}-{i}", item.prefix, item.verb)
    return clean, Example(f"{clean.id}-flipped", item.flipped, item.verb)


def head_measurements(adapter: Any, items: Sequence[data.AgreementItem]) -> pd.DataFrame:
    """Per head, over ``items``: attention enrichment from the verb position (the last token) to
    the subject noun and to the attractor, the mean logit-difference drop under mean ablation, and
    the mean share of the clean-vs-flipped gap moved by patching the head alone from the flipped
    sentence into the clean run (0 = no change, 1 = the flipped sentence's output)."""
    from twopath.mechanistic import MECHANISTIC_METHODS

    n_layers, n_heads = adapter.n_layers, adapter.n_heads
    share = {k: np.zeros((n_layers, n_heads)) for k in ("subject", "attractor")}
    uniform = {k: 0.0 for k in share}
    counted = {k: 0 for k in share}
    ablation = np.zeros(n_layers * n_heads)
    patching = np.zeros(n_layers * n_heads)
    n_patched = 0
    ablate = MECHANISTIC_METHODS.create("head_ablation", mode="mean")
    patch = MECHANISTIC_METHODS.create("activation_patching", sites=("head",), direction="noise")
    components = None
    for i, item in enumerate(items):
        inp = adapter.encode(item.prefix)
        att = _attention_from_last(adapter, inp)
        real = int((inp.token_word >= 0).sum())
        for kind, index in (("subject", item.subject_index), ("attractor", item.attractor_index)):
            if index is None:
                continue
            mask = inp.token_word == index
            share[kind] += att[:, :, mask].sum(-1)
            uniform[kind] += mask.sum() / real
            counted[kind] += 1
        clean, flipped = _example(item, i)
        loc = ablate.localize(adapter, clean, target=item.verb)
        components = loc.labels
        ablation += loc.effects
        try:
            patched = patch.localize(adapter, clean, target=item.verb, corrupted=flipped)
        except TwopathError:  # the flip does not change the output: nothing to patch
            continue
        patching += 1.0 - patched.effects
        n_patched += 1
    if components is None:
        raise TwopathError("head measurements need at least one agreement sentence")
    rows = []
    for k, label in enumerate(components):
        layer, head = divmod(k, n_heads)
        row: dict[str, Any] = {"component": label, "layer": layer, "head": head}
        for kind in share:
            mean_share = share[kind][layer, head] / max(1, counted[kind])
            base = uniform[kind] / max(1, counted[kind])
            row[f"{kind}_share"] = float(mean_share)
            row[f"{kind}_enrichment"] = float(mean_share / base) if base > 0 else float("nan")
        row["ablation"] = float(ablation[k] / len(items))
        row["patching_share"] = float(patching[k] / n_patched) if n_patched else float("nan")
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs.update({"n_sentences": len(items), "n_patched": n_patched})
    return frame


def _attention_from_last(adapter: Any, inp: Any) -> np.ndarray:
    """(layers, heads, tokens): attention paid by the reading position (the last token)."""
    inputs = inp.inputs()
    query = int(adapter.reading_position(inputs)[0])
    return torch.stack(adapter.attention_weights(inputs))[:, 0, :, query, :].float().cpu().numpy()


def head_attention(adapter: Any, text: str, head: str) -> dict[str, Any]:
    """One head's attention from the verb position over the tokens of ``text`` (for the figure)."""
    from twopath.types import Component

    component = Component.parse(head)
    inp = adapter.encode(text)
    att = _attention_from_last(adapter, inp)[component.layer, component.index]
    return {"head": head, "text": text, "tokens": [t.replace("Ġ", " ").strip() or t for t in inp.tokens],
            "weights": [float(x) for x in att]}


def word_ranks(adapter: Any, items: Sequence[data.AgreementItem], method: str = "occlusion",
               seed: int = 0) -> dict[str, Any]:
    """Input path over ``items``: how often the subject noun is the top word by |score|, and how
    often it scores above the attractor (toward the correct verb)."""
    from twopath.attribution import ATTRIBUTION_METHODS

    explainer = ATTRIBUTION_METHODS.create(method, seed=seed)
    top = above = 0
    roles: dict[str, int] = {}
    for i, item in enumerate(items):
        clean, _ = _example(item, i)
        scores = explainer.attribute(adapter, clean, target=item.verb).scores
        best = int(np.argmax(np.abs(scores)))
        top += int(best == item.subject_index)
        role = ("subject" if best == item.subject_index else "attractor" if best == item.attractor_index
                else item.prefix.split()[best])
        roles[role] = roles.get(role, 0) + 1
        if item.attractor_index is not None:
            above += int(scores[item.subject_index] > scores[item.attractor_index])
    n = max(1, len(items))
    return {"method": method, "n": len(items), "subject_top": top / n, "subject_above_attractor": above / n,
            "top_word": dict(sorted(roles.items(), key=lambda kv: -kv[1]))}


def held_out_claim_items(n: int = 40, seed: int = 3) -> list[data.AgreementItem]:
    """Sentences for the claim: half prepositional-phrase, half relative-clause attractors."""
    half = n // 2
    return data.held_out(half, "pp", seed=seed) + data.held_out(n - half, "rc", seed=seed)


def agreement_findings(adapter: Any, result: Any, items: Sequence[data.AgreementItem], seed: int = 0) -> dict[str, Any]:
    """The two claims (input path's top word; the agreement head) and the tables behind them."""
    from twopath.seed import claims

    words = word_ranks(adapter, items, "occlusion", seed=seed)
    seed_scores = result.attribution("shap")
    seed_words = [w.lower() for w in seed_scores.units]
    word_claim = claims.subject_is_top_word(seed_words[int(np.argmax(np.abs(seed_scores.scores)))], "keys",
                                            words["subject_top"], words["subject_above_attractor"], words["n"])
    tops = ", ".join(f"{role} {count}" for role, count in words["top_word"].items())
    found = [dataclasses.replace(word_claim, measured=f"{word_claim.measured} (top word: {tops})")]
    heads = head_measurements(adapter, items)
    head_claim, named = claims.head_carries_agreement(heads.to_dict(orient="records"))
    found.append(head_claim)
    return {"claims": [c.to_dict() for c in found],
            "mechanisms": {"agreement_heads": heads.sort_values("patching_share", ascending=False).to_dict(orient="records"),
                           "agreement_sentences": heads.attrs["n_sentences"],
                           "agreement_attention": head_attention(adapter, str(result.example.raw), named),
                           "named_head": named, "word_ranks": words}}


# --- the task ---------------------------------------------------------------------------------

DATASET_SIZE = 40


def agreement_task(seed: int = 0, say: Say = print, dataset_size: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Any:
    """The seed's LLM example on the reference agreement LM (trained once, cached)."""
    from twopath.seed import zoo

    path = agreement_model(say=say)
    return agreement_report(load(path), zoo.read_manifest(path), seed=seed, say=say,
                            dataset_size=dataset_size, progress=progress)


def agreement_report(adapter: Any, manifest: dict[str, Any], seed: int = 0, say: Say = print,
                     dataset_size: int | None = None, progress: Callable[[int, int], None] | None = None,
                     n_claim: int = 40, checks: bool = True) -> Any:
    """"The keys to the old cabinet" → are on ``adapter``: both paths against the number-flipped
    contrast, the two claims over ``n_claim`` held-out attractor sentences, and (unless
    ``dataset_size`` is 0) both paths over held-out prepositional-phrase sentences. ``checks=False``
    leaves out the pipeline's slowest parts (LIME stability, sanity check, edit test)."""
    from twopath.pipeline import DEFAULT_MECHANISTIC, explain
    from twopath.seed.tasks import _dataset, reproducibility
    from twopath.types import Report

    background = data.held_out(22, "none", seed=2) + data.held_out(21, "pp", seed=2) + data.held_out(21, "rc", seed=2)
    adapter.background = [i.prefix for i in background]
    example = Example("agreement-seed", SEED_TEXT, SEED_TARGET)
    contrast = Example("agreement-seed-flipped", SEED_FLIPPED, SEED_TARGET)
    methods = [*DEFAULT_MECHANISTIC["text"], "logit_lens", "direct_logit_attribution", "direct_effect"]
    result = explain(adapter, example, corrupted=contrast, seed=seed, say=say, mechanistic_methods=methods,
                     with_checks=checks, stability_seeds=(0, 1, 2, 3, 4) if checks else ())
    if result.prediction["label"] != SEED_TARGET:
        result.notes.append(f"the model reads the seed prefix as '{result.prediction['label']}' "
                            f"(p = {result.prediction['probability']:.3f}); both paths explain '{SEED_TARGET}'")
    say("measuring the agreement claims over held-out sentences with attractors")
    findings = agreement_findings(adapter, result, held_out_claim_items(n_claim), seed=seed)
    result.tables["claims"] = findings["claims"]
    result.tables["mechanisms"] = findings["mechanisms"]
    described = {**adapter.describe(), "trained_from": manifest.get("trained_from", "scratch"),
                 **{k: manifest.get(k) for k in ("accuracy", "accuracy_no_attractor", "accuracy_pp_attractor",
                                                 "accuracy_rc_attractor", "accuracy_with_attractors", "training_seconds")}}
    report = Report("agreement", described, [result], reproducibility(seed, manifest))
    n = DATASET_SIZE if dataset_size is None else dataset_size
    if n > 0:
        pool = data.held_out(n, "pp", seed=4)
        report.dataset = _dataset(adapter, [Example(f"test-{i}", it.prefix) for i, it in enumerate(pool)], seed, say, progress)
    return report
