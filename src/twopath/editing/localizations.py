"""Where to edit: rankings of components from both paths, and the controls.

Each function returns every component of one kind (``head`` or ``neuron``), best first; a
budget is then filled from the top (:func:`twopath.editing.mask.fill_budget`).

* ``ablation`` — mean |effect| of mean-ablating the component on the task's clean inputs (the
  registered ``neuron_ablation`` / ``head_ablation``): what the decision *needs*.
* ``attribution_patching`` — mean |estimated effect| of patching the component from the
  contrast into the clean run (registered ``attribution_patching``), in output units: the
  paper's **output-tracing** localization.
* ``probe`` — "where the information is written": a ridge probe per component reads which member
  of a group an input is (the feature's value; the word present or not) from the component's
  activation (text: averaged over real positions); held-out R² per component; the components
  at or above half the best R² come first, **earliest layer first**, then the rest by R². The
  paper's fact-lookup analogue.
* ``bridge`` — the input path's bridge: how much of the component's contribution Integrated
  Gradients puts on the forgotten unit (the feature, or the word's positions) — the components
  the input path's top unit flows through (:mod:`twopath.comparisons.bridges`).
* controls: ``random`` (a seeded permutation; compare several seeds), ``last_layer`` (the
  ablation ranking restricted to the last layer: the best a last-layer-only editor can do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from twopath.editing.tasks import EditTask
from twopath.types import Component, Example, TwopathError

#: above this many components the bridge ranks only the ablation ranking's first ones
BRIDGE_POOL = 256


def _order(components: Sequence[Component], scores: np.ndarray) -> list[Component]:
    """Components by score, descending; ties by position in the model (stable)."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    return [components[i] for i in order]


def _kind_components(adapter: Any, kind: str) -> list[Component]:
    if kind not in ("head", "neuron"):
        raise TwopathError(f"edits are localized over heads or neurons, not {kind!r}")
    return list(adapter.components(kind))


def _clean_examples(task: EditTask, n: int) -> list[Example]:
    if not task.pairs:
        raise TwopathError(f"{task.name}: no clean/contrast pairs to localize with")
    return [Example(f"edit-{i}", clean) for i, (clean, _) in enumerate(task.pairs[:n])]


def ablation_scores(adapter: Any, task: EditTask, kind: str, n_examples: int = 8) -> tuple[list[Component], np.ndarray]:
    from twopath.mechanistic import MECHANISTIC_METHODS

    method = MECHANISTIC_METHODS.create("head_ablation" if kind == "head" else "neuron_ablation", mode="mean")
    components = _kind_components(adapter, kind)
    total = np.zeros(len(components))
    for example in _clean_examples(task, n_examples):
        loc = method.localize(adapter, example, target=adapter.labels[task.target])
        total += np.abs(np.asarray(loc.effects, dtype=float))
    return components, total / max(1, min(n_examples, len(task.pairs)))


def by_ablation(adapter: Any, task: EditTask, kind: str, n_examples: int = 8) -> list[Component]:
    return _order(*ablation_scores(adapter, task, kind, n_examples))


def by_attribution_patching(adapter: Any, task: EditTask, kind: str, n_examples: int = 8) -> list[Component]:
    from twopath.mechanistic import MECHANISTIC_METHODS

    method = MECHANISTIC_METHODS.create("attribution_patching", sites=(kind,))
    components = _kind_components(adapter, kind)
    total = np.zeros(len(components))
    used = 0
    for i, (clean, contrast) in enumerate(task.pairs[:n_examples]):
        try:
            loc = method.localize(adapter, Example(f"edit-{i}", clean), target=adapter.labels[task.target],
                                  corrupted=Example(f"edit-{i}-contrast", contrast))
        except TwopathError:  # the pair gives the same output: nothing to patch
            continue
        start = 0.0 if loc.meta["direction"] == "denoise" else 1.0
        total += np.abs((np.asarray(loc.effects, dtype=float) - start) * (loc.clean - loc.corrupted))
        used += 1
    if used == 0:
        raise TwopathError(f"{task.name}: no clean/contrast pair changes the output; attribution patching has nothing to rank")
    return _order(components, total / used)


def _activations(adapter: Any, components: Sequence[Component], raws: Sequence[Any]) -> dict[tuple[int, str], torch.Tensor]:
    """(n, width) site activations per layer (text: mean over real positions)."""
    from twopath.runtime.interventions import capture

    inputs = adapter.batch_inputs(list(raws))
    with torch.no_grad(), capture(adapter, components) as store:
        adapter.run(inputs)
    weights = adapter.position_mask(inputs)
    out = {}
    for key, act in store.items():
        if act.dim() == 3 and weights is not None:
            w = weights.to(act.dtype)[..., None]
            act = (act * w).sum(1) / w.sum(1).clamp(min=1)
        out[key] = act.reshape(act.shape[0], -1).double().cpu()
    return out


