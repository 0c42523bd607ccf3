"""Edit tasks: what an edit should forget, what it must keep, and how both are measured.

Every edit twopath runs is one shape: **counterfactual invariance**. A *group* is a list of raw
inputs that differ only in the thing to forget — an applicant with ``white=1`` and the same
applicant with ``white=0``; a sentence with a word and without it. After the edit the model
should give every member of a group the same decision (the *forget* term), and that decision
should be what the original model gave on average over the group, so everything else the model
knew stays (the *maintain* term). The same groups, built from inputs the edit never saw, measure
the edit: the mean spread of the target probability within a group is the **counterfactual
gap**, and the share of groups whose decision differs between members is the **flip share**.

:func:`feature_task` builds the groups for a tabular feature (two values, e.g. ``white`` 1 vs 0,
``credit_score`` 720 vs 600) and :func:`word_task` for a word of a text model (present vs
deleted). Each also builds the *robustness* groups (inputs of another form: applicants with
extreme values of the other features; the word in other casing, paraphrases, new contexts and
its inflections found in the data — :func:`inflections`) and the *relearning* split (half of the training inputs with their original labels to fine-tune
on, the other half's groups to measure how much of the gap returns).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from twopath.types import TwopathError

Group = list[Any]

#: contexts the word is put into for the "new contexts" robustness probe (never seen in training)
WORD_CONTEXTS = ("It was {w}.", "{W}, really.", "I thought the whole thing was {w}.",
                 "A {w} film overall.", "Honestly {w}.", "The ending was {w} and the cast was fine.")


@dataclass
class EditTask:
    """Everything an edit and its measurement need, as raw inputs of the adapter."""

    name: str
    #: index of the class whose probability is measured (the decision)
    target: int
    #: the feature or word the edit forgets (for the bridge: the input unit it names)
    focus: str
    train_groups: list[Group]
    heldout_groups: list[Group]
    heldout: list[Any]
    heldout_labels: np.ndarray
    #: unrelated inputs whose original predictions the maintain term keeps
    maintain: list[Any] = field(default_factory=list)
    #: robustness probes: groups of inputs of another form, by name
    robust_groups: dict[str, list[Group]] = field(default_factory=dict)
    #: inputs whose decisions should agree with the original's group-mean decision
    agreement_groups: list[Group] = field(default_factory=list)
    relearn_inputs: list[Any] = field(default_factory=list)
    relearn_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    relearn_groups: list[Group] = field(default_factory=list)
    #: (clean, contrast) inputs of the same shape, for the localizations that need a contrast
    pairs: list[tuple[Any, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


# --- tabular: one feature ---------------------------------------------------------------------

def _rows(frame: pd.DataFrame, features: Sequence[str]) -> list[dict[str, Any]]:
    return [dict(zip(features, values, strict=True)) for values in frame[list(features)].itertuples(index=False)]


def _groups(rows: Sequence[dict[str, Any]], feature: str, values: Sequence[Any]) -> list[Group]:
    return [[{**row, feature: v} for v in values] for row in rows]


def _feature_values(adapter: Any, frame: pd.DataFrame, feature: str, values: Sequence[Any] | None) -> list[Any]:
    if feature not in adapter.features:
        raise TwopathError(f"unknown feature {feature!r}; the table has {list(adapter.features)}")
    if values is not None:
        if len(values) < 2 or len(set(values)) < len(values):
            raise TwopathError(f"the forget values of {feature} must be at least two distinct values, got {list(values)}")
        return list(values)
    if feature in adapter.categories:
        return list(adapter.categories[feature])
    distinct = sorted(set(frame[feature].astype(float)))
    if len(distinct) == 2:
        return distinct
    lo, hi = np.quantile(frame[feature].astype(float), [0.1, 0.9])
    return [float(lo), float(hi)]


def feature_task(adapter: Any, train: pd.DataFrame, heldout: pd.DataFrame, feature: str, label: str,
                 values: Sequence[Any] | None = None, target: str | int = 1, n_train: int = 1000,
                 n_heldout: int = 500, n_pairs: int = 8, seed: int = 0) -> EditTask:
    """Forget ``feature``: its ``values`` (default: the two values of a binary feature, every
    category, or the 10th and 90th percentile) should give the same decision.

    ``train`` rows feed the edit (the first half also the relearning, the second half its
    measurement); ``heldout`` rows measure it. ``label`` is the outcome column (accuracy, AUC
    and the relearning labels).
    """
    for frame, what in ((train, "training"), (heldout, "held-out")):
        if label not in frame.columns:
            raise TwopathError(f"the {what} table has no label column {label!r}")
        if len(frame) < 4:
            raise TwopathError(f"the {what} table needs at least 4 rows, got {len(frame)}")
    values = _feature_values(adapter, train, feature, values)
    features = list(adapter.features)
    rng = np.random.default_rng(seed)
    train = train.iloc[rng.permutation(len(train))[:n_train]]
    heldout = heldout.iloc[rng.permutation(len(heldout))[:n_heldout]]
    train_rows, held_rows = _rows(train, features), _rows(heldout, features)
    half = len(train_rows) // 2
    return EditTask(
        name=f"forget {feature}",
        target=adapter.target(target).index,
        focus=feature,
        train_groups=_groups(train_rows, feature, values),
        heldout_groups=_groups(held_rows, feature, values),
        heldout=held_rows,
        heldout_labels=heldout[label].to_numpy().astype(int),
        robust_groups={"extreme other features": _groups(_extremes(adapter, train, held_rows, feature), feature, values)},
        agreement_groups=_groups(_resampled(adapter, held_rows, feature, rng), feature, values),
        relearn_inputs=train_rows[:half],
        relearn_labels=train[label].to_numpy().astype(int)[:half],
        relearn_groups=_groups(train_rows[half:], feature, values),
        pairs=[({**row, feature: values[0]}, {**row, feature: values[-1]}) for row in train_rows[:n_pairs]],
        meta={"feature": feature, "values": [_plain(v) for v in values], "n_train": len(train_rows),
              "n_heldout": len(held_rows)},
    )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _extremes(adapter: Any, train: pd.DataFrame, rows: Sequence[dict[str, Any]], feature: str) -> list[dict[str, Any]]:
    """Each held-out row with one other numeric feature (in turn) at its 1st or 99th percentile."""
    others = [f for f in adapter.numeric if f != feature]
    if not others:
        return list(rows)
    out = []
    for i, row in enumerate(rows):
        other = others[i % len(others)]
        q = 0.01 if (i // len(others)) % 2 == 0 else 0.99
        out.append({**row, other: float(np.quantile(train[other].astype(float), q))})
    return out


def _resampled(adapter: Any, rows: Sequence[dict[str, Any]], feature: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Each held-out row with one other feature (in turn) taken from another random row."""
    others = [f for f in adapter.features if f != feature]
    donors = rng.permutation(len(rows))
    return [{**row, others[i % len(others)]: rows[int(donors[i])][others[i % len(others)]]}
            for i, row in enumerate(rows)] if others else list(rows)


