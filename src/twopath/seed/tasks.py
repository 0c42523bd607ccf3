"""The reference tasks: the seed sentence on MiniLM and the seed applicant on the loan MLP.

Each task loads (or trains once) its reference model, sets the adapter's background sample
(held-out sentences or training applicants, used by mean ablation, tabular SHAP, LIME and IG),
runs :func:`twopath.pipeline.explain` on the seed example and returns a :class:`Report`.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from twopath import __version__
from twopath.pipeline import Say, explain
from twopath.types import Attribution, Example, Report, TwopathError

#: ``progress(done, total[, what])``: a loop's progress; ``what`` names the loop (the bar's label)
Progress = Callable[..., None]
TASKS = ("sentiment", "loan", "hmda", "sentiment-gpt2", "agreement")


def _versions() -> dict[str, str]:
    """The versions that decide the numbers."""
    from twopath.seed.zoo import installed_versions

    return {"python": platform.python_version(), "twopath": __version__,
            **installed_versions("torch", "transformers", "shap", "captum", "lime", "scikit-learn")}


def reproducibility(seed: int, manifest: dict[str, Any]) -> dict[str, Any]:
    return {"seed": seed, "versions": _versions(), "model_key": manifest.get("key"),
            "data_hash": manifest.get("data_hash"), "command": " ".join(["twopath", *sys.argv[1:]])}


def text_counterfactual(adapter: Any) -> Callable[[Example, Attribution], Example | None]:
    """Swap the input path's top word for a learned opposite-polarity word of equal token length."""
    from twopath.datasets.counterfactuals import swap_sentiment_word

    def make(example: Example, attribution: Attribution) -> Example | None:
        positive = [lab.lower() for lab in adapter.labels].index("positive") if "positive" in [lab.lower() for lab in adapter.labels] else None
        if positive is None:
            return None
        toward_positive = adapter.label_index(example.target) == positive
        # scores are toward the target already: the most supporting words come first
        prefer = [attribution.units[i] for i in sorted(range(len(attribution.units)), key=lambda i: -attribution.scores[i])]
        n_tokens = lambda word: len(adapter.tokenizer.tokenize(" " + word))  # noqa: E731
        swap = swap_sentiment_word(str(example.raw), toward_positive, n_tokens, prefer=prefer)
        if swap is None:
            return None
        text, old, new = swap
        if adapter.encode(text).n_tokens != adapter.encode(str(example.raw)).n_tokens:
            return None
        return Example(f"{example.id}-corrupted", text, example.target)

    return make


DATASET_SIZE = {"sentiment": 200, "loan": 500, "hmda": 200}


def _dataset(adapter: Any, examples: list[Example], seed: int, say: Say, progress: Progress | None) -> dict[str, Any]:
    from twopath.evaluation import dataset_summary

    say(f"both paths over {len(examples)} held-out examples")
    return dataset_summary(adapter, examples, seed=seed, progress=progress)


def _labelled(progress: Progress | None, what: str) -> Callable[[int, int], None] | None:
    """``progress`` for a loop of ``what`` (the bar's label), if the display takes labels."""
    if progress is None:
        return None
    return lambda done, total: progress(done, total, what)


def _sentiment_models() -> dict[str, tuple[str, Callable[..., Any], str]]:
    from twopath.seed import decoder, zoo

    return {
        "minilm": ("sentiment", zoo.sentiment_model, "MiniLM-L6 fine-tuned on Rotten Tomatoes"),
        "gpt2": ("sentiment-gpt2", decoder.sentiment_decoder_model,
                 "GPT-2-style decoder (4 layers x 4 heads) trained from scratch on Rotten Tomatoes"),
    }


