"""The main job end to end: `toonvision demo --quick` ends in a report whose sections and pictures exist."""

import base64
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from conftest import add_screenshot, run_cli
from toonvision.cli.demo import Stages
from toonvision.data.workspace import Workspace

SECTIONS = [
    "summary",
    "dataset",
    "architecture",
    "curves",
    "comparison",
    "evaluation",
    "heatmaps",
    "run-suit-demo",
    "run-name-demo",
    "run-animal-demo",
    "detection",
    "predictions",
    "settings",
]


def embedded_images(page: str) -> list[Image.Image]:
    images = []
    for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()
        images.append(img)
    return images


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_report(ws: Workspace) -> Path:
    """The report the last demo wrote, as its record (demo.json) names it."""
    path = Path(json.loads((ws.state / "demo.json").read_text())["report"]["outputs"]["path"])
    assert path.is_file()
    return path


# Not in the xdist group "ray" of the tests about which Ray compare uses: the demo's compare starts a private Ray
# of its own (as every compare without --address does, whatever else runs on the machine), and this, the longest
# test, then runs on the other worker beside those, instead of after them.
@pytest.mark.slow
def test_demo_quick_writes_a_report_and_keeps_the_users_files(tmp_path):
    root = tmp_path / "demo"
    ws = Workspace(root)
    ws.init()
    # The user's own screenshot and crop, in the workspace before the demo runs.
    shot, xml = add_screenshot(ws, "user_shot.png", [("cog_bb_flunky", 10, 10, 60, 150)], seed=7)
    own_crop = ws.unsorted_dir("toon") / "toon_cat_900.png"
    Image.fromarray(np.full((90, 40, 3), 200, dtype=np.uint8)).save(own_crop)
    digests = {p.name: sha(p) for p in (shot, xml, own_crop)}

    first = run_cli("demo", "--quick", "--epochs", "1", "--root", str(root), timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "What the demo found" in first.stdout and "Time per stage" in first.stdout
    report = recorded_report(ws)
    experiment = root / "runs" / "compare" / "demo-2x1"
    assert report == experiment / "report" / "report.html" and str(report) in first.stdout.replace("\n", "")
    page = report.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    assert 'class="missing"' not in page and "class='missing'" not in page
    images = embedded_images(page)
    assert len(images) >= 15
    for img in images:
        pixels = np.asarray(img.convert("L"))
        assert min(img.size) > 50 and pixels.std() > 1  # a real picture, not an empty canvas

    predictions = json.loads((experiment / "predictions" / "predictions.json").read_text())
    assert set(predictions["models"]) == set(predictions["onnx"]) == {"binary", "suit", "name", "animal", "detect"}
    assert all(Path(path).suffix == ".onnx" and Path(path).is_file() for path in predictions["onnx"].values())
    assert predictions["predictions"] and all(p["true_label"] for p in predictions["predictions"])
    # The quick demo's binary model may call every box a Cog: each box has the answers of its kind's models.
    for p in predictions["predictions"] + predictions["detected"]:
        if p["kind"] == "toon":
            assert p["animal"] and p["label"] == f"toon_{p['animal']}" and p["suit"] is None
        else:
            assert p["animal"] is None and p["suit"] and p["name"]
    # The same held-out screenshots without their annotations: the detector's boxes, each classified.
    assert len(list((experiment / "predictions").glob("*.detected.png"))) == 4
    assert all(p["detector_class"] and p["true_label"] is None for p in predictions["detected"])
    detection = json.loads(
        Path(json.loads((ws.state / "demo.json").read_text())["detect-evaluate"]["outputs"]["path"]).read_text()
    )
    assert detection["n_screenshots"] == 30 and detection["ap50"] is not None
    assert "Detection: every Toon and Cog" in page and "AP50" in page
    # The demo's detector is a fine-tune of the shipped one, which the report judges on the same screenshots.
    from toonvision.learning.zoo import ZOO_DIR

    tuned = json.loads((root / "runs" / "train" / "detect-suit" / "config.json").read_text())
    assert tuned["weights"] == str(ZOO_DIR / "detect.keras")
    assert '<section id="shipped-detection">' in page and "the detector ToonVision ships" in first.stdout

    # Run again: finished stages are skipped, only the report is made again, into a folder of its own (the
    # first report and its pictures stay as they were); the user's files are intact.
    first_report = {p.name: sha(p) for p in report.parent.iterdir()}
    # Every stage but the report is done: nothing starts Ray or the renderer, so in this process.
    second = run_cli("demo", "--quick", "--epochs", "1", "--root", str(root), subprocess_=False)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("skipped") >= 10
    assert recorded_report(ws) == experiment / "report-2" / "report.html"
    assert {p.name: sha(p) for p in report.parent.iterdir()} == first_report
    found = {p.name: sha(p) for p in root.rglob("*") if p.name in digests and "holdout" not in p.parts}
    assert found == digests
    assert (ws.processed / "user_shot.png").exists()  # extracted and moved, as 'extract --move' does


def test_stages_skip_what_is_done_unless_fresh(tmp_path):
    calls = []
    out = tmp_path / "thing.txt"

    def make():
        calls.append(1)
        out.write_text("x")
        return {"path": str(out)}

    console = Console(file=io.StringIO())
    record = tmp_path / "demo.json"
    Stages(record, False, console).run("a", {"k": 1}, make)
    Stages(record, False, console).run("a", {"k": 1}, make)
    assert len(calls) == 1
    Stages(record, False, console).run("a", {"k": 2}, make)  # other settings: done again
    assert len(calls) == 2
    Stages(record, True, console).run("a", {"k": 2}, make)  # --fresh
    assert len(calls) == 3
    out.unlink()  # its result is gone: done again
    Stages(record, False, console).run("a", {"k": 2}, make)
    assert len(calls) == 4


def test_report_errors_name_the_problem(tmp_path):
    root = tmp_path / "ws"
    Workspace(root).init()
    none = run_cli("report", "--root", str(root))
    assert none.returncode == 2 and "no experiment" in none.stderr
    named = run_cli("report", "nope", "--root", str(root))
    assert named.returncode == 2 and "no experiment 'nope'" in named.stderr
