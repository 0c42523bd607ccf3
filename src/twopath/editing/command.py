"""``twopath edit``: localized fine-tuning on the user's own model, compared across localizations.

The command's body lives here (``cli.py`` only registers it). Everything checkable is checked
before the model loads — the options, the data file, the output folder, the forgotten feature
against the model's config (tabular) or the word against the held-out sentences (text) — so a bad
input is one line and exit 2 with nothing written. Then every localization is ranked, filled to
the same parameter budget, edited and measured, and the report (table, JSON, figure) is written
atomically to ``--out``. ``--save-edited DIR`` also writes one edited model (the localization
``--save-localization``, default the most robust) as a new folder with ``edit.json``; the
original model folder is never written to.

Only typer and the standard library are imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    app.command("edit")(edit)


def _split(frame: Any, seed: int) -> tuple[Any, Any]:
    order = frame.sample(frac=1.0, random_state=seed)
    cut = max(2, int(0.8 * len(order)))
    return order.iloc[:cut], order.iloc[cut:]


def _read(data: Path) -> Any:
    import pandas as pd

    from twopath.types import TwopathError

    try:
        return pd.read_csv(data)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise TwopathError(f"--data {data}: cannot read it as CSV ({str(err).splitlines()[0]})") from None


def _localizations(value: str) -> list[str]:
    from twopath.editing.compare import LOCALIZATIONS
    from twopath.types import TwopathError

    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOCALIZATIONS]
    if not names or unknown:
        raise TwopathError(f"--localization: unknown {unknown or value!r}; expected some of {', '.join(LOCALIZATIONS)}")
    return names


def edit(
    model: Annotated[Path, typer.Option(help="model folder: a twopath tabular MLP, or a Hugging Face sequence classifier")],
    data: Annotated[Path, typer.Option(help="CSV: the model's feature columns and a label column (tabular), or text and label columns")],
    out: Annotated[Path, typer.Option(help="report folder (new, empty, or a previous edit report's)")] = Path("reports/edit"),
    forget: Annotated[str | None, typer.Option(help="tabular: the feature whose effect the edit removes")] = None,
    values: Annotated[str | None, typer.Option(help="tabular: comma-separated values of --forget that should be indistinguishable (default: both values of a binary feature, every category, or the 10th/90th percentile)")] = None,
    word: Annotated[str | None, typer.Option(help="text: the word whose effect the edit removes")] = None,
    label: Annotated[str, typer.Option(help="the label column of --data")] = "label",
    text_column: Annotated[str, typer.Option(help="text: the column of sentences")] = "text",
    target: Annotated[str, typer.Option(help="the class whose probability is measured (a label name or #N)")] = "#1",
    localization: Annotated[str, typer.Option(help="comma-separated: ablation, attribution_patching, probe, bridge, random, last_layer, all_parameters")] = "ablation,attribution_patching,probe,bridge,random,last_layer,all_parameters",
    kind: Annotated[str | None, typer.Option(help="head or neuron (default: heads for text, neurons for tables)")] = None,
    k: Annotated[int, typer.Option(min=1, help="budget in components' worth of parameters (k x the median component size)")] = 4,
    budget: Annotated[int | None, typer.Option(min=1, help="exact parameter budget (overrides --k)")] = None,
    steps: Annotated[int, typer.Option(min=1, help="most Adam steps per edit")] = 200,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the edit")] = 1e-2,
    n_random: Annotated[int, typer.Option(min=1, help="random localizations (seeds)")] = 3,
    relearn_steps: Annotated[int, typer.Option(min=0, help="whole-model steps of the relearning attack (0 = skip)")] = 20,
    components: Annotated[str | None, typer.Option(help="also edit your own component set, e.g. 'L0N3,L1N7' or 'L2H1,L3H0' (filled to the same budget; row 'given')")] = None,
    save_edited: Annotated[Path | None, typer.Option(help="also save one edited model here (a new folder)")] = None,
    save_localization: Annotated[str | None, typer.Option(help="which localization --save-edited saves (default: the most robust)")] = None,
    seed: Annotated[int, typer.Option(help="seed (0 to 2**32 - 1)")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Fine-tune only the components each localization names (same budget), and compare the edits."""
    from twopath.cli import _run, _say, checkpoint, raise_error

    def action() -> None:
        from twopath import validation as v

        v.check_seed(seed)
        if (forget is None) == (word is None):
            raise_error("give exactly one of --forget FEATURE (tabular) or --word WORD (text)")
        if kind not in (None, "head", "neuron"):
            raise_error(f"--kind must be head or neuron, got {kind!r}")
        if lr <= 0:
            raise_error(f"--lr must be positive, got {lr}")
        names = _localizations(localization)
        from twopath.editing.report import check_report_out
        from twopath.editing.save import check_destination

        check_report_out(out)
        if save_edited is not None:
            check_destination(save_edited)
            if save_edited.resolve() == model.resolve():
                raise_error("--save-edited must be a new folder, not the model's own")
        v.check_input_file(data, "--data")
        frame = _read(data)
        if label not in frame.columns:
            raise_error(f"--data has no label column {label!r} (columns: {list(frame.columns)[:20]})")
        say = _say(quiet)
        if forget is not None:
            adapter, task = _tabular(model, frame, forget, values, label, target, seed, v)
        else:
            adapter, task = _text(model, frame, word or "", label, text_column, target, seed, v)
        given = _components(adapter, components) if components is not None else None
        if given:
            from twopath.editing.compare import default_budget
            from twopath.editing.mask import component_mask

            wanted = budget or default_budget(adapter, kind or adapter.default_component, k)
            held = component_mask(adapter, given).count
            if held < wanted:
                raise_error(f"--components hold {held} parameters, fewer than the budget {wanted}; "
                            "give more components or a smaller --k/--budget")
        if save_localization is not None and save_localization not in [*names, *(["given"] if given else [])]:
            raise_error(f"--save-localization {save_localization!r} is not among --localization {names}")

        from twopath.editing import LocalizedFineTuning, Relearning, compare_localizations
        from twopath.editing.report import write_edit_report

        say(f"editing: {task.name}, {len(names)} localizations")
        comparison = compare_localizations(
            adapter, task, kind=kind, budget=budget, k=k, localizations=names, n_random=n_random,
            editor=LocalizedFineTuning(steps=steps, lr=lr, seed=seed), extra={"given": given} if given else None,
            relearning=Relearning(steps=relearn_steps, seed=seed) if relearn_steps else Relearning(steps=0, seed=seed))
        checkpoint()
        paths = write_edit_report(comparison, out, {"model": str(model), "data": str(data)})
        if save_edited is not None:
            _save(adapter, comparison, save_edited, save_localization)
        typer.echo("  ".join(str(p) for p in paths.values()))

    _run(action)


