"""Gathering a report: what it shows, asked of the stages that know it, as plain data and paths of pictures.

Nothing here writes HTML: :mod:`toonvision.report.render` turns what :func:`gather` returns into the page,
and every word of the page is in its templates. Values are kept as the experiment's files hold them (a
number stays a number, whatever a user typed into a JSON file stays what was typed); the templates format
and escape them.

Pictures the experiment lacks and that are cheap to make (dataset plots, architecture drawings) are made
here into the report's own folder, and a missing evaluation of a model into the model's evaluate folder;
heatmaps are not (they take minutes on the padded model), the report says which command adds them.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from toonvision.data.files import read_json
from toonvision.data.stats import Desired, collect
from toonvision.data.workspace import Workspace
from toonvision.figures.architecture import plot_architecture
from toonvision.figures.dataset import plot_balance, plot_crop_sizes, plot_split_balance
from toonvision.figures.evaluation import draw_evaluation
from toonvision.learning.evaluation import evaluate_classifier
from toonvision.learning.experiments import ExperimentRecord
from toonvision.learning.model_files import ModelError, load_classifier, locate_model
from toonvision.learning.models import create_model
from toonvision.learning.tasks import DETECT, is_detector
from toonvision.learning.training import recipe_note
from toonvision.serving.prediction import fully_right

# --- what the templates receive ---


@dataclass(frozen=True)
class Figure:
    """A picture to embed: ``path`` is where it is (or was looked for); ``exists`` is False when the file is
    missing or empty, and the page says so instead."""

    path: Path
    exists: bool

    @classmethod
    def at(cls, path: Path) -> Figure:
        path = Path(path)
        return cls(path, path.is_file() and path.stat().st_size > 0)


@dataclass(frozen=True)
class Spread:
    """Median, quartiles and range of one metric over an experiment's runs, as summary.json holds them."""

    n: Any
    median: Any
    q1: Any
    q3: Any
    min: Any
    max: Any

    @classmethod
    def of(cls, stats: dict[str, Any]) -> Spread:
        return cls(*(stats.get(k) for k in ("n", "median", "q1", "q3", "min", "max")))


@dataclass(frozen=True)
class PairTest:
    """One statistical test between two configurations; ``p_value`` is None when either had fewer than 2 runs."""

    a: Any
    b: Any
    metric: Any
    median_diff: Any = None
    ci95_low: Any = None
    ci95_high: Any = None
    p_value: Any = None

    @property
    def significant(self) -> bool:
        return is_number(self.p_value) and self.p_value < 0.05

    @classmethod
    def of(cls, test: dict[str, Any]) -> PairTest:
        keys = ("a", "b", "metric", "median_diff", "ci95_low", "ci95_high", "p_value")
        return cls(*(test.get(k) for k in keys))


@dataclass(frozen=True)
class Summary:
    task: Any
    runs: Any
    ranking: list[str]
    accuracy: dict[str, Spread]  # best configuration first; only those with a finished run
    tests: list[PairTest]  # of test accuracy
    best_model: Path | None
    notes: dict[str, str] = field(default_factory=dict)  # what each configuration is, in words

    @property
    def few_runs(self) -> bool:
        # Below 20 runs a Mann-Whitney test can only show a large difference.
        return is_number(self.runs) and self.runs < 20


@dataclass(frozen=True)
class Dataset:
    root: Path
    counts: list[tuple[str, int]]  # empty when the workspace holds no crops
    balance: Figure | None = None
    splits: Figure | None = None
    sizes: Figure | None = None


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str
    output: str
    params: int


@dataclass(frozen=True)
class Architecture:
    model: str
    used_by: list[str]
    params: int
    drawing: Figure
    layers: list[Layer]


@dataclass(frozen=True)
class Comparison:
    boxplots: Figure
    rows: list[tuple[str, str, Spread]]  # configuration, metric, spread
    tests: list[PairTest]  # those with a p-value, every metric


@dataclass(frozen=True)
class ClassRow:
    name: str
    precision: Any
    recall: Any
    f1: Any
    support: Any


@dataclass(frozen=True)
class ModelEvaluation:
    """One saved model's evaluation: ``error`` when the model cannot be found, ``evaluated`` False when it has
    no evaluation (and none was computed)."""

    title: str
    asked: Path  # the model as the report named it
    error: str | None = None
    evaluated: bool = False
    model: Path | None = None  # the model file found
    test: dict[str, Any] = field(default_factory=dict)  # accuracy, loss, n
    classes: list[ClassRow] = field(default_factory=list)
    n_wrong: int = 0
    confusion: Figure | None = None
    wrong: Figure | None = None