# --- text: one word ---------------------------------------------------------------------------

def _word_re(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w']){re.escape(word)}(?![\w'])", re.IGNORECASE)


def has_word(text: str, word: str) -> bool:
    return _word_re(word).search(text) is not None


def delete_word(text: str, word: str) -> str:
    """``text`` with every occurrence of ``word`` (any casing) removed, spaces tidied."""
    out = _word_re(word).sub("", text)
    return re.sub(r"\s+([,.;:!?])", r"\1", re.sub(r"\s{2,}", " ", out)).strip()


def recase(text: str, word: str, style: str) -> str:
    fix = {"upper": str.upper, "title": str.capitalize}[style]
    return _word_re(word).sub(lambda m: fix(m.group(0)), text)


def _word_groups(texts: Sequence[str], word: str) -> list[Group]:
    return [[t, delete_word(t, word)] for t in texts]


def word_task(adapter: Any, train_texts: Sequence[str], train_labels: Sequence[int], heldout_texts: Sequence[str],
              heldout_labels: Sequence[int], word: str, target: str | int = 1, n_train: int = 200,
              n_heldout: int = 200, n_maintain: int = 200, n_pairs: int = 4, n_robust: int | None = None,
              seed: int = 0) -> EditTask:
    """Forget ``word``: a sentence and the same sentence without the word should get the same
    decision. Sentences with the word feed the forget term; as many without it, the maintain
    term (their original predictions kept). ``n_robust`` caps each robustness probe's groups
    (``None``: every held-out sentence's)."""
    from twopath.comparisons.edit_test import paraphrases

    word = word.strip()
    if not word or len(word.split()) != 1:
        raise TwopathError(f"the word to forget must be one word, got {word!r}")
    rng = np.random.default_rng(seed)
    train_texts, heldout_texts = [str(t) for t in train_texts], [str(t) for t in heldout_texts]
    with_word = [i for i, t in enumerate(train_texts) if has_word(t, word)]
    held_with = [i for i, t in enumerate(heldout_texts) if has_word(t, word)]
    if not held_with:
        raise TwopathError(f"the word {word!r} is in no held-out sentence")
    if len(with_word) < 2:
        raise TwopathError(f"the word {word!r} is in fewer than 2 training sentences")
    train_pick = [with_word[i] for i in rng.permutation(len(with_word))[:n_train]]
    held_pick = [held_with[i] for i in rng.permutation(len(held_with))[:n_heldout]]
    without = [i for i, t in enumerate(train_texts) if not has_word(t, word)]
    maintain = [train_texts[without[i]] for i in rng.permutation(len(without))[:n_maintain]]
    train_sents = [train_texts[i] for i in train_pick]
    held_sents = [heldout_texts[i] for i in held_pick]
    labels = np.asarray(train_labels, dtype=int)
    half = len(train_sents) // 2
    para = [p for t in held_sents for p in paraphrases(t) if has_word(p, word)]
    contexts = [c.format(w=word.lower(), W=word.capitalize()) for c in WORD_CONTEXTS]
    held_all = rng.permutation(len(heldout_texts))[:n_heldout]
    forms = inflections(word, vocabulary([*train_texts, *heldout_texts]))
    shuffled = [heldout_texts[i] for i in rng.permutation(len(heldout_texts))]
    inflected = _inflection_groups(shuffled, word, forms, min(n_heldout, n_robust or n_heldout))
    cap = slice(None, n_robust)
    pairs = [(t, c) for t in train_sents for c in [_contrast(adapter, t, word)] if c is not None][:n_pairs]
    return EditTask(
        name=f"forget the word {word!r}",
        target=adapter.target(target).index,
        focus=word,
        train_groups=_word_groups(train_sents, word),
        heldout_groups=_word_groups(held_sents, word),
        heldout=[heldout_texts[i] for i in held_all],
        heldout_labels=np.asarray(heldout_labels, dtype=int)[held_all],
        maintain=maintain,
        robust_groups={
            "other casing": [[recase(t, word, s), delete_word(t, word)] for t in held_sents for s in ("upper", "title")][cap],
            "paraphrases": _word_groups(para, word)[cap],
            "new contexts": _word_groups(contexts, word),
            # no inflection in the held-out sentences: an empty probe, its gap reported as absent
            "inflections": inflected,
        },
        relearn_inputs=train_sents[:half],
        relearn_labels=labels[[train_pick[i] for i in range(half)]],
        relearn_groups=_word_groups(train_sents[half:], word),
        pairs=pairs,
        meta={"word": word, "n_train": len(train_sents), "n_heldout": len(held_sents), "n_maintain": len(maintain),
              "inflections": forms, "n_inflection_sentences": len(inflected)},
    )


