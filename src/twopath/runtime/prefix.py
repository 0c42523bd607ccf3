"""A shared clean prefix: rows of a damaged copy resumed from the original model's states.

The model-randomization sanity check (:mod:`twopath.comparisons.sanity`) damages a copy of the
model from the top down: after ``s`` steps the classifier head and the top ``s - 1`` blocks are
random, and every block below them is still the original's. A forward pass of the copy therefore
computes, for every row, exactly the states the original computes up to the first randomized
block. :class:`SharedPrefix` computes those states once per row, on the original, at the depths
the cascade will resume from, and keeps them; each step then runs only its randomized blocks and
the head (:meth:`~twopath.runtime.adapter.ModelAdapter.resume`), from the state entering the
first randomized one. Over a cascade of ``L`` blocks that is about ``1 + L/2`` full passes per
row instead of ``L + 1``, and the rows are shared by every repeat of the cascade.

The copy's rows are computed in the same batches as a full pass would be, by the same modules,
so the logits are the same. The prefix applies only to :meth:`ModelAdapter.logits` (the
perturbation methods' rows); gradient methods and anything run under intervention hooks take
the full pass. States are kept up to ``max_bytes``; rows beyond it run the full pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from twopath.runtime.adapter import Inputs, ModelAdapter
from twopath.runtime.hooks import first_tensor, intervened
from twopath.runtime.trace import block_inputs

#: the states one prefix keeps at most (beyond it, rows run the full pass)
MAX_BYTES = 512 * 2**20


class SharedPrefix:
    """The original ``source``'s states entering block ``d`` (for ``d`` in ``depths``; ``d`` equal
    to the number of blocks is the last block's output) for every row a damaged copy runs.

    Set :attr:`start` to the copy's first randomized block before running it (``None``: the copy
    shares nothing and runs full passes)."""

    def __init__(self, source: ModelAdapter, depths: Sequence[int], max_bytes: int = MAX_BYTES):
        self.source = source
        self.depths = sorted(set(int(d) for d in depths))
        self.max_bytes = max_bytes
        self.start: int | None = None
        self.n_bytes = 0
        self.n_resumed = 0  # rows the copies resumed instead of running in full
        self._rows: dict[bytes, dict[int, torch.Tensor]] = {}
        self._calls: dict[bytes, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}

    def run(self, target: ModelAdapter, inputs: Inputs) -> torch.Tensor:
        """``target``'s logits for a batch: resumed at :attr:`start` where the states are known.

        Run on the source itself (the check explaining the original model), the batch is a full
        pass that also records the rows' states, so the first damaged copy finds them."""
        if intervened(target.model) or not target.can_resume():
            return target.run(inputs)
        keys = _row_keys(inputs)
        missing = [i for i, key in enumerate(keys) if key not in self._rows]
        if target is self.source:
            if len(missing) == len(keys):
                logits = self._record(inputs, keys)
                if logits is not None:
                    return logits
            return target.run(inputs)
        start = self.start
        if start is None or start not in self.depths:
            return target.run(inputs)
        if missing:
            self._record(_rows_of(inputs, missing), [keys[i] for i in missing])
            if any(key not in self._rows for key in keys):
                return target.run(inputs)  # beyond the memory limit
        calls = self._calls_for(inputs)
        if calls is None:
            return target.run(inputs)
        state = torch.stack([self._rows[key][start] for key in keys])
        self.n_resumed += len(keys)
        return target.resume(start, state, calls, inputs)

    def _record(self, inputs: Inputs, keys: list[bytes]) -> torch.Tensor | None:
        """Run the source on ``inputs`` and keep every row's states at :attr:`depths`; returns the
        pass's logits, or ``None`` (nothing run) once the states kept have reached ``max_bytes``.
        The batch that would pass the limit is run but not kept."""
        if self.n_bytes >= self.max_bytes:
            return None
        blocks = self.source.layer_modules
        n_blocks = len(blocks)
        grabbed: dict[int, torch.Tensor] = {}
        handles = []

        def before(depth: int) -> Any:
            def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                grabbed[depth] = (args[0] if args else kwargs["hidden_states"]).detach()
            return hook

        def after(module: nn.Module, args: Any, output: Any) -> None:
            grabbed[n_blocks] = first_tensor(output).detach()

        try:
            for depth in self.depths:
                if depth < n_blocks:
                    handles.append(blocks[depth].register_forward_pre_hook(before(depth), with_kwargs=True))
                elif depth == n_blocks:
                    handles.append(blocks[-1].register_forward_hook(after))
            with torch.no_grad():
                logits = self.source.run(inputs)
        finally:
            for handle in handles:
                handle.remove()
        size = sum(t.numel() * t.element_size() for t in grabbed.values())
        self.n_bytes += size
        if self.n_bytes <= self.max_bytes:
            for i, key in enumerate(keys):
                self._rows[key] = {d: grabbed[d][i] for d in self.depths}
        return logits

    def _calls_for(self, inputs: Inputs) -> list[tuple[tuple[Any, ...], dict[str, Any]]] | None:
        """The block call arguments (masks, positions) of a batch of one with the rows' shared
        attention mask, recorded on the source; ``None`` if the rows' masks differ."""
        mask = inputs["attention_mask"]
        if not bool((mask == mask[:1]).all()):
            return None
        key = mask[0].cpu().numpy().tobytes()
        if key not in self._calls:
            one = _rows_of(inputs, [0])
            _, calls, _ = block_inputs(self.source, lambda: self.source.run(one))
            self._calls[key] = calls
        return self._calls[key]


def _row_keys(inputs: Inputs) -> list[bytes]:
    """One key per row: the bytes of every input tensor's row."""
    parts = [v.detach().cpu().contiguous().numpy() for _, v in sorted(inputs.items())]
    return [b"".join(p[i].tobytes() for p in parts) for i in range(parts[0].shape[0])]


def _rows_of(inputs: Inputs, rows: list[int]) -> Inputs:
    index = torch.tensor(rows, dtype=torch.long)
    return {k: v.index_select(0, index.to(v.device)) for k, v in inputs.items()}

