"""Every Display class of ``twopath.reports.figures`` on a real text result and a real loan result.

Both results are built once (``text_result`` / ``loan_result`` are cached, and
``tests/reports/test_browser.py`` reuses them): the 2-layer tiny BERT trained on the corpus with a
same-token-length counterfactual, and the loan MLP on the seed applicant with the seed's contrast
applicant and the loan findings (which add the pathway and layer-encoding figures).
"""

from __future__ import annotations

import base64
import functools
import inspect
import struct
from collections.abc import Callable, Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from tests.helpers import single_threaded  # noqa: E402
from twopath.reports import figures  # noqa: E402
from twopath.types import Example, ExampleResult, Report  # noqa: E402

TEXT_SENTENCE = "A warm and funny film with a great cast"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _quiet(_: str) -> None:
    return None


@functools.cache
def text_adapter() -> Any:
    """The trained tiny BERT with 16 held-out background sentences (its own instance)."""
    from twopath.datasets import sentiment
    from twopath.runtime.text import HFTextClassifier
    from twopath.seed import zoo

    adapter = HFTextClassifier.from_pretrained(zoo.tiny_sentiment_model(say=_quiet), name="tiny BERT (tests)")
    _, test = sentiment.split()
    adapter.background = [t for t in test["text"] if len(t.split()) < 25][:16]
    return adapter


def loan_adapter() -> Any:
    """A freshly loaded loan MLP with the 200-applicant background (a new instance per call)."""
    from twopath.datasets import loan
    from twopath.runtime.tabular import TorchTabularClassifier
    from twopath.seed import zoo

    adapter = TorchTabularClassifier.load(zoo.loan_model(say=_quiet))
    adapter.name = "loan MLP (tests)"
    adapter.background = loan.split()[0].sample(200, random_state=0)[list(loan.FEATURES)]
    return adapter


def explain_text(sentence: str, example_id: str = "text") -> ExampleResult:
    from twopath.pipeline import explain
    from twopath.seed.tasks import text_counterfactual

    adapter = text_adapter()
    with single_threaded():
        return explain(adapter, Example(example_id, sentence), corrupted=text_counterfactual(adapter),
                       with_checks=False, stability_seeds=(0, 1))


def explain_loan(seed: int = 0) -> tuple[Any, ExampleResult]:
    """The seed applicant against the contrast applicant, with the loan findings added."""
    from twopath.datasets import loan
    from twopath.pipeline import explain
    from twopath.seed.findings import loan_findings

    adapter = loan_adapter()
    with single_threaded():
        result = explain(adapter, Example(loan.SEED_EXAMPLE_ID, loan.SEED_APPLICANT),
                         corrupted=Example("loan-contrast", loan.CONTRAST_APPLICANT), seed=seed,
                         with_checks=False, stability_seeds=(0, 1))
        data = loan.split()[0].sample(500, random_state=seed + 1)[list(loan.FEATURES)]
        found = loan_findings(adapter, result, data, seed=seed)
    result.tables["claims"] = found["claims"]
    result.tables["mechanisms"] = found["mechanisms"]
    return adapter, result


@functools.cache
def text_result() -> ExampleResult:
    return explain_text(TEXT_SENTENCE)


@functools.cache
def _loan() -> tuple[Any, ExampleResult]:
    return explain_loan()


def loan_result() -> ExampleResult:
    return _loan()[1]


@functools.cache
def decoder_result() -> ExampleResult:
    """A tiny random GPT-2 read through its residual stream (lens and DLA apply to decoders)."""
    from tests.tiny_models import TEXT, build_tiny
    from twopath.pipeline import explain
    from twopath.runtime.text import HFTextClassifier
    from twopath.types import Example

    model, tokenizer = build_tiny("gpt2")
    adapter = HFTextClassifier(model, tokenizer)
    adapter.background = ["A boring film.", "The movie was good."]
    return explain(adapter, Example("tiny", TEXT), attribution_methods=["occlusion"],
                   mechanistic_methods=["logit_lens", "direct_logit_attribution"], stability_seeds=(),
                   with_circuit=False, with_bridges=False, with_checks=False)


