"""``twopath`` command line: thin on purpose — it parses, calls the API and writes reports.

Heavy libraries (torch, transformers, shap, lime, captum) are imported inside the commands, so
``twopath --help`` stays instant. User errors print one line and exit with status 2.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Explain one model decision two ways: input attribution beside mechanistic localization.")

EXIT_USAGE = 2


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _say(quiet: bool):  # type: ignore[no-untyped-def]
    if quiet:
        return lambda _msg: None
    from rich.console import Console

    console = Console(stderr=True)
    return lambda msg: console.print(f"[dim]·[/dim] {msg}")


@contextmanager
def _progress(quiet: bool):  # type: ignore[no-untyped-def]
    """A rich progress bar for the long loops (the dataset section), or nothing when quiet."""
    if quiet:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("  examples"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task("examples", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _run(action):  # type: ignore[no-untyped-def]
    """Run ``action`` turning twopath's user errors into one-line messages and exit code 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from twopath.types import TwopathError

    try:
        return action()
    except TwopathError as err:
        _fail(str(err))


def _formats(value: str) -> list[str]:
    from twopath.reports.writers import FORMATS

    formats = [f.strip() for f in value.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        _fail(f"unknown format(s) {bad or value!r}; choose from {','.join(FORMATS)}")
    return formats


@app.command()
def reproduce(
    task: Annotated[str, typer.Argument(help="sentiment, loan, hmda, sentiment-gpt2 or all")],
    out: Annotated[Path, typer.Option(help="output folder; one sub-folder per task")] = Path("reports"),
    seed: Annotated[int, typer.Option(help="seed for sampling methods and backgrounds")] = 0,
    formats: Annotated[str, typer.Option("--format", help="comma-separated: html,md,json,csv")] = "html,md,json",
    dataset_size: Annotated[int | None, typer.Option(help="held-out examples for the dataset section (default 200 sentences / 500 applicants; 0 = skip)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress messages")] = False,
) -> None:
    """Reproduce a seed example (the sentiment sentence, the loan applicant) end to end."""
    from_tasks = ("sentiment", "loan", "hmda", "sentiment-gpt2")
    if task != "all" and task not in from_tasks:
        _fail(f"unknown task {task!r}; expected one of {', '.join(from_tasks)} or all")
    chosen = list(from_tasks) if task == "all" else [task]
    fmt = _formats(formats)
    say = _say(quiet)

    def action() -> None:
        from twopath.reports import write_report
        from twopath.seed.tasks import run_task

        for name in chosen:
            with _progress(quiet) as progress:
                report = run_task(name, seed=seed, say=say, dataset_size=dataset_size, progress=progress)
            paths = write_report(report, out / name, fmt)
            typer.echo(f"{name}: " + "  ".join(str(p) for p in paths.values()))

    _run(action)


@app.command()
def explain(
    model: Annotated[Path, typer.Option(help="local Hugging Face model directory: a sequence classifier, or a causal LM with --prompt and --labels")],
    text: Annotated[str, typer.Option(help="the sentence to explain")],
    out: Annotated[Path, typer.Option(help="output folder")] = Path("reports/explain"),
    target: Annotated[str | None, typer.Option(help="label to explain (default: the predicted label)")] = None,
    corrupt: Annotated[str | None, typer.Option(help="contrast sentence of the same token length for patching")] = None,
    prompt: Annotated[str | None, typer.Option(help="causal LM: prompt template with {text}, e.g. 'Review: {text}\nSentiment:'")] = None,
    labels: Annotated[str | None, typer.Option(help="causal LM: comma-separated label words, e.g. ' negative, positive'")] = None,
    background: Annotated[Path | None, typer.Option(help="reference sentences for mean ablation: a text file (one per line) or a CSV/JSONL/Parquet 'text' column (default: built-in neutral sentences)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16")] = "float32",
    batch_size: Annotated[int | None, typer.Option(min=1, help="most rows per forward pass (default: what fits a 2 GiB activation budget)")] = None,
    allow_new_head: Annotated[bool, typer.Option("--allow-new-head", help="explain a model whose classification head is missing from the weights (randomly initialised; the report says so)")] = False,
    config: Annotated[Path | None, typer.Option(help="TOML file with [methods] and per-method settings")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    formats: Annotated[str, typer.Option("--format", help="comma-separated: html,md,json,csv")] = "html,md,json",
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Explain one sentence with any local Hugging Face classifier or prompted causal LM."""
    if not text.strip():
        _fail("the text is empty")
    if (prompt is None) != (labels is None):
        _fail("--prompt and --labels go together (a causal LM needs both)")
    if prompt is not None and "{text}" not in prompt:
        _fail("the prompt template must contain {text} where the input goes")
    fmt = _formats(formats)
    say = _say(quiet)

    def action() -> None:
        from twopath.datasets.neutral import NEUTRAL_SENTENCES, read_background
        from twopath.pipeline import explain as run_explain
        from twopath.reports import write_report
        from twopath.runtime.devices import resolve_device, resolve_dtype
        from twopath.runtime.text import HFTextClassifier, PromptedLM, check_template
        from twopath.seed.tasks import reproducibility, text_counterfactual
        from twopath.types import Example, Report

        resolve_dtype(dtype, resolve_device(device))  # device errors before anything loads
        reference = read_background(background) if background is not None else list(NEUTRAL_SENTENCES)
        options = run_options(config)
        adapter: HFTextClassifier
        if prompt is not None and labels is not None:
            template = check_template(prompt.replace("\\n", "\n"))  # a typed \\n is a newline
            adapter = PromptedLM.from_pretrained_prompted(model, template, labels.split(","), device=device, dtype=dtype)
        else:
            adapter = HFTextClassifier.from_pretrained(model, device=device, dtype=dtype,
                                                       allow_new_head=allow_new_head)
        if target is not None:
            adapter.label_index(target)
        adapter.max_rows = batch_size
        adapter.background = reference
        example = Example("input", text, target)
        contrast = Example("contrast", corrupt, target) if corrupt else text_counterfactual(adapter)
        result = run_explain(adapter, example, corrupted=contrast, seed=seed, say=say, **options)
        described = {**adapter.describe(), "accuracy": None, "device": str(adapter.device), "dtype": dtype,
                     "background": str(background) if background is not None else "built-in neutral sentences"}
        if getattr(adapter.model.config, "twopath_new_head", False):
            described["warning"] = "the classification head was missing from the weights and is randomly initialised"
        report = Report("explain", described, [result], reproducibility(seed, {"key": str(model)}))
        paths = write_report(report, out, fmt)
        typer.echo("  ".join(str(p) for p in paths.values()))

    _run(action)


@app.command("explain-tabular")
def explain_tabular(
    model: Annotated[Path, typer.Option(help="folder with model.safetensors and twopath_tabular.json")],
    data: Annotated[Path, typer.Option(help="CSV with the model's feature columns (background and rows)")],
    row: Annotated[int, typer.Option(help="0-based row of the CSV to explain")],
    out: Annotated[Path, typer.Option(help="output folder")] = Path("reports/explain-tabular"),
    target: Annotated[str | None, typer.Option(help="label to explain (default: the predicted label)")] = None,
    contrast_row: Annotated[int | None, typer.Option(help="row to patch from (default: the nearest row predicted differently)")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with [methods] and per-method settings")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    formats: Annotated[str, typer.Option("--format", help="comma-separated: html,md,json,csv")] = "html,md,json",
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Explain one row of a table with your own torch MLP (saved as safetensors + a small config)."""
    fmt = _formats(formats)
    say = _say(quiet)

    def action() -> None:
        from twopath.pipeline import explain as run_explain
        from twopath.reports import write_report
        from twopath.runtime.tabular import TorchTabularClassifier
        from twopath.seed.tasks import nearest_contrast, read_table, reproducibility
        from twopath.types import Example, Report

        adapter = TorchTabularClassifier.load(model)
        frame = read_table(data, adapter)
        if not 0 <= row < len(frame):
            raise_error(f"--row {row} is out of range: the table has {len(frame)} rows")
        if target is not None:
            adapter.label_index(target)
        adapter.background = frame.sample(min(200, len(frame)), random_state=seed)
        other = contrast_row if contrast_row is not None else nearest_contrast(adapter, frame, row)
        contrast = None if other is None else Example(f"row-{other}", frame.iloc[other].to_dict())
        example = Example(f"row-{row}", frame.iloc[row].to_dict(), target)
        result = run_explain(adapter, example, corrupted=contrast, seed=seed, say=say, **run_options(config))
        report = Report("explain-tabular", {**adapter.describe(), "accuracy": None}, [result],
                        reproducibility(seed, {"key": str(model)}))
        paths = write_report(report, out, fmt)
        typer.echo("  ".join(str(p) for p in paths.values()))

    _run(action)


def raise_error(message: str) -> None:
    from twopath.types import TwopathError

    raise TwopathError(message)


def run_options(config: Path | None) -> dict:  # type: ignore[type-arg]
    """Methods and settings from a TOML file (see docs/configuration.md)."""
    if config is None:
        return {}
    from twopath.config import load_config

    return load_config(config)


@app.command()
def methods() -> None:
    """List the registered methods of both paths."""
    from twopath.attribution import ATTRIBUTION_METHODS
    from twopath.mechanistic import MECHANISTIC_METHODS

    for title, registry in (("input path (attribution)", ATTRIBUTION_METHODS), ("internal path (mechanistic)", MECHANISTIC_METHODS)):
        typer.echo(title)
        for entry in registry:
            typer.echo(f"  {entry.name:<22} [{', '.join(entry.modalities)}]  {entry.summary}")


def main() -> None:
    app(prog_name="twopath")


if __name__ == "__main__":  # pragma: no cover
    main()
