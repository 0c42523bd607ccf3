"""The model-randomization sanity check (Adebayo et al., 2018, "Sanity Checks for Saliency Maps").

An explanation of a model's decision should depend on the model. The check re-initialises the
model's weights with random values, layer by layer from the top down (*cascading*
randomization), re-runs every explanation method on the damaged copy after each step, and
compares the new scores with the original ones. A method whose explanation barely changes when
the weights that produced the decision are destroyed is explaining the input (or its own
prior), not the model: it **fails**. A method **passes** when, with every layer randomized, the
Spearman rank correlation of its absolute scores with the original ones falls below
``threshold`` in absolute value. With few units (5 loan features, an 8-word sentence) one
random draw gives a coarse, noisy Spearman, so the check can repeat the whole cascade with
``repeats`` seeds and decides on the mean.

Layers, from the top down:

* text models — the classifier head (every parameter outside the embeddings and the
  transformer layers: BERT's pooler and classifier, DistilBERT's pre-classifier and
  classifier, RoBERTa's classification head), then the transformer layers from the last
  downwards; optionally the embeddings last;
* tabular MLPs — the output ``Linear``, then the hidden ``Linear`` layers from the last
  downwards (``L5`` is the ``Linear`` that computes hidden layer 5).

A randomized weight matrix or bias is redrawn from ``N(0, std)`` with the std of the values it
replaces (so activations keep their scale); normalization layers are reset to their initial
state (gain 1, shift 0). The draws come from one seeded generator, so the check is repeatable.
Every step works on a copy of the adapter whose redrawn layers are its own (the parameters the
cascade never redraws, a text model's embeddings, are shared read-only): the original model is
never touched, and the copy's cache (traces and the coalition evaluators shared by SHAP, LIME
and occlusion) is dropped before each explanation, so no method is served the original model's
outputs.

The blocks below a step's randomized ones are still the original's, so on transformers every
perturbation row of a step resumes from the original model's state entering the first randomized
block, computed once per row for the whole check (:mod:`twopath.runtime.prefix`): the same logits
for about half the block computations of full passes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from twopath.metrics import spearman, top_k_jaccard
from twopath.runtime.prefix import SharedPrefix
from twopath.runtime.text import _under
from twopath.runtime.trace import forget
from twopath.types import TwopathError

#: ``explain(adapter) -> {method name: scores}``, the same units for every adapter it is given.
Explain = Callable[[Any], Mapping[str, Any]]
Block = tuple[str, tuple[str, ...]]  # (label, module-name prefixes)

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def layer_blocks(adapter: Any, embeddings: bool = False) -> list[Block]:
    """The model's randomizable layers from the top down, as (label, module-name prefixes)."""
    blocks: list[Block] = adapter.parameter_blocks(embeddings)
    return blocks


def detached_copy(adapter: Any, randomized: Sequence[str] | None = None) -> Any:
    """A deep copy of ``adapter`` (model included), with nothing memoized.

    The tokenizer is shared, not copied: it holds no model state. With ``randomized`` (the
    module-name prefixes a cascade will redraw), every parameter none of whose names lies under
    them is shared with ``adapter`` too: the copy never writes to it, and a text model's
    embeddings (half of MiniLM's weights, more of an LLM's) are not duplicated. A parameter
    tied to a redrawn one (a decoder's output head and its input embedding) is copied. The copy
    is a new object, so its cache (:func:`twopath.runtime.trace.caches`) starts empty.
    """
    memo: dict[int, Any] = {}
    tokenizer = getattr(adapter, "tokenizer", None)
    if tokenizer is not None:
        memo[id(tokenizer)] = tokenizer
    if randomized is not None:
        memo.update({id(p): p for p in untouched_parameters(adapter.model, randomized)})
    return copy.deepcopy(adapter, memo)


def redrawn(blocks: Sequence[Block]) -> list[str]:
    """The module-name prefixes a cascade over ``blocks`` redraws."""
    return [prefix for _, prefixes in blocks for prefix in prefixes]


def untouched_parameters(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Parameter]:
    """The parameters of ``model`` none of whose names (tied ones have several) is under ``prefixes``."""
    names: dict[int, list[str]] = {}
    params: dict[int, nn.Parameter] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
        params[id(param)] = param
    return [params[i] for i, found in names.items()
            if not any(_under(name, prefix) for name in found for prefix in prefixes)]


def clear_caches(adapter: Any) -> None:
    """Drop everything memoized for ``adapter`` (traces, coalition evaluators, means)."""
    forget(adapter)