@functools.cache
def agreement_result() -> ExampleResult:
    """The agreement task's report on the GPT-2 with a hand-wired agreement head (light settings)."""
    from twopath.datasets import agreement as data
    from twopath.seed import agreement

    adapter = agreement.planted_agreement_model(agreement.planted_tokenizer())
    adapter.background = [i.prefix for i in data.held_out(8, "pp", seed=2)]
    with single_threaded():
        report = agreement.agreement_report(adapter, {}, say=_quiet, dataset_size=0, n_claim=2, checks=False)
    return report.examples[0]


@functools.cache
def edit_comparison() -> Any:
    """A real localized-edit comparison (issue 15) on the planted tabular MLP, at light settings:
    ablation, two random seeds and all parameters (not budget-matched), each relearned."""
    from tests.editing.planted import planted_adapter, table
    from twopath.editing import LocalizedFineTuning, Relearning, compare_localizations, feature_task

    with single_threaded():
        adapter = planted_adapter()
        task = feature_task(adapter, table(400, 0), table(200, 2), "x0", "y", values=(-1.0, 1.0), n_train=200,
                            n_heldout=200)
        return compare_localizations(adapter, task, kind="neuron", k=2,
                                     localizations=("ablation", "random", "all_parameters"), n_random=2,
                                     editor=LocalizedFineTuning(steps=15, lr=0.05, seed=1),
                                     relearning=Relearning(steps=3, lr=0.01))


def text_report(result: ExampleResult) -> Report:
    from twopath.seed import zoo
    from twopath.seed.tasks import reproducibility

    manifest = zoo.read_manifest(zoo.tiny_sentiment_model(say=_quiet))
    model = {**text_adapter().describe(), "accuracy": manifest.get("accuracy")}
    return Report("sentiment", model, [result], reproducibility(0, manifest))


def loan_report(adapter: Any, result: ExampleResult, seed: int = 0) -> Report:
    from twopath.seed import zoo
    from twopath.seed.tasks import reproducibility

    manifest = zoo.read_manifest(zoo.loan_model(say=_quiet))
    model = {**adapter.describe(), "accuracy": manifest.get("accuracy"), "auc": manifest.get("auc")}
    return Report("loan", model, [result], reproducibility(seed, manifest))


# ---------------------------------------------------------------- expected artists per Display


def _meshes(ax: Any) -> list[QuadMesh]:
    return [c for c in ax.collections if isinstance(c, QuadMesh)]


def _cells(ax: Any) -> int:
    (mesh,) = _meshes(ax)
    return int(np.asarray(mesh.get_array()).size)


def _data_lines(ax: Any) -> list[Any]:
    """Lines with data (seaborn also adds empty proxy lines for its legend)."""
    return [line for line in ax.lines if len(line.get_xdata()) > 0]


def _ablation(result: ExampleResult) -> Any:
    return next(loc for loc in result.localizations if loc.method in ("head_ablation", "neuron_ablation"))


def check_attribution_bars(ax: Any, result: ExampleResult, given: bool) -> None:
    units = list(result.attributions[0].units)
    methods = [a.method for a in result.attributions]
    assert len(ax.containers) == len(methods)  # one group of bars per method
    assert all(len(bars) == len(units) for bars in ax.containers)  # one bar per unit
    assert [t.get_text() for t in ax.get_xticklabels()] == units
    assert [t.get_text() for t in ax.get_legend().get_texts()] == methods


