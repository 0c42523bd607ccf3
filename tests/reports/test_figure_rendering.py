"""How report figures are drawn and saved (``twopath.reports.figures``), against the old way.

* The plain-matplotlib heatmap, grouped bars and hue/style lines draw the same artists as the
  ``seaborn.heatmap`` / ``seaborn.barplot`` / ``seaborn.lineplot`` calls they replace: same cells
  and colours, ticks, tick-label rotation, annotations, bars, lines, markers and legend entries.
* ``to_png_base64`` draws a figure once and crops it; the image matches
  ``savefig(bbox_inches="tight")`` (same size within a few pixels, same content), and figures it
  cannot crop safely go through ``savefig``.
* No figure of a report needs seaborn.
"""

from __future__ import annotations

import base64
import io
import sys
from collections.abc import Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from PIL import Image  # noqa: E402

from twopath.reports import figures  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _pair(size: tuple[float, float]) -> tuple[Any, Any]:
    return plt.subplots(figsize=size)[1], plt.subplots(figsize=size)[1]


def _texts(labels: list[Any]) -> list[tuple[str, float, str, str]]:
    return [(t.get_text(), t.get_rotation(), t.get_ha(), t.get_va()) for t in labels]


def _annotations(ax: Any) -> list[tuple[Any, ...]]:
    return [(t.get_text(), t.get_position(), to_rgba(t.get_color()), t.get_fontsize()) for t in ax.texts]


def _assert_same_heatmap(ours: Any, theirs: Any) -> None:
    (mesh,), (their_mesh,) = ours.collections, theirs.collections
    np.testing.assert_array_equal(np.ma.getmaskarray(mesh.get_array()), np.ma.getmaskarray(their_mesh.get_array()))
    np.testing.assert_allclose(mesh.get_array().filled(0), their_mesh.get_array().filled(0))
    mesh.update_scalarmappable()
    their_mesh.update_scalarmappable()
    np.testing.assert_allclose(mesh.get_facecolors(), their_mesh.get_facecolors(), atol=1e-12)
    assert mesh.get_clim() == their_mesh.get_clim()
    assert ours.get_xlim() == theirs.get_xlim() and ours.get_ylim() == theirs.get_ylim()  # y inverted in both
    for axis in ("x", "y"):
        np.testing.assert_allclose(getattr(ours, f"get_{axis}ticks")(), getattr(theirs, f"get_{axis}ticks")())
        assert _texts(getattr(ours, f"get_{axis}ticklabels")()) == _texts(getattr(theirs, f"get_{axis}ticklabels")())
    assert (ours.get_xlabel(), ours.get_ylabel()) == (theirs.get_xlabel(), theirs.get_ylabel())
    assert [s.get_visible() for s in ours.spines.values()] == [s.get_visible() for s in theirs.spines.values()]
    assert _annotations(ours) == _annotations(theirs)
    ours_cbar, theirs_cbar = ours.figure.axes[1], theirs.figure.axes[1]
    assert ours_cbar.get_ylabel() == theirs_cbar.get_ylabel()
    np.testing.assert_allclose(ours_cbar.get_position(original=True).bounds,
                               theirs_cbar.get_position(original=True).bounds)
    np.testing.assert_allclose(ours.get_position().bounds, theirs.get_position().bounds)


