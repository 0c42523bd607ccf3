"""Internal path: which components inside the model cause the decision.

Ablation (zero / mean / resample; heads, neurons, blocks, positions), activation patching
(denoise / noise; residual positions, heads, neurons, layers), attribution patching, and the
residual-stream readings of :mod:`~twopath.mechanistic.lens` (logit lens, direct logit
attribution, direct effects).

Importing this room registers every method in :data:`MECHANISTIC_METHODS`.
"""

from twopath.mechanistic import ablation, attribution_patching, lens, patching
from twopath.mechanistic.base import MECHANISTIC_METHODS, InterventionMethod

__all__ = [
    "MECHANISTIC_METHODS", "InterventionMethod", "ablation", "attribution_patching", "lens", "patching",
]
