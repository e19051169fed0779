"""toonvision.interpretation: activations, filter patterns, heatmaps and the explain command."""

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, toy_crops
from toonvision.cli.interpretation import explain as explain_command
from toonvision.data.files import latest_run_dir
from toonvision.data.images import ImageError, find_images
from toonvision.interpretation.cam import grad_cam, layer_geometry, upsample
from toonvision.interpretation.explainer import Explainer, ExplainError
from toonvision.learning.models import create_model

# make test runs the suite on two xdist workers: this module's tests share a module fixture, so they run on one.
pytestmark = pytest.mark.xdist_group("interpretation")

YELLOW, MAGENTA = (240, 220, 40), (250, 110, 250)
SLACK = 20  # half the receptive field of the tiny model's last convolution (40 px)

Box = tuple[int, int, int, int]  # top, left, height, width


def patch_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[Box], list[Box]]:
    """Grey noise; every other image (class 1, "toon") has a yellow patch somewhere in its left half. All
    images have an equally bold magenta decoy at a random place in the other vertical half, which says
    nothing about the class. Returns images, classes, patch boxes and decoy boxes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(90, 166, (n, 600, 200, 3)).astype("uint8")
    y = np.arange(n) % 2
    boxes, decoys = [], []
    for i in range(n):
        h, w = int(rng.integers(70, 110)), int(rng.integers(45, 70))
        upper = bool(rng.integers(0, 2))
        top, left = int(rng.integers(20, 300 - h - 10)) + (0 if upper else 290), int(rng.integers(8, 100 - w - 4))
        if y[i]:
            x[i, top : top + h, left : left + w] = YELLOW
        d_top, d_left = int(rng.integers(20, 300 - h - 10)) + (290 if upper else 0), int(rng.integers(8, 200 - w - 8))
        x[i, d_top : d_top + h, d_left : d_left + w] = MAGENTA
        boxes.append((top, left, h, w))
        decoys.append((d_top, d_left, h, w))
    return x, y, boxes, decoys


def tiny_model():
    """A small convnet with the spec model's shape (max-pools, valid convolutions, Flatten, Dense)."""
    from keras import layers

    inputs = keras.Input((600, 200, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.MaxPooling2D(4)(x)
    x = layers.Conv2D(8, 5, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(16, 3, activation="relu")(x)
    x = layers.MaxPooling2D(4)(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid", name="head")(x))


@pytest.fixture(scope="module")
def patch_model():
    """The tiny model trained (3 s) to tell crops with the yellow patch from crops without, and test crops
    with the patch."""
    keras.utils.set_random_seed(1)
    x, y, _, _ = patch_images(96, seed=0)
    model = tiny_model()
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=12, batch_size=16, verbose=0)
    xt, yt, boxes, decoys = patch_images(12, seed=1)
    keep = yt == 1
    assert (model.predict(xt, verbose=0)[:, 0] > 0.5).astype(int).tolist() == yt.tolist(), "did not learn"
    return (
        model,
        xt[keep],
        [b for b, k in zip(boxes, keep, strict=True) if k],
        [d for d, k in zip(decoys, keep, strict=True) if k],
    )


def hot_mass(heatmap: np.ndarray, box: Box | None = None, half: str | None = None) -> float:
    """Heat of the hot part (>= 0.5) of a map inside a box (with SLACK around it) or in half of the crop."""
    hot = np.where(heatmap >= 0.5, heatmap, 0)
    if half:
        return float(hot[:, :100].sum() if half == "left" else hot[:, 100:].sum())
    top, left, h, w = box
    return float(hot[max(0, top - SLACK) : top + h + SLACK, max(0, left - SLACK) : left + w + SLACK].sum())


def on_patch(heatmap: np.ndarray, box: Box) -> bool:
    top, left, h, w = box
    py, px = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return top - SLACK <= py < top + h + SLACK and left - SLACK <= px < left + w + SLACK


def lands_on_patch(heatmap: np.ndarray, box: Box, decoy: Box) -> bool:
    """Peak on the patch; hot part in the patch's (left) half, 2x the other half; 3x more on the patch
    than on the equally bold decoy."""
    return (
        on_patch(heatmap, box)
        and hot_mass(heatmap, half="left") > 2 * hot_mass(heatmap, half="right")
        and hot_mass(heatmap, box) > 3 * hot_mass(heatmap, decoy)
    )


def test_activations_have_the_shapes_of_the_layers(patch_model):
    model, xt, *_ = patch_model
    acts = Explainer(model, "binary").activations(xt[0])
    expected = [layer for layer in model.layers if type(layer).__name__ in ("Conv2D", "MaxPooling2D")]
    assert [a.name for a in acts] == [layer.name for layer in expected]
    for a, layer in zip(acts, expected, strict=True):
        assert a.values.shape == tuple(layer.output.shape[1:])
    spec = Explainer(create_model("small_convnet", "binary"), "binary").activations(xt[0])
    shapes = [a.values.shape for a in spec]
    assert shapes[:2] == [(300, 100, 3), (298, 98, 16)] and shapes[-1] == (35, 10, 32)  # the spec's figure


def test_gradcam_is_crop_sized_and_not_constant(patch_model):
    model, xt, *_ = patch_model
    result = Explainer(model, "binary").cams(xt[:2], methods=["gradcam"])
    maps = result.maps["gradcam"]
    assert maps.shape == (2, 600, 200)
    assert result.coarse["gradcam"].shape == (2, 71, 21)
    assert result.coarse["gradcam"].max(axis=(1, 2)) == pytest.approx([1.0, 1.0])
    for m in maps:
        assert m.min() >= 0 and m.max() > 0.9
        assert m.std() > 0.05


def passes_patch_check(model, xt, boxes, decoys) -> bool:
    """Every method puts the "toon" evidence of every crop on its yellow patch. Grad-CAM alone of an
    untrained network lands on one of the two bold patches, the yellow one by chance in about 1 init out
    of 4 here; the three methods together never did (0 of 20 inits)."""
    result = Explainer(model, "binary").cams(xt, 1)
    return all(
        lands_on_patch(m, box, decoy)
        for maps in result.maps.values()
        for m, box, decoy in zip(maps, boxes, decoys, strict=True)
    )


def test_heatmaps_land_on_the_patch_not_the_decoy(patch_model):
    model, xt, boxes, decoys = patch_model
    assert (Explainer(model, "binary").cams(xt[:1], methods=["gradcam"]).classes == 1).all()
    assert passes_patch_check(model, xt, boxes, decoys)


def test_the_patch_check_fails_for_untrained_models(patch_model):
    """The check above is not passed by accident: the same network untrained fails it."""
    _, xt, boxes, decoys = patch_model
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        assert not passes_patch_check(tiny_model(), xt, boxes, decoys)


def test_binary_cog_class_follows_minus_the_logit(patch_model):
    """Class 0 of a sigmoid model is explained by -z: a copy whose head is negated (so its cog is the
    original's toon) gives the very same heatmaps for cog as the original for toon."""
    model, xt, *_ = patch_model
    flipped = keras.models.clone_model(model)
    flipped.set_weights(model.get_weights())
    head = flipped.get_layer("head")
    head.set_weights([-w for w in head.get_weights()])
    a = Explainer(model, "binary").cams(xt[:2], 1)
    b = Explainer(flipped, "binary").cams(xt[:2], 0)
    assert (b.classes == 0).all()
    for method in a.maps:
        np.testing.assert_allclose(a.maps[method], b.maps[method], atol=1e-4)


def test_cam_geometry_matches_what_each_unit_sees():
    """Each unit of the CAM layer is centred where its gradient support on the input is."""
    import tensorflow as tf

    for name in ("small_convnet", "gap_convnet"):
        model = create_model(name, "binary")
        explainer = Explainer(model, "binary")
        layer = explainer.cam_layer
        g = layer_geometry(model, layer.name)
        sub = keras.Model(model.inputs[0], layer.output)
        x = tf.Variable(np.random.default_rng(0).uniform(0, 255, (1, 600, 200, 3)).astype("float32"))
        i, j = 20, 5
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(sub(x, training=False)[0, i, j, :])
        support = np.abs(tape.gradient(total, x).numpy()[0]).sum(axis=-1)
        ys, xs = np.nonzero(support)
        assert (ys.min() + ys.max()) / 2 == pytest.approx(g.start[0] + i * g.jump[0], abs=1)
        assert (xs.min() + xs.max()) / 2 == pytest.approx(g.start[1] + j * g.jump[1], abs=1)


def test_upsample_places_cells_on_their_centres():
    grid = np.zeros((1, 3, 3), "float32")
    grid[0, 1, 1] = 1
    model = create_model("small_convnet", "binary")
    g = layer_geometry(model, [layer for layer in model.layers if type(layer).__name__ == "Conv2D"][-1].name)
    assert (g.rf, g.jump, g.start) == ((36, 36), (8, 8), (17.5, 17.5))
    up = upsample(grid, (600, 200), g)
    py, px = np.unravel_index(np.argmax(up[0]), up[0].shape)
    assert abs(py - (g.start[0] + g.jump[0])) <= 0.5 and abs(px - (g.start[1] + g.jump[1])) <= 0.5
    assert up[0, 300:].max() == 0 and up[0, :, 100:].max() == 0  # cells beyond the grid: edge value
    stretched = upsample(grid, (6, 6))
    assert stretched.shape == (1, 6, 6) and stretched[0, 2:4, 2:4].min() == stretched.max()


def test_grad_cam_weighs_maps_by_mean_gradient():
    features = np.zeros((1, 2, 2, 2), "float32")
    features[0, 0, 0, 0] = 1  # channel 0: top-left
    features[0, 1, 1, 1] = 1  # channel 1: bottom-right
    grads = np.zeros_like(features)
    grads[..., 0], grads[..., 1] = 1.0, -1.0  # channel 1 is evidence against the class
    cam = grad_cam(features, grads)[0]
    assert cam[0, 0] == 1 and cam[1, 1] == 0


def test_multiclass_padded_model_and_class_choice():
    explainer = Explainer(create_model("gap_convnet", "suit", augment=True, dropout=0.3), "suit")
    assert explainer.cam_layer.name.startswith("activation")  # rectified, after the last BatchNormalization
    assert explainer.class_index("lb") == 1 and explainer.class_index("3") == 3
    image = np.random.default_rng(0).integers(0, 255, (1, 600, 200, 3)).astype("uint8")
    result = explainer.cams(image, explainer.class_index("cb"), methods=["gradcam", "gradcam++"])
    assert result.maps["gradcam"].shape == (1, 600, 200) and result.classes[0] == 2
    with pytest.raises(ExplainError, match=r"0=bb, 1=lb, 2=cb, 3=sb"):
        explainer.class_index("4")
    with pytest.raises(ExplainError, match=r"choose from .*conv2d"):
        explainer.layer("dense", conv=True)


def test_augmentation_and_dropout_stay_off():
    """Models with an augmentation block and Dropout are explained in inference mode: same maps twice,
    and filter patterns run through the augmentation block as the identity."""
    keras.utils.set_random_seed(0)
    explainer = Explainer(create_model("small_convnet", "binary", augment=True, dropout=0.5), "binary")
    image = np.random.default_rng(1).integers(0, 255, (1, 600, 200, 3)).astype("uint8")
    first, second = (explainer.cams(image, 1, methods=["gradcam", "gradcam++"]) for _ in range(2))
    for method in first.maps:
        np.testing.assert_array_equal(first.maps[method], second.maps[method])
    assert explainer.filter_patterns(explainer.conv_layers[0].name, steps=2).patterns.shape[0] == 16


def test_filter_patterns(patch_model):
    model, *_ = patch_model
    explainer = Explainer(model, "binary")
    steps_done = []
    first = explainer.conv_layers[0].name
    fp = explainer.filter_patterns(first, steps=6, on_step=steps_done.append)
    assert fp.patterns.shape[0] == 8 and fp.patterns.shape[-1] == 3 and fp.patterns.dtype == np.uint8
    assert fp.patterns.shape[1] == fp.patterns.shape[2] >= 16
    assert fp.receptive_field == 20 and len(steps_done) == 6  # 4x4 pool, then 5x5: 4 + 4 * 4
    assert not fp.silent.all()
    responsive = ~fp.silent
    assert (fp.activation[responsive] > 0).all()


# --- the command -------------------------------------------------------------------------------------------


def explain(*args: str):
    """Run the command in-process, as `toonvision explain` will (registered by cli.py)."""
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command()(explain_command)
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")  # session: under xdist, other modules' tests may run between this module's
def toy_run(tmp_path_factory):
    """A tiny binary run trained by `toonvision train`, plus two Toons drawn like Cogs (wrong predictions
    waiting to happen)."""
    from toonvision.data.taxonomy import SUIT_BY_SHORT
    from toonvision.data.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("explain") / "ws").init()
    toy_crops(ws, per_label=5)
    result = run_cli("train", "--root", str(ws.root), "--epochs", "2", "--split-seed", "1", "--batch-size", "8")
    assert result.returncode == 0, result.stderr
    run = next((ws.runs / "train").iterdir())
    colour = [int(SUIT_BY_SHORT["bb"].color[k : k + 2], 16) for k in (1, 3, 5)]
    for i in (90, 91):
        img = np.full((100, 40, 3), 128, np.uint8)
        img[25:75, 8:32] = colour
        Image.fromarray(img).save(ws.unsorted_dir("toon") / f"toon_cat_{i}.png")
    return ws, run


def test_explain_a_crop_end_to_end(toy_run):
    ws, run = toy_run
    crop = next(ws.unsorted_dir("cog").glob("cog_bb_flunky_*.png"))
    result = explain(run, crop, "--root", ws.root, "--steps", "3")
    assert result.exit_code == 0, result.output
    out = latest_run_dir(run, "explain")
    stem = crop.stem
    expected = [f"{stem}.activations.png", f"{stem}.gradcam.png"] + [
        f"filters.{n}.png" for n in ("conv2d", "conv2d_1", "conv2d_2")
    ]
    for name in expected:
        assert (out / name).exists(), name
        assert f"wrote {out / name}" in result.output.replace("\n", "")
    assert "toonvision explain" in result.output and "cam_layer=conv2d_2" in result.output
    with Image.open(out / f"{stem}.activations.png") as img:
        assert img.height > img.width > 1000  # every layer's channels, one block per layer


def test_explain_folder_with_class_and_layer(toy_run):
    ws, run = toy_run
    result = explain(run, ws.unsorted_dir("toon"), "--heatmaps", "--class", "cog", "--compare", "none")
    assert result.exit_code == 0, result.output
    first = latest_run_dir(run, "explain")
    names = sorted(p.name for p in first.glob("toon_*.gradcam.class-cog.png"))
    assert len(names) == len(list(ws.unsorted_dir("toon").glob("*.png")))
    before = {name: (first / name).read_bytes() for name in names}
    result = explain(run, "--filters", "--layer", "conv2d_1", "--steps", "2")
    assert result.exit_code == 0, result.output
    assert (latest_run_dir(run, "explain") / "filters.conv2d_1.png").exists()
    # Every explain run writes a folder of its own: the first one's figures are as they were.
    assert latest_run_dir(run, "explain") != first
    assert {name: (first / name).read_bytes() for name in names} == before


def test_explain_wrong_predictions(toy_run):
    ws, run = toy_run
    result = explain(run, "--wrong", "--root", ws.root, "--top", "4")
    assert result.exit_code == 0, result.output
    figure = latest_run_dir(run, "explain") / "wrong.gradcam.png"
    assert figure.exists()
    n_wrong = int(result.output.split(" wrong predictions over")[0].split()[-1])
    assert n_wrong >= 1  # at least the Toons drawn as Bossbots
    with Image.open(figure) as img:
        assert img.width > 600
    assert "filters." not in result.output  # --wrong alone draws only the wrong predictions


def test_bare_keras_file_writes_beside_it(toy_run, tmp_path):
    ws, run = toy_run
    bare = tmp_path / "best" / "optimized.keras"
    bare.parent.mkdir()
    bare.write_bytes((run / "model.keras").read_bytes())
    crop = next(ws.unsorted_dir("toon").glob("*.png"))
    result = explain(bare, crop, "--activations", "--task", "binary")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "best" / "explain" / "optimized" / f"{crop.stem}.activations.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{run}", "{root}/missing.png"], "missing.png does not exist"),
        (["{run}", "{root}/notes.png"], "is not an image"),
        (["{run}", "{crop}", "--layer", "dense_9", "--filters"], "no convolution layer 'dense_9' (choose from conv2d"),
        (["{run}", "{crop}", "--class", "5"], "choose a name or index: 0=cog, 1=toon"),
        (["{run}", "{crop}", "--class", "bloodsucker"], "0=cog, 1=toon"),
        (["{run}", "{crop}", "--compare", "lime"], "choose from gradcam++, scorecam, none"),
        (["{run}", "{crop}", "--cam-layer", "flatten"], "no layer with feature maps 'flatten'"),
        (["{run}", "--heatmaps"], "need crops"),
        (["{root}/nothing.keras"], "does not exist"),
        (["{root}/notes.png"], "is not a model file"),
        (["{root}/notes.keras"], "is not a Keras model"),
    ],
)
def test_bad_input_is_a_clear_error(toy_run, args, message):
    ws, run = toy_run
    (ws.root / "notes.png").write_text("not an image")
    (ws.root / "notes.keras").write_text("not a model")
    crop = next(ws.unsorted_dir("cog").glob("*.png"))
    filled = [a.format(run=run, root=ws.root, crop=crop) for a in args]
    result = explain(*filled)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in " ".join(result.output.split()), result.output


def test_find_images_in_folders(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.png", "a/y.jpg", "a/readme.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_images([tmp_path / "a"])] == ["x.png", "y.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="holds no images"):
        find_images([tmp_path / "empty"])


def test_module_imports_no_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, toonvision.interpretation.explainer, toonvision.interpretation.cam; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
