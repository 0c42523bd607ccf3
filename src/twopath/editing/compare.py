"""The paper's table from a run: one row per localization, all at one parameter budget.

:func:`compare_localizations` ranks components by every localization, fills the same budget
from each ranking, runs the same :class:`~twopath.editing.finetune.LocalizedFineTuning` on each
mask, and measures the edited model: the **forget** metric (held-out counterfactual gap and flip
share), **maintain** (held-out accuracy and AUC, agreement with the original's decisions on
other features' counterfactuals), **robustness** (the gap on inputs of another form) and the
gap **after relearning** (the whole edited model fine-tuned a few steps on half the training
inputs' original labels, measured on the other half; ``relearn_set_gap`` is the same set's gap
before relearning, so the two show how much came back). Random components run over several seeds
and are summarised as a distribution. ``all parameters`` is the non-localized control: its
budget is *not* matched, and the table says so.

Verdicts (:meth:`EditComparison.verdicts`), in the style of the seed claims: among the
budget-matched localizations that forgot (held-out gap at most ``FORGOTTEN`` of the original's),
which leaves the least gap after relearning, and whether it kept held-out accuracy within
``MAINTAIN_TOLERANCE``; and whether the paper's finding — output tracing (attribution patching)
is less robust than "where it is written" (the probe) — holds here: ``holds`` or ``reversed`` when
the difference exceeds one sd of the random seeds' value, else ``within noise``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.editing import localizations as loc
from twopath.editing.finetune import (
    EditResult,
    LocalizedFineTuning,
    counterfactual_gap,
    logits_of,
    relearn,
    reuse_encodings,
    reused,
    with_values,
)
from twopath.editing.mask import (
    ParameterMask,
    all_parameters,
    check_budget,
    component_size,
    fill_budget,
)
from twopath.editing.tasks import EditTask
from twopath.runtime.threads import adapter_sized
from twopath.types import Component, TwopathError

#: the localizations :func:`compare_localizations` runs by default, in table order
LOCALIZATIONS = ("ablation", "attribution_patching", "probe", "bridge", "random", "last_layer", "all_parameters")
#: a localization "keeps" the model when held-out accuracy drops by at most this much
MAINTAIN_TOLERANCE = 0.05
#: a localization "forgot" when its held-out gap is at most this share of the original's
FORGOTTEN = 0.25


@dataclass
class Relearning:
    """How the relearning attack is run: whole-model Adam steps on original labels."""

    steps: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0


def accuracy_auc(adapter: Any, inputs: Sequence[Any], labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    probs = torch.softmax(logits_of(adapter, inputs), -1).double().cpu().numpy()
    out = {"accuracy": float((probs.argmax(-1) == labels).mean())}
    binary = probs.shape[1] == 2 and len(set(labels.tolist())) == 2
    out["auc"] = float(roc_auc_score(labels, probs[:, 1])) if binary else float("nan")
    return out


def agreement(adapter: Any, groups: Sequence[Sequence[Any]], reference: np.ndarray) -> float:
    """Share of groups whose first member's decision equals ``reference`` (the original's decision
    on the group-mean probabilities)."""
    if not groups:
        return float("nan")
    firsts = reused(adapter, ("firsts", groups), lambda: [g[0] for g in groups])
    decisions = logits_of(adapter, firsts).argmax(-1).cpu().numpy()
    return float((decisions == reference).mean())


def group_mean_decisions(adapter: Any, groups: Sequence[Sequence[Any]]) -> np.ndarray:
    if not groups:
        return np.zeros(0, dtype=int)
    raws = reused(adapter, ("members", groups), lambda: [m for g in groups for m in g])
    probs = torch.softmax(logits_of(adapter, raws), -1).double().cpu().numpy()
    sizes = np.cumsum([0] + [len(g) for g in groups])
    return np.asarray([probs[sizes[i] : sizes[i + 1]].mean(0).argmax() for i in range(len(groups))])


def measure(adapter: Any, task: EditTask, reference: np.ndarray, relearning: Relearning) -> dict[str, float]:
    """Every metric of the model as it is now (call inside ``EditResult.applied``)."""
    gap = counterfactual_gap(adapter, task.heldout_groups, task.target)
    row: dict[str, float] = {"forget_gap": gap["gap"], "flip_share": gap["flip_share"]}
    row.update({f"heldout_{k}": v for k, v in accuracy_auc(adapter, task.heldout, task.heldout_labels).items()})
    row["agreement"] = agreement(adapter, task.agreement_groups, reference)
    for name, groups in task.robust_groups.items():
        row[f"robust_gap[{name}]"] = counterfactual_gap(adapter, groups, task.target)["gap"]
    if len(task.relearn_inputs) and task.relearn_groups:
        row["relearn_set_gap"] = counterfactual_gap(adapter, task.relearn_groups, task.target)["gap"]
        values = relearn(adapter, None, task.relearn_inputs, task.relearn_labels, relearning.steps, relearning.lr,
                         relearning.batch_size, relearning.seed)
        with with_values(adapter, values):
            row["relearned_gap"] = counterfactual_gap(adapter, task.relearn_groups, task.target)["gap"]
    return row


@dataclass
class EditRow:
    """One localization's edit and its measurements."""

    localization: str
    seed: int | None
    result: EditResult | None
    metrics: dict[str, float]
    seconds: float
    budget_matched: bool
    localize_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        mask = self.result.mask if self.result is not None else None
        return {
            "localization": self.localization, "seed": self.seed,
            "n_parameters": mask.count if mask is not None else 0,
            "budget_matched": self.budget_matched,
            "components": mask.labels() if mask is not None else [],
            "steps": self.result.steps if self.result is not None else 0,
            "outside_unchanged": self.result.outside_unchanged if self.result is not None else True,
            **{k: _round(v) for k, v in self.metrics.items()},
            "localize_seconds": round(self.localize_seconds, 3),
            "edit_seconds": round(self.result.seconds, 3) if self.result is not None else 0.0,
            "seconds": round(self.seconds, 3),
        }


