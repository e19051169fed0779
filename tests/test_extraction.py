import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import add_screenshot, noise_image, run_cli
from toonvision.data.annotations import Annotation, Box, createml_entry, voc_bytes, yolo_text
from toonvision.data.extraction import PNG_KEY, crop_records, extract
from toonvision.data.samples import find_samples
from toonvision.data.workspace import Workspace

BOXES = [("cog_bb_flunky", 10, 10, 100, 200), ("toon_cat", 120, 20, 200, 230), ("cog_lb_bigwig", 210, 5, 300, 235)]


def crops(ws: Workspace) -> list[str]:
    return sorted(s.name for s in find_samples(ws))


def test_extracts_every_box_with_growing_indexes(ws):
    add_screenshot(ws, "ttc_1.png", BOXES, seed=1)
    add_screenshot(ws, "dg_2.png", BOXES[:2], seed=2)
    summary = extract(ws)
    assert not summary.problems
    assert crops(ws) == [
        "cog_bb_flunky_0.png",
        "cog_bb_flunky_1.png",
        "cog_lb_bigwig_0.png",
        "toon_cat_0.png",
        "toon_cat_1.png",
    ]
    crop = Image.open(ws.unsorted_dir("cog") / "cog_bb_flunky_0.png")
    assert crop.size == (90, 190) and crop.mode == "RGB"
    # Pixels are exactly the box's pixels of the screenshot (dg_2 comes first: screenshots go in name order).
    assert np.array_equal(np.asarray(crop), np.asarray(noise_image(320, 240, seed=2))[10:200, 10:100])
    assert (ws.unsorted_dir("toon") / "toon_cat_0.png").exists()
    streets = {r["street"] for r in crop_records(ws).values()}
    assert streets == {"ttc", "dg"}


def test_rerun_does_not_extract_a_box_twice(ws, monkeypatch):
    from toonvision.data import extraction

    add_screenshot(ws, "ttc_1.png", BOXES)
    extract(ws)
    decoded = []
    monkeypatch.setattr(extraction, "decode_image", lambda data, path: decoded.append(path))
    again = extract(ws)
    assert again.crops_written == [] and again.already_extracted == 3
    assert len(crops(ws)) == 3
    assert decoded == []  # a screenshot whose boxes are all extracted is hashed, not decoded again


def test_indexes_continue_from_highest_anywhere(ws):
    # A crop already in a split (and a gap in the numbering) must not be overwritten or reused.
    (ws.split_dir("test", "cog")).mkdir(parents=True, exist_ok=True)
    noise_image(5, 5).save(ws.split_dir("test", "cog") / "cog_bb_flunky_41.png")
    noise_image(5, 5).save(ws.unsorted_dir("toon") / "toon_cat_3.png")
    add_screenshot(ws, "ttc_1.png", BOXES)
    extract(ws)
    assert "cog_bb_flunky_42.png" in crops(ws)
    assert "toon_cat_4.png" in crops(ws)
    assert "cog_lb_bigwig_0.png" in crops(ws)


def test_move_sends_screenshot_and_annotation_to_processed(ws):
    add_screenshot(ws, "ttc_1.png", BOXES, folder=ws.screenshots / "day1")
    summary = extract(ws, move=True)
    assert summary.moved == 1
    assert sorted(p.name for p in (ws.processed / "day1").iterdir()) == ["ttc_1.png", "ttc_1.xml"]
    assert not list((ws.screenshots / "day1").iterdir())


def test_move_never_overwrites_a_processed_screenshot(ws):
    add_screenshot(ws, "ttc_1.png", BOXES, seed=1)
    extract(ws, move=True)
    add_screenshot(ws, "ttc_1.png", BOXES[:1], seed=2)  # a different screenshot with the same name
    extract(ws, move=True)
    names = sorted(p.name for p in ws.processed.iterdir())
    assert names == ["ttc_1.png", "ttc_1.xml", "ttc_1__2.png", "ttc_1__2.xml"]
    assert len(crops(ws)) == 4


def test_filter_and_dry_run(ws):
    add_screenshot(ws, "ttc_1.png", BOXES)
    add_screenshot(ws, "dd_1.png", BOXES)
    planned = extract(ws, name_filter="dd_", dry_run=True)
    assert [name for _, name in planned.planned] == ["cog_bb_flunky_0.png", "toon_cat_0.png", "cog_lb_bigwig_0.png"]
    assert crops(ws) == []
    extract(ws, name_filter="dd_")
    assert len(crops(ws)) == 3
    assert {r["source"] for r in crop_records(ws).values()} == {"raw/screenshots/dd_1.png"}


