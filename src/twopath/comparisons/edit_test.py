"""The edit test: is a localization worth acting on?

A set of components named by an explanation is a claim about where the decision is made. The
claim is worth more when acting on it changes the behaviour **robustly** and **specifically**
(the intervention view of explanations, arXiv 2410.12949): knocking the components out should
move the decision on the explained input, move it in the same way on *related* inputs (a
paraphrase of the sentence, a nearby applicant), and leave *unrelated* inputs (held-out
sentences or applicants) largely alone. An edit that moves everything equally has found a
general-purpose part of the model, not the mechanism of this decision.

For each named component set — e.g. the internal path's top-k components, and the components
the input path's top words flow through, both chosen by the caller — :func:`edit_test`
mean-ablates the set (each component's activation replaced by its mean over
``adapter.background``) and measures the change in the target probability (ablated minus clean)
on the example, on each related input and on each unrelated input. It reports the mean change
and mean absolute change per group and the **specificity**
``mean |change on related| / (mean |change on unrelated| + 1e-9)``: above 1, the edit hits
the related inputs harder than the unrelated ones. :func:`winner` says which set moves the
behaviour more on the example and on related inputs, and which is more specific.

:func:`nearby_applicants` and :func:`paraphrases` make related inputs. Both are heuristics:
small numeric jitter does not guarantee the same decision, and the rewrites keep a sentence's
sentiment words but are not checked for meaning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.runtime.interventions import Edit, ablate, intervene
from twopath.types import Component, Example, TwopathError

#: Added to the denominator of the specificity so an edit with no effect on unrelated inputs
#: gives a large finite number, not a division by zero.
EPS = 1e-9
GROUPS = ("example", "related", "unrelated")
Input = Example | str | Mapping[str, Any]

# words that can be dropped from the front of a sentence without touching its sentiment
_LEADING_FUNCTION_WORDS = frozenset({
    "the", "a", "an", "this", "that", "these", "those", "it", "its", "i", "we", "and", "but",
    "so", "well", "overall", "honestly", "still", "yet", "also", "then",
})


def _as_example(value: Input, default_id: str) -> Example:
    if isinstance(value, Example):
        return value
    if isinstance(value, str | Mapping):
        return Example(default_id, value)
    raise TwopathError(f"{default_id}: expected an Example, a sentence or a feature mapping, got {type(value).__name__}")


def probabilities(adapter: Any, examples: Sequence[Example], target: int,
                  edits: Sequence[Edit] = ()) -> np.ndarray:
    """The target probability of each example (one forward pass each), under ``edits`` if given."""
    out = []
    with torch.no_grad(), intervene(adapter, edits):
        for example in examples:
            out.append(float(torch.softmax(adapter.run(adapter.forward_inputs(example)), -1)[0, target]))
    return np.asarray(out, dtype=float)


def target_changes(adapter: Any, components: Sequence[Component], target: str,
                   examples: Sequence[Example], mode: str = "mean",
                   clean: np.ndarray | None = None) -> np.ndarray:
    """Target-probability change (ablated - clean) on each example, ``components`` ablated together."""
    if not components:
        raise TwopathError("cannot ablate an empty component set")
    target_idx = adapter.label_index(target)
    if clean is None:
        clean = probabilities(adapter, examples, target_idx)
    edits = ablate(adapter, list(components), mode)  # the mean activations are computed once
    return probabilities(adapter, examples, target_idx, edits) - clean


def specificity(related_changes: Sequence[float] | np.ndarray, unrelated_changes: Sequence[float] | np.ndarray) -> float:
    """``mean |related| / (mean |unrelated| + 1e-9)``: how much harder the edit hits related inputs."""
    related, unrelated = np.abs(np.asarray(related_changes, float)), np.abs(np.asarray(unrelated_changes, float))
    if related.size == 0 or unrelated.size == 0:
        raise TwopathError("specificity needs at least one related and one unrelated input")
    return float(related.mean() / (unrelated.mean() + EPS))


def edit_test(adapter: Any, components_by_source: Mapping[str, Sequence[Component]], target: str,
              example: Input, related: Sequence[Input], unrelated: Sequence[Input],
              mode: str = "mean") -> pd.DataFrame:
    """Ablate each source's components; one row per source with the changes per input group.

    Columns: ``source``, ``n_components``, ``components`` (labels, comma-separated),
    ``example_change`` (signed change of the target probability on the example),
    ``related_change`` / ``related_abs_change`` and ``unrelated_change`` /
    ``unrelated_abs_change`` (means over the group), ``n_related``, ``n_unrelated`` and
    ``specificity``. ``frame.attrs["winner"]`` holds :func:`winner` of the table.
    """
    if not components_by_source:
        raise TwopathError("edit_test needs at least one named component set")
    empty = [name for name, comps in components_by_source.items() if not comps]
    if empty:
        raise TwopathError(f"empty component set(s): {empty}")
    if not related or not unrelated:
        raise TwopathError("edit_test needs at least one related and one unrelated input")
    ex = _as_example(example, "example")
    groups = {
        "example": [ex],
        "related": [_as_example(r, f"related-{i}") for i, r in enumerate(related)],
        "unrelated": [_as_example(u, f"unrelated-{i}") for i, u in enumerate(unrelated)],
    }
    everything = [e for g in GROUPS for e in groups[g]]
    clean = probabilities(adapter, everything, adapter.label_index(target))
    rows: list[dict[str, Any]] = []
    for source, components in components_by_source.items():
        comps = list(components)
        changes = target_changes(adapter, comps, target, everything, mode, clean)
        by_group: dict[str, np.ndarray] = {}
        start = 0
        for g in GROUPS:
            by_group[g] = changes[start : start + len(groups[g])]
            start += len(groups[g])
        rows.append({
            "source": source,
            "n_components": len(comps),
            "components": ",".join(str(c) for c in comps),
            "example_change": float(by_group["example"][0]),
            "related_change": float(by_group["related"].mean()),
            "related_abs_change": float(np.abs(by_group["related"]).mean()),
            "unrelated_change": float(by_group["unrelated"].mean()),
            "unrelated_abs_change": float(np.abs(by_group["unrelated"]).mean()),
            "n_related": len(groups["related"]),
            "n_unrelated": len(groups["unrelated"]),
            "specificity": specificity(by_group["related"], by_group["unrelated"]),
        })
    frame = pd.DataFrame(rows)
    frame.attrs["winner"] = winner(frame)
    frame.attrs["mode"] = mode
    return frame


def _best(frame: pd.DataFrame, column: str, absolute: bool = False) -> str | None:
    """The source with the largest value of ``column``; ``None`` on an exact tie."""
    values = frame[column].abs() if absolute else frame[column]
    top = values.max()
    leaders = frame.loc[values == top, "source"].tolist()
    return str(leaders[0]) if len(leaders) == 1 else None


def winner(frame: pd.DataFrame) -> dict[str, str | None]:
    """Which source moves the behaviour more and which is more specific (``None`` = tie).

    * ``example`` — largest |change| on the explained input;
    * ``related`` — largest mean |change| on the related inputs;
    * ``specificity`` — largest specificity (related over unrelated).
    """
    if frame.empty:
        raise TwopathError("no edit-test rows to compare")
    return {
        "example": _best(frame, "example_change", absolute=True),
        "related": _best(frame, "related_abs_change"),
        "specificity": _best(frame, "specificity"),
    }


# --- related inputs ---------------------------------------------------------------------------

def nearby_applicants(applicant: Mapping[str, Any], adapter: Any, n: int = 20, seed: int = 0,
                      spread: float = 0.05) -> list[dict[str, Any]]:
    """``n`` seeded neighbours of a tabular row: every numeric feature scaled by a factor drawn
    uniformly from ``[1 - spread, 1 + spread]`` (±5%), categorical values unchanged.

    Integer-valued features stay integers (rounded), so small counts may not move; a zero stays
    zero. A heuristic: a neighbour is *near*, not guaranteed to get the same decision.
    """
    if n < 1:
        raise TwopathError(f"n must be at least 1, got {n}")
    if not 0 <= spread < 1:
        raise TwopathError(f"spread must be in [0, 1), got {spread}")
    base = adapter.frame(applicant).iloc[0]  # validates features and categories
    rng = np.random.default_rng(seed)
    numeric = [f for f in adapter.features if f not in adapter.categories]
    integral = {f for f in numeric if _is_integral(applicant.get(f, base[f]))}
    rows = []
    for _ in range(n):
        factors = rng.uniform(1 - spread, 1 + spread, size=len(numeric))
        row = {f: applicant.get(f, base[f]) for f in adapter.features}
        for f, factor in zip(numeric, factors, strict=True):
            value = float(base[f]) * float(factor)
            row[f] = int(round(value)) if f in integral else value
        rows.append(row)
    return rows


def _is_integral(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def paraphrases(text: str) -> list[str]:
    """A few deterministic rewrites of a sentence that keep its sentiment words (heuristic).

    Rules, each applied on its own to the original: drop a leading function word ("The",
    "This", "It", ...); "The movie" → "This film" (or "film" ↔ "movie"); append " Really.";
    swap the two clauses around the first comma (each of at least three words). Rewrites equal to the original or to an
    earlier rewrite are left out, so a sentence may get fewer than four.
    """
    text = text.strip()
    if not text:
        raise TwopathError("cannot paraphrase an empty text")
    candidates = [_drop_first_word(text), _swap_noun(text), _append_really(text), _swap_clauses(text)]
    out: list[str] = []
    for candidate in candidates:
        if candidate and candidate != text and candidate not in out:
            out.append(candidate)
    return out


def _capitalize(s: str) -> str:
    return s[:1].upper() + s[1:]


def _drop_first_word(text: str) -> str | None:
    words = text.split()
    if len(words) < 3 or words[0].lower().strip(",;:") not in _LEADING_FUNCTION_WORDS:
        return None
    return _capitalize(" ".join(words[1:]))


def _swap_noun(text: str) -> str | None:
    for pattern, repl in ((r"\bThe movie\b", "This film"), (r"\bthe movie\b", "this film"),
                          (r"\bmovie\b", "film"), (r"\bfilm\b", "movie")):
        out, count = re.subn(pattern, repl, text, count=1)
        if count:
            return out
    return None


def _append_really(text: str) -> str:
    end = "" if text[-1] in ".!?" else "."
    return f"{text}{end} Really."


def _swap_clauses(text: str) -> str | None:
    if "," not in text:
        return None
    first, second = (part.strip() for part in text.split(",", 1))
    if len(first.split()) < 3 or len(second.split()) < 3:  # clauses, not a list of adjectives
        return None
    end = ""
    while second and second[-1] in ".!?":
        end = second[-1] + end
        second = second[:-1]
    if not second:
        return None
    lead = first.split()[0]
    keep_case = lead == "I" or (len(lead) > 1 and lead.isupper())  # "I", acronyms
    head = first if keep_case else first[:1].lower() + first[1:]
    return f"{_capitalize(second)}, {head}{end or '.'}"
