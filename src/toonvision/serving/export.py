"""Exporting a trained model for serving: ``toonvision export`` and :func:`export_onnx`.

    from toonvision.serving.export import export_onnx
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
from typing import TYPE_CHECKING, Any

import numpy as np

from toonvision.data.files import write_bytes_atomic
from toonvision.data.taxonomy import task_classes
from toonvision.learning.model_files import ModelError, ModelSource, load_classifier, load_keras_model, locate_model
from toonvision.learning.models import pooled_stem
from toonvision.learning.tasks import DETECT
from toonvision.serving.inference import ONNX_META_PREFIX, ONNX_SUFFIX

if TYPE_CHECKING:
    import keras

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


def resolve_source(model_path: Path, root: Path | None = None) -> ModelSource:
    """The Keras model to export: a run folder, a run name under ``<root>/runs/train``, or a .keras file."""
    try:
        source = locate_model(model_path, root)
    except ModelError as exc:
        raise ExportError(str(exc)) from None
    if source.is_onnx:
        raise ExportError(f"{source.path} is already an ONNX model (export reads .keras files and run folders)")
    return source


def is_toonvision_export(path: Path) -> bool:
    """Whether ``path`` is an ONNX model that ToonVision exported (and so may be replaced by a new export)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # anything unreadable as ONNX is someone else's file
        return False
    return any(p.key == f"{ONNX_META_PREFIX}task" for p in proto.metadata_props)


def check_output(out: Path, model_file: Path, force: bool) -> bool:
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


def convert_to_onnx(
    model: keras.Model, opset: int = ONNX_OPSET, *, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME
) -> Any:
    """The model's inference graph as an ``onnx.ModelProto``: input ``crop`` (N, H, W, 3) uint8 RGB, output
    ``probabilities`` (N, units); the batch size is free. A detector's are ``screenshot`` and ``detections``.

    Crops are uint8 pixels, and taking them as such saves the caller a float copy of every crop. A model that
    opens with Rescaling and a max-pool (the article's model) pools first (see
    :class:`toonvision.learning.models.PooledStem`):
    the same numbers, with the rescale on a quarter of the values. Flatten's target shape is made constant
    (:func:`_fix_reshapes`), which saves a few shape operators on every run.
    """
    import tensorflow as tf
    import tf2onnx

    height, width, channels = model.input_shape[1:]
    spec = [tf.TensorSpec([None, height, width, channels], tf.uint8, name=input_name)]
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
    _rename_output(proto, output_name)
    _fix_reshapes(proto)
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"  # tf2onnx names it unk__NN
    return proto


def _fix_reshapes(proto: Any) -> None:
    """Give Reshape nodes a constant target shape (-1 for the batch) where the rest of it is known.

    Flatten's target shape is otherwise computed on every run from the batch size (Shape, Gather, Concat and
    Cast nodes). The nodes and constants left unused are dropped.
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


def check_onnx(proto: Any, model: keras.Model, crops: int = 4, seed: int = 0, relative: bool = False) -> float:
    """Largest difference between ONNX Runtime's and Keras' outputs on random crops (raises if > 1e-4).
    ``relative``: differences are divided by 1 + |value| (a detector's box distances run to hundreds of pixels,
    where float32 rounding alone exceeds 1e-4)."""
    import onnxruntime as ort

    height, width, channels = model.input_shape[1:]
    x = np.random.default_rng(seed).integers(0, 256, (crops, height, width, channels), dtype=np.uint8)
    expected = np.asarray(model(x.astype(np.float32), training=False))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    scale = 1.0 + np.abs(expected) if relative else 1.0
    difference = float(np.max(np.abs(got - expected) / scale))
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

    source = resolve_source(Path(model_path), root)
    model_file = source.path
    out = Path(out_path) if out_path is not None else source.sibling(ONNX_SUFFIX)
    replaced = check_output(out, model_file, force)
    if source.is_detector:
        return _export_detector(source, out, replaced, opset)
    try:
        model, task = load_classifier(source, task)
    except ModelError as exc:
        raise ExportError(str(exc)) from None
    if len(model.input_shape) != 4 or None in model.input_shape[1:]:
        raise ExportError(f"{model_file} takes inputs of shape {model.input_shape}, not (N, height, width, 3) crops")
    pad = source.pad if pad is None else pad
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
    difference = check_and_write(proto, model, model_file, out)
    return ExportResult(out, model_file, task, classes, pad, difference, replaced)


def check_and_write(proto: Any, model: keras.Model, model_file: Path, out: Path, *, relative: bool = False) -> float:
    """Validate the converted model, check it against Keras (:func:`check_onnx`), then write it atomically;
    returns the largest difference."""
    import onnx

    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the conversion of {model_file} gave an invalid ONNX model: {exc}") from None
    difference = check_onnx(proto, model, crops=2 if relative else 4, relative=relative)
    write_bytes_atomic(out, proto.SerializeToString())
    return difference


def _export_detector(source: ModelSource, out: Path, replaced: bool, opset: int) -> ExportResult:
    """A detector's ONNX export: its class names, input size and letterboxing travel in the file."""

    from toonvision.learning.detection import STRIDE

    try:
        model = load_keras_model(source.keras_file())
    except ModelError as exc:
        raise ExportError(str(exc)) from None
    classes = list(source.config.get("class_names") or [])
    if not classes or model.output_shape[-1] != len(classes) + 4:
        raise ExportError(
            f"{source.path}: its config.json does not name the classes of its {model.output_shape[-1]} outputs"
        )
    proto = convert_to_onnx(model, opset, input_name="screenshot", output_name="detections")
    set_metadata(
        proto,
        {
            "task": DETECT,
            "classes": classes,
            "size": list(model.input_shape[1:3]),
            "letterbox": "scaled to fit keeping the aspect ratio (OpenCV area shrink), centred on black",
            "stride": STRIDE,
            "input": "RGB pixels as uint8, (N, height, width, 3), letterboxed",
            "output": "(N, height/4, width/4, classes + 4): class scores in [0, 1], then the distances (input px) "
            "from the cell centre to the box's left, top, right and bottom; keep 5x5 maxima, top-k",
            "source": source.path.name,
            "model": model.name,
        },
    )
    proto.doc_string = f"ToonVision detector ({', '.join(classes)}) exported from {source.path.name}"
    difference = check_and_write(proto, model, source.path, out, relative=True)
    return ExportResult(out, source.keras_file(), DETECT, classes, True, difference, replaced)


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
