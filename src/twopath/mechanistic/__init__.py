"""Internal path: which components inside the model cause the decision (ablation, patching).

Importing this room registers every method in :data:`MECHANISTIC_METHODS`.
"""

from twopath.mechanistic import ablation, patching
from twopath.mechanistic.base import MECHANISTIC_METHODS, InterventionMethod

__all__ = ["MECHANISTIC_METHODS", "InterventionMethod", "ablation", "patching"]
