"""The per-example store of ``twopath evaluate``: sharded Parquet, a manifest, resumable.

A run over thousands of examples must survive an interruption and must never mix results made
with different settings. The store under ``--out`` is:

* ``manifest.json`` — what every result in the store was computed with: the model's content
  hash, the modality, the input columns, the methods and their settings, the background's hash
  and the run seed, and ``settings_hash`` over all of them. A run whose settings hash differs
  is refused in one line naming what differs;
* ``shards/part-…/`` — one folder per finished chunk of examples, holding one Parquet file per
  table (:data:`twopath.evaluation.TABLES`: examples, attributions, components, faithfulness,
  agreement), written in a hidden temporary folder and renamed into place, so a shard is
  complete or absent: an interrupted run loses at most the chunks in flight. Every row of the
  four per-unit tables names the label it explains (``target_kind``: ``predicted``, or ``gold``
  for the second explanation of an example whose gold label was not predicted; ``target``);
* ``summary.json``, ``report.md`` and ``examples.csv`` — the aggregate, rebuilt from the shards
  alone (no model needed), each written to a temporary file and renamed.

An example is done when its id and its input's content hash are in a shard; re-running the same
command skips those and computes the rest. The same id with a *different* input is refused
(the data changed under the store). Tables are read back in one fixed order (by row, then
within each example), so the store's content does not depend on which worker finished first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twopath.types import TwopathError

FORMAT = "twopath-evaluate/3"  # /2: rows carry target_kind (predicted or gold); /3: one random order, curve_k
MANIFEST = "manifest.json"
SHARDS = "shards"
OUTPUTS = ("summary.json", "report.md", "examples.csv", "run.json")


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    s, i, f = pa.string(), pa.int64(), pa.float64()
    metrics = [("aopc_deletion", f), ("aopc_insertion", f), ("comprehensiveness", f), ("sufficiency", f)]
    target = [("target_kind", s), ("target", s)]  # predicted, or gold (the second explanation)
    return {
        "examples": pa.schema([("example_id", s), ("row", i), ("input_hash", s), ("seed", i), ("gold", s),
                               ("gold_status", s), ("status", s), ("reason", s), ("predicted", s), ("probability", f),
                               ("n_units", i), ("top_unit", s), ("top_component", s), ("top_unit_drop", f),
                               ("top_component_drop", f)]),
        "attributions": pa.schema([("example_id", s), *target, ("method", s), ("unit_index", i), ("unit", s),
                                   ("score", f), ("rank", i)]),
        "components": pa.schema([("example_id", s), *target, ("method", s), ("component", s), ("effect", f),
                                 ("rank", i)]),
        "faithfulness": pa.schema([("example_id", s), *target, ("path", s), ("method", s), ("n_units", i),
                                   ("k20", i), *metrics, ("deletion_curve", pa.list_(f)),
                                   ("insertion_curve", pa.list_(f)), ("curve_k", pa.list_(i))]),
        "agreement": pa.schema([("example_id", s), *target, ("pair", s), ("spearman", f)]),
    }


def require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise TwopathError("twopath evaluate stores results as Parquet and needs pyarrow: pip install pyarrow") from None


def _normal(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as JSON would give them back (tuples as lists), so a reread manifest compares equal."""
    return dict(json.loads(json.dumps({"format": FORMAT, **settings}, sort_keys=True, default=str)))


