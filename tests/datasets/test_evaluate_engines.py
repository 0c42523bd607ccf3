"""The same store whatever the engine and the number of workers.

One store per engine on a tiny BERT and six rows (one of them bad): in this process (1 worker),
a process pool of 2, and Ray with 2 actors (a local Ray of 2 CPUs, no dashboard). Each example
has its own seed, and the store reads back in a fixed order, so every table is identical.
Start-up dominates (spawned processes import torch; Ray starts in seconds), so there are few runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.datasets.test_evaluate import LIGHT, evaluate, rows, summary, text_args
from tests.datasets.test_evaluate import text_csv as text_csv  # noqa: F401 (fixtures)
from tests.datasets.test_evaluate import text_model as text_model  # noqa: F401

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def one_worker(text_model, text_csv, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("engines") / "local-1"
    evaluate(*text_args(text_model, text_csv, out, "--methods", LIGHT, "--seed", 7))
    return out


def test_two_local_workers_give_the_one_worker_store(one_worker, text_model, text_csv, tmp_path):  # noqa: F811
    out = tmp_path / "local-2"
    evaluate(*text_args(text_model, text_csv, out, "--methods", LIGHT, "--seed", 7, "--workers", 2))
    run = json.loads((out / "run.json").read_text())
    assert (run["engine"], run["workers"], run["computed"]) == ("local", 2, 6)
    assert len(list((out / "shards").iterdir())) > 1  # the work really was split
    assert rows(out) == rows(one_worker)
    assert summary(out) == summary(one_worker)


def test_ray_with_two_workers_gives_the_local_store(one_worker, text_model, text_csv, tmp_path):  # noqa: F811
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray-2"
    evaluate(*text_args(text_model, text_csv, out, "--methods", LIGHT, "--seed", 7, "--workers", 2, "--engine", "ray"))
    assert not ray.is_initialized()  # the local Ray it started was shut down
    run = json.loads((out / "run.json").read_text())
    assert (run["engine"], run["workers"], run["computed"]) == ("ray", 2, 6)
    assert rows(out) == rows(one_worker)
    assert summary(out) == summary(one_worker)
    assert (out / "summary.json").read_bytes() == (one_worker / "summary.json").read_bytes()


def test_only_a_worker_process_of_its_own_tunes_its_collector():
    """A pool's or Ray's worker (``own_process``) makes full collections rare and freezes what is
    alive once its model is open; the driver's in-process worker leaves the collector alone."""
    import subprocess
    import sys

    code = ("import gc\n"
            "from twopath.datasets import engines\n"
            "spec, job = engines.ModelSpec('tabular', 'unused'), engines.Job((), 0)\n"
            "before = (gc.get_threshold(), gc.get_freeze_count())\n"
            "engines.Worker(spec, job, adapter=object())\n"
            "here = (gc.get_threshold(), gc.get_freeze_count())\n"
            "engines.Worker(spec, job, adapter=object(), own_process=True)\n"
            "print(here == before, gc.get_threshold()[2], gc.get_freeze_count() > before[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from twopath.collector import FULL_COLLECTION_EVERY

    assert out == ["True", str(FULL_COLLECTION_EVERY), "True"]


def test_a_worker_runs_numpys_blas_on_its_threads_and_the_local_engine_restores_them():
    """Idle OpenBLAS threads spin: a worker limits numpy's BLAS to its thread count; the
    in-process engine puts the caller's BLAS threads back afterwards."""
    import subprocess
    import sys

    code = ("import numpy\n"
            "from threadpoolctl import threadpool_info, threadpool_limits\n"
            "from twopath.datasets import engines\n"
            "def blas():\n"
            "    return sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'})\n"
            "threadpool_limits(limits=2, user_api='blas')\n"
            "spec, job = engines.ModelSpec('tabular', 'unused'), engines.Job((), 0)\n"
            "class Seen(engines.Worker):\n"
            "    def run(self, chunk):\n"
            "        print(blas())\n"
            "        return {}\n"
            "print(blas())\n"
            "engines.run('local', spec, job, [[]], 1, lambda tables: None, adapter=object(), worker=Seen)\n"
            "print(blas())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:3] == ["[2]", "[1]", "[2]"]
