"""Every table of a report as a pandas DataFrame, built once from an ExampleResult.

HTML, Markdown and CSV all render these same frames, so a number has one source. Each entry is
``name -> (title, what the table shows, frame)``; names are stable (they are the CSV file names).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from twopath.evaluation import DATASET_PROTOCOL
from twopath.types import ExampleResult

Table = tuple[str, str, pd.DataFrame]


def _frame(rows: Any) -> pd.DataFrame | None:
    if rows is None:
        return None
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    return None if frame.empty else frame


def _attribution_scores(result: ExampleResult) -> pd.DataFrame:
    rows = []
    for a in result.attributions:
        row: dict[str, Any] = {"method": a.method}
        counts = Counter(a.units)
        names = [f"{u} ({i})" if counts[u] > 1 else u for i, u in enumerate(a.units)]  # repeated words stay apart
        row.update({n: float(s) for n, s in zip(names, a.scores, strict=True)})
        row["base_value"] = a.base_value
        for key in ("algorithm", "completeness_delta", "fit_r2", "n_steps"):
            if key in a.meta:
                row[key] = a.meta[key]
        if "budget" in a.meta:
            row["budget"] = budget_text(a.meta["budget"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "n_steps" in frame:
        frame["n_steps"] = frame["n_steps"].astype("Int64")  # a count, shown without decimals
    return frame


def budget_text(budget: dict[str, Any]) -> str:
    """One cell: what a method spent, whether a rule capped it and the measured error."""
    error = budget.get("error")
    measured = f"; {budget['error_name']} {error:.3g}" if error is not None else ""
    if budget.get("capped"):
        return f"{budget['setting']} {budget['used']:,} (capped, full {budget['full']:,}{measured})"
    return f"{budget['setting']} {budget['used']:,}{measured}"


def _stability(result: ExampleResult) -> pd.DataFrame | None:
    info = result.tables.get("stability")
    if not info:
        return None
    frame = pd.DataFrame(info["units"])
    frame["top_k_jaccard"] = info["top_k_jaccard"]
    return frame


def _top_effects(result: ExampleResult, method: str, k: int = 10) -> pd.DataFrame | None:
    try:
        loc = result.localization(method)
    except KeyError:
        return None
    order = loc.ranking()[:k]
    rows = [{"component": str(loc.components[i]), "effect": float(loc.effects[i])} for i in order]
    probs = loc.meta.get("probability")
    if probs is not None:
        for row, i in zip(rows, order, strict=True):
            row["target_probability"] = float(probs[i])
    return pd.DataFrame(rows)


def _lens(result: ExampleResult) -> pd.DataFrame | None:
    try:
        loc = result.localization("logit_lens")
    except KeyError:
        return None
    rows = [{"read after": "embeddings", "output": loc.meta["embeddings"], "decision": ""}]
    rows += [{"read after": str(c), "output": float(v), "decision": d}
             for c, v, d in zip(loc.components, loc.effects, loc.meta["decisions"], strict=True)]
    frame = pd.DataFrame(rows)
    if "position" in loc.meta:  # which token the lens read (the reading position unless asked otherwise)
        where = f"{loc.meta['position']}: {loc.meta.get('token', '')}"
        frame["at token"] = where + ("" if loc.meta.get("reading_position", True) else " (not the reading position)")
    return frame


def _dla(result: ExampleResult) -> pd.DataFrame | None:
    """Top heads and MLPs by DLA; an encoder's (linearised head) says so on every row, with the
    measured linearisation error."""
    frame = _top_effects(result, "direct_logit_attribution")
    meta = result.localization("direct_logit_attribution").meta if frame is not None else {}
    if frame is not None and meta.get("approximate"):
        frame["exact"] = (f"no: head linearised at the clean run (removal error up to {meta['linearisation_error_max']:.3f}, "
                          f"{meta['linearisation_error_relative']:.0%} of the true effects)")
    return frame


def _direct_vs_total(result: ExampleResult) -> pd.DataFrame | None:
    """Top heads by total effect (activation patching) with their direct effect and a verdict."""
    from twopath.mechanistic.lens import verdicts

    try:
        direct, total = result.localization("direct_effect"), result.localization("activation_patching")
    except KeyError:
        return None
    rows = verdicts(direct, total)
    for column, method in (("DLA (logit diff)", "direct_logit_attribution"), ("ablation (logit diff drop)", "head_ablation")):
        try:
            other = result.localization(method)
        except KeyError:
            continue
        values = dict(zip(other.labels, other.effects.tolist(), strict=True))
        for row in rows:
            row[column] = values.get(row["component"], float("nan"))
    return pd.DataFrame(rows) if rows else None


def _circuit(result: ExampleResult) -> pd.DataFrame | None:
    circuit = result.tables.get("circuit")
    if not circuit:
        return None
    control = circuit["control"]
    return pd.DataFrame([
        {"set": f"circuit ({circuit['size']} components, {circuit['reference']}-ablated rest)",
         "components": ", ".join(circuit["components"]), "sufficiency": circuit["sufficiency"], "necessity": circuit["necessity"]},
        {"set": f"random sets of the same size (n={control['n']})", "components": "",
         "sufficiency": f"{control['sufficiency_mean']:.3f} ± {control['sufficiency_sd']:.3f}",
         "necessity": f"{control['necessity_mean']:.3f} ± {control['necessity_sd']:.3f}"},
    ])


def _circuit_search(result: ExampleResult) -> str:
    """The caption's note on a pruned search (the exact one needs none)."""
    search = (result.tables.get("circuit") or {}).get("search", "")
    return f" Search: {search}." if search.startswith("pruned") else ""


