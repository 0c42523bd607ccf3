"""The edit section of a reference task's report: the localized-edit table, from the run.

``twopath reproduce loan|hmda|sentiment`` can end with the experiment of Guo et al.
(*Mechanistic Unlearning*): the task's model is edited once per localization, every
localization at the same parameter budget, by the same code ``twopath edit`` runs
(:func:`~twopath.editing.compare.compare_localizations`), and the table, the verdicts and the
forget-vs-maintain figure go into the task's report. Each task forgets one thing the run shows
the model uses:

* **loan** — the credit-score pathway: credit scores 720 and 600 should give the same decision
  (the seed claims' pathway contrast), over the MLP's neurons;
* **hmda** — the ``white`` pathway of the HMDA Boston MLP: ``white = 1`` and ``white = 0``
  should give the same decision;
* **sentiment** — the seed sentence's top word by the input path (SHAP's first unit, the first
  one that is a word found in held-out and training sentences): a sentence with and without the
  word should get the same decision, over the encoder's heads.

:func:`edit_section` returns a plain dict (``Report.edit``): the settings, one row per edit,
the per-localization summary (random seeds as mean and sd), the verdicts, and the section's
wall and CPU seconds under ``timings``. Seconds are volatile and never reach report.json (the
writers drop ``seconds``, ``localize_seconds``, ``edit_seconds`` and ``timings``), so the same
seed gives the same JSON.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twopath.types import ExampleResult, TwopathError

#: which reference tasks include the edit section when ``reproduce`` is given neither
#: ``--edit`` nor ``--no-edit`` (the MiniLM word edit costs minutes: one flag away)
EDIT_BY_DEFAULT = {"loan": True, "hmda": True, "sentiment": False, "sentiment-gpt2": False}


@dataclass
class SectionPlan:
    """How one task's section is run: task sizes, budget, seeds, the edit and the relearning."""

    kind: str
    k: int = 4
    n_random: int = 3
    n_train: int = 1000
    n_heldout: int = 500
    #: text: most groups per robustness probe (``None``: all)
    n_robust: int | None = None
    editor: dict[str, Any] = field(default_factory=dict)
    relearning: dict[str, Any] = field(default_factory=dict)


#: the plans of the reference tasks (the tabular ones are the benchmark's cases; the text plan
#: caps steps and batches so the MiniLM table takes minutes, not an hour)
PLANS = {
    "loan": SectionPlan("neuron", n_train=1000, n_heldout=500),
    "hmda": SectionPlan("neuron", n_train=1000, n_heldout=400),
    "sentiment": SectionPlan("head", k=2, n_random=2, n_train=80, n_heldout=60, n_robust=40,
                             editor={"steps": 30, "lr": 3e-3, "batch_groups": 16, "check_groups": 32},
                             relearning={"steps": 10, "lr": 3e-4, "batch_size": 16}),
}


#: ``progress(done, total)`` after each edit (the CLI's bar)
Progress = Callable[[int, int], None] | None


