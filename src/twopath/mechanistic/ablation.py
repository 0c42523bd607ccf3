"""Ablation: knock a component out and measure what breaks.

Ablating a component replaces its activation with a neutral value and reruns the model; the
drop in the target's output is the component's *necessity* for this decision. Two neutral values
are offered:

* ``zero`` — the activation is set to 0 (simple, but 0 may be far outside what the model ever
  sees, so the effect can overstate importance);
* ``mean`` — the activation is set to its mean over a reference set (the adapter's
  ``background``: held-out sentences or applicants), which removes the *information* the
  component carries for this input while keeping its typical magnitude;
* ``resample`` — the activation is taken from another real example of the reference set (for
  text, that example's activation averaged over its tokens), averaged over ``n_resamples``
  draws: the least out-of-distribution choice (Chan et al.'s causal scrubbing).

Sweeps exist per attention head, per neuron, per block (a layer's whole attention or MLP
output; for an MLP, a whole hidden layer) and per residual position (layer × token).

Effects are ``clean output - ablated output`` (positive: the component pushes toward the target)
in the run's output space; ``meta["probability"]`` holds the target probability under each
ablation. One batch row per component, so a sweep over 72 heads is one or two forward passes.

With ``prefix_cache`` (the default) the example's :class:`~twopath.runtime.trace.Trace` records
the residual stream entering every block, and the rows ablating a layer-``l`` component start
from it instead of recomputing the embeddings and blocks ``0..l-1``; the effects are the same.
It applies where it pays (``adapter.resume_pays``: transformers); an MLP's layers are cheaper
than the extra forward calls, so there one full batched pass runs.

**Long inputs.** A position sweep has ``layers x positions`` rows and a row costs about its number
of positions, so it grows with the square of the length. Beyond ``GROUP_ABOVE_TOKENS`` (128)
positions, position ablation (and per-position patching) **group positions by word** — the units
the report shows: one row ablates every token of a word at once (special tokens and a prompt's
template stay one position each), named by the word's first position; ``meta["position_groups"]``
lists the positions of each group. Grouping by word alone leaves the sweep quadratic (a 256-token
passage has ~190 words), so beyond ``MAX_POSITION_GROUPS`` (64) groups the words are merged into
that many spans of consecutive words, the first and the last position (where an encoder and a
decoder read) staying alone: the rows then stop growing with the length and the sweep grows
linearly, through the cost of a row. Rows run in batches of the adapter's memory budget
(:meth:`~twopath.runtime.adapter.ModelAdapter.chunk`).
"""

from __future__ import annotations

import weakref
from operator import attrgetter
from typing import Any

import numpy as np
import torch

from twopath.mechanistic.base import (
    MECHANISTIC_METHODS,
    InterventionMethod,
    logits_output,
    sweep,
)
from twopath.runtime.adapter import OutputSpace
from twopath.runtime.evaluator import background_key
from twopath.runtime.interventions import (
    Edit,
    MaskedAblation,
    ablate,
    example_activations,
    mean_value,
)
from twopath.runtime.trace import Trace, caches, repeat_inputs
from twopath.types import Component, Example, TwopathError

MODES = ("zero", "mean", "resample")
#: per-position sweeps group tokens by word beyond this many positions
GROUP_ABOVE_TOKENS = 128
#: ... and merge the words into at most this many spans of consecutive words
MAX_POSITION_GROUPS = 64


def position_groups(adapter: Any, example: Example, n_positions: int,
                    above: int | None = None) -> list[list[int]] | None:
    """Positions grouped by the unit (word) they belong to, in order, other positions alone; ``None``
    (one group per position) up to ``above`` positions. Read from the adapter's own merge of
    per-position scores into units, so every tokenizer groups as its attributions do."""
    if n_positions <= (GROUP_ABOVE_TOKENS if above is None else above):
        return None
    owner = []
    for p in range(n_positions):
        one = np.zeros(n_positions)
        one[p] = 1.0
        units = np.flatnonzero(adapter.merge_to_units(example, one))
        owner.append(int(units[0]) if len(units) else None)
    groups: list[list[int]] = []
    index: dict[int, int] = {}
    for p, unit in enumerate(owner):
        if unit is None:
            groups.append([p])
        elif unit in index:
            groups[index[unit]].append(p)
        else:
            index[unit] = len(groups)
            groups.append([p])
    return spans(groups, MAX_POSITION_GROUPS)


def spans(groups: list[list[int]], most: int) -> list[list[int]]:
    """At most ``most`` groups: the first and last stay alone, the ones between are merged into
    runs of consecutive groups of (nearly) equal count."""
    if len(groups) <= most or most < 3:
        return groups
    middle = np.array_split(np.arange(1, len(groups) - 1), most - 2)
    return [groups[0], *[[p for i in run for p in groups[i]] for run in middle if len(run)], groups[-1]]


