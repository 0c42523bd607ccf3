"""Where the examples of ``twopath evaluate`` run: in this process, a process pool, or Ray.

Every engine does the same thing: a **worker** opens the model once (:class:`ModelSpec`, a
small picklable description: the model folder, its kind, the background), sets
``torch.set_num_threads`` and numpy's BLAS threads (threadpoolctl) to one each so that workers
do not fight over cores, and turns chunks of examples
into the per-example tables of :func:`twopath.evaluation.evaluate_example`. The driver — this
process — receives each finished chunk and writes it to the store, so only the driver needs the
output folder (on a cluster the workers need the model folder and twopath, nothing else).

* ``local`` with one worker: in this process;
* ``local`` with N workers: ``concurrent.futures.ProcessPoolExecutor`` (spawned processes, each
  opening the model once in its initializer);
* ``ray``: an actor pool (``ray.util.ActorPool``) of N actors of one CPU each. ``--ray-address``
  joins an existing cluster (checked to answer within a few seconds first); without it a local
  Ray of N CPUs is started and shut down at the end.

Results do not depend on the engine, the number of workers or the order chunks finish in: each
example is computed alone with its own seed (:func:`twopath.evaluation.example_seed`), and the
store reads tables back in a fixed order.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from twopath.types import Example, TwopathError

ENGINES = ("local", "ray")
#: one chunk of work: (file row, example, gold label) triples
Chunk = list[tuple[int, Example, "str | None"]]
Tables = dict[str, Any]


@dataclass(frozen=True)
class ModelSpec:
    """How every worker opens the same model with the same background."""

    kind: str  # "text", "prompted" or "tabular"
    path: str
    background: tuple[Any, ...] = ()
    template: str | None = None
    label_words: tuple[str, ...] = ()
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int | None = None

    def open(self) -> Any:
        if self.kind == "tabular":
            import pandas as pd

            from twopath.runtime.tabular import TorchTabularClassifier

            adapter: Any = TorchTabularClassifier.load(self.path)
            adapter.background = pd.DataFrame(list(self.background))
        else:
            from twopath.runtime.text import HFTextClassifier, PromptedLM

            if self.kind == "prompted":
                adapter = PromptedLM.from_pretrained_prompted(self.path, self.template or "{text}", list(self.label_words),
                                                              device=self.device, dtype=self.dtype)
            else:
                adapter = HFTextClassifier.from_pretrained(self.path, device=self.device, dtype=self.dtype)
            adapter.background = list(self.background)
        adapter.max_rows = self.batch_size
        return adapter


@dataclass(frozen=True)
class Job:
    """What to compute for every example (the same in every worker)."""

    methods: tuple[str, ...]
    seed: int
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class Worker:
    """Opens the model once; turns chunks into per-example tables."""

    def __init__(self, spec: ModelSpec, job: Job, threads: int = 1, adapter: Any = None, own_process: bool = False):
        """``own_process``: this is a worker process of its own (a pool's or a Ray actor), whose
        garbage collector is tuned for the run (:mod:`twopath.collector`), and what is alive
        once the model is open is frozen; the driver's process is left as it is."""
        from twopath import collector

        if own_process:
            collector.for_a_run()
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(max(1, int(threads)))
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.adapter = adapter if adapter is not None else spec.open()
        self.job = job
        self._prepare()
        # numpy's and scipy's BLAS too, once the methods' libraries are loaded: idle OpenBLAS
        # threads spin, and two workers' spinning BLAS threads made each worker 2.4x slower
        threadpool_limits(limits=max(1, int(threads)), user_api="blas")
        if own_process:
            collector.settle()

    def _prepare(self) -> None:
        """One-off per-process work of the methods (shap's JIT compiles), before the first example."""
        from twopath.attribution import ATTRIBUTION_METHODS

        for name in self.job.methods:
            if name in ATTRIBUTION_METHODS:
                ATTRIBUTION_METHODS.create(name).prepare()

    def run(self, chunk: Chunk) -> Tables:
        from twopath.evaluation import combine, evaluate_example

        parts = [evaluate_example(self.adapter, example, methods=self.job.methods, seed=self.job.seed,
                                  settings=self.job.settings, row=row, gold=gold) for row, example, gold in chunk]
        return combine(parts)


def chunks(items: Sequence[tuple[int, Example, str | None]], size: int) -> list[Chunk]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def chunk_size(n: int, workers: int, most: int = 16) -> int:
    """Examples per chunk: a few chunks per worker (balance), at most ``most`` (an interruption
    loses at most the chunks in flight)."""
    return max(1, min(most, -(-n // (4 * workers)))) if n else 1


def run(engine: str, spec: ModelSpec, job: Job, work: list[Chunk], workers: int,
        on_chunk: Callable[[Tables], None], ray_address: str | None = None, adapter: Any = None,
        worker: type[Worker] | None = None) -> None:
    """Compute every chunk of ``work`` on ``engine`` and hand each result to ``on_chunk``
    (``adapter``: the model already open in this process, reused by the one local worker;
    ``worker``: a subclass of :class:`Worker` to build instead, e.g. one that times itself)."""
    cls = worker or Worker
    if engine == "ray":
        _run_ray(spec, job, work, workers, on_chunk, ray_address, cls)
    elif workers == 1:
        _run_here(spec, job, work, on_chunk, adapter, cls)
    else:
        _run_pool(spec, job, work, workers, on_chunk, cls)


def _run_here(spec: ModelSpec, job: Job, work: list[Chunk], on_chunk: Callable[[Tables], None],
              adapter: Any = None, cls: type[Worker] = Worker) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()  # one thread: the same arithmetic as every other engine's worker
    with threadpool_limits(user_api="blas"):  # numpy's BLAS threads as they were, afterwards
        try:
            worker = cls(spec, job, threads=1, adapter=adapter)
            for chunk in work:
                on_chunk(worker.run(chunk))
        finally:
            torch.set_num_threads(before)


_POOL_WORKER: list[Worker] = []


def _pool_init(spec: ModelSpec, job: Job, threads: int, cls: type[Worker]) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _POOL_WORKER.append(cls(spec, job, threads, own_process=True))


def _pool_run(chunk: Chunk) -> Tables:
    return _POOL_WORKER[0].run(chunk)


def _run_pool(spec: ModelSpec, job: Job, work: list[Chunk], workers: int, on_chunk: Callable[[Tables], None],
              cls: type[Worker] = Worker) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fork of a process holding torch threads is unsafe
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_pool_init,
                             initargs=(spec, job, 1, cls)) as pool:
        try:
            for result in _as_finished(pool, work, workers):
                on_chunk(result)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _as_finished(pool: ProcessPoolExecutor, work: list[Chunk], workers: int) -> Iterator[Tables]:
    """Results as they finish, with at most two chunks per worker queued (bounded memory)."""
    queue = list(reversed(work))
    running: set[Future[Tables]] = set()
    while queue or running:
        while queue and len(running) < 2 * workers:
            running.add(pool.submit(_pool_run, queue.pop()))
        finished, running = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            yield future.result()


# --- Ray ------------------------------------------------------------------------------------------


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TwopathError("--engine ray needs Ray, which is not installed: pip install 'twopath[ray]'") from None
    return ray


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """A cluster address answers within ``timeout`` seconds (``auto`` is left to Ray)."""
    if address == "auto":
        return
    where = address.split("://", 1)[-1]
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise TwopathError(f"--ray-address {address!r}: expected HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise TwopathError(f"--ray-address {address}: no Ray cluster answers there ({err.strerror or err})") from None


def _run_ray(spec: ModelSpec, job: Job, work: list[Chunk], workers: int, on_chunk: Callable[[Tables], None],
             address: str | None, cls: type[Worker] = Worker) -> None:
    ray = require_ray()
    from ray.util import ActorPool

    started = not ray.is_initialized()
    if started:
        try:
            if address is not None:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        except ConnectionError as err:
            raise TwopathError(f"--ray-address {address}: cannot join the Ray cluster ({err})") from None
    try:
        actor = ray.remote(num_cpus=1)(cls)
        pool = ActorPool([actor.remote(spec, job, 1, own_process=True) for _ in range(workers)])
        for result in pool.map_unordered(lambda a, chunk: a.run.remote(chunk), work):
            on_chunk(result)
    except ray.exceptions.RayActorError as err:
        raise TwopathError(f"a Ray worker could not open the model or died: {str(err).splitlines()[0]}") from None
    finally:
        if started:
            ray.shutdown()
