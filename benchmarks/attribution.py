"""Input-path benchmark: the libraries glued by hand versus twopath, same settings, same numbers.

"Naive" calls shap, lime and captum as their docs show, with a hand-written prediction function
that batches whatever rows the library hands it but shares nothing between methods. twopath
runs the same methods with the same settings through its shared, memoized evaluator. Both use
the same masking (an absent word's tokens become [MASK]; an absent feature takes background
values), so the scores must agree; the table prints the largest difference.

Costs are in F1 units: one batch-size-1 forward pass of the same model on the same input,
measured in this run. Run with ``make bench`` (or ``python benchmarks/attribution.py``).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from twopath.attribution import ATTRIBUTION_METHODS  # noqa: E402
from twopath.attribution.lime_ import _SENTINEL, _SPLIT  # noqa: E402
from twopath.attribution.shap_ import adjacent_word_tree  # noqa: E402
from twopath.runtime.cost import forward_seconds  # noqa: E402
from twopath.types import Example  # noqa: E402


class Counter:
    def __init__(self) -> None:
        self.rows = 0


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def text_naive(adapter: Any, example: Example, target: int) -> dict[str, tuple[np.ndarray, int, float]]:
    import shap
    from captum.attr import LayerIntegratedGradients
    from lime.lime_text import LimeTextExplainer

    inp = adapter.encode(example.raw)
    n = len(inp.words)
    results = {}

    count = Counter()

    def f_masks(masks: np.ndarray) -> np.ndarray:
        count.rows += len(masks)
        with torch.no_grad():
            ids = adapter.masked_ids(inp, masks.astype(bool))
            logits = adapter.logits({"input_ids": ids, "attention_mask": inp.attention_mask.expand(len(ids), -1)})
        return adapter.output(logits, target).numpy()

    masker = shap.maskers.Partition(np.zeros((1, n)), clustering=adjacent_word_tree(n))
    explainer = shap.explainers.Partition(f_masks, masker)
    out, seconds = timed(lambda: explainer(np.ones((1, n)), max_evals=500, silent=True))
    results["shap (partition, 500)"] = (np.asarray(out.values).reshape(-1), count.rows, seconds)

    count = Counter()
    splitter = re.compile(_SPLIT)

    def f_strings(strings: list[str]) -> np.ndarray:
        masks = np.array([[c != _SENTINEL for c in splitter.split(s) if c] for s in strings])
        values = f_masks(masks)
        return np.column_stack([-values, values])

    lime = LimeTextExplainer(class_names=["other", "target"], bow=False, split_expression=_SPLIT,
                             mask_string=_SENTINEL, random_state=0)
    exp, seconds = timed(lambda: lime.explain_instance(example.raw, f_strings, labels=(1,), num_features=n, num_samples=5000))
    scores = np.zeros(n)
    for idx, weight in exp.as_map()[1]:
        scores[idx] = weight
    results["lime (5000)"] = (scores, count.rows, seconds)

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = adapter.model(input_ids=ids, attention_mask=mask.expand(ids.shape[0], -1)).logits
        return adapter.output(logits, target)

    lig = LayerIntegratedGradients(forward, adapter.embedding_layer())
    attr, seconds = timed(lambda: lig.attribute(inp.input_ids, baselines=adapter.baseline_ids(inp, "pad"),
                                                additional_forward_args=(inp.attention_mask,), n_steps=50))
    token = attr.sum(-1)[0].detach().numpy()
    scores = np.zeros(n)
    np.add.at(scores, inp.token_word[inp.token_word >= 0], token[inp.token_word >= 0])
    results["integrated_gradients (50)"] = (scores, 50, seconds)
    return results


def library_default_text_shap(adapter: Any, example: Example, target: int) -> tuple[int, float]:
    """shap with its own Text masker (token-level, different masking): cost only."""
    import shap

    count = Counter()

    def f(strings: Any) -> np.ndarray:
        count.rows += len(strings)
        enc = adapter.batch_encode([str(s) for s in strings])
        with torch.no_grad():
            return adapter.output(adapter.logits(enc), target).numpy()

    explainer = shap.Explainer(f, shap.maskers.Text(adapter.tokenizer), algorithm="partition")
    _, seconds = timed(lambda: explainer([example.raw], max_evals=500, silent=True))
    return count.rows, seconds


def twopath_text(adapter: Any, example: Example, target: str) -> dict[str, tuple[np.ndarray, int, float]]:
    adapter.__dict__.pop("_evaluators", None)  # a cold memo: nothing carried over from the naive runs
    runs = {
        "shap (partition, 500)": ATTRIBUTION_METHODS.create("shap", algorithm="partition", max_evals=500),
        "lime (5000)": ATTRIBUTION_METHODS.create("lime", num_samples=5000),
        "integrated_gradients (50)": ATTRIBUTION_METHODS.create("integrated_gradients", n_steps=50, max_steps=50),
    }
    results = {}
    for name, method in runs.items():
        attribution, seconds = timed(lambda m=method: m.attribute(adapter, example, target=target))
        results[name] = (attribution.scores, int(attribution.meta["n_model_rows"]), seconds)
    return results


def tabular_naive_kernel(adapter: Any, example: Example, target: int) -> tuple[np.ndarray, int, int, float]:
    import shap

    count = Counter()
    calls = Counter()

    def f(rows: np.ndarray) -> np.ndarray:
        calls.rows += 1
        count.rows += len(rows)
        with torch.no_grad():
            return adapter.output(adapter.logits({"x": adapter.transform_coded(rows)}), target).numpy()

    background = adapter.encode(adapter.background)[:50]
    x = adapter.encode(example.raw)
    explainer = shap.KernelExplainer(f, background)
    values, seconds = timed(lambda: explainer.shap_values(x, silent=True))
    return np.asarray(values).reshape(-1), count.rows, calls.rows, seconds


def table(rows: list[dict[str, Any]]) -> None:
    header = f"{'method':<28}{'max|diff|':>11}{'naive rows':>12}{'ours rows':>11}{'naive F1':>10}{'ours F1':>9}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['method']:<28}{r['diff']:>11.2e}{r['naive_rows']:>12}{r['ours_rows']:>11}{r['naive_f1']:>10.1f}{r['ours_f1']:>9.1f}{r['ratio']:>8.2f}")


def main() -> None:
    import shap

    from twopath.datasets import loan, sentiment
    from twopath.runtime.tabular import TorchTabularClassifier
    from twopath.runtime.text import HFTextClassifier
    from twopath.seed import zoo

    torch.manual_seed(0)
    # warm shap's compiled code once so neither side pays the JIT
    shap.explainers.Exact(lambda m: m.sum(1), shap.maskers.Independent(np.zeros((1, 3))))(np.ones((1, 3)), silent=True)

    adapter = HFTextClassifier.from_pretrained(zoo.sentiment_model())
    example = Example("seed", sentiment.SEED_SENTENCE)
    f1 = forward_seconds(adapter, example)
    print(f"\nSentiment: {adapter.name}, '{sentiment.SEED_SENTENCE}'  F1 = {f1 * 1e3:.1f} ms")
    naive = text_naive(adapter, example, 1)
    ours = twopath_text(adapter, example, "positive")
    rows = []
    for name in naive:
        (a, na, ta), (b, nb, tb) = naive[name], ours[name]
        rows.append({"method": name, "diff": float(np.max(np.abs(a - b))), "naive_rows": na, "ours_rows": nb,
                     "naive_f1": ta / f1, "ours_f1": tb / f1, "ratio": tb / ta})
    total_naive = sum(v[2] for v in naive.values())
    total_ours = sum(v[2] for v in ours.values())
    rows.append({"method": "whole input path", "diff": max(r["diff"] for r in rows),
                 "naive_rows": sum(v[1] for v in naive.values()), "ours_rows": sum(v[1] for v in ours.values()),
                 "naive_f1": total_naive / f1, "ours_f1": total_ours / f1, "ratio": total_ours / total_naive})
    table(rows)
    unique = ours["lime (5000)"][1] or len({0})
    print(f"LIME-5000: {unique} model rows after sharing the table with SHAP; "
          f"target <= 1.2 x unique-rows cost: ratio to naive {rows[1]['ratio']:.2f}")
    lib_rows, lib_seconds = library_default_text_shap(adapter, example, 1)
    print(f"(shap's own Text masker, token-level, partition 500: {lib_rows} rows, {lib_seconds / f1:.1f} F1 — different masking, scores not compared)")

    tab = TorchTabularClassifier.load(zoo.loan_model())
    tab.background = loan.split()[0].sample(200, random_state=0)[list(loan.FEATURES)]
    applicant = Example("seed", loan.SEED_APPLICANT)
    f1_tab = forward_seconds(tab, applicant)
    print(f"\nLoan: {tab.architecture}, seed applicant  F1 = {f1_tab * 1e3:.2f} ms")
    values, n_rows, n_calls, seconds = tabular_naive_kernel(tab, applicant, 1)
    attribution, ours_seconds = timed(lambda: ATTRIBUTION_METHODS.create("shap", algorithm="exact").attribute(tab, applicant, target="approved"))
    table([{"method": "KernelSHAP vs exact table", "diff": float(np.max(np.abs(values - attribution.scores))),
            "naive_rows": n_rows, "ours_rows": int(attribution.meta["n_model_rows"]),
            "naive_f1": seconds / f1_tab, "ours_f1": ours_seconds / f1_tab, "ratio": ours_seconds / seconds}])
    print(f"naive KernelSHAP called the model {n_calls} time(s); twopath evaluated 32 coalitions x 50 background rows in batches")


if __name__ == "__main__":
    main()
