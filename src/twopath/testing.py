"""The public contract suite: ``check_adapter`` and ``check_method``.

Like scikit-learn's ``check_estimator``, these functions run the properties every adapter and
every method must have, on *your* model and example, and raise ``AssertionError`` naming the
first one that fails. twopath's own test suite runs them over a tiny random model of every
supported architecture family and the tabular MLP; run them on a new architecture family or a
new method before trusting its numbers.

``check_adapter(adapter, example)``:

* the clean logits are finite, one row of ``len(labels)``, on the model's device;
* batched equals unbatched: masked inputs evaluated together equal each row alone, and a padded
  batch of two different inputs equals each input alone (decoders read the last real token);
* the embedding path is the model: ``run_embedded(embed(inputs)) == run(inputs)``;
* every named site is a module of the model and fires on a forward pass; head sites split into
  ``n_heads`` slices, neuron sites have ``mlp_width`` units;
* "ablating nothing changes nothing" and "patching clean into clean changes nothing": writing a
  component's own clean activation back leaves the output unchanged;
* resuming at every block from the clean run (:class:`~twopath.runtime.trace.Trace`) equals the
  full forward pass;
* hooks are removed after an exception inside an intervention;
* every tensor the adapter creates lives on the model's device.

``check_method(name, adapter, example)`` runs a registered method and checks the result's
shape, finiteness and determinism, plus the method's own axiom: IG completeness, SHAP
additivity, occlusion against a direct evaluation, ablation effects against an independent
one-intervention-per-forward reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from twopath.runtime.adapter import ModelAdapter
from twopath.runtime.interventions import Edit, capture, intervene, read, site_key
from twopath.runtime.trace import Trace, forget, record
from twopath.types import Component, Example

ATOL = 1e-4
#: light settings so a check runs in seconds on a tiny model
LIGHT = {"lime": {"num_samples": 200}, "shap": {"max_evals": 200, "exact_max_units": 10},
         "integrated_gradients": {"max_steps": 256}}


class _DeviceWatch(TorchFunctionMode):
    """Records the device of every tensor a torch function returns inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, tuple | list) else (out,):
            if isinstance(value, torch.Tensor) and value.device.type != "meta":
                self.devices.add(value.device.type)
        return out


@contextmanager
def on_device(adapter: ModelAdapter) -> Iterator[_DeviceWatch]:
    """Fail if any tensor made inside the block is on another device type than the model."""
    with _DeviceWatch() as watch:
        yield watch
    stray = watch.devices - {adapter.device.type}
    assert not stray, f"tensors created on {sorted(stray)} while the model is on {adapter.device.type}"


def _logits(adapter: ModelAdapter, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    return adapter.logits(inputs).cpu().numpy()


def _close(a: Any, b: Any, what: str, atol: float = ATOL) -> None:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape}"
    gap = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert gap <= atol, f"{what}: differs by {gap:.3g} (tolerance {atol})"


def check_adapter(adapter: ModelAdapter, example: Example, other: Example | None = None) -> None:
    """Run every adapter property on ``example`` (and ``other``, a second input, if given)."""
    forget(adapter)
    with on_device(adapter):
        inputs = adapter.inputs(example)
        clean = _logits(adapter, inputs)
        assert clean.shape == (1, len(adapter.labels)), f"logits shape {clean.shape}"
        assert np.isfinite(clean).all(), "clean logits are not finite"
        _check_masking(adapter, example)
        if other is not None:
            _check_padding(adapter, example, other)
        with torch.no_grad():
            _close(adapter.run_embedded(adapter.embed(inputs), inputs).float().cpu().numpy(), clean,
                   "run_embedded(embed(inputs)) vs run(inputs)")
        _check_sites(adapter, inputs)
        _check_clean_writes(adapter, inputs, clean)
        _check_resume(adapter, inputs, clean)
    _check_hooks_removed(adapter, inputs)


