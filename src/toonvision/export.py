"""Exporting a trained model for serving: ``toonvision export`` and :func:`export_onnx`.

    from toonvision.export import export_onnx
    path = export_onnx("img/runs/train/binary-model")     # -> img/runs/train/binary-model/model.onnx
    clf = Classifier.load(path)                           # runs it with ONNX Runtime, no TensorFlow

The model's inference graph (``training=False``: augmentation and dropout are gone, batch normalization
uses its moving statistics) is traced as a ``tf.function`` and converted by tf2onnx. Keras 3's own
``model.export(format="onnx")`` uses tf2onnx too, but calls the model without ``training=False``, so
the augmentation layers' random ops (StatelessRandomUniformV2, ImageProjectiveTransformV3) end up in the
graph, which ONNX cannot express and ONNX Runtime then refuses to load; it also refuses a functional model
loaded from a file unless given an input signature.

What the Classifier needs travels inside the file, as JSON values in the model's ``metadata_props``
under ``toonvision.*``: the task, the class names, whether crops are padded or stretched, the input size,
and where the model came from. Every export is checked before it is written: ONNX Runtime and Keras must
give the same probabilities to 1e-4 on random crops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from toonvision.inference import ONNX_META_PREFIX, ONNX_SUFFIX, TASK_BY_UNITS, model_metadata, resolve_task
from toonvision.taxonomy import task_classes

if TYPE_CHECKING:
    import keras

FORMATS = ("onnx",)
# Pinned rather than left to tf2onnx, so that a model gives the same file whichever tf2onnx is installed.
# 15 is tf2onnx 1.17's default and runs on ONNX Runtime 1.10 and later (an older runtime on a bot's machine).
ONNX_OPSET = 15
TOLERANCE = 1e-4  # largest difference in probability allowed between ONNX Runtime and Keras
INPUT_NAME = "crop"
OUTPUT_NAME = "probabilities"


class ExportError(ValueError):
    """Bad input from the user (missing or unreadable model, bad output path); the message says what to do."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    model_file: Path
    task: str
    classes: list[str]
    pad: bool
    max_difference: float  # largest |ONNX Runtime - Keras| over the check crops
    replaced: bool  # an earlier export was at path


def default_output(model_file: Path) -> Path:
    """<run>/model.onnx for a run's model.keras, <name>.onnx beside any other .keras file."""
    return model_file.with_suffix(ONNX_SUFFIX)


def resolve_source(model_path: Path, root: Path | None = None) -> Path:
    """The .keras file of a run folder or a .keras path. A relative path that does not exist is also looked
    up in the workspace: ``<root>/<path>`` and ``<root>/runs/train/<path>``."""
    model_path = Path(model_path)
    candidates = [model_path]
    if root is not None and not model_path.is_absolute():
        candidates += [Path(root) / model_path, Path(root) / "runs" / "train" / model_path]
    for candidate in candidates:
        if candidate.is_dir() and (candidate / "model.keras").is_file():
            return candidate / "model.keras"
        if candidate.is_file():
            if candidate.suffix.lower() == ONNX_SUFFIX:
                raise ExportError(f"{candidate} is already an ONNX model (export reads .keras files and run folders)")
            return candidate
    if model_path.is_dir():
        raise ExportError(f"{model_path} holds no model.keras (give a run folder such as runs/train/<run>)")
    raise ExportError(f"{model_path} does not exist (give a run folder such as runs/train/<run> or a .keras file)")


def load_keras_model(model_file: Path) -> keras.Model:
    import keras

    try:
        return keras.models.load_model(model_file, compile=False)
    except Exception as exc:  # a zip, HDF5 or deserialization error: all mean "not a Keras model"
        raise ExportError(f"{model_file} is not a Keras model: {exc}") from None


