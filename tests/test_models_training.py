import json
import re
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import kill_group, run_cli, toy_crops
from toonvision.data.files import latest_run_dir
from toonvision.data.samples import find_samples, load_task
from toonvision.data.splitting import plan_split, split
from toonvision.learning.experiments import compare_pair
from toonvision.learning.models import REGISTRY, create_model
from toonvision.learning.training import OPTIMIZERS, TrainConfig, build_optimizer, fit, recipe, step_schedule


def test_seed_model_is_the_specs_exactly():
    model = create_model("small_convnet", "binary")
    assert model.count_params() == 25_537
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "InputLayer",
        "Rescaling",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
    ]
    assert tuple(model.layers[-2].output.shape[1:]) == (11_200,)
    with_extras = create_model("small_convnet", "binary", augment=True, dropout=0.9)
    assert with_extras.count_params() == 25_537
    kinds = [type(layer).__name__ for layer in with_extras.layers]
    assert kinds[1] == "Sequential" and kinds[-2] == "Dropout"
    aug = [type(layer).__name__ for layer in with_extras.layers[1].layers]
    assert aug == ["RandomFlip", "RandomRotation", "RandomZoom"]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_architecture_builds_for_every_task(name):
    x = np.zeros((2, 600, 200, 3), dtype="uint8")
    for task, units in (("binary", 1), ("suit", 4), ("name", 32)):
        model = create_model(name, task, dropout=0.3)
        out = np.asarray(model(x, training=False))
        assert out.shape == (2, units)
        if units > 1:
            assert np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_augmentation_changes_training_inputs_only():
    model = create_model("small_convnet", "binary", augment=True, seed=1)
    aug = model.layers[1]
    x = np.random.default_rng(0).integers(0, 255, (4, 600, 200, 3)).astype("float32")
    assert np.allclose(np.asarray(aug(x, training=False)), x)
    assert not np.allclose(np.asarray(aug(x, training=True)), x)


def test_optimizers_and_schedules():
    for name, cls in OPTIMIZERS.items():
        assert type(build_optimizer(TrainConfig(optimizer=name))).__name__ == cls
    opt = build_optimizer(TrainConfig(lr=1e-3, decay=1e-2))
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    assert float(schedule(100)) == pytest.approx(1e-3 / (1 + 1e-2 * 100))
    sched = step_schedule(TrainConfig(lr=1e-3, lr_step_every=10, lr_step_factor=0.1))
    assert [sched(e, 0) for e in (0, 9, 10, 25)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])
    article, optimized = recipe("article"), recipe("optimized")
    # What the article's code ran: its augmentation never reached the network. What it meant: with it.
    assert (article.dropout, article.decay, article.augment) == (0.9, 1e-5, False)
    assert (optimized.dropout, optimized.decay, optimized.augment) == (0.9, 1e-5, True)
    assert recipe("optimized:gap_convnet").model == "gap_convnet"
    # The architectures' earlier names, next to --seed and --pad, still work and mean the same.
    assert recipe("optimized:padded").validate().model == "gap_convnet"
    assert TrainConfig(model="seed").validate().model == "small_convnet"
    assert create_model("seed", "binary").count_params() == 25_537
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainConfig(optimizer="lion").validate()