def test_all_three_label_formats_and_image_types(ws):
    # JPEG + YOLO, BMP + CreateML, PNG + VOC with an upper-case extension.
    boxes = [Box("toon_dog", 10, 10, 60, 100)]
    noise_image(100, 120).save(ws.screenshots / "a.JPG", format="JPEG")
    classes: list[str] = []
    (ws.screenshots / "a.txt").write_text(yolo_text(Annotation("a.JPG", 100, 120, boxes=boxes), classes))
    (ws.screenshots / "classes.txt").write_text("\n".join(classes) + "\n")
    noise_image(100, 120).save(ws.screenshots / "b.bmp")
    (ws.screenshots / "b.json").write_text(json.dumps([createml_entry(Annotation("b.bmp", boxes=boxes))]))
    noise_image(100, 120).save(ws.screenshots / "c.PNG", format="PNG")
    (ws.screenshots / "c.xml").write_bytes(voc_bytes(Annotation("c.png", 100, 120, boxes=boxes)))
    summary = extract(ws, move=True)
    assert not summary.problems, summary.problems
    assert crops(ws) == ["toon_dog_0.png", "toon_dog_1.png", "toon_dog_2.png"]
    assert all(Image.open(ws.unsorted_dir("toon") / c).size == (50, 90) for c in crops(ws))
    assert (ws.processed / "classes.txt").exists()  # the YOLO file stays readable where it went


def test_user_extended_labels(ws):
    add_screenshot(ws, "x.png", [("toon_dragon", 1, 1, 50, 50)])
    summary = extract(ws)
    assert [p.kind for p in summary.problems] == ["unknown label"]
    with ws.classes_file.open("a") as f:
        f.write("toon_dragon\n")
    assert not extract(ws).problems
    assert crops(ws) == ["toon_dragon_0.png"]


# --- bad input: a real file of each kind, the screenshot skipped and left where it was ---


def _bad_inputs(ws: Workspace) -> dict[str, Path]:
    """One broken screenshot per kind of problem, named by the problem, plus one good one."""
    made = {}
    img, _ = add_screenshot(ws, "good.png", BOXES)
    made["good"] = img
    # missing image: an annotation alone
    (ws.screenshots / "lonely.xml").write_bytes(voc_bytes(Annotation("lonely.png", 320, 240, boxes=[Box(*BOXES[0])])))
    made["missing image"] = ws.screenshots / "lonely.xml"
    # corrupt images: garbage bytes and a truncated PNG
    img, _ = add_screenshot(ws, "garbage.png", BOXES)
    img.write_bytes(b"this is not a png at all")
    made["corrupt image"] = img
    img, _ = add_screenshot(ws, "truncated.png", BOXES)
    img.write_bytes(img.read_bytes()[:2000])
    made["corrupt image (truncated)"] = img
    # malformed XML
    img, xml = add_screenshot(ws, "malformed.png", BOXES)
    xml.write_text(xml.read_text()[:-40])
    made["malformed annotation"] = img
    # XML bomb (billion laughs)
    img, xml = add_screenshot(ws, "bomb.png", BOXES)
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    xml.write_text(
        f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">{lol}]><annotation>'
        "<folder>&lol9;</folder></annotation>"
    )
    made["unsafe XML"] = img
    made["unknown label"] = add_screenshot(ws, "unknown.png", [("cog_bb_flunkie", 1, 1, 20, 20)])[0]
    made["zero-area box"] = add_screenshot(ws, "zero.png", [("toon_cat", 30, 30, 30, 80)])[0]
    made["box outside image"] = add_screenshot(ws, "outside.png", [("toon_cat", 400, 10, 500, 100)])[0]
    # size mismatch: the XML says 640x480, the image is 320x240
    img, xml = add_screenshot(ws, "mismatch.png", BOXES)
    xml.write_text(xml.read_text().replace("<width>320</width>", "<width>640</width>"))
    made["size mismatch"] = img
    # a box hanging over the edge is clipped with a warning, not skipped
    made["box clipped"] = add_screenshot(ws, "clipped.png", [("toon_cat", 300, 200, 360, 260)])[0]
    return made


def test_every_bad_input_is_skipped_named_and_left_in_place(ws):
    _bad_inputs(ws)
    before = {p: p.read_bytes() for p in ws.screenshots.iterdir()}
    summary = extract(ws, move=True)
    kinds = Counter(p.kind for p in summary.skipped)
    assert kinds == Counter(
        {
            "missing image": 1,
            "corrupt image": 2,
            "malformed annotation": 1,
            "unsafe XML": 1,
            "unknown label": 1,
            "zero-area box": 1,
            "box outside image": 1,
            "size mismatch": 1,
        }
    )
    named = {p.path.name for p in summary.skipped}
    assert {
        "lonely.xml",
        "garbage.png",
        "truncated.png",
        "malformed.xml",
        "bomb.xml",
        "unknown.xml",
        "zero.xml",
        "outside.xml",
        "mismatch.xml",
    } == named
    assert [p.kind for p in summary.warnings] == ["box clipped"]
    # Only the good and the clipped screenshots were extracted and moved; the rest are untouched.
    assert sorted(p.name for p in ws.processed.iterdir()) == ["clipped.png", "clipped.xml", "good.png", "good.xml"]
    for path, data in before.items():
        if path.stem not in ("good", "clipped"):
            assert path.read_bytes() == data
    assert Image.open(ws.unsorted_dir("toon") / "toon_cat_0.png").size == (20, 40)  # clipped.png, to 320x240
    assert len(crops(ws)) == 4


