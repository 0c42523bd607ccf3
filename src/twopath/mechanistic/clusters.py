"""Neuron clusters: which hidden neurons fire together, and what each group encodes.

A layer's neurons are described by their *activation profiles*: each neuron's activation on
every example of a dataset (tabular: raw rows, the adapter's ``background`` by default; text:
sentences, where a neuron's activation on a sentence is its mean over the sentence's real tokens,
[CLS] and [SEP] included and padding excluded, the same pooling mean ablation uses). Neurons that
never fire (never above zero, or constant) are set aside as a *dead* group. The others' profiles
are standardized (z-scored across examples), so that two neurons are close when they rise and
fall together, whatever their scale, and grouped with seeded k-means. Each cluster is then
labelled by what its mean activation tracks: for every input feature, the R² of a linear
regression of the cluster activation on that feature (a numeric feature as it is, a categorical
one one-hot), and its Pearson correlation with every numeric feature. For text the features are
the presence (0/1) of each word of a given list, so R² is the squared correlation.
:func:`joint_r2` regresses on several features at once (income and employment together as
"financial stability"), :func:`layer_encoding` tabulates per layer the best cluster R² for each
feature or feature group, and :func:`feature_neurons` ranks single neurons by their correlation
with one feature. R² here is in-sample and linear: a cluster may encode a feature non-linearly
and still score low.

:func:`activations_by_layer` records several layers in the same passes (text: batches of
sentences of similar length), and :func:`clusters_of` clusters activations already recorded, so
that a caller scoring every layer runs the model once; ``neuron_clusters(..., label=False)``
skips the labels for callers that read only the groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from twopath.mechanistic.heads import BATCH_ROWS, SOLO_BELOW, length_batches, pooled_neurons
from twopath.runtime.interventions import capture
from twopath.runtime.text import word_presence  # noqa: F401  (re-exported: the labels of text clusters)
from twopath.types import Component, TwopathError

EPS = 1e-6
CAPTURE_BYTES = 2**28  # at most this much recorded activation per batched pass of sentences
NO_FEATURE = "none"
FeatureSpec = str | tuple[str, ...]


@dataclass(frozen=True)
class NeuronCluster:
    """A group of neurons of one layer and what their mean activation encodes.

    ``encodes`` maps each feature to the R² of the cluster activation regressed on it;
    ``correlation`` maps each numeric feature (or word) to the Pearson correlation. ``index`` is
    the cluster's number in its layer (``-1`` for the dead group) and ``activation`` the mean
    activation of its neurons on each example of the data it was computed on.
    """

    layer: int
    neurons: tuple[Component, ...]
    encodes: dict[str, float]
    correlation: dict[str, float]
    top_feature: str
    index: int = 0
    activation: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    @property
    def dead(self) -> bool:
        return self.index < 0

    @property
    def name(self) -> str:
        return f"L{self.layer}dead" if self.dead else f"L{self.layer}C{self.index}"

    @property
    def top_r2(self) -> float:
        return self.encodes.get(self.top_feature, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "layer": self.layer, "neurons": [str(n) for n in self.neurons],
                "top_feature": self.top_feature, "encodes": dict(self.encodes),
                "correlation": dict(self.correlation)}


# --- activations and features ----------------------------------------------------------------


def _data(adapter: Any, data: Any) -> Any:
    data = adapter.background if data is None else data
    if data is None or len(data) == 0:
        raise TwopathError("neuron clusters need data: pass rows or sentences, or set adapter.background")
    return data


def layer_activations(adapter: Any, layer: int, data: Any = None, batch_size: int = BATCH_ROWS) -> np.ndarray:
    """Every neuron's activation of hidden ``layer`` on every example: (n_examples, n_neurons)."""
    return activations_by_layer(adapter, data, [layer], batch_size)[layer]


