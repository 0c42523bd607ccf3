"""A hand-built MLP whose output depends on feature ``x0`` only through known neurons.

Four standardized numeric features (identity scaling), one hidden layer of 8 neurons:
``L0N0 = relu(x0)`` and ``L0N1 = relu(-x0)`` carry ``x0``; neurons 2..7 are sparse detectors of
``x1..x3`` (``relu(±x_j - 1)``, active on about a sixth of the rows). The read-out is
``logit_1 - logit_0 = 2 (L0N0 - L0N1) + Σ ±L0Nj``, so ``x0``'s whole effect flows through
``L0N0, L0N1``. Editing them can remove it exactly; neurons elsewhere see ``x0`` only through
weights that start at zero and get gradient on the few rows where they fire.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from twopath.runtime.tabular import TorchTabularClassifier, build_mlp, fitted_preprocessor
from twopath.types import Component

FEATURES = ("x0", "x1", "x2", "x3")
PLANTED = [Component("neuron", 0, 0), Component("neuron", 0, 1)]
ELSEWHERE = [Component("neuron", 0, 4), Component("neuron", 0, 5)]


def planted_adapter() -> TorchTabularClassifier:
    model = build_mlp(4, [8], 2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        w0, b0 = model[0].weight, model[0].bias
        w0[0, 0], w0[1, 0] = 1.0, -1.0
        for j in range(1, 4):
            w0[2 * j, j], w0[2 * j + 1, j] = 1.0, -1.0
            b0[2 * j] = b0[2 * j + 1] = -1.0
        out = torch.tensor([2.0, -2.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
        model[2].weight[1] = out / 2
        model[2].weight[0] = -out / 2
    pre = fitted_preprocessor(FEATURES, {}, mean=[0.0] * 4, scale=[1.0] * 4)
    adapter = TorchTabularClassifier(model, pre, FEATURES, {}, ("no", "yes"), name="planted")
    adapter.background = table(64, seed=1).drop(columns=["y"])
    return adapter


def table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    frame = pd.DataFrame(x, columns=list(FEATURES))
    frame["y"] = (2 * x[:, 0] + np.sign(x[:, 1:]).sum(1) > 0).astype(int)
    return frame
