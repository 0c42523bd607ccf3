"""Verdict rules, each outcome on synthetic measurements."""

from __future__ import annotations

import pytest

from twopath.seed import claims

S, P, N = claims.SUPPORTED, claims.PARTLY, claims.NOT_SUPPORTED


@pytest.mark.parametrize(
    ("scores", "verdict"),
    [
        ({"good": 2.0, "surprisingly": 0.5, "slow": -1.0}, S),
        ({"good": 0.5, "surprisingly": 2.0, "slow": -1.0}, P),  # signs right, top unit differs
        ({"good": 2.0, "surprisingly": 0.5, "slow": 1.0}, P),  # one sign wrong
        ({"good": -2.0, "surprisingly": -0.5, "slow": 1.0}, N),
    ],
)
def test_word_scores(scores, verdict):
    assert claims.word_scores(scores, {"good": 0.6, "surprisingly": 0.3, "slow": -0.4}).verdict == verdict


def _head(name, pos, neg):
    return {"component": name, "pos_enrichment": pos, "neg_enrichment": neg}


@pytest.mark.parametrize(
    ("enrichment", "verdict"),
    [
        ([_head("L1H0", 3.0, 1.0), _head("L0H0", 1.0, 1.0)], S),  # tracks and is the top causal head
        ([_head("L0H0", 1.0, 1.0), _head("L1H1", 3.0, 1.0)], P),  # tracks but ablation says it does not matter
        ([_head("L1H0", 3.0, 2.5), _head("L0H0", 1.0, 1.0)], N),  # reads any sentiment word, not positive ones
        ([_head("L1H0", 1.2, 1.0)], N),
    ],
)
def test_head_tracks_words(enrichment, verdict):
    ablation = {"L1H0": 0.9, "L0H0": 0.5, "L1H1": -0.01, "L0H1": 0.4, "L2H0": 0.3, "L2H1": 0.2, "L3H0": 0.1}
    assert claims.head_tracks_words(enrichment, ablation, top_k=5).verdict == verdict


@pytest.mark.parametrize(("after", "verdict"), [(0.1, S), (0.5, P), (0.9, N)])
def test_ablation_removes_word(after, verdict):
    assert claims.ablation_removes_word(1.0, after, "L2H0", "good").verdict == verdict


@pytest.mark.parametrize(
    ("good", "bad", "effect", "verdict"),
    [(1.0, -1.0, 0.5, S), (1.0, 0.0, 0.5, P), (0.0, 0.0, 0.5, N), (1.0, -1.0, -0.5, N)],
)
def test_cluster_amplifies(good, bad, effect, verdict):
    assert claims.cluster_amplifies("L5C0", good, bad, effect, spread=1.0).verdict == verdict


@pytest.mark.parametrize(("r2", "verdict"), [(0.7, S), (0.3, P), (0.1, N)])
def test_cluster_encodes(r2, verdict):
    assert claims.cluster_encodes("credit score", "L3C1", r2).verdict == verdict


@pytest.mark.parametrize(
    ("after", "control", "verdict"),
    [(0.05, 0.5, S), (0.25, 0.5, P), (0.05, 0.06, N), (0.45, 0.5, N)],
)
def test_pathway_removes_separation(after, control, verdict):
    claim = claims.pathway_removes_separation(0.5, after, control, 0.01, ["L5N1"])
    assert claim.verdict == verdict


def _layer(k, whole=True, width=32):
    return {"layer": 0, "width": width, "neurons_to_flip": k, "whole_layer_flips": whole}


@pytest.mark.parametrize(
    ("layers", "verdict"),
    [([_layer(4)], S), ([_layer(20)], P), ([_layer(None, whole=False)], N)],
)
def test_patching_flips(layers, verdict):
    assert claims.patching_flips(layers).verdict == verdict


def test_every_claim_states_its_rule():
    claim = claims.cluster_encodes("x", "L0C0", 0.6)
    assert claim.rule and claim.measured and set(claim.to_dict()) == {"claim", "measured", "rule", "verdict"}
