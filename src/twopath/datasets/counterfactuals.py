"""Counterfactual (corrupted) inputs for activation patching.

Patching needs a second input that differs minimally from the example and changes the answer.

* **Text**: a sentiment lexicon is *learned* from the training split as smoothed log-odds of
  each word appearing in a positive versus a negative snippet (Monroe et al.'s log-odds ratio
  with a uniform prior). The sentence's word that leans most toward the target class is swapped
  for the strongest frequent word of the opposite polarity that has the *same number of
  sub-tokens*, so positions line up (``good`` → ``bad``-like swaps).
* **Tables**: the contrast applicant is given explicitly (e.g. the seed applicant with credit
  score 600).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

_TOKEN = re.compile(r"[a-z][a-z'-]*")


def _bag(text: str) -> set[str]:
    return set(_TOKEN.findall(text.lower()))


@lru_cache(maxsize=4)
def sentiment_lexicon(seed: int = 0, min_count: int = 20, prior: float = 1.0) -> pd.DataFrame:
    """Words with their positive-vs-negative log-odds, learned from the training split."""
    from twopath.datasets import sentiment

    train, _ = sentiment.split(seed=seed)
    pos: Counter[str] = Counter()
    neg: Counter[str] = Counter()
    for text, label in zip(train["text"], train["label"], strict=True):
        (pos if label == "positive" else neg).update(_bag(text))
    n_pos = int((train["label"] == "positive").sum())
    n_neg = len(train) - n_pos
    rows = []
    for word in sorted(set(pos) | set(neg)):  # sorted: ties keep one order in every process
        count = pos[word] + neg[word]
        if count < min_count:
            continue
        p = (pos[word] + prior) / (n_pos + 2 * prior)
        q = (neg[word] + prior) / (n_neg + 2 * prior)
        log_odds = np.log(p / (1 - p)) - np.log(q / (1 - q))
        rows.append((word, float(log_odds), count))
    frame = pd.DataFrame(rows, columns=["word", "log_odds", "count"])
    return frame.sort_values("log_odds", ascending=False, kind="stable").reset_index(drop=True)


def swap_sentiment_word(text: str, toward_positive: bool, n_tokens: Callable[[str], int],
                        lexicon: pd.DataFrame | None = None,
                        prefer: Sequence[str] = ()) -> tuple[str, str, str] | None:
    """Replace one polar word of ``text`` with an opposite-polarity word of the same token length.

    ``toward_positive`` says which class the sentence should be moved *away* from (True: the
    sentence is positive, swap a positive word for a negative one). The word swapped is the
    first of ``prefer`` (e.g. the input path's ranking) whose lexicon polarity agrees, else the
    sentence's most polar word. ``n_tokens`` counts a word's sub-tokens. Returns
    ``(new_text, old_word, new_word)`` or ``None`` when no word qualifies.
    """
    lexicon = sentiment_lexicon() if lexicon is None else lexicon
    scores = dict(zip(lexicon["word"], lexicon["log_odds"], strict=True))
    sign = 1.0 if toward_positive else -1.0
    candidates = []
    for match in re.finditer(r"[A-Za-z][A-Za-z'-]*", text):
        word = match.group(0)
        score = scores.get(word.lower())
        if score is not None and sign * score > 0:
            candidates.append((sign * score, match))
    if not candidates:
        return None
    rank = {w.lower(): i for i, w in enumerate(prefer)}
    _, _, _, match = min((rank.get(m.group(0).lower(), len(rank)), -score, i, m) for i, (score, m) in enumerate(candidates))
    old = match.group(0)
    opposite = lexicon.sort_values("log_odds", ascending=toward_positive, kind="stable")
    for word in opposite["word"]:
        if sign * scores[word] >= 0:
            break
        if n_tokens(word) == n_tokens(old.lower()) and word != old.lower():
            new = word.capitalize() if old[0].isupper() else word
            return text[: match.start()] + new + text[match.end() :], old, new
    return None
