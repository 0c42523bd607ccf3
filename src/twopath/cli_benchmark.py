"""``twopath benchmark``: localization methods scored against mechanisms planted by hand.

The command's body lives here (``cli.py`` only registers it); the benchmark itself is
:mod:`twopath.seed.localization`. The method list is checked before anything heavy is imported
(one line, exit 2). Only typer and the standard library are imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark)


def benchmark(
    methods: Annotated[str | None, typer.Option(help="comma-separated subset: shap, lime, integrated_gradients, occlusion, gradient_x_input, attention, neuron_ablation, head_ablation, activation_patching, attribution_patching, direct_logit_attribution, direct_effect, circuit, clusters, random (default: all)")] = None,
    out: Annotated[Path | None, typer.Option(help="also write the table as CSV to this file")] = None,
    seed: Annotated[int, typer.Option(help="seed for the sampling methods and the random control (0 to 2**32 - 1)")] = 0,
) -> None:
    """Precision and recall at k of every localization method on models with a planted mechanism
    (a tabular MLP with a planted pathway and cluster; a GPT-2 with a planted agreement head)."""
    from twopath import cli

    def action() -> None:
        from twopath import validation as v

        v.check_seed(seed)
        names = _names(methods)
        if out is not None:
            _check_csv(out)
        import torch

        from twopath.seed.localization import benchmark as run
        from twopath.seed.localization import render

        torch.set_num_threads(1)
        frame = run(seed=seed, methods=names)
        cli.checkpoint()
        typer.echo(render(frame))
        if out is not None:
            _write_csv(frame, out)
            typer.echo(f"benchmark: {out}")

    cli._run(action)


def _names(methods: str | None) -> tuple[str, ...] | None:
    """The requested method names, checked against the benchmark's list (before heavy imports)."""
    if methods is None:
        return None
    known = ("shap", "lime", "integrated_gradients", "occlusion", "gradient_x_input", "attention",
             "neuron_ablation", "head_ablation", "activation_patching", "attribution_patching",
             "direct_logit_attribution", "direct_effect", "circuit", "clusters", "random")
    names = tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        from twopath.types import TwopathError

        raise TwopathError(f"--methods: unknown benchmark method(s) {unknown or ['(none)']}; expected some of {', '.join(known)}")
    return names


def _check_csv(out: Path) -> None:
    from twopath.types import TwopathError

    if out.suffix != ".csv":
        raise TwopathError(f"--out {out}: give a file name ending in .csv")
    if out.is_dir() or out.is_symlink():
        raise TwopathError(f"--out {out} is a folder or a symbolic link; give a .csv file name")
    parent = out.parent.resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise TwopathError(f"--out {out} lies below {parent}, which is a file, not a folder")


def _write_csv(frame: object, out: Path) -> None:
    """Atomic: a temporary file in the same folder, renamed when complete."""
    import os
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    os.close(handle)
    try:
        frame.to_csv(tmp, index=False)  # type: ignore[attr-defined]
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
