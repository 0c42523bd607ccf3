"""Both paths over a dataset: faithfulness, agreement and "which matters more", as mean ± sd.

One example can mislead. This module runs a light version of the pipeline over many examples
(the seed reports' held-out sample, or the user's own data through ``twopath evaluate``) and
aggregates. There is **one per-example path**, :func:`evaluate_example`, and one aggregation,
:func:`summarize`, which reads only the flat per-example tables the store keeps, so a report
can be rebuilt from the store alone, without the model.

Per example (explained at its predicted label):

* every input method's attribution (SHAP with a budget of 100 evaluations, or the exact table on
  inputs of at most 8 units; IG with at most 64 steps; occlusion; gradient × input — LIME is
  left out, its stability is measured on the seed example);
* the internal path's ranking: mean ablation of every head (text) or neuron (tables);
* deletion / insertion AOPC, comprehensiveness and sufficiency for each ranking, beside a
  random-order control (the internal curves over the top 10 components). The protocol is
  lighter than a single report's, because the dataset's numbers are means over examples
  (:data:`DATASET_PROTOCOL`): **one random order per example** (the control is the mean over
  the examples, its sd includes the spread between orders), and input curves of more than 10
  units on an **11-point grid of k** (AOPC interpolated between the points; comprehensiveness
  and sufficiency exact). Measured on 40 held-out sentences of the fine-tuned MiniLM (8-46
  words): the grid moved a method's mean AOPC over the dataset by at most 0.003 (per example
  0.002-0.006 on average, 0.025 at most, against an sd over examples of 0.13-0.19), and one
  order instead of three moved the controls' means by at most 0.016, within one standard error
  over the 40 examples (0.02-0.03; deletion AOPC's sd over examples 0.127 instead of 0.090),
  against gaps of about 0.2 between the methods and their control; together they cut the
  curves' time per sentence by 60 % (docs/evaluate.md);
* rank agreement (Spearman) between every pair of input methods;
* the *type of insight* comparison: the drop in target probability when the top component is
  mean-ablated versus when the top unit is deleted.

With gold labels, an example whose gold label is not the predicted one is explained a second
time, by the same path, **at its gold label** — what would have had to move for the model to
be right. Every per-unit row carries ``target_kind`` (``predicted`` or ``gold``) and its
``target``; the summary compares the two explanations of those examples (faithfulness at each
label, the share with the same top unit or component, Spearman ρ between them). The second
explanation reuses every model row the first one ran (masked coalitions and ablated component
sets are memoized as logits, shared by every target), so it mostly costs the gradient methods
and the head-ablation sweep again.

Every example gets its own seed, derived from the run seed and the example id
(:func:`example_seed`), never from its position in a batch or the worker that ran it, so a run
gives the same numbers on one worker or many, in-process or on Ray. An example that cannot be
explained (a sentence longer than the model's limit, a missing value) is recorded as a failure
with its reason; it never stops the run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from twopath.types import Example, TwopathError

DATASET_METHODS = ("shap", "integrated_gradients", "occlusion", "gradient_x_input")
METRICS = ("aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency")
#: the light settings of the dataset pipeline (a user's ``[settings]`` override them)
DATASET_SETTINGS: dict[str, dict[str, Any]] = {
    "shap": {"max_evals": 100, "exact_max_units": 8},
    "integrated_gradients": {"max_steps": 64},
}
#: random orders per example of the dataset path's controls (see the module docstring)
N_RANDOM = 1
K_INTERNAL = 10
#: the most points of the dataset path's input curves (a grid of k beyond)
CURVE_POINTS = 11
#: the dataset path's curve protocol, in words (report captions)
DATASET_PROTOCOL = (f"random-order control: {'one random order' if N_RANDOM == 1 else f'{N_RANDOM} random orders'} "
                    f"per example (its sd over the examples includes the spread between orders); input curves of more than {CURVE_POINTS - 1} units on a grid of "
                    f"{CURVE_POINTS} values of k")
#: the per-example tables (their names are the store's file names)
TABLES = ("examples", "attributions", "components", "faithfulness", "agreement")


def example_seed(seed: int, example_id: str) -> int:
    """The seed of one example: a hash of the run seed and the example's id (not its position)."""
    digest = hashlib.sha256(f"{int(seed)}\x00{example_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def input_hash(raw: Any) -> str:
    """A short content hash of an example's input (a changed row under the same id is redone)."""
    text = raw if isinstance(raw, str) else json.dumps({str(k): _plain(v) for k, v in dict(raw).items()}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return repr(float(value))
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return str(value)


def _methods_for(adapter: Any, methods: Sequence[str]) -> list[str]:
    from twopath.attribution import ATTRIBUTION_METHODS

    return [m for m in methods if adapter.modality in ATTRIBUTION_METHODS.get(m).modalities]


def _compute(adapter: Any, example: Example, methods: Sequence[str], seed: int,
             settings: Mapping[str, Mapping[str, Any]], label: str | None = None) -> dict[str, Any]:
    """Both paths on one example at ``label`` (default: its predicted label; raises on a bad example)."""
    from twopath.attribution import ATTRIBUTION_METHODS
    from twopath.comparisons import faithfulness
    from twopath.mechanistic import MECHANISTIC_METHODS
    from twopath.metrics import spearman
    from twopath.pipeline import predict

    pred_idx, probs = predict(adapter, example)
    index = pred_idx if label is None else adapter.label_index(label)
    target = adapter.labels[index]
    example = example.with_target(target)
    chosen = _methods_for(adapter, methods)
    if not chosen:
        raise TwopathError(f"none of the methods {list(methods)} supports {adapter.modality} models")
    attributions = [ATTRIBUTION_METHODS.create(m, seed=seed, **{**DATASET_SETTINGS.get(m, {}), **settings.get(m, {})})
                    .attribute(adapter, example, target=target) for m in chosen]
    kind = f"{adapter.default_component}_ablation"
    ablation = MECHANISTIC_METHODS.create(kind, **settings.get(kind, {})).localize(adapter, example, target=target)
    rows = faithfulness.input_faithfulness(adapter, example, attributions, n_random=N_RANDOM, seed=seed,
                                           max_points=CURVE_POINTS)
    rows += faithfulness.internal_faithfulness(adapter, example, [ablation], k_max=K_INTERNAL, n_random=N_RANDOM, seed=seed)
    unit_drop = next(r for r in rows if r["method"] == attributions[0].method)
    comp_drop = next(r for r in rows if r["method"] == kind)
    agreement = {f"{a.method} vs {b.method}": spearman(a.scores, b.scores) for a, b in combinations(attributions, 2)}
    return {"prediction": (target, float(probs[index])), "attributions": attributions, "ablation": ablation,
            "faithfulness": rows, "agreement": agreement,
            "top_unit_drop": unit_drop["deletion_curve"][0] - unit_drop["deletion_curve"][1],
            "top_component_drop": comp_drop["deletion_curve"][0] - comp_drop["deletion_curve"][1]}


def _finite(result: dict[str, Any]) -> str | None:
    """Why a result is not usable (a non-finite number somewhere), ``None`` when it is."""
    values = [result["top_unit_drop"], result["top_component_drop"], *result["agreement"].values()]
    values += [r[m] for r in result["faithfulness"] for m in METRICS]
    for a in result["attributions"]:
        if not np.isfinite(a.scores).all():
            return f"{a.method} gave a non-finite score"
    if not all(math.isfinite(float(v)) for v in values):
        return "a faithfulness or agreement value is not finite"
    return None


def evaluate_example(adapter: Any, example: Example, *, methods: Sequence[str] = DATASET_METHODS, seed: int = 0,
                     settings: Mapping[str, Mapping[str, Any]] | None = None, row: int | None = None,
                     gold: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """One example through the dataset pipeline, as flat rows of the five :data:`TABLES`.

    ``seed`` is the *run* seed: the example's own is :func:`example_seed` of it and its id. A
    failure (a :class:`~twopath.types.TwopathError` or any error of the example's computation)
    is one ``examples`` row with ``status="failed"`` and the reason; the other tables are empty.
    """
    own = example_seed(seed, example.id)
    head: dict[str, Any] = {"example_id": example.id, "row": -1 if row is None else int(row),
                            "input_hash": input_hash(example.raw), "seed": own, "gold": gold, "gold_status": None}
    result, problem = _attempt(adapter, example, methods, own, settings or {})
    if result is None or problem is not None:
        return {"examples": [{**head, **_failed(problem or "failed")}], "attributions": [], "components": [],
                "faithfulness": [], "agreement": []}
    tables = _rows(head, result)
    if gold is not None and str(gold).lower() != str(result["prediction"][0]).lower():
        at_gold, problem = _attempt(adapter, example, methods, own, settings or {}, label=gold)
        if at_gold is None or problem is not None:
            tables["examples"][0]["gold_status"] = f"failed: {(problem or 'failed').splitlines()[0][:300]}"
        else:
            tables["examples"][0]["gold_status"] = "ok"
            extra = _rows(head, at_gold, kind="gold")
            for name in TABLES[1:]:
                tables[name] += extra[name]
    return tables


def _attempt(adapter: Any, example: Example, methods: Sequence[str], seed: int,
             settings: Mapping[str, Mapping[str, Any]], label: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """(result, None), or (None or result, why it is not usable): :func:`_compute` with its
    failures caught and its numbers checked."""
    try:
        result = _compute(adapter, example, methods, seed, settings, label)
        return result, _finite(result)
    except TwopathError as err:
        return None, str(err)
    except (ValueError, RuntimeError, IndexError, KeyError) as err:  # recorded with the error's kind
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _failed(reason: str) -> dict[str, Any]:
    return {"status": "failed", "reason": reason.splitlines()[0][:300], "predicted": None, "probability": math.nan,
            "n_units": 0, "top_unit": None, "top_component": None, "top_unit_drop": math.nan,
            "top_component_drop": math.nan}


def _rows(head: dict[str, Any], result: dict[str, Any], kind: str = "predicted") -> dict[str, list[dict[str, Any]]]:
    """The five tables' rows of one result; ``kind`` (``predicted`` or ``gold``) is every
    per-unit row's ``target_kind``."""
    eid = head["example_id"]
    attributions, ablation = result["attributions"], result["ablation"]
    label, probability = result["prediction"]
    first = attributions[0]
    ranking = ablation.ranking()
    examples = [{**head, "status": "ok", "reason": None, "predicted": label, "probability": probability,
                 "n_units": len(first.units),
                 "top_unit": first.units[int(np.argsort(-first.scores, kind="stable")[0])],
                 "top_component": str(ablation.components[ranking[0]]),
                 "top_unit_drop": float(result["top_unit_drop"]), "top_component_drop": float(result["top_component_drop"])}]
    own = {"example_id": eid, "target_kind": kind, "target": label}
    units = [{**own, "method": a.method, "unit_index": i, "unit": u, "score": float(s),
              "rank": int(r)} for a in attributions
             for i, (u, s, r) in enumerate(zip(a.units, a.scores, _ranks(-a.scores), strict=True))]
    components = [{**own, "method": ablation.method, "component": str(c), "effect": float(e),
                   "rank": int(r)} for c, e, r in zip(ablation.components, ablation.effects,
                                                      _ranks(-ablation.importance), strict=True)]
    faith = [{**own, **{k: r[k] for k in ("path", "method", "n_units", "k20", *METRICS)},
              "deletion_curve": list(r["deletion_curve"]), "insertion_curve": list(r["insertion_curve"]),
              "curve_k": list(r.get("curve_k", range(len(r["deletion_curve"]))))}
             for r in result["faithfulness"]]
    agreement = [{**own, "pair": pair, "spearman": float(v)} for pair, v in result["agreement"].items()]
    return {"examples": examples, "attributions": units, "components": components, "faithfulness": faith,
            "agreement": agreement}


def _ranks(keys: np.ndarray) -> np.ndarray:
    """0-based rank of every entry when sorted by ``keys`` (stable)."""
    order = np.argsort(np.asarray(keys, dtype=float), kind="stable")
    ranks = np.empty(len(order), dtype=int)
    ranks[order] = np.arange(len(order))
    return ranks


def evaluate_all(adapter: Any, examples: Sequence[Example], *, methods: Sequence[str] = DATASET_METHODS,
                 seed: int = 0, settings: Mapping[str, Mapping[str, Any]] | None = None,
                 rows: Sequence[int] | None = None, golds: Sequence[str | None] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, pd.DataFrame]:
    """:func:`evaluate_example` over ``examples`` in this process, as the five tables."""
    parts: list[dict[str, list[dict[str, Any]]]] = []
    for i, example in enumerate(examples):
        parts.append(evaluate_example(adapter, example, methods=methods, seed=seed, settings=settings,
                                      row=rows[i] if rows is not None else i,
                                      gold=golds[i] if golds is not None else None))
        if progress is not None:
            progress(i + 1, len(examples))
    return combine(parts)


def combine(parts: Sequence[Mapping[str, list[dict[str, Any]]]]) -> dict[str, pd.DataFrame]:
    """Per-example row lists as one DataFrame per table (columns fixed even when empty)."""
    return {name: pd.DataFrame([r for p in parts for r in p[name]], columns=COLUMNS[name]) for name in TABLES}


#: every per-unit table's rows name the label they explain: ``target_kind`` is ``predicted`` (every
#: example) or ``gold`` (the second explanation of an example whose gold label was not predicted)
TARGET = ["target_kind", "target"]
COLUMNS: dict[str, list[str]] = {
    "examples": ["example_id", "row", "input_hash", "seed", "gold", "gold_status", "status", "reason", "predicted",
                 "probability", "n_units", "top_unit", "top_component", "top_unit_drop", "top_component_drop"],
    "attributions": ["example_id", *TARGET, "method", "unit_index", "unit", "score", "rank"],
    "components": ["example_id", *TARGET, "method", "component", "effect", "rank"],
    "faithfulness": ["example_id", *TARGET, "path", "method", "n_units", "k20", *METRICS, "deletion_curve",
                     "insertion_curve", "curve_k"],
    "agreement": ["example_id", *TARGET, "pair", "spearman"],
}


# --- aggregation: from the tables alone ------------------------------------------------------------


def summarize(tables: Mapping[str, pd.DataFrame], top: int = 10) -> dict[str, Any]:
    """The dataset summary from the per-example tables (no model needed).

    Keys ``n_examples``, ``faithfulness``, ``agreement`` and ``insight`` are the seed reports'
    dataset section; ``failures``, ``top_components``, ``top_units`` and (with gold labels)
    ``labels`` are added for ``twopath evaluate``.
    """
    everything = ordered(tables)
    tables = at_predicted(everything)
    examples = tables["examples"]
    ok = examples[examples["status"] == "ok"]
    keep = set(ok["example_id"])
    faith = tables["faithfulness"]
    faith = faith[faith["example_id"].isin(keep)]
    agreement = tables["agreement"]
    agreement = agreement[agreement["example_id"].isin(keep)]
    unit, comp = ok["top_unit_drop"].to_numpy(float), ok["top_component_drop"].to_numpy(float)
    failed = examples[examples["status"] != "ok"]
    out: dict[str, Any] = {
        "n_examples": len(ok),
        "n_failed": len(failed),
        "failures": [{"reason": r, "count": int(n)} for r, n in failed["reason"].value_counts().items()],
        "faithfulness": _faithfulness(faith),
        "agreement": [{"pair": pair, "spearman_mean": float(g["spearman"].mean()), "spearman_sd": float(g["spearman"].std())}
                      for pair, g in agreement.groupby("pair", sort=False)],
        "insight": _insight(unit, comp),
        "top_components": _most_often(ok["top_component"], top),
        "top_units": _top_units(tables["attributions"], keep, top),
    }
    if ok["gold"].notna().any():
        out["labels"] = {**_labels(ok), "at_gold": _at_gold(everything, ok)}
    return out


def at_predicted(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables' rows of the explanations at the predicted label (every example has one)."""
    return {name: frame if name == "examples" else frame[frame["target_kind"] == "predicted"].reset_index(drop=True)
            for name, frame in tables.items()}


def _faithfulness(faith: pd.DataFrame) -> list[dict[str, Any]]:
    """Mean and sd of every metric per (path, method)."""
    summary = faith.groupby(["path", "method"], sort=False)[list(METRICS)].agg(["mean", "std"])
    summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
    return list(summary.reset_index().to_dict(orient="records"))


def ordered(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables in one fixed order whatever order their shards were written in: examples by
    (row, id), every other table by its example's place, then its own order within the example."""
    examples = tables["examples"].sort_values(["row", "example_id"], kind="stable").reset_index(drop=True)
    place = {eid: i for i, eid in enumerate(examples["example_id"])}
    out = {"examples": examples}
    for name in TABLES[1:]:
        frame = tables[name]
        key = frame["example_id"].map(place).to_numpy()
        out[name] = frame.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    return out


def _insight(unit: np.ndarray, comp: np.ndarray) -> dict[str, float]:
    if len(unit) == 0:
        nan = float("nan")
        return {"top_unit_drop_mean": nan, "top_unit_drop_sd": nan, "top_component_drop_mean": nan,
                "top_component_drop_sd": nan, "share_component_larger": nan}
    return {"top_unit_drop_mean": float(unit.mean()), "top_unit_drop_sd": float(unit.std()),
            "top_component_drop_mean": float(comp.mean()), "top_component_drop_sd": float(comp.std()),
            "share_component_larger": float(np.mean(np.abs(comp) > np.abs(unit)))}


def _most_often(values: pd.Series, top: int) -> list[dict[str, Any]]:
    counts = values.dropna().astype(str).value_counts()
    counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    total = max(1, int(counts.sum()))
    return [{"name": k, "count": int(v), "share": float(v / total)} for k, v in counts.head(top).items()]


def _top_units(attributions: pd.DataFrame, keep: set[str], top: int) -> list[dict[str, Any]]:
    """Per method: the units (words lower-cased, features) most often ranked first."""
    frame = attributions[(attributions["rank"] == 0) & attributions["example_id"].isin(keep)]
    out = []
    for method, group in frame.groupby("method", sort=True):
        for row in _most_often(group["unit"].astype(str).str.lower(), top):
            out.append({"method": method, **row})
    return out


def _labels(ok: pd.DataFrame) -> dict[str, Any]:
    """Accuracy against the gold labels and the gold × predicted counts; every example is
    explained at its predicted label, so ``explained_at_gold`` counts those whose predicted label
    is the gold (the others get a second explanation at the gold: :func:`_at_gold`)."""
    labelled = ok[ok["gold"].notna()]
    correct = labelled["gold"].astype(str).str.lower() == labelled["predicted"].astype(str).str.lower()
    confusion = labelled.assign(gold=labelled["gold"].astype(str)).groupby(["gold", "predicted"]).size()
    return {"n_labelled": len(labelled), "accuracy": float(correct.mean()) if len(labelled) else float("nan"),
            "explained_at_gold": int(correct.sum()), "explained_at_other_label": int((~correct).sum()),
            "confusion": [{"gold": g, "predicted": p, "count": int(n)} for (g, p), n in confusion.items()]}


def dataset_summary(adapter: Any, examples: Sequence[Example], methods: Sequence[str] = DATASET_METHODS,
                    seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Aggregate faithfulness, agreement and the unit-vs-component comparison over ``examples``
    (the seed reports' dataset section: :func:`evaluate_all` then :func:`summarize`)."""
    return summarize(evaluate_all(adapter, examples, methods=methods, seed=seed, progress=progress))


def _at_gold(tables: Mapping[str, pd.DataFrame], ok: pd.DataFrame) -> dict[str, Any]:
    """The examples whose gold label is not the predicted one, explained at both labels:
    faithfulness at each (the same examples), and how much the two explanations share — per
    input method the share of examples with the same top unit and the mean Spearman ρ between
    the two score vectors; for the internal path the share with the same top component."""
    wrong = ok[ok["gold"].notna() & (ok["gold"].astype(str).str.lower() != ok["predicted"].astype(str).str.lower())]
    status = wrong["gold_status"].fillna("")
    done = set(wrong.loc[status == "ok", "example_id"])
    failed = wrong[status != "ok"]
    faith = tables["faithfulness"]
    faith = faith[faith["example_id"].isin(done)]
    units = tables["attributions"]
    units = units[units["example_id"].isin(done)]
    comps = tables["components"]
    comps = comps[comps["example_id"].isin(done) & (comps["rank"] == 0)]
    return {"n_other_label": len(wrong), "n_explained": len(done),
            "failures": [{"reason": r, "count": int(n)} for r, n in failed["gold_status"].value_counts().items()],
            "faithfulness": [{"target_kind": kind, **row} for kind in ("predicted", "gold")
                             for row in _faithfulness(faith[faith["target_kind"] == kind])],
            "overlap": _overlap(units) + _top_component_overlap(comps)}


def _overlap(units: pd.DataFrame) -> list[dict[str, Any]]:
    """Per input method: same top unit at the predicted and the gold label (share of examples),
    and the mean Spearman ρ between the two explanations' scores."""
    from twopath.metrics import spearman

    out = []
    for method, group in units.groupby("method", sort=False):
        same, rho = [], []
        for _, one in group.groupby("example_id", sort=False):
            pred = one[one["target_kind"] == "predicted"].sort_values("unit_index")
            gold = one[one["target_kind"] == "gold"].sort_values("unit_index")
            if len(pred) == 0 or len(pred) != len(gold):
                continue
            same.append(int(pred.loc[pred["rank"] == 0, "unit_index"].iloc[0]) ==
                        int(gold.loc[gold["rank"] == 0, "unit_index"].iloc[0]))
            rho.append(spearman(pred["score"].to_numpy(float), gold["score"].to_numpy(float)))
        if same:
            out.append({"path": "input", "method": str(method), "n": len(same), "same_top": float(np.mean(same)),
                        "spearman_mean": float(np.mean(rho)), "spearman_sd": float(np.std(rho, ddof=1)) if len(rho) > 1 else math.nan})
    return out


def _top_component_overlap(top: pd.DataFrame) -> list[dict[str, Any]]:
    """The internal path: same top-ranked component at the predicted and the gold label."""
    out = []
    for method, group in top.groupby("method", sort=False):
        pairs = group.pivot_table(index="example_id", columns="target_kind", values="component", aggfunc="first")
        pairs = pairs.dropna() if {"predicted", "gold"} <= set(pairs.columns) else pairs.iloc[0:0]
        if len(pairs):
            out.append({"path": "internal", "method": str(method), "n": len(pairs),
                        "same_top": float((pairs["predicted"] == pairs["gold"]).mean()),
                        "spearman_mean": math.nan, "spearman_sd": math.nan})
    return out