@dataclass(frozen=True)
class Heatmaps:
    model: Path
    crops: list[tuple[str, Figure]]  # the crop's file stem, its heatmaps
    wrong: Figure | None
    activations: list[Figure]
    filters: list[Figure]

    @property
    def empty(self) -> bool:
        return not (self.crops or self.wrong or self.activations or self.filters)


@dataclass(frozen=True)
class TrainingRun:
    """A training run folder (runs/train/...) added with --with."""

    folder: Path
    task: Any
    config: Any  # the configuration's name
    model: Any
    epochs: Any
    params: Any  # None when metrics.json does not say
    counts: list[tuple[Any, Any]]  # split, crops
    history: Figure
    evaluation: ModelEvaluation


@dataclass(frozen=True)
class DetectionRun:
    """A detector's run folder added with --with: how it was trained, its newest evaluation (COCO AP), and
    screenshots no model saw with what it found on them."""

    folder: Path
    model: Any
    epochs: Any
    params: Any
    classes: list[Any]
    counts: list[tuple[Any, Any]]  # split, screenshots
    input: str
    history: Figure | None
    evaluated: bool
    judged: Any  # what the evaluation was on
    n_screenshots: Any
    ap50: Any
    ap50_95: Any
    per_class: list[tuple[Any, Any, Any, Any, Any]]  # class, boxes, AP50, AP50:95, recall at IoU 0.5
    by_size: list[tuple[Any, Any, Any, Any]]  # bucket (heights), boxes, AP50, AP50:95
    errors: dict[str, Any]
    pr_curves: Figure | None
    worst: Figure | None
    detected: list[tuple[str, Figure]]  # held-out screenshots with the detected boxes and their classifications
    detected_threshold: Any  # the score a box needed to be drawn there (predictions.json beside them)
    shipped: bool = False  # the detector ToonVision ships, judged on this workspace's screenshots
    weights: str | None = None  # what its training started from (None: random weights)


@dataclass(frozen=True)
class PredictionRow:
    screenshot: str
    label: Any
    confidence: Any
    true_label: Any
    right: str  # "yes", "no", or "" when the box has no true label


@dataclass(frozen=True)
class Predictions:
    """A folder of predictions on screenshots (runs/predict/...) added with --with."""

    onnx: list[str]  # the ONNX files the boxes were classified with
    rows: list[PredictionRow]
    pictures: list[tuple[str, Figure]]  # the screenshot's stem, the annotated copy

    @property
    def right(self) -> int:
        return sum(r.right == "yes" for r in self.rows)

    @property
    def judged(self) -> int:
        return sum(r.right != "" for r in self.rows)


@dataclass(frozen=True)
class Reproduce:
    """The arguments of the compare command that repeats the experiment."""

    root: Path
    configs: list[Any]
    task: Any
    runs: Any
    epochs: Any
    seed: Any
    precision: Any
    name: Any


@dataclass(frozen=True)
class Settings:
    experiment: list[tuple[str, Any]]
    config_names: list[Any]
    config_rows: list[list[Any]]  # a setting, then its value in each configuration
    extras: list[tuple[str, list[tuple[str, Any]]]]  # a --with folder's name, its config.json
    environment: dict[str, str]
    reproduce: Reproduce


@dataclass(frozen=True)
class Section:
    """One section of the page: ``kind`` names its template (templates/<kind>.html.j2), ``data`` is what the
    template shows."""

    anchor: str
    title: str
    kind: str
    data: Any


@dataclass(frozen=True)
class Report:
    name: Any
    task: Any
    configs: int
    runs: Any
    root: Path
    written: str
    sections: list[Section]


# --- asking the stages ---


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def summary(exp: ExperimentRecord) -> Summary:
    ranking = exp.ranking()
    stats = exp.summary.get("summary", {})
    accuracy = {name: Spread.of(acc) for name in ranking if (acc := stats.get(name, {}).get("accuracy"))}
    tests = [PairTest.of(t) for t in exp.summary.get("tests", []) if t.get("metric") == "accuracy"]
    best = exp.best_model(ranking[0]) if ranking else None
    notes = {c["name"]: note for c in exp.configs if (note := recipe_note(c["name"]))}
    return Summary(exp.task, exp.summary.get("runs", 0), ranking, accuracy, tests, best, notes)