def _mechanisms(result: ExampleResult) -> dict[str, Table]:
    mech = result.tables.get("mechanisms") or {}
    out: dict[str, Table] = {}
    if "head_enrichment" in mech:
        out["head_enrichment"] = ("Heads: attention to sentiment words",
                                  f"Attention share from the reading token (an encoder's first token, a decoder's last) to positive / negative lexicon words, over "
                                  f"held-out sentences ({mech.get('enrichment_sentences')}), as a multiple of the uniform share.",
                                  pd.DataFrame(mech["head_enrichment"]))
    if "agreement_heads" in mech:
        out["agreement_heads"] = ("Heads: subject-verb agreement",
                                  f"Per head over {mech.get('agreement_sentences')} held-out sentences with an opposite-number "
                                  "attractor: attention from the verb position to the subject noun and to the attractor "
                                  "(share, and multiple of the uniform share), mean drop of the correct verb's logit difference "
                                  "when mean-ablated, and share of the clean-vs-flipped gap moved by patching the head alone "
                                  "from the number-flipped sentence.", pd.DataFrame(mech["agreement_heads"]))
    if "late_clusters" in mech:
        out["late_clusters"] = ("Last-layer neuron clusters and the seed's phrases",
                                "Cluster activation change caused by each phrase (activation with it minus without it) and the "
                                "drop in the positive logit difference when the cluster is mean-ablated.",
                                pd.DataFrame(mech["late_clusters"]))
    if "layer_encoding" in mech:
        frame = pd.DataFrame(mech["layer_encoding"])
        out["layer_encoding"] = ("Neuron clusters: what each layer encodes",
                                 "Best cluster R² per hidden layer for each feature (income + employment jointly = 'financial stability').",
                                 frame.pivot(index="layer", columns="feature", values="r2").rename_axis(columns=None).reset_index())
    if "pathway_per_layer" in mech:
        frame = pd.DataFrame(mech["pathway_per_layer"])
        frame["neurons"] = frame["neurons"].map(", ".join)
        out["pathway"] = ("Credit-score pathway ablation (720 vs 600)",
                          "Approval-probability gap between credit score 720 and 600 for the seed applicant, before and after "
                          "mean-ablating each layer's 8 neurons most correlated with credit score, against random neurons.",
                          frame)
    return out