#: the standard English suffixes :func:`inflections` tries
SUFFIXES = ("s", "es", "ed", "ing", "ly", "er", "est", "ness")
_VOWELS = set("aeiou")


def _stems(word: str) -> set[str]:
    """The word and the stems it may be an inflection of (a suffix removed, with the e-drop,
    consonant doubling and y-to-i undone): ``loved`` -> love, ``funnier`` -> funny."""
    stems = {word}
    for suffix in SUFFIXES:
        base = word[: -len(suffix)]
        if not word.endswith(suffix) or len(base) < 3:
            continue
        stems |= {base, base + "e"}
        if len(base) >= 4 and base[-1] == base[-2] and base[-1] not in _VOWELS:
            stems.add(base[:-1])  # stopped -> stop
        if base.endswith("i"):
            stems.add(base[:-1] + "y")  # funnier -> funny
    return stems


def _forms(stem: str) -> set[str]:
    """The stem with each suffix, spelled the standard ways."""
    forms = {stem + s for s in SUFFIXES}
    if stem.endswith("e"):
        forms |= {stem[:-1] + s for s in ("ed", "ing", "er", "est")} | {stem + "d"}
    if stem.endswith("y") and len(stem) > 2 and stem[-2] not in _VOWELS:
        forms |= {stem[:-1] + s for s in ("ies", "ied", "ier", "iest", "ily", "iness")}
    if len(stem) >= 3 and stem[-1] not in _VOWELS | {"w", "x", "y"} and stem[-2] in _VOWELS and stem[-3] not in _VOWELS:
        forms |= {stem + stem[-1] + s for s in ("ed", "ing", "er", "est")}  # stop -> stopped
    return forms