def dataset(ws: Workspace, assets: Path) -> Dataset:
    """The crops in the workspace now, with their plots drawn into ``assets``."""
    st = collect(ws)
    if not st.total:
        return Dataset(ws.root, [])
    split_counts: dict[str, int] = {}
    for (split, _kind), n in st.per_split.items():
        split_counts[split] = split_counts.get(split, 0) + n
    counts = [("crops", st.total), *sorted(st.per_kind.items()), ("labels", len(st.per_label))]
    counts += [(f"in {k}", v) for k, v in split_counts.items()]
    return Dataset(
        ws.root,
        counts,
        Figure.at(plot_balance(st, Desired(), assets / "dataset_balance.png")),
        Figure.at(plot_split_balance(st, assets / "split_balance.png")),
        Figure.at(plot_crop_sizes(st, assets / "crop_sizes.png")),
    )


def architectures(exp: ExperimentRecord, assets: Path) -> list[Architecture]:
    """Each model the configurations use, built untrained and drawn into ``assets``."""
    found = []
    seen: set[str] = set()
    for cfg in exp.configs:
        name = cfg.get("model", "small_convnet")
        if name in seen:
            continue
        seen.add(name)
        model = create_model(name, exp.task, dropout=float(cfg.get("dropout", 0.0) or 0.0))
        params = model.count_params()
        drawing = plot_architecture(model, assets / f"architecture_{name}.png", f"{name}: {params:,} parameters")
        layers = [
            Layer(layer.name, type(layer).__name__, "x".join(map(str, layer.output.shape[1:])), layer.count_params())
            for layer in model.layers
        ]
        used_by = [c["name"] for c in exp.configs if c.get("model", "small_convnet") == name]
        found.append(Architecture(name, used_by, params, Figure.at(drawing), layers))
    return found


def comparison(exp: ExperimentRecord) -> Comparison:
    stats = exp.summary.get("summary", {})
    rows = [
        (name, metric, Spread.of(s))
        for name in exp.ranking()
        for metric in ("accuracy", "loss")
        if (s := stats.get(name, {}).get(metric))
    ]
    tests = [PairTest.of(t) for t in exp.summary.get("tests", []) if "p_value" in t]
    return Comparison(Figure.at(exp.folder / "boxplots.png"), rows, tests)


def evaluation(ws: Workspace, model_path: Path, title: str, compute: bool) -> ModelEvaluation:
    """A saved model's latest evaluation; with ``compute``, the model is evaluated first when it has none."""
    try:
        located = locate_model(model_path)
        folder = located.latest_results_dir("evaluate", ws.root)
        if (folder is None or not (folder / "evaluation.json").is_file()) and compute:
            model, task = load_classifier(located)
            judged = evaluate_classifier(ws, located, model, task)
            folder = judged.out
            draw_evaluation(judged.evaluation, judged.data, folder)
    except ModelError as exc:
        return ModelEvaluation(title, model_path, error=str(exc))
    ev = read_json(folder / "evaluation.json") if folder else None
    if ev is None:
        return ModelEvaluation(title, model_path)
    report = ev.get("report") or {}
    classes = [
        ClassRow(c, r.get("precision"), r.get("recall"), r.get("f1-score"), r.get("support"))
        for c in ev.get("classes", [])
        if (r := report.get(c)) and r.get("support")
    ]
    return ModelEvaluation(
        title,
        model_path,
        evaluated=True,
        model=located.path,
        test=ev.get("test") or {},
        classes=classes,
        n_wrong=len(ev.get("wrong", [])),
        confusion=Figure.at(folder / "confusion.png"),
        wrong=Figure.at(folder / "wrong_predictions.png"),
    )


def heatmaps(exp: ExperimentRecord, config: str) -> Heatmaps:
    """What 'explain' made for the kept model of ``config`` (its latest explain folder)."""
    model = exp.best_model(config)
    try:
        folder = locate_model(model).latest_results_dir("explain")
    except ModelError:
        folder = None
    folder = folder or exp.folder / "best" / "explain" / config
    crops = sorted(p for p in folder.glob("*.gradcam.png") if not p.name.startswith("wrong."))
    wrong = folder / "wrong.gradcam.png"
    return Heatmaps(
        model,
        [(p.name.removesuffix(".gradcam.png"), Figure.at(p)) for p in crops],
        Figure.at(wrong) if wrong.is_file() else None,
        [Figure.at(p) for p in sorted(folder.glob("*.activations.png"))],
        [Figure.at(p) for p in sorted(folder.glob("filters.*.png"))],
    )


