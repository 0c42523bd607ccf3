"""The house rules that keep the architecture visible: dependencies point one way."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "twopath"
LIBRARY = ("runtime", "attribution", "mechanistic", "comparisons", "reports", "datasets")


def _python_files(room: str) -> list[Path]:
    return sorted((SRC / room).rglob("*.py"))


def test_the_library_never_imports_the_seed_application():
    offenders = [str(p.relative_to(SRC)) for room in LIBRARY for p in _python_files(room)
                 if re.search(r"^\s*(from twopath\.seed|import twopath\.seed|from twopath import seed)", p.read_text(), re.M)]
    assert offenders == []


def test_methods_never_import_reports():
    offenders = [str(p.relative_to(SRC)) for room in ("attribution", "mechanistic", "runtime")
                 for p in _python_files(room) if "twopath.reports" in p.read_text()]
    assert offenders == []


def test_nothing_below_the_runtime_knows_hugging_face_classes():
    offenders = [str(p.relative_to(SRC)) for room in ("attribution", "mechanistic", "comparisons", "reports")
                 for p in _python_files(room) if re.search(r"from transformers|import transformers", p.read_text())]
    assert offenders == []


def test_modality_branches_stay_in_the_adapters():
    """Outside the runtime, ``modality`` is read only by the method registries' applicability
    checks and by LIME, whose text and tabular explainers are different algorithms."""
    allowed = {"attribution/base.py": 2, "mechanistic/base.py": 2, "attribution/lime_.py": 1}
    counts = {}
    for room in ("attribution", "mechanistic", "comparisons", "reports"):
        for path in _python_files(room):
            n = len(re.findall(r"\.modality\b", path.read_text()))
            if n:
                counts[str(path.relative_to(SRC))] = n
    assert counts == allowed