def run_plan(adapter: Any, task: Any, plan: SectionPlan, seed: int, extra: dict[str, Any] | None = None,
             progress: Progress = None) -> dict[str, Any]:
    """Every localization at one budget on ``task``; the section dict with its wall and CPU seconds."""
    from twopath.editing.compare import Relearning, compare_localizations
    from twopath.editing.finetune import LocalizedFineTuning

    wall, cpu = time.perf_counter(), time.process_time()
    comparison = compare_localizations(adapter, task, kind=plan.kind, k=plan.k, n_random=plan.n_random,
                                       editor=LocalizedFineTuning(**plan.editor, seed=seed),
                                       relearning=Relearning(**plan.relearning, seed=seed),
                                       progress=progress)
    timings = {"wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
    return section_dict(comparison, task.meta, timings, extra)


def section_dict(comparison: Any, meta: dict[str, Any], timings: dict[str, float],
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-ready section: rows, summary and verdicts of a comparison, plus its timings."""
    summary = comparison.summary()
    records = [{k: _plain(v) for k, v in row.items()} for row in summary.to_dict(orient="records")]
    return {"task": comparison.task, "kind": comparison.kind, "budget": comparison.budget, "meta": meta,
            **(extra or {}), "settings": comparison.settings, "rows": [row.to_dict() for row in comparison.rows],
            "summary": records, "verdicts": comparison.verdicts(),
            "timings": {k: round(v, 3) for k, v in timings.items()}}


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 6) if np.isfinite(value) else None
    return value


# --- the reference tasks ----------------------------------------------------------------------

def loan_section(adapter: Any, train: Any, heldout: Any, seed: int = 0, progress: Progress = None) -> dict[str, Any]:
    """Make credit scores 720 and 600 indistinguishable for the loan MLP."""
    from twopath.editing.tasks import feature_task

    plan = PLANS["loan"]
    task = feature_task(adapter, train, heldout, "credit_score", "approved", values=(720, 600),
                        n_train=plan.n_train, n_heldout=plan.n_heldout, seed=seed)
    return run_plan(adapter, task, plan, seed, progress=progress)


def hmda_section(adapter: Any, frame: Any, seed: int = 0, progress: Progress = None) -> dict[str, Any]:
    """Remove the ``white`` pathway of the HMDA MLP; held out = the model's own test split."""
    from sklearn.model_selection import train_test_split

    from twopath.editing.tasks import feature_task

    train, heldout = train_test_split(frame, test_size=0.2, random_state=0, stratify=frame["approve"])
    plan = PLANS["hmda"]
    task = feature_task(adapter, train, heldout, "white", "approve", values=(1, 0), n_train=plan.n_train,
                        n_heldout=plan.n_heldout, seed=seed)
    return run_plan(adapter, task, plan, seed, progress=progress)


def top_word(result: ExampleResult, train_texts: Sequence[str], heldout_texts: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The input path's top unit that is a word in at least one held-out and two training
    sentences (SHAP's ranking by |score|, else the first attribution's), and where it came from."""
    from twopath.editing.tasks import has_word

    if not result.attributions:
        raise TwopathError("the run has no input-path attribution to take the word from")
    main = next((a for a in result.attributions if a.method == "shap"), result.attributions[0])
    for rank, i in enumerate(main.ranking()):
        word = str(main.units[i]).strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z'-]*", word):
            continue
        if any(has_word(t, word) for t in heldout_texts) and sum(has_word(t, word) for t in train_texts) >= 2:
            return word, {"word_from": f"{main.method}'s unit #{rank + 1} by |score| on the seed sentence",
                          "word_score": round(float(main.scores[i]), 6)}
    raise TwopathError(f"no unit of {main.method}'s ranking is a word found in the held-out and training sentences")


def word_section(adapter: Any, result: ExampleResult, train: Any, heldout: Any, seed: int = 0,
                 progress: Progress = None) -> dict[str, Any]:
    """Unlearn the seed sentence's top word (text tasks; ``train``/``heldout`` have text and label)."""
    from twopath.editing.tasks import word_task

    train_texts, held_texts = [str(t) for t in train["text"]], [str(t) for t in heldout["text"]]
    word, source = top_word(result, train_texts, held_texts)
    lookup = {name.lower(): i for i, name in enumerate(adapter.labels)}

    def codes(series: Any) -> list[int]:
        return [lookup[str(x).lower()] if str(x).lower() in lookup else int(x) for x in series]

    plan = PLANS["sentiment"]
    task = word_task(adapter, train_texts, codes(train["label"]), held_texts, codes(heldout["label"]), word,
                     n_train=plan.n_train, n_heldout=plan.n_heldout, n_maintain=plan.n_train, n_robust=plan.n_robust,
                     seed=seed)
    return run_plan(adapter, task, plan, seed, source, progress)