def training_run(ws: Workspace, folder: Path, compute: bool) -> TrainingRun:
    cfg = read_json(folder / "config.json") or {}
    metrics = read_json(folder / "metrics.json") or {}
    task = cfg.get("task", "?")
    counts = cfg.get("counts")
    return TrainingRun(
        folder,
        task,
        cfg.get("name", "?"),
        cfg.get("model", "?"),
        cfg.get("epochs", "?"),
        metrics.get("params"),
        list(counts.items()) if isinstance(counts, dict) else [],
        Figure.at(folder / "history.png"),
        evaluation(ws, folder, f"{task} model on its test split", compute),
    )


def detection_run(folder: Path, detected: Sequence[Path] = ()) -> DetectionRun:
    """A detector's run folder and its newest evaluation (``toonvision evaluate <run>`` writes it)."""
    evaluations = sorted(folder.glob("evaluate*/evaluation.json"), key=lambda p: p.stat().st_mtime)
    cfg, metrics = read_json(folder / "config.json") or {}, read_json(folder / "metrics.json") or {}
    return _detection(folder, cfg, metrics, evaluations, detected, Figure.at(folder / "history.png"))


def shipped_detection(folder: Path) -> DetectionRun:
    """The evaluation of the detector ToonVision ships (``toonvision evaluate`` of it writes ``folder``), with
    how it was trained from its model card."""
    from toonvision.learning.zoo import card

    recorded = card(DETECT) or {}
    metrics = {"params": recorded.get("parameters")}
    run = _detection(folder, recorded.get("config", {}), metrics, [folder / "evaluation.json"], (), None)
    return replace(run, shipped=True, weights=None)


def is_shipped_evaluation(folder: Path) -> bool:
    """Whether ``folder`` is an evaluation of the detector ToonVision ships."""
    from toonvision.learning.zoo import is_shipped

    ev = read_json(folder / "evaluation.json") or {}
    return ev.get("task") == DETECT and bool(ev.get("model")) and is_shipped(ev["model"])


def _detection(
    folder: Path,
    cfg: dict[str, Any],
    metrics: dict[str, Any],
    evaluations: Sequence[Path],
    detected: Sequence[Path],
    history: Figure | None,
) -> DetectionRun:
    counts = cfg.get("counts")
    ev = (read_json(evaluations[-1]) or {}) if evaluations else {}
    per_class = [
        (name, c.get("truths"), c.get("ap50"), c.get("ap50_95"), c.get("recall50"))
        for name, c in (ev.get("per_class") or {}).items()
    ]
    by_size = [
        (
            f"{bucket} ({values.get('height_px_at_720', '')})",
            values.get("truths"),
            values.get("ap50"),
            values.get("ap50_95"),
        )
        for bucket, values in (ev.get("by_size") or {}).items()
    ]
    where = evaluations[-1].parent if evaluations else None
    return DetectionRun(
        folder,
        cfg.get("model", "?"),
        cfg.get("epochs", "?"),
        metrics.get("params"),
        list(cfg.get("class_names") or []),
        list(counts.items()) if isinstance(counts, dict) else [],
        f"{cfg.get('input_width', '?')}x{cfg.get('input_height', '?')}",
        history,
        bool(ev),
        ev.get("screenshots", ""),
        ev.get("n_screenshots"),
        ev.get("ap50"),
        ev.get("ap50_95"),
        per_class,
        by_size,
        ev.get("errors") or {},
        Figure.at(where / "pr_curves.png") if where else None,
        Figure.at(where / "worst_screenshots.png") if where else None,
        [(p.name.removesuffix(".detected.png"), Figure.at(p)) for p in detected],
        (read_json(detected[0].parent / "predictions.json") or {}).get("detect_threshold") if detected else None,
        weights=cfg.get("weights"),
    )


def predictions(folder: Path) -> Predictions | None:
    """A folder of annotated screenshots and predictions.json; None when it holds no annotated screenshot."""
    pictures = sorted(folder.glob("*.predicted.png"))
    if not pictures:
        return None
    preds = read_json(folder / "predictions.json") or {}
    rows = [
        PredictionRow(
            Path(p["source"]).name,
            p.get("label") or p.get("kind"),
            p.get("confidence"),
            p.get("true_label") or "",
            "yes" if fully_right(p) else ("no" if p.get("true_label") else ""),
        )
        for p in preds.get("predictions", [])
    ]
    onnx = [Path(path).name for path in (preds.get("onnx") or {}).values()]
    return Predictions(onnx, rows, [(p.name.removesuffix(".predicted.png"), Figure.at(p)) for p in pictures])


