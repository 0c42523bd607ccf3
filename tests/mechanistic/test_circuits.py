"""The greedy circuit search: resumed trial rows equal full passes, on encoders and decoders."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import single_threaded
from tests.tiny_models import CORPUS, TEXT, save_tiny
from twopath.mechanistic import circuits
from twopath.mechanistic.circuits import _Resumed, greedy_circuit, masked_logits
from twopath.runtime.interventions import MaskedAblation
from twopath.runtime.text import HFTextClassifier
from twopath.types import Example

FAMILIES = ("bert", "gpt2", "llama")


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request, tmp_path_factory):
    with single_threaded():
        model = HFTextClassifier.from_pretrained(save_tiny(request.param, tmp_path_factory.mktemp(request.param)))
        model.background = list(CORPUS[:8])
        yield model


def _trial(n: int, chosen: list[int]) -> tuple[np.ndarray, list[int]]:
    rest = [i for i in range(n) if i not in chosen]
    trial = np.zeros((len(rest), n), dtype=bool)
    trial[:, chosen] = True
    trial[np.arange(len(rest)), rest] = True
    return trial, rest


@pytest.mark.parametrize("chosen", [[], [0], [1, 3]])
def test_resumed_trial_rows_equal_full_passes(adapter, chosen):
    with single_threaded():
        inputs = adapter.forward_inputs(Example("t", TEXT))
        candidates = adapter.components("head")
        masked = MaskedAblation(adapter, candidates)
        resumed = _Resumed(adapter, masked, Example("t", TEXT), [c.layer for c in candidates])
        assert resumed.ok  # every family here can resume
        trial, rest = _trial(len(candidates), chosen)
        full = adapter.output(masked_logits(adapter, masked, inputs, trial), 1, "logit_diff").cpu().numpy()
        np.testing.assert_allclose(resumed.step(trial, rest, 1, "logit_diff"), full, atol=1e-5)


def test_the_search_is_the_naive_one(adapter, monkeypatch):
    with single_threaded():
        example = Example("t", TEXT)
        fast = greedy_circuit(adapter, example, 1, threshold=0.6, max_size=4, n_controls=5)
        original_init = circuits._Resumed.__init__

        def full_passes(self, *args):  # the naive search: every trial row is a full pass
            original_init(self, *args)
            self.ok = False

        monkeypatch.setattr(circuits._Resumed, "__init__", full_passes)
        monkeypatch.setattr(circuits._Resumed, "step", lambda *a, **k: pytest.fail("resumed"))
        naive = greedy_circuit(adapter, example, 1, threshold=0.6, max_size=4, n_controls=5)
        assert fast.components == naive.components
        assert fast.sufficiency == pytest.approx(naive.sufficiency, rel=1e-6)
        assert [h["added"] for h in fast.history] == [h["added"] for h in naive.history]


def _naive_pruned_search(adapter, example, target, rescore, refresh, max_size):
    """The pruned greedy rule written out with full passes: every ``refresh``-th step scores
    every remaining head, the others the ``rescore`` heads whose last scores were highest."""
    inputs = adapter.forward_inputs(example)
    candidates = adapter.components("head")
    masked = MaskedAblation(adapter, candidates)
    n = len(candidates)
    chosen, last, scored = [], {}, []
    while len(chosen) < max_size:
        rest = [i for i in range(n) if i not in chosen]
        if len(chosen) % refresh and len(rest) > rescore:
            rest = sorted(sorted(rest, key=lambda i: (-last[i], i))[:rescore])
        scored.append(len(rest))
        trial = np.zeros((len(rest), n), dtype=bool)
        trial[:, chosen] = True
        trial[np.arange(len(rest)), rest] = True
        values = adapter.output(masked_logits(adapter, masked, inputs, trial), target, "logit_diff").cpu().numpy()
        last.update(zip(rest, values, strict=True))
        chosen.append(rest[int(np.argmax(values))])
    return [candidates[i] for i in chosen], scored


def test_the_pruned_search_is_its_rule_written_out(adapter, monkeypatch):
    with single_threaded():
        example = Example("t", TEXT)
        steps: list[int] = []
        step = circuits._Resumed.step

        def counted(self, trial, rest, *args):
            steps.append(len(rest))
            return step(self, trial, rest, *args)

        monkeypatch.setattr(circuits._Resumed, "step", counted)
        pruned = greedy_circuit(adapter, example, 1, threshold=2.0, max_size=6, n_controls=2, rescore=3, refresh=3)
        naive, scored = _naive_pruned_search(adapter, example, 1, rescore=3, refresh=3, max_size=6)
        n = len(adapter.components("head"))
        assert steps == scored == [n, 3, 3, n - 3, 3, 3]  # every 3rd step scores all, the others 3 heads
        assert pruned.components == naive
        assert pruned.search.startswith("pruned")


def test_find_circuit_prunes_only_beyond_the_seed_sentence_length(adapter):
    with single_threaded():
        short = Example("t", "the movie was good")
        long = Example("t", " ".join([TEXT] * 2))
        assert len(adapter.units(short)) <= circuits.EXACT_SEARCH_UNITS < len(adapter.units(long))
        assert circuits.find_circuit(adapter, short, 1)["search"].startswith("exact")
        assert circuits.find_circuit(adapter, long, 1)["search"].startswith("pruned")


def test_bad_pruning_settings_are_refused(adapter):
    with pytest.raises(circuits.TwopathError, match="rescore"):
        greedy_circuit(adapter, Example("t", TEXT), 1, rescore=0)
