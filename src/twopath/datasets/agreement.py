"""A synthetic English-like corpus for subject–verb agreement, with attractors.

Subject–verb agreement is the classic probe of whether a language model tracks syntax: in
"The keys to the old cabinet ___" the verb must be *are*, agreeing with *keys*, although the
nearest noun, *cabinet*, is singular. A noun of the opposite number between the subject and the
verb is an **attractor**; a model that predicts the verb from the last noun it saw falls for it.

The corpus is generated from a small grammar, deterministically for a seed (Python's
``random.Random``, so the same seed gives the same sentences on every platform):

* **agreement sentences** — ``the [adj] NOUN [attractor] is|are PREDICATE .`` where the
  attractor is absent, a prepositional phrase (``to the old cabinet``) or a relative clause
  (``that the man holds``, whose own verb agrees with its own noun). In training text the
  attractor's number is drawn independently of the subject's, so "the verb agrees with the last
  noun" is wrong half of the time and the model has to find the subject;
* **other agreement** — the same subjects with intransitive present-tense verbs
  (``the dogs near the door sleep .``);
* **filler** — past-tense sentences with no agreement at all (``yesterday the man found the
  keys .``), so the model is a language model of the whole corpus, not a lookup table.

Training subjects never use a fifth of the adjective–noun pairs (``the old key`` may be an
attractor in training, never a subject); held-out subjects always do, so even held-out sentences
without attractors were never seen.

Evaluation uses :class:`AgreementItem` prefixes: the sentence up to the verb, the correct verb,
the word index of the subject noun and the attractor, and the **number-flipped counterpart**
(the subject noun swapped for its other number, everything else kept). Every singular noun and
its plural are single tokens of the reference tokenizer, so the counterpart has the same token
length and activation patching lines the two runs up position by position. Held-out items are
drawn from another seed and never share a prefix with the training text; their attractors
always have the opposite number (the hard case), and a set without attractors is the control.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

NOUNS: tuple[tuple[str, str], ...] = (
    ("key", "keys"), ("cabinet", "cabinets"), ("dog", "dogs"), ("man", "men"), ("woman", "women"),
    ("child", "children"), ("book", "books"), ("table", "tables"), ("teacher", "teachers"), ("door", "doors"),
    ("car", "cars"), ("box", "boxes"), ("painting", "paintings"), ("student", "students"), ("house", "houses"),
    ("bird", "birds"), ("letter", "letters"), ("window", "windows"), ("lamp", "lamps"), ("friend", "friends"),
)
ADJECTIVES = ("old", "new", "small", "big", "red", "blue", "quiet", "tall", "broken", "famous")
PREPOSITIONS = ("to", "near", "behind", "on", "under", "beside", "of", "by", "with", "from")
RC_VERBS: tuple[tuple[str, str], ...] = (
    ("holds", "hold"), ("sees", "see"), ("likes", "like"), ("opens", "open"), ("finds", "find"), ("knows", "know"),
)
INTRANSITIVE: tuple[tuple[str, str], ...] = (
    ("sleeps", "sleep"), ("waits", "wait"), ("stays", "stay"), ("falls", "fall"), ("moves", "move"), ("shines", "shine"),
)
PAST_VERBS = ("found", "saw", "liked", "opened", "held", "moved")
OPENERS = ("yesterday", "today", "then", "later")
PREDICATES = ("on the table", "here", "very old", "in the house", "red", "broken", "ready", "new", "not here",
              "under the bed", "near the door", "quite small")
VERBS = ("is", "are")  # singular, plural
ATTRACTORS = ("none", "pp", "rc")
N_PLAIN_HELD_OUT = 80  # held-out subjects without attractors: 20 nouns x 2 adjectives x 2 numbers


@dataclass(frozen=True)
class AgreementItem:
    """One agreement prefix: the text up to the verb and what the verb must be."""

    prefix: str  # "the keys to the old cabinet"
    verb: str  # "are"
    plural: bool
    attractor: str  # "none" | "pp" | "rc"
    subject: str  # "keys"
    subject_index: int  # word index of the subject noun in the prefix
    attractor_index: int | None  # word index of the attractor noun (None without an attractor)
    flipped: str  # the prefix with the subject noun's number flipped: "the key to the old cabinet"

    @property
    def other_verb(self) -> str:
        return VERBS[0] if self.plural else VERBS[1]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _noun(rng: random.Random, plural: bool) -> tuple[str, str]:
    """(the noun in the requested number, the same noun in the other number)."""
    singular, many = rng.choice(NOUNS)
    return (many, singular) if plural else (singular, many)


def held_out_pair(noun: str, adjective: str) -> bool:
    """Is ``the ADJECTIVE NOUN`` held out as a *subject* (a fifth of the adjective-noun pairs,
    two per noun)? Training subjects never use these pairs; held-out subjects always do."""
    i = next(k for k, pair in enumerate(NOUNS) if noun in pair)
    return (i + ADJECTIVES.index(adjective)) % 5 == 0


def _np(rng: random.Random, noun: str, adjective_p: float = 0.5) -> list[str]:
    words = ["the"]
    if rng.random() < adjective_p:
        words.append(rng.choice(ADJECTIVES))
    return [*words, noun]


def _subject(rng: random.Random, noun: str, split: str) -> list[str]:
    if split == "test":
        return ["the", rng.choice([a for a in ADJECTIVES if held_out_pair(noun, a)]), noun]
    if rng.random() < 0.5:
        return ["the", noun]
    return ["the", rng.choice([a for a in ADJECTIVES if not held_out_pair(noun, a)]), noun]


def agreement_item(rng: random.Random, plural: bool, attractor: str, attractor_plural: bool | None = None,
                   split: str = "train") -> AgreementItem:
    """One prefix with a subject of the given number; the attractor (if any) has
    ``attractor_plural`` number (default: the opposite of the subject's). ``split="test"`` draws
    the subject from the held-out adjective-noun pairs (:func:`held_out_pair`)."""
    if attractor not in ATTRACTORS:
        raise ValueError(f"unknown attractor kind {attractor!r}; expected one of {list(ATTRACTORS)}")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    other_number = (not plural) if attractor_plural is None else attractor_plural
    noun, flipped_noun = _noun(rng, plural)
    words = _subject(rng, noun, split)
    subject_index = len(words) - 1
    attractor_index = None
    if attractor == "pp":
        attractor_noun, _ = _noun(rng, other_number)
        words += [rng.choice(PREPOSITIONS), *_np(rng, attractor_noun)]
        attractor_index = len(words) - 1
    elif attractor == "rc":
        attractor_noun, _ = _noun(rng, other_number)
        singular_verb, plural_verb = rng.choice(RC_VERBS)
        words += ["that", *_np(rng, attractor_noun, adjective_p=0.3)]
        attractor_index = len(words) - 1
        words.append(plural_verb if other_number else singular_verb)
    flipped = list(words)
    flipped[subject_index] = flipped_noun
    return AgreementItem(" ".join(words), VERBS[int(plural)], plural, attractor, noun, subject_index,
                         attractor_index, " ".join(flipped))


def _agreement_sentence(rng: random.Random, plural: bool) -> str:
    attractor = rng.choices(ATTRACTORS, weights=(0.4, 0.35, 0.25))[0]
    item = agreement_item(rng, plural, attractor, attractor_plural=rng.random() < 0.5)
    return f"{item.prefix} {item.verb} {rng.choice(PREDICATES)} ."


def _intransitive_sentence(rng: random.Random, plural: bool) -> str:
    attractor = rng.choices(("none", "pp"), weights=(0.5, 0.5))[0]
    item = agreement_item(rng, plural, attractor, attractor_plural=rng.random() < 0.5)
    singular_verb, plural_verb = rng.choice(INTRANSITIVE)
    return f"{item.prefix} {plural_verb if plural else singular_verb} ."


def _filler_sentence(rng: random.Random) -> str:
    subject = _np(rng, _noun(rng, rng.random() < 0.5)[0])
    obj = _np(rng, _noun(rng, rng.random() < 0.5)[0])
    return " ".join([rng.choice(OPENERS), *subject, rng.choice(PAST_VERBS), *obj, "."])


def corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` training sentences: half agreement with is/are, 30 % other agreement, 20 % filler.

    Subjects alternate singular / plural within each kind, so the numbers are balanced exactly.
    """
    rng = random.Random(seed)
    sentences = []
    counts = {"is_are": 0, "other": 0}
    for _ in range(n):
        kind = rng.choices(("is_are", "other", "filler"), weights=(0.5, 0.3, 0.2))[0]
        if kind == "filler":
            sentences.append(_filler_sentence(rng))
            continue
        plural = counts[kind] % 2 == 1
        counts[kind] += 1
        sentences.append(_agreement_sentence(rng, plural) if kind == "is_are" else _intransitive_sentence(rng, plural))
    return sentences


def held_out(n: int, attractor: str, seed: int = 1, exclude: Sequence[str] = ()) -> list[AgreementItem]:
    """``n`` distinct evaluation prefixes of one attractor kind (opposite-number attractors),
    alternately singular and plural, with held-out subjects (:func:`held_out_pair`), none of
    whose prefixes (or flipped prefixes) starts a sentence of ``exclude``. Without attractors
    the grammar has 80 such prefixes."""
    seen = set()
    for sentence in exclude:
        words = sentence.split()
        for verb in VERBS:
            if verb in words:
                seen.add(" ".join(words[: words.index(verb)]))
    rng = random.Random(f"{seed}-{attractor}")
    items: list[AgreementItem] = []
    prefixes: set[str] = set()
    tries = 0
    while len(items) < n:
        tries += 1
        if tries > 100 * n + 1000:
            raise ValueError(f"cannot draw {n} distinct unseen {attractor!r} prefixes from the grammar")
        item = agreement_item(rng, plural=len(items) % 2 == 1, attractor=attractor, split="test")
        if item.prefix in seen or item.flipped in seen or item.prefix in prefixes:
            continue
        prefixes.add(item.prefix)
        items.append(item)
    return items


def vocabulary() -> list[str]:
    """Every word the grammar puts after a space (each one token of the reference tokenizer;
    the sentence openers only ever start a sentence)."""
    words = {"the", "that", ".", *VERBS, *ADJECTIVES, *PREPOSITIONS, *PAST_VERBS}
    words |= {w for pair in (*NOUNS, *RC_VERBS, *INTRANSITIVE) for w in pair}
    words |= {w for p in PREDICATES for w in p.split()}
    return sorted(words)


def grammar_hash() -> str:
    """A hash of the grammar's word lists (part of the reference model's cache key)."""
    parts = [NOUNS, ADJECTIVES, PREPOSITIONS, RC_VERBS, INTRANSITIVE, PAST_VERBS, OPENERS, PREDICATES, VERBS]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]
