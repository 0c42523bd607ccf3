"""Saving an edited model: a new folder (safetensors + config) with a manifest of the edit.

The original model is never touched: the edit is applied to the in-memory model only while the
new folder is written, the folder is written under a temporary name next to the destination and
renamed when complete, and a destination that already holds files is refused. ``edit.json``
records the components, the exact parameter count, the objective's settings, the seed and the
metrics, so the edited model says what was done to it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twopath.editing.finetune import EditResult
from twopath.types import TwopathError

MANIFEST = "edit.json"


def check_destination(directory: str | Path) -> Path:
    path = Path(directory)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TwopathError(f"{path} already exists and is not an empty folder; the edited model needs a new one")
    return path


def _write_model(adapter: Any, work: Path) -> None:
    if hasattr(adapter, "save"):  # tabular: model.safetensors + twopath_tabular.json
        adapter.save(work)
        return
    adapter.model.save_pretrained(work, safe_serialization=True)
    adapter.tokenizer.save_pretrained(work)


def save_edited(adapter: Any, result: EditResult, directory: str | Path, metrics: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> Path:
    """Write the edited model and ``edit.json`` to ``directory`` (atomically; a new folder)."""
    target = check_destination(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with result.applied(adapter):
            _write_model(adapter, work)
        manifest = {"model": getattr(adapter, "name", None), "edit": result.to_dict(), "metrics": metrics or {},
                    **(extra or {})}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        if target.exists():
            target.rmdir()  # empty (checked above)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target
