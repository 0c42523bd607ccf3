"""Editing benchmark (issue 15): the localized-edit table on the reference models, costs in F1.

For each case, every localization is ranked, filled to the same parameter budget, edited with
:class:`twopath.editing.LocalizedFineTuning` and measured (forget, maintain, robustness, after
relearning). Costs are printed as ratios to **F1**: one unmodified batch-size-1 forward pass of
the same model on the case's first input (:func:`twopath.runtime.cost.forward_seconds`),
measured in the same run just before the case.

Cases:

* ``loan`` — the loan MLP's credit-score pathway: 720 and 600 should be indistinguishable
  (neurons; always run);
* ``hmda`` — remove the ``white`` pathway of the HMDA Boston MLP (neurons; run when the reference
  model is already cached, never trained here);
* ``text`` — unlearn the seed sentence's top word (by occlusion; "good" on the reference
  models) in the tiny reference BERT (heads; when cached);
* ``minilm`` — the sentiment task's edit section on the reference MiniLM: the seed sentence's
  top word by SHAP, with the section's plan (``twopath.editing.section.PLANS["sentiment"]``;
  when cached; minutes, so not in the default ``--cases``).

Run with ``make bench`` or ``python benchmarks/editing.py [--out DIR] [--cases loan,hmda,text]``.
``TWOPATH_BENCH_THREADS`` sets torch's thread count (default 1: steadier ratios on a busy machine).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from twopath.editing import (  # noqa: E402
    LocalizedFineTuning,
    Relearning,
    compare_localizations,
    feature_task,
    word_task,
)
from twopath.runtime.cost import forward_seconds  # noqa: E402
from twopath.seed import zoo  # noqa: E402
from twopath.types import Example  # noqa: E402


def _cached(prefix: str) -> bool:
    return any(p.name.startswith(prefix) and (p / "manifest.json").is_file() for p in zoo.cache_dir().glob(f"{prefix}*"))


def loan_case() -> tuple[Any, Any, dict[str, Any]]:
    from twopath.datasets import loan
    from twopath.runtime.tabular import TorchTabularClassifier

    adapter = TorchTabularClassifier.load(zoo.loan_model())
    train, test = loan.split()
    adapter.background = train.sample(200, random_state=0)
    task = feature_task(adapter, train, test, "credit_score", "approved", values=(720, 600), n_train=1000, n_heldout=500)
    return adapter, task, {"kind": "neuron", "k": 4}


def hmda_case() -> tuple[Any, Any, dict[str, Any]]:
    from sklearn.model_selection import train_test_split

    from twopath.datasets import loan
    from twopath.runtime.tabular import TorchTabularClassifier

    adapter = TorchTabularClassifier.load(zoo.hmda_model())
    frame = loan.load_hmda()
    train, test = train_test_split(frame, test_size=0.2, random_state=0, stratify=frame["approve"])
    adapter.background = train.sample(200, random_state=0)
    task = feature_task(adapter, train, test, "white", "approve", values=(1, 0), n_train=1000, n_heldout=400)
    return adapter, task, {"kind": "neuron", "k": 4}


def text_case() -> tuple[Any, Any, dict[str, Any]]:
    from twopath.datasets import sentiment
    from twopath.runtime.text import HFTextClassifier

    adapter = HFTextClassifier.from_pretrained(zoo.tiny_sentiment_model())
    train, test = sentiment.split(seed=0)
    adapter.background = list(test["text"][:16])
    labels = {name: i for i, name in enumerate(sentiment.LABELS)}
    word = seed_top_word(adapter)
    task = word_task(adapter, train["text"], train["label"].map(labels), test["text"], test["label"].map(labels), word,
                     n_train=120, n_heldout=100, n_maintain=120)
    return adapter, task, {"kind": "head", "k": 2, "editor": LocalizedFineTuning(steps=60, lr=3e-3, batch_groups=32),
                           "relearning": Relearning(steps=10, lr=3e-4, batch_size=32)}


def minilm_case() -> tuple[Any, Any, dict[str, Any]]:
    from twopath.datasets import sentiment
    from twopath.editing.section import PLANS
    from twopath.runtime.text import HFTextClassifier

    adapter = HFTextClassifier.from_pretrained(zoo.sentiment_model())
    train, test = sentiment.split(seed=0)
    adapter.background = list(test["text"].sample(64, random_state=0))
    labels = {name: i for i, name in enumerate(sentiment.LABELS)}
    plan = PLANS["sentiment"]
    task = word_task(adapter, train["text"], train["label"].map(labels), test["text"], test["label"].map(labels),
                     seed_top_word(adapter, "shap"), n_train=plan.n_train, n_heldout=plan.n_heldout,
                     n_maintain=plan.n_train, n_robust=plan.n_robust)
    return adapter, task, {"kind": plan.kind, "k": plan.k, "n_random": plan.n_random,
                           "editor": LocalizedFineTuning(**plan.editor), "relearning": Relearning(**plan.relearning)}


def seed_top_word(adapter: Any, method: str = "occlusion") -> str:
    """The seed sentence's top word by ``method`` (the word the model leans on, from the run)."""
    from twopath.attribution import ATTRIBUTION_METHODS
    from twopath.datasets import sentiment

    example = Example(sentiment.SEED_EXAMPLE_ID, sentiment.SEED_SENTENCE)
    predicted = adapter.labels[int(adapter.logits(adapter.inputs(example)).argmax())]
    attribution = ATTRIBUTION_METHODS.create(method).attribute(adapter, example, target=predicted)
    word = attribution.units[attribution.ranking()[0]]
    print(f"[text] the seed sentence's top word by {method}: {word!r}")
    return word