def sentiment(seed: int = 0, say: Say = print, text: str | None = None, dataset_size: int | None = None,
              progress: Progress | None = None, model: str = "minilm", edit: bool = False) -> Report:
    """The seed sentence (or ``text``) on a sentiment model: ``minilm`` (the encoder of the seed
    example) or ``gpt2`` (the reference decoder). On the seed sentence both paths explain the
    seed's decision, *positive*, whatever the model predicts; the report says when they differ.
    ``edit``: also unlearn the sentence's top word by localized fine-tuning (``report.edit``)."""
    from twopath.datasets import sentiment as data
    from twopath.runtime.text import HFTextClassifier
    from twopath.seed import zoo

    task, train, name = _sentiment_models()[model]
    path = train(say=say, progress=_labelled(progress, "fine-tune steps"))
    manifest = zoo.read_manifest(path)
    adapter = HFTextClassifier.from_pretrained(path, name=name)
    train_split, test = data.split(seed=0)
    adapter.background = list(test["text"].sample(64, random_state=seed))
    example = Example(data.SEED_EXAMPLE_ID, text or data.SEED_SENTENCE, None if text else "positive")
    methods = None
    if "linear_residual" in adapter.capabilities():  # a decoder: read its residual stream too
        from twopath.pipeline import DEFAULT_MECHANISTIC

        methods = [*DEFAULT_MECHANISTIC["text"], "logit_lens", "direct_logit_attribution", "direct_effect"]
    result = explain(adapter, example, corrupted=text_counterfactual(adapter), seed=seed, say=say,
                     mechanistic_methods=methods)
    if result.prediction["label"] != result.target:
        result.notes.append(
            f"the model reads the sentence as {result.prediction['label']} (p = {result.prediction['probability']:.3f}); "
            f"both paths explain the seed's decision, {result.target} (p = {result.prediction['target_probability']:.3f})")
    if result.target == "positive":
        from twopath.datasets.counterfactuals import sentiment_lexicon
        from twopath.seed.findings import sentiment_findings

        say("measuring the seed's claims")
        texts = list(test["text"].sample(200, random_state=seed + 1))
        findings = sentiment_findings(adapter, result, texts, sentiment_lexicon(), seed=seed)
        result.tables["claims"] = findings["claims"]
        result.tables["mechanisms"] = findings["mechanisms"]
        if methods is not None:  # the decoder: what its residual stream says about who writes the decision
            result.tables["claims"] = [*findings["claims"], *_residual_claims(result, findings["claims"])]
    else:
        result.notes.append("the model does not read the sentence as positive; the seed's claims were not measured")
    described = {**adapter.describe(), "accuracy": manifest.get("accuracy"),
                 "trained_from": manifest.get("base") or "scratch"}
    report = Report(task, described, [result], reproducibility(seed, manifest))
    n = DATASET_SIZE["sentiment"] if dataset_size is None else dataset_size
    if n > 0:
        pool = test[~test["text"].isin(adapter.background)]
        texts = list(pool["text"].sample(min(n, len(pool)), random_state=seed + 2))
        report.dataset = _dataset(adapter, [Example(f"test-{i}", t) for i, t in enumerate(texts)], seed, say, progress)
    if edit:
        from twopath.editing.section import word_section

        say("editing: unlearning the seed sentence's top word at one budget per localization")
        report.edit = word_section(adapter, result, train_split, test, seed=seed,
                                   progress=_labelled(progress, "edits"))
    return report


