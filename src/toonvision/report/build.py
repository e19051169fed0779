"""The report a person reads: one self-contained HTML file per experiment.

    path = build_report(Workspace("img"), Path("img/runs/compare/binary-baseline-vs-optimized"))

It tells the experiment top to bottom: what was compared and the verdict, the dataset, the architectures,
the averaged training curves, the box plots with the statistical test, the best model's confusion matrix
and wrong predictions, what the model looks at (heatmaps), any extra runs (suit and name models,
predictions on screenshots), and every setting. Images are embedded as base64 PNGs so the file opens in
any browser, from a mail attachment or a USB stick, with no server and nothing beside it.

Pictures the experiment lacks and that are cheap to make (dataset plots, architecture drawings, the best
model's evaluation) are made here, into ``<experiment>/report/``; heatmaps are not (they take minutes on
the padded model), the report says which command adds them.
"""

from __future__ import annotations

import base64
import html
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from toonvision.data.files import read_json, write_text_atomic
from toonvision.data.stats import Desired, collect
from toonvision.data.workspace import Workspace
from toonvision.figures.architecture import plot_architecture
from toonvision.figures.dataset import plot_balance, plot_crop_sizes, plot_split_balance
from toonvision.figures.evaluation import draw_evaluation
from toonvision.learning.evaluation import evaluate_source, write_evaluation
from toonvision.learning.experiments import ExperimentRecord as Experiment
from toonvision.learning.model_files import ModelError, load_keras_model, locate_model
from toonvision.learning.models import create_model
from toonvision.serving.prediction import fully_right

METRIC_NOTE = "test accuracy (higher is better) and test loss (lower is better), one point per re-split run"


@dataclass
class Section:
    anchor: str
    title: str
    body: str


def esc(value: object) -> str:
    return html.escape(str(value))


def figure(path: Path | None, caption: str = "", *, missing: str = "") -> str:
    """An embedded PNG with a caption; a visible note instead when the picture does not exist."""
    if path is None or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return f'<p class="missing">{esc(missing or f"(no picture: {path} is missing)")}</p>'
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(caption or Path(path).name)}" src="data:image/png;base64,{data}">{cap}</figure>'


def table(header: Sequence[str], rows: Sequence[Sequence[object]], *, numeric_from: int = 1) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"num" if i >= numeric_from else ""}">{esc(v)}</td>' for i, v in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _read(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


# --- sections ---


def verdict(exp: Experiment) -> str:
    """The comparison in words: which configuration is ahead and whether the runs can tell them apart."""
    stats = exp.summary.get("summary", {})
    ranking = exp.ranking()
    if not ranking:
        return "<p>No configuration has finished a run.</p>"
    n = exp.summary.get("runs", 0)
    parts = []
    for name in ranking:
        acc = stats.get(name, {}).get("accuracy")
        if acc:
            parts.append(
                f"<b>{esc(name)}</b>: median test accuracy <b>{acc['median']:.4f}</b> "
                f"(middle half {acc['q1']:.4f}&ndash;{acc['q3']:.4f}, range {acc['min']:.4f}&ndash;{acc['max']:.4f})"
            )
    text = f"<p>Over {n} re-split run{'s' if n != 1 else ''} of the {esc(exp.task)} task:</p><ul>"
    text += "".join(f"<li>{p}</li>" for p in parts) + "</ul>"
    for t in exp.summary.get("tests", []):
        if t.get("metric") != "accuracy":
            continue
        if "p_value" not in t:
            text += f"<p>{esc(t['a'])} vs {esc(t['b'])}: at least 2 runs of each are needed for a test.</p>"
            continue
        significant = t["p_value"] < 0.05
        text += (
            f"<p>{esc(t['b'])} minus {esc(t['a'])}: median accuracy difference {t['median_diff']:+.4f}, "
            f"95% bootstrap interval [{t['ci95_low']:+.4f}, {t['ci95_high']:+.4f}], Mann-Whitney p = "
            f"{t['p_value']:.3g}. "
            + (
                "<b>The difference is significant at the 5% level.</b>"
                if significant
                else "<b>The runs cannot tell them apart</b> (p &ge; 0.05"
                + (f"; with {n} runs only a large difference could show" if n < 20 else "")
                + ")."
            )
            + "</p>"
        )
    return text