def settings(exp: ExperimentRecord, extras: Sequence[Path]) -> Settings:
    keys = sorted({k for c in exp.configs for k in c if k != "name"})
    extra_configs = [
        (folder.name, sorted(cfg.items())) for folder in extras if (cfg := read_json(folder / "config.json"))
    ]
    first = exp.configs[0] if exp.configs else {}
    return Settings(
        experiment=[(k, v) for k, v in exp.identity.items() if k != "configs"],
        config_names=[c["name"] for c in exp.configs],
        config_rows=[[k, *(c.get(k, "") for c in exp.configs)] for k in keys],
        extras=extra_configs,
        environment=environment(),
        reproduce=Reproduce(
            # <root>/runs/compare/<name>
            root=exp.folder.parent.parent.parent,
            configs=[c["name"] for c in exp.configs],
            task=exp.task,
            runs=exp.identity.get("runs", ""),
            epochs=first.get("epochs", ""),
            seed=exp.identity.get("seed", 0),
            # Experiments from before the setting existed trained in float32.
            precision=first.get("precision", "float32"),
            name=exp.name,
        ),
    )


def environment() -> dict[str, str]:
    """The versions of what computed the results, and the machine."""
    from toonvision import __version__

    versions = {"toonvision": __version__, "python": platform.python_version()}
    for module in ("keras", "tensorflow", "numpy"):
        try:
            versions[module] = version(module if module != "tensorflow" else _tensorflow_distribution())
        except Exception:
            versions[module] = "?"
    versions["machine"] = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    return versions


def _tensorflow_distribution() -> str:
    try:
        version("tensorflow-cpu")
        return "tensorflow-cpu"
    except PackageNotFoundError:
        return "tensorflow"


def gather(
    ws: Workspace,
    exp: ExperimentRecord,
    assets: Path,
    *,
    extras: Sequence[Path] = (),
    compute: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> Report:
    """Everything the report of ``exp`` shows, its missing pictures drawn into ``assets``."""
    step = on_step or (lambda _name: None)
    step("summary")
    top = summary(exp)
    sections = [Section("summary", "Summary", "summary", top)]
    step("dataset")
    sections.append(Section("dataset", "Dataset", "dataset", dataset(ws, assets)))
    step("architecture")
    sections.append(Section("architecture", "Architecture", "architecture", architectures(exp, assets)))
    step("curves")
    sections.append(Section("curves", "Training curves", "curves", Figure.at(exp.folder / "history.png")))
    step("comparison")
    sections.append(Section("comparison", "Comparison", "comparison", comparison(exp)))
    step("evaluation")
    if top.ranking:
        best = top.ranking[0]
        title = f"{best}: the best model of the best configuration"
        block = evaluation(ws, exp.best_model(best), title, compute)
        sections.append(Section("evaluation", "Best model: confusion matrix and mistakes", "evaluation", block))
        sections.append(Section("heatmaps", "What the model looks at", "heatmaps", heatmaps(exp, best)))
    detected = sorted(p for extra in map(Path, extras) for p in extra.glob("*.detected.png"))
    for extra in map(Path, extras):
        step(f"extra {extra.name}")
        if (extra / "model.keras").is_file() and is_detector((read_json(extra / "config.json") or {}).get("task")):
            sections.append(
                Section(
                    "detection",
                    "Detection: every Toon and Cog in a screenshot",
                    "detection",
                    detection_run(extra, detected),
                )
            )
        elif is_shipped_evaluation(extra):
            title = "The detector ToonVision ships, on the same held-out screenshots"
            sections.append(Section("shipped-detection", title, "detection", shipped_detection(extra)))
        elif (extra / "model.keras").is_file():
            run = training_run(ws, extra, compute)
            title = f"{str(run.task).capitalize()} model: {extra.name}"
            sections.append(Section(f"run-{extra.name}", title, "run", run))
        elif shown := predictions(extra):
            sections.append(Section("predictions", "Predictions on screenshots", "predictions", shown))
    step("settings")
    sections.append(Section("settings", "Settings", "settings", settings(exp, [Path(e) for e in extras])))
    return Report(
        exp.name,
        exp.task,
        len(exp.configs),
        exp.summary.get("runs", 0),
        ws.root,
        datetime.now().strftime("%Y-%m-%d %H:%M"),
        sections,
    )