def check_ablation(ax: Any, result: ExampleResult, given: bool) -> None:
    loc = _ablation(result)
    layers = {c.layer for c in loc.components}
    index = {c.index for c in loc.components}
    assert _cells(ax) == len(layers) * len(index) == len(loc.components)  # one cell per component
    if loc.method == "head_ablation":  # one cell per head: n_layers x n_heads
        model = text_adapter().describe()
        assert _cells(ax) == model["n_layers"] * model["n_heads"]
    assert len(ax.texts) == (_cells(ax) if _cells(ax) <= 100 else 0)  # annotated when small
    assert ax.get_ylabel() == "layer"


def check_patching(ax: Any, result: ExampleResult, given: bool) -> None:
    loc = result.localization("activation_patching")
    if "layers" in loc.meta:  # MLP: layer width and neurons-to-flip bars per hidden layer
        n = len(loc.meta["layers"])
        assert [len(bars) for bars in ax.containers] == [n, n]
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"L{x['layer']}" for x in loc.meta["layers"]]
        return
    tokens = loc.meta["tokens"]
    resid = [c for c in loc.components if c.kind == "resid"]
    assert _cells(ax) == len(resid) == len({c.layer for c in resid}) * len(tokens)  # layer x position
    assert len(ax.texts) == _cells(ax)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == len(tokens)
    swapped = [label for label in labels if "/" in label]  # clean/corrupted at the swapped position
    assert len(swapped) == 1, labels


def check_agreement(ax: Any, result: ExampleResult, given: bool) -> None:
    n = len(result.attributions)
    assert _cells(ax) == n * n
    assert len(ax.texts) == n * n


def check_deletion(ax: Any, result: ExampleResult, given: bool) -> None:
    frame = pd.DataFrame(result.tables["deletion"])
    ks = sorted(frame["k"].unique())
    lines = _data_lines(ax)
    assert len(lines) == frame["method"].nunique()  # one curve per method of either path
    assert all(len(line.get_xdata()) == len(ks) for line in lines)
    assert list(ax.get_xticks()) == ks


def check_two_path(ax: Any, result: ExampleResult, given: bool) -> None:
    assert sum(isinstance(p, FancyBboxPatch) for p in ax.patches) == 3  # input, internals, output
    assert sum(isinstance(p, FancyArrowPatch) for p in ax.patches) == 3  # one input arrow, two internal
    assert len(ax.texts) == 6
    text = " ".join(t.get_text() for t in ax.texts)
    for unit, _ in result.attribution("shap").top(3):
        assert unit in text
    for component, _ in _ablation(result).top(3):
        assert component in text


def check_pathway(ax: Any, result: ExampleResult, given: bool) -> None:
    curve = result.tables["mechanisms"]["pathway_curve"]
    lines = ax.lines
    assert len(lines) == 2 + 2 + 1  # before, after; the 600 and 720 marks; p = 0.5
    assert [len(line.get_xdata()) for line in lines[:2]] == [len(curve["x"])] * 2


def check_layer_encoding(ax: Any, result: ExampleResult, given: bool) -> None:
    rows = pd.DataFrame(result.tables["mechanisms"]["layer_encoding"])
    assert _cells(ax) == rows["layer"].nunique() * rows["feature"].nunique()
    assert len(ax.texts) == _cells(ax)


def check_faithfulness(ax: Any, result: ExampleResult, given: bool) -> None:
    rows = result.tables["faithfulness"]
    if given:  # both panels drawn onto the one axes
        assert len(ax.lines) == len(rows)
        return
    assert len(ax.figure.axes) == 2
    for panel, path in zip(ax.figure.axes, ("input", "internal"), strict=True):
        drawn = [r for r in rows if r["path"] == path]
        assert len(panel.lines) == len(drawn)
        for line, row in zip(panel.lines, drawn, strict=True):  # each point at its k (a grid on long inputs)
            expected = row.get("curve_k") or list(range(len(row["deletion_curve"])))
            assert list(line.get_xdata()) == list(expected)


def check_bridges(ax: Any, result: ExampleResult, given: bool) -> None:
    m = result.tables["bridges"]["map"]
    assert _cells(ax) == len(m["units"]) * len(m["components"])
    assert len(ax.texts) == _cells(ax)


