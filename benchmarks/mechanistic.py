"""Internal-path benchmark: interventions one forward pass at a time versus twopath's sweeps.

For each sweep three ways of computing the same numbers:

* **naive** — one batch-size-1 forward pass per component, each under ``intervene``;
* **batched** — twopath's batched sweep (one batch row per component), full forward passes;
* **prefix** — the same sweep starting each row from the clean run's cached residual stream
  entering the first block it edits (:class:`twopath.runtime.trace.Trace`).

Costs are in F1 units: one unmodified batch-size-1 forward pass of the same model on the same
input (:func:`twopath.runtime.cost.forward_seconds`), measured again just before every timed run
(the methods run round-robin), so a machine whose load drifts skews no column in particular.
Costs are medians of a few repeats after one warm-up; sweeps run under ``torch.no_grad``.
The table also prints the largest difference between the methods' results, which must be ~0.

Run with ``make bench`` (or ``python benchmarks/mechanistic.py``). ``TWOPATH_BENCH_THREADS``
sets torch's thread count (on a busy machine, 1 thread gives steadier ratios);
``TWOPATH_BENCH_ONLY=loan`` (or ``text``) runs one model's rows only; ``TWOPATH_BENCH_CLOCK=cpu``
times everything (F1 included) in process CPU time instead of wall time: on a machine shared
with other work, with one thread, the steadier measure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from twopath.mechanistic.ablation import HeadAblation, NeuronAblation  # noqa: E402
from twopath.mechanistic.attribution_patching import AttributionPatching  # noqa: E402
from twopath.mechanistic.base import logits_output, run_output, sweep  # noqa: E402
from twopath.mechanistic.patching import ActivationPatching, check_contrast, patch_components  # noqa: E402
from twopath.runtime.cost import forward_seconds  # noqa: E402
from twopath.runtime.hooks import at, first_tensor, hooked  # noqa: E402
from twopath.runtime.interventions import (  # noqa: E402
    Edit,
    ablate,
    capture,
    intervene,
    read,
    site_key,
)
from twopath.runtime.trace import Trace  # noqa: E402
from twopath.types import Component, Example  # noqa: E402

COUNTERFACTUAL = "The movie was surprisingly boring, despite slow pacing."
#: the clock of every timing (``TWOPATH_BENCH_CLOCK=cpu``: process CPU time)
clock = time.process_time if os.environ.get("TWOPATH_BENCH_CLOCK") == "cpu" else time.perf_counter


def probe_f1(adapter: Any, example: Example, repeats: int, warmup: int) -> float:
    """F1 on :data:`clock`: :func:`~twopath.runtime.cost.forward_seconds` itself for wall time."""
    if clock is time.perf_counter:
        return forward_seconds(adapter, example, repeats=repeats, warmup=warmup)
    inputs = adapter.forward_inputs(example)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = clock()
            adapter.run(inputs)
            if i >= warmup:
                times.append(clock() - start)
    return float(np.median(times))


def timed(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> tuple[Any, float]:
    """(last result, median seconds) over ``repeats`` runs after ``warmup`` runs."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        start = clock()
        out = fn()
        times.append(clock() - start)
    return out, float(np.median(times))


def compare(methods: dict[str, Callable[[], Any]], probe: Callable[[], float], repeats: dict[str, int],
            ) -> tuple[dict[str, tuple[Any, float]], float]:
    """Each method's (result, median cost in F1) and the median F1 in seconds.

    Methods run round-robin after one warm-up each, and every timed run is divided by an F1
    measured just before it, so a machine whose load drifts during the run skews all columns
    alike instead of whichever ran last.
    """
    results = {name: fn() for name, fn in methods.items()}
    ratios: dict[str, list[float]] = {name: [] for name in methods}
    f1s = []
    for round_ in range(max(repeats.values())):
        for name, fn in methods.items():
            if round_ >= repeats[name]:
                continue
            f1 = probe()
            start = clock()
            results[name] = fn()
            ratios[name].append((clock() - start) / f1)
            f1s.append(f1)
    return {name: (results[name], float(np.median(ratios[name]))) for name in methods}, float(np.median(f1s))


