"""The user's own dataset: a CSV, JSON Lines or Parquet table read into examples.

A text model takes one column of sentences (``--text-column``); a tabular model takes its
feature columns (``--row-columns``, by default the model's own feature names). An optional gold
label column (``--label-column``) must hold the model's label names (case-insensitive) or label
numbers; an optional id column names the examples (by default ``row-N``, N the 0-based row of
the file), and ids must be distinct — they key the store.

Everything about the *file* is checked up front, before any model loads, in one line each: an
unreadable file, an empty table, an unknown column, repeated ids, gold labels the model lacks.
A bad *cell* (an empty sentence, a missing feature value) is not a file error: that example is
recorded as failed, with its reason, and the rest of the run goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twopath.types import Example, TwopathError

READERS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def read_frame(path: str | Path, name: str = "--data") -> Any:
    """The table in ``path`` (by its suffix: .csv, .tsv, .jsonl/.ndjson, .parquet/.pq)."""
    import pandas as pd

    path = Path(path)
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise TwopathError(f"{name}: {path} has an unknown suffix {path.suffix!r}; expected one of {sorted(READERS)}")
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="\t" if kind == "tsv" else ",", keep_default_na=True)
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise TwopathError(f"{name}: {path} is empty") from None
    except ImportError:
        raise TwopathError(f"{name}: reading Parquet needs pyarrow: pip install pyarrow") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TwopathError(f"{name}: {path} is not a readable {kind.upper()} table ({first})") from None
    if len(frame) == 0:
        raise TwopathError(f"{name}: {path} has no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def check_columns(frame: Any, columns: Sequence[str], path: str | Path, option: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(list(frame.columns)[:12]) + (", ..." if len(frame.columns) > 12 else "")
        raise TwopathError(f"{option}: column(s) {missing} not in {path} (its columns: {shown})")


def gold_label(value: Any, labels: Sequence[str]) -> str | None:
    """A gold cell as one of ``labels`` (a name, case-insensitive, or an index), ``None`` if empty."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    lowered = [lab.lower() for lab in labels]
    text = str(value).strip()
    if text.lower() in lowered:
        return labels[lowered.index(text.lower())]
    number = text[:-2] if text.endswith(".0") else text  # 1.0 from a float column is label 1
    if number.isascii() and number.isdigit() and int(number) < len(labels):
        return labels[int(number)]
    raise ValueError(text)


@dataclass
class Dataset:
    """Examples read from the user's table: ids, raw inputs, gold labels and file rows."""

    examples: list[Example]
    rows: list[int]
    golds: list[str | None]
    columns: list[str]


def load_dataset(path: str | Path, *, modality: str, labels: Sequence[str], text_column: str | None = None,
                 row_columns: Sequence[str] | None = None, label_column: str | None = None,
                 id_column: str | None = None, limit: int | None = None) -> Dataset:
    """Read and check the table; ``labels`` are the model's (for the gold column)."""
    frame = read_frame(path)
    if modality == "text":
        if row_columns:
            raise TwopathError("--row-columns is for tabular models; a text model takes --text-column")
        if text_column is None:
            if "text" not in frame.columns:
                raise TwopathError(f"--text-column: give the column of sentences ({path} has no 'text' column; "
                                   f"its columns: {', '.join(list(frame.columns)[:12])})")
            text_column = "text"
        inputs = [text_column]
    else:
        if text_column is not None:
            raise TwopathError("--text-column is for text models; a tabular model takes --row-columns (its features)")
        inputs = list(row_columns or [])
    check_columns(frame, inputs, path, "--text-column" if modality == "text" else "--row-columns")
    if label_column is not None:
        check_columns(frame, [label_column], path, "--label-column")
    if id_column is not None:
        check_columns(frame, [id_column], path, "--id-column")
    if limit is not None:
        frame = frame.iloc[:limit]
    ids = [f"row-{i}" for i in range(len(frame))] if id_column is None else [str(v) for v in frame[id_column]]
    if len(set(ids)) != len(ids):
        dup = next(x for x in ids if ids.count(x) > 1)
        raise TwopathError(f"--id-column {id_column}: the id {dup!r} repeats; ids key the store and must be distinct")
    golds: list[str | None] = [None] * len(frame)
    if label_column is not None:
        golds = []
        for i, value in enumerate(frame[label_column]):
            try:
                golds.append(gold_label(value, labels))
            except ValueError:
                raise TwopathError(f"--label-column {label_column}: row {i} holds {str(value)!r}, which is not one of "
                                   f"the model's labels {list(labels)} (a name, or a number from 0)") from None
    if modality == "text":
        raws: list[Any] = ["" if _missing(v) else str(v) for v in frame[text_column]]
    else:
        raws = [{c: (None if _missing(r[c]) else r[c]) for c in inputs} for r in frame[inputs].to_dict(orient="records")]
    examples = [Example(eid, raw) for eid, raw in zip(ids, raws, strict=True)]
    return Dataset(examples, list(range(len(frame))), golds, inputs)


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, (str, list, dict)) and bool(pd.isna(value)))