def settings_section(exp: Experiment, extras: Sequence[Path]) -> str:
    keys = sorted({k for c in exp.configs for k in c if k != "name"})
    rows = [[k, *(c.get(k, "") for c in exp.configs)] for k in keys]
    cfg_table = table(["setting", *(c["name"] for c in exp.configs)], rows)
    ident = {k: v for k, v in exp.identity.items() if k != "configs"}
    env = environment()
    out = "<h3>Experiment</h3>" + table(["key", "value"], [[k, v] for k, v in ident.items()], numeric_from=2)
    out += "<h3>Configurations</h3>" + cfg_table
    for folder in extras:
        cfg = _read(folder / "config.json")
        if cfg:
            out += f"<h3>{esc(folder.name)}</h3>" + table(
                ["setting", "value"], [[k, v] for k, v in sorted(cfg.items())], numeric_from=2
            )
    out += "<h3>Environment</h3>" + table(["", ""], [[k, v] for k, v in env.items()], numeric_from=2)
    out += (
        f"<p>Reproduce: <code>toonvision compare --root {esc(_root_of(exp.folder))} "
        + " ".join(f"--config {esc(c['name'])}" for c in exp.configs)
        + f" --task {esc(exp.task)} --runs {exp.identity.get('runs', '')} --epochs {esc(_epochs(exp))}"
        + f" --seed {exp.identity.get('seed', 0)} --precision {esc(_precision(exp))} --name {esc(exp.name)}</code></p>"
    )
    return out


def _precision(exp: Experiment) -> object:
    # Experiments from before the setting existed trained in float32.
    return exp.configs[0].get("precision", "float32") if exp.configs else "float32"


def _epochs(exp: Experiment) -> object:
    return exp.configs[0].get("epochs", "") if exp.configs else ""


def _root_of(folder: Path) -> Path:
    # <root>/runs/compare/<name>
    return folder.parent.parent.parent


def environment() -> dict[str, str]:
    import os

    from toonvision import __version__

    versions = {"toonvision": __version__, "python": platform.python_version()}
    for module in ("keras", "tensorflow", "numpy"):
        try:
            from importlib.metadata import version

            versions[module] = version(module if module != "tensorflow" else _tf_dist())
        except Exception:
            versions[module] = "?"
    versions["machine"] = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    return versions


def _tf_dist() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("tensorflow-cpu")
        return "tensorflow-cpu"
    except PackageNotFoundError:
        return "tensorflow"


def dataset_section(ws: Workspace, assets: Path) -> str:
    st = collect(ws)
    if not st.total:
        return f"<p class='missing'>No crops in {esc(ws.root)} now.</p>"
    desired = Desired()
    balance = plot_balance(st, desired, assets / "dataset_balance.png")
    splits = plot_split_balance(st, assets / "split_balance.png")
    sizes = plot_crop_sizes(st, assets / "crop_sizes.png")
    split_counts: dict[str, int] = {}
    for (split, _kind), n in st.per_split.items():
        split_counts[split] = split_counts.get(split, 0) + n
    rows = [["crops", st.total], *([k, v] for k, v in sorted(st.per_kind.items())), ["labels", len(st.per_label)]]
    rows += [[f"in {k}", v] for k, v in split_counts.items()]
    return (
        "<p>The crops in the workspace now (the experiment re-splits them per run; the folders show one split)."
        " Green: the desired count, red: the average.</p>"
        + table(["", "count"], rows)
        + figure(balance, "Crops per label, per class, per suit and per Toon animal")
        + figure(splits, "Train / validate / test per class")
        + figure(sizes, "Crop sizes: the model stretches every crop to 600x200 (height x width)")
    )