HEATMAP_CASES = {
    "small signed": (pd.DataFrame(np.linspace(-0.7, 0.9, 12).reshape(3, 4), index=pd.Index([0, 1, 2], name="layer"),
                                  columns=pd.Index([0, 1, 2, 3], name="index")),
                     {"cmap": "RdBu", "vmin": -0.9, "vmax": 0.9, "annot": True, "fmt": ".2f",
                      "annot_kws": {"fontsize": 7}, "cbar_label": "logit diff"}, (5.0, 3.0)),
    "missing cells": (pd.DataFrame([[0.1, np.nan, 0.5], [np.nan, 0.9, 0.2]]),
                      {"cmap": "Greens", "vmin": 0, "vmax": 1, "annot": True, "fmt": ".2f", "cbar_label": "R²"}, (5.5, 3.4)),
    "long names overlap": (pd.DataFrame(np.eye(4) * 2 - 1, index=[f"integrated_gradients_{i}" for i in range(4)],
                                        columns=[f"integrated_gradients_{i}" for i in range(4)]),
                           {"cmap": "RdBu", "vmin": -1, "vmax": 1, "annot": True, "fmt": ".2f", "cbar_label": "ρ"},
                           (4.8, 3.8)),
    "too many columns to label": (pd.DataFrame(np.random.default_rng(0).normal(size=(3, 120))),
                                  {"cmap": "RdBu", "vmin": -3, "vmax": 3, "annot": False, "fmt": ".2f", "cbar_label": ""},
                                  (5.0, 2.5)),
}


@pytest.mark.parametrize("case", list(HEATMAP_CASES))
def test_heatmap_matches_seaborn(case):
    matrix, kw, size = HEATMAP_CASES[case]
    ours, theirs = _pair(size)
    figures._heatmap(ours, matrix, **kw)
    center = {"center": 0} if kw["cmap"] == "RdBu" and kw["vmin"] == -kw["vmax"] else {}
    sns.heatmap(matrix, cmap=kw["cmap"], vmin=kw["vmin"], vmax=kw["vmax"], annot=kw["annot"], fmt=kw["fmt"],
                annot_kws=kw.get("annot_kws"), cbar_kws={"label": kw["cbar_label"]}, ax=theirs, **center)
    _assert_same_heatmap(ours, theirs)
    if case == "long names overlap":  # the case exercises both rotations
        assert ours.get_xticklabels()[0].get_rotation() == 90 and ours.get_yticklabels()[0].get_rotation() == 0
    if case == "too many columns to label":
        assert 0 < len(ours.get_xticks()) < matrix.shape[1]


def _frame(methods: list[str], units: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"method": m, "unit_pos": u, "score": float(rng.normal())} for m in methods for u in range(units)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("methods", [["shap", "lime"], [f"m{i}" for i in range(12)]])
def test_grouped_bars_match_seaborn_barplot(methods):
    frame = _frame(methods, 5)
    frame.loc[3, "score"] = np.nan  # a unit without a score: no bar, as in seaborn
    ours, theirs = _pair((6, 3.6))
    figures._grouped_bars(ours, frame)
    sns.barplot(data=frame, x="unit_pos", y="score", hue="method", ax=theirs, palette="colorblind")
    for ax in (ours, theirs):
        ax.legend(fontsize=8)

    def bars(ax: Any) -> list[tuple[Any, ...]]:
        return sorted((round(p.get_x(), 12), round(p.get_width(), 12), p.get_height(), tuple(np.round(p.get_facecolor(), 12)))
                      for p in ax.patches if np.isfinite(p.get_height()) and p.get_width() > 0 and p.get_height() != 0)

    assert len(bars(ours)) == len(frame) - 1
    assert bars(ours) == bars(theirs)
    assert ours.get_xlim() == theirs.get_xlim()
    legend, their_legend = ours.get_legend(), theirs.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [t.get_text() for t in their_legend.get_texts()] == methods
    np.testing.assert_allclose([h.get_facecolor() for h in legend.legend_handles],
                               [h.get_facecolor() for h in their_legend.legend_handles], atol=1e-12)


def _deletion(methods_by_path: dict[str, list[str]], ks: tuple[int, ...] = (1, 2, 3)) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame([{"path": path, "method": m, "k": k, "drop": float(rng.uniform())}
                         for path, methods in methods_by_path.items() for m in methods for k in ks])


def _line_look(line: Any) -> tuple[Any, ...]:
    return (tuple(line.get_xdata()), tuple(line.get_ydata()), to_rgba(line.get_color()), line.get_marker(),
            line.get_linestyle(), tuple(line._dash_pattern[1] or ()), to_rgba(line.get_markeredgecolor()),
            line.get_markeredgewidth(), line.get_label() if not line.get_label().startswith("_") else "", line.get_visible())


