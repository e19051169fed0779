"""toonvision export and the ONNX Runtime Classifier: same probabilities as Keras, metadata inside the file,
nothing lost when writing, and clear errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

# make test runs the suite on two xdist workers: this module's tests share a module fixture, so they run on one.
pytestmark = pytest.mark.xdist_group("export")

ATOL = 1e-4


def varied_crops(n: int = 6, seed: int = 0) -> list[np.ndarray]:
    """Crops of different sizes (smaller and larger than the model's 200x600, other aspect ratios) and
    different colours, so that an untrained model's outputs differ between them."""
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        h, w = int(rng.integers(40, 900)), int(rng.integers(20, 300))
        base = rng.integers(0, 256, 3)
        img = np.clip(base + rng.normal(0, 20 + 15 * i, (h, w, 3)), 0, 255).astype(np.uint8)
        img[h // 3 : h // 2, : w // 2] = rng.integers(0, 256, 3)
        crops.append(img)
    return crops


def spread_outputs(model, crops: list[np.ndarray], pad: bool) -> None:
    """Rescale the head of a random model so that its outputs on ``crops`` spread over (0, 1) rather than
    sitting at 0.5 (or saturating): a difference between engines then shows in the probabilities."""
    import keras

    from toonvision.data.images import fit_image

    x = np.stack([fit_image(Image.fromarray(c), pad=pad) for c in crops]).astype("float32")
    head = model.get_layer("head")
    features = keras.Model(model.input, head.input)(x, training=False).numpy()
    kernel = head.get_weights()[0]
    logits = features @ kernel
    scale = 1.5 / (logits.std(axis=0) + 1e-12)
    head.set_weights([kernel * scale, -logits.mean(axis=0) * scale])


@pytest.fixture(scope="session")  # session: under xdist, other modules' tests may run between this module's
def models(tmp_path_factory) -> dict[str, Path]:
    """A seed binary model in a run folder (config.json) and a padded suit model kept as 'compare' keeps
    them (<name>.keras with <name>.json, trained with padding), both with augmentation and dropout layers,
    and batch-normalization statistics that are not the identity."""
    import keras

    from toonvision.learning.models import create_model

    # The weights' initial values come from Keras' global generator: seeded here, so that they do not depend
    # on which tests ran in this process before (some orders gave a suit model whose outputs hardly spread).
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("export")
    crops = varied_crops()
    rng = np.random.default_rng(1)

    seed = create_model("small_convnet", "binary", augment=True, dropout=0.5, seed=0)
    spread_outputs(seed, crops, pad=False)
    run = root / "runs" / "train" / "binary-seed"
    run.mkdir(parents=True)
    seed.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"task": "binary", "model": "small_convnet", "pad": False}))

    padded = create_model("gap_convnet", "suit", augment=True, dropout=0.3, seed=0)
    for layer in padded.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.moving_mean.shape
            layer.moving_mean.assign(rng.uniform(0, 0.3, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.05, 0.5, n).astype("float32"))
    spread_outputs(padded, crops, pad=True)
    kept = root / "best" / "optimized.keras"
    kept.parent.mkdir()
    padded.save(kept)
    kept.with_suffix(".json").write_text(json.dumps({"config": {"task": "suit", "model": "gap_convnet", "pad": True}}))
    return {"root": root, "small": run, "gap": kept}


@pytest.mark.parametrize(("name", "task", "pad"), [("small", "binary", False), ("gap", "suit", True)])
def test_onnx_classifier_matches_keras(models, tmp_path, name, task, pad):
    from toonvision import Classifier
    from toonvision.serving.export import export_onnx

    path = export_onnx(models[name])
    expected_path = models[name] / "model.onnx" if name == "small" else models[name].with_suffix(".onnx")
    assert path == expected_path and path.is_file()
    keras_clf = Classifier.load(models[name])
    onnx_clf = Classifier.load(path)
    assert (keras_clf.engine, onnx_clf.engine) == ("keras", "onnx")
    assert onnx_clf.task == keras_clf.task == task and onnx_clf.classes == keras_clf.classes
    assert onnx_clf.pad is keras_clf.pad is pad and onnx_clf.size == (600, 200)

    crops = varied_crops()
    file_crop = tmp_path / "crop.png"
    Image.fromarray(crops[0]).save(file_crop)
    inputs = [*crops, Image.fromarray(crops[1]), file_crop]  # arrays of many sizes, a PIL image, a path
    p_keras, p_onnx = keras_clf.probabilities(inputs), onnx_clf.probabilities(inputs)
    assert p_onnx.shape == (len(inputs), len(keras_clf.classes))
    assert np.abs(p_onnx - p_keras).max() <= ATOL
    assert np.ptp(p_keras, axis=0).max() > 0.2  # the outputs differ between crops: the comparison means something
    assert [r.label for r in onnx_clf.predict(inputs)] == [r.label for r in keras_clf.predict(inputs)]
    label, confidence = onnx_clf.predict(crops[2])
    assert label == keras_clf.predict(crops[2]).label and abs(confidence - float(p_keras[2].max())) <= ATOL
    # Batches are run in chunks: a batch larger than a chunk gives the same answers as crop by crop.
    onnx_clf.batch_size = 3
    assert np.abs(onnx_clf.probabilities(inputs) - p_onnx).max() <= 1e-6
    # Spinning threads (for a machine that does nothing else) change the timing, not the answers.
    assert np.abs(Classifier.load(path, spin=True).probabilities(inputs) - p_onnx).max() <= 1e-6