def naive_outputs(adapter: Any, inputs: dict[str, torch.Tensor], rows: Sequence[Sequence[Edit]], target: int) -> np.ndarray:
    """One batch-size-1 forward pass per row of edits."""
    out = np.empty(len(rows))
    with torch.no_grad():
        for i, row in enumerate(rows):
            with intervene(adapter, [Edit(0, e.component, e.value) for e in row]):
                out[i] = float(adapter.output(adapter.run(inputs), target)[0])
    return out


# --- (b) neuron groups ------------------------------------------------------------------------

def neuron_groups(adapter: Any, inputs: dict[str, torch.Tensor], size: int = 32) -> list[list[Component]]:
    with torch.no_grad(), capture(adapter, [Component("neuron", layer, 0) for layer in range(adapter.n_layers)]) as store:
        adapter.run(inputs)
    groups = []
    for layer in range(adapter.n_layers):
        width = store[(layer, "neuron")].shape[-1]
        groups += [[Component("neuron", layer, i) for i in range(g, g + size)] for g in range(0, width, size)]
    return groups


def group_ablation(adapter: Any, inputs: dict[str, torch.Tensor], groups: list[list[Component]], target: int,
                   how: str) -> np.ndarray:
    """Drop in the target output when each group of neurons is mean-ablated together."""
    prefix = Trace(adapter, inputs) if how == "prefix" else None
    if prefix is not None:
        clean, _ = logits_output(adapter, prefix.logits, target, "logit_diff")
    else:
        clean, _ = run_output(adapter, inputs, target, "logit_diff")
    rows = [ablate(adapter, group, "mean") for group in groups]
    if how == "naive":
        return clean - naive_outputs(adapter, inputs, rows, target)
    outputs, _, _ = sweep(adapter, inputs, rows, target, "logit_diff", 128, prefix_cache=prefix or False)
    return clean - outputs


# --- (c) residual-stream patching ---------------------------------------------------------------

def resid_patching(adapter: Any, example: Example, corrupted: Example, target: int, how: str) -> np.ndarray:
    """Normalized output of denoising each layer x position site (as ActivationPatching)."""
    if how == "batched":
        result = ActivationPatching(sites=("resid",)).localize(adapter, example, target=adapter.labels[target], corrupted=corrupted)
        return np.asarray(result.effects)
    clean_in, corrupt_in, _ = check_contrast(adapter, example, corrupted, "denoise")
    clean, _ = run_output(adapter, clean_in, target, "logit_diff")
    corr, _ = run_output(adapter, corrupt_in, target, "logit_diff")
    components = patch_components(adapter, clean_in, ("resid",))
    with torch.no_grad(), capture(adapter, components) as store:
        adapter.run(clean_in)
    rows = [[Edit(0, c, read(adapter, c, store[site_key(c)]))] for c in components]
    if how == "naive":
        outputs = naive_outputs(adapter, corrupt_in, rows, target)
    else:
        outputs, _, _ = sweep(adapter, corrupt_in, rows, target, "logit_diff", 128, prefix_cache=True)
    return (outputs - corr) / (clean - corr)


# --- (d) attribution patching, vectorized -----------------------------------------------------------

_COMPONENTS: dict[tuple[int, tuple[str, ...], int], list[Component]] = {}