def architecture_section(exp: Experiment, assets: Path) -> str:
    out, seen = "", set()
    for cfg in exp.configs:
        key = (cfg.get("model", "small_convnet"), cfg.get("dropout", 0.0))
        if key[0] in {k[0] for k in seen}:
            continue
        seen.add(key)
        model = create_model(key[0], exp.task, dropout=float(key[1] or 0.0))
        path = plot_architecture(
            model, assets / f"architecture_{key[0]}.png", f"{key[0]}: {model.count_params():,} parameters"
        )
        rows = [
            [layer.name, type(layer).__name__, "x".join(str(v) for v in layer.output.shape[1:]), layer.count_params()]
            for layer in model.layers
        ]
        used_by = ", ".join(c["name"] for c in exp.configs if c.get("model", "small_convnet") == key[0])
        out += f"<h3>{esc(key[0])} (used by {esc(used_by)})</h3>" + figure(
            path, "Each box is a layer: its height and width follow the output's size, its depth the channels"
        )
        out += f"<details><summary>Layer table ({model.count_params():,} parameters)</summary>"
        out += table(["layer", "kind", "output", "parameters"], rows, numeric_from=3) + "</details>"
    return out


def comparison_section(exp: Experiment) -> str:
    stats = exp.summary.get("summary", {})
    rows = []
    for name in exp.ranking():
        for metric in ("accuracy", "loss"):
            s = stats.get(name, {}).get(metric)
            if s:
                rows.append([name, metric, s["n"], *(f"{s[k]:.4f}" for k in ("median", "q1", "q3", "min", "max"))])
    tests = [
        [
            t["a"],
            t["b"],
            t["metric"],
            f"{t['median_diff']:+.4f}",
            f"[{t['ci95_low']:+.4f}, {t['ci95_high']:+.4f}]",
            f"{t['p_value']:.3g}",
        ]
        for t in exp.summary.get("tests", [])
        if "p_value" in t
    ]
    out = figure(exp.folder / "boxplots.png", f"Box plots of {METRIC_NOTE}")
    out += table(["model", "metric", "runs", "median", "q1", "q3", "min", "max"], rows, numeric_from=2)
    if tests:
        out += (
            "<p>Two-sided Mann-Whitney U test on the per-run test metrics, and a bootstrap 95% interval of the "
            "difference of medians (b &minus; a):</p>"
        )
        out += table(["a", "b", "metric", "median b - a", "95% interval", "p-value"], tests, numeric_from=3)
    return out


