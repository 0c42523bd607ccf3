"""The neutral fallback background for a user's text model.

Mean ablation and resample ablation replace a component's activation by its average over a
*reference sample*. The right sample is text like the user's (``--background FILE``); when none
is given, twopath uses these 32 plain, opinion-free sentences about everyday things, so the
reference carries no sentiment, topic or label of its own. The report says which was used.
"""

from __future__ import annotations

from pathlib import Path

from twopath.types import TwopathError

NEUTRAL_SENTENCES: tuple[str, ...] = (
    "The meeting starts at nine in the morning.", "She put the keys on the table.",
    "The train leaves from the second platform.", "He opened the window and sat down.",
    "The report has four sections and an appendix.", "They moved the chairs into the hall.",
    "The shop is open from Monday to Saturday.", "A letter arrived for the neighbours.",
    "The bus stops near the library.", "We wrote the numbers on a sheet of paper.",
    "The box contains three cables and a manual.", "He walked to the end of the street.",
    "The kitchen is next to the dining room.", "The file was saved in the shared folder.",
    "Water boils at one hundred degrees.", "The garden has a fence on one side.",
    "She asked for a glass of water.", "The lecture covers chapters five and six.",
    "The car is parked behind the building.", "A new schedule was posted on the door.",
    "The river runs through the middle of town.", "They counted the boxes twice.",
    "The clock on the wall shows the time.", "He read the instructions before starting.",
    "The phone was charging on the desk.", "The form asks for a name and an address.",
    "The bridge connects the two parts of the city.", "She turned left at the corner.",
    "The printer is on the third floor.", "A map of the area hangs in the hallway.",
    "The package was delivered in the afternoon.", "The road is closed for repairs this week.",
)


def read_background(path: str | Path, limit: int = 256) -> list[str]:
    """Sentences for the reference sample: one per line of a text file, or the ``text`` column
    of a CSV / JSONL / Parquet file (blank lines dropped, at most ``limit``)."""
    path = Path(path)
    if not path.is_file():
        raise TwopathError(f"--background: no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".jsonl", ".parquet"):
        import pandas as pd

        try:
            frame = {".csv": pd.read_csv, ".parquet": pd.read_parquet}.get(suffix, lambda p: pd.read_json(p, lines=True))(path)
        except (ValueError, OSError, UnicodeDecodeError) as err:
            raise TwopathError(f"--background: cannot read {path}: {str(err).splitlines()[0]}") from None
        if "text" not in frame.columns:
            raise TwopathError(f"--background: {path} has no 'text' column (columns: {list(frame.columns)})")
        texts = [str(t) for t in frame["text"].dropna()]
    else:
        try:
            texts = path.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise TwopathError(f"--background: {path} is not UTF-8 text") from None
    texts = [t.strip() for t in texts if t.strip()][:limit]
    if not texts:
        raise TwopathError(f"--background: {path} holds no sentences")
    return texts
