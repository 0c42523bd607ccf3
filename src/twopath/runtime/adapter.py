"""The adapter contract: what every model offers the methods of both paths, with one meaning each.

A method never asks what kind of model it has. It asks the adapter for the example's **units**
(words of a sentence, features of a row), for model **inputs** with some units absent, for the
**logits** of a batch, for a differentiable **embedding** of the input and the logits computed
from it, for a **baseline** embedding, for **merging** per-position scores back into units, and
for the named **sites** where components live. Text and tabular adapters implement the same
verbs with the same meanings, so a method written once runs on both.

Both paths explain the same scalar: by default the target's **logit difference**, i.e. its
log-odds ``log p_t / (1 - p_t)`` (for two classes exactly ``logit_t - logit_other``), or the
target **probability**. The choice is made once per run and recorded in every result's meta.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from twopath.types import Component, Example, TwopathError

OutputSpace = Literal["logit_diff", "probability"]
OUTPUT_SPACES: tuple[str, ...] = ("logit_diff", "probability")
Inputs = dict[str, torch.Tensor]
HookKind = Literal["forward", "pre"]


#: activation bytes per forward pass on the CPU. A pass whose activations fit the processor's
#: cache runs faster per row: on a 2-core EPYC (32 MiB L3), MiniLM at 256 tokens costs about
#: 44 ms a row in passes of 4 rows and 60-75 ms in passes of 16-64 (eager attention's scores
#: leave the cache). A 256-token explanation took 216 s at 64 MiB against 285 s at 256 MiB
#: (32 MiB: 218 s, 16 MiB: 250 s), and peak memory fell from 1.6 to 1.1 GB
#: (docs/performance.md, stop 25).
CPU_PASS_BUDGET = 64 * 2**20
#: activation bytes per pass on a GPU (not measured on one: the earlier default kept) and per
#: pass with a backward pass on any device
PASS_BUDGET = 256 * 2**20


def target_output(logits: torch.Tensor, target: int, space: OutputSpace = "logit_diff") -> torch.Tensor:
    """The explained scalar per row of ``logits`` (n, n_labels)."""
    if space == "probability":
        return torch.softmax(logits, dim=-1)[:, target]
    if space != "logit_diff":
        raise ValueError(f"unknown output space {space!r}; expected one of {OUTPUT_SPACES}")
    others = torch.cat([logits[:, :target], logits[:, target + 1 :]], dim=-1)
    return logits[:, target] - torch.logsumexp(others, dim=-1)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The result boundary: a float64 numpy copy of a tensor on any device, in any dtype."""
    return tensor.detach().to("cpu", torch.float64).numpy()