def is_toonvision_export(path: Path) -> bool:
    """Whether ``path`` is an ONNX model that ToonVision exported (and so may be replaced by a new export)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # anything unreadable as ONNX is someone else's file
        return False
    return any(p.key == f"{ONNX_META_PREFIX}task" for p in proto.metadata_props)


def _check_output(out: Path, model_file: Path, force: bool) -> bool:
    """Refuse output paths that would lose a file; True when an earlier export will be replaced."""
    if out.suffix.lower() != ONNX_SUFFIX:
        raise ExportError(f"the output {out} must end in {ONNX_SUFFIX} (Classifier.load tells models by their suffix)")
    if out.exists() and out.resolve() == model_file.resolve():
        raise ExportError(f"the output {out} is the model itself")
    if out.is_dir():
        raise ExportError(f"the output {out} is a folder")
    if not out.exists():
        return False
    if not force and not is_toonvision_export(out):
        raise ExportError(f"{out} exists and is not a model exported by ToonVision: choose another --out, or --force")
    return True


def convert_to_onnx(model: keras.Model, opset: int = ONNX_OPSET) -> Any:
    """The model's inference graph as an ``onnx.ModelProto``: input ``crop`` (N, H, W, 3) uint8 RGB, output
    ``probabilities`` (N, units); the batch size is free.

    Crops are uint8 pixels, and taking them as such saves the caller a float copy of every crop. A model that
    opens with Rescaling and a max-pool (the seed model) pools first (see :class:`toonvision.models.PooledStem`):
    the same numbers, with the rescale on a quarter of the values. With Flatten's target shape made constant
    (:func:`_fix_reshapes`), one crop through the Classifier went from 0.93-1.05 to 0.79-0.83 ms at the median
    (2 idle cores, spinning threads).
    """
    import tensorflow as tf
    import tf2onnx

    from toonvision.models import pooled_stem

    height, width, channels = model.input_shape[1:]
    spec = [tf.TensorSpec([None, height, width, channels], tf.uint8, name=INPUT_NAME)]
    stem = pooled_stem(model)

    def forward(x):
        if stem is None:
            return model(tf.cast(x, tf.float32), training=False)
        # Pooled as float: ONNX Runtime's uint8 max-pools are slower than its float ones plus the cast.
        pooled = tf.nn.max_pool2d(tf.cast(x, tf.float32), ksize=stem.pool, strides=stem.pool, padding="VALID")
        return stem.tail(pooled * stem.scale, training=False)

    function = tf.function(forward, input_signature=spec)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=opset)
    except Exception as exc:  # tf2onnx raises whatever its handlers hit on an op it cannot convert
        raise ExportError(f"tf2onnx cannot convert {model.name}: {exc}") from None
    _rename_output(proto, OUTPUT_NAME)
    _fix_reshapes(proto)
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"  # tf2onnx names it unk__NN
    return proto


def _fix_reshapes(proto: Any) -> None:
    """Give Reshape nodes a constant target shape (-1 for the batch) where the rest of it is known.

    Flatten's target shape is otherwise computed on every run from the batch size (Shape, Gather, Concat and
    Cast nodes): about 30 us of a 700 us crop. The nodes and constants left unused are dropped.
    """
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)  # data_prop: follows shape arithmetic
    shapes = {}
    for value in (*inferred.graph.value_info, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    initializers = {init.name for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type != "Reshape" or node.input[1] in initializers:
            continue
        shape = shapes.get(node.output[0])
        if not shape or shape[0] is not None or any(d is None for d in shape[1:]):
            continue
        name = f"{node.output[0]}__const_shape"
        proto.graph.initializer.append(numpy_helper.from_array(np.array([-1, *shape[1:]], np.int64), name))
        node.input[1] = name
    _drop_dead_nodes(proto)


def _drop_dead_nodes(proto: Any) -> None:
    """Remove the nodes and initializers nothing leading to the outputs reads."""
    needed = {o.name for o in proto.graph.output}
    keep = []
    for node in reversed(proto.graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del proto.graph.node[:]
    proto.graph.node.extend(reversed(keep))
    kept = [init for init in proto.graph.initializer if init.name in needed]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)


def _rename_output(proto: Any, name: str) -> None:
    old = proto.graph.output[0].name  # tf2onnx's "Identity:0"
    for node in proto.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    proto.graph.output[0].name = name


def set_metadata(proto: Any, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` in the model's metadata_props as ``toonvision.<key>`` = JSON."""
    import onnx

    props = {p.key: p.value for p in proto.metadata_props}
    props.update({f"{ONNX_META_PREFIX}{k}": json.dumps(v) for k, v in metadata.items()})
    onnx.helper.set_model_props(proto, props)


def check_onnx(proto: Any, model: keras.Model, crops: int = 4, seed: int = 0) -> float:
    """Largest difference between ONNX Runtime's and Keras' outputs on random crops (raises if > 1e-4)."""
    import onnxruntime as ort

    height, width, channels = model.input_shape[1:]
    x = np.random.default_rng(seed).integers(0, 256, (crops, height, width, channels), dtype=np.uint8)
    expected = np.asarray(model(x.astype(np.float32), training=False))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    difference = float(np.max(np.abs(got - expected)))
    if not difference <= TOLERANCE:  # also catches NaN
        raise ExportError(f"the ONNX model differs from the Keras model by {difference:.3g} (> {TOLERANCE})")
    return difference


