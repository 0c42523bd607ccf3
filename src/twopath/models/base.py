"""What every model adapter offers, and the output space both paths explain.

Both paths explain the same scalar: by default the target's **logit difference**, i.e. its
log-odds ``log p_t / (1 - p_t)`` (for two classes exactly ``logit_t - logit_other``), or the
target **probability**. The choice is made once per run and recorded in every result's meta.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import torch

from twopath.types import Component, Example

OutputSpace = Literal["logit_diff", "probability"]
OUTPUT_SPACES: tuple[str, ...] = ("logit_diff", "probability")


def target_output(logits: torch.Tensor, target: int, space: OutputSpace = "logit_diff") -> torch.Tensor:
    """The explained scalar per row of ``logits`` (n, n_labels)."""
    if space == "probability":
        return torch.softmax(logits, dim=-1)[:, target]
    if space != "logit_diff":
        raise ValueError(f"unknown output space {space!r}; expected one of {OUTPUT_SPACES}")
    others = torch.cat([logits[:, :target], logits[:, target + 1 :]], dim=-1)
    return logits[:, target] - torch.logsumexp(others, dim=-1)


@runtime_checkable
class ModelAdapter(Protocol):
    """The interface the methods of both paths program against."""

    modality: str
    name: str
    labels: tuple[str, ...]
    n_layers: int

    def label_index(self, label: str | int) -> int: ...
    def units(self, example: Example) -> tuple[str, ...]: ...
    def forward_inputs(self, example: Example) -> dict[str, torch.Tensor]: ...
    def run(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def components(self, kind: str) -> list[Component]: ...
    def describe(self) -> dict[str, Any]: ...
