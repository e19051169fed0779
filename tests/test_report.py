"""The report: every name and value the experiment's files hold is shown as text, never as markup."""

from __future__ import annotations

import sys
from dataclasses import replace
from html.parser import HTMLParser

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason='Windows file names cannot hold < > or "')

EXPERIMENT = "a&b<c"
BEST = "base&line"  # the configuration ahead, so its kept model is evaluated and its heatmaps shown
RUN = 'r&d<"1">'  # a training run folder added with --with
CROP = "<script>"  # a crop explained by 'explain': its heatmap figure is captioned by this stem
MARKUP = "<b>x</b>"  # what a user typed into a JSON file
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """The tags, ids and text of a page, and any tag closed out of order."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: set[str] = set()
        self.ids: list[str] = []
        self.text: list[str] = []
        self.problems: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.ids += [value or "" for name, value in attrs if name == "id"]
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.open[-1] if self.open else '-'}>")
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_every_branch_of_the_templates_renders_and_escapes(tmp_path):
    """What an unfinished experiment shows (no crops, no evaluation, no heatmaps, too few runs for a test,
    pictures missing), with markup in every value: rendered from a hand-made context, no model needed."""
    from toonvision.report.gather import (
        Comparison,
        Dataset,
        Figure,
        Heatmaps,
        ModelEvaluation,
        PairTest,
        PredictionRow,
        Predictions,
        Report,
        Reproduce,
        Section,
        Settings,
        Spread,
        Summary,
        TrainingRun,
    )
    from toonvision.report.render import render

    gone = Figure.at(tmp_path / f"{CROP}.png")
    spread = Spread(MARKUP, 0.5, MARKUP, 0.5, 0.5, 0.5)
    summary = Summary(MARKUP, 1, [MARKUP], {MARKUP: spread}, [PairTest(MARKUP, MARKUP, "accuracy")], tmp_path / CROP)
    lost = ModelEvaluation(MARKUP, tmp_path / CROP, error=f"{CROP} does not exist")
    unevaluated = ModelEvaluation(MARKUP, tmp_path / CROP)
    run = TrainingRun(tmp_path / RUN, MARKUP, MARKUP, MARKUP, MARKUP, None, [], gone, unevaluated)
    settings = Settings([(MARKUP, MARKUP)], [MARKUP], [[MARKUP, MARKUP]], [(RUN, [(MARKUP, MARKUP)])], {}, None)
    sections = [
        Section("summary", "Summary", "summary", summary),
        Section("dataset", "Dataset", "dataset", Dataset(tmp_path / EXPERIMENT, [])),
        Section("architecture", "Architecture", "architecture", []),
        Section("curves", "Training curves", "curves", gone),
        Section("comparison", "Comparison", "comparison", Comparison(gone, [(MARKUP, MARKUP, spread)], [])),
        Section("evaluation", MARKUP, "evaluation", lost),
        Section("heatmaps", MARKUP, "heatmaps", Heatmaps(tmp_path / CROP, [], None, [], [])),
        Section(f"run-{RUN}", RUN, "run", run),
        Section("predictions", MARKUP, "predictions", Predictions([], [PredictionRow(CROP, MARKUP, 0.5, "", "")], [])),
        Section(
            "settings",
            "Settings",
            "settings",
            replace(settings, reproduce=Reproduce(tmp_path, [MARKUP], *[MARKUP] * 6)),
        ),
    ]
    page = render(Report(EXPERIMENT, MARKUP, 1, MARKUP, tmp_path, MARKUP, sections))

    parsed = Page(page)
    assert parsed.problems == [] and parsed.open == []
    assert "<script>" not in page and MARKUP not in page and "<b>x" not in page
    assert {"summary", "settings", f"run-{RUN}"} <= set(parsed.ids)
    text = "".join(parsed.text)
    for note in (
        "at least 2 runs of each are needed for a test",
        f"No crops in {tmp_path / EXPERIMENT} now.",
        f"(no picture: {tmp_path / CROP}.png is missing)",
        f"{CROP} does not exist",
        f"Not evaluated: run toonvision evaluate {tmp_path / CROP}.",
        f"No heatmaps yet. Add them with toonvision explain {tmp_path / CROP} CROP...",
        "0 of 0 boxes fully right",
    ):
        assert note in text, note
    assert "trained on" not in text  # a run whose metrics.json has no "params" goes without its sentence
