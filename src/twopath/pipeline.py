"""Run both paths on one example, with the same model, target and output space, and compare.

:func:`explain` is the one entry point the CLI, the tasks and the notebooks share:

1. resolve the target (default: the predicted label) and the prediction;
2. input path: every requested attribution method;
3. a corrupted counterpart (given, or produced from the input path's top unit) for patching;
4. internal path: every requested intervention method;
5. comparisons: side-by-side summary, rank agreement, deletion check, LIME stability over
   seeds, and the cost of every method in F1 units (one batch-size-1 forward pass, measured in
   the same run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from twopath.attribution import ATTRIBUTION_METHODS
from twopath.attribution.stability import stability
from twopath.comparisons import (
    agreement,
    aspects,
    bridges,
    deletion,
    edit_test,
    faithfulness,
    sanity,
    summary,
)
from twopath.mechanistic import MECHANISTIC_METHODS
from twopath.mechanistic.circuits import find_circuit
from twopath.mechanistic.patching import shape_problem
from twopath.metrics import spearman
from twopath.runtime.adapter import OutputSpace
from twopath.runtime.cost import StepClock, forward_seconds
from twopath.runtime.threads import adapter_sized
from twopath.runtime.trace import Trace
from twopath.types import Attribution, Example, ExampleResult, Localization, TwopathError

Say = Callable[[str], None]
DEFAULT_ATTRIBUTION = ("shap", "lime", "integrated_gradients", "occlusion", "gradient_x_input", "attention")
DEFAULT_MECHANISTIC = {
    "text": ("head_ablation", "block_ablation", "position_ablation", "neuron_ablation",
             "activation_patching", "attribution_patching"),
    "tabular": ("neuron_ablation", "block_ablation", "activation_patching", "attribution_patching"),
}
#: Method settings applied unless the caller overrides them.
DEFAULT_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "text": {"activation_patching": {"sites": ("resid", "head")},
             "attribution_patching": {"sites": ("head", "resid", "neuron")},
             "neuron_ablation": {"layers": (-1,)}},
    "tabular": {},
}
Counterfactual = Callable[[Example, Attribution], "Example | None"]


def _quiet(_: str) -> None:
    return None


def predict(adapter: Any, example: Example) -> tuple[int, np.ndarray]:
    """The predicted label index and the class probabilities, from the example's clean run."""
    probs = torch.softmax(Trace.of(adapter, example).logits, -1)[0].cpu().numpy()
    return int(probs.argmax()), probs


