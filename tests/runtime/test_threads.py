"""A small tabular model's work runs on one thread: the same numbers, the thread count restored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twopath.attribution.integrated_gradients import IntegratedGradients
from twopath.mechanistic.ablation import NeuronAblation
from twopath.runtime import threads
from twopath.types import Example


@pytest.fixture()
def two_threads():
    with threads.torch_threads(2):
        yield


def _applicant(loan_background) -> Example:
    return Example("a", loan_background.iloc[3].to_dict())


def test_small_tabular_model_runs_on_one_thread_and_restores(loan_adapter, two_threads) -> None:
    assert threads.is_small(loan_adapter)
    with threads.sized_for(loan_adapter):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="inside"), threads.sized_for(loan_adapter):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2  # restored after an exception too


def test_text_and_large_models_keep_their_threads(tiny_sentiment, loan_adapter, monkeypatch, two_threads) -> None:
    assert not threads.is_small(tiny_sentiment)  # text: its attention products round differently on one thread
    with threads.sized_for(tiny_sentiment):
        assert torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "SMALL_MODEL_PARAMETERS", threads.product_parameters(loan_adapter.model) - 1)
    assert not threads.is_small(loan_adapter)


def test_embedding_tables_do_not_count(tiny_sentiment) -> None:
    model = tiny_sentiment.model
    embeddings = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters())
    assert embeddings > 0
    assert threads.product_parameters(model) == sum(p.numel() for p in model.parameters()) - embeddings


def test_explain_runs_a_small_model_on_one_thread(loan_adapter, loan_background, monkeypatch, two_threads) -> None:
    from twopath.pipeline import explain

    seen: list[int] = []
    original = NeuronAblation.localize

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NeuronAblation, "localize", spy)
    explain(loan_adapter, _applicant(loan_background), attribution_methods=["occlusion"],
            mechanistic_methods=["neuron_ablation"], with_circuit=False, with_checks=False, stability_seeds=())
    assert seen == [1] and torch.get_num_threads() == 2


def _numbers(adapter, example: Example) -> list[np.ndarray]:
    torch.manual_seed(0)
    x = torch.randn(4096, adapter.model[0].in_features)
    with torch.no_grad():
        batches = [adapter.run({"x": x[:n]}).numpy() for n in (1, 7, 64, 193, 1024, 4096)]
    ig = IntegratedGradients(n_steps=32).attribute(adapter, example, target="approved").scores
    ablation = NeuronAblation().localize(adapter, example, target="approved").effects
    return [*batches, np.asarray(ig), np.asarray(ablation)]


def test_one_thread_agrees_with_two_within_float_tolerance(loan_adapter, loan_background, two_threads) -> None:
    """MKL picks its kernel by shape and thread count: most shapes give the same bits on one
    thread or two, some (a 7-row batch) differ in the last place."""
    example = _applicant(loan_background).with_target("approved")
    two = _numbers(loan_adapter, example)
    with threads.one_thread():
        one = _numbers(loan_adapter, example)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_explain_of_a_small_model_does_not_depend_on_the_thread_count(loan_adapter, loan_background) -> None:
    from twopath.pipeline import explain

    def scores(n_threads: int) -> list[np.ndarray]:
        with threads.torch_threads(n_threads):
            result = explain(loan_adapter, _applicant(loan_background), attribution_methods=["integrated_gradients"],
                             mechanistic_methods=["neuron_ablation"], with_circuit=False, with_checks=False,
                             stability_seeds=())
        return [a.scores for a in result.attributions] + [loc.effects for loc in result.localizations]

    for a, b in zip(scores(1), scores(2), strict=True):
        assert np.array_equal(a, b)


def test_adapter_sized_finds_the_adapter_by_position_or_keyword(loan_adapter, two_threads) -> None:
    @threads.adapter_sized
    def seen(adapter, example=None) -> int:
        return torch.get_num_threads()

    assert seen(loan_adapter) == 1 and seen(adapter=loan_adapter) == 1
    assert seen(object()) == 2 and torch.get_num_threads() == 2