def _round(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


@dataclass
class EditComparison:
    """The comparison table, its settings, and verdicts."""

    task: str
    kind: str
    budget: int
    rows: list[EditRow]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([row.to_dict() for row in self.rows]).drop(columns=["components"])

    def summary(self) -> pd.DataFrame:
        """One row per localization; random seeds as mean and sd (``*_sd`` columns)."""
        frame = self.to_frame()
        metrics = [c for c in frame.columns if c not in ("localization", "seed", "budget_matched", "outside_unchanged")]
        grouped = frame.groupby("localization", sort=False)
        mean = grouped[metrics].mean()
        sd = grouped[metrics].std(ddof=0).add_suffix("_sd")
        out = mean.join(sd[[f"{m}_sd" for m in ("forget_gap", "heldout_accuracy", "relearned_gap") if f"{m}_sd" in sd]])
        out.insert(0, "n_runs", grouped.size())
        out.insert(1, "budget_matched", grouped["budget_matched"].first())
        return out.reset_index()

    def verdicts(self) -> dict[str, Any]:
        """Which budget-matched localization forgets (held-out gap at most ``FORGOTTEN`` of the
        original's) and leaves the least gap after relearning; whether the paper's finding holds."""
        frame = self.summary().set_index("localization")
        original = frame.loc["original"]
        score = "relearned_gap" if "relearned_gap" in frame else "forget_gap"
        matched = frame[(frame["budget_matched"]) & (frame.index != "original")]
        forgot = matched[matched["forget_gap"] <= FORGOTTEN * original["forget_gap"]]
        out: dict[str, Any] = {
            "criterion": f"lowest {score} among the budget-matched localizations whose held-out gap is at most "
                         f"{FORGOTTEN} of the original's",
            "original": {score: _round(original[score]), "forget_gap": _round(original["forget_gap"]),
                         "heldout_accuracy": _round(original["heldout_accuracy"])},
            "forgot": list(forgot.index),
        }
        if len(forgot):
            best = str(forgot[score].idxmin())
            out["most_robust"] = best
            out["most_robust_metrics"] = {c: _round(forgot.loc[best, c]) for c in
                                          ("forget_gap", score, "heldout_accuracy") if c in forgot}
            out["keeps_accuracy"] = bool(forgot.loc[best, "heldout_accuracy"]
                                         >= original["heldout_accuracy"] - MAINTAIN_TOLERANCE)
        else:
            out["most_robust"] = None
        if {"probe", "attribution_patching"} <= set(frame.index):
            probe, tracing = frame.loc["probe", score], frame.loc["attribution_patching", score]
            margin = _noise(frame, score)
            verdict = "holds" if tracing > probe + margin else "reversed" if probe > tracing + margin else "within noise"
            out["paper_finding"] = {
                "claim": f"output tracing (attribution patching) leaves more of the gap ({score}) than "
                         "'where it is written' (probe), at the same budget",
                "attribution_patching": _round(tracing), "probe": _round(probe),
                "margin": _round(margin), "verdict": verdict, "holds": verdict == "holds",
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "kind": self.kind, "budget": self.budget, "settings": self.settings,
                "rows": [row.to_dict() for row in self.rows], "verdicts": self.verdicts()}


def _noise(frame: pd.DataFrame, score: str) -> float:
    """The spread a difference must exceed: one sd of ``score`` over the random seeds (0 without)."""
    column = f"{score}_sd"
    if "random" in frame.index and column in frame and frame.loc["random", "n_runs"] > 1:
        return float(frame.loc["random", column])
    return 0.0


def default_budget(adapter: Any, kind: str, k: int) -> int:
    """``k`` components' worth of parameters: ``k`` times the median component size of the kind."""
    sizes = [component_size(adapter, c) for c in adapter.components(kind)]
    return int(k * float(np.median(sizes)))


def rankings(adapter: Any, task: EditTask, kind: str, names: Sequence[str], n_random: int,
             timings: dict[str, float] | None = None) -> dict[str, list[tuple[int | None, list[Component] | None]]]:
    """For each localization name, its ranking(s): (seed, ranking); ``None`` ranking = everything.
    ``timings`` receives each localization's wall seconds."""
    timings = {} if timings is None else timings
    cache: dict[str, list[Component]] = {}

    def ablation() -> list[Component]:
        if "ablation" not in cache:
            cache["ablation"] = loc.by_ablation(adapter, task, kind)
        return cache["ablation"]

    makers: dict[str, Callable[[], list[tuple[int | None, list[Component] | None]]]] = {
        "ablation": lambda: [(None, ablation())],
        "attribution_patching": lambda: [(None, loc.by_attribution_patching(adapter, task, kind))],
        "probe": lambda: [(None, loc.by_probe(adapter, task, kind))],
        "bridge": lambda: [(None, loc.by_bridge(adapter, task, kind))],
        "random": lambda: [(s, loc.by_random(adapter, kind, s)) for s in range(n_random)],
        "last_layer": lambda: [(None, loc.last_layer(adapter, ablation()))],
        "all_parameters": lambda: [(None, None)],
    }
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise TwopathError(f"unknown localization(s) {unknown}; expected some of {list(LOCALIZATIONS)}")
    out = {}
    for name in names:
        start = time.perf_counter()
        out[name] = makers[name]()
        timings[name] = time.perf_counter() - start
    return out


@adapter_sized
def compare_localizations(adapter: Any, task: EditTask, *, kind: str | None = None, budget: int | None = None,
                          k: int = 4, localizations: Sequence[str] = LOCALIZATIONS, n_random: int = 3,
                          editor: LocalizedFineTuning | None = None, relearning: Relearning | None = None,
                          extra: dict[str, Sequence[Component]] | None = None,
                          say: Callable[[str], None] | None = None,
                          progress: Callable[[int, int], None] | None = None) -> EditComparison:
    """Edit ``task`` once per localization at one budget and measure each edited model.

    ``kind`` defaults to the adapter's component kind; ``budget`` to ``k`` components' worth
    (:func:`default_budget`). ``extra`` adds named component sets of the caller's (ranked as
    given, filled to the same budget). ``say`` hears one line per finished edit; ``progress(done,
    total)`` is called after each edit.
    """
    kind = kind or adapter.default_component
    editor = editor or LocalizedFineTuning()
    relearning = relearning or Relearning()
    budget = check_budget(adapter, budget if budget is not None else default_budget(adapter, kind, k))
    with reuse_encodings():
        rows = _edit_rows(adapter, task, kind, budget, localizations, n_random, editor, relearning, extra,
                          say or (lambda _: None), progress or (lambda done, total: None))
    settings = {"editor": editor.settings(), "relearning": vars(relearning), "k": k, "n_random": n_random}
    return EditComparison(task.name, kind, budget, rows, settings)


def _edit_rows(adapter: Any, task: EditTask, kind: str, budget: int, localizations: Sequence[str], n_random: int,
               editor: LocalizedFineTuning, relearning: Relearning,
               extra: dict[str, Sequence[Component]] | None, say: Callable[[str], None],
               progress: Callable[[int, int], None]) -> list[EditRow]:
    reference = group_mean_decisions(adapter, task.agreement_groups)
    start = time.perf_counter()
    rows = [EditRow("original", None, None, measure(adapter, task, reference, relearning),
                    time.perf_counter() - start, True)]
    timings: dict[str, float] = {}
    ranked = rankings(adapter, task, kind, localizations, n_random, timings)
    for name, extra_components in (extra or {}).items():
        ranked[name] = [(None, list(extra_components))]
    total = sum(len(runs) for runs in ranked.values())
    for name, runs in ranked.items():
        for seed, ranking in runs:
            start = time.perf_counter()
            mask: ParameterMask = all_parameters(adapter) if ranking is None else fill_budget(adapter, ranking, budget)
            result = editor.edit(adapter, task, mask)
            with result.applied(adapter):
                metrics = measure(adapter, task, reference, relearning)
            rows.append(EditRow(name, seed, result, metrics, time.perf_counter() - start, ranking is not None,
                                timings.get(name, 0.0) / len(runs)))
            say(f"edit {name}{'' if seed is None else f' (seed {seed})'}: {result.steps} steps, "
                f"gap {metrics['forget_gap']:.3f}, {rows[-1].seconds:.1f} s")
            progress(len(rows) - 1, total)
    return rows
