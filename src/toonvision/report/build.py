"""The report a person reads: one self-contained HTML file per experiment.

    path = build_report(Workspace("img"), Path("img/runs/compare/binary-baseline-vs-optimized"))

It tells the experiment top to bottom: what was compared and the verdict, the dataset, the architectures,
the averaged training curves, the box plots with the statistical test, the best model's confusion matrix
and wrong predictions, what the model looks at (heatmaps), any extra runs (suit, name and animal models,
predictions on screenshots), and every setting. Images are embedded as base64 PNGs so the file opens in
any browser, from a mail attachment or a USB stick, with no server and nothing beside it.

A report is made in two steps: :func:`toonvision.report.gather.gather` asks the stages what there is to
show (drawing the pictures that are missing and cheap to make), then :func:`toonvision.report.render.render`
writes the page from Jinja2 templates. Each report gets a folder of its own, ``<experiment>/report/``, then
``report-2/``..., holding report.html and the pictures drawn for it, so a new report never replaces the
pictures of an earlier one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from toonvision.data.files import new_run_dir, write_text_atomic
from toonvision.data.workspace import Workspace
from toonvision.learning.experiments import ExperimentRecord
from toonvision.report.gather import gather
from toonvision.report.render import render

REPORT = "report"  # the folder of a report (report, report-2...) and its file's stem


def build_report(
    ws: Workspace,
    folder: Path,
    *,
    extras: Sequence[Path] = (),
    out: Path | None = None,
    compute: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> Path:
    """Write the report of the experiment in ``folder`` into a new ``<experiment>/report[-N]/`` folder, as
    report.html there or as ``out``; returns the HTML's path.

    ``extras`` are training run folders and folders of predictions on screenshots, each shown as a section;
    with ``compute`` a model without an evaluation is evaluated first.
    """
    exp = ExperimentRecord.load(folder)
    assets = new_run_dir(folder, REPORT)
    report = gather(ws, exp, assets, extras=extras, compute=compute, on_step=on_step)
    path = Path(out) if out is not None else assets / f"{REPORT}.html"
    write_text_atomic(path, render(report))
    return path