def check_lens(ax: Any, result: ExampleResult, given: bool) -> None:
    lens = result.localization("logit_lens")
    (curve,) = [line for line in ax.lines if len(line.get_xdata()) == len(lens.effects) + 1]
    assert list(curve.get_ydata()) == pytest.approx([lens.meta["embeddings"], *lens.effects])
    assert any(list(line.get_ydata()) == pytest.approx([lens.clean] * 2) for line in ax.lines)  # the output, marked


def check_dla(ax: Any, result: ExampleResult, given: bool) -> None:
    dla = result.localization("direct_logit_attribution")
    widths = sorted(abs(p.get_width()) for p in ax.patches)
    assert widths == pytest.approx(sorted(abs(dla.effects[i]) for i in dla.ranking()[:12]))


def check_agreement_attention(ax: Any, result: ExampleResult, given: bool) -> None:
    att = result.tables["mechanisms"]["agreement_attention"]
    assert [p.get_height() for p in ax.patches] == pytest.approx(att["weights"])  # one bar per token
    assert [t.get_text() for t in ax.get_xticklabels()] == att["tokens"]
    assert att["head"] in ax.get_title()


def check_edit(ax: Any, comparison: Any, given: bool) -> None:
    from matplotlib.container import ErrorbarContainer

    summary = comparison.summary()
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(summary)  # one point per localization
    assert [float(b.lines[0].get_xdata()[0]) for b in bars] == pytest.approx(list(summary["forget_gap"]))
    assert [float(b.lines[0].get_ydata()[0]) for b in bars] == pytest.approx(list(summary["heldout_accuracy"]))
    with_error = [bool(b.has_xerr and b.has_yerr) for b in bars]
    assert with_error == [n > 1 for n in summary["n_runs"]]  # the random seeds only: mean ± sd
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"{name}{'' if matched else ' (budget not matched)'}"
                      for name, matched in zip(summary["localization"], summary["budget_matched"], strict=True)]
    arrows = [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]
    assert [a.xy[0] for a in arrows] == pytest.approx(list(summary["relearned_gap"]))  # to the relearned gap
    assert str(comparison.budget) in ax.get_title() and comparison.task in ax.get_title()


def _has_mechanisms(result: ExampleResult) -> bool:
    return bool(result.tables.get("mechanisms"))


Check = Callable[[Any, ExampleResult, bool], None]
KINDS = ("text", "loan")
LOAN_ONLY = ("loan",)  # drawn from the loan findings (tables["mechanisms"])
#: Display class name -> (the results it applies to, artist checks)
DISPLAYS: dict[str, tuple[tuple[str, ...], Check]] = {
    "AttributionBarsDisplay": (KINDS, check_attribution_bars),
    "AblationHeatmapDisplay": (KINDS, check_ablation),
    "PatchingDisplay": (KINDS, check_patching),
    "AgreementDisplay": (KINDS, check_agreement),
    "DeletionDisplay": (KINDS, check_deletion),
    "TwoPathDisplay": (KINDS, check_two_path),
    "PathwayCurveDisplay": (LOAN_ONLY, check_pathway),
    "LayerEncodingDisplay": (LOAN_ONLY, check_layer_encoding),
    "FaithfulnessDisplay": (KINDS, check_faithfulness),
    "BridgeDisplay": (KINDS, check_bridges),
    "LensDisplay": (("decoder",), check_lens),
    "DLADisplay": (("decoder",), check_dla),
    "AgreementAttentionDisplay": (("agreement",), check_agreement_attention),
    "EditDisplay": (("edit",), check_edit),  # from an EditComparison, not an ExampleResult
}
CASES = [(name, kind) for name, (kinds, _) in DISPLAYS.items() for kind in kinds]