@adapter_sized
def explain(adapter: Any, example: Example, *, corrupted: Example | Counterfactual | None = None,
            attribution_methods: Sequence[str] | None = None,
            mechanistic_methods: Sequence[str] | None = None, seed: int = 0,
            output: OutputSpace = "logit_diff", settings: dict[str, dict[str, Any]] | None = None,
            stability_seeds: Sequence[int] = (0, 1, 2, 3, 4), with_circuit: bool = True, with_bridges: bool = True,
            with_checks: bool = True,
            say: Say = _quiet) -> ExampleResult:
    """Explain ``example`` both ways; ``corrupted`` is a contrast input or a function making one.

    A small tabular model's work runs on one CPU thread (:mod:`twopath.runtime.threads`: faster,
    and independent of the machine's core count)."""
    torch.manual_seed(seed)
    from twopath.validation import check_settings

    clock = StepClock(say)
    clock("prediction and target")

    # the schema the CLI checks against: API callers get the same one-line errors, before any work
    settings = {**DEFAULT_SETTINGS[adapter.modality], **check_settings(settings, adapter.modality)}
    pred_idx, probs = predict(adapter, example)
    target = example.target or adapter.labels[pred_idx]
    target_idx = adapter.label_index(target)
    target = adapter.labels[target_idx]
    example = example.with_target(target)
    notes: list[str] = []
    if isinstance(corrupted, Example):  # a given contrast is checked before any work: it fails fast
        problem = contrast_problem(adapter, example, corrupted, target_idx, output)
        if problem:
            raise TwopathError(f"the contrast input {problem}")

    attributions: list[Attribution] = []
    if attribution_methods is None:  # the defaults that apply to this kind of model
        attribution_methods = [m for m in DEFAULT_ATTRIBUTION if adapter.modality in ATTRIBUTION_METHODS.get(m).modalities]
    lime_run = None
    for name in attribution_methods:
        clock(f"input path: {name}")
        method = ATTRIBUTION_METHODS.create(name, output=output, seed=seed, **settings.get(name, {}))
        attributions.append(method.attribute(adapter, example, target=target))
        if name == "lime":
            lime_run = (method, attributions[-1])

    contrast = corrupted
    if callable(contrast):  # an automatic contrast that does not work skips patching, with a note
        try:
            contrast = contrast(example, attributions[0]) if attributions else None
        except TwopathError as err:
            notes.append(f"the automatic contrast could not be built ({err}); activation patching skipped")
            contrast = None
        else:
            if contrast is None:
                notes.append("no same-length counterfactual could be built; activation patching skipped")
            else:
                problem = contrast_problem(adapter, example, contrast, target_idx, output)
                if problem:
                    notes.append(f"the automatic contrast {_shown(contrast.raw)} {problem}; activation patching skipped")
                    contrast = None
    localizations: list[Localization] = []
    for name in mechanistic_methods or DEFAULT_MECHANISTIC[adapter.modality]:
        if getattr(MECHANISTIC_METHODS.get(name).cls, "needs_contrast", False) and contrast is None:
            continue
        clock(f"internal path: {name}")
        method_settings = dict(settings.get(name, {}))
        if "layers" in method_settings:  # negative layer numbers count from the last layer
            method_settings["layers"] = tuple(x % adapter.n_layers for x in method_settings["layers"])
        method = MECHANISTIC_METHODS.create(name, output=output, **method_settings)
        localizations.append(method.localize(adapter, example, target=target, corrupted=contrast))  # type: ignore[arg-type]

    stability_report = None
    if "lime" in attribution_methods and stability_seeds:
        clock(f"input path: LIME stability over {len(stability_seeds)} seeds")
        # the run's own seed first: the bootstrap refits the main LIME run's samples (no new rows)
        seeds = tuple(dict.fromkeys((seed, *stability_seeds)))
        stability_report = stability(adapter, example, target, "lime", seeds=seeds, fitted=lime_run,
                                     output=output, **settings.get("lime", {}))

    circuit = None
    if with_circuit:
        clock("internal path: greedy circuit search")
        circuit = find_circuit(adapter, example, target_idx, corrupted=contrast if isinstance(contrast, Example) else None, seed=seed)

    clock("comparing the two paths")
    what = {e.name: e.cls.what_it_tells_you for e in [*ATTRIBUTION_METHODS, *MECHANISTIC_METHODS]}
    ablations = [loc for loc in localizations if loc.method in ("head_ablation", "neuron_ablation")]
    ranked = component_rankings(adapter, localizations)
    faithfulness_rows: list[dict[str, Any]] = []
    bridge = None
    if attributions:
        clock("faithfulness: deletion and insertion curves")
        faithfulness_rows = faithfulness.input_faithfulness(adapter, example, attributions, seed=seed)
        if ranked:
            faithfulness_rows += faithfulness.internal_faithfulness(adapter, example, ranked, seed=seed)
        if ablations and with_bridges:
            clock("bridges: which input units drive the top components")
            main = next((a for a in attributions if a.method == "shap"), attributions[0])
            top = ablations[0]
            bridge = bridges.bridge_score(adapter, example, main, [top.components[i] for i in top.ranking()],
                                          top.components, seed=seed)
    tables = {
        "side_by_side": summary.side_by_side(attributions, localizations, what),
        "agreement": agreement.agreement_table(attributions) if len(attributions) > 1 else None,
        "deletion": deletion.deletion_table(adapter, example, attributions, ablations),
        "internal_agreement": agreement.internal_agreement(localizations),
        "stability": stability_report,
        "circuit": circuit,
        "faithfulness": faithfulness_rows,
        "bridges": bridge,
        "costs": None,  # filled in at the end, with the wall time of every step
    }
    if attributions and ablations and with_checks:
        clock("sanity check: cascading weight randomization")
        tables["sanity"] = randomization_sanity(adapter, example, target, attribution_methods, seed, attributions)
        clock("edit test: ablate what each path points to")
        tables["edit_test"] = run_edit_test(adapter, example, target, attributions, ablations[0], seed)
    clock("cost: one forward pass (F1)")
    f1 = forward_seconds(adapter, example)
    tables["timings"] = clock.stop()
    tables["costs"] = cost_table(attributions, localizations, f1, tables["timings"])
    if attributions and ablations:
        top_loc = ablations[0]
        tables["aspects"] = aspects.aspect_table(
            tables, len(attributions[0].units), len(top_loc.components), attributions[0].top(1)[0][0], top_loc.top(1)[0][0])
    prediction = {"label": adapter.labels[pred_idx], "probability": float(probs[pred_idx]),
                  "target_probability": float(probs[target_idx])}
    return ExampleResult(example, target, prediction, attributions, localizations,
                         contrast if isinstance(contrast, Example) else None, tables, notes)