def evaluation_block(ws: Workspace, model_path: Path, title: str, compute: bool) -> tuple[str, dict[str, Any] | None]:
    """Confusion matrix, per-class table and wrong predictions of one saved model (evaluated here if the
    evaluation is missing and ``compute`` is on)."""
    try:
        located = locate_model(model_path)
    except ModelError as exc:
        return f"<p class='missing'>{esc(exc)}</p>", None
    folder = located.latest_results_dir("evaluate")
    if (folder is None or not (folder / "evaluation.json").is_file()) and compute:
        model = load_keras_model(located.path)
        ev, data = evaluate_source(ws, located, model, located.resolve_task(int(model.output_shape[-1])))
        folder = located.results_dir("evaluate")
        write_evaluation(ev, folder)
        draw_evaluation(ev, data, folder)
    ev = _read(folder / "evaluation.json") if folder else None
    if ev is None:
        return f"<p class='missing'>Not evaluated: run <code>toonvision evaluate {esc(model_path)}</code>.</p>", None
    test = ev.get("test") or {}
    out = f"<h3>{esc(title)}</h3>"
    if test:
        out += (
            f"<p>Test accuracy <b>{test['accuracy']:.4f}</b>, loss {test['loss']:.4f}, on {test['n']} crops "
            f"it never trained on. Model: <code>{esc(located.path)}</code>.</p>"
        )
    report = ev.get("report") or {}
    rows = [
        [c, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1-score']:.3f}", int(r["support"])]
        for c in ev.get("classes", [])
        if (r := report.get(c)) and r.get("support")
    ]
    out += figure(folder / "confusion.png", "Confusion matrix: rows are the true class, columns the prediction")
    if rows:
        out += "<details><summary>Per-class precision and recall</summary>"
        out += table(["class", "precision", "recall", "f1", "support"], rows) + "</details>"
    n_wrong = len(ev.get("wrong", []))
    out += figure(
        folder / "wrong_predictions.png",
        f"{n_wrong} wrong predictions over the whole dataset, highest error first "
        "(E: how far the output is from the truth, A: the model's output)",
    )
    return out, ev


def heatmap_section(exp: Experiment, config: str) -> str:
    try:
        folder = locate_model(exp.best_model(config)).latest_results_dir("explain")
    except ModelError:
        folder = None
    folder = folder or exp.folder / "best" / "explain" / config
    crops = sorted(p for p in folder.glob("*.gradcam.png") if not p.name.startswith("wrong."))
    out = ""
    if crops:
        out += (
            "<p>Grad-CAM of the predicted class (alone and over the crop), with Grad-CAM++ and Score-CAM beside it; "
            "r is each method's agreement with Grad-CAM. Warm colours: where the evidence is.</p>"
        )
        out += "".join(figure(p, p.name.removesuffix(".gradcam.png")) for p in crops)
    out += (
        figure(
            folder / "wrong.gradcam.png",
            "Heatmaps of the worst mistakes: what the model looked at when it was wrong",
            missing="",
        )
        if (folder / "wrong.gradcam.png").is_file()
        else ""
    )
    activations = sorted(folder.glob("*.activations.png"))
    filters = sorted(folder.glob("filters.*.png"))
    if activations or filters:
        out += "<details><summary>Intermediate activations and filter patterns</summary>"
        out += "".join(figure(p, "Every convolution and pooling channel for one crop") for p in activations)
        out += "".join(figure(p, "Input patterns each filter responds to most") for p in filters)
        out += "</details>"
    if not out:
        model = exp.best_model(config)
        out = (
            "<p class='missing'>No heatmaps yet. Add them with <code>toonvision explain "
            f"{esc(model)} CROP...</code> and <code>toonvision explain {esc(model)} --wrong</code>, then run "
            "<code>toonvision report</code> again.</p>"
        )
    return out


def extra_section(ws: Workspace, folder: Path, compute: bool) -> Section | None:
    """A training run folder (runs/train/...) or a folder of predictions on screenshots."""
    if (folder / "model.keras").is_file():
        cfg = _read(folder / "config.json") or {}
        metrics = _read(folder / "metrics.json") or {}
        task = cfg.get("task", "?")
        body = (
            f"<p>{esc(task)} task, configuration {esc(cfg.get('name', '?'))} ({esc(cfg.get('model', '?'))}, "
            f"{cfg.get('epochs', '?')} epochs, {metrics.get('params', '?'):,} parameters), trained on "
            f"{_counts(cfg.get('counts', {}))} crops.</p>"
            if isinstance(metrics.get("params"), int)
            else ""
        )
        body += figure(folder / "history.png", "Training and validation accuracy and loss per epoch")
        block, _ = evaluation_block(ws, folder, f"{task} model on its test split", compute)
        return Section(f"run-{folder.name}", f"{task.capitalize()} model: {folder.name}", body + block)
    pictures = sorted(folder.glob("*.predicted.png"))
    if pictures:
        preds = _read(folder / "predictions.json") or {}
        body = (
            "<p>Each box of a screenshot the models never saw, with the predicted label and confidence, in the "
            "colours of the suits (Toons in the Toon colour).</p>"
        )
        if preds.get("onnx"):
            names = ", ".join(f"<code>{esc(Path(path).name)}</code>" for path in preds["onnx"].values())
            body += f"<p>Classified as a bot would: the models exported to ONNX ({names}), run by ONNX Runtime.</p>"
        rows = [
            [
                Path(p["source"]).name,
                p["label"],
                f"{(p.get('name_confidence') or p.get('kind_confidence')):.3f}",
                p.get("true_label") or "",
                "yes" if fully_right(p) else ("no" if p.get("true_label") else ""),
            ]
            for p in preds.get("predictions", [])
        ]
        if rows:
            right = sum(r[4] == "yes" for r in rows)
            judged = sum(r[4] != "" for r in rows)
            body += f"<p><b>{right} of {judged}</b> boxes fully right (kind, suit and name).</p>"
        body += "".join(figure(p, p.name.removesuffix(".predicted.png")) for p in pictures)
        if rows:
            body += "<details><summary>Every box</summary>"
            body += table(["screenshot", "prediction", "confidence", "true label", "right"], rows, numeric_from=2)
            body += "</details>"
        return Section("predictions", "Predictions on screenshots", body)
    return None


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {split}" for split, n in counts.items()) or "?"


# --- the page ---

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.sub{color:#666;margin-top:0}nav ol{columns:2}figure{margin:1em 0}
img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:.25em .6em}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.missing{color:#a15c00;background:#fff6e5;padding:.5em;border-left:3px solid #f0ad4e}
.key{background:#f3f8ff;border-left:4px solid #3b7dd8;padding:.2em 1em}code{background:#f4f4f4;padding:0 .2em}
details{margin:.6em 0}summary{cursor:pointer;color:#3b7dd8}
"""


def render(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<li><a href="#{s.anchor}">{esc(s.title)}</a></li>' for s in sections)
    body = "".join(f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
        f'<body><h1>{esc(title)}</h1><p class="sub">{esc(subtitle)}</p><nav><ol>{nav}</ol></nav>{body}'
        "</body></html>\n"
    )


def build_report(
    ws: Workspace,
    folder: Path,
    *,
    extras: Sequence[Path] = (),
    out: Path | None = None,
    compute: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> Path:
    """Write ``<experiment>/report.html`` (or ``out``) and return its path."""
    step = on_step or (lambda _name: None)
    exp = Experiment.load(folder)
    assets = folder / "report"
    assets.mkdir(parents=True, exist_ok=True)
    ranking = exp.ranking()
    best = ranking[0] if ranking else None

    sections = []
    step("summary")
    key = "<div class='key'>" + verdict(exp) + "</div>"
    if best:
        key += (
            f"<p>The best configuration is <b>{esc(best)}</b>; its best run's model "
            f"(<code>{esc(exp.best_model(best))}</code>) is evaluated below.</p>"
        )
    sections.append(Section("summary", "Summary", key))
    step("dataset")
    sections.append(Section("dataset", "Dataset", dataset_section(ws, assets)))
    step("architecture")
    sections.append(Section("architecture", "Architecture", architecture_section(exp, assets)))
    step("curves")
    sections.append(
        Section(
            "curves",
            "Training curves",
            "<p>Accuracy and loss per epoch on the training and validation splits: each run faint, the mean "
            "bold. A validation curve that turns up while training keeps falling means overfitting.</p>"
            + figure(folder / "history.png", "Averaged training curves"),
        )
    )
    step("comparison")
    sections.append(Section("comparison", "Comparison", comparison_section(exp)))
    step("evaluation")
    if best:
        block, _ = evaluation_block(
            ws, exp.best_model(best), f"{best}: the best model of the best configuration", compute
        )
        sections.append(Section("evaluation", "Best model: confusion matrix and mistakes", block))
        sections.append(Section("heatmaps", "What the model looks at", heatmap_section(exp, best)))
    for extra in extras:
        step(f"extra {Path(extra).name}")
        section = extra_section(ws, Path(extra), compute)
        if section:
            sections.append(section)
    step("settings")
    sections.append(Section("settings", "Settings", settings_section(exp, [Path(e) for e in extras])))

    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    page = render(
        f"ToonVision experiment: {exp.name}",
        f"{exp.task} task, {len(exp.configs)} configurations, {exp.summary.get('runs', 0)} runs. "
        f"Workspace {ws.root}. Written {when}.",
        sections,
    )
    path = out or folder / "report.html"
    write_text_atomic(path, page)
    return path