def activations_by_layer(adapter: Any, data: Any = None, layers: Sequence[int] | None = None,
                         batch_size: int = BATCH_ROWS) -> dict[int, np.ndarray]:
    """:func:`layer_activations` of several hidden layers (default: all), from the same passes.

    Rows of a table go through in one pass. Sequences go through in batches of ``batch_size``
    of similar length (sorted), each padded to at least :data:`~twopath.mechanistic.heads.SOLO_BELOW`
    tokens: a sentence's numbers are then the same, bit for bit, as in any padded batch at
    least that wide (the CPU kernels change below it), while little of each pass is padding.
    A batch records at most :data:`CAPTURE_BYTES` of activations.
    """
    data = _data(adapter, data)
    layers = list(range(adapter.n_layers)) if layers is None else list(layers)
    raws = data if isinstance(data, pd.DataFrame) else list(data)
    inputs = adapter.batch_inputs(raws)
    mask = adapter.position_mask(inputs) if adapter.positional else None
    if mask is None:
        return _pooled(adapter, layers, inputs)
    lengths = mask.sum(1).tolist()
    per_token = 4 * sum(adapter.mlp_width(layer) for layer in layers)  # bytes of recorded neurons
    found: dict[int, np.ndarray] = {}
    for batch in length_batches(lengths, batch_size, lambda width: per_token * max(SOLO_BELOW, width), CAPTURE_BYTES):
        width = min(int(mask.shape[1]), max(SOLO_BELOW, int(lengths[batch[-1]])))
        rows = torch.as_tensor(batch, device=mask.device)
        part = {k: v[rows][:, :width] if v.dim() > 1 else v[rows] for k, v in inputs.items()}
        for layer, acts in _pooled(adapter, layers, part).items():
            if layer not in found:
                found[layer] = np.empty((len(lengths), acts.shape[1]), dtype=acts.dtype)
            found[layer][batch] = acts
    return found


def _pooled(adapter: Any, layers: Sequence[int], inputs: Any) -> dict[int, np.ndarray]:
    """One pass: each layer's neurons per example (a sequence: averaged over its real positions)."""
    with torch.no_grad(), capture(adapter, [Component("neuron", layer, 0) for layer in layers]) as store:
        adapter.run(inputs)
    return pooled_neurons(store, layers, adapter.position_mask(inputs))


def feature_frame(adapter: Any, data: Any = None, words: Sequence[str] | None = None) -> pd.DataFrame:
    """The features clusters are labelled with: raw rows (tabular) or word presence (text)."""
    data = _data(adapter, data)
    raws = data if isinstance(data, pd.DataFrame) else list(data)
    return adapter.data_features(raws, words)


def _design(frame: pd.DataFrame, feature: str) -> np.ndarray:
    """Regressor columns of one feature: the values if numeric, else its one-hot encoding."""
    if feature not in frame.columns:
        raise TwopathError(f"unknown feature {feature!r}; expected one of {list(frame.columns)}")
    column = frame[feature]
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=float)[:, None]
    return pd.get_dummies(column.astype(str)).to_numpy(dtype=float)


def _is_numeric(frame: pd.DataFrame, feature: str) -> bool:
    return bool(pd.api.types.is_numeric_dtype(frame[feature]))


def _pearson(y: np.ndarray, x: np.ndarray) -> float:
    y, x = np.asarray(y, dtype=float).ravel(), np.asarray(x, dtype=float).ravel()
    if y.std() <= EPS or x.std() <= EPS:
        return 0.0
    return float(np.corrcoef(y, x)[0, 1])


def joint_r2(activation: np.ndarray, data: Any,
             features: Sequence[str] = ("monthly_income", "employment_type")) -> float:
    """R² of a linear regression of ``activation`` on ``features`` together (0 if it is constant).

    ``data`` holds the features of the same examples, in the same order (a DataFrame of raw
    rows, or :func:`word_presence`); categorical features are one-hot encoded.
    """
    from sklearn.linear_model import LinearRegression

    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    y = np.asarray(activation, dtype=float).ravel()
    if len(y) != len(frame):
        raise TwopathError(f"{len(y)} activations but {len(frame)} rows of features")
    if y.std() <= EPS:
        return 0.0
    x = np.hstack([_design(frame, f) for f in features])
    return float(np.clip(LinearRegression().fit(x, y).score(x, y), 0.0, 1.0))