def test_cli_reports_problems_and_exits_nonzero(ws):
    _bad_inputs(ws)
    result = run_cli("extract", "--root", str(ws.root))
    assert result.returncode == 1, result.stdout + result.stderr
    for name in ("garbage.png", "bomb.xml", "mismatch.xml", "lonely.xml"):
        assert name in result.stderr
    assert "2 extracted, 9 skipped" in " ".join(result.stdout.split())
    clean = Workspace(ws.root.parent / "clean").init()
    add_screenshot(clean, "ok.png", BOXES)
    ok = run_cli("extract", "--root", str(clean.root))
    assert ok.returncode == 0 and "wrote 3 crops" in ok.stdout


# --- killed at any moment, run again: nothing lost, nothing twice ---


def _box_keys(ws: Workspace) -> Counter:
    return Counter(Image.open(s.path).text[PNG_KEY] for s in find_samples(ws))


def _check_nothing_lost(ws: Workspace, n: int) -> None:
    for suffix in (".png", ".xml"):
        names = {p.name for d in (ws.screenshots, ws.processed) for p in d.iterdir() if p.suffix == suffix}
        assert len(names) == n, f"a {suffix} went missing"
    for s in find_samples(ws):
        with Image.open(s.path) as img:
            img.load()  # never a partly written crop
    assert max(_box_keys(ws).values(), default=1) == 1, "a box was extracted twice"


def test_killed_extraction_resumes_without_loss_or_duplicates(ws):
    n = 40
    for i in range(n):
        add_screenshot(ws, f"ttc_{i}.png", BOXES, seed=i)
    rng = random.Random(7)
    kills = partial = 0
    for _ in range(40):
        before = len(find_samples(ws))
        proc = subprocess.Popen(
            [sys.executable, "-m", "toonvision.cli", "extract", "--root", str(ws.root), "--move"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.2, 1.2))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        _check_nothing_lost(ws, n)
        partial += proc.returncode != 0 and before < len(find_samples(ws)) < 3 * n
        if proc.returncode == 0:
            break
    assert partial >= 1, "no run was killed half-way: the test proved nothing"
    final = extract(ws, move=True)
    assert not final.skipped
    assert sum(_box_keys(ws).values()) == 3 * n
    assert len(set(_box_keys(ws))) == 3 * n
    assert not list(ws.screenshots.iterdir())
    assert not [p for _, _, d in ws.sample_dirs() for p in d.iterdir() if p.name.endswith(".tmp")]


def test_two_extractions_at_once_never_collide(ws):
    for i in range(30):
        add_screenshot(ws, f"dd_{i}.png", BOXES, seed=i)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "toonvision.cli", "extract", "--root", str(ws.root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in (["--filter", "dd_1"], ["--filter", "dd_"], [])
    ]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    keys = _box_keys(ws)
    assert len(keys) == 90 and max(keys.values()) == 1
    per_label = Counter(str(s.label) for s in find_samples(ws))
    assert per_label == {"cog_bb_flunky": 30, "toon_cat": 30, "cog_lb_bigwig": 30}
    for label in per_label:
        assert sorted(s.index for s in find_samples(ws) if str(s.label) == label) == list(range(30))


@pytest.mark.skipif(not hasattr(os, "link"), reason="needs hard links")
def test_adopts_a_crop_written_just_before_a_kill(ws):
    # Simulate the narrowest window: the crop is linked into place but its 'crop' record never written.
    add_screenshot(ws, "ttc_1.png", BOXES)
    extract(ws)
    journal = ws.state / "extracted.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if not (json.loads(ln)["op"] == "crop" and "flunky" in ln)]
    journal.write_text("".join(kept) + '{"op": "crop", "key": "tor')  # and a torn last line
    again = extract(ws)
    assert again.crops_written == [] and again.already_extracted == 3
    assert len(crops(ws)) == 3


def test_a_zombie_writer_counts_as_dead(tmp_path):
    """A killed writer that nobody has reaped yet still has a pid; its temporary file must go all the same."""
    import subprocess
    import time

    from toonvision.data.files import pid_alive, remove_stale_tmp

    child = subprocess.Popen(["sleep", "60"])
    assert pid_alive(child.pid)
    child.kill()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        (tmp_path / f".shot.xml.{child.pid}.tmp").write_text("half")
        assert not pid_alive(child.pid)
        assert remove_stale_tmp(tmp_path) == 1
    finally:
        child.wait()