def _residual_claims(result: Any, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DLA and direct-vs-total claims, naming the head the sentiment-tracking claim named."""
    import re

    from twopath.seed.claims import residual_claims

    named = next((m.group(1) for c in found if (m := re.search(r"named head (L\d+H\d+)", c["measured"]))), None)
    return [c.to_dict() for c in residual_claims(result, named)]


def loan(seed: int = 0, say: Say = print, dataset_size: int | None = None, progress: Progress | None = None,
         edit: bool = False) -> Report:
    from twopath.datasets import loan as data
    from twopath.runtime.tabular import TorchTabularClassifier
    from twopath.seed import zoo

    path = zoo.loan_model(say=say)
    manifest = zoo.read_manifest(path)
    adapter = TorchTabularClassifier.load(path)
    adapter.name = "loan MLP (synthetic applicants)"
    train, _ = data.split(seed=0)
    adapter.background = train.sample(200, random_state=seed)[list(data.FEATURES)]
    example = Example(data.SEED_EXAMPLE_ID, data.SEED_APPLICANT)
    contrast = Example("loan-contrast", data.CONTRAST_APPLICANT)
    result = explain(adapter, example, corrupted=contrast, seed=seed, say=say)
    if result.prediction["label"] != "approved":
        result.notes.append("the model does not approve the seed applicant")
    from twopath.seed.findings import loan_findings

    say("measuring the seed's claims")
    findings = loan_findings(adapter, result, train.sample(500, random_state=seed + 1)[list(data.FEATURES)], seed=seed)
    result.tables["claims"] = findings["claims"]
    result.tables["mechanisms"] = findings["mechanisms"]
    model = {**adapter.describe(), "accuracy": manifest.get("accuracy"), "auc": manifest.get("auc")}
    report = Report("loan", model, [result], reproducibility(seed, manifest))
    n = DATASET_SIZE["loan"] if dataset_size is None else dataset_size
    if n > 0:
        _, test = data.split(seed=0)
        rows = test.sample(min(n, len(test)), random_state=seed + 2)[list(data.FEATURES)].to_dict(orient="records")
        report.dataset = _dataset(adapter, [Example(f"test-{i}", r) for i, r in enumerate(rows)], seed, say, progress)
    if edit:
        from twopath.editing.section import loan_section

        say("editing: credit scores 720 vs 600, one budget per localization")
        report.edit = loan_section(adapter, *data.split(seed=0), seed=seed, progress=_labelled(progress, "edits"))
    return report


def hmda(seed: int = 0, say: Say = print, dataset_size: int | None = None, progress: Progress | None = None,
         edit: bool = False) -> Report:
    from twopath.datasets import loan as data
    from twopath.runtime.tabular import TorchTabularClassifier
    from twopath.seed import zoo

    path = zoo.hmda_model(say=say)
    manifest = zoo.read_manifest(path)
    adapter = TorchTabularClassifier.load(path)
    adapter.name = "HMDA Boston MLP"
    frame = data.load_hmda()
    features = list(data.HMDA_FEATURES)
    adapter.background = frame.sample(200, random_state=seed)[features]
    approved_p = adapter.predict_proba(frame[features])[:, 1]
    # the example: the first applicant approved in the data and by the model; the contrast: the
    # most similar applicant (standardized distance) whom the model denies
    idx = int(np.flatnonzero((frame["approve"].to_numpy() == 1) & (approved_p > 0.5))[0])
    denied = np.flatnonzero(approved_p < 0.5)
    if len(denied) == 0:
        raise TwopathError("the HMDA model denies no applicant; there is no contrast to patch from")
    z = (frame[features] - frame[features].mean()) / frame[features].std()
    distances = np.linalg.norm(z.to_numpy()[denied] - z.to_numpy()[idx], axis=1)
    other = int(denied[np.argmin(distances)])
    example = Example(f"hmda-row-{idx}", {f: float(frame.iloc[idx][f]) for f in features})
    contrast = Example(f"hmda-row-{other}", {f: float(frame.iloc[other][f]) for f in features})
    result = explain(adapter, example, corrupted=contrast, seed=seed, say=say,
                     settings={"shap": {"algorithm": "permutation", "max_evals": 2000}})
    model = {**adapter.describe(), "accuracy": manifest.get("accuracy"), "auc": manifest.get("auc"),
             "majority_baseline": manifest.get("majority_baseline")}
    report = Report("hmda", model, [result], reproducibility(seed, manifest))
    n = DATASET_SIZE["hmda"] if dataset_size is None else dataset_size
    if n > 0:
        rows = frame.drop(index=[idx, other]).sample(min(n, len(frame) - 2), random_state=seed + 2)[features].to_dict(orient="records")
        report.dataset = _dataset(adapter, [Example(f"row-{i}", r) for i, r in enumerate(rows)], seed, say, progress)
    if edit:
        from twopath.editing.section import hmda_section

        say("editing: removing the white pathway, one budget per localization")
        report.edit = hmda_section(adapter, frame, seed=seed, progress=_labelled(progress, "edits"))
    return report


def read_table(path: Any, adapter: Any) -> Any:
    """A user's CSV with the model's features, validated (one-line errors)."""
    from pathlib import Path

    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise TwopathError(f"data file does not exist: {path}")
    try:
        frame = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as err:
        raise TwopathError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    if frame.empty:
        raise TwopathError(f"{path}: the table has no rows")
    return adapter.frame(frame).reset_index(drop=True)


def nearest_contrast(adapter: Any, frame: Any, row: int) -> int | None:
    """The most similar row (standardized distance) that the model labels differently."""
    labels = adapter.predict_proba(frame).argmax(1)
    others = np.flatnonzero(labels != labels[row])
    if len(others) == 0:
        return None
    z = adapter.transform(frame).numpy()
    return int(others[np.argmin(np.linalg.norm(z[others] - z[row], axis=1))])


def run_task(name: str, seed: int = 0, say: Say = print, dataset_size: int | None = None,
             progress: Progress | None = None, edit: bool | None = False) -> Report:
    """Run a reference task; ``edit`` adds the localized-edit section (``None``: the task's
    default as ``twopath reproduce`` runs it, :data:`twopath.editing.section.EDIT_BY_DEFAULT`; tasks without one refuse ``True``)."""
    from twopath.editing.section import EDIT_BY_DEFAULT
    from twopath.seed.agreement import agreement_task

    runners: dict[str, Callable[..., Report]] = {"sentiment": sentiment, "loan": loan, "hmda": hmda,
                                                 "sentiment-gpt2": partial(sentiment, model="gpt2"),
                                                 "agreement": agreement_task}
    if name not in runners:
        raise TwopathError(f"unknown task {name!r}; expected one of {list(TASKS)} or all")
    if edit and name not in EDIT_BY_DEFAULT:
        raise TwopathError(f"the {name} task has no edit section (tasks with one: {', '.join(EDIT_BY_DEFAULT)})")
    options = {"edit": EDIT_BY_DEFAULT[name] if edit is None else edit} if name in EDIT_BY_DEFAULT else {}
    return runners[name](seed=seed, say=say, dataset_size=dataset_size, progress=progress, **options)