def settings_hash(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_hash(directory: str | Path) -> str:
    """Content hash of a model folder's files (names and bytes; sub-folders ignored)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        digest.update(path.name.encode() + b"\x00")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def check_store_folder(out: str | Path) -> Path:
    """``--out``: new, empty, or a previous evaluate store (anything else is refused)."""
    out = Path(out)
    if out.is_symlink():
        raise TwopathError(f"--out {out} is a symbolic link; give the folder itself")
    if out.exists():
        if not out.is_dir():
            raise TwopathError(f"--out {out} is a file, not a folder")
        names = sorted(p.name for p in out.iterdir())
        if names and MANIFEST not in names:
            listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise TwopathError(f"--out {out} holds files that are not a twopath evaluate store ({listed}); "
                               "give a new or empty folder, or the folder of a previous evaluate run")
        if not os.access(out, os.W_OK | os.X_OK):
            raise TwopathError(f"--out {out} is not writable")
        return out
    existing = out.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise TwopathError(f"--out {out}: cannot create it in {existing}")
    return out


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store:
    """The store folder: open it with :meth:`open` (creates or checks the manifest)."""

    def __init__(self, root: Path, manifest: dict[str, Any]):
        self.root = root
        self.manifest = manifest

    @staticmethod
    def check(root: str | Path, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """The existing manifest at ``root`` if it holds ``settings`` (``None``: no store yet);
        a store made with other settings is one line naming what differs. Writes nothing."""
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            return None
        try:
            found = json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise TwopathError(f"{path} is not a readable manifest ({err}); give another --out") from None
        wanted = _normal(settings)
        if not isinstance(found, dict) or found.get("settings_hash") != settings_hash(wanted):
            old: dict[str, Any] = {}
            if isinstance(found, dict) and isinstance(found.get("settings"), dict):
                old = found["settings"]
            differ = sorted(k for k in set(old) | set(wanted) if old.get(k) != wanted.get(k))
            raise TwopathError(f"--out {root} holds results made with other settings (they differ in "
                               f"{', '.join(differ) or 'the format'}); results with different settings never mix: "
                               "give another --out or delete that folder")
        return found

    @classmethod
    def open(cls, root: str | Path, settings: Mapping[str, Any]) -> Store:
        """The store for ``settings`` at ``root``: the existing one if its manifest holds the
        same settings (otherwise one line naming what differs), or a new one."""
        require_pyarrow()
        root = Path(root)
        found = cls.check(root, settings)
        if found is not None:
            return cls(root, found)
        wanted = _normal(settings)
        manifest = {"format": FORMAT, "settings_hash": settings_hash(wanted), "settings": wanted}
        root.mkdir(parents=True, exist_ok=True)
        write_atomic(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        return cls(root, manifest)

    @classmethod
    def existing(cls, root: str | Path) -> Store:
        """An existing store, read-only use (rebuilding the report from the store alone)."""
        require_pyarrow()
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise TwopathError(f"{root} is not a twopath evaluate store (no {MANIFEST})")
        return cls(root, json.loads(path.read_text("utf-8")))

    # --- shards ------------------------------------------------------------------------------

    def shard_dirs(self) -> list[Path]:
        folder = self.root / SHARDS
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("part-"))

    def done(self) -> dict[str, str]:
        """Example id -> input hash of every example in a finished shard."""
        import pyarrow.parquet as pq

        out: dict[str, str] = {}
        for shard in self.shard_dirs():
            table = pq.read_table(shard / "examples.parquet", columns=["example_id", "input_hash"])
            out.update(zip(table.column("example_id").to_pylist(), table.column("input_hash").to_pylist(), strict=True))
        return out

    def write_shard(self, tables: Mapping[str, Any]) -> Path:
        """Write one chunk's tables (DataFrames) as a new shard, atomically (a folder rename)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        examples = tables["examples"]
        if len(examples) == 0:
            raise ValueError("an empty shard")
        ids = "\x00".join(str(x) for x in examples["example_id"])
        name = f"part-{int(examples['row'].min()):09d}-{hashlib.sha256(ids.encode()).hexdigest()[:10]}"
        folder = self.root / SHARDS
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / name
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            for table_name, schema in _schemas().items():
                frame = tables[table_name]
                table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
                pq.write_table(table, tmp / f"{table_name}.parquet")
            if final.exists():  # the same chunk finished twice (a retried task): keep one copy
                shutil.rmtree(tmp)
            else:
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def clean_partial(self) -> None:
        """Remove temporary shard folders an interrupted run left behind."""
        folder = self.root / SHARDS
        if folder.is_dir():
            for p in folder.iterdir():
                if p.name.startswith(".tmp-"):
                    shutil.rmtree(p, ignore_errors=True)

    def read(self) -> dict[str, Any]:
        """Every table of the store as one DataFrame, in the fixed order of
        :func:`twopath.evaluation.ordered` (independent of shard layout and finishing order)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from twopath.evaluation import ordered

        schemas = _schemas()
        frames = {}
        shards = self.shard_dirs()
        for name, schema in schemas.items():
            parts = [pq.read_table(s / f"{name}.parquet", schema=schema) for s in shards]
            table = pa.concat_tables(parts) if parts else schema.empty_table()
            frames[name] = table.to_pandas()
        return ordered(frames)


def pending(ids: Sequence[str], hashes: Sequence[str], done: Mapping[str, str]) -> list[int]:
    """Positions of the examples still to compute; refuses an id whose input changed."""
    changed = [i for i, (eid, h) in enumerate(zip(ids, hashes, strict=True)) if eid in done and done[eid] != h]
    if changed:
        eid = ids[changed[0]]
        raise TwopathError(f"the data changed under the store: example {eid!r} (and {len(changed) - 1} more) is in "
                           "the store with another input; give another --out")
    return [i for i, eid in enumerate(ids) if eid not in done]