def export(
    model_path: str | Path,
    out_path: str | Path | None = None,
    *,
    task: str | None = None,
    pad: bool | None = None,
    force: bool = False,
    root: Path | None = None,
    opset: int = ONNX_OPSET,
) -> ExportResult:
    """Convert a run folder's or a ``.keras`` file's model to ONNX, check it and write it atomically.

    ``task`` and ``pad`` default to the run's configuration (config.json, or the <name>.json of a model
    kept by 'compare'), then to what the number of outputs implies and to stretched crops. An earlier
    export at ``out_path`` is replaced; any other existing file only with ``force``.
    """
    import onnx

    from toonvision.workspace import write_bytes_atomic

    model_file = resolve_source(Path(model_path), root)
    out = Path(out_path) if out_path is not None else default_output(model_file)
    replaced = _check_output(out, model_file, force)
    try:
        meta = model_metadata(model_file)
    except (OSError, ValueError):
        meta = {}  # a damaged config.json only costs the task and pad hints
    model = load_keras_model(model_file)
    try:
        task = resolve_task(int(model.output_shape[-1]), task or meta.get("task"), model_file)
    except ValueError as exc:
        raise ExportError(f"{exc} (--task)") from None
    if len(model.input_shape) != 4 or None in model.input_shape[1:]:
        raise ExportError(f"{model_file} takes inputs of shape {model.input_shape}, not (N, height, width, 3) crops")
    pad = bool(meta.get("pad", False)) if pad is None else pad
    classes = task_classes(task)
    proto = convert_to_onnx(model, opset)
    set_metadata(
        proto,
        {
            "task": task,
            "classes": classes,
            "pad": pad,
            "size": list(model.input_shape[1:3]),
            "output": "sigmoid" if task == "binary" else "softmax",
            "input": "RGB pixels as uint8, (N, height, width, 3)",
            "source": model_file.name,
            "model": model.name,
        },
    )
    proto.doc_string = f"ToonVision {task} classifier exported from {model_file.name}"
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the conversion of {model_file} gave an invalid ONNX model: {exc}") from None
    difference = check_onnx(proto, model)
    write_bytes_atomic(out, proto.SerializeToString())
    return ExportResult(out, model_file, task, classes, pad, difference, replaced)


def export_onnx(
    model_path: str | Path,
    out_path: str | Path | None = None,
    *,
    task: str | None = None,
    pad: bool | None = None,
    force: bool = False,
) -> Path:
    """Write the ONNX model of a run folder or a ``.keras`` file and return its path (default: beside the
    model, <run>/model.onnx or <name>.onnx). See :func:`export`."""
    return export(model_path, out_path, task=task, pad=pad, force=force).path


def export_command(
    model_path: Annotated[
        Path,
        typer.Argument(
            help="A run folder (runs/train/<run>, also just <run>) or a .keras file "
            "(e.g. runs/compare/<exp>/best/optimized.keras).",
            show_default=False,
        ),
    ],
    format: Annotated[
        str, typer.Option("--format", "-f", help=f"Model format to write: {', '.join(FORMATS)}.")
    ] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write (default: beside the model, <run>/model.onnx or <name>.onnx).",
            show_default=False,
        ),
    ] = None,
    root: Annotated[
        Path,
        typer.Option(
            "--root",
            envvar="TOONVISION_ROOT",
            help="Workspace root folder (a run name is looked up in <root>/runs/train/).",
            show_default=True,
        ),
    ] = Path("img"),
    task: Annotated[
        str | None,
        typer.Option(help="Task of a bare .keras file without its .json (binary, suit, name).", show_default=False),
    ] = None,
    pad: Annotated[
        bool | None,
        typer.Option(
            "--pad/--stretch",
            help="How crops are fitted to the model's size, for a bare .keras file without its .json "
            "(default: as in training, else stretched).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing file at --out that is not a ToonVision export.")
    ] = False,
) -> None:
    """Export a trained model for serving: an ONNX file that [bold]toonvision.Classifier[/] runs with ONNX
    Runtime, without TensorFlow.

    The file carries the task, the class names and how crops are fitted, so it needs nothing beside it.
    Every export is checked before it is written: ONNX Runtime must give the Keras model's probabilities to
    1e-4. Exports are derived files: an earlier export at the same path is replaced; any other existing
    file is left alone unless [bold]--force[/].
    """
    from toonvision.cli import _quiet_tensorflow, console, fail, header

    if format.lower() not in FORMATS:
        raise fail(f"unknown format {format!r} (choose from {', '.join(FORMATS)})")
    if task is not None and task not in TASK_BY_UNITS.values():
        raise fail(f"unknown task {task!r} (choose from {', '.join(TASK_BY_UNITS.values())})")
    try:
        model_file = resolve_source(model_path, root)
        target = out if out is not None else default_output(model_file)
        _check_output(target, model_file, force)  # before TensorFlow's start-up: fail fast
        header("export", model=model_file, format=format.lower(), out=target)
        _quiet_tensorflow()
        result = export(model_file, target, task=task, pad=pad, force=force)
    except ExportError as exc:
        raise fail(str(exc)) from None
    size_kb = result.path.stat().st_size / 1024
    console.print(
        f"{'replaced' if result.replaced else 'wrote'} {result.path} ({size_kb:.0f} KB): task {result.task}, "
        f"{len(result.classes)} classes, crops {'padded' if result.pad else 'stretched'}; ONNX Runtime matches "
        f"Keras to {result.max_difference:.1g}",
        highlight=False,
    )
