"""Which models a pipeline runs: the ones named, the workspace's for every task not named, and the shipped ones.

The workspace's best classifier per task (highest recorded test accuracy) and its newest finished detector are
the defaults; a model named for a task replaces that task's default only. A task the workspace has no model for
takes the model ToonVision ships for it (toonvision.learning.zoo), unless ``shipped`` is off. Where a model
found this way has an ONNX export beside it, the export runs (ONNX Runtime: the same probabilities to 1e-4, no
TensorFlow start-up, a thread count of its own); a .keras file named by the caller is what the caller wants, and
runs as given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toonvision.data.taxonomy import TASKS
from toonvision.learning.cluster import first_line
from toonvision.learning.model_files import ModelError, ModelSource, find_best_models, locate_model, newest_detector
from toonvision.learning.tasks import DETECT, is_detector
from toonvision.learning.zoo import RETRAIN
from toonvision.serving.thresholds import BOX_SCORE, MAX_BOXES


def _shipped(task: str, load: Callable[[], Any]) -> Any:
    """A shipped model, loaded; ModelError saying how to get it back when its file is damaged."""
    try:
        return load()
    except Exception as exc:  # ONNX Runtime, Keras and the metadata each fail their own way: all mean "damaged"
        raise ModelError(f"the {task} model ToonVision ships cannot be loaded ({first_line(exc)}): {RETRAIN}") from None


def finds_boxes(source: ModelSource) -> bool:
    """Whether a located model is a detector: its run says so, or, for an ONNX file with nothing recorded
    beside it, the metadata its export wrote."""
    if source.task is not None or not source.is_onnx:
        return source.is_detector
    from toonvision.serving.inference import onnx_metadata, onnx_session

    try:
        return is_detector(onnx_metadata(onnx_session(source.path, 1)).get("task"))
    except ValueError:
        return False


def _runnable(source: ModelSource, as_given: set[Path]) -> Path:
    onnx = source.sibling(".onnx")
    if source.is_onnx or source.path.resolve() in as_given or not onnx.is_file():
        return source.path
    return onnx


def load_models(
    root: Path,
    models: Sequence[str | Path] = (),
    detector: str | Path | None = None,
    conf: float = BOX_SCORE,
    threads: int | None = None,
    with_detector: bool = True,
    shipped: bool = True,
    max_det: int = MAX_BOXES,
) -> tuple[Any | None, dict[str, Any], dict[str, str]]:
    """The detector (None when the workspace has none, none is named and none ships, or without
    ``with_detector``), the classifiers by task, and the file each came from (task -> path; "detect" for the
    detector). With ``shipped``, tasks the workspace has no model for take the package's own. ModelError names
    what cannot be loaded."""
    from toonvision.learning.backend import configure_threads, quiet_tensorflow
    from toonvision.learning.zoo import is_shipped
    from toonvision.learning.zoo import shipped as shipped_model
    from toonvision.serving.detector import Detector
    from toonvision.serving.inference import Classifier

    root = Path(root)
    runs = root / "runs"
    asked = [(Path(p), locate_model(p, root)) for p in [*models, *([detector] if detector is not None else [])]]
    as_given = {s.path.resolve() for p, s in asked if p.suffix == ".keras"}
    named = [s for _, s in asked[: len(models)]]
    detectors = [s for s in named if finds_boxes(s)]
    if detector is not None:
        detectors = [asked[-1][1]]
    if len(detectors) > 1:
        raise ModelError(f"two detectors named ({detectors[0].path}, {detectors[1].path}): give one")
    detector_file = _runnable(detectors[0], as_given) if detectors else None
    if detector_file is None and with_detector and (newest := newest_detector(runs)) is not None:
        detector_file = newest.path
    if detector_file is None and with_detector and shipped and (ours := shipped_model(DETECT)) is not None:
        detector_file = ours.path
    if not with_detector:
        detector_file = None
    chosen = [_runnable(s, as_given) for s in named if not finds_boxes(s)]
    if not all(p.suffix.lower() == ".onnx" for p in [*chosen, *([detector_file] if detector_file else [])]):
        quiet_tensorflow()
        configure_threads(threads)
    classifiers: dict[str, Any] = {}
    used: dict[str, str] = {}
    for path in chosen:
        clf = Classifier.load(path, threads=threads)
        if clf.task in classifiers:
            raise ModelError(f"two {clf.task} models named ({used[clf.task]}, {path}): give one")
        classifiers[clf.task], used[clf.task] = clf, str(path)
    best = find_best_models(runs, tuple(t for t in TASKS if t not in classifiers))
    for task, source in best.items():
        path = _runnable(source, as_given)
        if path.suffix.lower() != ".onnx":
            quiet_tensorflow()
            configure_threads(threads)
        classifiers[task], used[task] = Classifier.load(path, threads=threads), str(path)
    for task in TASKS if shipped else ():
        if task not in classifiers and (ours := shipped_model(task)) is not None:
            classifiers[task] = _shipped(task, lambda p=ours.path: Classifier.load(p, threads=threads))
            used[task] = str(ours.path)
    found = None
    if detector_file is not None:

        def load() -> Any:
            return Detector.load(detector_file, threshold=conf, max_det=max_det, threads=threads)

        found = _shipped(DETECT, load) if is_shipped(detector_file) else load()
        used = {"detect": str(detector_file), **used}
    return found, classifiers, used
