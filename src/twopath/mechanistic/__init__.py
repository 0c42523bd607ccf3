"""Internal path: which components inside the model cause the decision.

Ablation (zero / mean / resample; heads, neurons, blocks, positions), activation patching
(denoise / noise; residual positions, heads, neurons, layers) and attribution patching.

Importing this room registers every method in :data:`MECHANISTIC_METHODS`.
"""

from twopath.mechanistic import ablation, attribution_patching, patching
from twopath.mechanistic.base import MECHANISTIC_METHODS, InterventionMethod

__all__ = [
    "MECHANISTIC_METHODS", "InterventionMethod", "ablation", "attribution_patching", "patching",
]
