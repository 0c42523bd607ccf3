"""Adapter for torch MLP classifiers over a table of raw features.

Users pass rows in their own units (income in ₹, employment as a word). A scikit-learn
``ColumnTransformer`` inside the adapter scales the numeric columns and one-hot encodes the
categorical ones; the MLP sees the transformed vector. Explanations are always given on the
**raw features**: attributions over one-hot columns are summed back into their feature.

Internally the adapter uses a *coded matrix*: one float column per raw feature, with a
categorical value replaced by its index in the feature's category list. SHAP and LIME perturb
this matrix, so a categorical feature is always switched as a whole.

Every ``ReLU`` output is a hidden layer (``L0`` is the first hidden layer); a neuron ``L3N7`` is
unit 7 after the fourth ReLU. In an MLP the hidden layer *is* the residual state, so neuron,
layer and residual sites coincide.

On disk a model is ``model.safetensors`` (weights) plus ``twopath_tabular.json`` (features,
categories, scaler statistics, layer sizes, labels, metrics); nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from twopath.models.base import OutputSpace, target_output
from twopath.types import Component, Example, TwopathError

CONFIG_FILE = "twopath_tabular.json"
WEIGHTS_FILE = "model.safetensors"


def build_mlp(n_inputs: int, hidden: Sequence[int], n_outputs: int = 2) -> nn.Sequential:
    """Linear → ReLU blocks for each hidden width, then a linear read-out."""
    layers: list[nn.Module] = []
    width = n_inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def build_preprocessor(numeric: Sequence[str], categories: Mapping[str, Sequence[str]]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts: list[tuple[str, Any, list[str]]] = [("num", StandardScaler(), list(numeric))]
    if categories:
        encoder = OneHotEncoder(categories=[list(c) for c in categories.values()], handle_unknown="error")
        parts.append(("cat", encoder, list(categories)))
    return ColumnTransformer(parts, sparse_threshold=0.0)


class TorchTabularClassifier:
    """An MLP over raw features, with its preprocessing, behind one interface."""

    modality = "tabular"

    def __init__(
        self,
        model: nn.Module,
        preprocessor: Any,
        features: Sequence[str],
        categories: Mapping[str, Sequence[str]],
        labels: Sequence[str] = ("0", "1"),
        name: str = "mlp",
    ):
        self.model = model.eval()
        self.preprocessor = preprocessor
        self.features = tuple(features)
        self.categories = {k: tuple(v) for k, v in categories.items()}
        self.numeric = tuple(f for f in self.features if f not in self.categories)
        self.labels = tuple(str(x) for x in labels)
        self.name = name
        self.hidden_modules = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        if not self.hidden_modules:
            raise TwopathError("the tabular model has no ReLU hidden layers to intervene on")
        self.n_layers = len(self.hidden_modules)
        self.widths = self._hidden_widths()
        self.background: pd.DataFrame | None = None
        self.architecture = f"MLP {'-'.join(str(w) for w in self.widths)}"
        self.column_feature = self._column_feature()

    # --- persistence ------------------------------------------------------------------------

    def save(self, directory: str | Path, extra: Mapping[str, Any] | None = None) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        scaler = self.preprocessor.named_transformers_["num"]
        config = {
            "features": list(self.features),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "numeric_mean": [float(x) for x in scaler.mean_],
            "numeric_scale": [float(x) for x in scaler.scale_],
            "hidden": list(self.widths),
            "labels": list(self.labels),
            "name": self.name,
            **dict(extra or {}),
        }
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> TorchTabularClassifier:
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file() or not (directory / WEIGHTS_FILE).is_file():
            raise TwopathError(f"not a twopath tabular model directory (needs {CONFIG_FILE} and {WEIGHTS_FILE}): {directory}")
        config = json.loads(config_path.read_text())
        features = config["features"]
        categories = config.get("categories", {})
        numeric = [f for f in features if f not in categories]
        preprocessor = fitted_preprocessor(numeric, categories, config["numeric_mean"], config["numeric_scale"])
        n_inputs = len(numeric) + sum(len(c) for c in categories.values())
        model = build_mlp(n_inputs, config["hidden"], len(config["labels"]))
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        return cls(model, preprocessor, features, categories, config["labels"], config.get("name", directory.name))

    # --- data conversions -------------------------------------------------------------------

    def frame(self, rows: pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """Raw rows as a DataFrame with exactly the model's features, validated."""
        frame = pd.DataFrame([rows]) if isinstance(rows, Mapping) else pd.DataFrame(rows)
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise TwopathError(f"missing feature(s) {missing}; the model needs {list(self.features)}")
        frame = frame[list(self.features)].copy()
        for feature, cats in self.categories.items():
            bad = sorted(set(frame[feature].astype(str)) - set(cats))
            if bad:
                raise TwopathError(f"unknown {feature} value(s) {bad}; expected one of {list(cats)}")
            frame[feature] = frame[feature].astype(str)
        for feature in self.numeric:
            values = pd.to_numeric(frame[feature], errors="coerce")
            if values.isna().any():
                raise TwopathError(f"feature {feature} must be numeric")
            frame[feature] = values.astype(float)
        return frame

    def encode(self, rows: Any) -> np.ndarray:
        """Coded matrix (n, n_features): numbers as they are, categories as their index."""
        if isinstance(rows, Mapping):
            return self._encode_row(rows)
        frame = self.frame(rows)
        coded = np.empty((len(frame), len(self.features)), dtype=float)
        for j, feature in enumerate(self.features):
            if feature in self.categories:
                lookup = {c: i for i, c in enumerate(self.categories[feature])}
                coded[:, j] = frame[feature].map(lookup).to_numpy(dtype=float)
            else:
                coded[:, j] = frame[feature].to_numpy(dtype=float)
        return coded

    def _encode_row(self, row: Mapping[str, Any]) -> np.ndarray:
        """One raw row, validated, without building a DataFrame (the hot path of every method)."""
        missing = [f for f in self.features if f not in row]
        if missing:
            raise TwopathError(f"missing feature(s) {missing}; the model needs {list(self.features)}")
        coded = np.empty((1, len(self.features)))
        for j, feature in enumerate(self.features):
            value = row[feature]
            if feature in self.categories:
                cats = self.categories[feature]
                if str(value) not in cats:
                    raise TwopathError(f"unknown {feature} value(s) {[str(value)]}; expected one of {list(cats)}")
                coded[0, j] = cats.index(str(value))
            else:
                try:
                    coded[0, j] = float(value)
                except (TypeError, ValueError):
                    raise TwopathError(f"feature {feature} must be numeric") from None
                if not np.isfinite(coded[0, j]):
                    raise TwopathError(f"feature {feature} must be numeric")
        return coded

    def decode(self, coded: np.ndarray) -> pd.DataFrame:
        coded = np.atleast_2d(coded)
        data: dict[str, Any] = {}
        for j, feature in enumerate(self.features):
            if feature in self.categories:
                cats = self.categories[feature]
                data[feature] = [cats[int(round(v))] for v in coded[:, j]]
            else:
                data[feature] = coded[:, j]
        return pd.DataFrame(data)

    def transform(self, rows: Any) -> torch.Tensor:
        """Model-input tensor (n, n_columns) for raw rows."""
        values = self.preprocessor.transform(self.frame(rows))
        return torch.as_tensor(np.asarray(values, dtype=np.float32))

    def transform_coded(self, coded: np.ndarray) -> torch.Tensor:
        """Model-input tensor for a coded matrix, without a pandas round trip.

        Reads the fitted scaler statistics and category lists of the ColumnTransformer, so it
        equals ``transform(decode(coded))`` (the column order is numeric, then one-hot).
        """
        coded = np.atleast_2d(np.asarray(coded, dtype=float))
        scaler = self.preprocessor.named_transformers_["num"]
        numeric = [self.features.index(f) for f in self.numeric]
        parts = [(coded[:, numeric] - scaler.mean_) / scaler.scale_]
        for feature, cats in self.categories.items():
            codes = np.rint(coded[:, self.features.index(feature)]).astype(int)
            if codes.min(initial=0) < 0 or codes.max(initial=0) >= len(cats):
                raise TwopathError(f"category code out of range for {feature}")
            parts.append(np.eye(len(cats))[codes])
        return torch.as_tensor(np.hstack(parts), dtype=torch.float32)

    # --- running ----------------------------------------------------------------------------

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float()

    def run(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(inputs["x"])

    def forward_inputs(self, example: Example) -> dict[str, torch.Tensor]:
        return {"x": self.transform_coded(self.encode(self.check_example(example)))}

    def predict_proba(self, rows: Any) -> np.ndarray:
        return torch.softmax(self.logits(self.transform(rows)), -1).numpy()

    def output(self, logits: torch.Tensor, target: int, space: OutputSpace = "logit_diff") -> torch.Tensor:
        return target_output(logits, target, space)

    # --- labels and examples ----------------------------------------------------------------

    def label_index(self, label: str | int) -> int:
        lowered = [lab.lower() for lab in self.labels]
        if isinstance(label, str) and label.lower() in lowered:
            return lowered.index(label.lower())
        if isinstance(label, int) or (isinstance(label, str) and label.isdigit()):
            idx = int(label)
            if 0 <= idx < len(self.labels):
                return idx
        raise TwopathError(f"unknown target label {label!r}; the model's labels are {list(self.labels)}")

    def check_example(self, example: Example) -> Mapping[str, Any]:
        if not isinstance(example.raw, Mapping):
            raise TwopathError(f"example {example.id}: a tabular model needs a feature mapping")
        self._encode_row(example.raw)
        return example.raw

    def units(self, example: Example) -> tuple[str, ...]:
        self.check_example(example)
        return self.features

    # --- sites ------------------------------------------------------------------------------

    def neuron_site(self, layer: int) -> nn.Module:
        return self.hidden_modules[self._check_layer(layer)]

    resid_site = neuron_site

    def components(self, kind: str) -> list[Component]:
        if kind == "neuron":
            return [Component("neuron", layer, i) for layer, w in enumerate(self.widths) for i in range(w)]
        if kind == "layer":
            return [Component("layer", layer) for layer in range(self.n_layers)]
        raise TwopathError(f"a tabular MLP has no {kind!r} components (use neuron or layer)")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "architecture": self.architecture, "n_layers": self.n_layers, "n_heads": None}

    def _check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_layers:
            raise TwopathError(f"hidden layer {layer} out of range: the model has {self.n_layers}")
        return layer

    def _hidden_widths(self) -> list[int]:
        widths: list[int] = []
        last_out = None
        for module in self.model.modules():
            if isinstance(module, nn.Linear):
                last_out = module.out_features
            elif isinstance(module, nn.ReLU):
                if last_out is None:
                    raise TwopathError("a ReLU precedes every Linear layer; cannot size hidden layers")
                widths.append(last_out)
        return widths

    def _column_feature(self) -> np.ndarray:
        """For each transformed column, the index of the raw feature it comes from."""
        owner = [self.features.index(f) for f in self.numeric]
        for feature, cats in self.categories.items():
            owner += [self.features.index(feature)] * len(cats)
        return np.asarray(owner, dtype=int)

    def merge_columns(self, column_scores: np.ndarray) -> np.ndarray:
        """Sum scores over transformed columns into one score per raw feature."""
        merged = np.zeros(len(self.features))
        np.add.at(merged, self.column_feature, np.asarray(column_scores, dtype=float).ravel())
        return merged


def fitted_preprocessor(numeric: Sequence[str], categories: Mapping[str, Sequence[str]],
                        mean: Sequence[float], scale: Sequence[float]) -> Any:
    """A ColumnTransformer restored from stored statistics (no pickle)."""
    preprocessor = build_preprocessor(numeric, categories)
    n = max([len(c) for c in categories.values()] + [1])
    rows: dict[str, Any] = {f: np.arange(n, dtype=float) for f in numeric}
    for feature, cats in categories.items():
        rows[feature] = [cats[i % len(cats)] for i in range(n)]
    preprocessor.fit(pd.DataFrame(rows))
    scaler = preprocessor.named_transformers_["num"]
    scaler.mean_ = np.asarray(mean, dtype=float)
    scaler.scale_ = np.asarray(scale, dtype=float)
    scaler.var_ = scaler.scale_**2
    return preprocessor