# --- clustering --------------------------------------------------------------------------------


def dead_neurons(acts: np.ndarray) -> np.ndarray:
    """Boolean mask of neurons that never fire (never above zero) or never change."""
    return (acts.max(0) <= EPS) | (acts.std(0) <= EPS)


def _n_distinct(profiles: np.ndarray, tol: float = 1e-3, limit: int | None = None) -> int:
    """How many profiles differ (RMS distance above ``tol``): k-means gets no more clusters.

    Counting stops at ``limit`` (the clusters asked for): more distinct profiles change nothing.
    """
    kept: list[np.ndarray] = []
    for profile in profiles:
        if limit is not None and len(kept) >= limit:
            break
        if all(np.sqrt(np.mean((profile - other) ** 2)) > tol for other in kept):
            kept.append(profile)
    return len(kept)


def cluster_labels(acts: np.ndarray, n_clusters: int = 4, seed: int = 0) -> np.ndarray:
    """A cluster number per neuron (``-1`` = dead), numbered in order of their first neuron."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    if n_clusters < 1:
        raise TwopathError("n_clusters must be at least 1")
    labels = np.full(acts.shape[1], -1, dtype=int)
    alive = np.flatnonzero(~dead_neurons(acts))
    if alive.size == 0:
        return labels
    profiles = StandardScaler().fit_transform(acts[:, alive]).T
    k = min(n_clusters, _n_distinct(profiles, limit=n_clusters))
    found = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(profiles).labels_
    order: dict[int, int] = {}
    for label in found:
        order.setdefault(int(label), len(order))
    labels[alive] = [order[int(label)] for label in found]
    return labels


def _describe(layer: int, index: int, members: np.ndarray, acts: np.ndarray,
              frame: pd.DataFrame | None) -> NeuronCluster:
    activation = acts[:, members].mean(1)
    neurons = tuple(Component("neuron", layer, int(i)) for i in members)
    if frame is None:  # not labelled: what the caller does not read is not fitted
        return NeuronCluster(layer, neurons, {}, {}, NO_FEATURE, index, activation)
    encodes = {f: joint_r2(activation, frame, (f,)) for f in frame.columns}
    correlation = {f: _pearson(activation, frame[f].to_numpy()) for f in frame.columns if _is_numeric(frame, f)}
    best = max(encodes, key=lambda f: encodes[f]) if encodes else NO_FEATURE
    top = best if index >= 0 and encodes.get(best, 0.0) > 0 else NO_FEATURE
    return NeuronCluster(layer, neurons, encodes, correlation, top, index, activation)


def clusters_of(acts: np.ndarray, layer: int, frame: pd.DataFrame | None = None, n_clusters: int = 4,
                seed: int = 0) -> list[NeuronCluster]:
    """:func:`neuron_clusters` from the layer's activations ``acts`` (:func:`layer_activations`),
    labelled with the features ``frame`` (:func:`feature_frame`; ``None``: not labelled, every
    ``encodes`` empty and ``top_feature`` ``"none"``)."""
    labels = cluster_labels(acts, n_clusters, seed)
    order = sorted(set(labels.tolist()), key=lambda i: (i < 0, i))
    return [_describe(layer, i, np.flatnonzero(labels == i), acts, frame) for i in order]


def neuron_clusters(adapter: Any, layer: int, data: Any = None, n_clusters: int = 4, seed: int = 0,
                    words: Sequence[str] | None = None, label: bool = True) -> list[NeuronCluster]:
    """Cluster ``layer``'s neurons by activation profile and label each cluster (dead group last).

    ``data``: raw rows (tabular, default ``adapter.background``) or sentences (text, with
    ``words``, the word list the clusters are labelled with). ``label=False`` skips the labels
    (the regressions of every cluster on every feature) for callers that read only the groups
    and their activations.
    """
    acts = layer_activations(adapter, layer, data)
    frame = feature_frame(adapter, data, words) if label else None
    return clusters_of(acts, layer, frame, n_clusters, seed)


def cluster_table(clusters: Sequence[NeuronCluster]) -> pd.DataFrame:
    """One row per cluster: its neurons, top feature, and R² (``r2:``) and correlation (``r:``)."""
    rows = []
    for c in clusters:
        rows.append({"layer": c.layer, "cluster": c.name, "n_neurons": len(c.neurons),
                     "neurons": " ".join(str(n) for n in c.neurons), "top_feature": c.top_feature,
                     "top_r2": c.top_r2, **{f"r2:{f}": v for f, v in c.encodes.items()},
                     **{f"r:{f}": v for f, v in c.correlation.items()}})
    return pd.DataFrame(rows)


# --- per-feature views ---------------------------------------------------------------------------


def feature_neurons(adapter: Any, feature: str, data: Any = None, top_k: int = 5,
                    layers: Sequence[int] | None = None, activations: Mapping[int, np.ndarray] | None = None
                    ) -> dict[int, list[tuple[Component, float]]]:
    """Per layer, the ``top_k`` neurons whose activation correlates most with ``feature``.

    The score is the Pearson correlation (signed; ranked by its size) for a numeric feature or a
    word (text), and the multiple correlation ``sqrt(R²)`` (unsigned) for a categorical feature.
    ``activations``: the layers' activations on ``data`` if the caller has them
    (:func:`activations_by_layer`); the others are computed.
    """
    frame = feature_frame(adapter, data, [feature] if adapter.positional else None)
    _design(frame, feature)  # validates the name
    numeric = _is_numeric(frame, feature)
    layers = list(range(adapter.n_layers)) if layers is None else list(layers)
    known = dict(activations or {})
    missing = [layer for layer in layers if layer not in known]
    if missing:
        known.update(activations_by_layer(adapter, data, missing))
    ranked = {}
    for layer in layers:
        acts = known[layer]
        scores = np.array([_pearson(acts[:, i], frame[feature].to_numpy()) if numeric
                           else np.sqrt(joint_r2(acts[:, i], frame, (feature,)))
                           for i in range(acts.shape[1])])
        order = np.argsort(-np.abs(scores), kind="stable")[:top_k]
        ranked[layer] = [(Component("neuron", layer, int(i)), float(scores[i])) for i in order]
    return ranked


def _spec_name(spec: FeatureSpec) -> str:
    return spec if isinstance(spec, str) else "+".join(spec)


def layer_encoding(adapter: Any, data: Any = None, features: Sequence[FeatureSpec] | None = None,
                   n_clusters: int = 4, seed: int = 0, words: Sequence[str] | None = None) -> pd.DataFrame:
    """For every layer and feature, the cluster with the highest R² (long format).

    A feature given as a tuple, e.g. ``("monthly_income", "employment_type")``, is scored with
    :func:`joint_r2` on all its parts together and named ``monthly_income+employment_type``.
    Columns: ``layer, feature, cluster, n_neurons, r2``; ``.pivot(index="layer",
    columns="feature", values="r2")`` gives the layer-by-feature grid.
    """
    if adapter.positional and words is None and features is not None:
        words = sorted({w for spec in features for w in ((spec,) if isinstance(spec, str) else spec)})
    frame = feature_frame(adapter, data, words)
    specs = list(frame.columns) if features is None else list(features)
    activations = activations_by_layer(adapter, data)
    rows = []
    for layer in range(adapter.n_layers):
        alive = [c for c in clusters_of(activations[layer], layer, None, n_clusters, seed) if not c.dead]
        for spec in specs:
            parts = (spec,) if isinstance(spec, str) else tuple(spec)
            scored = [(joint_r2(c.activation, frame, parts), c) for c in alive]
            r2, best = max(scored, key=lambda s: s[0]) if scored else (0.0, None)
            rows.append({"layer": layer, "feature": _spec_name(spec), "cluster": best.name if best else NO_FEATURE,
                         "n_neurons": len(best.neurons) if best else 0, "r2": r2})
    return pd.DataFrame(rows)