def _check_masking(adapter: ModelAdapter, example: Example) -> None:
    n = len(adapter.units(example))
    rng = np.random.default_rng(0)
    keep = rng.random((4, n)) < 0.5
    keep[0] = True
    inputs, group = adapter.masked_inputs(example, keep)
    together = adapter.output(adapter.logits(inputs), 0).cpu().numpy().reshape(len(keep), group).mean(1)
    alone = []
    for row in keep:
        one, g = adapter.masked_inputs(example, row[None, :])
        alone.append(adapter.output(adapter.logits(one), 0).cpu().numpy().reshape(1, g).mean(1)[0])
    _close(together, alone, "masked inputs batched vs one at a time")
    full = adapter.output(adapter.logits(adapter.masked_inputs(example, keep[:1])[0]), 0).cpu().numpy()
    if group == 1:  # all units present = the example itself
        _close(full, adapter.output(adapter.logits(adapter.inputs(example)), 0).cpu().numpy(),
               "all units kept vs the example")


def _check_padding(adapter: ModelAdapter, example: Example, other: Example) -> None:
    raws = [adapter.check_example(example), adapter.check_example(other)]
    batch = _logits(adapter, adapter.batch_inputs(raws))
    _close(batch[0], _logits(adapter, adapter.inputs(example))[0], "first row of a padded batch vs alone")
    _close(batch[1], _logits(adapter, adapter.inputs(other))[0], "second row of a padded batch vs alone")


def _check_sites(adapter: ModelAdapter, inputs: dict[str, torch.Tensor]) -> None:
    sites = adapter.sites()
    owned = {id(m) for m in adapter.model.modules()}
    assert sites, "the adapter declares no sites"
    for name, where in sites.items():
        assert id(where.module) in owned, f"site {name} is not a module of the model"
    acts = record(adapter, inputs, list(sites))
    assert set(acts) == set(sites), f"sites that never fired: {sorted(set(sites) - set(acts))}"
    for layer in range(adapter.n_layers):
        neuron = adapter.site(Component("neuron", layer, 0))
        name = next(n for n, s in sites.items() if s == neuron)
        width = acts[name].shape[-1]
        assert width == adapter.mlp_width(layer), f"L{layer} neuron site has {width} units, mlp_width says {adapter.mlp_width(layer)}"
        if adapter.n_heads:
            head = adapter.site(Component("head", layer, 0))
            name = next(n for n, s in sites.items() if s == head)
            assert acts[name].shape[-1] == adapter.n_heads * adapter.head_dim(), f"L{layer} head site width"


def _probe_components(adapter: ModelAdapter, inputs: dict[str, torch.Tensor]) -> list[Component]:
    last = adapter.n_layers - 1
    probes = [Component("neuron", 0, 0), Component("neuron", last, adapter.mlp_width(last) - 1),
              Component("layer", last)]
    if adapter.n_heads:
        probes += [Component("head", 0, 0), Component("head", last, adapter.n_heads - 1)]
    if adapter.positional:
        probes.append(Component("resid", 0, position=0))
    return probes


def _check_clean_writes(adapter: ModelAdapter, inputs: dict[str, torch.Tensor], clean: np.ndarray) -> None:
    probes = _probe_components(adapter, inputs)
    with torch.no_grad(), capture(adapter, probes) as store:
        adapter.run(inputs)
    edits = [Edit(0, c, read(adapter, c, store[site_key(c)])) for c in probes]
    with intervene(adapter, edits):
        patched = _logits(adapter, inputs)
    _close(patched, clean, "patching clean activations into the clean run")
    with intervene(adapter, []):
        _close(_logits(adapter, inputs), clean, "an intervention with no edits")


def _check_resume(adapter: ModelAdapter, inputs: dict[str, torch.Tensor], clean: np.ndarray) -> None:
    trace = Trace(adapter, inputs)
    _close(trace.logits.cpu().numpy(), clean, "Trace.logits vs run")
    trace.prepare_resume()
    for start in range(adapter.n_layers + 1):
        with torch.no_grad():
            rows = trace.run_from(start, 2).float().cpu().numpy()
        _close(rows, np.repeat(clean, 2, axis=0), f"resuming at block {start} vs the full pass")
    overridden = [n for n, m in adapter.model.named_modules() if "forward" in m.__dict__]
    assert not overridden, f"modules with a replaced forward: {overridden}"


