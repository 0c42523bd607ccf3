"""``twopath evaluate``: both paths over the user's own dataset, local or on Ray, resumable.

The command's body lives here (``cli.py`` only registers it). It follows the CLI's order:
everything checkable is checked before the model loads (arguments, the data file and its
columns, the gold labels against the model's labels read from its config, the output store and
its manifest, Ray's presence and address), then the model opens once in this process for the
checks that need it, the examples not yet in the store are computed by the chosen engine, each
finished chunk is written to the store, and the aggregate report is rebuilt from the store.

Only typer and the standard library are imported at module level: ``twopath --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    model: Annotated[Path, typer.Option(help="model folder: a Hugging Face classifier (or causal LM with --prompt/--labels), or a twopath tabular MLP")],
    data: Annotated[Path, typer.Option(help="the dataset: .csv, .tsv, .jsonl or .parquet")],
    out: Annotated[Path, typer.Option(help="store folder (new, or a previous evaluate run's: finished examples are skipped)")],
    text_column: Annotated[str | None, typer.Option(help="text models: the column of sentences (default: text)")] = None,
    row_columns: Annotated[str | None, typer.Option(help="tabular models: comma-separated feature columns (default: the model's features)")] = None,
    label_column: Annotated[str | None, typer.Option(help="optional gold labels: the model's label names or numbers")] = None,
    id_column: Annotated[str | None, typer.Option(help="optional column of distinct example ids (default: row-N)")] = None,
    limit: Annotated[int | None, typer.Option(help="only the first N rows")] = None,
    methods: Annotated[str | None, typer.Option(help="comma-separated input methods (default: shap,integrated_gradients,occlusion,gradient_x_input)")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML with \\[methods] attribution = [...] and \\[settings.METHOD]")] = None,
    workers: Annotated[int, typer.Option(help="worker processes (one torch thread each)")] = 1,
    engine: Annotated[str, typer.Option(help="local or ray")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="join this Ray cluster (HOST:PORT or auto); default: start a local Ray")] = None,
    prompt: Annotated[str | None, typer.Option(help="causal LM: prompt template with {text}")] = None,
    labels: Annotated[str | None, typer.Option(help="causal LM: comma-separated label words")] = None,
    background: Annotated[Path | None, typer.Option(help="text models: reference sentences for mean ablation (default: built-in neutral sentences)")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="most rows per forward pass")] = None,
    seed: Annotated[int, typer.Option(help="run seed (0 to 2**32 - 1); each example's seed derives from it and the example id")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Both paths over your own dataset: per-example results in a resumable Parquet store, and a summary."""
    from twopath import cli

    options: dict[str, Any] = dict(model=model, data=data, out=out, text_column=text_column, row_columns=row_columns,
                   label_column=label_column, id_column=id_column, limit=limit, methods=methods, config=config,
                   workers=workers, engine=engine, ray_address=ray_address, prompt=prompt, labels=labels,
                   background=background, batch_size=batch_size, seed=seed, quiet=quiet)
    cli._run(lambda: run_evaluate(**options))


