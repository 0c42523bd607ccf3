"""The teaching notebooks run top to bottom, draw figures, and are committed without outputs.

Each notebook is executed with nbclient in a fresh ``python3`` kernel started from this
interpreter (the virtual environment), offline (``HF_HUB_OFFLINE=1``), with ``notebooks/`` as its
working directory. The small models they use are cached by ``twopath.seed.zoo``; on a machine
without the cache the first run trains them (about a minute).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ("01_sentiment_two_paths.ipynb", "02_loan_two_paths.ipynb", "03_course_exercises.ipynb",
             "04_agreement.ipynb")
KERNEL = "python3"


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory) -> Iterator[str]:
    """The name of a ``python3`` kernel spec, registering one in a temporary prefix if needed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pass
    else:
        yield KERNEL
        return
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("kernels")
    install(kernel_name=KERNEL, prefix=str(prefix))
    patch = pytest.MonkeyPatch()
    patch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    KernelSpecManager().get_kernel_spec(KERNEL)  # fails loudly if the registration did not work
    yield KERNEL
    patch.undo()


@pytest.fixture(autouse=True)
def _offline_kernel_env(monkeypatch) -> None:
    """The kernel inherits this process's environment: nothing may be downloaded."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("MPLBACKEND", "Agg")


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS_DIR / name, as_version=4)


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
    return found


def _has_png(nb: nbformat.NotebookNode) -> bool:
    return any("image/png" in output.get("data", {})
               for cell in nb.cells for output in cell.get("outputs", []))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    nb = _read(name)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{name}: cells {dirty} have outputs; run `python scripts/strip_notebooks.py`"


def test_exercise_solutions_are_marked() -> None:
    nb = _read("03_course_exercises.ipynb")
    tagged = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    headings = [c for c in nb.cells if c.cell_type == "markdown" and c.source.lstrip("# ").startswith("Solution")]
    assert tagged and len(headings) == 3


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name: str, kernel_name: str) -> None:
    from nbclient import NotebookClient

    nb = _read(name)
    client = NotebookClient(nb, timeout=600, kernel_name=kernel_name, allow_errors=True,
                            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    start = time.perf_counter()
    client.execute()
    print(f"{name}: executed in {time.perf_counter() - start:.1f} s")
    errors = _errors(nb)
    assert not errors, f"{name} raised:\n" + "\n".join(errors)
    assert _has_png(nb), f"{name} produced no figure (image/png output)"
