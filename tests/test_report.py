"""The report: every name and value the experiment's files hold is shown as text, never as markup, and each
run writes a folder of its own."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import run_cli, toy_crops
from toonvision.data.files import read_json, write_json
from toonvision.data.workspace import Workspace

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


def make_experiment(ws: Workspace) -> tuple[Path, Path]:
    """An experiment and a training run as 'compare', 'train' and 'explain' leave them, with untrained
    models (the report reads files; it does not care how good the models are) and odd names everywhere."""
    from toonvision.data.samples import find_samples
    from toonvision.data.splitting import plan_split
    from toonvision.figures.common import save_message
    from toonvision.figures.training import draw_experiment, plot_history
    from toonvision.learning.experiments import Experiment, RunResult, write_summary
    from toonvision.learning.models import create_model
    from toonvision.learning.training import TrainConfig, save_model

    toy_crops(ws, per_label=2)
    plan = plan_split(find_samples(ws), seed=0)
    configs = (TrainConfig(name=BEST, epochs=2), TrainConfig(name="plain", epochs=2))
    exp = Experiment(name=EXPERIMENT, configs=configs, runs=2)
    folder = ws.runs / "compare" / EXPERIMENT
    write_json(folder / "experiment.json", {**exp.identity(), "runs": 2})
    history = {"accuracy": [0.5, 0.7], "val_accuracy": [0.5, 0.6], "loss": [0.7, 0.5], "val_loss": [0.7, 0.6]}
    results = [
        RunResult(run, c.name, run, history, {"accuracy": acc + run / 10, "loss": 0.5, "n": 4}, 1.0)
        for run in range(2)
        for c, acc in zip(configs, (0.8, 0.6), strict=True)
    ]
    write_summary(folder, exp, results)
    draw_experiment(folder, [c.name for c in configs], results, "binary")
    best = save_model(create_model("small_convnet"), folder / "best" / f"{BEST}.keras")
    write_json(best.with_suffix(".json"), {**results[0].to_dict(), "config": configs[0].to_dict()})
    write_json(best.with_suffix(".split.json"), plan)
    save_message("a heatmap", folder / "best" / "explain" / BEST / f"{CROP}.gradcam.png")

    run = ws.runs / "train" / RUN
    save_model(create_model("small_convnet"), run / "model.keras")
    write_json(run / "config.json", {**replace(configs[1], name="run&<config>").to_dict(), "counts": {"train": 7}})
    write_json(run / "metrics.json", {"test": {"accuracy": 0.5, "loss": 0.7, "n": 4}, "params": 12345})
    write_json(run / "split.json", plan)
    plot_history(history, run / "history.png", "history")

    # Values a user edited by hand, with markup in them.
    identity = read_json(folder / "experiment.json")
    write_json(folder / "experiment.json", {**identity, "seed": MARKUP})
    write_json(run / "metrics.json", {**read_json(run / "metrics.json"), "params": MARKUP})
    write_json(run / "config.json", {**read_json(run / "config.json"), "epochs": MARKUP, "counts": {MARKUP: 7}})
    return folder, run


def sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_the_report_escapes_every_name_and_value_and_never_replaces_an_earlier_one(tmp_path):
    ws = Workspace(tmp_path / "ws").init()
    folder, run = make_experiment(ws)

    done = run_cli("report", EXPERIMENT, "--root", str(ws.root), "--with", str(run), timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = folder / "report" / "report.html"
    assert report.is_file()
    page = report.read_text(encoding="utf-8")

    parsed = Page(page)
    assert parsed.problems == [] and parsed.open == []
    assert "script" not in parsed.tags
    assert "<script>" not in page and MARKUP not in page and "<b>x" not in page
    text = "".join(parsed.text)
    # Each name and value is in the page's text, so it was escaped (or it would have been read as a tag).
    for shown in (f"ToonVision experiment: {EXPERIMENT}", BEST, RUN, CROP, "run&<config>", MARKUP):
        assert shown in text, shown
    assert "a&amp;b&lt;c" in page and "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    expected = ["summary", "dataset", "architecture", "curves", "comparison", "evaluation", "heatmaps"]
    assert {*expected, f"run-{RUN}", "settings"} <= set(parsed.ids)
    assert 'class="missing"' not in page
    pictures = sha(report.parent)
    assert {"dataset_balance.png", "split_balance.png", "crop_sizes.png", "architecture_small_convnet.png"} <= set(
        pictures
    )

    # Again, with --out: the HTML goes where asked, its pictures to a new folder; the first report is intact.
    out = tmp_path / "elsewhere" / "mine.html"
    again = run_cli("report", str(folder), "--root", str(ws.root), "--out", str(out), "--no-compute", timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert out.is_file() and "a&amp;b&lt;c" in out.read_text(encoding="utf-8")
    assert (folder / "report-2" / "architecture_small_convnet.png").is_file()
    assert not (folder / "report-2" / "report.html").exists()
    assert sha(report.parent) == pictures


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