def attribution_vectorized(adapter: Any, example: Example, corrupted: Example, target: int,
                           sites: tuple[str, ...] = ("head", "neuron", "resid")) -> tuple[list[Component], np.ndarray]:
    """Attribution patching (denoise) with one batched forward of [base, source], one backward
    to the sites only (``torch.autograd.grad``: no weight or embedding gradients), and one tensor
    product per site instead of a Python loop per component.

    A sketch of what ``AttributionPatching._effects`` could do; same numbers (the table checks).
    """
    clean_in, corrupt_in, _ = check_contrast(adapter, example, corrupted, "denoise")
    source, base = clean_in, corrupt_in
    both = {k: torch.cat([base[k], source[k]]) for k in base}
    n_layers = adapter.n_layers
    probes = [Component(kind, layer, 0) if kind != "resid" else Component("resid", layer, position=0)
              for layer in range(n_layers) for kind in sites]
    acts: dict[tuple[int, str], torch.Tensor] = {}
    hooks = []
    for probe in probes:
        where = adapter.site(probe)

        def keep(*hook_args: Any, _key: tuple[int, str] = site_key(probe), _kind: str = where.kind) -> None:
            acts[_key] = hook_args[1][0] if _kind == "pre" else first_tensor(hook_args[2])

        hooks.append(at(where, keep))
    with torch.enable_grad(), hooked(adapter.model, hooks):
        outputs = adapter.output(adapter.run(both), target)
    keys = list(acts)
    # gradients of the base row's output with respect to the sites only: no weight gradients
    grads = dict(zip(keys, torch.autograd.grad(outputs[0], [acts[k] for k in keys]), strict=True))
    corr, clean = float(outputs[0].detach()), float(outputs[1].detach())
    n_pos = int(base["input_ids"].shape[1])
    key = (id(adapter), sites, n_pos)
    if key not in _COMPONENTS:
        _COMPONENTS[key] = patch_components(adapter, clean_in, sites)
    parts = []
    with torch.no_grad():
        for kind in sites:
            for layer in range(n_layers):
                act, grad = acts[(layer, kind)], grads[(layer, kind)]
                contribution = (act[1] - act[0]) * grad[0]  # (T, width)
                if kind == "head":
                    parts.append(contribution.view(n_pos, adapter.n_heads, -1).sum((0, 2)))
                elif kind == "neuron":
                    parts.append(contribution.sum(0))
                else:
                    parts.append(contribution.sum(-1))
    effects = torch.cat(parts).double().numpy() / (clean - corr)  # denoise: 0 = corrupted run
    return _COMPONENTS[key], effects


# --- table ------------------------------------------------------------------------------------------

def row(name: str, n: int, f1: float, target: float, results: dict[str, tuple[np.ndarray, float]],
        note: str = "", reference: np.ndarray | None = None) -> dict[str, Any]:
    """A table row from ``compare``'s results (costs already in F1); differences are taken
    against ``reference`` (default: the naive column's results)."""
    if reference is None and "naive" in results:
        reference = results["naive"][0]
    cost = {k: v[1] for k, v in results.items()}
    diff = {k: float(np.max(np.abs(v[0] - reference))) for k, v in results.items()
            if k != "naive" and reference is not None}
    best = min(v for k, v in cost.items() if k != "naive")
    return {"name": name, "n": n, "f1_ms": f1 * 1e3, "cost": cost, "diff": diff, "target": target,
            "met": best <= target, "best": best, "note": note}


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    header = (f"{'sweep':<34}{'rows':>6}{'F1 ms':>8}{'naive':>9}{'batched':>9}{'prefix':>9}"
              f"{'target':>8}  {'met':<4}{'|d| batched':>12}{'|d| prefix':>11}")
    print(header)
    print("-" * len(header))
    for r in rows:
        c, d = r["cost"], r["diff"]
        fmt = lambda v: f"{v:>9.1f}" if v is not None else f"{'—':>9}"  # noqa: E731
        dfmt = lambda v, w: f"{v:>{w}.1e}" if v is not None else f"{'—':>{w}}"  # noqa: E731
        print(f"{r['name']:<34}{r['n']:>6}{r['f1_ms']:>8.2f}{fmt(c.get('naive'))}{fmt(c.get('batched'))}"
              f"{fmt(c.get('prefix'))}{r['target']:>8.0f}  {'yes' if r['met'] else 'NO':<4}"
              f"{dfmt(d.get('batched'), 12)}{dfmt(d.get('prefix'), 11)}")
    for r in rows:
        if r["note"]:
            print(f"  {r['name']}: {r['note']}")