def _model_kind(model: Path, prompt: str | None, labels: str | None) -> tuple[str, dict[str, Any]]:
    """(kind, facts) from the model folder without torch: labels, features, name."""
    from twopath import validation as v
    from twopath.types import TwopathError

    if (model / "twopath_tabular.json").is_file():
        if prompt is not None or labels is not None:
            raise TwopathError("--prompt and --labels are for causal LMs; this is a tabular model")
        config = v.check_tabular_dir(model)
        return "tabular", {"labels": [str(x) for x in config["labels"]], "features": list(config["features"]),
                           "name": config.get("name", model.name)}
    if (prompt is None) != (labels is None):
        raise TwopathError("--prompt and --labels go together (a causal LM needs both)")
    v.check_hf_dir(model)
    from twopath.runtime.text import check_model_dir, check_template

    if prompt is not None and labels is not None:
        template = check_template(v.check_utf8(prompt, "--prompt").replace("\\n", "\n"))
        check_model_dir(model, task="causal_lm")
        words = [w for w in v.check_utf8(labels, "--labels").split(",")]
        return "prompted", {"labels": [w.strip() for w in words], "template": template, "words": words, "name": model.name}
    _, config = check_model_dir(model, task="classifier")
    id2label = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(int(config.get("num_labels", 2)))}
    ordered = [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
    return "text", {"labels": ordered, "name": model.name}


def _methods(methods: str | None, config: Path | None, modality: str) -> tuple[list[str], dict[str, Any], list[str]]:
    """(input methods, settings, config keys evaluate does not use)."""
    from twopath import validation as v
    from twopath.evaluation import DATASET_METHODS
    from twopath.types import TwopathError

    options = v.load_config(config, modality) if config is not None else {}
    names = options.get("attribution_methods")
    if methods is not None:
        if names is not None:
            raise TwopathError("--methods and the config's [methods] attribution both name the methods; give one")
        names = [m.strip() for m in methods.split(",") if m.strip()]
        if not names:
            raise TwopathError("--methods is empty; name input methods, e.g. shap,occlusion")
        for name in names:
            v.check_method(name, "attribution", modality, where="--methods: ")
        if len(set(names)) != len(names):
            raise TwopathError(f"--methods {methods!r} repeats a method")
    if names is None:
        from twopath.validation import METHODS

        names = [m for m in DATASET_METHODS if modality in METHODS[m].modalities]
    unused = sorted({"mechanistic_methods": "methods.mechanistic", "output": "output", "with_checks": "checks"}[k]
                    for k in options if k not in ("attribution_methods", "settings"))
    return list(names), dict(options.get("settings", {})), unused


def run_evaluate(*, model: Path, data: Path, out: Path, text_column: str | None, row_columns: str | None,
                 label_column: str | None, id_column: str | None, limit: int | None, methods: str | None,
                 config: Path | None, workers: int, engine: str, ray_address: str | None, prompt: str | None,
                 labels: str | None, background: Path | None, batch_size: int | None, seed: int, quiet: bool) -> None:
    from twopath import cli
    from twopath import validation as v
    from twopath.cli import checkpoint
    from twopath.datasets import engines, reader, store
    from twopath.types import TwopathError

    # 1. arguments, files, columns, labels and the store: no model, no torch
    v.check_seed(seed)
    v.check_count(workers, "--workers", 1, 4096)
    if limit is not None:
        v.check_count(limit, "--limit", 1)
    if engine not in engines.ENGINES:
        raise TwopathError(f"--engine {v.shown(engine)}: expected one of {', '.join(engines.ENGINES)}")
    if ray_address is not None and engine != "ray":
        raise TwopathError("--ray-address joins a Ray cluster; it needs --engine ray")
    if engine == "ray":
        engines.require_ray()
        if ray_address is not None:
            engines.check_ray_address(ray_address)
    v.check_input_file(data, "--data")
    store.require_pyarrow()
    store.check_store_folder(out)
    if not model.exists():
        raise TwopathError(f"model directory does not exist: {model}")
    kind, facts = _model_kind(model, prompt, labels)
    modality = "tabular" if kind == "tabular" else "text"
    if background is not None and modality == "tabular":
        raise TwopathError("--background is for text models; a tabular model's background is drawn from --data")
    names, settings, unused = _methods(methods, config, modality)
    columns = [c.strip() for c in row_columns.split(",") if c.strip()] if row_columns else None
    if modality == "tabular" and columns is None:
        columns = facts["features"]
    dataset = reader.load_dataset(data, modality=modality, labels=facts["labels"], text_column=text_column,
                                  row_columns=columns, label_column=label_column, id_column=id_column, limit=limit)
    if modality == "tabular" and sorted(dataset.columns) != sorted(facts["features"]):
        raise TwopathError(f"--row-columns {dataset.columns} are not the model's features {facts['features']}")
    reference = _background(background, dataset, modality, seed)
    say = cli._say(quiet)
    if unused:
        say(f"note: evaluate does not use the config's {', '.join(unused)} (its internal ranking is ablation of every "
            "head or neuron; curves are in target probability)")

    spec = engines.ModelSpec(kind, str(model), tuple(reference), facts.get("template"), tuple(facts.get("words", ())),
                             batch_size=batch_size)
    manifest = {"model_hash": store.model_hash(model), "model_name": facts["name"], "kind": kind,
                "labels": list(facts["labels"]), "template": facts.get("template"), "input_columns": dataset.columns,
                "label_column": label_column, "id_column": id_column, "methods": names, "settings": settings,
                "seed": seed, "background_hash": store.settings_hash({"background": list(reference)}),
                "batch_size": batch_size, "pipeline": "dataset/2"}
    found = store.Store.check(out, manifest)  # another run's settings: refused before the model loads
    from twopath.evaluation import input_hash

    ids = [e.id for e in dataset.examples]
    done = store.Store(out, found).done() if found is not None else {}
    todo = store.pending(ids, [input_hash(e.raw) for e in dataset.examples], done)  # changed data: refused

    # 2. the model, once here: checks that need it (layers, background rows)
    say(f"opening {model}")
    adapter = spec.open()
    v.check_layers({"settings": settings}, adapter.n_layers)
    if modality == "tabular":
        adapter.frame(adapter.background)  # a bad background row is one line now
    st = store.Store.open(out, manifest)
    st.clean_partial()

    # 3. what is left to do, on the engine; each finished chunk goes to the store
    items = [(dataset.rows[i], dataset.examples[i], dataset.golds[i]) for i in todo]
    size = engines.chunk_size(len(items), workers)
    work = engines.chunks(items, size)
    job = engines.Job(tuple(names), seed, settings)
    skipped = len(ids) - len(todo)
    hint = workers_hint(len(todo), workers, _cores(), modality)
    say(f"{len(todo)} of {len(ids)} examples to compute ({skipped} already in the store), "
        f"engine {engine}, {workers} worker(s)" + (f" ({hint})" if hint else ""))
    start = time.perf_counter()
    computed = failed = 0
    with _progress(quiet, len(items), workers) as advance:
        def on_chunk(tables: dict[str, Any]) -> None:
            nonlocal computed, failed
            st.write_shard(tables)
            computed += len(tables["examples"])
            failed += int((tables["examples"]["status"] != "ok").sum())
            advance(len(tables["examples"]))
            checkpoint()

        try:
            if work:
                here = adapter if engine == "local" and workers == 1 else None
                engines.run(engine, spec, job, work, workers, on_chunk, ray_address, adapter=here)
        except KeyboardInterrupt:
            typer.echo(f"interrupted: {skipped + computed} of {len(ids)} examples are in the store {out}; "
                       "run the same command again to finish", err=True)
            raise typer.Exit(130) from None
    seconds = time.perf_counter() - start

    # 4. the aggregate, from the store alone
    from twopath.datasets.report import write_report

    paths = write_report(st)
    rate = computed / seconds if seconds > 0 else float("nan")
    run_info = {"engine": engine, "workers": workers, "computed": computed, "skipped": skipped, "failed_now": failed,
                "seconds": round(seconds, 3), "examples_per_second": round(rate, 3) if computed else None}
    store.write_atomic(out / "run.json", json.dumps(run_info, indent=2).encode())
    summary = json.loads(paths["json"].read_text())["summary"]
    typer.echo(f"evaluate: {len(ids)} examples ({computed} computed now, {skipped} already in the store), "
               f"{summary['n_failed']} failed, {seconds:.1f} s"
               + (f", {rate:.2f} examples/s" if computed else "") + f"; {paths['md']}  {paths['json']}")


def _background(path: Path | None, dataset: Any, modality: str, seed: int) -> list[Any]:
    """Reference inputs, the same in every worker: for text the --background file or the neutral
    sentences; for tables up to 200 complete rows of the data, sampled with the run seed."""
    if modality == "text":
        from twopath.datasets.neutral import NEUTRAL_SENTENCES, read_background

        return read_background(path) if path is not None else list(NEUTRAL_SENTENCES)
    import pandas as pd

    from twopath.types import TwopathError

    frame = pd.DataFrame([dict(e.raw) for e in dataset.examples]).dropna()
    if frame.empty:
        raise TwopathError("--data: no row has every feature; the background needs complete rows")
    sample = frame.sample(min(200, len(frame)), random_state=seed)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in sample.to_dict(orient="records")]