@pytest.mark.parametrize("paths", [{"input": ["shap", "lime", "occlusion"], "internal": ["head_ablation"]},
                                   {"internal": ["neuron_ablation"], "input": ["shap"]}])
def test_hue_style_lines_match_seaborn_lineplot(paths):
    frame = _deletion(paths).sample(frac=1.0, random_state=0)  # unsorted k: both sort
    ours, theirs = _pair((6.5, 3.4))
    figures._hue_style_lines(ours, frame, x="k", y="drop", hue="method", style="path")
    sns.lineplot(data=frame, x="k", y="drop", hue="method", style="path", markers=True, ax=theirs)
    theirs.get_legend().remove()  # seaborn's own legend; the Display replaces it with ax.legend as here
    assert [_line_look(x) for x in ours.lines] == [_line_look(x) for x in theirs.lines]
    assert (ours.get_xlabel(), ours.get_ylabel()) == (theirs.get_xlabel(), theirs.get_ylabel())
    legends = [ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1)) for ax in (ours, theirs)]
    assert [t.get_text() for t in legends[0].get_texts()] == [t.get_text() for t in legends[1].get_texts()]
    assert [_line_look(h) for h in legends[0].legend_handles] == [_line_look(h) for h in legends[1].legend_handles]


def test_hue_style_lines_leave_repeated_points_to_seaborn(monkeypatch):
    frame = pd.concat([_deletion({"input": ["shap"]})] * 2, ignore_index=True)  # two values per point: a mean and a band
    calls = []
    monkeypatch.setattr(sns, "lineplot", lambda **kw: calls.append(kw))
    figures._hue_style_lines(plt.subplots()[1], frame, x="k", y="drop", hue="method", style="path")
    assert len(calls) == 1


# ---------------------------------------------------------------- saving: one draw, cropped


def _decode(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text, validate=True))).convert("RGB")).astype(int)


def _old_png(fig: Any) -> np.ndarray:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return np.asarray(Image.open(buffer).convert("RGB")).astype(int)


def _content(image: np.ndarray) -> np.ndarray:
    drawn = image != 255
    rows, cols = np.flatnonzero(drawn.any(axis=2).any(axis=1)), np.flatnonzero(drawn.any(axis=2).any(axis=0))
    return image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _legend_outside() -> Any:
    ax = plt.subplots(figsize=(6.5, 3.4))[1]
    for i in range(3):
        ax.plot([0, 1, 2], [i, i + 1, i * 2], marker="o", label=f"a rather long legend label {i}")
    ax.set_xticks([0, 1, 2], ["first unit", "second unit", "third unit"], rotation=30, ha="right")
    ax.set_title("A title")
    ax.set_ylabel("score")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return ax.figure


def _heatmap_figure() -> Any:
    ax = plt.subplots(figsize=(6, 3))[1]
    figures._heatmap(ax, HEATMAP_CASES["small signed"][0], **HEATMAP_CASES["small signed"][1])
    ax.set_title("heatmap")
    return ax.figure


def _two_panels() -> Any:
    axes = plt.subplots(1, 2, figsize=(11, 3.6))[1]
    for i, ax in enumerate(axes):
        ax.plot(range(5), np.arange(5) * (i + 1), label="curve")
        ax.set_title(f"panel {i}")
        ax.legend(fontsize=7)
    return axes[0].figure


