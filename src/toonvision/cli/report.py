"""The report verb: one self-contained HTML file per experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toonvision.cli.common import Root, console, fail, header, progress, tensorflow, workspace


def report(
    experiment: Annotated[
        str | None,
        typer.Argument(help="An experiment folder or name under <root>/runs/compare (default: the newest)."),
    ] = None,
    root: Root = Path("img"),
    with_: Annotated[
        list[Path] | None,
        typer.Option(
            "--with",
            help="Add a training run folder (runs/train/...) or a folder of predictions on screenshots "
            "(runs/predict/...) as a section (repeatable).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the HTML (default: report.html in the report's own folder); the pictures drawn "
            "for it go to that folder either way."
        ),
    ] = None,
    compute: Annotated[
        bool, typer.Option(help="Evaluate models whose evaluation is missing (takes a few seconds each).")
    ] = True,
) -> None:
    """One self-contained HTML report of an experiment, to read top to bottom in any browser.

    Sections: summary and verdict, dataset balance, architecture, averaged training curves, box plots with
    the Mann-Whitney test, the best model's confusion matrix and wrong predictions, heatmaps (made by
    'explain'), the runs given with --with, and every setting. Images are embedded: the file can be mailed.

    Each run writes a new folder, <experiment>/report, then report-2, report-3...: report.html and the
    pictures drawn for it. An earlier report and its pictures are never replaced.
    """
    from toonvision.learning.experiments import find_experiment

    ws = workspace(root)
    try:
        folder = find_experiment(ws.runs, experiment)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    extras = list(with_ or [])
    for extra in extras:
        if not extra.is_dir():
            raise fail(f"--with {extra}: not a folder (give a runs/train/... or runs/predict/... folder)")
    header("report", root=root, experiment=folder, extras=",".join(map(str, extras)) or "-", compute=compute)
    tensorflow()
    from toonvision.report.build import build_report

    with progress() as bar:
        task_id = bar.add_task("report", total=None)
        try:
            path = build_report(
                ws,
                folder,
                extras=extras,
                out=out,
                compute=compute,
                on_step=lambda name: bar.update(task_id, description=f"report: {name}"),
            )
        except FileNotFoundError as exc:
            raise fail(str(exc)) from None
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")
