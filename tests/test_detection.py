"""The detector's pieces: boxes through letterboxing, targets and decoding, the split by screenshot, reading
screenshots of every shape, and what bad screenshots and annotations give."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import add_screenshot, noise_image
from toonvision.data.detection import (
    Letterbox,
    class_of,
    letterbox_image,
    load_detection_set,
    scheme_classes,
    screenshot_array,
    split_by_screenshot,
)
from toonvision.data.images import ImageError
from toonvision.learning.detection import STRIDE, decode, encode_targets


def test_letterbox_maps_boxes_both_ways():
    box = Letterbox.fit(1280, 720, (384, 640))
    assert (box.new_width, box.new_height, box.left, box.top) == (640, 360, 0, 12)
    boxes = np.array([[100, 50, 300, 650], [0, 0, 1280, 720]], np.float32)
    inside = box.to_input(boxes)
    np.testing.assert_allclose(inside[0], [50, 37, 150, 337])
    np.testing.assert_allclose(inside[1], [0, 12, 640, 372])
    np.testing.assert_allclose(box.to_image(inside), boxes, atol=1e-4)
    tall = Letterbox.fit(300, 900, (384, 640))  # a portrait screenshot: bars left and right
    assert tall.new_height == 384 and tall.top == 0 and tall.left == (640 - tall.new_width) // 2


def test_letterboxed_pixels_sit_where_the_boxes_say():
    image = np.zeros((720, 1280, 3), np.uint8)
    image[200:400, 600:700] = 255  # a white block
    out, box = letterbox_image(image, (384, 640))
    (x1, y1, x2, y2) = box.to_input(np.array([[600, 200, 700, 400]]))[0]
    assert out[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2].min() == 255
    assert out[: box.top].max() == 0 and out[box.top + box.new_height :].max() == 0  # black bars


def test_targets_decode_back_to_their_boxes():
    boxes = np.array([[40, 30, 120, 250], [300, 100, 340, 170], [500, 50, 630, 370]], np.float32)
    classes = np.array([0, 3, 1])
    target = encode_targets(boxes, classes, np.zeros(3, bool), num_classes=5, input_size=(384, 640))
    assert target.shape == (96, 160, 11)
    # A perfect network: the target heatmaps, and at every cell the distances to the box it must predict.
    heat, box, weight = target[..., :5], target[..., 5:9], target[..., 9]
    cy, cx = np.mgrid[0:96, 0:160].astype(np.float32) * STRIDE + STRIDE / 2
    distances = np.stack([cx - box[..., 0], cy - box[..., 1], box[..., 2] - cx, box[..., 3] - cy], axis=-1)
    found, found_classes, scores = decode(np.concatenate([heat, distances], -1), 5, threshold=0.5)
    assert len(found) == 3 and np.all(scores == 1.0)
    order = np.argsort(found[:, 0])
    np.testing.assert_allclose(found[order], boxes, atol=1e-4)
    np.testing.assert_array_equal(found_classes[order], classes)
    # Every box's regression weights add up to log(its area): large and small boxes weigh alike per box.
    assert weight.sum() == pytest.approx(sum(np.log((b[2] - b[0]) * (b[3] - b[1])) for b in boxes), rel=1e-4)


def test_difficult_boxes_are_neither_targets_nor_negatives():
    boxes = np.array([[40, 40, 120, 200], [300, 100, 400, 300]], np.float32)
    target = encode_targets(boxes, np.array([0, 0]), np.array([False, True]), num_classes=2, input_size=(384, 640))
    heat, mask = target[..., :2], target[..., 7]
    assert heat[25:75, 75:100].max() == 0  # nothing to find at the difficult box
    assert mask[25:75, 75:100].max() == 0  # and no loss for what the network says there
    assert heat.max() == 1.0 and mask.mean() > 0.9


def test_decode_keeps_only_local_maxima_above_the_threshold():
    output = np.zeros((24, 40, 2 + 4), np.float32)
    output[10, 10, 0], output[10, 11, 0] = 0.9, 0.8  # a neighbour of a stronger peak: suppressed
    output[5, 30, 1] = 0.6
    output[20, 5, 1] = 0.04  # below the threshold
    output[..., 2:] = 8.0
    boxes, classes, scores = decode(output, 2, threshold=0.05)
    np.testing.assert_allclose(scores, [0.9, 0.6])
    assert list(classes) == [0, 1]
    # The peak's box is the mean of its own and its neighbour's (4 px to the right), weighted by their scores
    # squared: the neighbour was suppressed as a detection, not as a guess of where the box lies.
    shift = 4 * 0.8**2 / (0.9**2 + 0.8**2)
    np.testing.assert_allclose(boxes[0], [42 - 8 + shift, 42 - 8, 42 + 8 + shift, 42 + 8], rtol=1e-5)
    np.testing.assert_allclose(boxes[1], [122 - 8, 22 - 8, 122 + 8, 22 + 8])  # alone: its own cell's box


def test_refined_boxes_leave_out_cells_far_below_the_peak():
    from toonvision.learning.detection import REFINE_SHARE, refined_boxes

    heat = np.zeros((10, 10, 1), np.float32)
    dist = np.full((10, 10, 4), 8.0, np.float32)
    heat[5, 5, 0], heat[5, 6, 0] = 1.0, REFINE_SHARE * 0.9  # a cell never taught a box: its guess is left out
    dist[5, 6] = 100.0
    box = refined_boxes(heat, dist, np.array([5]), np.array([5]), np.array([0]))
    np.testing.assert_allclose(box[0], [22 - 8, 22 - 8, 22 + 8, 22 + 8])


def test_split_by_screenshot_is_seeded_and_keeps_a_screenshot_whole():
    names = [f"shot_{i:03d}.png" for i in range(50)]
    split = split_by_screenshot(names, seed=3)
    assert split == split_by_screenshot(list(reversed(names)), seed=3)
    assert split != split_by_screenshot(names, seed=4)
    counts = {s: sum(v == s for v in split.values()) for s in ("train", "validate", "test")}
    assert counts == {"train": 30, "validate": 10, "test": 10}
    assert set(split) == set(names)  # one split per screenshot: its boxes cannot land in two


def test_class_schemes():
    assert scheme_classes("suit") == ["toon", "bossbot", "lawbot", "cashbot", "sellbot"]
    assert class_of("cog_lb_bloodsucker", "suit", scheme_classes("suit")) == 2
    assert class_of("toon_cat", "kind", scheme_classes("kind")) == 1
    labels = ["cog_bb_flunky", "toon_cat"]
    assert class_of("toon_cat", "label", scheme_classes("label", labels)) == 1
    assert class_of("cog_sb_coldcaller", "label", scheme_classes("label", labels)) is None
    assert class_of("not a label", "suit", scheme_classes("suit")) is None


def test_screenshots_of_every_shape_are_read_as_rgb(tmp_path):
    gray = noise_image(200, 100).convert("L")
    rgba = noise_image(200, 100).convert("RGBA")
    for image in (gray, rgba, np.asarray(gray), np.asarray(rgba)):
        assert screenshot_array(image).shape == (100, 200, 3)
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="not an image"):
        screenshot_array(tmp_path / "broken.png")
    with pytest.raises(ImageError, match="too small"):
        screenshot_array(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ImageError, match="too large"):
        screenshot_array(np.zeros((8000, 8000, 3), np.uint8))


def test_bad_screenshots_are_skipped_and_bad_boxes_left_out(ws):
    add_screenshot(ws, "good.png", [("cog_bb_flunky", 10, 10, 60, 150), ("toon_cat", 100, 20, 150, 200)])
    add_screenshot(ws, "outside.png", [("toon_dog", 400, 300, 500, 400), ("cog_sb_coldcaller", 5, 5, 50, 100)])
    add_screenshot(ws, "empty.png", [])
    add_screenshot(ws, "difficult.png", [("toon_cat", 10, 10, 60, 150)])
    xml = ws.screenshots / "difficult.xml"
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>"))
    add_screenshot(ws, "tiny.png", [("toon_cat", 0, 0, 1, 1)], size=(1, 1))
    _, corrupt_xml = add_screenshot(ws, "corrupt.png", [("toon_cat", 10, 10, 60, 150)])
    (ws.screenshots / "corrupt.png").write_bytes(b"\x89PNG broken")
    data = load_detection_set([ws.screenshots, ws.processed])
    by_name = {t.name: t for t in data.truths}
    assert set(by_name) == {"good.png", "outside.png", "empty.png", "difficult.png"}
    assert len(by_name["outside.png"].boxes) == 1  # the box beyond the 320x240 image is left out, and said so
    assert any("outside the image" in what for _, what in data.warnings)
    assert any("no boxes" in what for _, what in data.warnings)
    assert by_name["difficult.png"].difficult.tolist() == [True]
    skipped = dict(data.skipped)
    assert "too small" in skipped[str(ws.screenshots / "tiny.png")]
    assert "not an image" in skipped[str(ws.screenshots / "corrupt.png")]
    assert corrupt_xml.exists()  # nothing is deleted on the way


def test_boxes_with_labels_the_scheme_does_not_know_are_counted_and_named(ws):
    add_screenshot(ws, "a.png", [("cog_xx_foo", 10, 10, 60, 150), ("toon_cat", 100, 20, 150, 200)])
    add_screenshot(ws, "b.png", [("cog_xx_foo", 10, 10, 60, 150), ("mystery", 100, 20, 150, 200)])
    data = load_detection_set([ws.screenshots])
    assert data.unknown_labels == {"cog_xx_foo": 2, "mystery": 1}
    assert [len(t.boxes) for t in sorted(data.truths, key=lambda t: t.name)] == [1, 0]
    assert data.unknown_labels_note() == (
        "3 boxes with labels this detector does not know (toon, bossbot, lawbot, cashbot, sellbot) were left out: "
        "cog_xx_foo (2), mystery (1)"
    )
    assert data.unknown_labels_note(shown=1).endswith("cog_xx_foo (2) and 1 more label")
    assert load_detection_set([ws.screenshots], "kind").unknown_labels == {"cog_xx_foo": 2, "mystery": 1}


def test_an_empty_detection_set_says_why(ws, tmp_path):
    assert load_detection_set([tmp_path]).why_empty("F") == "there are no screenshots in F"
    noise_image(64, 64).save(tmp_path / "shot.png")
    assert "none of the 1 screenshots in F has an annotation" in load_detection_set([tmp_path]).why_empty("F")
    (tmp_path / "shot.png").write_bytes(b"broken")
    add_screenshot(ws, "x.png", [("toon_cat", 1, 1, 20, 20)], folder=tmp_path)
    (tmp_path / "x.png").write_bytes(b"broken")
    assert "can be used" in load_detection_set([tmp_path]).why_empty("F")


def test_the_last_plain_epochs_see_the_screenshots_as_they_are():
    from pathlib import Path

    from toonvision.data.detection import Truth
    from toonvision.learning.detector_training import Batches

    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(4)]
    truths = [
        Truth(Path(f"{i}.png"), 96, 64, np.array([[10, 10, 40, 50]], np.float32), np.array([0]), np.array([False]))
        for i in range(4)
    ]
    batches = Batches(pixels, truths, 5, (64, 96), 4, augment=True, seed=0, plain_from=2)
    for epoch, plain in ((0, False), (1, False), (2, True), (3, True)):
        images, _ = next(batches.epoch(epoch))
        untouched = sum(any(np.array_equal(p, image) for p in pixels) for image in images)
        assert untouched == (4 if plain else 0), epoch


def test_detector_settings_out_of_range_are_refused():
    from toonvision.learning.detector_training import DetectConfig

    for fields, word in (
        ({"ema": 1.0}, "--ema"),
        ({"ema": -0.1}, "--ema"),
        ({"plain_epochs": 26}, "--plain-epochs"),
        ({"mosaic": 1.5}, "--mosaic"),
        ({"mosaic": 0.5, "augment": False}, "--no-augment"),
        ({"plain_epochs": 2, "augment": False}, "--no-augment"),
    ):
        with pytest.raises(ValueError, match=word):
            DetectConfig(epochs=25, **fields).validate()
    assert DetectConfig(epochs=25, ema=0.995, plain_epochs=25).validate().ema == 0.995


def test_a_mosaic_puts_four_screenshots_at_half_size_around_a_point_with_their_boxes():
    from toonvision.learning.detector_training import mosaic

    h, w = 96, 160
    tiles = []
    for k in range(4):  # each screenshot grey with one box of its own colour
        image = np.full((h, w, 3), 128, np.uint8)
        box = np.array([[40, 20, 100, 80], [0, 0, 4, 4]], np.float32)
        image[20:80, 40:100] = (60 * k + 20, 255 - 60 * k, 50)
        tiles.append((image, box))
    for seed in range(5):
        out, boxes, keep = mosaic(tiles, np.random.default_rng(seed))
        assert out.shape == (h, w, 3) and boxes.shape == (8, 4) and not keep[1::2].any()  # 2x2 px: too small
        for k in np.flatnonzero(keep):
            x1, y1, x2, y2 = np.round(boxes[k]).astype(int)
            inside = out[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].reshape(-1, 3)
            assert (inside == tiles[k // 2][0][50, 70]).all(), (seed, k)  # the box holds its own screenshot's colour
            assert x2 - x1 <= 31 and y2 - y1 <= 31  # at half size
