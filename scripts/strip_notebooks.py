"""Remove outputs and execution counts from the teaching notebooks, so git stores only sources.

Usage::

    python scripts/strip_notebooks.py            # strips notebooks/*.ipynb in place
    python scripts/strip_notebooks.py --check    # exit 1 if any notebook still has outputs
    python scripts/strip_notebooks.py path/to/a.ipynb ...

Cell sources and cell metadata (e.g. the ``solution`` tags of the exercises) are kept; transient
per-run metadata is dropped: cell ``execution`` timings, ``collapsed`` and ``scrolled`` flags,
widget state, and the kernel's ``language_info`` details (Python version, lexer), of which only
the language name is kept. A file is rewritten only if stripping changed it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TRANSIENT_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(nb: nbformat.NotebookNode) -> bool:
    """Strip ``nb`` in place; return whether anything was removed."""
    changed = False
    if "widgets" in nb.metadata:
        del nb.metadata["widgets"]
        changed = True
    info = nb.metadata.get("language_info")
    if info is not None and set(info) - {"name"}:
        nb.metadata["language_info"] = {"name": info.get("name", "python")}
        changed = True
    for cell in nb.cells:
        for key in TRANSIENT_METADATA:
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
        if cell.cell_type != "code":
            continue
        if cell.outputs:
            cell.outputs = []
            changed = True
        if cell.execution_count is not None:
            cell.execution_count = None
            changed = True
    return changed


def has_outputs(nb: nbformat.NotebookNode) -> bool:
    return any(cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None) for cell in nb.cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="only report notebooks with outputs; exit 1 if any")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if args.check:
            if has_outputs(nb):
                dirty.append(path)
            continue
        if strip(nb):
            nbformat.validate(nb)
            nbformat.write(nb, path)
            print(f"stripped {path}")
    if dirty:
        print("notebooks with outputs: " + ", ".join(str(p) for p in dirty))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