def example_tables(result: ExampleResult) -> dict[str, Table]:
    """All tables of one example, in report order; empty tables are left out."""
    stab = result.tables.get("stability") or {}
    candidates: list[tuple[str, str, str, Any]] = [
        ("side_by_side", "Side by side", "One row per method of both paths, filled from this run.", result.tables.get("side_by_side")),
        ("claims", "The seed's claims, measured", "Each claim of the seed document with our measurement, the rule and the verdict.",
         result.tables.get("claims")),
        ("attributions", "Input path: scores", "Signed score per unit in the run's output space.", _attribution_scores(result)),
        ("stability", "Input path: LIME stability across seeds",
         (f"Per unit mean ± sd over {stab.get('resamples')} bootstrap refits of LIME's one neighbourhood "
          f"({stab.get('num_samples')} samples); top-{stab.get('k', 3)} Jaccard across refit pairs."
          if stab.get("mode") == "bootstrap" else
          f"Per unit mean ± sd over {len(stab.get('seeds', []))} seeds; top-{stab.get('k', 3)} Jaccard across seed pairs."),
         _stability(result)),
        ("head_ablation", "Internal path: top heads by ablation", "Drop in the target's output when the head is ablated.",
         _top_effects(result, "head_ablation")),
        ("neuron_ablation", "Internal path: top neurons by ablation", "Drop in the target's output when the neuron is ablated.",
         _top_effects(result, "neuron_ablation")),
        ("block_ablation", "Internal path: blocks", "Drop when a layer's whole attention or MLP block (or hidden layer) is ablated.",
         _top_effects(result, "block_ablation", k=20)),
        ("logit_lens", "Internal path: logit lens",
         "The explained output read from the residual stream after each layer through the model's own final norm and head.",
         _lens(result)),
        ("direct_logit_attribution", "Internal path: direct logit attribution",
         "Each head's and MLP's direct share of the logit difference (final norm's scale frozen at the clean run); "
         "the shares, the embeddings and the norm/head constant add up to the logit difference.",
         _dla(result)),
        ("direct_vs_total", "Internal path: direct versus total effect",
         "Top heads by total effect (activation patching from the contrast) with their direct effect (the same patch "
         "with every later component frozen): 'acts directly' when direct >= half the total.",
         _direct_vs_total(result)),
        ("patching_layers", "Internal path: patching per hidden layer",
         "Patching from the contrast input: the whole layer, and the fewest neurons (strongest first) that flip the decision.",
         _patching_layers(result)),
        ("internal_agreement", "Internal path: do the interventions agree?",
         "Correlation between ablation (drop in output), exact patching and attribution patching (share of the "
         "clean-vs-corrupted gap carried) on the components both measured.",
         result.tables.get("internal_agreement")),
        ("circuit", "Internal path: circuit", "Greedy circuit: share of the clean output kept (sufficiency) and removed (necessity)."
         + _circuit_search(result), _circuit(result)),
        ("agreement", "Comparison: agreement between input methods", "Rank correlation, top-3 overlap and sign agreement, per pair.",
         _pairs(result.tables.get("agreement"))),
        ("deletion", "Comparison: deletion check", "Remove the top-k units (input path) or ablate the top-k components (internal path).",
         result.tables.get("deletion")),
        ("faithfulness", "Comparison: faithfulness (deletion / insertion)",
         "AOPC of the deletion and insertion curves, comprehensiveness and sufficiency at the top 20 % (DeYoung et al.), "
         "each against a random-order control. Words are masked, features set to background values, components mean-ablated.",
         _faithfulness(result)),
        ("bridges", "Comparison: bridges between the paths",
         "Do the input path's top units flow through the internal path's top components? Share of the top components' "
         "input attribution that falls on the top units, against random components.", _bridges(result)),
        ("sanity", "Comparison: model-randomization sanity check",
         "Adebayo et al.: the weights are re-drawn from the top layer down; an explanation that stays rank-correlated "
         "(|Spearman| >= threshold) with the original after full randomization does not depend on what the model learned.",
         _rows(result.tables.get("sanity"))),
        ("edit_test", "Comparison: edit test",
         "Mean-ablate the internal path's top components, and separately the components the input path's top units flow "
         "through; change in target probability on the example, related inputs (paraphrases / nearby applicants) and "
         "unrelated held-out inputs. Specificity = |related change| / |unrelated change|.", _edit(result)),
        ("aspects", "Aspect table with measured evidence", "The seed's eight aspects, with what this run measured.",
         result.tables.get("aspects")),
        ("costs", "Cost", "Model evaluations and cost in F1 (one batch-size-1 forward pass measured in this run). "
         "The overhead row is what the methods' steps took beyond the methods' own seconds (imports, warm-up, checks).",
         _costs(result)),
        ("timings", "Where the time went", "Wall time of every step of this run, in order; the steps tile the run. "
         "Wall-clock figures vary between runs and are kept out of report.json.", _timings(result)),
    ]
    tables: dict[str, Table] = {}
    for name, title, about, rows in candidates:
        frame = _frame(rows)
        if frame is not None:
            tables[name] = (title, about, frame)
        if name == "circuit":
            tables.update(_mechanisms(result))
    return tables