class _progress:
    """A rich progress bar (done / total, rate, ETA) or nothing under --quiet."""

    def __init__(self, quiet: bool, total: int, workers: int):
        self.quiet, self.total, self.workers = quiet, total, workers
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.quiet or self.total == 0:
            return lambda n: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn(f"  examples ({self.workers} worker{'s' if self.workers > 1 else ''})"),
                            BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=True)
        self.bar.__enter__()
        task = self.bar.add_task("examples", total=self.total, rate="")
        start = time.perf_counter()
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            rate = done[0] / max(time.perf_counter() - start, 1e-9)
            self.bar.update(task, advance=n, rate=f"{rate:.2f}/s")

        return advance

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


#: from this many examples on, one worker on a machine with more cores gets a hint, per modality:
#: a worker's start-up (seconds) is worth it after a few dozen sentences, but a loan applicant
#: takes 10 ms (benchmarks/evaluate.py, 2 cores: 2 workers ran 1.09x over 2,000 applicants and
#: 1.72x over 4,000; 1.13x over 6 MiniLM sentences, 1.62x once started)
HINT_FROM = {"text": 50, "tabular": 4000}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def workers_hint(n_todo: int, workers: int, cores: int, modality: str = "text") -> str | None:
    """A line for a run that leaves cores idle: each worker runs torch on one thread, so one
    worker uses one core; start-up costs each worker a few seconds, so runs smaller than
    :data:`HINT_FROM` the modality's examples get no hint."""
    if workers != 1 or cores < 2 or n_todo < HINT_FROM[modality]:
        return None
    n = min(cores, 4)
    return f"one worker uses one core of {cores}: --workers {n} would use {n}, with the same numbers"