def test_metadata_travels_inside_the_file(models, tmp_path):
    import onnxruntime as ort

    from toonvision import Classifier
    from toonvision.serving.export import export
    from toonvision.serving.inference import onnx_metadata

    result = export(models["gap"], tmp_path / "alone" / "suits.onnx")
    assert result.task == "suit" and result.pad is True and result.max_difference <= ATOL
    meta = onnx_metadata(ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]))
    assert meta["task"] == "suit" and meta["classes"] == ["bb", "lb", "cb", "sb"]
    assert meta["pad"] is True and meta["size"] == [600, 200] and meta["source"] == "optimized.keras"
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["suits.onnx"]  # no side files
    clf = Classifier.load(result.path)
    assert (clf.task, clf.classes, clf.pad) == ("suit", ["bb", "lb", "cb", "sb"], True)
    session = clf.model
    assert [i.name for i in session.get_inputs()] == ["crop"] and session.get_outputs()[0].name == "probabilities"
    # A bare .keras file without its .json: the task from the outputs, the padding from the caller.
    bare = tmp_path / "bare.keras"
    bare.write_bytes(models["gap"].read_bytes())
    exported = export(bare, task="suit", pad=False)
    assert exported.path == tmp_path / "bare.onnx" and exported.pad is False
    assert Classifier.load(exported.path).pad is False


def test_exported_graph_takes_uint8_and_pools_first(models, tmp_path):
    """The article model's export takes uint8 pixels, max-pools them before the rescale (the model's layers are
    Rescaling then MaxPool) and computes no shapes at run time; its numbers are the Keras model's."""
    import onnx

    from toonvision import Classifier
    from toonvision.serving.export import export

    result = export(models["small"], tmp_path / "seed.onnx")
    proto = onnx.load(str(result.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    ops = [node.op_type for node in proto.graph.node]
    assert ops.index("MaxPool") < ops.index("Mul") < ops.index("Conv")
    assert "Shape" not in ops and "Gather" not in ops  # Flatten's target shape is a constant
    used = {name for node in proto.graph.node for name in node.input}
    assert all(init.name in used for init in proto.graph.initializer)
    clf = Classifier.load(result.path)
    assert clf.dtype == np.uint8 and clf.preprocess([np.zeros((600, 200, 3), np.uint8)]).dtype == np.uint8
    # The gap_convnet model has no such stem: it still takes uint8, converted first.
    padded = onnx.load(str(export(models["gap"], tmp_path / "padded.onnx").path))
    assert padded.graph.node[0].op_type == "Cast"


def test_onnx_classifier_does_not_import_tensorflow(models, tmp_path):
    from toonvision.serving.export import export_onnx

    path = export_onnx(models["small"], tmp_path / "binary.onnx")
    code = (
        "import sys, numpy as np\n"
        "from toonvision import Classifier\n"
        f"clf = Classifier.load({str(path)!r})\n"
        "label, confidence = clf.predict(np.zeros((90, 40, 3), np.uint8))\n"
        "assert label in ('cog', 'toon') and 0.5 <= confidence <= 1\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TensorFlow'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_nothing_is_lost_when_writing(models, tmp_path):
    from toonvision.serving.export import ExportError, export

    foreign = tmp_path / "mine.onnx"
    foreign.write_bytes(b"someone's own file")
    with pytest.raises(ExportError, match="not a model exported by ToonVision"):
        export(models["small"], foreign)
    assert foreign.read_bytes() == b"someone's own file"
    with pytest.raises(ExportError, match=r"must end in \.onnx"):
        export(models["small"], tmp_path / "model.keras")
    first = export(models["small"], tmp_path / "seed.onnx")
    again = export(models["small"], tmp_path / "seed.onnx")  # an earlier export is a derived file: replaced
    assert not first.replaced and again.replaced
    assert export(models["small"], foreign, force=True).replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_bad_onnx_files(tmp_path):
    from toonvision import Classifier

    with pytest.raises(FileNotFoundError):
        Classifier.load(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not an ONNX model"):
        Classifier.load(broken)


def test_cli_export(models):
    root = models["root"]
    # A run name is found in <root>/runs/train/. (Replacing an earlier export: test_nothing_is_lost_when_writing.)
    done = run_cli("export", "binary-seed", "--root", str(root), "--format", "ONNX", "-o", str(root / "cli.onnx"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wrote" in done.stdout and "task binary" in done.stdout and "matches Keras" in done.stdout
    assert (root / "cli.onnx").is_file()


def test_cli_export_bad_input(models, tmp_path):
    notes = tmp_path / "notes.keras"
    notes.write_text("not a model")
    foreign = tmp_path / "foreign.onnx"
    foreign.write_text("keep me")
    cases = [
        (["export", str(tmp_path / "missing")], "does not exist"),
        (["export", str(tmp_path)], "holds no model.keras"),
        (["export", str(models["small"]), "--format", "tflite"], "unknown format 'tflite'"),
        (["export", str(models["small"]), "--task", "colour"], "unknown task 'colour'"),
        (["export", str(models["small"]), "--out", str(foreign)], "not a model exported by ToonVision"),
        (["export", str(notes)], "is not a Keras model"),
    ]
    for args, message in cases:
        done = run_cli(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "error:" in done.stderr and message in done.stderr, (args, done.stderr)
    assert foreign.read_text() == "keep me" and not (tmp_path / "notes.onnx").exists()