CASES = {"loan": (loan_case, "loan-mlp"), "hmda": (hmda_case, "hmda-mlp"), "text": (text_case, "sentiment-tiny-bert"),
         "minilm": (minilm_case, "sentiment-minilm")}


def run_case(name: str, out: Path | None) -> pd.DataFrame | None:
    build, prefix = CASES[name]
    if not _cached(prefix):
        print(f"\n[{name}] skipped: the reference model {prefix} is not cached (build it with twopath reproduce)")
        return None
    adapter, task, options = build()
    f1 = forward_seconds(adapter, Example("f1", task.heldout[0]))
    start = time.perf_counter()
    comparison = compare_localizations(adapter, task, **{"n_random": 3, **options})
    total = time.perf_counter() - start
    frame = comparison.summary()
    frame["localize_F1"] = frame["localize_seconds"] / f1
    frame["edit_F1"] = frame["edit_seconds"] / f1
    frame["edit_and_metrics_F1"] = frame["seconds"] / f1
    print(f"\n[{name}] {task.name} on {adapter.name} ({adapter.architecture}); budget {comparison.budget} parameters "
          f"({options['kind']}s); F1 = {f1 * 1e3:.3f} ms; whole table {total:.1f} s = {total / f1:,.0f} F1")
    columns = ["localization", "n_runs", "budget_matched", "n_parameters", "steps", "forget_gap", "flip_share",
               "heldout_accuracy", "heldout_auc", "agreement", *[c for c in frame if c.startswith("robust_gap")],
               "relearn_set_gap", "relearned_gap", "relearned_gap_sd", "localize_F1", "edit_F1", "edit_and_metrics_F1"]
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(frame[[c for c in columns if c in frame]].round(3).to_string(index=False))
    print("verdicts:", comparison.verdicts())
    if out is not None:
        from twopath.editing.report import write_edit_report

        write_edit_report(comparison, out / name, {"f1_seconds": f1, "total_seconds": total})
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="loan,hmda,text")
    parser.add_argument("--out", type=Path, default=None, help="write each case's edit report here")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TWOPATH_BENCH_THREADS", "1")))
    for name in args.cases.split(","):
        run_case(name.strip(), args.out)


if __name__ == "__main__":
    main()
