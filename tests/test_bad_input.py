"""Bad and odd input (issue 14): one ``error:`` line before any work, and nothing half-written.

The command-line cases run ``twopath`` in-process on tiny offline models (a 2-layer BERT, a
linear ReLU MLP over three numeric features) and assert, for each: the exit status, exactly one
line on stderr starting with ``error:`` and naming the problem, no traceback, and the state of
the output folder (absent, or the previous report byte for byte intact). Cases marked ``load``
fail if any weights load, cases marked ``compute`` if any method runs: the error must come first.

Classes (the issue's numbering): 1 one line instead of a traceback; 2 errors before the work;
3 no silent wrong answers; 4 the output folder replaced as a whole; 5 output-format safety;
6 the model's own length limit; 7 controls that are distributions, monotone cluster labels;
8 Ctrl-C always stops the run.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from tests import tiny_models
from tests.helpers import linear_adapter, single_threaded
from tests.tiny_models import TEXT, save_tiny
from twopath.cli import app
from twopath.types import Example, Report, TwopathError

LIGHT = """checks = false
[methods]
attribution = ["occlusion", "shap"]
mechanistic = ["neuron_ablation", "activation_patching"]
"""
OLD = {"report.html": b"<p>old report</p>", "report.md": b"# old report\n", "report.json": b'{"old": true}\n'}
WEIGHTS = np.array([1.0, -2.0, 0.5])


# --- shared, module-scoped models and files ---------------------------------------------------------


@dataclasses.dataclass
class Env:
    root: Path
    bert: Path
    bert16: Path
    tab: Path
    csv: Path
    light: Path

    def copy(self, src: Path, name: str) -> Path:
        dst = self.root / "variants" / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        return dst

    def edit_json(self, src: Path, file: str, name: str, **changes: Any) -> Path:
        dst = self.copy(src, name)
        data = json.loads((dst / file).read_text())
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        (dst / file).write_text(json.dumps(data))
        return dst

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def config(self, body: str, name: str | None = None) -> Path:
        return self.write(name or f"c{abs(hash(body))}.toml", body)

    def table(self, name: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
        frame = edit(pd.read_csv(self.csv))
        path = self.root / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        return path


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("bad-input")
    bert = save_tiny("bert", root / "bert")
    with pytest.MonkeyPatch.context() as mp:  # a model that takes 16 positions, not 128
        mp.setattr(tiny_models, "MAX_LEN", 16)
        bert16 = save_tiny("bert", root / "bert16")
    tab = root / "tab"
    linear_adapter(WEIGHTS).save(tab)
    rng = np.random.default_rng(0)
    csv = root / "tab.csv"
    pd.DataFrame(rng.normal(size=(40, 3)).round(4), columns=["x0", "x1", "x2"]).to_csv(csv, index=False)
    light = root / "light.toml"
    light.write_text(LIGHT)
    return Env(root, bert, bert16, tab, csv, light)


@pytest.fixture
def guards(monkeypatch):
    """``guard("load")``: loading weights fails the test; ``guard("compute")``: running a method does."""

    def guard(level: str | None) -> None:
        def forbidden(what: str) -> Callable[..., Any]:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise AssertionError(f"{what} started before the error was reported")
            return fail

        if level in ("load", "compute"):
            monkeypatch.setattr("twopath.pipeline.explain", forbidden("computation"))
            monkeypatch.setattr("twopath.seed.tasks.run_task", forbidden("computation"))
        if level == "load":
            monkeypatch.setattr("twopath.runtime.text._load", forbidden("loading the weights"))
            monkeypatch.setattr("twopath.runtime.tabular.TorchTabularClassifier.load", forbidden("loading the weights"))

    return guard


def invoke(args: list[str]) -> Any:
    with single_threaded():
        return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_error_line(result: Any, message: str, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert re.search(message, lines[0]), lines[0]
    return lines[0]


def old_report(out: Path) -> dict[str, bytes]:
    out.mkdir(parents=True)
    for name, data in OLD.items():
        (out / name).write_bytes(data)
    return dict(OLD)


def folder(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def no_staging_left(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if ".twopath-" in p.name]


# --- the cases -------------------------------------------------------------------------------------

Args = Callable[[Env, Path], list[Any]]


def _extra(e: Env, extra: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for x in extra:
        value = x(e) if callable(x) else x
        out += value if isinstance(value, list) else [value]
    return out


def text_args(*extra: Any, model: str = "bert") -> Args:
    return lambda e, out: ["explain", "--model", getattr(e, model), "--text", TEXT, "--out", out, "-q", *_extra(e, extra)]


def text_with(model: Callable[[Env], Path], *extra: Any) -> Args:
    return lambda e, out: ["explain", "--model", model(e), "--text", TEXT, "--out", out, "-q", *_extra(e, extra)]


def tab_args(*extra: Any, model: Callable[[Env], Path] | None = None, data: Callable[[Env], Path] | None = None,
             row: Any = 0) -> Args:
    return lambda e, out: ["explain-tabular", "--model", model(e) if model else e.tab, "--data",
                           data(e) if data else e.csv, "--row", row, "--out", out, "-q", *_extra(e, extra)]


def cfg(body: str) -> Callable[[Env], list[Any]]:
    return lambda e: e.config(body)


def tab_json(name: str, **changes: Any) -> Callable[[Env], Path]:
    return lambda e: e.edit_json(e.tab, "twopath_tabular.json", name, **changes)


def hf_json(name: str, file: str = "config.json", **changes: Any) -> Callable[[Env], Path]:
    return lambda e: e.edit_json(e.bert, file, name, **changes)


def hf_file(name: str, file: str, content: bytes | Callable[[bytes], bytes]) -> Callable[[Env], Path]:
    def make(e: Env) -> Path:
        dst = e.copy(e.bert, name)
        data = content((dst / file).read_bytes()) if callable(content) else content
        (dst / file).write_bytes(data)
        return dst
    return make


def tab_file(name: str, content: Callable[[bytes], bytes]) -> Callable[[Env], Path]:
    def make(e: Env) -> Path:
        dst = e.copy(e.tab, name)
        (dst / "model.safetensors").write_bytes(content((dst / "model.safetensors").read_bytes()))
        return dst
    return make


def pickled_model(e: Env) -> Path:
    dst = e.copy(e.bert, "pickled")
    (dst / "model.safetensors").unlink()

    class Payload:
        def __reduce__(self):  # runs a command if ever unpickled without weights_only
            return (os.system, (f"touch {e.root / 'PWNED'}",))

    torch.save({"bert.embeddings.word_embeddings.weight": Payload()}, dst / "pytorch_model.bin")
    return dst


def nan_weights(e: Env) -> Path:
    from safetensors.torch import load_file, save_file

    dst = e.copy(e.tab, "nan-weights")
    state = load_file(str(dst / "model.safetensors"))
    state["0.weight"][0, 0] = float("nan")
    save_file(state, str(dst / "model.safetensors"))
    return dst


def digit_labels(e: Env) -> Path:
    return e.edit_json(e.bert, "config.json", "digit-labels", id2label={"0": "1", "1": "0"}, label2id={"1": 0, "0": 1})


def cut_last_word(e: Env) -> list[Any]:
    """A text whose last word would be cut by truncation at the model's 128 tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(e.bert)
    for n in range(60, 200):
        text = " ".join(["movie"] * n) + " goodness"
        n_tokens = len(tok(text)["input_ids"])
        if 128 < n_tokens < 128 + len(tok.tokenize(" goodness")):
            return ["--text", text]
    raise AssertionError("no text found whose last word straddles the limit")