def contrast_problem(adapter: Any, example: Example, contrast: Example, target: int,
                     output: OutputSpace = "logit_diff") -> str | None:
    """Why ``contrast`` cannot be patched from/into ``example`` (``None`` when it can): inputs of
    different shapes (for text, a different number of tokens), or the same explained output."""
    try:
        clean_in, other_in = adapter.forward_inputs(example), adapter.forward_inputs(contrast)
    except TwopathError as err:
        return f"is not a valid input ({err})"
    problem = shape_problem(adapter, clean_in, other_in)
    if problem:
        return problem
    clean = adapter.output(Trace.of(adapter, example).logits, target, output)
    other = adapter.output(Trace.of(adapter, contrast).logits, target, output)
    if not bool(torch.isfinite(other).all()):
        return "gives a non-finite output"
    if abs(float(clean[0]) - float(other[0])) < 1e-6:
        return "gives the same output as the input, so there is nothing to patch"
    return None


def _shown(raw: Any, limit: int = 80) -> str:
    text = repr(raw if isinstance(raw, str) else dict(raw))
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The sanity check re-runs every input method on each randomized model (2 x (layers + 1) on
#: short inputs), so it uses lighter settings. SHAP stays exact up to 8 units (the seed sentence,
#: the loan applicant) and uses the Partition tree with 300 evaluations beyond.
SANITY_SETTINGS = {"lime": {"num_samples": 1000}, "integrated_gradients": {"max_steps": 128},
                   "shap": {"max_evals": 300, "exact_max_units": 8}}
#: Up to this many units the check is the full protocol: every cascade step, two repeats.
SANITY_SHORT_UNITS = 8
#: Longer inputs: one cascade (a Spearman over more units is less coarse), explained at about
#: four steps (the top block, the next, the middle, all), with these lighter settings ...
SANITY_LONG_SETTINGS = {"lime": {"num_samples": 300}, "integrated_gradients": {"max_steps": 32},
                        "shap": {"max_evals": 300, "exact_max_units": 8}}
SANITY_LONG_STEPS = 4
#: ... and beyond this many units the sampling methods (LIME, SHAP) are left out of the check:
#: 8 words of text (the seed sentence), 24 table features. Each randomized model costs them
#: hundreds of model rows of the input (on a 12-word review their check was two thirds of the
#: check's time, on a 48-word one most of the explanation's), and their verdict is the least
#: informative one: they query the model by construction, so they pass whenever the randomized
#: model's outputs change. The table says so. A table's rows cost next to nothing.
SANITY_SAMPLING_MAX_UNITS = {"text": 8, "tabular": 24}
SAMPLING_METHODS = ("lime", "shap")
#: Occlusion costs one row of the input per unit and randomized model, and like the sampling
#: methods it queries the model by construction (it passed on every input measured: |Spearman|
#: 0.38, 0.18 and 0.16 after full randomization at 12, 48 and 190 words); beyond this many words
#: (a passage, where its check was about two thirds of the check's time) it is not checked either.
SANITY_OCCLUSION_MAX_WORDS = 128
#: On longer text IG takes 16 fixed steps in the check (a table's IG costs nothing and keeps 32):
#: the check ranks absolute scores, and 16 steps rank them as 32 do (Spearman of the absolute
#: scores against the run's own IG 0.999 on a 48-word review, 1.0 on a 12-word one; after full
#: randomization 0.112 vs 0.111 and 0.476 vs 0.420, the same verdicts) at half the gradient rows.
SANITY_LONG_TEXT_IG = {"n_steps": 16, "max_steps": 16}


def sanity_plan(n_units: int, n_blocks: int, methods: Sequence[str], positional: bool = True) -> dict[str, Any]:
    """How the sanity check runs on an input of ``n_units`` units (see the constants above)."""
    if n_units <= SANITY_SHORT_UNITS:
        return {"settings": SANITY_SETTINGS, "repeats": 2, "steps": None, "methods": list(methods), "skipped": {}}
    sampling = SANITY_SAMPLING_MAX_UNITS["text" if positional else "tabular"]
    rules = {m: (sampling, "a sampling method's check would cost hundreds of model rows per randomized model")
             for m in SAMPLING_METHODS}
    if positional:
        rules["occlusion"] = (SANITY_OCCLUSION_MAX_WORDS, "occlusion's check would cost a model row per unit and "
                              "randomized model, and it queries the model by construction")
    skipped = {m: f"not checked: {n_units} units > {rules[m][0]} ({rules[m][1]})"
               for m in methods if m in rules and n_units > rules[m][0]}
    from twopath.comparisons.sanity import coarse_steps

    settings = {**SANITY_LONG_SETTINGS, "integrated_gradients": SANITY_LONG_TEXT_IG} if positional else SANITY_LONG_SETTINGS
    return {"settings": settings, "repeats": 1, "steps": coarse_steps(n_blocks, SANITY_LONG_STEPS),
            "methods": [m for m in methods if m not in skipped], "skipped": skipped}


def randomization_sanity(adapter: Any, example: Example, target: str, methods: Sequence[str], seed: int,
                         attributions: Sequence[Attribution] = ()) -> dict[str, Any]:
    """Adebayo et al.'s cascading randomization for every input method (lighter settings; a
    bounded protocol on long inputs, :func:`sanity_plan`).

    With the run's own ``attributions``, each row also says how well the check's light
    explanation of the original model agrees with the run's full one (``budget_spearman_abs``):
    a light budget whose own noise already decorrelates it cannot show that randomization does,
    so such a method's verdict is ``inconclusive``."""
    plan = sanity_plan(len(adapter.units(example)), len(sanity.layer_blocks(adapter)), methods, adapter.positional)
    light: dict[str, np.ndarray] = {}

    def explain_all(model_adapter: Any) -> dict[str, np.ndarray]:
        scores = {m: ATTRIBUTION_METHODS.create(m, seed=seed, **plan["settings"].get(m, {}))
                  .attribute(model_adapter, example, target=target).scores for m in plan["methods"]}
        if not light:  # the first call explains the original model
            light.update(scores)
        return scores

    out: dict[str, Any] = {"rows": [], "threshold": None, "repeats": plan["repeats"], "curve": []}
    if plan["methods"]:
        frame = sanity.randomization_check(adapter, explain_all, seed=seed, repeats=plan["repeats"], at_steps=plan["steps"])
        full = {a.method: a.scores for a in attributions}
        last = frame[frame["step"] == frame["step"].max()].groupby("method", sort=False)
        for m, g in last:
            row = {"method": m, "spearman_abs_after_full_randomization": float(g["spearman_abs"].mean()),
                   "verdict": str(g["verdict"].iloc[0])}
            if m in full:
                agree = spearman(np.abs(light[m]), np.abs(full[m]))
                row["budget_spearman_abs"] = agree
                if not agree >= frame.attrs["threshold"]:
                    row["verdict"] = "inconclusive"
            out["rows"].append(row)
        out["threshold"] = frame.attrs.get("threshold")
        out["curve"] = frame.groupby(["method", "step"], sort=False)["spearman_abs"].mean().reset_index().to_dict(orient="records")
    out["rows"] += [{"method": m, "spearman_abs_after_full_randomization": None, "verdict": reason}
                    for m, reason in plan["skipped"].items()]
    if plan["steps"] is not None:
        out["protocol"] = (f"{len(adapter.units(example))} units: one cascade explained at steps {plan['steps']}, "
                           f"lighter settings {plan['settings']}")
    return out


def _without_top_units(adapter: Any, example: Example, attribution: Attribution, k: int = 3) -> Example:
    """The example with the input path's top-k units removed, keeping the input's shape."""
    top = np.argsort(-attribution.scores, kind="stable")[:k].tolist()
    removed = adapter.without_units(example, top)
    return Example(f"{example.id}-top-units-removed", removed.raw, example.target)


def run_edit_test(adapter: Any, example: Example, target: str, attributions: Sequence[Attribution],
                  ablation: Localization, seed: int, k: int = 5) -> dict[str, Any]:
    """Ablate the internal path's top-k components, and separately the k components the input
    path's top units flow through most (attribution patching against the input with those units
    removed); compare the effect on the example, related inputs and unrelated inputs."""
    main = next((a for a in attributions if a.method == "shap"), attributions[0])
    kind = adapter.default_component
    removed = _without_top_units(adapter, example, main)
    try:
        flow = MECHANISTIC_METHODS.create("attribution_patching", direction="noise", sites=(kind,)).localize(
            adapter, example, target=target, corrupted=removed)
    except TwopathError as err:
        return {"skipped": str(err)}
    flow_order = np.argsort(flow.effects, kind="stable")  # low normalized output = the units' route
    sets = {
        "internal path: top components by ablation": [ablation.components[i] for i in ablation.ranking()[:k]],
        "input path: components its top units flow through": [flow.components[i] for i in flow_order[:k]],
    }
    if adapter.modality == "text":
        related: list[Any] = edit_test.paraphrases(str(example.raw))
        unrelated: list[Any] = list(adapter.background)[:20]
    else:
        related = edit_test.nearby_applicants(dict(example.raw), adapter, n=20, seed=seed)  # type: ignore[arg-type]
        unrelated = adapter.background.iloc[:20].to_dict(orient="records")
    frame = edit_test.edit_test(adapter, sets, target, example, related, unrelated)
    return {"rows": frame.to_dict(orient="records"), "winner": frame.attrs.get("winner"),
            "removed_input": removed.raw if isinstance(removed.raw, str) else dict(removed.raw)}


def component_rankings(adapter: Any, localizations: Sequence[Localization]) -> list[Localization]:
    """Rankings of the same candidate components (heads of a transformer, neurons of an MLP)
    from every internal method that measured them, oriented so that larger = more important."""
    kind = adapter.default_component
    out = []
    for loc in localizations:
        part = loc.subset(kind)
        if not part.components:
            continue
        if part.meta.get("direction") == "noise":  # low normalized output = important site
            part = Localization(part.example_id, part.method, part.target, part.metric, part.components,
                                part.oriented, part.clean, part.corrupted, part.meta)
        out.append(part)
    reference = {c for c in out[0].components} if out else set()
    return [loc for loc in out if set(loc.components) == reference]


def cost_table(attributions: Sequence[Attribution], localizations: Sequence[Localization], f1_seconds: float,
               steps: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Per method: model evaluations requested, model rows run, seconds and cost in F1.

    With the run's ``steps`` (:class:`~twopath.runtime.cost.StepClock` rows) the table adds up:
    an ``overhead`` row holds what the methods' steps took beyond the methods' own measured
    seconds (argument checks, one-off warm-up such as shap's numba compile, bookkeeping), so
    the methods plus the overhead equal the wall time of the steps that ran them.
    """
    rows = []
    for path, results in (("input", attributions), ("internal", localizations)):
        for r in results:
            seconds = float(r.meta.get("seconds", 0.0))
            rows.append({"path": path, "method": r.method,
                         "n_evals": r.meta.get("n_evals", r.meta.get("n_forward_rows")),
                         "n_model_rows": r.meta.get("n_model_rows", r.meta.get("n_forward_rows")),
                         "seconds": seconds, "cost_f1": seconds / f1_seconds if f1_seconds > 0 else None})
    if steps:
        names = {f"{row['path']} path: {row['method']}" for row in rows}
        wall = sum(float(step["seconds"]) for step in steps if step["step"] in names)
        overhead = max(0.0, wall - sum(float(row["seconds"]) for row in rows))
        rows.append({"path": "overhead", "method": "around the methods above (checks, warm-up, bookkeeping)",
                     "n_evals": None, "n_model_rows": None, "seconds": overhead,
                     "cost_f1": overhead / f1_seconds if f1_seconds > 0 else None})
    rows.append({"path": "reference", "method": "F1 (one forward pass)", "n_evals": 1, "n_model_rows": 1,
                 "seconds": f1_seconds, "cost_f1": 1.0})
    return rows