def _ridge_r2(x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, alpha: float = 1e-2) -> torch.Tensor:
    """Held-out R² of a ridge probe per component: ``x`` (n, components, d), ``y`` (n,)."""
    xt, yt, xv, yv = x[train], y[train], x[~train], y[~train]
    mean_x, mean_y = xt.mean(0), yt.mean()
    xt, xv = xt - mean_x, xv - mean_x
    scale = xt.std(0).clamp(min=1e-8)
    xt, xv = xt / scale, xv / scale
    gram = torch.einsum("ncd,nce->cde", xt, xt) + alpha * len(xt) * torch.eye(x.shape[-1], dtype=x.dtype)
    w = torch.linalg.solve(gram, torch.einsum("ncd,n->cd", xt, yt - mean_y))
    pred = torch.einsum("ncd,cd->nc", xv, w) + mean_y
    resid = ((yv[:, None] - pred) ** 2).sum(0)
    return 1 - resid / ((yv - yv.mean()) ** 2).sum().clamp(min=1e-12)


def probe_scores(adapter: Any, task: EditTask, kind: str, n_groups: int = 200) -> tuple[list[Component], np.ndarray]:
    components = _kind_components(adapter, kind)
    groups = [g[:2] for g in task.train_groups[:n_groups] if len(g) >= 2]
    if len(groups) < 4:
        raise TwopathError(f"{task.name}: the probe needs at least 4 groups of two inputs")
    raws = [m for g in groups for m in g]
    y = torch.as_tensor([i for g in groups for i in range(len(g))], dtype=torch.float64)
    train = torch.as_tensor([g % 2 == 0 for g in range(len(groups)) for _ in range(2)])
    acts = _activations(adapter, components, raws)
    scores = np.zeros(len(components))
    for layer in range(adapter.n_layers):
        idx = [i for i, c in enumerate(components) if c.layer == layer]
        if not idx:
            continue
        act = acts[(layer, kind)]
        x = act.reshape(act.shape[0], len(idx), -1)
        scores[idx] = _ridge_r2(x, y, train).clamp(min=0).cpu().numpy()
    return components, scores


def by_probe(adapter: Any, task: EditTask, kind: str, n_groups: int = 200) -> list[Component]:
    components, scores = probe_scores(adapter, task, kind, n_groups)
    threshold = 0.5 * float(scores.max())
    readable = [i for i in range(len(components)) if scores[i] >= threshold and scores[i] > 0]
    readable.sort(key=lambda i: (components[i].layer, -scores[i]))
    rest = [i for i in np.argsort(-scores, kind="stable") if i not in set(readable)]
    return [components[i] for i in [*readable, *rest]]


def _focus_units(adapter: Any, example: Example, focus: str) -> list[int]:
    return [i for i, u in enumerate(adapter.units(example)) if u.lower() == focus.lower()]


def by_bridge(adapter: Any, task: EditTask, kind: str, n_examples: int = 2, pool: Sequence[Component] | None = None
              ) -> list[Component]:
    from twopath.comparisons.bridges import component_input_attribution

    components = _kind_components(adapter, kind)
    if pool is None:
        pool = components if len(components) <= BRIDGE_POOL else by_ablation(adapter, task, kind)[:BRIDGE_POOL]
    scores = np.zeros(len(pool))
    examples = [e for e in _clean_examples(task, n_examples) if _focus_units(adapter, e, task.focus)]
    if not examples:
        raise TwopathError(f"{task.name}: {task.focus!r} is not a unit of any clean input")
    for example in examples:
        units = _focus_units(adapter, example, task.focus)
        for j, component in enumerate(pool):
            attribution = component_input_attribution(adapter, example, component, task.target)
            scores[j] += float(np.abs(attribution[units]).sum())
    ranked = _order(list(pool), scores)
    return ranked + [c for c in components if c not in set(ranked)]


def by_random(adapter: Any, kind: str, seed: int) -> list[Component]:
    components = _kind_components(adapter, kind)
    return [components[i] for i in np.random.default_rng(seed).permutation(len(components))]


def last_layer(adapter: Any, ranking: Sequence[Component]) -> list[Component]:
    last = max(c.layer for c in ranking)
    return [c for c in ranking if c.layer == last]
