"""Residual-stream readings benchmark: logit lens, DLA and direct effects, in F1 units.

F1 is one unmodified batch-size-1 forward pass of the same model on the same input
(:func:`twopath.runtime.cost.forward_seconds`), measured in the same run. The lens and DLA read
the example's cached clean run (one recording pass, counted here: each timed run starts from a
fresh cache); direct effects for every head and MLP are compared with activation patching of
every head (the total effects). Goals from the issue: lens + DLA <= 2 F1 together; direct
effects <= the cost of patching all heads.

Run with ``make bench`` (or ``python benchmarks/lens.py``) on the reference decoder (trained
once, cached) and, for the lens alone, on the MiniLM encoder. ``TWOPATH_BENCH_THREADS`` sets
torch's thread count (on a busy machine, 1 thread gives steadier ratios).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from twopath.datasets import sentiment  # noqa: E402
from twopath.mechanistic import MECHANISTIC_METHODS  # noqa: E402
from twopath.runtime.cost import forward_seconds  # noqa: E402
from twopath.runtime.text import HFTextClassifier  # noqa: E402
from twopath.runtime.trace import forget  # noqa: E402
from twopath.seed import decoder, zoo  # noqa: E402
from twopath.types import Example  # noqa: E402

EXAMPLE = Example(sentiment.SEED_EXAMPLE_ID, sentiment.SEED_SENTENCE)
CONTRAST = Example("contrast", "The movie was surprisingly boring, despite slow pacing.")


def timed(adapter: Any, fn: Callable[[], Any], repeats: int = 5) -> float:
    """Median seconds of ``fn`` from an empty cache (so the clean run is paid every time)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        forget(adapter)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(name: str, adapter: Any, corrupted: Example | None = None, **settings: Any) -> Callable[[], Any]:
    method = MECHANISTIC_METHODS.create(name, **settings)
    return lambda: method.localize(adapter, EXAMPLE, target="positive", corrupted=corrupted)


def report(title: str, adapter: Any, rows: list[tuple[str, Callable[[], Any], float | None]]) -> None:
    f1 = forward_seconds(adapter, EXAMPLE, repeats=15, warmup=3)
    print(f"\n{title}  (F1 = {f1 * 1e3:.2f} ms)")
    print(f"{'method':<44}{'F1':>8}{'goal':>8}  met")
    for label, fn, goal in rows:
        cost = timed(adapter, fn) / f1
        met = "" if goal is None else ("yes" if cost <= goal else "NO")
        print(f"{label:<44}{cost:>8.1f}{'' if goal is None else f'{goal:>8.1f}':>8}  {met}")


def main() -> None:
    import torch

    threads = os.environ.get("TWOPATH_BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); costs in F1 (lower is better)")
    gpt2 = HFTextClassifier.from_pretrained(decoder.sentiment_decoder_model(say=lambda _: None), name="gpt2")
    gpt2.background = [EXAMPLE.raw]
    lens, dla = run("logit_lens", gpt2), run("direct_logit_attribution", gpt2)
    patching = run("activation_patching", gpt2, CONTRAST, sites=("head",))
    report("Reference decoder (GPT-2-style, 4 layers x 4 heads), seed sentence", gpt2, [
        ("logit lens + DLA (clean run included)", lambda: (lens(), dla()), 2.0),
        ("direct effects, every head and MLP", run("direct_effect", gpt2, CONTRAST), None),
        ("activation patching, every head (total)", patching, None),
    ])
    minilm = HFTextClassifier.from_pretrained(zoo.sentiment_model(say=lambda _: None), name="minilm")
    encoder_lens, encoder_dla = run("logit_lens", minilm), run("direct_logit_attribution", minilm)
    report("MiniLM-L6 (encoder: lens, and DLA through the linearised head)", minilm, [
        ("logit lens (clean run included)", encoder_lens, 2.0),
        ("logit lens + DLA (clean run included)", lambda: (encoder_lens(), encoder_dla()), 2.0),
    ])


if __name__ == "__main__":
    main()