@pytest.mark.parametrize("build", [_legend_outside, _heatmap_figure, _two_panels])
def test_one_draw_png_matches_savefig_tight(build, monkeypatch):
    old = _old_png(build())
    fallbacks = []
    monkeypatch.setattr(figures, "_savefig_tight", lambda fig: fallbacks.append(fig) or b"")
    fig = build()
    draws = []
    real_draw = fig.canvas.draw
    monkeypatch.setattr(fig.canvas, "draw", lambda: draws.append(1) or real_draw())
    new = _decode(figures.to_png_base64(fig))
    assert not fallbacks and len(draws) == 1
    assert not plt.fignum_exists(fig.number)  # closed
    assert abs(new.shape[0] - old.shape[0]) <= 4 and abs(new.shape[1] - old.shape[1]) <= 4, (new.shape, old.shape)
    ours, theirs = _content(new), _content(old)
    assert abs(ours.shape[0] - theirs.shape[0]) <= 2 and abs(ours.shape[1] - theirs.shape[1]) <= 2
    rows, cols = min(ours.shape[0], theirs.shape[0]), min(ours.shape[1], theirs.shape[1])
    close = np.abs(ours[:rows, :cols] - theirs[:rows, :cols]).max(axis=2) <= 64  # antialiasing at sub-pixel offsets
    assert close.mean() > 0.97
    pad = round(figures.PAD_INCHES * figures.DPI)
    border = np.concatenate([new[:pad].reshape(-1, 3), new[-pad:].reshape(-1, 3), new[:, :pad].reshape(-1, 3),
                             new[:, -pad:].reshape(-1, 3)])
    assert (border == 255).all()  # the 0.1 in padding around the content, as savefig's


def test_content_off_the_widened_canvas_goes_through_savefig():
    ax = plt.subplots(figsize=(4, 3))[1]
    ax.plot([0, 1], [0, 1])
    ax.text(4.0, 0.5, "far to the right", transform=ax.transAxes)  # beyond the room added around the subplots
    old = _old_png(ax.figure)
    new = _decode(figures.to_png_base64(ax.figure))
    assert new.shape == old.shape  # the whole text is in, as with savefig


@pytest.mark.parametrize("decorate", [lambda fig: fig.suptitle("figure title"),
                                      lambda fig: fig.legend(["x"]),
                                      lambda fig: fig.set_layout_engine("tight"),
                                      lambda fig: fig.add_axes((0.6, 0.6, 0.2, 0.2))])
def test_figures_it_cannot_crop_safely_go_through_savefig(decorate, monkeypatch):
    ax = plt.subplots(figsize=(4, 3))[1]
    ax.plot([0, 1], [0, 1], label="x")
    decorate(ax.figure)
    calls = []
    real = figures._savefig_tight
    monkeypatch.setattr(figures, "_savefig_tight", lambda fig: calls.append(fig) or real(fig))
    new = _decode(figures.to_png_base64(ax.figure))
    assert len(calls) == 1 and new.shape[0] > 50


def test_widening_is_undone():
    fig = _legend_outside()
    before = (tuple(fig.get_size_inches()), fig.dpi, [ax.get_position().bounds for ax in fig.axes])
    with figures._widened(fig):
        assert fig.dpi == figures.DPI and fig.get_size_inches()[0] > before[0][0]
    assert (tuple(fig.get_size_inches()), fig.dpi, [ax.get_position().bounds for ax in fig.axes]) == before


def test_report_rendering_freezes_the_heap_only_while_it_renders(monkeypatch):
    import gc

    from twopath.reports import writers

    seen = []
    with writers._heap_frozen():
        seen.append(gc.get_freeze_count())
    assert seen[0] > 0 and gc.get_freeze_count() == 0
    gc.freeze()  # someone else froze objects: left to them
    try:
        with writers._heap_frozen():
            pass
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_report_figures_need_no_seaborn(monkeypatch):
    """Every Display of a text and a loan report draws without seaborn (``import seaborn`` fails),
    and no figure falls back to the two-draw ``savefig``."""
    from tests.reports.test_displays import loan_result, text_result

    results = [text_result(), loan_result()]
    monkeypatch.setitem(sys.modules, "seaborn", None)
    fallbacks = []
    real = figures._savefig_tight
    monkeypatch.setattr(figures, "_savefig_tight", lambda fig: fallbacks.append(fig) or real(fig))
    for result in results:
        pngs = figures.report_figures(result)
        assert {"attributions", "ablation", "patching", "agreement", "deletion", "bridges"} <= set(pngs)
        for text in pngs.values():
            assert _decode(text).shape[0] > 50
    assert not fallbacks
