"""twopath: explain one model decision two ways and put them side by side.

The input path (SHAP, LIME, Integrated Gradients) says which words or features pushed the
prediction; the internal path (ablation, activation patching) says which components inside
the model cause it. Heavy libraries are imported lazily, only when a method runs.
"""

__version__ = "0.1.0"