def main() -> None:
    threads = os.environ.get("TWOPATH_BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    only = os.environ.get("TWOPATH_BENCH_ONLY", "")
    if only not in ("", "text", "loan"):
        raise SystemExit(f"TWOPATH_BENCH_ONLY={only!r}: expected text or loan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); costs in F1 (lower is better), "
          f"{'CPU' if clock is time.process_time else 'wall'} time")
    rows = [*(text_table() if only != "loan" else []), *(loan_table() if only != "text" else [])]

    print("\nWhat dominates where a target is missed:")
    for r in rows:
        if not r["met"]:
            print(f"  {r['name']}: {r['best']:.1f} F1 > {r['target']:.0f} F1 — {EXPLAIN.get(r['name'][:4].strip(), '')}")


def text_table() -> list[dict[str, Any]]:
    """Rows (a)-(d): the sentiment transformer (printed as one table)."""
    from twopath.datasets import sentiment
    from twopath.runtime.text import HFTextClassifier
    from twopath.seed import zoo

    adapter = HFTextClassifier.from_pretrained(zoo.sentiment_model())
    adapter.background = list(sentiment.split()[1]["text"].iloc[:64])
    example = Example("seed", sentiment.SEED_SENTENCE)
    corrupted = Example("corrupted", COUNTERFACTUAL)
    target = adapter.label_index("positive")
    label = adapter.labels[target]
    inputs = adapter.forward_inputs(example)
    n_tokens = int(inputs["input_ids"].shape[1])
    assert adapter.encode(COUNTERFACTUAL).n_tokens == n_tokens
    # the reference means over the 64 background sentences are computed once and cached on the
    # adapter (the first ablation pays them); warm them so no column pays them
    heads = adapter.components("head")
    groups = neuron_groups(adapter, inputs)
    ablate(adapter, heads + [c for g in groups for c in g[:1]], "mean")
    text_rows = []

    probe = lambda: probe_f1(adapter, example, repeats=5, warmup=1)  # noqa: E731

    # (a) every head, mean ablation
    def naive_heads() -> np.ndarray:
        clean, _ = run_output(adapter, inputs, target, "logit_diff")
        return clean - naive_outputs(adapter, inputs, [[e] for e in ablate(adapter, heads, "mean")], target)
    results, f1 = compare({
        "naive": naive_heads,
        "batched": lambda: HeadAblation(prefix_cache=False).localize(adapter, example, target=label).effects,
        "prefix": lambda: HeadAblation(prefix_cache=True).localize(adapter, example, target=label).effects,
    }, probe, {"naive": 3, "batched": 7, "prefix": 7})
    text_rows.append(row("(a) head ablation (mean)", len(heads), f1, 15, results,
                         note="batched / prefix = HeadAblation(prefix_cache=False / True).localize()"))

    # (b) 6 layers x 48 groups of 32 MLP neurons, mean ablation
    results, f1 = compare({how: lambda h=how: group_ablation(adapter, inputs, groups, target, h)
                           for how in ("naive", "batched", "prefix")}, probe, {"naive": 1, "batched": 5, "prefix": 5})
    text_rows.append(row("(b) neuron-group ablation (32)", len(groups), f1, 60, results,
                         note=f"edits built with ablate() inside every column ({sum(map(len, groups))} neuron edits)"))

    # (c) residual-stream patching, every layer x position
    results, f1 = compare({how: lambda h=how: resid_patching(adapter, example, corrupted, target, h)
                           for how in ("naive", "batched", "prefix")}, probe, {"naive": 3, "batched": 7, "prefix": 7})
    text_rows.append(row("(c) resid patching (denoise)", adapter.n_layers * n_tokens, f1, 25, results,
                         note="batched = ActivationPatching(sites=('resid',)); prefix = the same rows through "
                              "sweep(prefix_cache=True), as ActivationPatching itself does"))

    # (d) attribution patching of every head, neuron and residual site
    method = AttributionPatching(sites=("head", "neuron", "resid"))
    results, f1 = compare({
        "today": lambda: method.localize(adapter, example, target=label, corrupted=corrupted).effects,
        "sketch": lambda: attribution_vectorized(adapter, example, corrupted, target)[1],
    }, probe, {"today": 3, "sketch": 7})
    n_sites = len(attribution_vectorized(adapter, example, corrupted, target)[0])
    text_rows.append(row("(d) attribution patching (all)", n_sites, f1, 3, {"batched": results["today"]},
                         note=f"AttributionPatching(sites=('head', 'neuron', 'resid')).localize(), {n_sites} "
                              "components; there is no naive or prefix variant of a one-backward method"))
    text_rows.append(row("(d') vectorized sketch (proposed)", n_sites, f1, 3, {"batched": results["sketch"]},
                         reference=results["today"][0],
                         note="attribution_vectorized() in this file: one forward of [base, source], one "
                              "backward to the sites only, one product per site; |d| against AttributionPatching"))
    print_table(f"Sentiment: {adapter.name} ({adapter.n_layers} layers x {adapter.n_heads} heads), "
                f"'{sentiment.SEED_SENTENCE}' ({n_tokens} tokens)", text_rows)
    return text_rows


def loan_table() -> list[dict[str, Any]]:
    """Rows (e) and (e'): every neuron of the loan MLP, the sweep alone and NeuronAblation end to end."""
    from twopath.datasets import loan
    from twopath.runtime.tabular import TorchTabularClassifier
    from twopath.seed import zoo

    tab = TorchTabularClassifier.load(zoo.loan_model())
    tab.background = loan.split()[0].sample(200, random_state=0)[list(loan.FEATURES)]
    applicant = Example("seed", dict(loan.SEED_APPLICANT))
    tab_target = tab.label_index("approved")
    tab_inputs = tab.forward_inputs(applicant)
    neurons = tab.components("neuron")
    ablate(tab, neurons, "mean")
    probe_tab = lambda: probe_f1(tab, applicant, repeats=50, warmup=5)  # noqa: E731
    mlp_rows = [[e] for e in ablate(tab, neurons, "mean")]  # the reference means, built once

    def mlp(how: str) -> np.ndarray:
        prefix = Trace(tab, tab_inputs) if how == "prefix" else None
        if prefix is not None:
            clean, _ = logits_output(tab, prefix.logits, tab_target, "logit_diff")
        else:
            clean, _ = run_output(tab, tab_inputs, tab_target, "logit_diff")
        if how == "naive":
            return clean - naive_outputs(tab, tab_inputs, mlp_rows, tab_target)
        outputs, _, _ = sweep(tab, tab_inputs, mlp_rows, tab_target, "logit_diff", 128, prefix_cache=prefix or False)
        return clean - outputs

    localize = lambda: NeuronAblation().localize(tab, applicant, target="approved").effects  # noqa: E731
    results, f1_tab = compare({**{how: lambda h=how: mlp(h) for how in ("naive", "batched", "prefix")},
                               "localize": localize}, probe_tab,
                              {"naive": 5, "batched": 51, "prefix": 51, "localize": 51})
    ablate_only = timed(lambda: ablate(tab, neurons, "mean"), repeats=21)[1]
    encode_only = timed(lambda: tab.forward_inputs(applicant), repeats=21)[1]
    end_to_end = results.pop("localize")
    sweep_row = row("(e) loan neuron ablation (mean)", len(neurons), f1_tab, 10, results,
                    note=f"clean run + sweep() of per-neuron edits, inputs encoded and edits built once (ablate() "
                         f"alone {ablate_only / f1_tab:.1f} F1, forward_inputs {encode_only / f1_tab:.1f} F1); prefix = "
                         f"the cache forced on (NeuronAblation leaves it off for MLPs)")
    localize_row = row("(e') NeuronAblation.localize()", len(neurons), f1_tab, 5,
                       {"naive": results["naive"], "batched": end_to_end},
                       note="end to end, every call: keep-mask rows (ablation.each_masked), hooks and reference "
                            "means memoized per adapter and background, hooks called in the MLP's own loop "
                            "(TorchTabularClassifier.run_hooked); the clean row read out with the ablated ones")
    rows = [sweep_row, localize_row]
    print_table(f"Loan: {tab.architecture}", rows)
    return rows

EXPLAIN = {
    "(a)": "72 rows of compute; the prefix cache removes ~40% of the layer work, the rest is the rows themselves",
    "(b)": "288 rows x (6 - layer) layers of MLP/attention compute (batch-bound, not call-bound)",
    "(c)": "72 rows of compute; rows for late layers only run the classifier with the prefix cache",
    "(d)": "one forward of [base, source] and one backward to the sites only (autograd.grad, no weight "
           "gradients), as the sketch below it; building the 9,360 Component objects was half of it until "
           "the adapter built them once per length (caches(adapter).components)",
    "(e)": "per-call overhead, not arithmetic: one MLP forward is ~60 us, so stacking 192 edit values, "
           "building index tensors and hooks, and 2 chunks of 128 rows cost more than the 192-row forward; "
           "NeuronAblation itself takes the keep-mask path instead, row (e')",
    "(e')": "the 192-row forward (~1.7 F1), six blends (~0.6 F1) and the read-out (~0.9 F1) are ~3.5 F1 "
            "of tensor operations; the rest is Python around them (Trace lookup, Localization) and a cold "
            "start: every timed call here follows an F1 probe, and the same call back to back in one "
            "process takes ~4 F1 (about 180 us on one thread or two: a small tabular model's work runs "
            "on one thread, twopath.runtime.threads; before that rule 2 threads took 791 us)",
}


if __name__ == "__main__":
    main()