@pytest.fixture(scope="module")
def results() -> dict[str, ExampleResult]:
    return {"text": text_result(), "loan": loan_result(), "decoder": decoder_result(), "agreement": agreement_result(),
            "edit": edit_comparison()}


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def test_results(results):
    text, loan = results["text"], results["loan"]
    assert text.corrupted is not None, text.notes  # a same-token-length counterfactual was found
    assert text.corrupted.raw != TEXT_SENTENCE
    assert text_adapter().encode(text.corrupted.raw).n_tokens == text_adapter().encode(TEXT_SENTENCE).n_tokens
    assert text.localization("head_ablation") and text.localization("activation_patching")
    assert loan.localization("neuron_ablation") and loan.localization("activation_patching")
    assert not _has_mechanisms(text) and _has_mechanisms(loan)


def test_every_display_class_is_tested():
    found = {name for name, obj in inspect.getmembers(figures, inspect.isclass)
             if name.endswith("Display") and obj.__module__ == figures.__name__}
    assert found == set(DISPLAYS)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_display_draws_on_given_axes(results, name, kind):
    result = results[kind]
    fig, ax = plt.subplots()
    before = set(plt.get_fignums())
    out = getattr(figures, name).from_result(result).plot(ax=ax)
    assert out is ax
    assert set(plt.get_fignums()) == before  # nothing drawn elsewhere
    DISPLAYS[name][1](ax, result, True)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_display_draws_on_new_figure(results, name, kind):
    result = results[kind]
    before = set(plt.get_fignums())
    ax = getattr(figures, name).from_result(result).plot()
    assert ax.figure.number not in before
    assert set(plt.get_fignums()) == before | {ax.figure.number}
    DISPLAYS[name][1](ax, result, False)


@pytest.mark.parametrize("name", [n for n, (kinds, _) in DISPLAYS.items() if "text" not in kinds and "edit" not in kinds])
def test_display_without_its_data_raises_key_error(results, name):
    """report_figures leaves out a figure whose data was not computed by catching KeyError."""
    with pytest.raises(KeyError):
        getattr(figures, name).from_result(results["text"])


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("kind", KINDS)
def test_report_figures_are_png(results, kind):
    result = results[kind]
    before = set(plt.get_fignums())
    pngs = figures.report_figures(result)
    expected = {"two_path", "attributions", "ablation", "patching", "agreement", "deletion", "faithfulness", "bridges"}
    if kind == "loan":
        expected |= {"pathway", "layer_encoding"}
    assert set(pngs) == expected
    for name, text in pngs.items():
        width, height = _png_size(base64.b64decode(text, validate=True))
        assert width > 50 and height > 50, name
    assert set(plt.get_fignums()) <= before  # every figure it opened is closed


def test_attribution_bars_label_repeated_words():
    from twopath.types import Attribution

    units = ("the", "film", "and", "the", "cast")
    attrs = [Attribution("rep", m, "positive", units, np.arange(5.0) * s) for m, s in (("shap", 1), ("lime", -1))]
    result = ExampleResult(Example("rep", " ".join(units)), "positive", {"label": "positive", "probability": 0.9},
                           attrs, [])
    ax = figures.AttributionBarsDisplay.from_result(result).plot()
    assert all(len(bars) == 5 for bars in ax.containers)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(units)


def test_faithfulness_curves_on_a_grid_of_k_plot_at_their_k():
    from twopath.reports.figures import FaithfulnessDisplay

    rows = [{"path": "input", "method": "shap", "deletion_curve": [0.9, 0.7, 0.4, 0.1], "curve_k": [0, 1, 10, 48]},
            {"path": "internal", "method": "head_ablation", "deletion_curve": [0.9, 0.5, 0.3]}]
    ax = FaithfulnessDisplay(rows).plot()
    first, second = ax.figure.axes
    assert list(first.lines[0].get_xdata()) == [0, 1, 10, 48]
    assert list(second.lines[0].get_xdata()) == [0, 1, 2]