def vocabulary(texts: Sequence[str]) -> set[str]:
    """The lower-cased words of ``texts``."""
    return {w.lower() for t in texts for w in re.findall(r"[A-Za-z][A-Za-z'-]*", str(t))}


def inflections(word: str, vocab: set[str]) -> list[str]:
    """Words of ``vocab`` that share ``word``'s stem with a standard English suffix (-s, -es, -ed,
    -ing, -ly, -er, -est, -ness, with e-drop, consonant doubling and y-to-i), the word itself left
    out, sorted. Built from the data: a form the data does not have is not returned."""
    word = word.lower()
    stems = _stems(word)
    candidates = stems | {f for stem in stems for f in _forms(stem)}
    return sorted(w for w in candidates & vocab if w != word)


def _inflection_groups(texts: Sequence[str], word: str, forms: Sequence[str], limit: int) -> list[Group]:
    """Sentences with one of ``forms`` (and not ``word`` itself), with and without it."""
    groups = []
    for text in texts:
        if has_word(text, word):
            continue
        form = next((f for f in forms if has_word(text, f)), None)
        if form is not None:
            groups.append([text, delete_word(text, form)])
        if len(groups) == limit:
            break
    return groups


#: neutral words tried, in order, in place of the forgotten word for a same-length contrast
NEUTRAL_SWAPS = ("fine", "okay", "plain", "so", "the", "a", "it", "just")


def _contrast(adapter: Any, text: str, word: str) -> str | None:
    """``text`` with ``word`` replaced so the token count is kept (patching needs it): a neutral
    word of the same length in tokens, else the adapter's mask tokens; ``None`` if neither fits."""
    from twopath.types import Example

    n_tokens = len(adapter.batch_inputs([text])["input_ids"][0])
    candidates = [_word_re(word).sub(swap, text) for swap in NEUTRAL_SWAPS]
    example = Example("edit-pair", text)
    units = [i for i, u in enumerate(adapter.units(example)) if u.lower() == word.lower()]
    if units:
        candidates.append(str(adapter.without_units(example, units).raw))
    for candidate in candidates:
        if candidate != text and len(adapter.batch_inputs([candidate])["input_ids"][0]) == n_tokens:
            return candidate
    return None
