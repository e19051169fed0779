"""Detection figures (and the image grids every figure of crops uses) write real PNGs of a sensible size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toonvision.data.detection import Detections, Truth
from toonvision.data.taxonomy import TOON_COLOR
from toonvision.figures.detection import class_color, plot_detections, plot_pr_curves, plot_worst_screenshots
from toonvision.learning.detection_metrics import WorstScreenshot, evaluate_detections, worst_screenshots

CLASSES = ["toon", "bossbot", "lawbot", "cashbot", "sellbot"]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
        return img.size


def scene(seed: int, size: tuple[int, int] = (320, 180)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


@pytest.fixture
def judged(tmp_path):
    """Three 320x180 screenshots (one saved as a file): hits, a miss, a false positive, a difficult box."""
    truths, detections = [], []
    boxes = np.array([[10, 20, 60, 120], [100, 40, 140, 170], [200, 0, 260, 90]], np.float32)
    for i in range(3):
        path = tmp_path / f"shot{i}.png"
        Image.fromarray(scene(i)).save(path)
        truths.append(Truth(path, 320, 180, boxes, np.array([0, 1, 4]), np.array([False, False, i == 2])))
        found = boxes[: 3 - i] + 2  # screenshot 1 misses the sellbot, screenshot 2 the bossbot too
        extra = np.array([[270, 100, 310, 175]], np.float32) if i else np.zeros((0, 4), np.float32)
        detections.append(
            Detections(
                np.concatenate([found, extra]),
                np.array([0, 1, 4][: 3 - i] + [3] * len(extra)),
                np.linspace(0.95, 0.4, len(found) + len(extra)).astype(np.float32),
            )
        )
    return truths, detections, evaluate_detections(truths, detections, CLASSES)


def test_pr_curves_are_a_png(tmp_path, judged):
    *_, metrics = judged
    w, h = png_size(plot_pr_curves(metrics, tmp_path / "pr.png"))
    assert 500 < w < 1200 and 400 < h < 1000


def test_pr_curves_without_true_boxes_say_so(tmp_path):
    t = Truth(Path("x.png"), 320, 180, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool))
    metrics = evaluate_detections([t], [Detections.empty()], CLASSES)
    w, h = png_size(plot_pr_curves(metrics, tmp_path / "pr.png"))
    assert w > 200 and h < 400


def test_worst_screenshots_grid_from_files_and_arrays(tmp_path, judged):
    truths, detections, metrics = judged
    worst = worst_screenshots(truths, detections, metrics, n=6)
    assert [w.truth.name for w in worst] == ["shot1.png", "shot2.png"]  # 1 miss + 1 FP each; shot2's sellbot
    assert worst[1].errors.missed.tolist() == [False, True, False]  # is difficult: not a miss
    as_array = WorstScreenshot(scene(1), truths[1], detections[1])  # pixels, and judged by the figure itself
    w, h = png_size(plot_worst_screenshots([*worst, as_array], CLASSES, tmp_path / "worst.png", columns=2))
    assert 1000 < w < 2000 and 700 < h < 1600  # 2 columns, 2 rows of 16:9 panels and a legend
    one = plot_worst_screenshots(worst[:1], CLASSES, tmp_path / "one.png")
    assert 500 < png_size(one)[0] < 1200


def test_worst_screenshots_with_none_is_a_message(tmp_path):
    assert png_size(plot_worst_screenshots([], CLASSES, tmp_path / "worst.png"))[1] < 400


def test_detections_on_a_file_or_on_axes(tmp_path, judged):
    truths, detections, _ = judged
    out = plot_detections(
        truths[1].image, detections[1], CLASSES, tmp_path / "det.png", extra_labels=["Toon", None, "Bottom Feeder"]
    )
    w, h = png_size(out)
    assert 800 < w < 1400 and 400 < h < 900
    from toonvision.figures.common import pyplot

    fig, ax = pyplot().subplots()
    assert plot_detections(scene(0, (1280, 720)), Detections.empty(), CLASSES, ax, title="none") is ax
    assert ax.get_title() == "none"
    pyplot().close(fig)


def test_classes_keep_their_house_colours():
    assert class_color("toon") == TOON_COLOR
    assert class_color("bossbot") != class_color("sellbot")
    assert class_color("something else", 1) != class_color("something else", 2)


def test_an_image_grid_stays_within_its_height(tmp_path):
    """200 tall crops in 8 columns would be a 170-inch picture at the tiles' own size: the tiles shrink."""
    from toonvision.figures.common import DPI, GRID_MAX_INCHES, plot_image_grid

    crops = [np.full((600, 200, 3), 40 * (i % 6), np.uint8) for i in range(200)]
    few = plot_image_grid(crops[:4], ["a"] * 4, tmp_path / "few.png", "four", columns=8, tile_inches=1.5)
    many = plot_image_grid(crops, ["a"] * 200, tmp_path / "many.png", "many", columns=8, tile_inches=1.5)
    with Image.open(few) as small, Image.open(many) as tall:
        assert small.height > 4 * DPI  # a few keep their size: 1.5 in wide, 4.5 in tall
        assert tall.height <= (GRID_MAX_INCHES + 1) * DPI
