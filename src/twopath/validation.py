"""One validation layer for the command line and the Python API, run before anything heavy.

Everything a run can be told is checked here, before torch is imported, a model is loaded or
a method runs, and a problem is one :class:`~twopath.types.TwopathError` line naming the
argument, the value and what is allowed:

* **values**: text that must be UTF-8 and non-empty, seeds (``0 .. 2**32 - 1``), row numbers;
* **the output folder**: not a file, not below a file, writable, and either new, empty or a
  previous twopath report (the writers replace the folder as a whole, so a folder holding
  other files is refused rather than deleted);
* **run configurations**: a typed schema of every method's settings (:data:`METHODS`) with
  types, ranges and choices, the methods each kind of model supports, and the top-level keys;
* **model folders**: a Hugging Face folder's JSON files, labels and safetensors headers; a
  tabular folder's ``twopath_tabular.json`` (types, finite statistics, positive scales) and
  weight shapes against the layer sizes it declares, all read without torch.

This module imports only the standard library (and ``tomllib``), so ``twopath --help`` and a
refused argument stay instant. The schema mirrors the methods' ``__init__`` signatures; a test
(``tests/test_bad_input.py``) keeps the two in step.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twopath.types import TwopathError

SEED_MAX = 2**32 - 1
REPORT_FORMATS = ("html", "md", "json", "csv")
OUTPUT_SPACES = ("logit_diff", "probability")
MODALITIES = ("text", "tabular")
REPORT_ENTRIES = frozenset({"report.html", "report.md", "report.json", "tables"})
#: the largest finite float32: statistics and weights beyond it overflow the float32 model
FLOAT32_MAX = 3.4028234663852886e38


def shown(value: Any, limit: int = 80) -> str:
    """``repr`` of a value for a one-line message: escaped, on one line, shortened."""
    text = repr(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- plain values ------------------------------------------------------------------------------


def check_utf8(value: str, name: str) -> str:
    """``value`` as given on the command line, refused when it holds bytes that are not UTF-8
    (Python decodes them to lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = value[err.start].encode("utf-8", "surrogateescape") if 0xDC80 <= ord(value[err.start]) <= 0xDCFF else b""
        byte = f" (byte 0x{bad.hex()})" if bad else ""
        raise TwopathError(f"{name} is not valid UTF-8 text{byte} at character {err.start}; "
                           "pass UTF-8 text") from None
    return value


def check_text(value: str, name: str) -> str:
    """Non-empty UTF-8 text without NUL characters."""
    check_utf8(value, name)
    if not value.strip():
        raise TwopathError(f"{name} is empty" + ("; omit it to let twopath build the contrast" if name == "--corrupt" else ""))
    if "\x00" in value:
        raise TwopathError(f"{name} contains a NUL character")
    return value


def check_seed(seed: Any, name: str = "--seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise TwopathError(f"{name} {shown(seed)} is out of range: a seed is an integer from 0 to {SEED_MAX} (2**32 - 1)")
    return seed


def check_count(value: Any, name: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        upper = f" to {high}" if high is not None else " or more"
        raise TwopathError(f"{name} {shown(value)} is out of range: expected an integer {low}{upper}")
    return value


def check_row(row: Any, name: str, n_rows: int | None = None) -> int:
    """A 0-based row number; negative numbers are refused (they do not count from the end)."""
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        raise TwopathError(f"{name} {shown(row)} is out of range: rows are numbered from 0 (negative rows are not counted from the end)")
    if n_rows is not None and row >= n_rows:
        raise TwopathError(f"{name} {row} is out of range: the table has {n_rows} rows (0 to {n_rows - 1})")
    return row


def check_formats(value: str | Sequence[str], known: Sequence[str]) -> list[str]:
    formats = [f.strip() for f in value.split(",")] if isinstance(value, str) else [str(f).strip() for f in value]
    formats = [f for f in formats if f]
    bad = [f for f in formats if f not in known]
    if bad or not formats:
        raise TwopathError(f"--format {shown(value)}: unknown format(s) {bad or 'none given'}; choose from {','.join(known)}")
    return list(dict.fromkeys(formats))


def read_utf8(path: str | Path, name: str) -> str:
    """The text of a file that must exist and be UTF-8."""
    path = Path(path)
    if not path.exists():
        raise TwopathError(f"{name}: no such file: {path}")
    if not path.is_file():
        raise TwopathError(f"{name}: {path} is not a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TwopathError(f"{name}: cannot read {path} ({err.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TwopathError(f"{name}: {path} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})") from None


def check_input_file(path: str | Path, name: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise TwopathError(f"{name}: no such file: {path}")
    if not path.is_file():
        raise TwopathError(f"{name}: {path} is not a file")
    if not os.access(path, os.R_OK):
        raise TwopathError(f"{name}: {path} is not readable")
    return path


# --- the output folder --------------------------------------------------------------------------


def is_report_folder(path: Path) -> bool:
    """An empty folder or one holding only what a twopath report writes."""
    try:
        entries = list(path.iterdir())
    except OSError:
        return False
    for entry in entries:
        if entry.name not in REPORT_ENTRIES or entry.is_symlink():
            return False
        if entry.name == "tables":
            if not entry.is_dir() or any(not (t.is_file() and t.suffix == ".csv") for t in entry.iterdir()):
                return False
        elif not entry.is_file():
            return False
    return True


def check_out(path: str | Path, name: str = "--out") -> Path:
    """The output folder, checked before any work: it is replaced as a whole at the end."""
    out = Path(path)
    absolute = Path(os.path.abspath(out))
    if absolute == Path(absolute.anchor) or Path.cwd().is_relative_to(absolute):
        raise TwopathError(f"{name} {out} is the current folder or one above it; give a folder of its own for the report")
    if out.is_symlink():
        raise TwopathError(f"{name} {out} is a symbolic link; give the folder itself")
    if out.exists():
        if not out.is_dir():
            raise TwopathError(f"{name} {out} is a file, not a folder")
        if not is_report_folder(out):
            names = sorted(p.name for p in out.iterdir())
            listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise TwopathError(f"{name} {out} holds files that are not a twopath report ({listed}); the output "
                               "folder is replaced as a whole, so give a new or empty folder or a previous report's folder")
    existing = absolute.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise TwopathError(f"{name} {out} lies below {existing}, which is a file, not a folder")
    try:  # the report is staged in a sibling folder and renamed into place: the parent must take both
        os.rmdir(tempfile.mkdtemp(prefix=".twopath-probe-", dir=existing))
    except OSError as err:
        raise TwopathError(f"{name} {out}: cannot write in {existing} ({err.strerror or err})") from None
    if out.exists() and not os.access(out, os.W_OK | os.X_OK):
        raise TwopathError(f"{name} {out}: the previous report folder is not writable")
    return out


# --- run configurations: the settings schema -----------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One method setting: its kind, allowed range or choices.

    Kinds: ``int``, ``float``, ``bool``, ``str``, ``ints`` / ``strs`` (non-empty arrays, read as
    tuples) and ``baseline`` (a name of the model kind's baselines, or for tables a row).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | Mapping[str, tuple[str, ...]] | None = None
    optional: bool = False  # ``None`` allowed (the default, "automatic"; TOML has no null)
    above: bool = False  # ``low`` is exclusive

    def allowed(self, modality: str | None = None) -> str:
        choices = self._choices(modality)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "baseline":
            names = " or ".join(repr(c) for c in choices or ())
            return f"{names}" + (" or a table of feature values" if modality in (None, "tabular") else "")
        if choices is not None:
            what = "a list of" if self.kind == "strs" else "one of"
            return f"{what} {', '.join(repr(c) for c in choices)}"
        noun = {"int": "an integer", "float": "a number", "str": "a string", "ints": "a list of integers",
                "strs": "a list of strings"}[self.kind]
        if self.low is not None and self.high is not None:
            return f"{noun} from {_num(self.low)}{' (exclusive)' if self.above else ''} to {_num(self.high)}"
        if self.low is not None:
            return f"{noun} {'above' if self.above else 'of at least'} {_num(self.low)}"
        return noun

    def _choices(self, modality: str | None) -> tuple[str, ...] | None:
        if isinstance(self.choices, Mapping):
            if modality is None:
                return tuple(dict.fromkeys(c for group in self.choices.values() for c in group))
            return tuple(self.choices.get(modality, ()))
        return self.choices

    def check(self, value: Any, modality: str | None = None) -> Any:
        """The value, normalized (arrays to tuples, integers to floats), or ``ValueError(why)``."""
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"expected {self.allowed(modality)}")
        choices = self._choices(modality)
        if self.kind == "any":
            return tuple(value) if isinstance(value, list) else value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError("expected true or false (a TOML boolean, not a string or number)")
            return value
        if self.kind == "baseline":
            if isinstance(value, Mapping) and modality in (None, "tabular"):
                return dict(value)
            if isinstance(value, str) and value in (choices or ()):
                return value
            raise ValueError(f"expected {self.allowed(modality)}")
        if self.kind in ("ints", "strs"):
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
                raise ValueError(f"expected {self.allowed(modality)} (a non-empty array)")
            item = Setting("int" if self.kind == "ints" else "str", self.low, self.high, choices)
            items = tuple(item.check(v, modality) for v in value)
            if len(set(items)) != len(items):
                raise ValueError("the list repeats an entry")
            return items
        if self.kind == "str":
            if not isinstance(value, str):
                raise ValueError(f"expected {self.allowed(modality)}")
            if choices is not None and value not in choices:
                raise ValueError(f"expected {self.allowed(modality)}")
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected {self.allowed(modality)}")
        elif self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"expected {self.allowed(modality)}")
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number: {self.allowed(modality)}")
            value = float(value)
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            raise ValueError(f"out of range: expected {self.allowed(modality)}")
        if self.high is not None and value > self.high:
            raise ValueError(f"out of range: expected {self.allowed(modality)}")
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class MethodSchema:
    path: str  # "attribution" or "mechanistic"
    modalities: tuple[str, ...]
    settings: dict[str, Setting] = field(default_factory=dict)


_BIG = 1_000_000
_BATCH = Setting("int", 1, 1_000_000)
_MODE = Setting("str", choices=("zero", "mean", "resample"))
_RESAMPLES = Setting("int", 1, 10_000)
_DIRECTION = Setting("str", choices=("denoise", "noise", "auto"))
_SITES = {"text": ("resid", "head", "neuron", "layer"), "tabular": ("layer", "neuron")}
_ABLATION = {"batch_size": _BATCH, "mode": _MODE, "n_resamples": _RESAMPLES, "prefix_cache": Setting("bool")}

#: Every method's settings (the ``__init__`` parameters other than ``output`` and ``seed``).
METHODS: dict[str, MethodSchema] = {
    "shap": MethodSchema("attribution", MODALITIES, {
        "algorithm": Setting("str", choices={"text": ("auto", "partition", "exact", "permutation", "kernel"),
                                             "tabular": ("auto", "partition", "exact", "permutation", "kernel",
                                                         "deep", "gradient")}),
        "max_evals": Setting("int", 1, _BIG, optional=True),  # None: the budget rule
        # exact SHAP evaluates 2**n coalitions: above 20 units that is more than a million
        "exact_max_units": Setting("int", 0, 20, optional=True),  # None: 10 words, 12 table features
        "background_size": Setting("int", 1, 100_000),
    }),
    "lime": MethodSchema("attribution", MODALITIES, {
        "num_samples": Setting("int", 10, _BIG, optional=True),  # None: the budget rule
        "kernel_width": Setting("float", 0, 1e6, above=True, optional=True),
    }),
    "integrated_gradients": MethodSchema("attribution", MODALITIES, {
        "baseline": Setting("baseline", choices={"text": ("pad", "mask", "zero"), "tabular": ("mean", "median")},
                            optional=True),
        "n_steps": Setting("int", 1, 100_000),
        "max_steps": Setting("int", 1, 100_000),
        "max_delta": Setting("float", 0, 1e6, above=True),
        "internal_batch_size": Setting("int", 1, 100_000),
    }),
    "occlusion": MethodSchema("attribution", MODALITIES),
    "gradient_x_input": MethodSchema("attribution", MODALITIES),
    "attention": MethodSchema("attribution", ("text",)),
    "head_ablation": MethodSchema("mechanistic", ("text",), dict(_ABLATION)),
    "neuron_ablation": MethodSchema("mechanistic", MODALITIES, {
        **_ABLATION, "layers": Setting("ints", -10_000, 10_000, optional=True)}),
    "block_ablation": MethodSchema("mechanistic", MODALITIES, dict(_ABLATION)),
    "position_ablation": MethodSchema("mechanistic", ("text",), dict(_ABLATION)),
    "activation_patching": MethodSchema("mechanistic", MODALITIES, {
        "batch_size": _BATCH, "direction": _DIRECTION, "sites": Setting("strs", choices=_SITES, optional=True),
        "prefix_cache": Setting("bool")}),
    "attribution_patching": MethodSchema("mechanistic", MODALITIES, {
        "batch_size": _BATCH, "direction": _DIRECTION, "sites": Setting("strs", choices=_SITES, optional=True)}),
    "logit_lens": MethodSchema("mechanistic", ("text",), {"batch_size": _BATCH,
                                                          "position": Setting("int", -_BIG, _BIG, optional=True)}),
    "direct_logit_attribution": MethodSchema("mechanistic", ("text",), {"batch_size": _BATCH}),
    "direct_effect": MethodSchema("mechanistic", ("text",), {
        "batch_size": _BATCH, "direction": _DIRECTION, "frozen_norm": Setting("bool")}),
}
#: set once per run for every method, never per method
RESERVED = ("seed", "output")


def _registered(name: str) -> MethodSchema | None:
    """A method registered in the library but not (yet) in :data:`METHODS`: its settings are
    the names of its ``__init__`` parameters, their values unchecked (imports the registries)."""
    import inspect

    from twopath.attribution import ATTRIBUTION_METHODS
    from twopath.mechanistic import MECHANISTIC_METHODS

    for registry in (ATTRIBUTION_METHODS, MECHANISTIC_METHODS):
        if name in registry:
            entry = registry.get(name)
            params = set(inspect.signature(entry.cls).parameters) - set(RESERVED)
            return MethodSchema(registry.path, tuple(entry.modalities), {p: Setting("any", optional=True) for p in params})
    return None


def _schema(name: str, path: str | None = None) -> MethodSchema:
    schema = METHODS.get(name) or (_registered(name) if isinstance(name, str) else None)
    if schema is None or (path is not None and schema.path != path):
        known = sorted(n for n, s in METHODS.items() if path is None or s.path == path)
        where = f"{path} " if path else ""
        raise TwopathError(f"unknown {where}method {shown(name)}; known: {known}")
    return schema


def check_method(name: Any, path: str | None = None, modality: str | None = None, where: str = "") -> str:
    """A known method name of ``path`` that supports ``modality``."""
    if not isinstance(name, str):
        raise TwopathError(f"{where}method names are strings, got {shown(name)}")
    schema = _schema(name, path)
    if modality is not None and modality not in schema.modalities:
        raise TwopathError(f"{where}method {name!r} does not support {modality} models "
                           f"(it takes {' and '.join(schema.modalities)} models)")
    return name


def check_method_settings(name: str, values: Mapping[str, Any], modality: str | None = None,
                          where: str = "") -> dict[str, Any]:
    """One method's settings, typed and range-checked (``where`` prefixes the message)."""
    schema = _schema(name)
    if not isinstance(values, Mapping):
        raise TwopathError(f"{where}[settings.{name}] must be a table of settings, got {shown(values)}")
    shared = sorted(set(RESERVED) & set(values))
    if shared:
        raise TwopathError(f"{where}[settings.{name}] cannot set {shared}: output is set at the top level "
                           "and the seed with --seed, the same for every method")
    bad = sorted(set(values) - set(schema.settings))
    if bad:
        raise TwopathError(f"{where}{name} has no setting(s) {bad}; it takes {sorted(schema.settings)}")
    checked: dict[str, Any] = {}
    for key, value in values.items():
        try:
            checked[key] = schema.settings[key].check(value, modality)
        except ValueError as why:
            raise TwopathError(f"{where}{name}.{key} = {shown(value)}: {why}") from None
    if "n_steps" in checked or "max_steps" in checked:
        defaults = {"n_steps": 32, "max_steps": 512}
        steps, cap = checked.get("n_steps", defaults["n_steps"]), checked.get("max_steps", defaults["max_steps"])
        if cap < steps:
            raise TwopathError(f"{where}{name}.max_steps = {cap} is below n_steps = {steps}; max_steps caps the doubling of n_steps")
    return checked


def check_settings(settings: Mapping[str, Any] | None, modality: str | None = None, where: str = "") -> dict[str, dict[str, Any]]:
    """``settings={"method": {...}}`` of :func:`twopath.pipeline.explain`, checked.

    A table for a method that does not support ``modality`` is accepted (it has no effect)."""
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise TwopathError(f"{where}settings must be a table of [settings.METHOD] tables, got {shown(settings)}")
    out = {}
    for name, values in settings.items():
        check_method(name, where=where + "[settings] ")
        schema = _schema(name)
        out[name] = check_method_settings(name, values, modality if modality in schema.modalities else None, where)
    return out


_TOP = ("output", "checks", "methods", "settings")


def check_config(data: Mapping[str, Any], modality: str | None = None, source: str = "config") -> dict[str, Any]:
    """Keyword arguments for :func:`twopath.pipeline.explain` from a parsed configuration."""
    where = f"{source}: "
    unknown = sorted(set(data) - set(_TOP))
    if unknown:
        raise TwopathError(f"{where}unknown key(s) {unknown}; expected some of {sorted(_TOP)}")
    options: dict[str, Any] = {}
    if "output" in data:
        if data["output"] not in OUTPUT_SPACES:
            raise TwopathError(f"{where}output = {shown(data['output'])}: expected one of {list(OUTPUT_SPACES)}")
        options["output"] = data["output"]
    if "checks" in data:
        if not isinstance(data["checks"], bool):
            raise TwopathError(f"{where}checks = {shown(data['checks'])}: expected true or false (a TOML boolean, not a string or number)")
        options["with_checks"] = data["checks"]
    methods = data.get("methods", {})
    if not isinstance(methods, Mapping):
        raise TwopathError(f"{where}methods = {shown(methods)}: expected a [methods] table with attribution = [...] "
                           "and/or mechanistic = [...]")
    bad = sorted(set(methods) - {"attribution", "mechanistic"})
    if bad:
        raise TwopathError(f"{where}[methods] has unknown key(s) {bad}; expected attribution and/or mechanistic")
    for key, option in (("attribution", "attribution_methods"), ("mechanistic", "mechanistic_methods")):
        if key not in methods:
            continue
        names = methods[key]
        if isinstance(names, str) or not isinstance(names, Sequence) or not names:
            raise TwopathError(f"{where}methods.{key} = {shown(names)}: expected a non-empty list of method names "
                               "(leave the key out for the defaults)")
        for name in names:
            check_method(name, key, modality, where=f"{where}methods.{key}: ")
        if len(set(names)) != len(names):
            raise TwopathError(f"{where}methods.{key} = {shown(names)}: the list repeats a method")
        options[option] = list(names)
    settings = check_settings(data.get("settings"), modality, where)
    if settings:
        options["settings"] = settings
    return options


def load_config(path: str | Path, modality: str | None = None) -> dict[str, Any]:
    """Keyword arguments for :func:`twopath.pipeline.explain` from a TOML file, fully checked."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise TwopathError(f"config file does not exist: {path}")
    text = read_utf8(path, "--config")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise TwopathError(f"{path}: not valid TOML ({err})") from None
    return check_config(data, modality, str(path))


def check_layers(options: Mapping[str, Any], n_layers: int) -> None:
    """``layers`` settings within the model's layers (negative numbers count from the last)."""
    for name, values in (options.get("settings") or {}).items():
        for layer in (values or {}).get("layers") or ():
            if not -n_layers <= layer < n_layers:
                raise TwopathError(f"{name}.layers: layer {layer} out of range: the model has {n_layers} layers "
                                   f"(0 to {n_layers - 1}, or -{n_layers} to -1 from the last)")


# --- model folders --------------------------------------------------------------------------------

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


def safetensors_header(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) of a safetensors file, its size checked against the header
    (a truncated or corrupt file is one line here, before anything loads)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise TwopathError(f"{path} is not a safetensors file (empty or truncated)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 * 2**20):
            raise TwopathError(f"{path} is truncated or not a safetensors file (its header claims {n} bytes)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise TwopathError(f"{path} is not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise TwopathError(f"{path} is not a safetensors file (unreadable header)")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = info["dtype"]
            shape: tuple[int, ...] = tuple(int(s) for s in info["shape"])
            start, stop = info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise TwopathError(f"{path} is not a safetensors file (bad entry for {name!r})") from None
        count = math.prod(shape)
        if dtype in _DTYPE_BYTES and stop - start != count * _DTYPE_BYTES[dtype]:
            raise TwopathError(f"{path} is corrupt: tensor {name!r} does not fit its shape {list(shape)}")
        tensors[name] = (str(dtype), shape)
        end = max(end, int(stop))
    if 8 + n + end > size:
        raise TwopathError(f"{path} is truncated: the header needs {8 + n + end} bytes, the file has {size}")
    return tensors


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise TwopathError(f"{path}: {what} is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise TwopathError(f"{path}: {what} is not valid JSON ({err})") from None


def check_labels(labels: Sequence[Any], where: str) -> tuple[str, ...]:
    """Labels as strings, distinct ignoring case (a target is looked up by name, case-insensitive)."""
    names = tuple(str(x) for x in labels)
    lowered = [n.lower() for n in names]
    dupes = sorted({n for n in names if lowered.count(n.lower()) > 1})
    if dupes:
        raise TwopathError(f"{where}: the labels {list(names)} repeat {dupes} (ignoring case); labels must be distinct")
    if any(not n.strip() for n in names):
        raise TwopathError(f"{where}: a label is empty ({list(names)})")
    return names


def check_hf_dir(path: str | Path) -> Path:
    """Light checks of a Hugging Face model folder before torch is imported: its JSON files,
    its labels and the safetensors headers of its weights (the runtime's ``check_model_dir``
    then checks the architecture)."""
    directory = Path(path)
    if not directory.is_dir():
        raise TwopathError(f"model directory does not exist: {directory}" if not directory.exists()
                           else f"--model {directory} is a file; give the model's folder")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise TwopathError(f"not a Hugging Face model directory (no config.json): {directory}")
    config = _read_json(config_path, "config.json")
    if not isinstance(config, dict):
        raise TwopathError(f"{config_path} is not a JSON object")
    id2label = config.get("id2label")
    if id2label is not None:
        if not isinstance(id2label, dict):
            raise TwopathError(f"{config_path}: id2label must map class numbers to label names")
        check_labels(list(id2label.values()), str(config_path))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                 "model.safetensors.index.json"):
        if (directory / name).is_file():
            _read_json(directory / name, name)
    for weights in sorted(directory.glob("*.safetensors")):
        safetensors_header(weights)
    return directory


def check_tabular_dir(path: str | Path) -> dict[str, Any]:
    """``twopath_tabular.json`` checked (types, finite statistics, positive scales, distinct
    labels) and the weights' shapes against the layer sizes it declares; returns the config."""
    directory = Path(path)
    config_path, weights = directory / "twopath_tabular.json", directory / "model.safetensors"
    if not directory.is_dir() or not config_path.is_file() or not weights.is_file():
        raise TwopathError(f"not a twopath tabular model directory (needs twopath_tabular.json and model.safetensors): {directory}")
    config = _read_json(config_path, "twopath_tabular.json")
    where = str(config_path)
    if not isinstance(config, dict):
        raise TwopathError(f"{where} is not a JSON object")
    for key in ("features", "numeric_mean", "numeric_scale", "hidden", "labels"):
        if key not in config:
            raise TwopathError(f"{where}: missing key {key!r}")

    def strings(value: Any, key: str) -> list[str]:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise TwopathError(f"{where}: {key} must be a non-empty list of non-empty strings, got {shown(value)}")
        if len(set(value)) != len(value):
            raise TwopathError(f"{where}: {key} repeats an entry: {shown(value)}")
        return value

    features = strings(config["features"], "features")
    categories = config.get("categories", {})
    if not isinstance(categories, dict):
        raise TwopathError(f"{where}: categories must map categorical features to their values, got {shown(categories)}")
    for feature, values in categories.items():
        if feature not in features:
            raise TwopathError(f"{where}: categories names {feature!r}, which is not among the features {features}")
        strings(values, f"categories[{feature!r}]")
    numeric = [f for f in features if f not in categories]
    for key in ("numeric_mean", "numeric_scale"):
        values = config[key]
        if not isinstance(values, list) or len(values) != len(numeric):
            raise TwopathError(f"{where}: {key} must list one number per numeric feature ({len(numeric)}: {numeric}), "
                               f"got {shown(values)}")
        for feature, v in zip(numeric, values, strict=True):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > FLOAT32_MAX:
                raise TwopathError(f"{where}: {key} for {feature} is {shown(v)}; expected a finite number "
                                   f"(at most {FLOAT32_MAX:.3g} in size, the float32 range)")
            if key == "numeric_scale" and v <= 0:
                raise TwopathError(f"{where}: numeric_scale for {feature} is {v}; a scale must be positive "
                                   "(a zero scale divides by zero)")
    hidden = config["hidden"]
    if (not isinstance(hidden, list) or not hidden
            or not all(isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 1_000_000 for h in hidden)):
        raise TwopathError(f"{where}: hidden must be a non-empty list of layer widths (positive integers), got {shown(hidden)}")
    labels = config["labels"]
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in labels):
        raise TwopathError(f"{where}: labels must be a list of at least two label names, got {shown(labels)}")
    check_labels(labels, where)
    if "name" in config and not isinstance(config["name"], str):
        raise TwopathError(f"{where}: name must be a string, got {shown(config['name'])}")
    # the Sequential of build_mlp: Linear at 0, 2, 4, ... (ReLU between)
    widths = [len(numeric) + sum(len(c) for c in categories.values()), *hidden, len(labels)]
    expected: dict[str, tuple[int, ...]] = {}
    for i in range(len(widths) - 1):
        expected[f"{2 * i}.weight"] = (widths[i + 1], widths[i])
        expected[f"{2 * i}.bias"] = (widths[i + 1],)
    found = safetensors_header(weights)
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise TwopathError(f"{weights}: the weights do not match the layers of {config_path.name} "
                           f"(inputs {widths[0]}, hidden {hidden}, {len(labels)} labels): "
                           + (f"missing {missing[:4]}" if missing else "") + ("; " if missing and extra else "")
                           + (f"unexpected {extra[:4]}" if extra else ""))
    for name, shape in expected.items():
        dtype, got = found[name]
        if got != shape:
            raise TwopathError(f"{weights}: {name} has shape {list(got)}, but {config_path.name} (inputs {widths[0]}, "
                               f"hidden {hidden}, {len(labels)} labels) needs {list(shape)}")
        if not dtype.startswith(("F", "BF")):
            raise TwopathError(f"{weights}: {name} holds {dtype} values; the weights must be floating point")
    return config