@torch.no_grad()
def randomize_block(model: nn.Module, prefixes: Sequence[str], generator: torch.Generator) -> int:
    """Re-initialise, in place, every parameter of the modules under ``prefixes``.

    Returns the number of parameter tensors changed. Weights and biases are redrawn from
    ``N(0, std)`` with the std of the values they replace; normalization layers are reset.
    """
    changed = 0
    for name, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        if not own or not any(_under(name, prefix) for prefix in prefixes):
            continue
        if isinstance(module, _NORMS):
            module.reset_parameters()
            changed += len(own)
            continue
        for _, param in own:
            std = float(param.detach().float().std()) if param.numel() > 1 else 0.0
            if not math.isfinite(std) or std == 0.0:
                std = float(param.detach().abs().mean()) if param.numel() else 0.0
            draw = torch.randn(param.shape, generator=generator, dtype=torch.float32) * std
            param.copy_(draw.to(param.dtype))
            changed += 1
    if changed == 0:
        raise TwopathError(f"no parameters under {list(prefixes)}")
    return changed


def randomized_copy(adapter: Any, n_blocks: int | None = None, seed: int = 0,
                    embeddings: bool = False) -> Any:
    """A copy of ``adapter`` with its top ``n_blocks`` layers randomized (all by default); the
    parameters it does not redraw are shared (:func:`detached_copy`)."""
    blocks = layer_blocks(adapter, embeddings)
    n = _n_steps(n_blocks, len(blocks))
    clone = detached_copy(adapter, redrawn(blocks[:n]))
    generator = torch.Generator().manual_seed(seed)
    for _, prefixes in blocks[:n]:
        randomize_block(clone.model, prefixes, generator)
    clear_caches(clone)
    return clone


def _n_steps(n_steps: int | None, n_blocks: int) -> int:
    if n_steps is None:
        return n_blocks
    if not 1 <= n_steps <= n_blocks:
        raise TwopathError(f"n_steps must be between 1 and {n_blocks} (the model's randomizable layers), got {n_steps}")
    return n_steps