def _costs(result: ExampleResult) -> pd.DataFrame | None:
    rows = result.tables.get("costs")
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    for column in ("n_evals", "n_model_rows"):  # counts stay integers; the overhead row has none
        if column in frame:
            frame[column] = [("" if v is None or v != v else int(v)) for v in frame[column]]
    return frame


def _timings(result: ExampleResult) -> pd.DataFrame | None:
    rows = result.tables.get("timings")
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    total = float(frame["seconds"].sum())
    frame["share"] = frame["seconds"] / total if total > 0 else 0.0
    return frame


def _faithfulness(result: ExampleResult) -> pd.DataFrame | None:
    rows = result.tables.get("faithfulness")
    if not rows:
        return None
    return pd.DataFrame(rows).drop(columns=["deletion_curve", "insertion_curve", "curve_k"], errors="ignore")


def _bridges(result: ExampleResult) -> pd.DataFrame | None:
    bridge = result.tables.get("bridges")
    if not bridge:
        return None
    return pd.DataFrame([{
        "top units (input path)": ", ".join(bridge["top_units"]),
        "top components (internal path)": ", ".join(bridge["top_components"]),
        "share on top units": bridge["share_on_top_units"],
        "random components": ("n/a (no other live components)" if bridge["control_mean"] is None
                              else f"{bridge['control_mean']:.3f} ± {bridge['control_sd']:.3f}"),
        "uniform share": bridge["chance_share"],
        "components ranked by flow from the top units": ", ".join(bridge["components_by_top_unit_flow"]),
    }])


def _rows(info: Any) -> pd.DataFrame | None:
    return None if not info or not info.get("rows") else pd.DataFrame(info["rows"])


def _edit(result: ExampleResult) -> pd.DataFrame | None:
    frame = _rows(result.tables.get("edit_test"))
    if frame is None:
        return None
    frame = frame.copy()
    frame["components"] = frame["components"].map(lambda c: ", ".join(map(str, c)) if isinstance(c, (list, tuple)) else c)
    return frame