def _check_hooks_removed(adapter: ModelAdapter, inputs: dict[str, torch.Tensor]) -> None:
    def count() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in adapter.model.modules())

    before = count()
    component = _probe_components(adapter, inputs)[0]
    try:
        with intervene(adapter, [Edit(0, component, None)]):
            raise KeyboardInterrupt  # the harshest exception a user can raise mid-sweep
    except KeyboardInterrupt:
        pass
    assert count() == before, "hooks left on the model after an exception"


def check_method(name: str, adapter: ModelAdapter, example: Example, corrupted: Example | None = None,
                 **settings: Any) -> Any:
    """Run method ``name`` (attribution or mechanistic) on ``example`` and check its contract."""
    from twopath.attribution import ATTRIBUTION_METHODS
    from twopath.mechanistic import MECHANISTIC_METHODS

    target = adapter.labels[int(np.argmax(_logits(adapter, adapter.inputs(example))[0]))]
    if name in ATTRIBUTION_METHODS:
        options = {**LIGHT.get(name, {}), **settings}
        forget(adapter)  # both runs from scratch, so the memo's batch layout is the same
        with on_device(adapter):
            result = ATTRIBUTION_METHODS.create(name, **options).attribute(adapter, example, target=target)
        assert result.units == adapter.units(example), "units differ from the adapter's"
        assert result.scores.shape == (len(result.units),) and np.isfinite(result.scores).all(), "scores"
        forget(adapter)
        again = ATTRIBUTION_METHODS.create(name, **options).attribute(adapter, example, target=target)
        assert np.array_equal(result.scores, again.scores), "same seed gave different scores"
        _check_attribution_axiom(name, adapter, example, result)
        return result
    options = dict(settings)
    with on_device(adapter):
        result = MECHANISTIC_METHODS.create(name, **options).localize(adapter, example, target=target,
                                                                         corrupted=corrupted)
    assert len(result.components) == len(result.effects) > 0, "no components"
    assert np.isfinite(result.effects).all(), "effects are not finite"
    if name.endswith("_ablation") and result.meta.get("mode") in ("zero", "mean"):
        _check_ablation_reference(adapter, example, result)
    return result


def _output_of(adapter: ModelAdapter, example: Example, target: int) -> float:
    return float(adapter.output(adapter.logits(adapter.inputs(example)), target)[0])


def _check_attribution_axiom(name: str, adapter: ModelAdapter, example: Example, result: Any) -> None:
    target = adapter.target(result.target).index
    fx = _output_of(adapter, example, target)
    if name == "shap" and result.base_value is not None:
        _close(result.scores.sum() + result.base_value, fx, "SHAP additivity: base + sum vs f(x)", atol=1e-3)
    if name == "integrated_gradients":
        gap = fx - float(result.base_value)
        tolerance = max(1e-3, 2 * result.meta["completeness_delta"] * abs(gap) + 1e-4)
        _close(result.scores.sum(), gap, "IG completeness: sum vs f(x) - f(baseline)", atol=tolerance)
    if name == "occlusion":
        n = len(result.units)
        drops = []
        for i in range(n):
            keep = np.ones((1, n), dtype=bool)
            keep[0, i] = False
            inputs, group = adapter.masked_inputs(example, keep)
            drops.append(fx - float(adapter.output(adapter.logits(inputs), target).cpu().numpy().reshape(group).mean()))
        _close(result.scores, drops, "occlusion vs one masked evaluation per unit")


def _check_ablation_reference(adapter: ModelAdapter, example: Example, result: Any, k: int = 4) -> None:
    """The first ``k`` effects against one unbatched forward per component with ``intervene``."""
    from twopath.runtime.interventions import ablate

    target = adapter.target(result.target).index
    inputs = adapter.inputs(example)
    clean = _output_of(adapter, example, target)
    expected = []
    for component in result.components[:k]:
        with torch.no_grad(), intervene(adapter, ablate(adapter, [component], result.meta["mode"])):
            expected.append(clean - float(adapter.output(adapter.logits(inputs), target)[0]))
    _close(result.effects[:k], expected, f"{result.method} vs a one-intervention-per-forward reference", atol=1e-5)