def _as_scores(explained: Mapping[str, Any], reference: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    if not explained:
        raise TwopathError("explain(adapter) returned no methods")
    scores = {name: np.asarray(values, dtype=float).ravel() for name, values in explained.items()}
    if reference is not None:
        if set(scores) != set(reference):
            raise TwopathError(f"explain returned methods {sorted(scores)} on the randomized model, {sorted(reference)} on the original")
        for name, values in scores.items():
            if values.shape != reference[name].shape:
                raise TwopathError(f"{name}: {values.shape[0]} scores on the randomized model, {reference[name].shape[0]} on the original")
    return scores


def _compare(method: str, step: int, label: str, original: np.ndarray, randomized: np.ndarray, k: int) -> dict[str, Any]:
    finite = bool(np.isfinite(original).all() and np.isfinite(randomized).all())
    nan = float("nan")
    return {
        "method": method, "step": step, "randomized": label,
        "spearman_abs": spearman(np.abs(original), np.abs(randomized)) if finite else nan,
        "spearman_signed": spearman(original, randomized) if finite else nan,
        f"top{k}_jaccard": top_k_jaccard(original, randomized, k) if finite else nan,
    }


def verdict(final_spearman_abs: float, threshold: float = 0.5) -> str:
    """``passes`` if the explanation decorrelated from the original, ``fails`` if it did not."""
    if not math.isfinite(final_spearman_abs):
        return "inconclusive"
    return "passes" if abs(final_spearman_abs) < threshold else "fails"


def randomization_check(adapter: Any, explain: Explain, n_steps: int | None = None, seed: int = 0,
                        threshold: float = 0.5, k: int = 3, embeddings: bool = False,
                        repeats: int = 1, at_steps: Sequence[int] | None = None) -> pd.DataFrame:
    """Cascading model randomization: one row per method, repeat and step, with verdicts.

    ``explain(adapter)`` returns method name -> scores; it is called once on ``adapter`` and then,
    for each of ``repeats`` independent cascades (seeds ``seed``, ``seed + 1``, ...), on a copy
    whose top 1, 2, ..., ``n_steps`` layers (all by default, see :func:`layer_blocks`) are
    randomized. Step 0 is the original against itself.

    Columns: ``method``, ``repeat``, ``seed``, ``step``, ``randomized`` (the layers randomized
    so far, top first), ``spearman_abs`` (rank correlation of |scores|), ``spearman_signed``,
    ``top{k}_jaccard`` and ``verdict``: ``passes`` if the mean ``spearman_abs`` at the last step
    over the repeats is below ``threshold`` in absolute value, ``fails`` otherwise. With few
    units (5 loan features, an 8-word sentence) one cascade's Spearman is coarse and noisy; use
    ``repeats >= 3`` for a verdict worth quoting. With ``n_steps`` below the number of layers
    the verdict is about that partial randomization.
    """
    if not 0.0 < threshold <= 1.0:
        raise TwopathError(f"threshold must be in (0, 1], got {threshold}")
    if repeats < 1:
        raise TwopathError(f"repeats must be at least 1, got {repeats}")
    blocks = layer_blocks(adapter, embeddings)
    n = _n_steps(n_steps, len(blocks))
    explained = _explained_steps(at_steps, n)
    starts = {step: _first_random_block(adapter, blocks[:step]) for step in explained}
    prefix = shared_prefix(adapter, [s for s in starts.values() if s is not None])
    original = _as_scores(_explain_original(adapter, explain, prefix))
    rows: list[dict[str, Any]] = []
    for repeat in range(repeats):
        base = {"repeat": repeat, "seed": seed + repeat}
        rows += [{**base, **_compare(m, 0, "none", s, s, k)} for m, s in original.items()]
        clone = detached_copy(adapter, redrawn(blocks[:n]))
        clone.shared_prefix = prefix
        generator = torch.Generator().manual_seed(seed + repeat)
        labels: list[str] = []
        for step, (label, prefixes) in enumerate(blocks[:n], start=1):
            randomize_block(clone.model, prefixes, generator)
            labels.append(label)
            if step not in explained:
                continue
            clear_caches(clone)  # the previous step's memoized outputs belong to another model
            if prefix is not None:
                prefix.start = starts[step]
            scores = _as_scores(explain(clone), original)
            rows += [{**base, **_compare(m, step, "+".join(labels), original[m], scores[m], k)} for m in original]
        del clone  # before the next cascade copies the model: one copy alive at a time
    frame = pd.DataFrame(rows)
    final = frame[frame["step"] == n].groupby("method", sort=False)["spearman_abs"].mean()
    frame["verdict"] = frame["method"].map({m: verdict(float(final[m]), threshold) for m in original})
    frame = frame[["method", "repeat", "seed", "step", "randomized", "spearman_abs", "spearman_signed",
                   f"top{k}_jaccard", "verdict"]]
    frame.attrs.update({"threshold": threshold, "seed": seed, "repeats": repeats, "n_steps": n,
                        "layers": [b[0] for b in blocks]})
    return frame


def _explain_original(adapter: Any, explain: Explain, prefix: SharedPrefix | None) -> Mapping[str, Any]:
    """``explain(adapter)``, the rows it runs recording their states into ``prefix`` on the way
    (the adapter is left as it was)."""
    if prefix is None:
        return explain(adapter)
    before = adapter.shared_prefix
    adapter.shared_prefix = prefix
    try:
        return explain(adapter)
    finally:
        adapter.shared_prefix = before


def shared_prefix(adapter: Any, depths: Sequence[int]) -> SharedPrefix | None:
    """The cascade's shared clean prefix (:mod:`twopath.runtime.prefix`) where resuming a pass
    at a block pays (transformers; an MLP's layers cost less than the extra calls)."""
    if not depths or not getattr(adapter, "resume_pays", False) or not adapter.can_resume():
        return None
    return SharedPrefix(adapter, depths)


def _first_random_block(adapter: Any, randomized: Sequence[Block]) -> int | None:
    """The lowest block a copy with ``randomized`` layers no longer shares with ``adapter`` (the
    number of blocks when only the head is random); ``None`` when the embeddings are random."""
    labels = [label for label, _ in randomized]
    if "embeddings" in labels:
        return None
    layers = [int(label[1:]) for label in labels if label.startswith("L") and label[1:].isdigit()]
    if len(layers) + labels.count("head") != len(labels):
        return None  # a block this function does not know: share nothing
    return min(layers, default=adapter.n_layers)


def _explained_steps(at_steps: Sequence[int] | None, n: int) -> set[int]:
    if at_steps is None:
        return set(range(1, n + 1))
    steps = {int(x) for x in at_steps}
    if not steps or min(steps) < 1 or max(steps) > n:
        raise TwopathError(f"at_steps must be cascade steps between 1 and {n}, got {sorted(steps)}")
    return steps | {n}


def coarse_steps(n_blocks: int, n_points: int = 4) -> list[int]:
    """About ``n_points`` cascade steps spread from the top block to all blocks (always the first,
    the second and the last): the curve of a long input's check."""
    if n_blocks <= n_points:
        return list(range(1, n_blocks + 1))
    spread = np.rint(np.linspace(2, n_blocks, n_points - 1)).astype(int).tolist()
    return sorted({1, *spread})


def verdicts(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per method: the verdict and the correlations at the last step, averaged over the repeats
    (JSON-friendly)."""
    last = frame[frame["step"] == frame["step"].max()]
    jaccard = next(c for c in frame.columns if c.endswith("_jaccard"))
    out: dict[str, dict[str, Any]] = {}
    for method, group in last.groupby("method", sort=False):
        out[str(method)] = {
            "verdict": str(group["verdict"].iloc[0]),
            "spearman_abs": float(group["spearman_abs"].mean()),
            "spearman_signed": float(group["spearman_signed"].mean()),
            jaccard: float(group[jaccard].mean()),
            "spearman_abs_per_repeat": [float(x) for x in group["spearman_abs"]],
            "randomized": str(group["randomized"].iloc[0]),
        }
    return out