def _pairs(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Each unordered pair of methods once (the matrix figure shows the full square)."""
    if frame is None or frame.empty:
        return None
    order = {m: i for i, m in enumerate(dict.fromkeys(frame["method_a"]))}
    keep = [order[a] < order[b] for a, b in zip(frame["method_a"], frame["method_b"], strict=True)]
    return frame[keep].reset_index(drop=True)


def _patching_layers(result: ExampleResult) -> pd.DataFrame | None:
    try:
        layers = result.localization("activation_patching").meta.get("layers")
    except KeyError:
        return None
    if not layers:
        return None
    frame = pd.DataFrame(layers)
    frame["top_neurons"] = frame["top_neurons"].map(", ".join)
    return frame


def dataset_tables(dataset: dict[str, Any] | None) -> dict[str, Table]:
    """The report-level tables of the dataset section (mean ± sd over held-out examples)."""
    if not dataset:
        return {}
    n = dataset["n_examples"]
    faith = pd.DataFrame(dataset["faithfulness"])
    for metric in ("aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency"):
        faith[metric] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(faith[f"{metric}_mean"], faith[f"{metric}_std"], strict=True)]
    faith = faith[["path", "method", "aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency"]]
    insight = dataset["insight"]
    return {
        "dataset_faithfulness": ("Over the dataset: faithfulness",
                                 f"Mean ± sd over {n} held-out examples, each explained at its predicted label; "
                                 f"{DATASET_PROTOCOL}.", faith),
        "dataset_agreement": ("Over the dataset: agreement between input methods", f"Spearman ρ over {n} examples.",
                              pd.DataFrame(dataset["agreement"])),
        "dataset_insight": ("Over the dataset: top component vs top unit",
                            "Drop in target probability when the top component is mean-ablated vs when the top unit is "
                            "deleted, and how often the component's effect is the larger one.",
                            pd.DataFrame([{
                                "top unit deleted": f"{insight['top_unit_drop_mean']:.3f} ± {insight['top_unit_drop_sd']:.3f}",
                                "top component ablated": f"{insight['top_component_drop_mean']:.3f} ± {insight['top_component_drop_sd']:.3f}",
                                "share of examples where the component matters more": insight["share_component_larger"],
                            }])),
    }


#: the edit table's columns, in order (robustness probes go before the relearning columns)
_EDIT_COLUMNS = ("localization", "n_runs", "budget_matched", "n_parameters", "steps", "forget_gap", "forget_gap_sd",
                 "flip_share", "heldout_accuracy", "heldout_accuracy_sd", "heldout_auc", "agreement")
_EDIT_TAIL = ("relearn_set_gap", "relearned_gap", "relearned_gap_sd", "localize_seconds", "edit_seconds", "seconds")


def _edit_about(edit: dict[str, Any]) -> str:
    meta = edit.get("meta", {})
    if "word" in meta:
        what = (f"a sentence with the word {meta['word']!r} and without it should get the same decision"
                + (f" (the word: {edit['word_from']})" if edit.get("word_from") else ""))
    else:
        what = f"{meta.get('feature')} = {' and '.join(map(str, meta.get('values', [])))} should get the same decision"
    parts = [f"Edit: {what}. Every localization fine-tunes exactly {edit['budget']:,} parameters "
             f"({edit['kind']}s, outside the mask bit-identical); all_parameters is the non-localized control, its "
             "budget not matched. Random components: mean and sd over seeds. Gaps are the mean within-group spread of "
             "the target probability (0 = forgotten); gap after relearning on the relearning set's other half."]
    if "inflections" in meta:
        forms = meta["inflections"]
        parts.append(f"Inflections found in the data: {', '.join(forms) if forms else 'none'}; "
                     f"{meta.get('n_inflection_sentences', 0)} held-out sentences with one"
                     + ("" if meta.get("n_inflection_sentences") else " (the probe is absent, not zero)") + ".")
    timings = edit.get("timings") or {}
    if timings:
        parts.append(f"The section took {timings['wall_seconds']:.1f} s wall, {timings['cpu_seconds']:.1f} s CPU.")
    return " ".join(parts)


def _verdict_rows(verdicts: dict[str, Any]) -> pd.DataFrame:
    rows = [{"verdict": "criterion", "result": verdicts["criterion"]},
            {"verdict": "forgot", "result": ", ".join(verdicts.get("forgot", [])) or "none"},
            {"verdict": "most robust", "result": "none forgot" if verdicts.get("most_robust") is None else
             f"{verdicts['most_robust']} {verdicts.get('most_robust_metrics', {})}"}]
    if "keeps_accuracy" in verdicts:
        rows.append({"verdict": "keeps held-out accuracy (within 0.05)", "result": str(verdicts["keeps_accuracy"])})
    finding = verdicts.get("paper_finding")
    if finding:
        rows.append({"verdict": "paper's finding: " + finding["claim"],
                     "result": f"{finding['verdict']} (attribution patching {finding['attribution_patching']}, "
                               f"probe {finding['probe']}, margin {finding['margin']}: one sd over random seeds)"})
    return pd.DataFrame(rows)


def edit_tables(edit: dict[str, Any] | None) -> dict[str, Table]:
    """The report-level tables of the edit section: one row per localization, and the verdicts."""
    if not edit or not edit.get("summary"):
        return {}
    frame = pd.DataFrame(edit["summary"])
    robust = [c for c in frame.columns if c.startswith("robust_gap")]
    for column in robust:  # an empty probe (no such inputs in the data) is absent, not zero
        frame[column] = frame[column].map(lambda v: "absent" if v is None or pd.isna(v) else v)
    keep = [c for c in _EDIT_COLUMNS if c in frame] + robust + [c for c in _EDIT_TAIL if c in frame]
    frame = frame[keep].copy()
    for column in ("n_parameters", "steps"):  # counts (the random seeds' mean steps rounded)
        if column in frame:
            frame[column] = frame[column].round().astype(int)
    single = frame["n_runs"] <= 1
    for column in [c for c in frame.columns if c.endswith("_sd")]:  # one run has no spread: blank
        frame[column] = ["" if one else v for one, v in zip(single, frame[column].astype(float), strict=True)]
    frame = frame.dropna(axis=1, how="all")
    return {
        "edit": ("Editing: localized fine-tuning, every localization at one budget", _edit_about(edit), frame),
        "edit_verdicts": ("Editing: verdicts", "Measured in this run, whichever way they come out.",
                          _verdict_rows(edit["verdicts"])),
    }
