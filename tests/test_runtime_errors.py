"""Bad models and bad prompts: one clear error, before any weights load."""

from __future__ import annotations

import json

import pytest

from tests.tiny_models import save_tiny
from twopath.runtime.devices import resolve_device, resolve_dtype
from twopath.runtime.families import family_for
from twopath.runtime.text import HFTextClassifier, PromptedLM, check_model_dir
from twopath.types import TwopathError

PROMPT = "Review: {text}\nSentiment:"


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return save_tiny("gpt2", tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def gpt2_lm_dir(tmp_path_factory):
    return save_tiny("gpt2", tmp_path_factory.mktemp("gpt2-lm"), causal_lm=True)


def _edit_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def test_unknown_architecture_names_the_supported_ones(gpt2_dir, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    for f in gpt2_dir.iterdir():
        (odd / f.name).write_bytes(f.read_bytes())
    _edit_config(odd, model_type="mamba")
    with pytest.raises(TwopathError, match=r"unsupported architecture 'mamba'.*gpt2.*llama"):
        check_model_dir(odd, task="classifier")
    with pytest.raises(TwopathError, match="unsupported architecture"):
        family_for(None)


def test_config_that_is_not_json(tmp_path):
    (tmp_path / "config.json").write_bytes(b"\xff{not json")
    with pytest.raises(TwopathError, match="not valid JSON"):
        check_model_dir(tmp_path, task="classifier")


def test_causal_lm_without_prompt_is_refused_with_a_hint(gpt2_lm_dir):
    with pytest.raises(TwopathError, match="needs --prompt and --labels"):
        HFTextClassifier.from_pretrained(gpt2_lm_dir)


def test_weights_without_a_head_are_refused_unless_allowed(gpt2_lm_dir, tmp_path):
    # a causal LM's weights opened as a classifier (no ``architectures``): the score head is missing
    headless = tmp_path / "headless"
    headless.mkdir()
    for f in gpt2_lm_dir.iterdir():
        (headless / f.name).write_bytes(f.read_bytes())
    _edit_config(headless, architectures=None)
    with pytest.raises(TwopathError, match="no classification head.*--allow-new-head"):
        HFTextClassifier.from_pretrained(headless)
    adapter = HFTextClassifier.from_pretrained(headless, allow_new_head=True)
    assert adapter.model.config.twopath_new_head is True


@pytest.mark.parametrize(("template", "words", "message"), [
    ("Review: {text}", (" good", " good"), "share a first token"),
    ("Review: {text}", (" ", " positive"), "tokenizes to nothing"),
    ("Review: {text}", (" positive",), "at least two label words"),
    ("Review:", (" negative", " positive"), "must contain {text}"),
    ("{text} and {text}", (" negative", " positive"), "exactly once"),
])
def test_bad_prompts_and_label_words(gpt2_lm_dir, template, words, message):
    with pytest.raises(TwopathError, match=message):
        PromptedLM.from_pretrained_prompted(gpt2_lm_dir, template, words)


def test_prompted_units_are_the_words_of_the_text_only(gpt2_lm_dir):
    from twopath.types import Example

    adapter = PromptedLM.from_pretrained_prompted(gpt2_lm_dir, PROMPT, (" negative", " positive"))
    example = Example("e", "A boring film.")
    assert adapter.units(example) == ("A", "boring", "film")
    inp = adapter.encode("A boring film.")
    template_tokens = [t for t, w in zip(inp.tokens, inp.token_word, strict=True) if w < 0]
    assert "".join(template_tokens).replace("Ġ", " ").replace("Ċ", "\n").startswith("Review:")
    assert int(adapter.reading_position(inp.inputs())[0]) == inp.n_tokens - 1


def test_devices_and_dtypes_fail_in_one_line():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(TwopathError, match="unknown device"):
        resolve_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(TwopathError, match="no CUDA GPU"):
            resolve_device("cuda:0")
    with pytest.raises(TwopathError, match="not supported on the CPU"):
        resolve_dtype("float16", torch.device("cpu"))
    with pytest.raises(TwopathError, match="unknown dtype"):
        resolve_dtype("float8", torch.device("cpu"))
    assert resolve_dtype("bfloat16", torch.device("cpu")) is torch.bfloat16


def test_the_device_watch_catches_a_tensor_made_off_the_model_device(gpt2_dir, monkeypatch):
    """On a CPU-only machine every tensor is on the CPU, so the contract suite's device check can
    only be shown to work by a model that claims another device: then CPU tensors are caught."""
    import torch

    from twopath.testing import on_device

    adapter = HFTextClassifier.from_pretrained(gpt2_dir)
    with on_device(adapter):
        adapter.logits(adapter.encode("A boring film.").inputs())
    monkeypatch.setattr(type(adapter), "device", property(lambda self: torch.device("meta")))
    with pytest.raises(AssertionError, match=r"tensors created on \['cpu'\]"), on_device(adapter):
        torch.zeros(3)


@pytest.mark.parametrize(("extra", "message"), [
    (["--device", "cuda:7"], "no CUDA GPU|CUDA device"),
    (["--device", "tpu"], "unknown device"),
    (["--dtype", "float16"], "not supported on the CPU"),
    (["--prompt", "Review:", "--labels", " a, b"], "must contain {text}"),
    (["--prompt", "Review: {text}"], "go together"),
])
def test_cli_bad_model_options_fail_in_one_line_before_loading(gpt2_lm_dir, tmp_path, extra, message):
    import re

    from typer.testing import CliRunner

    from twopath.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", "--model", str(gpt2_lm_dir), "--text", "A boring film.",
                                      "--out", str(out), "-q", *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error:") and re.search(message, lines[0]), result.output
    assert not out.exists()


def test_methods_lists_what_each_method_needs():
    from typer.testing import CliRunner

    from twopath.cli import app

    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    assert "(needs a contrast input, linear residual)" in lines["direct_effect"]
    assert "approximate on encoders" in lines["direct_logit_attribution"]  # exact on linear residual decoders
    assert "(needs residual parts)" in lines["direct_logit_attribution"]  # not Gemma 2
    assert "(needs a contrast input)" in lines["activation_patching"]
    assert "needs" not in lines["logit_lens"] and "needs" not in lines["shap"]
