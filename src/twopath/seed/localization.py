"""Localization scored against planted ground truth: does each method find what is known to be there?

The reports say what every method ranks highest; on a trained model nobody knows whether that is
right. Here the mechanism is known **by construction**, because the weights are set by hand:

* ``planted-mlp`` — a tabular ReLU MLP (:func:`planted_mlp`) over six standardized features.
  Feature ``x0`` flows through a planted pathway: two layer-0 neurons ``L0N5``, ``L0N6`` (both
  ``relu(x0 + 1)``: a planted *cluster* that encodes ``x0``) into one layer-1 neuron ``L1N3``,
  which alone carries the decision (weight 2 on the logit difference). Features ``x2..x5``
  feed the other neurons, which reach the output with weight 0.05; ``x1`` is read by nothing.
  Ground truth: input unit ``x0``; components ``L0N5, L0N6, L1N3``; the layer-0 cluster of
  ``L0N5, L0N6`` labelled ``x0``. The contrast applicant differs in ``x0`` and, a little, in
  the distractor feature ``x3``.
* ``planted-gpt2`` — the hand-wired agreement GPT-2 of
  :func:`twopath.seed.agreement.planted_agreement_model`: head ``L1H1`` attends from the verb
  position to the first noun (the subject) and copies its number to the is/are read-out; a
  weaker head ``L1H3`` reads the last noun and ``L1H0`` the average number. Ground truth on
  "The keys to the old cabinet" → are: input unit ``keys``; component ``L1H1``.

Every input-path method and every internal-path method ranks its units or components with the
project's one ranking rule (``Attribution.ranking``: by absolute score; ``Localization.ranking``:
by importance, patching oriented to the share of the gap carried). Scored at k = the size of the
planted set, precision and recall coincide; both are printed, with the expected value of a random
ranking (k / n) and a seeded random ranking as the control. The greedy circuit search is scored
the same way on the set it returns, and the neuron clusters by whether the planted cluster gets
the planted label.

**What a method cannot see, by construction** — the rows marked *off* rerun the MLP on an
applicant whose ``x0`` is below -1, where ``relu(x0 + 1)`` is 0: the pathway is *inactive*.
Zero-ablating a neuron that is already 0 changes nothing, and a gradient through an inactive
ReLU is 0, so zero ablation and gradient x input cannot point at the pathway there although it
is exactly what would decide the applicant if ``x0`` rose; attribution patching finds only
``L1N3`` (read out linearly) and misses ``L0N5``, ``L0N6`` behind ``L1N3``'s inactive ReLU.
Mean ablation and exact patching from an applicant on the other side of the threshold still
can: they move the neurons to where they are active; IG too, whose path from the baseline
crosses the threshold. On the planted GPT-2, gradient x input ranks the attractor ``cabinet``
first: it is a local product of gradient and embedding, not a removal, and nothing guarantees
that the two agree.

Run with ``twopath benchmark [--methods shap,head_ablation,...]`` or
``python benchmarks/localization.py`` (seconds; no cache, nothing trained). The test
``tests/seed/test_agreement_localization.py`` asserts the recoveries below and that a random
ranking does not achieve them; ``docs/agreement.md`` has the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.attribution import ATTRIBUTION_METHODS
from twopath.mechanistic import MECHANISTIC_METHODS
from twopath.mechanistic.circuits import find_circuit
from twopath.mechanistic.clusters import neuron_clusters
from twopath.types import Example, TwopathError

FEATURES = tuple(f"x{i}" for i in range(6))
INPUT_METHODS = ("shap", "lime", "integrated_gradients", "occlusion", "gradient_x_input", "attention")
INTERNAL_METHODS = ("neuron_ablation", "head_ablation", "activation_patching", "attribution_patching",
                    "direct_logit_attribution", "direct_effect")
EXTRA = ("circuit", "clusters", "random")
METHODS = (*INPUT_METHODS, *INTERNAL_METHODS, *EXTRA)


@dataclass
class Planted:
    """A model with its mechanism known by construction: the example, a contrast, the truth."""

    name: str
    adapter: Any
    example: Example
    contrast: Example
    units: tuple[str, ...]  # planted input units
    components: tuple[str, ...]  # planted components (heads or neurons)
    methods: tuple[str, ...]  # internal-path methods to score
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    cluster: tuple[int, tuple[str, ...], str] | None = None  # (layer, neurons, label)

    def ground_truth(self) -> dict[str, Any]:
        """The planted mechanism, machine-readable: input units, components, cluster."""
        truth: dict[str, Any] = {"model": self.name, "example": self.example.raw, "contrast": self.contrast.raw,
                                 "units": list(self.units), "components": list(self.components)}
        if self.cluster is not None:
            layer, neurons, label = self.cluster
            truth["cluster"] = {"layer": layer, "neurons": list(neurons), "label": label}
        return truth


def planted_mlp() -> Any:
    """The hand-set tabular MLP described in the module docstring (labels ``no`` / ``yes``)."""
    from torch import nn

    from twopath.runtime.tabular import TorchTabularClassifier, build_mlp, fitted_preprocessor

    model = build_mlp(len(FEATURES), [8, 8], 2)
    first, second, out = (m for m in model if isinstance(m, nn.Linear))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in (first, second, out):
            layer.weight.zero_()
            layer.bias.zero_()
        # the planted neurons sit at middle indices, so no tie-breaking by index can favour them
        first.weight[:, 2:] = torch.randn(8, 4, generator=gen)  # distractors read x2..x5
        first.bias[:] = 0.5
        for n in (5, 6):  # L0N5, L0N6 = relu(x0 + 1)
            first.weight[n] = 0.0
            first.weight[n, 0] = first.bias[n] = 1.0
        second.weight[:] = torch.rand(8, 8, generator=gen)  # distractors of the distractors
        second.weight[:, 5:7] = 0.0
        second.weight[3] = 0.0
        second.weight[3, 5] = second.weight[3, 6] = 1.0  # L1N3 = relu(L0N5 + L0N6)
        out.weight[1] = 0.05
        out.weight[1, 3] = 2.0
        out.bias[1] = -2.0
    pre = fitted_preprocessor(list(FEATURES), {}, mean=[0.0] * len(FEATURES), scale=[1.0] * len(FEATURES))
    adapter = TorchTabularClassifier(model, pre, FEATURES, {}, ("no", "yes"), "planted MLP")
    rng = np.random.default_rng(0)
    adapter.background = pd.DataFrame(rng.normal(size=(200, len(FEATURES))), columns=list(FEATURES))
    return adapter


def _row(x0: float, x3: float = 0.8) -> dict[str, float]:
    return {"x0": x0, "x1": 0.3, "x2": -0.4, "x3": x3, "x4": 0.1, "x5": -0.6}


def planted_cases() -> list[Planted]:
    """The planted models with their examples (the MLP's pathway on and off)."""
    from twopath.seed import agreement

    mlp = planted_mlp()
    truth = ("L0N5", "L0N6", "L1N3")
    mlp_methods = ("neuron_ablation", "activation_patching", "attribution_patching")
    cases = [
        Planted("planted-mlp", mlp, Example("on", _row(1.0)), Example("on-contrast", _row(-2.0, 0.2)),
                ("x0",), truth, mlp_methods, settings={"neuron_ablation": {"mode": "zero"}},
                cluster=(0, ("L0N5", "L0N6"), "x0")),
        Planted("planted-mlp (mean ablation)", mlp, Example("on", _row(1.0)), Example("on-contrast", _row(-2.0, 0.2)),
                ("x0",), truth, ("neuron_ablation",)),
        Planted("planted-mlp off", mlp, Example("off", _row(-1.5)), Example("off-contrast", _row(1.5, 0.2)),
                ("x0",), truth, mlp_methods, settings={"neuron_ablation": {"mode": "zero"}}),
        Planted("planted-mlp off (mean ablation)", mlp, Example("off", _row(-1.5)), Example("off-contrast", _row(1.5, 0.2)),
                ("x0",), truth, ("neuron_ablation",)),
    ]
    tokenizer = agreement.planted_tokenizer()
    gpt2 = agreement.planted_agreement_model(tokenizer)
    from twopath.datasets import agreement as data

    gpt2.background = [i.prefix for i in data.held_out(10, "pp", seed=2) + data.held_out(10, "none", seed=2)]
    cases.append(Planted(
        "planted-gpt2", gpt2, Example("seed", agreement.SEED_TEXT, agreement.SEED_TARGET),
        Example("seed-flipped", agreement.SEED_FLIPPED, agreement.SEED_TARGET), ("keys",), (agreement.PLANTED_HEAD,),
        ("head_ablation", "activation_patching", "attribution_patching", "direct_logit_attribution", "direct_effect"),
        settings={"activation_patching": {"sites": ("head",)}, "attribution_patching": {"sites": ("head",)}}))
    return cases


def precision_recall(ranked: Sequence[str], truth: Sequence[str], k: int | None = None,
                     importance: Sequence[float] | np.ndarray | None = None) -> tuple[float, float]:
    """Precision and recall of the top ``k`` (default: the size of the truth) of ``ranked``.

    With ``importance`` (aligned with ``ranked``), an item of importance 0 is never a hit: a
    method that scores the planted unit 0 did not find it, wherever a tie puts it."""
    k = len(truth) if k is None else k
    top = [r for i, r in enumerate(ranked[:k]) if importance is None or abs(importance[i]) > 1e-9]
    hits = len(set(top) & set(truth))
    return hits / k, hits / len(truth)


def _input_rows(case: Planted, seed: int, methods: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    target = case.example.target or case.adapter.labels[-1]
    for name in INPUT_METHODS:
        if name not in methods or case.adapter.modality not in ATTRIBUTION_METHODS.get(name).modalities:
            continue
        attribution = ATTRIBUTION_METHODS.create(name, seed=seed).attribute(case.adapter, case.example, target=target)
        order = attribution.ranking()
        ranked = [attribution.units[i].lower() for i in order]
        rows.append(_scored(case, "input", name, ranked, case.units, attribution.scores[order]))
    return rows


def _internal_rows(case: Planted, methods: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    target = case.example.target or case.adapter.labels[-1]
    kind = case.adapter.default_component
    for name in case.methods:
        if name not in methods:
            continue
        method = MECHANISTIC_METHODS.create(name, **case.settings.get(name, {}))
        loc = method.localize(case.adapter, case.example, target=target, corrupted=case.contrast).subset(kind)
        order = loc.ranking()
        ranked = [loc.labels[i] for i in order]
        label = name + (f" ({method.mode})" if hasattr(method, "mode") else "")
        rows.append(_scored(case, "internal", label, ranked, case.components, loc.importance[order]))
    return rows


def _scored(case: Planted, path: str, method: str, ranked: Sequence[str], truth: Sequence[str],
            importance: np.ndarray) -> dict[str, Any]:
    precision, recall = precision_recall(ranked, truth, importance=importance)
    k = len(truth)
    shown = [r if abs(v) > 1e-9 else f"({r}: 0)" for r, v in zip(ranked[:k], importance[:k], strict=True)]
    return {"model": case.name, "path": path, "method": method, "k": k, "n": len(ranked),
            "precision_at_k": precision, "recall_at_k": recall, "top_k": ", ".join(shown)}


def random_rows(case: Planted, n_draws: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """The control: a seeded random ranking of the same units / components (mean over draws)."""
    rng = np.random.default_rng(seed)
    rows = []
    kind = case.adapter.default_component
    pools = {"input": ([u.lower() for u in case.adapter.units(case.example)], case.units),
             "internal": ([str(c) for c in case.adapter.components(kind)], case.components)}
    for path, (pool, truth) in pools.items():
        scores = [precision_recall(list(rng.permutation(pool)), truth) for _ in range(n_draws)]
        rows.append({"model": case.name, "path": path, "method": f"random ranking (mean of {n_draws})",
                     "k": len(truth), "n": len(pool), "precision_at_k": float(np.mean([s[0] for s in scores])),
                     "recall_at_k": float(np.mean([s[1] for s in scores])),
                     "top_k": f"expected k/n = {len(truth) / len(pool):.3f}"})
    return rows


def circuit_row(case: Planted, seed: int = 0) -> dict[str, Any]:
    """Does the greedy circuit search return the planted components?"""
    target = case.adapter.label_index(case.example.target or case.adapter.labels[-1])
    contrast = case.contrast if case.adapter.default_component == "head" else None
    circuit = find_circuit(case.adapter, case.example, target, corrupted=contrast, seed=seed)
    found = list(circuit["components"])
    truth = case.components
    if circuit.get("per_layer") is not None:  # an MLP: the search runs per layer; score that layer's truth
        layer = circuit["layer"]
        truth = tuple(c for c in case.components if c.startswith(f"L{layer}N"))
    hits = len(set(found) & set(truth))
    return {"model": case.name, "path": "internal", "method": "greedy circuit", "k": len(truth), "n": len(found),
            "precision_at_k": hits / max(1, len(found)), "recall_at_k": hits / max(1, len(truth)),
            "top_k": ", ".join(found)}


def cluster_row(case: Planted, seed: int = 0) -> dict[str, Any] | None:
    """Does the neuron clustering put the planted neurons together under the planted label?"""
    if case.cluster is None:
        return None
    layer, neurons, label = case.cluster
    groups = neuron_clusters(case.adapter, layer, seed=seed)
    home = next(g for g in groups if neurons[0] in {str(n) for n in g.neurons})
    members = {str(n) for n in home.neurons}
    together = set(neurons) <= members
    return {"model": case.name, "path": "internal", "method": "neuron clusters", "k": len(neurons), "n": len(members),
            "precision_at_k": len(set(neurons) & members) / len(members), "recall_at_k": len(set(neurons) & members) / len(neurons),
            "top_k": f"{home.name} = {', '.join(sorted(members))}, labelled {home.top_feature}"
                     f"{' (planted label)' if together and home.top_feature == label else ''}"}


def check_methods(methods: Sequence[str] | None) -> tuple[str, ...]:
    """The methods to run (default: all), each checked against :data:`METHODS`."""
    if methods is None:
        return METHODS
    chosen = tuple(m.strip() for m in methods if m.strip())
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise TwopathError(f"unknown benchmark method(s) {unknown or ['(none)']}; expected some of {', '.join(METHODS)}")
    return chosen


def benchmark(seed: int = 0, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Every method (or those named) on every planted case, with the random control, the circuit
    and the clusters."""
    chosen = check_methods(methods)
    rows: list[dict[str, Any]] = []
    for case in planted_cases():
        if "mean ablation" not in case.name:
            rows += _input_rows(case, seed, chosen)
        rows += _internal_rows(case, chosen)
        if "mean ablation" in case.name:
            continue
        if "random" in chosen:
            rows += random_rows(case, seed=seed)
        if "circuit" in chosen:
            rows.append(circuit_row(case, seed))
        cluster = cluster_row(case, seed) if "clusters" in chosen else None
        if cluster is not None:
            rows.append(cluster)
    return pd.DataFrame(rows)


def render(frame: pd.DataFrame) -> str:
    """The table as Markdown (what ``twopath benchmark`` prints and ``docs/agreement.md`` shows)."""
    from twopath.reports.html import md_table

    return md_table(frame)
