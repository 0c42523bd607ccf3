"""Model adapters: one interface over Hugging Face text classifiers and torch tabular MLPs."""

from twopath.models.base import OUTPUT_SPACES, ModelAdapter, OutputSpace, target_output

__all__ = ["OUTPUT_SPACES", "ModelAdapter", "OutputSpace", "target_output"]