def unwritable(e: Env) -> Path:
    if os.geteuid() != 0:
        locked = e.root / "locked"
        locked.mkdir(exist_ok=True)
        locked.chmod(0o500)
        return locked / "out"
    return Path("/sys/twopath-bad-input-out")  # read-only even for root


# (id, issue class, args, message, guard, previous report in --out)
CASES: list[tuple[str, int, Args, str, str | None, bool]] = [
    # 1. one line instead of a traceback
    ("text-not-utf8", 1, lambda e, o: ["explain", "--model", e.bert, "--text", "bad \udcff text", "--out", o], r"--text is not valid UTF-8 text \(byte 0xff\)", "load", False),
    ("corrupt-not-utf8", 1, text_args("--corrupt", "bad \udcfe"), r"--corrupt is not valid UTF-8", "load", True),
    ("prompt-not-utf8", 1, text_args("--prompt", "R \udcff {text}", "--labels", " a, b"), r"--prompt is not valid UTF-8", "load", False),
    ("config-not-utf8", 1, text_args("--config", lambda e: e.write("latin1.toml", b"checks = true\n# caf\xe9\n")), r"is not UTF-8 text \(byte 0xe9", "load", False),
    ("background-not-utf8", 1, text_args("--background", lambda e: e.write("bg.txt", b"caf\xe9 au lait\n")), r"--background: .* is not UTF-8", "load", True),
    ("safetensors-truncated", 1, text_with(hf_file("trunc", "model.safetensors", lambda b: b[: len(b) // 2])), r"model.safetensors is truncated", "load", False),
    ("safetensors-garbage", 1, text_with(hf_file("garbage", "model.safetensors", b"\x00" * 4 + b"junk")), r"not a safetensors file", "load", False),
    ("pickle-refused", 1, text_with(pickled_model), r"refused to load pickled weights.*safetensors", "compute", True),
    ("config-json-invalid", 1, text_with(hf_file("badjson", "config.json", b"{not json")), r"config.json is not valid JSON", "load", False),
    ("config-json-list", 1, text_with(hf_file("listjson", "config.json", b"[1, 2]")), r"not a JSON object", "load", False),
    ("model-type-unknown", 1, text_with(hf_json("mamba", model_type="mamba")), r"unsupported architecture 'mamba'", "load", True),
    ("tokenizer-json-invalid", 1, text_with(hf_file("badtok", "tokenizer.json", b'{"version": ')), r"tokenizer.json is not valid JSON", "load", False),
    ("tokenizer-json-empty", 1, text_with(hf_file("emptytok", "tokenizer.json", b"{}")), r"tokenizer", "load", False),
    ("seed-negative", 1, text_args("--seed", "-1"), r"--seed -1 is out of range.*0 to 4294967295", "load", True),
    ("seed-huge", 1, text_args("--seed", str(2**40)), r"--seed 1099511627776 is out of range", "load", False),
    ("out-is-a-file", 1, lambda e, o: text_args()(e, e.write("a-file", "x")), r"is a file, not a folder", "load", False),
    ("out-below-a-file", 1, lambda e, o: text_args()(e, e.write("b-file", "x") / "sub"), r"lies below .*b-file, which is a file", "load", False),
    ("out-not-writable", 1, lambda e, o: text_args()(e, unwritable(e)), r"cannot write in", "load", False),
    ("n-steps-negative", 1, text_args("--config", cfg("[settings.integrated_gradients]\nn_steps = -3\n")), r"integrated_gradients.n_steps = -3: out of range.*1 to", "load", True),
    ("n-resamples-negative", 1, text_args("--config", cfg('[settings.head_ablation]\nmode = "resample"\nn_resamples = -1\n')), r"head_ablation.n_resamples = -1: out of range", "load", False),
    ("num-samples-string", 1, tab_args("--config", cfg('[settings.lime]\nnum_samples = "many"\n')), r"lime.num_samples = 'many': expected an integer", "load", False),
    ("methods-is-a-number", 1, tab_args("--config", cfg("methods = 3\n")), r"methods = 3: expected a \[methods\] table", "load", True),
    ("csv-inf", 1, tab_args(data=lambda e: e.table("inf.csv", lambda f: f.assign(x1=f["x1"].where(f.index != 3, np.inf)))), r"feature x1 must be numeric and finite; row 3 holds inf", "compute", False),
    ("csv-minus-inf", 1, tab_args(data=lambda e: e.table("minf.csv", lambda f: f.assign(x2=f["x2"].astype(str).where(f.index != 5, "-inf")))), r"feature x2 .* row 5", "compute", True),
    ("csv-empty-cell", 1, tab_args(data=lambda e: e.table("nan.csv", lambda f: f.assign(x0=f["x0"].where(f.index != 7)))), r"feature x0 .* row 7", "compute", False),
    ("csv-not-utf8", 1, tab_args(data=lambda e: e.write("latin1.csv", b"x0,x1,x2\n1,2,caf\xe9\n")), r"not a readable CSV|not UTF-8", "compute", False),
    ("contrast-row-999", 1, tab_args("--contrast-row", "999"), r"--contrast-row 999 is out of range: the table has 40 rows", "compute", True),
    ("row-999", 1, tab_args(row=999), r"--row 999 is out of range: the table has 40 rows", "compute", False),
    ("row-not-a-number", 1, tab_args(row="abc"), r"Invalid value for '--row'", "load", False),
    ("tab-json-wrong-types", 1, tab_args(model=tab_json("types", features="x0")), r"features must be a non-empty list", "load", False),
    ("tab-json-invalid", 1, tab_args(model=lambda e: _tab_raw(e, "invalid", b"{oops")), r"twopath_tabular.json is not valid JSON", "load", True),
    ("tab-json-missing-key", 1, tab_args(model=tab_json("missing", hidden=None)), r"missing key 'hidden'", "load", False),
    ("tab-json-layer-sizes", 1, tab_args(model=tab_json("sizes", hidden=[7])), r"0.weight has shape \[6, 3\].*needs \[7, 3\]", "load", False),
    ("tab-json-labels-type", 1, tab_args(model=tab_json("labels", labels="yes")), r"labels must be a list", "load", False),
    ("tab-json-mean-string", 1, tab_args(model=tab_json("meanstr", numeric_mean=["a", 0, 0])), r"numeric_mean for x0 is 'a'; expected a finite number", "load", False),
    ("tab-weights-truncated", 1, tab_args(model=tab_file("trunc", lambda b: b[:-10])), r"model.safetensors is truncated", "load", False),
    ("tab-weights-nan", 1, tab_args(model=nan_weights), r"0.weight holds non-finite values", "compute", True),
    ("dataset-size-negative", 1, lambda e, o: ["reproduce", "loan", "--out", o, "--dataset-size", "-1", "-q"], r"--dataset-size -1 is out of range", "load", False),
    # 2. errors before the work: configuration against the schema and the model kind, files, output folder
    ("attention-on-a-table", 2, tab_args("--config", cfg('[methods]\nattribution = ["attention"]\n')), r"method 'attention' does not support tabular models", "load", False),
    ("head-ablation-on-a-table", 2, tab_args("--config", cfg('[methods]\nmechanistic = ["head_ablation"]\n')), r"'head_ablation' does not support tabular", "load", True),
    ("shap-deep-on-text", 2, text_args("--config", cfg('[settings.shap]\nalgorithm = "deep"\n')), r"shap.algorithm = 'deep': expected one of", "load", False),
    ("resid-sites-on-a-table", 2, tab_args("--config", cfg('[settings.activation_patching]\nsites = ["resid"]\n')), r"activation_patching.sites = \['resid'\]", "load", False),
    ("unknown-setting", 2, text_args("--config", cfg("[settings.lime]\nsamples = 5\n")), r"lime has no setting\(s\) \['samples'\]", "load", False),
    ("unknown-method", 2, text_args("--config", cfg('[methods]\nattribution = ["shapp"]\n')), r"unknown attribution method 'shapp'", "load", True),
    ("mechanistic-name-as-attribution", 2, text_args("--config", cfg('[methods]\nattribution = ["head_ablation"]\n')), r"unknown attribution method 'head_ablation'", "load", False),
    ("bad-output-space", 2, text_args("--config", cfg('output = "logits"\n')), r"output = 'logits': expected one of", "load", False),
    ("max-steps-below-n-steps", 2, text_args("--config", cfg("[settings.integrated_gradients]\nn_steps = 64\nmax_steps = 8\n")), r"max_steps = 8 is below n_steps = 64", "load", False),
    ("invalid-toml", 2, text_args("--config", cfg("[methods\n")), r"not valid TOML", "load", True),
    ("config-missing", 2, text_args("--config", "no-such.toml"), r"config file does not exist", "load", False),
    ("data-missing", 2, tab_args(data=lambda e: e.root / "missing.csv"), r"--data: no such file", "load", False),
    ("data-is-a-folder", 2, tab_args(data=lambda e: e.root), r"--data: .* is not a file", "load", False),
    ("background-missing", 2, text_args("--background", "no-such.txt"), r"--background: no such file", "load", False),
    ("format-unknown", 2, text_args("--format", "html,pdf"), r"unknown format\(s\) \['pdf'\]", "load", True),
    ("model-folder-missing", 2, text_with(lambda e: e.root / "nowhere"), r"model directory does not exist", "load", False),
    ("tabular-folder-not-a-model", 2, tab_args(model=lambda e: e.root / "files"), r"not a twopath tabular model directory", "load", False),
    ("corrupt-token-count", 2, text_args("--corrupt", "The movie was bad."), r"--corrupt has \d+ tokens and --text \d+; patching needs the same number of tokens", "compute", True),
    ("target-unknown-text", 2, text_args("--target", "neutral"), r"unknown target label 'neutral'.*\['negative', 'positive'\]", "compute", False),
    ("target-unknown-table", 2, tab_args("--target", "maybe"), r"unknown target label 'maybe'.*\['no', 'yes'\]", "compute", False),
    ("reproduce-unknown-task", 2, lambda e, o: ["reproduce", "nope", "--out", o], r"unknown task 'nope'", "load", False),
    # 3. no silent wrong answers
    ("contrast-row-negative", 3, tab_args("--contrast-row", "-1"), r"--contrast-row -1 is out of range: rows are numbered from 0", "load", True),
    ("row-negative", 3, tab_args(row="-1"), r"--row -1 is out of range", "load", False),
    ("contrast-row-is-the-row", 3, tab_args("--contrast-row", "0"), r"--contrast-row 0 is the explained row itself", "load", False),
    ("corrupt-empty", 3, text_args("--corrupt", ""), r"--corrupt is empty; omit it", "load", True),
    ("corrupt-blank", 3, text_args("--corrupt", "   "), r"--corrupt is empty", "load", False),
    ("target-empty", 3, text_args("--target", ""), r"--target is empty", "load", False),
    ("scale-zero", 3, tab_args(model=tab_json("scale0", numeric_scale=[1.0, 0.0, 1.0])), r"numeric_scale for x1 is 0.0; a scale must be positive", "load", False),
    ("scale-negative", 3, tab_args(model=tab_json("scaleneg", numeric_scale=[1.0, 1.0, -2.0])), r"numeric_scale for x2 is -2.0", "load", False),
    ("mean-huge", 3, tab_args(model=tab_json("mean1e308", numeric_mean=[1e308, 0.0, 0.0])), r"numeric_mean for x0 is 1e\+308; expected a finite number \(at most", "load", True),
    ("scale-infinite", 3, tab_args(model=tab_json("scaleinf", numeric_scale=[math.inf, 1.0, 1.0])), r"numeric_scale for x0 is inf", "load", False),
    ("scale-tiny-overflows", 3, tab_args(model=tab_json("scaletiny", numeric_scale=[1e-39, 1.0, 1.0])), r"--data row \d+: the model's output is not finite", "compute", False),
    ("checks-string-false", 3, text_args("--config", cfg('checks = "false"\n')), r"checks = 'false': expected true or false", "load", True),
    ("checks-zero", 3, text_args("--config", cfg("checks = 0\n")), r"checks = 0: expected true or false", "load", False),
    ("mechanistic-empty", 3, text_args("--config", cfg("[methods]\nmechanistic = []\n")), r"methods.mechanistic = \[\]: expected a non-empty list", "load", False),
    ("methods-repeated", 3, text_args("--config", cfg('[methods]\nattribution = ["shap", "shap"]\n')), r"repeats a method", "load", False),
    ("n-steps-float", 3, text_args("--config", cfg("[settings.integrated_gradients]\nn_steps = 32.5\n")), r"n_steps = 32.5: expected an integer", "load", False),
    ("num-samples-bool", 3, text_args("--config", cfg("[settings.lime]\nnum_samples = true\n")), r"num_samples = True: expected an integer", "load", False),
    ("kernel-width-zero", 3, text_args("--config", cfg("[settings.lime]\nkernel_width = 0\n")), r"kernel_width = 0: out of range", "load", False),
    ("layers-out-of-range", 3, text_args("--config", cfg("[settings.neuron_ablation]\nlayers = [5]\n")), r"layer 5 out of range: the model has 2 layers", "compute", True),
    ("labels-repeat-text", 3, text_with(hf_json("duplabels", id2label={"0": "pos", "1": "POS"})), r"repeat \['POS', 'pos'\] \(ignoring case\)", "load", False),
    ("labels-repeat-table", 3, tab_args(model=tab_json("duplabels", labels=["yes", "Yes"])), r"repeat", "load", False),
    ("target-index-out-of-range", 3, text_args("--target", "#7"), r"target index #7 is out of range", "compute", False),
    ("out-holds-other-files", 3, lambda e, o: text_args()(e, _foreign(e)), r"holds files that are not a twopath report \(notes.txt\)", "load", False),
    # 6. the model's own limit
    ("text-longer-than-16-positions", 6, text_args("--text", " ".join([TEXT] * 3), model="bert16"), r"the text is longer than the model's 16 tokens", "compute", False),
    ("last-word-would-be-cut", 6, text_args(cut_last_word), r"the text is longer than the model's 128 tokens", "compute", True),
]


def _tab_raw(e: Env, name: str, content: bytes) -> Path:
    dst = e.copy(e.tab, f"raw-{name}")
    (dst / "twopath_tabular.json").write_bytes(content)
    return dst


def _foreign(e: Env) -> Path:
    out = e.root / "foreign"
    out.mkdir(exist_ok=True)
    (out / "notes.txt").write_text("mine")
    return out


@pytest.mark.parametrize(("name", "issue_class", "args", "message", "guard", "with_old"), CASES,
                         ids=[f"c{c[1]}-{c[0]}" for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(env, guards, tmp_path, name, issue_class, args, message, guard, with_old):
    out = tmp_path / "out"
    before = old_report(out) if with_old else None
    argv = args(env, out)
    guards(guard)
    result = invoke(argv)
    assert_one_error_line(result, message)
    if before is not None:
        assert folder(out) == before  # the previous report, byte for byte
    else:
        assert not out.exists()
    no_staging_left(tmp_path)
    assert not (env.root / "PWNED").exists()  # the pickle was never executed


def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60
    assert {c[1] for c in CASES} == {1, 2, 3, 6}
    assert len({c[0] for c in CASES}) == len(CASES)


def test_the_foreign_folder_is_kept(env, tmp_path):
    out = _foreign(env)
    assert_one_error_line(invoke(text_args()(env, out)), "holds files")
    assert (out / "notes.txt").read_text() == "mine"


def test_help_is_fast_and_imports_nothing_heavy():
    code = "import sys, twopath.cli; print(sorted(m for m in ('torch', 'transformers', 'pandas', 'shap', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_the_console_script_tunes_the_collector_and_freezes_the_heap_at_exit():
    """``main`` (the console script) raises the full-collection threshold for the run and freezes
    the heap however the app ends (here: a usage error), so exit does not walk it."""
    code = ("import gc, sys, twopath.cli as cli\n"
            "seen = []\n"
            "def app(prog_name): seen.append(gc.get_threshold()); raise SystemExit(2)\n"
            "cli.app = app\n"
            "try:\n    cli.main()\nexcept SystemExit as err:\n    code = err.code\n"
            "print(seen[0][2], code, gc.get_freeze_count() > 0, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from twopath.collector import FULL_COLLECTION_EVERY

    assert out == [str(FULL_COLLECTION_EVERY), "2", "True", "False"]  # and --help stays light


# --- the error boundary ------------------------------------------------------------------------------


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as err:  # noqa: BLE001 - a traceback is what is classified
        return err


def _sklearn_error() -> BaseException:
    from sklearn.utils import check_array

    try:
        check_array(np.array([[np.inf]]))
    except ValueError as err:
        return err
    raise AssertionError("sklearn accepted inf")


def _safetensors_error() -> BaseException:
    from safetensors import SafetensorError

    return _raise(SafetensorError("Error while deserializing header: incomplete metadata"))


@pytest.mark.parametrize(("make", "message"), [
    (lambda: _raise(TwopathError("plain user error")), r"^plain user error$"),
    (_safetensors_error, r"cannot read the model weights \(safetensors\)"),
    (lambda: _raise(json.JSONDecodeError("Expecting value", "{", 1)), r"invalid JSON"),
    (lambda: _raise(__import__("pickle").UnpicklingError("Weights only load failed")), r"refused to load pickled weights"),
    (lambda: _raise(FileNotFoundError(2, "No such file or directory", "/x/y")), r"No such file or directory: /x/y"),
    (lambda: _raise(OSError(28, "No space left on device")), r"No space left on device"),
    (_sklearn_error, r"invalid data: .*infinity"),
    (lambda: _raise(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")), r"not UTF-8 text"),
])
def test_known_errors_become_one_line(make, message):
    from twopath.cli import user_error

    text = user_error(make())
    assert text is not None and "\n" not in text and re.search(message, text), text


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyError("x"), ZeroDivisionError(), ValueError("bug"), TypeError("t")])
def test_anything_else_is_a_bug_with_traceback_and_exit_1(env, tmp_path, monkeypatch, exc):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise exc

    monkeypatch.setattr("twopath.pipeline.explain", broken)
    out = tmp_path / "out"
    result = invoke(tab_args("--config", lambda e: e.light)(env, out))
    assert result.exit_code == 1, result.output
    assert "Traceback" in result.stderr and "this is a bug in twopath" in result.stderr
    assert "please report it" in result.stderr.strip().splitlines()[-1]
    assert not out.exists()


# --- 3. one rule for labels named with digits; safe file names ------------------------------------------


@pytest.fixture(scope="module")
def digit_adapters(env):
    from twopath.runtime.tabular import TorchTabularClassifier
    from twopath.runtime.text import HFTextClassifier

    text = HFTextClassifier.from_pretrained(digit_labels(env))
    table = TorchTabularClassifier.load(tab_json("digits", labels=["1", "0"])(env))
    return {"text": text, "tabular": table}


@pytest.mark.parametrize("kind", ["text", "tabular"])
@pytest.mark.parametrize(("query", "index"), [("0", 1), ("1", 0), ("#0", 0), ("#1", 1), (0, 0), (1, 1)])
def test_digit_labels_resolve_by_one_rule_on_both_adapters(digit_adapters, kind, query, index):
    adapter = digit_adapters[kind]
    assert adapter.labels == ("1", "0")
    assert adapter.target(query).index == index


@pytest.mark.parametrize("kind", ["text", "tabular"])
def test_target_index_out_of_range_names_the_labels(digit_adapters, kind):
    with pytest.raises(TwopathError, match=r"#2 is out of range.*#0 to #1"):
        digit_adapters[kind].target("#2")


@pytest.fixture(scope="module")
def table_result(env):
    """One light run of both paths on a tiny MLP whose feature names are hostile."""
    from twopath.pipeline import explain
    from twopath.runtime.tabular import TorchTabularClassifier, fitted_preprocessor

    names = ["=HYPERLINK(\"http://x\")", "<img src=x onerror=alert(1)>", "**bold** [a](javascript:x) `c` |"]
    base = linear_adapter(WEIGHTS)
    adapter = TorchTabularClassifier(base.model, fitted_preprocessor(names, {}, [0.0] * 3, [1.0] * 3), names, {},
                                     ("no", "@yes"), "<b>model</b>")
    frame = pd.read_csv(env.csv)
    frame.columns = names
    adapter.background = frame
    rows = frame.to_dict(orient="records")
    labels = adapter.predict_proba(frame).argmax(1)
    other = int(np.flatnonzero(labels != labels[0])[0])
    with single_threaded():
        result = explain(adapter, Example("row-0", rows[0]), corrupted=Example("row-x", rows[other]),
                         attribution_methods=["occlusion"], mechanistic_methods=["neuron_ablation"],
                         with_checks=False, with_circuit=False, with_bridges=False, stability_seeds=())
    return adapter, result


def _report(result: Any, example_id: str = "row-0", command: str = "twopath explain") -> Report:
    result = dataclasses.replace(result, example=dataclasses.replace(result.example, id=example_id))
    return Report("explain-tabular", {"name": "<b>model</b>", "architecture": "MLP", "n_layers": 1, "accuracy": None},
                  [result], {"seed": 0, "command": command})


@pytest.mark.parametrize("example_id", ["../../x", "/etc/passwd", "a/b/../../c", "..", ".hidden", "x\\..\\y", "", "é ü"])
def test_example_ids_cannot_escape_the_tables_folder(table_result, tmp_path, example_id):
    from twopath.reports import write_report

    out = tmp_path / "deep" / "out"
    paths = write_report(_report(table_result[1], example_id), out, ["csv"])
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written and all(p.parts[:3] == ("deep", "out", "tables") and len(p.parts) == 4 for p in written), written
    assert paths["csv"] == out / "tables"


# --- 4. the output folder is replaced as a whole ----------------------------------------------------------


@pytest.fixture
def fast_render(monkeypatch):
    from twopath.reports import figures

    monkeypatch.setattr(figures, "report_figures", lambda result: {})


@pytest.mark.usefixtures("fast_render")
def test_stale_files_of_an_older_run_do_not_survive(table_result, tmp_path):
    from twopath.reports import write_report

    out = tmp_path / "out"
    write_report(_report(table_result[1]), out, ["json", "md", "csv"])
    assert (out / "tables").is_dir()
    write_report(_report(table_result[1]), out, ["html"])
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]  # no old report.md, no old tables/
    no_staging_left(tmp_path)


def _fail_on(monkeypatch, target: str, nth: int, exc: BaseException) -> None:
    """Make the ``nth`` call of ``target`` (``os.rename`` or ``Path.write_text``) raise ``exc``."""
    import pathlib

    owner, name = (os, "rename") if target == "rename" else (pathlib.Path, "write_text")
    real = getattr(owner, name)
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == nth:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)


@pytest.mark.usefixtures("fast_render")
@pytest.mark.parametrize(("target", "nth", "exc"), [
    ("write_text", 1, OSError(28, "No space left on device")),
    ("write_text", 2, OSError(28, "No space left on device")),
    ("write_text", 3, KeyboardInterrupt()),
    ("rename", 1, OSError(1, "Operation not permitted")),   # moving the old report aside
    ("rename", 2, OSError(1, "Operation not permitted")),   # moving the new one into place: rolled back
    ("rename", 2, KeyboardInterrupt()),
], ids=["disk-full-first-file", "disk-full-second-file", "interrupt-while-writing", "aside-fails",
        "into-place-fails", "interrupt-between-renames"])
def test_a_failure_anywhere_keeps_the_previous_report(table_result, tmp_path, monkeypatch, target, nth, exc):
    from twopath.reports import write_report

    out = tmp_path / "out"
    write_report(_report(table_result[1]), out, ["json", "md", "html"])
    before = folder(out)
    _fail_on(monkeypatch, target, nth, exc)
    with pytest.raises(type(exc)):
        write_report(_report(table_result[1], command="twopath second run"), out, ["json", "md", "html"])
    monkeypatch.undo()
    assert folder(out) == before and sorted(before) == ["report.html", "report.json", "report.md"]
    no_staging_left(tmp_path)


@pytest.mark.usefixtures("fast_render")
def test_the_writer_refuses_folders_it_would_have_to_delete(table_result, tmp_path):
    from twopath.reports import write_report

    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("keep")
    with pytest.raises(TwopathError, match="holds files that are not a twopath report"):
        write_report(_report(table_result[1]), out, ["json"])
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    link = tmp_path / "link"
    link.symlink_to(out)
    with pytest.raises(TwopathError, match="symbolic link"):
        write_report(_report(table_result[1]), link, ["json"])


# --- 5. output-format safety -----------------------------------------------------------------------


HOSTILE = ["<img src=x onerror=alert(1)>", "**bold**", "[link](javascript:alert(1))", "`code`", "a | b", "<script>x</script>"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_markdown_escapes_user_text_everywhere(table_result, hostile):
    from twopath.reports.writers import render_markdown

    report = _report(table_result[1], command=f"twopath explain --text '{hostile}'")
    report.examples[0].notes.append(f"note about {hostile}")
    md = render_markdown(report)
    for raw in ("<img", "<script", "<b>", "**bold**", "[link](", "`code`", "[a](javascript"):
        assert raw not in md.replace("## Example `row-0`", ""), raw
    header = next(line for line in md.splitlines() if line.startswith("| method |") and "base_value" in line)
    assert "&lt;img src=x onerror=alert(1)&gt;" in header and r"\*\*bold\*\* \[a\](javascript:x) \`c\` \|" in header


@pytest.mark.parametrize("lead", ["=", "+", "-", "@"])
def test_csv_cells_cannot_be_formulas(table_result, lead):
    from twopath.reports.escape import csv_cell
    from twopath.reports.writers import render_csv

    assert csv_cell(f"{lead}SUM(A1:A9)") == f"'{lead}SUM(A1:A9)"
    assert csv_cell("-0.25") == "-0.25" and csv_cell(-0.25) == -0.25  # numbers stay numbers
    files = render_csv(_report(table_result[1]))
    for text in files.values():
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        cells = [*frame.columns, *frame.to_numpy().ravel().tolist()]
        for cell in cells:
            if cell[:1] in ("=", "+", "-", "@"):
                float(cell)  # only plain numbers may start with a sign
    joined = "\n".join(files.values())
    assert "'=HYPERLINK" in joined  # the feature name, a column header of the attribution table


@pytest.mark.usefixtures("fast_render")
def test_html_still_escapes_the_hostile_names(table_result):
    from twopath.reports.writers import render_html

    html = render_html(_report(table_result[1]))
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


# --- 6. the model's own limit ---------------------------------------------------------------------


def test_the_limit_is_the_models_own_and_the_last_word_is_never_cut(env):
    from twopath.runtime.text import HFTextClassifier

    small = HFTextClassifier.from_pretrained(env.bert16)
    assert small.max_length == 16
    small.encode("The movie was good.")  # fits
    big = HFTextClassifier.from_pretrained(env.bert)
    assert big.max_length == 128
    text = cut_last_word(env)[1]
    with pytest.raises(TwopathError, match="longer than the model's 128 tokens"):
        big.encode(text)
    shorter = text.rsplit(" ", 1)[0].split(" ", 3)[3]
    assert big.encode(shorter).words[-1] == "movie"


def test_background_sentences_cut_to_the_limit_are_said(env, tmp_path):
    background = env.write("long-bg.txt", "\n".join([" ".join([TEXT] * 3), "The movie was good."]))
    out = tmp_path / "out"
    config = env.config('checks = false\n[methods]\nattribution = ["occlusion"]\nmechanistic = ["head_ablation"]\n')
    result = invoke(text_args("--background", background, "--config", config, "--format", "json", model="bert16")(env, out))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    assert "1 of 2 cut to the model's 16 tokens" in doc["model"]["background"]
    assert any("longer than the model's 16 tokens" in n for n in doc["examples"][0]["notes"])


# --- 2. a bad automatic contrast skips patching with a note; a given one fails before the work -----


@pytest.fixture(scope="module")
def tab_adapter(env):
    from twopath.runtime.tabular import TorchTabularClassifier

    adapter = TorchTabularClassifier.load(env.tab)
    adapter.background = pd.read_csv(env.csv)
    return adapter


def _light(adapter: Any, example: Example, corrupted: Any) -> Any:
    from twopath.pipeline import explain

    with single_threaded():
        return explain(adapter, example, corrupted=corrupted, attribution_methods=["occlusion"],
                       mechanistic_methods=["neuron_ablation", "activation_patching"], with_checks=False,
                       with_circuit=False, with_bridges=False, stability_seeds=())


@pytest.mark.parametrize(("make", "note"), [
    (lambda ex, attr: Example("same", dict(ex.raw)), "gives the same output as the input"),
    (lambda ex, attr: Example("bad", {"x0": 1.0}), "is not a valid input"),
    (lambda ex, attr: (_ for _ in ()).throw(TwopathError("no opposite word")), "could not be built \\(no opposite word\\)"),
    (lambda ex, attr: None, "no same-length counterfactual"),
])
def test_a_bad_automatic_contrast_skips_patching_with_a_note(tab_adapter, make, note):
    example = Example("row-0", tab_adapter.background.iloc[0].to_dict())
    result = _light(tab_adapter, example, make)
    assert [loc.method for loc in result.localizations] == ["neuron_ablation"]
    assert any(re.search(note, n) and "activation patching skipped" in n for n in result.notes), result.notes


def test_a_given_contrast_that_cannot_work_fails_before_the_input_path(tab_adapter, monkeypatch):
    from twopath.attribution import ATTRIBUTION_METHODS

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the input path started")

    monkeypatch.setattr(ATTRIBUTION_METHODS, "create", forbidden)
    example = Example("row-0", tab_adapter.background.iloc[0].to_dict())
    with pytest.raises(TwopathError, match="the contrast input gives the same output as the input"):
        _light(tab_adapter, example, Example("same", dict(example.raw)))


# --- the schema mirrors the methods -------------------------------------------------------------------


def test_the_settings_schema_matches_every_registered_method():
    from twopath.attribution import ATTRIBUTION_METHODS
    from twopath.mechanistic import MECHANISTIC_METHODS
    from twopath.validation import METHODS, RESERVED

    registered = {e.name: (registry.path, e) for registry in (ATTRIBUTION_METHODS, MECHANISTIC_METHODS) for e in registry}
    assert set(registered) == set(METHODS)
    for name, (path, entry) in registered.items():
        schema = METHODS[name]
        assert schema.path == path and set(schema.modalities) == set(entry.modalities), name
        params = {p.name: p for p in inspect.signature(entry.cls).parameters.values() if p.name not in RESERVED}
        assert set(params) == set(schema.settings), name
        for key, param in params.items():
            setting = schema.settings[key]
            for modality in entry.modalities:
                setting.check(param.default, modality)  # every default is valid
            kinds = {"int": "int", "float": "float", "bool": "bool", "str": "str", "ints": "tuple[int",
                     "strs": "tuple[str", "baseline": "str | Mapping"}
            assert str(param.annotation).startswith(kinds[setting.kind]), (name, key, param.annotation)


@pytest.mark.parametrize(("body", "expected"), [
    ("checks = false\n", {"with_checks": False}),
    ('[settings.neuron_ablation]\nlayers = [-1, 0]\n', {"settings": {"neuron_ablation": {"layers": (-1, 0)}}}),
    ("[settings.lime]\nkernel_width = 2\n", {"settings": {"lime": {"kernel_width": 2.0}}}),
    ('[settings.integrated_gradients]\nbaseline = "median"\n', {"settings": {"integrated_gradients": {"baseline": "median"}}}),
])
def test_valid_configurations_still_load(env, body, expected):
    from twopath.config import load_config

    assert load_config(env.config(body), "tabular") == expected


# --- 7. weak controls ----------------------------------------------------------------------------------


def test_random_controls_are_distinct_sets_and_the_pool_widens_or_refuses():
    from twopath.seed.findings import control_sets
    from twopath.types import Component

    adapter = linear_adapter(np.ones(4))  # one hidden layer of 8 neurons
    half = [Component("neuron", 0, i) for i in range(4)]
    sets, where = control_sets(adapter, half, n_controls=20, seed=0)  # C(4, 4) = 1 same-layer set
    assert sets == [] and "no random control" in where  # and the model has no other layer to widen to
    few = [Component("neuron", 0, i) for i in range(2)]
    sets, where = control_sets(adapter, few, n_controls=15, seed=0)  # C(6, 2) = 15 distinct sets
    assert len({tuple(s) for s in sets}) == 15 and where == "random neurons of the same layer"
    assert all(not set(s) & set(few) for s in sets)

    from tests.mechanistic.test_clusters import planted_mlp

    planted = planted_mlp()  # layers of 6 and 12 neurons
    set_l0 = [Component("neuron", 0, i) for i in range(3)]
    sets, where = control_sets(planted, set_l0, n_controls=20, seed=0)  # C(3, 3) = 1 in L0: widened
    assert len({tuple(s) for s in sets}) == 20 and "widened" in where
    assert any(c.layer == 1 for s in sets for c in s)


def test_cluster_labels_use_a_monotone_measure():
    from twopath.mechanistic.clusters import joint_r2
    from twopath.seed.findings import rank_r2

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.uniform(0, 1, 300), "noise": rng.normal(size=300)})
    threshold = np.exp(12 * frame["x"].to_numpy())  # monotone but far from linear
    assert rank_r2(threshold, frame, ["x"]) == pytest.approx(1.0)
    assert joint_r2(threshold, frame, ("x",)) < 0.7
    assert rank_r2(threshold, frame, ["noise"]) < 0.05


def test_a_refused_control_refuses_the_claim(monkeypatch):
    from twopath.seed import findings

    monkeypatch.setattr(findings, "control_sets", lambda *a, **k: ([], "no random control: too few neurons"))
    test = findings.behaviour.PathwayTest("credit", "mean", ["L0N0"], *(2 * [findings.behaviour.Separation("credit", 2, 1, .9, .1, .8)]),
                                          [], [], float("nan"), 0.0, {})
    controlled, where = findings._controlled(linear_adapter(np.ones(2)), {"x0": 1.0, "x1": 1.0}, test, 0)
    assert controlled.controls == [] and math.isnan(controlled.control_sd) and "no random control" in where


# --- 8. Ctrl-C always stops the run --------------------------------------------------------------------


class _SwallowedInDel:
    def __del__(self) -> None:  # an exception here is "ignored" by Python, as numba's are
        raise KeyboardInterrupt


def _swallow_try() -> None:
    try:  # noqa: SIM105 - spelled out: a library that eats the interrupt and carries on
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass


def _swallow_del() -> None:
    _SwallowedInDel()


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize(("swallow", "code"), [(_swallow_try, 130), (_swallow_del, 130),
                                               (lambda: signal.raise_signal(signal.SIGINT), 130),
                                               (lambda: signal.raise_signal(signal.SIGTERM), 143)],
                         ids=["swallowed-by-except", "swallowed-as-unraisable", "plain-sigint", "sigterm"])
def test_an_interrupt_always_stops_the_run(env, tmp_path, monkeypatch, swallow, code, when):
    import twopath.pipeline

    real = twopath.pipeline.explain

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        if when == "before":
            swallow()
        result = real(*args, **kwargs)
        if when == "after":
            swallow()
        return result

    monkeypatch.setattr(twopath.pipeline, "explain", interrupted)
    out = tmp_path / "out"
    before = old_report(out)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    result = invoke(tab_args("--config", lambda e: e.light)(env, out))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
    assert result.exit_code == code, result.output
    assert "interrupted: nothing was written" in result.stderr and "Traceback" not in result.output
    assert folder(out) == before
    no_staging_left(tmp_path)



# --- the same in a real process: nothing else reaches stderr (warnings, logging, rich) -------------------


def _process(args: list[Any], **kwargs: Any) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "twopath.cli", *[str(a) for a in args]], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize(("args", "message"), [
    (text_args("--seed", "-1"), r"--seed -1 is out of range"),
    (tab_args(model=tab_json("scaletiny-process", numeric_scale=[1e-39, 1.0, 1.0])), r"the model's output is not finite"),
    (text_with(pickled_model), r"refused to load pickled weights"),
], ids=["before-loading", "after-loading-a-table", "while-loading-weights"])
def test_a_real_process_prints_exactly_one_line(env, tmp_path, args, message):
    out = tmp_path / "out"
    proc = _process(args(env, out))
    stdout, stderr = proc.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0]), stderr
    assert stdout == "" and not out.exists()


def test_ctrl_c_stops_a_real_run(env, tmp_path):
    out = tmp_path / "out"
    before = old_report(out)
    args = ["explain-tabular", "--model", env.tab, "--data", env.csv, "--row", 0, "--out", out, "--config", env.light]
    proc = _process(args)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the first progress line: the run is under way
    assert first.startswith("· "), first  # a finished step: the run is under way
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, first + rest
    assert "interrupted: nothing was written" in rest and "Traceback" not in rest
    assert folder(out) == before
    no_staging_left(tmp_path)


def test_a_method_missing_from_the_schema_falls_back_to_its_signature(env, monkeypatch):
    from twopath import validation
    from twopath.config import load_config

    monkeypatch.delitem(validation.METHODS, "lime")
    assert load_config(env.config("[settings.lime]\nnum_samples = 300\n")) == {"settings": {"lime": {"num_samples": 300}}}
    with pytest.raises(TwopathError, match=r"lime has no setting\(s\) \['samples'\]"):
        load_config(env.config("[settings.lime]\nsamples = 300\n"))


def test_the_api_shares_the_schema():
    from twopath.validation import check_settings

    assert check_settings({"integrated_gradients": {"n_steps": 8}}, "text") == {"integrated_gradients": {"n_steps": 8}}
    with pytest.raises(TwopathError, match=r"integrated_gradients.n_steps = -1: out of range"):
        check_settings({"integrated_gradients": {"n_steps": -1}}, "text")
    with pytest.raises(TwopathError, match=r"cannot set \['seed'\]"):
        check_settings({"shap": {"seed": 3}})