def _components(adapter: Any, value: str) -> list[Any]:
    """The user's component labels, checked against the model (before any heavy work)."""
    from twopath.cli import raise_error
    from twopath.editing.mask import component_mask
    from twopath.types import Component

    labels = [x.strip() for x in value.split(",") if x.strip()]
    if not labels:
        raise_error("--components is empty; give component labels such as L0N3,L1N7")
    try:
        parsed = [Component.parse(label) for label in labels]
    except ValueError as err:
        raise_error(f"--components: {err}")
    component_mask(adapter, parsed)  # a component the model lacks: one line, exit 2
    return parsed


def _tabular(model: Path, frame: Any, forget: str, values: str | None, label: str, target: str, seed: int, v: Any
             ) -> tuple[Any, Any]:
    from twopath.cli import raise_error

    config = v.check_tabular_dir(model)
    if forget not in config["features"]:
        raise_error(f"--forget {forget!r} is not a feature of the model; its features are {config['features']}")
    missing = [f for f in config["features"] if f not in frame.columns]
    if missing:
        raise_error(f"--data lacks the model's feature column(s) {missing}")
    from twopath.editing import feature_task
    from twopath.runtime.tabular import TorchTabularClassifier

    parsed = None if values is None else [_value(x) for x in values.split(",")]
    adapter = TorchTabularClassifier.load(model)
    train, heldout = _split(frame, seed)
    adapter.background = train.sample(min(200, len(train)), random_state=seed)
    return adapter, feature_task(adapter, train, heldout, forget, label, parsed, target, seed=seed)


def _value(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _text(model: Path, frame: Any, word: str, label: str, column: str, target: str, seed: int, v: Any) -> tuple[Any, Any]:
    from twopath.cli import raise_error
    from twopath.editing.tasks import has_word

    if column not in frame.columns:
        raise_error(f"--data has no text column {column!r}")
    train, heldout = _split(frame, seed)
    if not any(has_word(str(t), word) for t in heldout[column]):
        raise_error(f"the word {word!r} is in no held-out sentence of --data")
    v.check_hf_dir(model)
    from twopath.editing import word_task
    from twopath.runtime.text import HFTextClassifier

    adapter = HFTextClassifier.from_pretrained(model)
    adapter.background = list(train[column].astype(str)[:16])
    lookup = {name.lower(): i for i, name in enumerate(adapter.labels)}

    def codes(series: Any) -> list[int]:
        return [lookup[str(x).lower()] if str(x).lower() in lookup else int(x) for x in series]

    return adapter, word_task(adapter, train[column], codes(train[label]), heldout[column], codes(heldout[label]), word,
                              target, seed=seed)


def _save(adapter: Any, comparison: Any, directory: Path, which: str | None) -> None:
    from twopath.editing.save import save_edited
    from twopath.types import TwopathError

    name = which or comparison.verdicts().get("most_robust")
    rows = [r for r in comparison.rows if r.localization == name and r.result is not None]
    if not rows:
        raise TwopathError(f"no edit of localization {name!r} to save (use --save-localization)")
    row = rows[0]
    save_edited(adapter, row.result, directory, metrics=row.metrics,
                extra={"localization": row.localization, "seed": row.seed, "task": comparison.task})
