"""The report a person reads: one self-contained HTML file per experiment.

    path = build_report(Workspace("img"), Path("img/runs/compare/binary-baseline-vs-optimized"))

It tells the experiment top to bottom: what was compared and the verdict, the dataset, the architectures,
the averaged training curves, the box plots with the statistical test, the best model's confusion matrix
and wrong predictions, what the model looks at (heatmaps), any extra runs (suit and name models,
predictions on screenshots), and every setting. Images are embedded as base64 PNGs so the file opens in
any browser, from a mail attachment or a USB stick, with no server and nothing beside it.

A report is made in two steps: :func:`toonvision.report.gather.gather` asks the stages what there is to
show (drawing the pictures that are missing and cheap to make), then :func:`toonvision.report.render.render`
writes the page from Jinja2 templates. Pictures drawn for it go to ``<experiment>/report/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from toonvision.data.files import write_text_atomic
from toonvision.data.workspace import Workspace
from toonvision.learning.experiments import ExperimentRecord
from toonvision.report.gather import gather
from toonvision.report.render import render


def build_report(
    ws: Workspace,
    folder: Path,
    *,
    extras: Sequence[Path] = (),
    out: Path | None = None,
    compute: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> Path:
    """Write ``<experiment>/report.html`` (or ``out``) and return its path.

    ``extras`` are training run folders and folders of predictions on screenshots, each shown as a section;
    with ``compute`` a model without an evaluation is evaluated first.
    """
    exp = ExperimentRecord.load(folder)
    assets = folder / "report"
    assets.mkdir(parents=True, exist_ok=True)
    report = gather(ws, exp, assets, extras=extras, compute=compute, on_step=on_step)
    path = Path(out) if out is not None else folder / "report.html"
    write_text_atomic(path, render(report))
    return path