def position_scores(scores: Any) -> np.ndarray:
    """Scores per position from an attribution over the embedding (summed over its width)."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach()
        if scores.dim() == 3:
            scores = scores.sum(-1)[0]
        return scores.float().cpu().numpy()
    return np.asarray(scores)


@dataclass(frozen=True)
class Target:
    """The explained class, resolved once: its index in the logits and its label."""

    index: int
    label: str


@dataclass(frozen=True)
class Site:
    """Where a component's activation lives: a module, read on its input (``pre``) or output
    (``forward``); ``occurrence`` picks one call of a module applied several times per forward
    pass (ALBERT's shared layer), ``None`` every call."""

    module: nn.Module
    kind: HookKind
    occurrence: int | None = None
    #: the block whose input gives (batch, positions) when the module sees them flattened
    unflatten: nn.Module | None = None


@dataclass(frozen=True)
class ParameterSlice:
    """Entries ``start:stop`` along axis ``dim`` of the model parameter ``name`` (as in
    ``model.named_parameters()``): part of what one component owns (``parameter_slices``)."""

    name: str
    dim: int
    start: int
    stop: int


class ModelAdapter(ABC):
    """The one interface the methods, comparisons and reports program against.

    Attributes every adapter sets: ``model`` (the ``nn.Module``), ``name``, ``labels``,
    ``n_layers``, ``n_heads`` (0 without attention), ``architecture``, ``family`` and
    ``background`` (reference examples for mean ablation and masking; the user's).
    """

    #: "text" or "tabular": used by the method registry to say which methods apply, never by a
    #: method to branch.
    modality: ClassVar[str]
    #: the baseline names :meth:`baseline` accepts (the first is the default).
    baselines: ClassVar[tuple[str, ...]]
    #: whether inputs are sequences of positions (tokens), so residual positions exist
    positional: ClassVar[bool] = False
    #: the component kind rankings, circuits and the edit test use by default
    default_component: ClassVar[str] = "neuron"

    model: nn.Module
    name: str
    labels: tuple[str, ...]
    n_layers: int
    n_heads: int
    architecture: str
    family: Any  # the architecture family: a runtime.families.Family, or "mlp" for tables
    background: Any

    # --- identity ---------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        param = next(self.model.parameters(), None)
        return param.dtype if param is not None else torch.float32

    def target(self, label: str | int) -> Target:
        """The class ``label`` names, by one rule for every adapter (text and tabular alike):

        1. a Python ``int`` is an index;
        2. ``"#N"`` is always index ``N`` (the way to ask for an index whatever the labels are);
        3. any other string is first a **label name**, case-insensitive — so with labels named by
           digits (``{0: "1", 1: "0"}``), ``"0"`` is the label ``"0"`` (index 1), never index 0;
        4. a string of digits that names no label is an index.
        """
        lowered = [lab.lower() for lab in self.labels]
        if isinstance(label, str) and label.startswith("#") and label[1:].isascii() and label[1:].isdigit():
            index = int(label[1:])
            if 0 <= index < len(self.labels):
                return Target(index, self.labels[index])
            raise TwopathError(f"target index {label} is out of range: the model has {len(self.labels)} labels "
                               f"(#0 to #{len(self.labels) - 1}: {list(self.labels)})")
        if isinstance(label, str) and label.lower() in lowered:
            index = lowered.index(label.lower())
            return Target(index, self.labels[index])
        if (isinstance(label, int) and not isinstance(label, bool)) or (isinstance(label, str) and label.isascii() and label.isdigit()):
            index = int(label)
            if 0 <= index < len(self.labels):
                return Target(index, self.labels[index])
        raise TwopathError(f"unknown target label {label!r}; the model's labels are {list(self.labels)} "
                           "(or #N for the N-th, from #0)")

    def label_index(self, label: str | int) -> int:
        return self.target(label).index

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "architecture": self.architecture, "n_layers": self.n_layers,
                "n_heads": self.n_heads or None}

    def capabilities(self) -> frozenset[str]:
        """What the model offers methods that need more than the contract: ``positions``
        (token sequences), ``attention`` (attention weights), ``linear_residual`` (a pre-norm
        residual stream read out linearly once the final norm's scale is frozen: direct
        effects), ``residual_parts`` (the readout splits into one part per head and MLP: exactly
        with a linear residual, to first order through an encoder's linearised head: DLA)."""
        return frozenset()

    # --- examples and inputs ----------------------------------------------------------------

    @abstractmethod
    def check_example(self, example: Example) -> Any:
        """The example's raw input, validated (one clear error otherwise)."""

    @abstractmethod
    def units(self, example: Example) -> tuple[str, ...]:
        """The names of the units attributions are given over (words or features)."""

    @abstractmethod
    def inputs(self, example: Example) -> Inputs:
        """Model inputs for the example alone (batch of one), on the model's device."""

    def forward_inputs(self, example: Example) -> Inputs:
        return self.inputs(example)

    @abstractmethod
    def masked_inputs(self, example: Example, keep: np.ndarray, *, background_size: int = 50
                      ) -> tuple[Inputs, int]:
        """Inputs for each row of the boolean unit mask ``keep`` (n, n_units), absent units
        replaced; returns ``(inputs, group)``: ``n * group`` rows whose outputs average in groups
        of ``group`` consecutive rows (1 for text, where an absent word is masked; for tables
        the first ``background_size`` background rows, whose values an absent feature takes)."""

    @abstractmethod
    def batch_inputs(self, raws: Sequence[Any]) -> Inputs:
        """Model inputs for many raw examples at once (sentences padded; rows stacked)."""

    @abstractmethod
    def data_features(self, raws: Sequence[Any], words: Sequence[str] | None = None) -> Any:
        """A DataFrame of interpretable input features, one row per raw example: the raw
        features of a table, or 0/1 presence of each of ``words`` in a sentence."""

    @abstractmethod
    def without_units(self, example: Example, units: Sequence[int]) -> Example:
        """The example with the given units made neutral, keeping the input's shape."""

    @abstractmethod
    def reference_inputs(self) -> Inputs:
        """The background as one batch of model inputs (for mean and resample ablation)."""

    @abstractmethod
    def position_mask(self, inputs: Inputs) -> torch.Tensor | None:
        """(n, positions) weights of the real positions of a batch, ``None`` without positions."""

    def tokens(self, example: Example) -> list[str] | None:
        """The model's tokens for the example (``None`` without positions)."""
        return None

    def reading_position(self, inputs: Inputs) -> torch.Tensor:
        """(n,) the position the classifier reads (0 without positions)."""
        n = next(iter(inputs.values())).shape[0]
        return torch.zeros(n, dtype=torch.long, device=self.device)

    # --- running ----------------------------------------------------------------------------

    @abstractmethod
    def run(self, inputs: Inputs) -> torch.Tensor:
        """One forward pass (gradients allowed) returning logits (n, n_labels)."""

    def run_hooked(self, inputs: Inputs, hooks: Sequence[Any]) -> torch.Tensor:
        """:meth:`run` with ``hooks`` (:class:`~twopath.runtime.hooks.Hook`) registered for the
        pass and removed after it; an adapter may apply them in its own loop instead (the
        tabular MLP does)."""
        from twopath.runtime.hooks import hooked

        with hooked(self.model, hooks):
            return self.run(inputs)

    #: rows per forward pass when a caller gives none (``None``: the whole batch at once)
    batch_size: int | None = None
    #: a hard cap on rows per forward pass (``--batch-size``); ``None``: from :meth:`pass_budget`
    max_rows: int | None = None
    #: bytes of activations one forward pass may hold (sets the automatic cap); ``None``: by
    #: device (:meth:`pass_budget`). Set it to trade memory for rows per pass.
    memory_budget: int | None = None

    def pass_budget(self, gradients: bool = False) -> int:
        """``memory_budget`` if set, else :data:`CPU_PASS_BUDGET` for a forward pass on the CPU
        and :data:`PASS_BUDGET` for a pass on a GPU or a pass with a backward pass (on the CPU a
        backward pass is faster in larger batches: IG on 48 words took 1.7 s in passes of one
        row, 0.8 s in passes of six)."""
        if self.memory_budget is not None:
            return int(self.memory_budget)
        return CPU_PASS_BUDGET if self.device.type == "cpu" and not gradients else PASS_BUDGET

    def rows_per_pass(self, inputs: Inputs, budget: int | None = None) -> int:
        """The most rows of ``inputs`` one forward pass may take: ``max_rows`` if set, else what
        fits ``budget`` (default :meth:`pass_budget`) at :meth:`row_bytes` per row."""
        if self.max_rows is not None:
            return max(1, int(self.max_rows))
        return max(1, (budget or self.pass_budget()) // max(1, self.row_bytes(inputs)))

    def row_bytes(self, inputs: Inputs) -> int:
        """Estimated activation bytes of one row of ``inputs`` in a forward pass."""
        return 1

    def chunk(self, requested: int | None, inputs: Inputs) -> int:
        """Rows per pass for a caller asking ``requested`` (or the default), within the cap."""
        n = next(iter(inputs.values())).shape[0]
        wanted = requested or self.batch_size or max(n, 1)
        return max(1, min(wanted, self.rows_per_pass(inputs)))

    #: where set, :meth:`logits` runs its chunks through it: a damaged copy's rows resumed from
    #: the original model's states (:class:`twopath.runtime.prefix.SharedPrefix`, the sanity check)
    shared_prefix: Any = None

    @torch.no_grad()
    def logits(self, inputs: Inputs, batch_size: int | None = None) -> torch.Tensor:
        """Float32 logits of a batch, evaluated in chunks of ``batch_size`` rows (at most
        :meth:`rows_per_pass`)."""
        n = next(iter(inputs.values())).shape[0]
        batch_size = self.chunk(batch_size, inputs)
        prefix = self.shared_prefix
        run = self.run if prefix is None else (lambda chunk: prefix.run(self, chunk))
        chunks = [run({k: v[i : i + batch_size] for k, v in inputs.items()}) for i in range(0, n, batch_size)]
        return torch.cat(chunks).float()

    def output(self, logits: torch.Tensor, target: int, space: OutputSpace = "logit_diff") -> torch.Tensor:
        return target_output(logits, target, space)

    @abstractmethod
    def embed(self, inputs: Inputs) -> torch.Tensor:
        """The differentiable input representation (1, positions, width) gradients are taken at."""

    @abstractmethod
    def run_embedded(self, embeds: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        """Logits computed from ``embeds`` (n, positions, width); ``inputs`` gives the rest."""

    @abstractmethod
    def baseline(self, example: Example, kind: Any = None) -> torch.Tensor:
        """A baseline embedding (1, positions, width) for path methods; ``kind`` one of
        :attr:`baselines` (tables also accept a row of raw features)."""

    @abstractmethod
    def merge_to_units(self, example: Example, scores: Any) -> np.ndarray:
        """Per-unit scores from scores over the embedding (``(1, positions, width)`` or
        ``(positions,)``): summed over width, then over each unit's positions."""

    # --- sites and components ---------------------------------------------------------------

    @abstractmethod
    def sites(self) -> dict[str, Site]:
        """Every named hook point: ``blocks.{l}.attn.hook_z`` (head outputs),
        ``blocks.{l}.mlp.hook_post`` (neurons), ``blocks.{l}.hook_resid_post`` (residual stream)."""

    @abstractmethod
    def site(self, component: Component) -> Site:
        """The site holding a component's activation."""

    @abstractmethod
    def components(self, kind: str, inputs: Inputs | None = None) -> list[Component]:
        """Every component of a kind (``head``, ``neuron``, ``layer``, ``block``, ``resid``)."""

    @abstractmethod
    def mlp_width(self, layer: int) -> int:
        """Neurons of layer ``layer``."""

    def head_dim(self) -> int:
        raise TwopathError(f"{self.architecture} has no attention heads")

    @abstractmethod
    def parameter_blocks(self, embeddings: bool = False) -> list[tuple[str, tuple[str, ...]]]:
        """The model's parameter groups from the output down, as (label, module-name prefixes):
        the head, then each layer from the last (and the embeddings, if asked)."""

    def parameter_slices(self, component: Component) -> list[ParameterSlice]:
        """The parameters that belong to one component (editing): a head's rows of the query,
        key and value projections (its key/value head's in grouped-query attention) and its
        columns of the output projection; an MLP neuron's rows of the up (and gate) projection
        and its column of the down projection; a tabular neuron's incoming weights and bias and
        its outgoing weights. Shared parameters (norms, the output projection's bias) belong to
        no component."""
        raise TwopathError(f"{self.architecture}: components do not name their parameters")

    # --- partial forward passes (used by the Trace) -----------------------------------------

    layer_modules: list[nn.Module]
    #: whether starting at a block saves more than the extra forward calls cost (a transformer
    #: block costs far more than a call; an MLP's hidden layer less)
    resume_pays: ClassVar[bool] = False

    def can_resume(self) -> bool:
        """Whether a forward pass can start at a layer from the clean run's state."""
        return False

    def resume(self, start: int, state: torch.Tensor, layer_calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
               inputs: Inputs) -> torch.Tensor:
        """Logits of a forward pass started at layer ``start`` from ``state`` (n rows), with the
        clean run's recorded arguments of every layer call."""
        raise NotImplementedError