def each_masked(adapter: Any, inputs: dict[str, Any], components: list[Component], target: int,
                space: OutputSpace) -> tuple[np.ndarray, np.ndarray]:
    """Mean-ablate each component alone through one keep-mask per row (:class:`MaskedAblation`:
    one hook per layer blends the whole batch), for models whose blocks are cheaper than the
    per-edit bookkeeping of :func:`sweep` (an MLP: its 192-neuron sweep was per-call overhead).
    The hooks are built once per adapter, component list and background (:class:`_EachMasked`)."""
    if not components:
        return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.float32)
    return _target_rows(adapter, torch.cat(_EachMasked.of(adapter, components, inputs).logits(adapter, inputs)).float(),
                        target, space)


def _clean_and_each_masked(adapter: Any, trace: Trace, components: list[Component], target: int,
                           space: OutputSpace) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(clean output, clean probability, outputs, probabilities) of :func:`each_masked`, the
    clean row read out with the ablated rows: one output call instead of two (row-wise, so the
    numbers are those of :func:`~twopath.mechanistic.base.logits_output` on the clean logits)."""
    clean = trace.logits  # computed before any hook is registered
    rows = _EachMasked.of(adapter, components, trace.inputs)  # built (reference means) outside inference mode
    with torch.inference_mode():  # read out at once: nothing here needs autograd's bookkeeping
        ablated = rows.logits(adapter, trace.inputs)
        outputs, probs = _target_rows(adapter, torch.cat([clean, *ablated]).float(), target, space)
    return float(outputs[0]), float(probs[0]), outputs[1:], probs[1:]


def _target_rows(adapter: Any, logits: torch.Tensor, target: int, space: OutputSpace) -> tuple[np.ndarray, np.ndarray]:
    """(explained output, target probability) of every row of ``logits``."""
    return adapter.output(logits, target, space).cpu().numpy(), torch.softmax(logits, -1)[:, target].cpu().numpy()


_KIND = attrgetter("kind")


class _EachMasked:
    """The rows of :func:`each_masked`, ready to run: row ``i`` keeps every component but the
    ``i``-th, in passes of at most ``adapter.rows_per_pass`` rows, each with its blending hooks.

    Memoized in the adapter's cache (:func:`~twopath.runtime.trace.caches`) per background
    (:func:`~twopath.runtime.evaluator.background_key`), device, pass size and component list:
    the reference means inside depend on the weights, and :func:`~twopath.runtime.trace.forget`
    (called whenever the weights change) drops them with the cache. Building it costs more than
    the 192-row forward pass of the loan MLP it serves. The component list is matched by
    equality, a pointer comparison when it comes from the adapter's component cache (hashing
    192 components would cost a third of that forward pass).
    """

    def __init__(self, adapter: Any, components: tuple[Component, ...], step: int):
        self.components = components
        masked = MaskedAblation(adapter, components)
        masked.adapter = weakref.proxy(adapter)  # the cache must not keep its own key (the adapter) alive
        keep = ~np.eye(len(components), dtype=bool)
        self.passes = [(len(rows), masked.hooks(rows)) for rows in (keep[lo : lo + step] for lo in range(0, len(keep), step))]

    @classmethod
    def of(cls, adapter: Any, components: list[Component], inputs: dict[str, Any]) -> _EachMasked:
        step = adapter.rows_per_pass(inputs)
        wanted = tuple(components)
        device = next(iter(inputs.values())).device  # where the rows run (the model's device)
        key = ("each masked", background_key(adapter), str(device), step, len(wanted))
        cache = caches(adapter).evaluators
        built = cache.get(key)
        if not isinstance(built, cls) or built.components != wanted:
            built = cache[key] = cls(adapter, wanted, step)
        return built

    def logits(self, adapter: Any, inputs: dict[str, Any]) -> list[torch.Tensor]:
        """Logits of every row on ``inputs`` (the example, batch of one), one tensor per pass."""
        with torch.no_grad():
            return [adapter.run_hooked(repeat_inputs(inputs, n), hooks) for n, hooks in self.passes]


def grouped(components: list[Component], groups: list[list[int]] | None) -> tuple[list[Component], list[list[Component]]]:
    """Per-position ``resid`` components merged into one per (layer, group), named by the group's
    first position, with the positions each stands for (other components unchanged)."""
    if groups is None:
        return components, [[c] for c in components]
    first = {g[0]: g for g in groups}
    named, members = [], []
    for c in components:
        if c.kind != "resid":
            named.append(c)
            members.append([c])
        elif c.position in first:
            named.append(c)
            members.append([Component("resid", c.layer, position=p) for p in first[c.position]])
    return named, members


class _Ablation(InterventionMethod):
    kind = "neuron"

    def __init__(self, output: OutputSpace = "logit_diff", batch_size: int = 128, mode: str = "mean",
                 n_resamples: int = 8, seed: int = 0, prefix_cache: bool = True):
        super().__init__(output, batch_size)
        self.mode = mode
        self.n_resamples = n_resamples
        self.seed = seed
        self.prefix_cache = prefix_cache

    def _effects(self, adapter: Any, example: Example, target: int, corrupted: Example | None) -> dict[str, Any]:
        if self.mode not in MODES:
            raise TwopathError(f"unknown ablation mode {self.mode!r}; expected one of {list(MODES)}")
        trace = Trace.of(adapter, example)
        inputs = trace.inputs
        components = self.components(adapter, inputs)
        groups = self.groups(adapter, example, inputs)
        if (self.mode == "mean" and groups is None and not adapter.resume_pays
                and set(map(_KIND, components)) == {"neuron"}):
            clean, clean_prob, outputs, probs = _clean_and_each_masked(adapter, trace, components, target, self.output)
        else:
            components, members = grouped(components, groups)
            clean, clean_prob = logits_output(adapter, trace.logits, target, self.output)
            prefix = trace if self.prefix_cache and adapter.resume_pays else None
            if self.mode == "resample":
                outputs, probs = self._resampled(adapter, inputs, components, target, prefix, members)
            else:
                edits = iter(ablate(adapter, [m for part in members for m in part], self.mode))
                rows = [[next(edits) for _ in part] for part in members]
                outputs, probs, _ = sweep(adapter, inputs, rows, target, self.output, self.batch_size,
                                          prefix_cache=prefix or False)
        meta: dict[str, Any] = {"mode": self.mode, "clean_probability": clean_prob, "probability": np.asarray(probs).tolist(),
                                "n_forward_rows": len(components) * (self.n_resamples if self.mode == "resample" else 1) + 1}
        if groups is not None:
            meta["position_groups"] = groups
            meta["grouped_by"] = "word"
        return {
            "metric": f"{self.output}_drop",
            "components": components,
            "effects": clean - outputs,
            "clean": clean,
            "meta": meta,
        }

    def groups(self, adapter: Any, example: Example, inputs: dict[str, Any]) -> list[list[int]] | None:
        """Position groups of a per-position sweep (``None``: every component alone)."""
        return None

    def _resampled(self, adapter: Any, inputs: dict[str, Any], components: list[Component], target: int,
                   prefix: Trace | None = None, members: list[list[Component]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        reference = adapter.reference_inputs()
        n_ref = next(iter(reference.values())).shape[0]
        rng = np.random.default_rng(self.seed)
        picks = rng.choice(n_ref, size=min(self.n_resamples, n_ref), replace=False)
        index = torch.as_tensor(picks, device=adapter.device)
        donors = example_activations(adapter, components, {k: v[index] for k, v in reference.items()})
        members = members or [[c] for c in components]
        rows = [[Edit(0, m, mean_value(adapter, m, donor)) for m in part] for donor in donors for part in members]
        outputs, probs, _ = sweep(adapter, inputs, rows, target, self.output, self.batch_size,
                                  prefix_cache=prefix or False)
        shape = (len(donors), len(components))
        return outputs.reshape(shape).mean(0), probs.reshape(shape).mean(0)

    def components(self, adapter: Any, inputs: dict[str, Any]) -> list[Component]:
        return adapter.components(self.kind)


@MECHANISTIC_METHODS.register("head_ablation", modalities=("text",))
class HeadAblation(_Ablation):
    """Ablate each attention head alone (zero or mean); effect on the target output."""

    kind = "head"
    what_it_tells_you = "how much the decision needs each attention head"


@MECHANISTIC_METHODS.register("neuron_ablation")
class NeuronAblation(_Ablation):
    """Ablate each hidden neuron alone (zero, mean or resample); effect on the target output."""

    kind = "neuron"
    what_it_tells_you = "how much the decision needs each hidden neuron"

    def __init__(self, output: OutputSpace = "logit_diff", batch_size: int = 128, mode: str = "mean",
                 n_resamples: int = 8, seed: int = 0, layers: tuple[int, ...] | None = None,
                 prefix_cache: bool = True):
        super().__init__(output, batch_size, mode, n_resamples, seed, prefix_cache)
        self.layers = layers

    def components(self, adapter: Any, inputs: dict[str, Any]) -> list[Component]:
        every: list[Component] = adapter.components("neuron")
        return every if self.layers is None else [c for c in every if c.layer in self.layers]


@MECHANISTIC_METHODS.register("block_ablation")
class BlockAblation(_Ablation):
    """Ablate each layer's whole attention block and MLP block (an MLP's whole hidden layer)."""

    what_it_tells_you = "how much the decision needs each layer's attention and MLP as a whole"

    def components(self, adapter: Any, inputs: dict[str, Any]) -> list[Component]:
        return adapter.components("block")


@MECHANISTIC_METHODS.register("position_ablation", modalities=("text",))
class PositionAblation(_Ablation):
    """Ablate the residual stream at each layer × token position."""

    what_it_tells_you = "which token positions, after which layer, the decision needs"

    def components(self, adapter: Any, inputs: dict[str, Any]) -> list[Component]:
        return adapter.components("resid", inputs)

    def groups(self, adapter: Any, example: Example, inputs: dict[str, Any]) -> list[list[int]] | None:
        return position_groups(adapter, example, int(next(iter(inputs.values())).shape[1]))
