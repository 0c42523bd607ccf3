"""Input path: which words or features pushed the prediction.

SHAP, LIME and Integrated Gradients, plus the baselines users compare against: occlusion,
gradient × input and (non-causal) attention weights.

Importing this room registers every method in :data:`ATTRIBUTION_METHODS`.
"""

from twopath.attribution import (
    attention,
    gradient_input,
    integrated_gradients,
    lime_,
    occlusion,
    shap_,
)
from twopath.attribution.base import ATTRIBUTION_METHODS, AttributionMethod

__all__ = [
    "ATTRIBUTION_METHODS", "AttributionMethod", "attention", "gradient_input", "integrated_gradients",
    "lime_", "occlusion", "shap_",
]
