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
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from twopath.runtime.adapter import (
    Inputs,
    ModelAdapter,
    OutputSpace,
    ParameterSlice,
    Site,
    position_scores,
    target_output,
)
from twopath.runtime.hooks import Hook, hooked
from twopath.runtime.trace import caches
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


class TorchTabularClassifier(ModelAdapter):
    """An MLP over raw features, with its preprocessing, behind the adapter contract.

    The embedding gradients are taken at is the transformed feature vector, one position per
    model column (width 1); a masked unit takes the background's values and its output is
    averaged over the background (the interventional expectation of KernelSHAP).
    """

    modality = "tabular"
    baselines = ("mean", "median")
    family = "mlp"
    n_heads = 0

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
        self.layer_modules = list(self.hidden_modules)
        #: the layers :meth:`run_hooked` calls in turn (none: the model is not a ``Sequential``)
        self._children = tuple(model) if isinstance(model, nn.Sequential) else ()
        self._child_ids = frozenset(id(child) for child in self._children)
        self.background_version = 0
        self._derived: dict[Any, Any] = {}
        self.background = None
        self.architecture = f"MLP {'-'.join(str(w) for w in self.widths)}"
        self.column_feature = self._column_feature()
        self._numeric_index = [self.features.index(f) for f in self.numeric]
        self._category_columns = [(f, self.features.index(f), np.eye(len(c))) for f, c in self.categories.items()]

    # --- the background sample and what is derived from it ----------------------------------

    @property
    def background(self) -> pd.DataFrame | None:
        """The reference sample (raw rows) for masking, mean ablation and the IG baseline.

        Its encodings (coded matrix, transformed tensor, mean, median) are computed once and
        reused by every method and example. Assigning a new sample drops them and bumps
        :attr:`background_version`. Reading returns a copy-on-write view: editing it in place
        leaves the adapter's sample unchanged (assign the edited frame back to use it).
        """
        stored = self._background
        return None if stored is None else stored.copy(deep=False)

    @background.setter
    def background(self, value: Any) -> None:
        if value is None:
            stored = None
        elif isinstance(value, pd.DataFrame):
            stored = value.copy(deep=False)  # a snapshot: later edits of the caller's frame are not seen
        else:
            try:
                stored = pd.DataFrame(list(value))
            except (TypeError, ValueError) as err:
                raise TwopathError(f"the background must be a table of raw rows: {err}") from None
        self._background = stored
        self._derived = {}
        self.background_version += 1

    def _from_background(self, name: str, make: Any) -> Any:
        """``make(background)``, computed once per background and device."""
        key = (name, str(self.device))
        if key not in self._derived:
            self._derived[key] = make(self._background)
        return self._derived[key]

    def _has_background(self) -> bool:
        return self._background is not None and len(self._background) > 0

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
        """Open a folder written by :meth:`save`, validated first: ``twopath_tabular.json`` (types,
        finite statistics, positive scales, distinct labels) and the weight shapes against its
        layer sizes (:func:`twopath.validation.check_tabular_dir`), then finite weights."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from twopath.validation import check_tabular_dir

        directory = Path(directory)
        config = check_tabular_dir(directory)
        features = config["features"]
        categories = config.get("categories", {})
        numeric = [f for f in features if f not in categories]
        preprocessor = fitted_preprocessor(numeric, categories, config["numeric_mean"], config["numeric_scale"])
        n_inputs = len(numeric) + sum(len(c) for c in categories.values())
        model = build_mlp(n_inputs, config["hidden"], len(config["labels"]))
        try:
            state = load_file(str(directory / WEIGHTS_FILE))
        except (SafetensorError, OSError) as err:
            raise TwopathError(f"cannot read {directory / WEIGHTS_FILE}: {err}") from None
        bad = [name for name, tensor in state.items() if not bool(torch.isfinite(tensor).all())]
        if bad:
            raise TwopathError(f"{directory / WEIGHTS_FILE}: {bad[0]} holds non-finite values (inf or NaN)")
        model.load_state_dict({k: v.float() for k, v in state.items()})
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
            bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
            if bad.any():
                where = int(np.flatnonzero(bad.to_numpy())[0])
                raw = frame[feature].iloc[where]
                value = repr(raw) if isinstance(raw, str) else str(float(raw))
                raise TwopathError(f"feature {feature} must be numeric and finite; row {where} holds {value}")
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
        return torch.as_tensor(np.asarray(values, dtype=np.float32), device=self.device)

    def transform_coded(self, coded: np.ndarray) -> torch.Tensor:
        """Model-input tensor for a coded matrix, without a pandas round trip.

        Reads the fitted scaler statistics and category lists of the ColumnTransformer, so it
        equals ``transform(decode(coded))`` (the column order is numeric, then one-hot).
        """
        coded = np.atleast_2d(np.asarray(coded, dtype=float))
        scaler = self.preprocessor.named_transformers_["num"]
        parts = [(coded[:, self._numeric_index] - scaler.mean_) / scaler.scale_]
        for feature, column, one_hot in self._category_columns:
            codes = np.rint(coded[:, column]).astype(int)
            if codes.min(initial=0) < 0 or codes.max(initial=0) >= len(one_hot):
                raise TwopathError(f"category code out of range for {feature}")
            parts.append(one_hot[codes])
        return torch.as_tensor(np.hstack(parts), dtype=torch.float32, device=self.device)

    # --- running ----------------------------------------------------------------------------

    def run(self, inputs: Inputs) -> torch.Tensor:
        return self.model(inputs["x"])

    def run_hooked(self, inputs: Inputs, hooks: Sequence[Hook]) -> torch.Tensor:
        """:meth:`run` under ``hooks``, as inside :func:`~twopath.runtime.hooks.hooked`.

        Forward hooks on children of a ``Sequential`` model (every site of this adapter) are
        called in the children's loop, as :meth:`resume` runs them, instead of being registered:
        a hook sees ``(module, (input,), output)`` and may replace the output, in order, as
        PyTorch calls it. For a batch through 32-wide layers, registering and dispatching six
        PyTorch hooks cost more than the layers. Anything else (pre-hooks, other modules, a
        model with hooks of its own on the root) is registered the ordinary way.
        """
        at_child: dict[int, list[Any]] = {}
        direct = bool(self._children) and not (self.model._forward_hooks or self.model._forward_pre_hooks
                                               or _global_forward_hooks or _global_forward_pre_hooks)
        for hook in hooks:
            direct = direct and (hook.kind == "forward" and hook.occurrence is None and hook.unflatten is None
                                 and id(hook.module) in self._child_ids)
            if not direct:
                break
            at_child.setdefault(id(hook.module), []).append(hook.fn)
        if not direct:
            with hooked(self.model, hooks):
                return self.run(inputs)
        x = inputs["x"]
        for child in self._children:
            out = child(x)
            for fn in at_child.get(id(child), ()):
                replaced = fn(child, (x,), out)
                out = out if replaced is None else replaced
            x = out
        return x

    def output(self, logits: torch.Tensor, target: int, space: OutputSpace = "logit_diff") -> torch.Tensor:
        """:func:`~twopath.runtime.adapter.target_output`, bit for bit, with two labels in two
        tensor operations: the log-sum-exp of the other label's logit alone is that logit plus
        ``0.0`` (exp(0) = 1, log(1) = +0, so only -0 turns into +0). Every method of the table
        path reads its outputs through here, the 193-row neuron sweep included."""
        if (space == "logit_diff" and target in (0, 1) and logits.dim() == 2 and logits.shape[1] == 2
                and logits.dtype in (torch.float32, torch.float64)):
            return logits[:, target] - (logits[:, 1 - target] + 0.0)
        return target_output(logits, target, space)

    def inputs(self, example: Example) -> Inputs:
        return {"x": self.transform_coded(self.encode(self.check_example(example)))}

    def predict_proba(self, rows: Any) -> np.ndarray:
        return torch.softmax(self.logits({"x": self.transform(rows)}), -1).cpu().numpy()

    def masked_inputs(self, example: Example, keep: np.ndarray, *, background_size: int = 50
                      ) -> tuple[Inputs, int]:
        """Each coalition's row with absent features taken from each background row."""
        bg = self.coded_background()[:background_size]
        x = self.encode(self.check_example(example))[0]
        keep = np.asarray(keep, dtype=bool).reshape(-1, len(self.features))
        rows = np.where(keep[:, None, :], x[None, None, :], bg[None, :, :])
        return {"x": self.transform_coded(rows.reshape(-1, len(self.features)))}, len(bg)

    def coded_background(self) -> np.ndarray:
        """The background's coded matrix (read-only; computed once per background)."""
        if not self._has_background():
            raise TwopathError("a tabular model needs a background sample (adapter.background) for masking")
        return self._from_background("coded", self._coded_readonly)

    def _coded_readonly(self, background: pd.DataFrame) -> np.ndarray:
        coded = self.encode(background)
        coded.setflags(write=False)
        return coded

    def _transformed_background(self) -> torch.Tensor:
        """The background through the preprocessing (computed once per background; callers clone)."""
        return self._from_background("transformed", self.transform)

    def batch_inputs(self, raws: Sequence[Any]) -> Inputs:
        return {"x": self.transform(raws)}

    def data_features(self, raws: Sequence[Any], words: Sequence[str] | None = None) -> Any:
        return self.frame(raws).reset_index(drop=True)

    def without_units(self, example: Example, units: Sequence[int]) -> Example:
        """The chosen features set to the background median (categories: its median code)."""
        if not self._has_background():
            raise TwopathError("removing features needs a background sample (adapter.background)")
        median = self._from_background("median row", lambda _: self.decode(
            np.median(self.coded_background(), axis=0, keepdims=True)).iloc[0])
        raw = dict(self.check_example(example))
        for i in units:
            raw[self.features[i]] = median[self.features[i]]
        return Example(f"{example.id}-units-removed", raw, example.target)

    def reference_inputs(self) -> Inputs:
        if not self._has_background():
            raise TwopathError("mean ablation needs a reference sample (adapter.background)")
        return {"x": self._transformed_background().clone()}

    def position_mask(self, inputs: Inputs) -> torch.Tensor | None:
        return None

    def embed(self, inputs: Inputs) -> torch.Tensor:
        return inputs["x"][..., None]

    def run_embedded(self, embeds: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        return self.model(embeds[..., 0])

    def baseline(self, example: Example, kind: Any = None) -> torch.Tensor:
        """The background mean or median, or a user row (raw features), transformed."""
        kind = kind or self.baselines[0]
        if isinstance(kind, Mapping):
            return self.transform(kind)[..., None]
        if kind not in self.baselines:
            raise TwopathError(f"unknown table IG baseline {kind!r}; expected one of {list(self.baselines)} or a row")
        if not self._has_background():
            raise TwopathError("a table IG baseline needs a background sample (adapter.background)")
        transformed = self._transformed_background()
        centre = self._from_background(f"baseline {kind}", lambda _: transformed.mean(0, keepdim=True) if kind == "mean"
                                       else transformed.median(0, keepdim=True).values)
        return centre.clone()[..., None]

    def merge_to_units(self, example: Example, scores: Any) -> np.ndarray:
        values = position_scores(scores)
        return self.merge_columns(values.ravel())

    # --- examples -------------------------------------------------------------------------

    def check_example(self, example: Example) -> Mapping[str, Any]:
        if not isinstance(example.raw, Mapping):
            raise TwopathError(f"example {example.id}: a tabular model needs a feature mapping")
        self._encode_row(example.raw)
        return example.raw

    def units(self, example: Example) -> tuple[str, ...]:
        self.check_example(example)
        return self.features

    # --- sites ------------------------------------------------------------------------------

    def sites(self) -> dict[str, Site]:
        """``blocks.{l}.hook_post``: the output of the ``l``-th ReLU (neurons = residual state)."""
        return {f"blocks.{layer}.hook_post": Site(module, "forward") for layer, module in enumerate(self.hidden_modules)}

    def site(self, component: Component) -> Site:
        if component.kind in ("head", "attn"):
            raise TwopathError(f"{component}: a tabular MLP has no attention heads")
        if component.kind not in ("neuron", "mlp", "resid", "layer"):
            raise TwopathError(f"unknown component kind {component.kind!r}")
        return Site(self.hidden_modules[self._check_layer(component.layer)], "forward")

    def mlp_width(self, layer: int) -> int:
        return self.widths[self._check_layer(layer)]

    def components(self, kind: str, inputs: Inputs | None = None) -> list[Component]:
        """Every component of ``kind`` (a new list each call, of components built once per
        adapter: a neuron sweep asked for its 192 on every call)."""
        built = caches(self).components
        if (kind, None) not in built:
            built[(kind, None)] = self._components(kind)
        return list(built[(kind, None)])

    def _components(self, kind: str) -> list[Component]:
        if kind == "neuron":
            return [Component("neuron", layer, i) for layer, w in enumerate(self.widths) for i in range(w)]
        if kind in ("layer", "block"):
            return [Component("layer", layer) for layer in range(self.n_layers)]
        raise TwopathError(f"a tabular MLP has no {kind!r} components (use neuron or layer)")

    # --- resuming a forward pass at a hidden layer ------------------------------------------

    def can_resume(self) -> bool:
        return self._relu_positions() is not None

    def resume(self, start: int, state: torch.Tensor, layer_calls: Any, inputs: Inputs) -> torch.Tensor:
        """Run the ``Sequential`` from the ``start``-th ReLU on ``state`` (its input, n rows)."""
        positions = self._relu_positions()
        assert positions is not None
        children = list(self.model)  # type: ignore[call-overload]
        first = positions[start] if start < len(positions) else positions[-1] + 1
        x = state
        for module in children[first:]:
            x = module(x)
        return x

    def _relu_positions(self) -> list[int] | None:
        """Index of each hidden ReLU among the children of a ``Sequential`` MLP (else ``None``)."""
        if not isinstance(self.model, nn.Sequential):
            return None
        children = list(self.model)
        positions = []
        for relu in self.hidden_modules:
            found = [i for i, child in enumerate(children) if child is relu]
            if not found:
                return None
            positions.append(found[0])
        return positions

    def parameter_blocks(self, embeddings: bool = False) -> list[tuple[str, tuple[str, ...]]]:
        """The output ``Linear``, then the ``Linear`` computing each hidden layer from the last."""
        linears = [name for name, m in self.model.named_modules() if isinstance(m, nn.Linear)]
        if len(linears) < 2:
            raise TwopathError("the tabular model needs at least one hidden and one output Linear layer")
        blocks: list[tuple[str, tuple[str, ...]]] = [("output", (linears[-1],))]
        blocks += [(f"L{i}", (linears[i],)) for i in reversed(range(len(linears) - 1))]
        return blocks

    def parameter_slices(self, component: Component) -> list[ParameterSlice]:
        """Neuron ``LlNi``: row ``i`` of the ``Linear`` computing hidden layer ``l`` (weight and
        bias: its incoming weights) and column ``i`` of the next ``Linear`` (its outgoing ones)."""
        if component.kind != "neuron":
            raise TwopathError(f"{component}: in a tabular MLP only neurons own parameters of their own")
        layer = self._check_layer(component.layer)
        if component.index is None or not 0 <= component.index < self.widths[layer]:
            raise TwopathError(f"{component}: hidden layer {layer} has {self.widths[layer]} neurons")
        linears = [name for name, m in self.model.named_modules() if isinstance(m, nn.Linear)]
        i = component.index
        incoming, outgoing = linears[layer], linears[layer + 1]
        slices = [ParameterSlice(f"{incoming}.weight", 0, i, i + 1)]
        if self.model.get_submodule(incoming).bias is not None:
            slices.append(ParameterSlice(f"{incoming}.bias", 0, i, i + 1))
        return [*slices, ParameterSlice(f"{outgoing}.weight", 1, i, i + 1)]

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