def test_fit_learns_and_is_reproducible(ws):
    toy_crops(ws, per_label=8)
    data = load_task(find_samples(ws), "binary")
    parts = data.by_plan(plan_split(data.samples, seed=0))
    cfg = TrainConfig(epochs=4, seed=3, lr=3e-3)
    a = fit(cfg, parts["train"], parts["validate"], parts["test"])
    b = fit(cfg, parts["train"], parts["validate"], parts["test"])
    assert a.history["loss"] == pytest.approx(b.history["loss"], rel=1e-4)
    assert a.history["loss"][-1] < a.history["loss"][0]
    assert set(a.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    suits = load_task(find_samples(ws), "suit")
    assert set(suits.y) == {0, 1, 2, 3} and len(suits.y) == 32
    weighted = fit(TrainConfig(task="suit", epochs=1, class_weight="balanced"), suits, suits, suits)
    assert "accuracy" in weighted.test


def test_pooled_stem_gives_the_models_own_numbers():
    from toonvision.learning.models import pooled_stem

    x = np.random.default_rng(0).integers(0, 256, (3, 600, 200, 3), dtype=np.uint8)
    for model in (
        create_model("small_convnet", "binary"),
        create_model("small_convnet", "suit", augment=True, dropout=0.5),
    ):
        stem = pooled_stem(model)
        assert stem is not None and stem.pool == (2, 2) and stem.scale == pytest.approx(1 / 255)
        pooled = stem.pool_pixels(x)
        assert pooled.dtype == np.uint8 and pooled.shape == (3, 300, 100, 3)
        assert np.array_equal(pooled, x.reshape(3, 300, 2, 100, 2, 3).max(axis=(2, 4)))
        # Pooling first, on uint8, then rescaling gives exactly the layers' values, so the same outputs.
        expected = np.asarray(model(x.astype(np.float32), training=False))
        got = np.asarray(stem.tail(stem.tail_inputs(x), training=False))
        assert np.abs(got - expected).max() <= 1e-6
    # No stem where the first layers are something else (gap_convnet convolves at full resolution).
    assert pooled_stem(create_model("gap_convnet", "binary")) is None


def test_stem_batches_are_the_full_batches_pooled(ws):
    from toonvision.learning.models import pooled_stem
    from toonvision.learning.training import training_batches

    toy_crops(ws, per_label=2)
    data = load_task(find_samples(ws), "binary", ws=ws)
    stem = pooled_stem(create_model("small_convnet", "binary"))
    for augment in (False, True):
        cfg = TrainConfig(batch_size=4, seed=2, augment=augment)
        full = list(training_batches(data, cfg).as_numpy_iterator())
        pooled = list(training_batches(data, cfg, stem).as_numpy_iterator())
        assert len(full) == len(pooled)
        for (fx, fy), (px, py) in zip(full, pooled, strict=True):
            assert np.array_equal(fy, py) and px.shape == (len(fx), 300, 100, 3)
            assert np.array_equal(px, stem.tail_inputs(fx.astype(np.uint8)))


def test_training_the_tail_trains_the_model(ws):
    """fit() trains the article model's tail on pooled batches: in float32 that is the same arithmetic as
    training the whole model on full crops, so the same weights come out."""
    from toonvision.learning.backend import seed_everything
    from toonvision.learning.training import build, training_batches

    toy_crops(ws, per_label=6)
    data = load_task(find_samples(ws), "binary")
    cfg = TrainConfig(epochs=2, seed=4, lr=3e-3, precision="float32")
    ours = fit(cfg, data)
    seed_everything(cfg.seed)
    whole = build(cfg, "float32")
    whole.fit(training_batches(data, cfg), epochs=cfg.epochs, shuffle=False, verbose=0)
    for a, b in zip(ours.model.get_weights(), whole.get_weights(), strict=True):
        assert np.allclose(a, b, atol=1e-5)
    assert ours.precision == "float32"


def test_mixed_precision_trains_and_saves_float32(ws):
    from toonvision.learning.backend import native_bfloat16, resolve_precision

    assert resolve_precision("auto") == ("bfloat16" if native_bfloat16() else "float32")
    assert resolve_precision("float32") == "float32"
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float16").validate()
    toy_crops(ws, per_label=6)
    data = load_task(find_samples(ws), "binary")
    result = fit(TrainConfig(epochs=3, seed=1, lr=3e-3, precision="bfloat16"), data, data, data)
    assert result.precision == "bfloat16"
    assert result.history["loss"][-1] < result.history["loss"][0]
    # What is saved and evaluated computes in float32, whichever CPU trained it.
    assert {layer.dtype_policy.name for layer in result.model.layers} == {"float32"}
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert 0.0 <= result.test["accuracy"] <= 1.0


def test_pad_keeps_aspect_ratio(tmp_path):
    from toonvision.data.images import load_image

    Image.new("RGB", (100, 100), (255, 0, 0)).save(tmp_path / "sq.png")
    padded = load_image(tmp_path / "sq.png", pad=True)
    stretched = load_image(tmp_path / "sq.png")
    assert padded.shape == stretched.shape == (600, 200, 3)
    assert (padded[0, 0] == 0).all() and (padded[300, 100] == (255, 0, 0)).all()
    assert (stretched == (255, 0, 0)).all()


def test_train_and_evaluate_from_the_cli(ws):
    toy_crops(ws, per_label=6)
    result = run_cli(
        "train",
        "--root",
        str(ws.root),
        "--epochs",
        "2",
        "--split-seed",
        "1",
        "--name",
        "t",
        "--augment",
        "--dropout",
        "0.5",
        "--lr-step-every",
        "1",
    )
    assert result.returncode == 0, result.stderr
    run = ws.runs / "train" / "binary-t"
    for name in ("model.keras", "history.json", "config.json", "metrics.json", "split.json", "history.png"):
        assert (run / name).stat().st_size > 0, name
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 2
    config = json.loads((run / "config.json").read_text())
    assert config["augment"] and config["dropout"] == 0.5 and config["split"] == "seed 1"
    from toonvision.learning.backend import resolve_precision

    assert config["precision"] == "auto" and config["precision_used"] == resolve_precision("auto")
    assert f"precision=auto ({resolve_precision('auto')} here)" in " ".join(result.stdout.split())
    bad_precision = run_cli("train", "--root", str(ws.root), "--precision", "float16")
    assert bad_precision.returncode == 2 and "precision must be one of" in bad_precision.stderr
    ev = run_cli("evaluate", str(run), "--root", str(ws.root))
    assert ev.returncode == 0, ev.stderr
    out = run / "evaluate"
    for name in ("confusion.png", "wrong_predictions.png", "evaluation.json"):
        assert (out / name).stat().st_size > 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["classes"] == ["cog", "toon"] and np.array(report["confusion"]).sum() == report["test"]["n"]
    bad = run_cli("evaluate", str(ws.root / "nope.keras"), "--root", str(ws.root))
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_every_name_of_a_run_is_evaluated_as_it_was_trained(ws):
    """A run trained on padded crops and a split planned in memory is evaluated on padded crops and its own
    test split, whether it is named by its folder, its model.keras or its name under --root; the test metrics
    are the very numbers training recorded; and every evaluation gets a folder of its own."""
    toy_crops(ws, per_label=6)
    split(ws, (0.5, 0.1, 0.4), seed=3)  # the folders hold another split, with a larger test set
    trained = run_cli("train", "--root", str(ws.root), "--epochs", "2", "--pad", "--split-seed", "5", "--name", "p")
    assert trained.returncode == 0, trained.stderr
    # no terminal here, so no bar: a line an epoch, as a log of a run in the background needs
    assert re.search(r"^epoch 1/2: .*val_accuracy=[0-9.]+ .*\(\d+ s\)$", trained.stdout, re.M), trained.stdout
    assert re.search(r"^epoch 2/2: ", trained.stdout, re.M)
    run = ws.runs / "train" / "binary-p"
    recorded = json.loads((run / "metrics.json").read_text())["test"]
    for n, name in enumerate((run, run / "model.keras", "binary-p"), start=1):
        done = run_cli("evaluate", str(name), "--root", str(ws.root))
        assert done.returncode == 0, done.stderr
        shown = " ".join(done.stdout.split())
        assert "pad=True" in shown and "split=the run's own" in shown
        out = run / ("evaluate" if n == 1 else f"evaluate-{n}")
        assert latest_run_dir(run, "evaluate") == out
        test = json.loads((out / "evaluation.json").read_text())["test"]
        assert test["n"] == recorded["n"] and test["accuracy"] == recorded["accuracy"]
        assert test["loss"] == pytest.approx(recorded["loss"], abs=1e-6)  # one computation of the loss
    assert (run / "evaluate" / "confusion.png").is_file()  # the first evaluation's figures are still there


def test_bootstrap_interval_and_test_of_two_configurations():
    worse, better = [0.90, 0.91, 0.92, 0.90, 0.93], [0.96, 0.97, 0.95, 0.98, 0.96]
    clear = compare_pair(worse, better)
    assert clear["median_diff"] == pytest.approx(0.05)
    assert 0 < clear["ci95_low"] <= clear["median_diff"] <= clear["ci95_high"] and clear["p_value"] < 0.05
    same = compare_pair(worse, list(reversed(worse)))
    assert same["ci95_low"] <= 0 <= same["ci95_high"] and same["p_value"] > 0.5
    assert compare_pair(worse, better) == clear  # seeded
    assert "p_value" not in compare_pair([0.9], better)  # one run says nothing


def test_models_verb_lists_and_draws(ws):
    listing = run_cli("models")
    assert listing.returncode == 0 and "25,537" in listing.stdout and "padded" in listing.stdout
    assert "animal" in listing.stdout and "137,547" in listing.stdout  # small_convnet with 11 softmax outputs
    shown = run_cli("models", "seed", "--root", str(ws.root))  # the earlier name of small_convnet
    assert shown.returncode == 0 and "Total params: 25,537" in shown.stdout
    with Image.open(ws.runs / "models" / "small_convnet-binary" / "architecture.png") as img:
        assert img.size[0] > 600
    again = run_cli("models", "small_convnet", "--root", str(ws.root))
    assert again.returncode == 0 and (ws.runs / "models" / "small_convnet-binary-2" / "architecture.png").is_file()
    assert run_cli("models", "resnet").returncode == 2


def test_optimizers_verb(ws):
    toy_crops(ws, per_label=4)
    result = run_cli("optimizers", "--root", str(ws.root), "--epochs", "1", "--only", "adam", "--only", "sgd")
    assert result.returncode == 0, result.stderr
    out = ws.runs / "optimizers" / "binary-small_convnet"
    assert (out / "optimizers.png").stat().st_size > 0
    assert set(json.loads((out / "histories.json").read_text())["histories"]) == {"Adam", "SGD"}


def _results(folder):
    return sorted(p.name for p in (folder / "results").glob("*.json"))


@pytest.mark.xdist_group("ray")  # one Ray at a time under make test's two xdist workers
def test_compare_through_ray_resumes_after_a_kill(ws):
    toy_crops(ws, per_label=6)
    args = [sys.executable, "-m", "toonvision.cli", "compare", "--root", str(ws.root), "--epochs", "2", "--name", "exp"]
    out = ws.runs / "compare" / "exp"
    # Its own process group, so that the kill takes the driver and the local Ray it started, and nothing else.
    proc = subprocess.Popen(
        [*args, "--runs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(_results(out) if out.exists() else []) < 1:
        time.sleep(0.2)
    kill_group(proc.pid)
    proc.wait()
    first = _results(out)
    assert 1 <= len(first) < 4, "the comparison should have been killed part-way"
    stamps = {n: (out / "results" / n).read_bytes() for n in first}
    # The resumed comparison in this test process (its private Ray started and shut down here): no second
    # TensorFlow start-up.
    done = run_cli(*args[3:], "--runs", "2", subprocess_=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_results(out)) == 4
    assert all((out / "results" / n).read_bytes() == stamps[n] for n in first)  # finished runs kept
    for name in ("history.png", "boxplots.png", "summary.md", "summary.json", "best.json"):
        assert (out / name).stat().st_size > 0, name
    assert sorted(p.name for p in (out / "best").glob("*.keras")) == ["article.keras", "baseline.keras"]
    assert not list((out / "pending").iterdir())  # judged results leave no weights behind
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"]["baseline"]["accuracy"]["n"] == 2
    assert {t["metric"] for t in summary["tests"]} == {"accuracy", "loss"}
    assert "Mann-Whitney" in (out / "summary.md").read_text()
    # Refused before Ray starts: in this process.
    mismatch = run_cli(*args[3:], "--runs", "2", "--config", "optimized", subprocess_=False)
    assert mismatch.returncode == 2 and "other settings" in mismatch.stderr
    # A kept model is evaluated on its run's own test split: the numbers its run recorded.
    kept = json.loads((out / "best" / "baseline.json").read_text())
    evaluated = run_cli("evaluate", str(out / "best" / "baseline.keras"), "--root", str(ws.root))
    assert evaluated.returncode == 0, evaluated.stderr
    test = json.loads((out / "best" / "evaluate" / "baseline" / "evaluation.json").read_text())["test"]
    assert test["n"] == kept["test"]["n"] and test["loss"] == pytest.approx(kept["test"]["loss"], abs=1e-6)


def test_a_model_an_older_toonvision_left_pending_as_weights_is_still_kept(tmp_path):
    """Before the workers sent whole models, a judged run's weights waited in pending/ as .npz: a comparison
    killed then and resumed now keeps its model all the same."""
    from dataclasses import replace

    from toonvision.learning.experiments import Experiment, Keeper, RunResult, pending_path
    from toonvision.learning.training import build

    cfg = TrainConfig(name="baseline", epochs=1)
    exp = Experiment("old", configs=(cfg,), runs=1)
    out = tmp_path / "old"
    model = build(replace(cfg, seed=exp.run_seed(0)))
    pending_path(out, 0, "baseline").parent.mkdir(parents=True)
    np.savez(pending_path(out, 0, "baseline", ".npz"), *model.get_weights())
    result = RunResult(0, "baseline", exp.run_seed(0), {}, {"loss": 0.5, "accuracy": 0.9}, 1.0)
    assert Keeper(out, exp).offer(result) == ["run 0: new best baseline (test loss 0.5000, accuracy 0.9000)"]
    kept = keras.models.load_model(out / "best" / "baseline.keras")
    assert all(np.array_equal(a, b) for a, b in zip(kept.get_weights(), model.get_weights(), strict=True))
    assert not list((out / "pending").iterdir())


def test_classifier_api_matches_model_predict(ws):
    from toonvision import Classifier

    toy_crops(ws, per_label=4)
    result = run_cli("train", "--root", str(ws.root), "--epochs", "1", "--split-seed", "0", "--name", "c")
    assert result.returncode == 0, result.stderr
    clf = Classifier.load(ws.runs / "train" / "binary-c")
    assert clf.task == "binary" and clf.classes == ["cog", "toon"]
    crops = sorted(ws.unsorted.rglob("*.png"))[:5]
    one = clf.predict(crops[0])
    label, confidence = one
    assert label in ("cog", "toon") and 0.5 <= confidence <= 1
    batch = clf.predict([Image.open(p) for p in crops])
    assert batch[0].label == label and len(batch) == 5
    from toonvision.data.images import load_image

    x = np.stack([load_image(p) for p in crops]).astype("float32")
    expected = clf.model.predict(x, verbose=0)[:, 0]
    assert np.allclose([r.probabilities[1] for r in batch], expected, atol=1e-5)
    with pytest.raises(FileNotFoundError):
        Classifier.load(ws.root / "missing.keras")


def test_predict_on_a_screenshot_with_boxes(ws):
    from conftest import add_screenshot

    toy_crops(ws, per_label=4)
    for task in ("binary", "suit", "name"):
        r = run_cli("train", "--root", str(ws.root), "--epochs", "1", "--split-seed", "0", "--task", task)
        assert r.returncode == 0, r.stderr
    # The workspace's own models only: the shipped ones would fill in the animal model and a detector
    # (tests/test_zoo.py).
    predict = ("predict", "--no-shipped")
    shot, _ = add_screenshot(ws, "ttc_9.png", [("cog_bb_flunky", 10, 10, 60, 150), ("toon_cat", 100, 20, 150, 200)])
    result = run_cli(*predict, str(shot), "--root", str(ws.root), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out["models"]) == {"binary", "suit", "name"}
    preds = out["predictions"]
    assert len(preds) == 2 and [p["true_label"] for p in preds] == ["cog_bb_flunky", "toon_cat"]
    from toonvision.data.taxonomy import task_classes

    for p in preds:
        assert p["kind"] in ("cog", "toon")
        if p["kind"] == "cog":  # every Cog box gets a suit and a name from the taxonomy
            assert p["suit"] in task_classes("suit") and p["name"] in task_classes("name")
        else:
            assert p["suit"] is None and p["name"] is None
    table = run_cli(*predict, str(shot), "--root", str(ws.root))
    assert table.returncode == 0 and "Predictions" in table.stdout
    assert len(list((ws.runs / "predict").rglob("*.predicted.png"))) == 1
    boxes = ws.root / "boxes.json"
    boxes.write_text("[[10, 10, 60, 150]]")
    crop_only = run_cli(*predict, str(shot), "--boxes", str(boxes), "--root", str(ws.root), "--json")
    assert len(json.loads(crop_only.stdout)["predictions"]) == 1
    boxes.write_text("[[60, 10, 10, 150]]")  # xmin past xmax: a slip, said rather than guessed at
    inverted = run_cli(*predict, str(shot), "--boxes", str(boxes), "--root", str(ws.root))
    assert inverted.returncode == 2 and "inverted" in inverted.stderr and "Traceback" not in inverted.stderr
    # One task's model named: the workspace still gives the others.
    named = run_cli(
        *predict, str(shot), "--root", str(ws.root), "--json", "--model", str(ws.runs / "train" / "name-model")
    )
    assert named.returncode == 0, named.stderr
    assert set(json.loads(named.stdout)["models"]) == {"binary", "suit", "name"}
    folder = run_cli(*predict, str(ws.unsorted_dir("toon")), "--root", str(ws.root), "--json")
    assert len(json.loads(folder.stdout)["predictions"]) == 8
    missing = run_cli(*predict, str(ws.root / "nope.png"), "--root", str(ws.root))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    corrupt = ws.root / "corrupt.png"
    corrupt.write_bytes(b"not an image at all")
    bad = run_cli(*predict, str(corrupt), "--root", str(ws.root))
    assert bad.returncode == 2 and "is not an image" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    # A whole screenshot without boxes and no detector to find them: classifying the street as one crop means
    # nothing (with a detector, predict finds the boxes: tests/test_detector_cli.py).
    bare = ws.root / "bare.png"
    Image.new("RGB", (1280, 720), (90, 120, 90)).save(bare)
    refused = run_cli(*predict, str(bare), "--root", str(ws.root))
    message = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and "no trained detector" in message and "--boxes" in message
    assert len(refused.stderr.strip().splitlines()) == 1
    forced = run_cli(*predict, str(bare), "--whole", "--root", str(ws.root), "--json")
    assert forced.returncode == 0 and len(json.loads(forced.stdout)["predictions"]) == 1


def test_animal_task_from_the_cli(ws):
    """The animal task trains on the Toon crops only, with an animal too rare for every split, and its model
    works where the others do: evaluate, Classifier (also a bare file, by its 11 outputs), export, predict."""
    import shutil

    from conftest import add_screenshot
    from toonvision import Classifier
    from toonvision.data.taxonomy import ANIMALS
    from toonvision.learning.model_files import find_best_models

    toy_crops(ws, per_label=5, labels=["toon_cat", "toon_dog", "toon_duck", "toon_pig", "cog_bb_flunky"])
    toy_crops(ws, per_label=1, labels=["toon_mouse"], seed=1)  # as rare as the seed preset's uneven animals
    r = run_cli("train", "--root", str(ws.root), "--epochs", "1", "--split-seed", "0", "--task", "animal")
    assert r.returncode == 0, r.stderr
    run = ws.runs / "train" / "animal-model"
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert 0 < test["n"] <= 4 * 5  # Toons only: the Cog crops are not part of the task
    ev = run_cli("evaluate", str(run), "--root", str(ws.root))
    assert ev.returncode == 0, ev.stderr
    report = json.loads((run / "evaluate" / "evaluation.json").read_text())
    assert report["classes"] == list(ANIMALS) and np.array(report["confusion"]).shape == (11, 11)

    clf = Classifier.load(run)
    assert clf.task == "animal" and clf.classes == list(ANIMALS)
    bare = ws.root / "bare.keras"
    shutil.copy(run / "model.keras", bare)
    assert Classifier.load(bare).task == "animal"  # no record beside it: 11 outputs say which task
    exported = run_cli("export", str(run), "--root", str(ws.root))
    assert exported.returncode == 0, exported.stderr
    assert Classifier.load(run / "model.onnx").classes == list(ANIMALS)

    assert run_cli("train", "--root", str(ws.root), "--epochs", "1", "--split-seed", "0").returncode == 0
    assert set(find_best_models(ws.runs)) == {"binary", "animal"}
    shot, _ = add_screenshot(ws, "ttc_3.png", [("toon_cat", 100, 20, 150, 200), ("cog_bb_flunky", 10, 10, 60, 150)])
    out = run_cli("predict", str(shot), "--root", str(ws.root), "--json", "--no-shipped")
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)["models"]) == {"binary", "animal"}
    for p in json.loads(out.stdout)["predictions"]:
        if p["kind"] == "toon":
            assert p["animal"] in ANIMALS and p["label"] == f"toon_{p['animal']}" and 0 < p["animal_confidence"] <= 1
        else:
            assert p["animal"] is None and p["animal_confidence"] is None
