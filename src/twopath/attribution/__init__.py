"""Input path: which words or features pushed the prediction (SHAP, LIME, IG, occlusion).

Importing this room registers every method in :data:`ATTRIBUTION_METHODS`.
"""

from twopath.attribution import integrated_gradients, lime_, occlusion, shap_
from twopath.attribution.base import ATTRIBUTION_METHODS, AttributionMethod

__all__ = ["ATTRIBUTION_METHODS", "AttributionMethod", "integrated_gradients", "lime_", "occlusion", "shap_"]
