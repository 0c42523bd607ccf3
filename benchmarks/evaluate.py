"""Dataset benchmark: ``twopath evaluate``'s per-example cost and its throughput on each engine.

For held-out sentences on MiniLM-L6 and held-out applicants on the loan MLP, the dataset
pipeline (:func:`twopath.evaluation.evaluate_example`) runs through the same engines as
``twopath evaluate`` — local in this process, a local process pool, Ray — with 1 and 2 workers
of one torch thread each, each writing its own store. It prints, per model and engine:

* **per-example cost** in F1 (one batch-size-1 forward pass of the same model on a typical
  example, measured in the same run, one thread) and in seconds: the workers' compute time per
  example, without start-up;
* the part of it spent **outside the model's forward passes** (``run``, ``run_embedded``,
  ``resume``): Python — tokenizing, masking, shap's bookkeeping, curves — and the backward
  passes of the gradient methods, per example, in F1;
* **throughput**: examples per second over the whole run, start-up included, and the speed-up
  of 2 workers over 1;
* whether every store holds **the same numbers** as the in-process one (they must).

Sizes: ``TWOPATH_BENCH_SENTENCES`` (default 6) and ``TWOPATH_BENCH_APPLICANTS`` (default 500;
the issue's reference sizes are 200 and 1,000 — the 200 sentences take about an hour of one
core per engine and worker count); the defaults are meant to finish in about three minutes on
an idle 2-core machine. Each worker's CPU seconds beside its busy wall
seconds, and the load average after every run, say whether the workers had their cores: on a
shared machine the speed-up of 2 workers measures the load, not the engine. ``TWOPATH_BENCH_ENGINES`` picks the engines
(default ``local,ray``). Without the fine-tuned MiniLM in the cache the base MiniLM with a fresh
classification head is timed instead (same cost, the printout says so); nothing is trained.
Run with ``make bench`` or ``python benchmarks/evaluate.py``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from twopath.datasets import engines  # noqa: E402
from twopath.datasets.store import Store  # noqa: E402
from twopath.evaluation import DATASET_METHODS, TABLES, example_seed  # noqa: E402
from twopath.runtime.cost import forward_seconds  # noqa: E402
from twopath.types import Example  # noqa: E402

SEED = 0


# --- the models and the examples ------------------------------------------------------------------


def sentiment_model(work: Path) -> tuple[str, str]:
    """(model folder, description): the cached fine-tuned MiniLM, else the base with a new head."""
    from twopath.seed import zoo

    cached = zoo.cached("sentiment-minilm", zoo.sentiment_model_key(0))
    if cached is not None:
        return str(cached), "MiniLM-L6 fine-tuned (cached)"
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    base = zoo.minilm_path()
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, attn_implementation="eager", id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1})
    model.save_pretrained(work / "minilm")
    AutoTokenizer.from_pretrained(base).save_pretrained(work / "minilm")
    return str(work / "minilm"), "MiniLM-L6 base with a fresh head (not cached: same cost, other numbers)"


def loan_model(work: Path) -> tuple[str, str]:
    from twopath.seed import zoo

    cached = sorted(p for p in zoo.cache_dir().glob("loan-mlp-*") if (p / "manifest.json").is_file()
                    and (p / "model.safetensors").is_file())
    if cached:
        return str(cached[0]), "loan MLP 6 x 32 (cached)"
    from twopath.datasets import loan
    from twopath.runtime.tabular import TorchTabularClassifier, build_mlp, fitted_preprocessor

    frame = loan.generate(2000, seed=0)
    categories = {"employment_type": tuple(loan.EMPLOYMENT_TYPES)}
    numeric = [f for f in loan.FEATURES if f not in categories]
    pre = fitted_preprocessor(numeric, categories, list(frame[numeric].mean()), list(frame[numeric].std()))
    torch.manual_seed(0)
    n_in = len(numeric) + len(loan.EMPLOYMENT_TYPES)
    TorchTabularClassifier(build_mlp(n_in, [32] * 6), pre, loan.FEATURES, categories, ("denied", "approved"),
                           "loan").save(work / "loan")
    return str(work / "loan"), "loan-shaped MLP 6 x 32, random weights (not cached: same cost)"


def sentences(n: int) -> tuple[list[Example], list[str]]:
    from twopath.datasets import sentiment

    _, test = sentiment.split(seed=0)
    background = list(test["text"].sample(64, random_state=SEED))
    pool = test[~test["text"].isin(background)]
    texts = list(pool["text"].sample(n, random_state=SEED + 2))
    return [Example(f"test-{i}", t) for i, t in enumerate(texts)], background


def applicants(n: int) -> tuple[list[Example], list[dict[str, Any]]]:
    from twopath.datasets import loan

    train, test = loan.split(seed=0)
    features = list(loan.FEATURES)
    background = train.sample(200, random_state=SEED)[features].to_dict(orient="records")
    rows = test.sample(min(n, len(test)), random_state=SEED + 2)[features].to_dict(orient="records")
    return [Example(f"test-{i}", r) for i, r in enumerate(rows)], background


# --- one run ---------------------------------------------------------------------------------------


class Timed(engines.Worker):
    """A worker that also reports, per chunk, its compute seconds (wall and this process's CPU),
    the seconds inside forward passes, its process id and when the chunk started and ended."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.model_seconds = 0.0
        for name in ("run", "run_embedded", "resume"):  # every forward pass goes through one of these
            setattr(self.adapter, name, self._timed(getattr(self.adapter, name)))  # this adapter only

    def _timed(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.model_seconds += time.perf_counter() - start

        return timed

    def run(self, chunk: engines.Chunk) -> engines.Tables:
        self.model_seconds = 0.0
        began, start, cpu = time.time(), time.perf_counter(), time.process_time()
        tables = super().run(chunk)
        # extra keys are not written to the store
        tables["bench"] = {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                           "model_seconds": self.model_seconds, "pid": os.getpid(), "began": began,
                           "ended": time.time()}
        return tables


def one_run(engine: str, workers: int, spec: engines.ModelSpec, examples: list[Example], root: Path) -> dict[str, Any]:
    """One engine run into its own store: wall (start-up included), the workers' chunk timings,
    the driver's CPU seconds (receiving results, writing shards) and the load average after."""
    job = engines.Job(tuple(DATASET_METHODS), SEED, {})
    store = Store.open(root / f"{engine}-{workers}", {"benchmark": engine, "workers": workers})
    items = [(i, e, None) for i, e in enumerate(examples)]
    work = engines.chunks(items, engines.chunk_size(len(items), workers))
    chunks: list[dict[str, Any]] = []

    def on_chunk(tables: engines.Tables) -> None:
        store.write_shard(tables)
        chunks.append(tables.pop("bench"))

    start, cpu = time.perf_counter(), time.process_time()
    engines.run(engine, spec, job, work, workers, on_chunk, worker=Timed)
    wall, driver = time.perf_counter() - start, time.process_time() - cpu
    per_worker: dict[int, dict[str, float]] = {}
    for c in chunks:
        w = per_worker.setdefault(c["pid"], {"cpu": 0.0, "busy": 0.0, "examples": 0})
        w["cpu"] += c["cpu"]
        w["busy"] += c["seconds"]
    span = max(c["ended"] for c in chunks) - min(c["began"] for c in chunks)
    return {"wall": wall, "span": span, "compute": sum(c["seconds"] for c in chunks),
            "model": sum(c["model_seconds"] for c in chunks), "workers": per_worker,
            "driver_cpu": driver, "load": os.getloadavg()[0], "tables": store.read()}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for name in TABLES:
        x, y = a[name], b[name]
        if list(x.columns) != list(y.columns) or len(x) != len(y):
            return False
        for column in x.columns:
            left, right = x[column].tolist(), y[column].tolist()
            if any(not _equal(p, q) for p, q in zip(left, right, strict=True)):
                return False
    return True


def _equal(p: Any, q: Any) -> bool:
    if isinstance(p, np.ndarray) or isinstance(q, np.ndarray):
        return bool(np.array_equal(np.asarray(p), np.asarray(q)))
    if isinstance(p, float) and isinstance(q, float) and np.isnan(p) and np.isnan(q):
        return True
    return bool(p == q)


def bench(name: str, spec: engines.ModelSpec, examples: list[Example], root: Path, engine_names: list[str]) -> None:
    torch.set_num_threads(1)
    adapter = spec.open()
    print(f"\n{name}: {len(examples)} examples, F1 = {forward_seconds(adapter, examples[0]) * 1e3:.2f} ms "
          f"(batch-size-1 forward, 1 thread, measured again around every run); load average {os.getloadavg()[0]:.1f}")
    print("  cost/example: the workers' compute seconds per example (no start-up), in F1; outside fwd: the part "
          "outside forward passes;\n  examples/s: over the whole run (start-up included) | steady: from the first "
          "chunk's start to the last one's end;\n  worker CPU: each worker's CPU seconds / its busy wall seconds "
          "(< 1: it waited for a core); driver CPU: the driver's seconds (results, shard writes)")
    print(f"{'engine':<7}{'workers':>8}{'cost/ex (F1)':>13}{'outside fwd':>12}{'s/example':>10}{'examples/s':>11}"
          f"{'steady':>8}{'speed-up':>10}{'speed-up steady':>16}{'worker CPU / busy':>22}{'driver CPU':>11}"
          f"{'load':>6}{'same':>6}", flush=True)
    reference = None
    one: dict[str, tuple[float, float]] = {}
    ratios: dict[str, tuple[float, float]] = {}
    for engine in engine_names:
        for workers in (1, 2):
            before = forward_seconds(adapter, examples[0])
            result = one_run(engine, workers, spec, examples, root / name)
            f1 = (before + forward_seconds(adapter, examples[0])) / 2
            n = len(examples)
            per = result["compute"] / n
            python = (result["compute"] - result["model"]) / n
            rate, steady = n / result["wall"], n / result["span"]
            if workers == 1:
                one[engine] = (rate, steady)
            else:
                ratios[engine] = (rate / one[engine][0], steady / one[engine][1])
            reference = reference or result["tables"]
            speedup = f"{rate / one[engine][0]:.2f}x" if workers == 2 else ""
            speedup_steady = f"{steady / one[engine][1]:.2f}x" if workers == 2 else ""
            cpu = " ".join(f"{w['cpu']:.0f}/{w['busy']:.0f}s" for w in result["workers"].values())
            print(f"{engine:<7}{workers:>8}{per / f1:>13.1f}{python / f1:>12.1f}{per:>10.3f}{rate:>11.2f}"
                  f"{steady:>8.2f}{speedup:>10}{speedup_steady:>16}{cpu:>22}{result['driver_cpu']:>10.1f}s"
                  f"{result['load']:>6.1f}{'yes' if same(reference, result['tables']) else 'NO':>6}", flush=True)
    for engine, (whole, steady) in ratios.items():
        print(f"  => {name}, {engine}: 2 workers / 1 worker = {whole:.2f}x over the whole run, {steady:.2f}x "
              f"steady (goal >= 1.7x on 2 idle cores; load average now {os.getloadavg()[0]:.1f})")


def main() -> None:
    n_text = int(os.environ.get("TWOPATH_BENCH_SENTENCES", "6"))
    n_tab = int(os.environ.get("TWOPATH_BENCH_APPLICANTS", "500"))
    engine_names = [e.strip() for e in os.environ.get("TWOPATH_BENCH_ENGINES", "local,ray").split(",") if e.strip()]
    if "ray" in engine_names:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("Ray is not installed (pip install 'twopath[ray]'): the local engine only")
            engine_names = [e for e in engine_names if e != "ray"]
    print(f"twopath evaluate benchmark: methods {', '.join(DATASET_METHODS)} + the ablation ranking; "
          f"{os.cpu_count()} CPUs, one torch thread per worker; example seeds e.g. {example_seed(SEED, 'test-0')}")
    with tempfile.TemporaryDirectory(prefix="twopath-bench-") as tmp:
        root = Path(tmp)
        if n_tab > 0:
            path, about = loan_model(root)
            examples, background = applicants(n_tab)
            print(f"tabular model: {about}")
            bench("applicants", engines.ModelSpec("tabular", path, tuple(background)), examples, root, engine_names)
        if n_text > 0:
            path, about = sentiment_model(root)
            examples_text, background_text = sentences(n_text)
            print(f"\ntext model: {about}")
            bench("sentences", engines.ModelSpec("text", path, tuple(background_text)), examples_text, root, engine_names)


if __name__ == "__main__":
    main()
