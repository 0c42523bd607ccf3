"""Core types: component labels, result containers and their rankings."""

from __future__ import annotations

import numpy as np
import pytest

from twopath.types import Attribution, Component, Example, Localization


@pytest.mark.parametrize(
    ("label", "component"),
    [
        ("L5H3", Component("head", 5, 3)),
        ("L4N17", Component("neuron", 4, 17)),
        ("L2.resid@7", Component("resid", 2, position=7)),
        ("L3", Component("layer", 3)),
        ("L0H0", Component("head", 0, 0)),
        ("L12N3071", Component("neuron", 12, 3071)),
    ],
)
def test_component_label_round_trip(label, component):
    assert str(component) == label
    assert Component.parse(label) == component
    assert Component.parse(str(component)) == component
    assert str(Component.parse(label)) == label


def test_component_parse_tolerates_surrounding_whitespace():
    assert Component.parse("  L5H3\n") == Component("head", 5, 3)


@pytest.mark.parametrize(
    "junk",
    ["", "L", "H3", "L5H", "L5N", "l5h3", "L5H3x", "L5.resid", "L5.resid@", "L-1", "L5H-3",
     "L2.resid@7H1", "L5 H3", "layer5", "L5H3N2", "LxH3"],
)
def test_component_parse_rejects_junk(junk):
    with pytest.raises(ValueError):
        Component.parse(junk)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "head", "layer": -1, "index": 0},
        {"kind": "head", "layer": 1},
        {"kind": "neuron", "layer": 1, "index": -2},
        {"kind": "resid", "layer": 1},
        {"kind": "resid", "layer": 1, "position": -1},
    ],
)
def test_component_validates_fields(kwargs):
    with pytest.raises(ValueError):
        Component(**kwargs)


def test_components_are_hashable_and_value_equal():
    assert len({Component("head", 1, 2), Component.parse("L1H2"), Component("head", 1, 3)}) == 2


def test_example_helpers():
    text = Example("a", "hello world")
    row = Example("b", {"x": 1.0})
    assert text.is_text and not row.is_text
    retargeted = text.with_target("positive")
    assert retargeted.target == "positive" and retargeted.raw == "hello world" and retargeted.id == "a"
    assert text.target is None  # frozen original untouched


def test_attribution_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        Attribution("e", "m", "t", ("a", "b", "c"), np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        Attribution("e", "m", "t", ("a",), np.zeros((1, 1)))


def test_localization_rejects_mismatched_lengths():
    comps = (Component("head", 0, 0), Component("head", 0, 1))
    with pytest.raises(ValueError):
        Localization("e", "m", "t", "drop", comps, np.array([1.0, 2.0, 3.0]))


def test_attribution_ranking_and_top():
    attr = Attribution("e", "m", "pos", ["a", "b", "c", "d"], [0.1, -3.0, 2.0, -0.5], base_value=1.0)
    assert attr.ranking() == [1, 2, 3, 0]
    assert attr.top(2) == [("b", -3.0), ("c", 2.0)]
    assert attr.top(10) == [("b", -3.0), ("c", 2.0), ("d", -0.5), ("a", 0.1)]
    assert isinstance(attr.units, tuple)
    with pytest.raises(ValueError):
        attr.scores[0] = 5.0  # read-only


def test_ranking_is_stable_on_ties():
    attr = Attribution("e", "m", "pos", ["a", "b", "c"], [1.0, -1.0, 1.0])
    assert attr.ranking() == [0, 1, 2]


def test_localization_ranking_top_and_labels():
    comps = [Component("head", 0, 0), Component("neuron", 1, 4), Component("resid", 1, position=2)]
    loc = Localization("e", "m", "pos", "drop", comps, [0.2, -0.9, 0.5], clean=1.0, corrupted=-1.0)
    assert loc.labels == ["L0H0", "L1N4", "L1.resid@2"]
    assert loc.ranking() == [1, 2, 0]
    assert loc.top(1) == [("L1N4", -0.9)]
    d = loc.to_dict()
    assert d["components"] == loc.labels and d["effects"] == [0.2, -0.9, 0.5]
    assert d["clean"] == 1.0 and d["corrupted"] == -1.0
    frame = loc.to_frame()
    assert list(frame["component"]) == loc.labels and list(frame["effect"]) == [0.2, -0.9, 0.5]


def test_attribution_serialisation():
    attr = Attribution("e", "shap", "pos", ["a", "b"], [0.5, -0.25], base_value=None, meta={"k": 1})
    d = attr.to_dict()
    assert d == {"method": "shap", "units": ["a", "b"], "scores": [0.5, -0.25], "base_value": None, "meta": {"k": 1}}
    frame = attr.to_frame()
    assert list(frame["unit"]) == ["a", "b"] and set(frame["example_id"]) == {"e"}
