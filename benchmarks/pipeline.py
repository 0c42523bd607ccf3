"""Pipeline benchmark: the wall time of whole runs and where it goes, beside issue #12's goals.

The methods are cheap; a run's time goes to what surrounds them (imports, model loading, the
sanity check, the seed claims, figures). This benchmark measures, for the current checkout:

* end to end, each in a fresh process as a user runs it: ``twopath --help``, an argument error,
  ``twopath explain`` on a tiny random BERT, ``twopath reproduce loan`` and ``reproduce
  sentiment`` on the seed examples (no dataset section): wall seconds and the CPU seconds of
  the process (user + system), with the goal beside each;
* per step, for the two seed examples, the report's own "where the time went" rows (the
  pipeline's :class:`~twopath.runtime.cost.StepClock`), and the cost table's sum of method
  seconds against the overhead around them, in F1 units (one batch-size-1 forward pass of the
  same model, measured in the same run).

On a busy machine wall time is inflated by the other jobs; CPU seconds are the steadier figure
(with 2 torch threads they can exceed wall). The dataset section's cost per example is
measured by ``benchmarks/evaluate.py``; attribution patching and the neuron sweep in F1 by
``benchmarks/mechanistic.py``. Run with ``make bench`` or ``python benchmarks/pipeline.py``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")

ROOT = Path(__file__).resolve().parents[1]
TWOPATH = [sys.executable, "-m", "twopath.cli"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], expect: int = 0) -> tuple[float, float]:
    """Wall and CPU seconds of ``twopath args`` in a fresh process."""
    cpu0, start = _children_cpu(), time.perf_counter()
    done = subprocess.run([*TWOPATH, *args], capture_output=True, text=True, cwd=ROOT)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu0
    if done.returncode != expect:
        raise SystemExit(f"twopath {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall, cpu


def tiny_bert(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import save_tiny

    return save_tiny("bert", folder / "tiny-bert")


def end_to_end(work: Path) -> list[tuple[str, float, float, str]]:
    from twopath.seed import zoo

    rows = []
    rows.append(("twopath --help", *run(["--help"]), "<= 0.3 s"))
    rows.append(("argument error (no such model folder)",
                 *run(["explain", "--model", str(work / "missing"), "--text", "x", "--out", str(work / "e")], expect=2),
                 "<= 0.5 s"))
    model = tiny_bert(work)
    rows.append(("explain, tiny random BERT (default methods)",
                 *run(["explain", "--model", str(model), "--text", "the movie was good fun", "--out", str(work / "tiny"), "-q"]),
                 "<= 10 s"))
    rows.append(("reproduce loan, seed example", *run(["reproduce", "loan", "--dataset-size", "0", "--no-edit",
                                                       "--out", str(work), "-q"]), "<= 10 s"))
    rows.append(("reproduce loan, seed example + edit section", *run(["reproduce", "loan", "--dataset-size", "0",
                                                                      "--out", str(work), "-q"]), "-"))
    if zoo.cached("sentiment-minilm", zoo.sentiment_model_key(0)) is not None:
        rows.append(("reproduce sentiment, seed example",
                     *run(["reproduce", "sentiment", "--dataset-size", "0", "--no-edit", "--out", str(work), "-q"]),
                     "<= 30 s"))
    else:
        print("(reproduce sentiment skipped: the fine-tuned MiniLM is not cached yet; `make demo` trains it)")
    return rows


def phases(task: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The seed example's step timings and cost table, run in this process (warm imports)."""
    from twopath.seed.tasks import run_task

    report = run_task(task, dataset_size=0, say=lambda _: None, edit=False)
    tables = report.examples[0].tables
    return tables["timings"], tables["costs"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = end_to_end(Path(tmp))
    print(f"\n{'run (fresh process)':48s} {'wall s':>8s} {'cpu s':>8s}  goal (wall, quiet 2-core machine)")
    for name, wall, cpu, goal in rows:
        print(f"{name:48s} {wall:8.2f} {cpu:8.2f}  {goal}")
    for task in ("loan", "sentiment"):
        try:
            timings, costs = phases(task)
        except Exception as err:  # the model may not be cached
            print(f"\n{task}: phases skipped ({err})")
            continue
        total = sum(r["seconds"] for r in timings)
        print(f"\n{task} seed example, in process: {total:.1f} s over {len(timings)} steps")
        for r in sorted(timings, key=lambda r: -r["seconds"])[:12]:
            print(f"  {r['step']:58s} {r['seconds']:7.2f} s  {r['seconds'] / total:5.1%}")
        f1 = next(r["seconds"] for r in costs if r["path"] == "reference")
        methods = sum(r["seconds"] for r in costs if r["path"] in ("input", "internal"))
        overhead = sum(r["seconds"] for r in costs if r["path"] == "overhead")
        print(f"  cost table: methods {methods:.2f} s = {methods / f1:,.0f} F1; around them {overhead:.2f} s "
              f"= {overhead / f1:,.0f} F1 (F1 = {f1 * 1e3:.2f} ms)")


if __name__ == "__main__":
    main()
