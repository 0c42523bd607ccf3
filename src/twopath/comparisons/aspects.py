"""The seed's aspect table — input path vs internal path — with measured evidence.

The seed document compares the two paths on eight aspects in words. twopath keeps the words and
adds a column of evidence measured in this run wherever a measurement exists (and says so where
none does): the number of units versus components examined, the cost in model evaluations, the
probability change when the top component is ablated versus when the top unit is deleted, the
faithfulness AOPC of each path and the stability of the sampled explanations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

NO_MEASUREMENT = "no measurement: a conceptual difference"

ASPECTS: list[tuple[str, str, str]] = [
    ("level of explanation", "input → output behaviour (the dashboard)", "inside the model (the engine)"),
    ("focus", "which words or features pushed the prediction", "which heads, neurons, layers and positions implement it"),
    ("granularity", "one score per input unit", "one effect per internal component"),
    ("method", "perturb inputs and fit (SHAP, LIME) or integrate gradients (IG)", "intervene: ablate or patch activations"),
    ("type of insight", "correlational: what the output co-varies with", "causal: what breaks when a component is removed"),
    ("use case", "feature debugging, user-facing justification, data audits", "model editing, circuit discovery, safety audits"),
    ("interpretability goal", "local attribution: why this prediction", "mechanism: how the model computes it"),
    ("analogy", "a car's dashboard", "opening the engine"),
]


def _first(rows: Any, **match: Any) -> dict[str, Any] | None:
    for row in rows or []:
        if all(row.get(k) == v for k, v in match.items()):
            return dict(row)
    return None


def _sanity_evidence(rows: list[dict[str, Any]]) -> str:
    """One sentence from the sanity check's verdicts (passes / fails / inconclusive / not checked)."""
    by = {kind: [r["method"] for r in rows if (r["verdict"] if r["verdict"] in ("passes", "fails", "inconclusive")
                                                else "not checked") == kind]
          for kind in ("fails", "inconclusive", "not checked")}
    parts = []
    if by["fails"]:
        parts.append(f"{', '.join(by['fails'])} barely change when the weights are randomized (fail)")
    if by["inconclusive"]:
        parts.append(f"{', '.join(by['inconclusive'])} inconclusive")
    if by["not checked"]:
        parts.append(f"{', '.join(by['not checked'])} not checked (long input)")
    if not parts:
        return "every input method changes when the weights are randomized"
    if not by["fails"]:
        parts.insert(0, "every checked method changes when the weights are randomized")
    return "; ".join(parts)


def aspect_table(tables: Mapping[str, Any], n_units: int, n_components: int, top_unit: str, top_component: str) -> pd.DataFrame:
    """Rows of (aspect, input path, internal path, measured evidence) from one example's tables."""
    evidence = {name: NO_MEASUREMENT for name, _, _ in ASPECTS}
    evidence["focus"] = f"top unit here: {top_unit}; top component here: {top_component}"
    evidence["granularity"] = f"{n_units} input units vs {n_components} components examined"
    sanity = tables.get("sanity") or {}
    if sanity.get("rows"):
        evidence["level of explanation"] = "model-randomization check: " + _sanity_evidence(sanity["rows"])
    costs = tables.get("costs") or []
    by_path: dict[str, float] = {}
    for row in costs:
        if row.get("path") in ("input", "internal") and row.get("n_model_rows") is not None:
            by_path[row["path"]] = by_path.get(row["path"], 0) + float(row["n_model_rows"])
    if by_path:
        evidence["method"] = (f"model rows evaluated: input path {by_path.get('input', 0):.0f}, internal path "
                              f"{by_path.get('internal', 0):.0f} (per method and in F1 units: cost table)")
    deletion = tables.get("deletion")
    records = deletion.to_dict(orient="records") if isinstance(deletion, pd.DataFrame) else deletion
    word = _first(records, path="input", method="shap", k=1)
    comp = next((r for r in records or [] if r.get("path") == "internal" and r.get("k") == 1), None)
    if word and comp:
        if max(abs(comp["drop"]), abs(word["drop"])) < 0.005:
            larger = "neither changes the prediction noticeably"
        else:
            larger = ("the component" if abs(comp["drop"]) > abs(word["drop"]) else "the unit") + " matters more here"
        evidence["type of insight"] = (f"ablating the top component ({', '.join(comp['removed'])}) changes the target probability by "
                                       f"{-comp['drop']:+.3f}; deleting the top unit ({', '.join(word['removed'])}) by {-word['drop']:+.3f} "
                                       f"— {larger}")
    edit = tables.get("edit_test") or {}
    if edit.get("rows"):
        parts = [f"{r['source']}: {r['example_change']:+.3f} on the example, {r['related_change']:+.3f} on related inputs, "
                 f"{r['unrelated_change']:+.3f} on unrelated ones" for r in edit["rows"]]
        evidence["use case"] = "edit test (change in target probability after mean ablation) — " + "; ".join(parts)
    faith = tables.get("faithfulness") or []
    parts = [f"{r['path']} {r['method']} AOPC {r['aopc_deletion']:.3f}" for r in faith]
    stability = tables.get("stability")
    if parts or stability:
        text = "deletion AOPC: " + "; ".join(parts) if parts else ""
        if stability:
            over = (f"{stability['resamples']} bootstrap refits" if stability.get("mode") == "bootstrap"
                    else f"{len(stability['seeds'])} seeds")
            text += f"{'; ' if text else ''}LIME across {over}: max sd {stability['max_sd']:.3f}, top-3 Jaccard {stability['top_k_jaccard']:.2f}"
        evidence["interpretability goal"] = text
    return pd.DataFrame([{"aspect": name, "input path": inp, "internal path": internal, "measured evidence": evidence[name]}
                         for name, inp, internal in ASPECTS])
