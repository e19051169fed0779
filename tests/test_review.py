"""`toonvision review`: the page a person corrects pre-annotations in. The server's API through Starlette's
TestClient (list, load, save in the three formats, conflicts, paths out of the folder, bad input), then the page
itself in Chromium driven by Playwright, and a server killed while it saves."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from conftest import run_cli
from toonvision.data.annotations import (
    Annotation,
    Box,
    createml_entry,
    find_annotation,
    read_createml,
    read_voc,
    read_yolo,
    voc_bytes,
)
from toonvision.data.review import PRE_ANNOTATED, REVIEWED, UNLABELLED, review_state, sidecar_path
from toonvision.data.taxonomy import all_labels
from toonvision.serving.annotate import Proposal, Step, write_proposal
from toonvision.serving.pipeline import BoxResult, Results
from toonvision.serving.review_server import ReviewSession, create_app

LABELS = [str(label) for label in all_labels()]
REPO = Path(__file__).resolve().parents[1]
# Starlette's TestClient prefers the httpx2 fork now and warns when it runs on httpx, which it still supports.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def street(width: int, height: int, figures: Sequence[Sequence[float]] = ()) -> Image.Image:
    """A made-up street: sky, pavement, and a figure (a body and a head) in each of ``figures``' boxes."""
    img = Image.new("RGB", (width, height), (120, 180, 230))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, height * 2 // 3, width, height), fill=(110, 110, 120))
    for i, (left, top, right, bottom) in enumerate(figures):
        head = (bottom - top) // 4
        draw.ellipse((left + (right - left) // 4, top, right - (right - left) // 4, top + head), fill=(240, 200, 160))
        draw.rectangle((left, top + head, right, bottom), fill=((90 + 70 * i) % 255, 60 + 30 * i, 160 - 30 * i))
    return img


def pre_annotate(
    folder: Path,
    name: str,
    boxes: Sequence[tuple[str, int, int, int, int, float]],
    fmt: str = "voc",
    size: tuple[int, int] = (320, 240),
    missed: Sequence[tuple[int, int, int, int]] = (),
    picture: Path | None = None,
) -> Path:
    """A screenshot pre-annotated as `toonvision annotate` does it (its own writer: sidecar, then the file): the
    rendered ``picture``, or a made-up street with a figure in each box and in each of ``missed`` (one the
    detector did not find)."""
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / name
    if picture is not None:
        shutil.copyfile(picture, image)
    else:
        street(*size, [b[1:5] for b in boxes] + list(missed)).save(image)
    results = Results(str(image), *size, path=image)
    for label, *box, confidence in boxes:
        results.boxes.append(BoxResult(tuple(box), label, confidence, label.split("_")[0], confidence))
    proposal = Proposal(results)
    write_proposal(Step(review_state(image, None), "write", fmt), proposal, {"detect": "tiny"}, LABELS)
    return image


def persons(folder: Path, name: str, boxes: Sequence[tuple[str, float, float, float, float]]) -> Path:
    """A screenshot a person annotated in labelImg (Pascal VOC, no sidecar)."""
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / name
    street(320, 240, [b[1:] for b in boxes if b[3] <= 320 and b[4] <= 240]).save(image)
    ann = Annotation(image.name, 320, 240, folder=folder.name, path=str(image), boxes=[Box(*b) for b in boxes])
    image.with_suffix(".xml").write_bytes(voc_bytes(ann))
    return image


def client(folder: Path, rank: str = "name", labels: list[str] | None = None):
    from starlette.testclient import TestClient

    return TestClient(create_app(ReviewSession.open(folder, labels or LABELS, rank)), base_url="http://127.0.0.1")


def save(api, shot: dict, boxes: list[dict], verified: bool | None = None, version: str | None = "loaded"):
    return api.post(
        "/api/save",
        json={
            "path": shot["path"],
            "version": shot["version"] if version == "loaded" else version,
            "boxes": boxes,
            "verified": shot["verified"] if verified is None else verified,
        },
    )


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the server ---


def test_list_walks_by_name_or_least_sure_first_with_a_counter(tmp_path):
    folder = tmp_path / "shots"
    pre_annotate(folder, "a.png", [("cog_bb_flunky", 10, 10, 60, 90, 0.9)])
    pre_annotate(folder, "b.png", [("toon_cat", 10, 10, 60, 90, 0.3), ("cog_lb_bigwig", 100, 10, 160, 90, 0.8)])
    pre_annotate(folder, "c.png", [("toon_dog", 10, 10, 60, 90, 0.6)])
    persons(folder, "0_person.png", [("toon_dog", 5, 5, 50, 50)])
    (folder / "1_bare.png").write_bytes((folder / "a.png").read_bytes())

    listing = client(folder).get("/api/screenshots").json()
    assert [s["path"] for s in listing["screenshots"]] == ["0_person.png", "1_bare.png", "a.png", "b.png", "c.png"]
    assert [s["status"] for s in listing["screenshots"]] == [REVIEWED, UNLABELLED, *[PRE_ANNOTATED] * 3]
    assert (listing["reviewed"], listing["left"]) == (1, 4)
    suits = listing["taxonomy"]["suits"]
    assert [s["short"] for s in suits] == ["bb", "lb", "cb", "sb"] and all(len(s["cogs"]) == 8 for s in suits)
    assert len(listing["taxonomy"]["animals"]) == 11

    ranked = client(folder, rank="uncertain").get("/api/screenshots").json()
    assert [s["path"] for s in ranked["screenshots"]] == ["b.png", "c.png", "a.png", "0_person.png", "1_bare.png"]


def test_load_shows_boxes_with_confidence_and_flags(tmp_path):
    folder = tmp_path / "shots"
    pre_annotate(folder, "pre.png", [("cog_sb_twoface", 10, 20, 60, 90, 0.42)])
    persons(folder, "odd.png", [("cog_bb_flunky", 10, 10, 50, 50), ("cog_zz_nobody", 5, 5, 40, 40)])
    persons(folder, "out.png", [("toon_cat", 280, 200, 400, 300)])
    api = client(folder, labels=[label for label in LABELS if label != "cog_bb_flunky"])

    pre = api.get("/api/screenshot", params={"path": "pre.png"}).json()
    assert (pre["width"], pre["height"], pre["format"], pre["status"]) == (320, 240, "voc", PRE_ANNOTATED)
    assert pre["boxes"][0] | {"confidence": 0.42} == pre["boxes"][0] and pre["boxes"][0]["xmin"] == 10
    odd = api.get("/api/screenshot", params={"path": "odd.png"}).json()
    assert [b["unknown_label"] for b in odd["boxes"]] == [True, True]  # not in predefined_classes.txt
    assert [b["confidence"] for b in odd["boxes"]] == [None, None]  # a person's: no sidecar
    out = api.get("/api/screenshot", params={"path": "out.png"}).json()
    assert out["boxes"][0]["outside"] and not out["boxes"][0]["unknown_label"]
    assert out["version"] == __import__("hashlib").sha256((folder / "out.xml").read_bytes()).hexdigest()


def test_load_shows_each_boxs_game_rule_flags_with_why(tmp_path):
    """The flags come from the one judge annotate used, on the boxes as they are now: a person's box too."""
    folder = tmp_path / "shots"
    boxes = [("toon_cat", 0, 600, 150, 720, 0.9), ("toon_dog", 600, 300, 660, 430, 0.9)]  # over the Laff meter; fine
    pre_annotate(folder, "pre.png", boxes, size=(1280, 720))
    api = client(folder)
    boxes = api.get("/api/screenshot", params={"path": "pre.png"}).json()["boxes"]
    assert [f["rule"] for f in boxes[0]["flags"]] == ["interface"] and "Laff meter" in boxes[0]["flags"][0]["why"]
    assert boxes[1]["flags"] == []
    recorded = json.loads(sidecar_path(folder / "pre.png").read_text())["boxes"]
    assert [b["flags"] for b in recorded] == [b["flags"] for b in boxes]
    persons(folder, "person.png", [("toon_cat", 100, 10, 200, 120)])  # 110 px tall, its feet half way down
    api = client(folder)
    person = api.get("/api/screenshot", params={"path": "person.png"}).json()["boxes"][0]
    assert [f["rule"] for f in person["flags"]] == ["perspective"] and "too tall" in person["flags"][0]["why"]


def test_saving_a_voc_writes_labelimgs_bytes_and_a_person_save_makes_it_reviewed(tmp_path):
    folder = tmp_path / "shots"
    image = pre_annotate(
        folder, "shot.png", [("cog_bb_flunky", 10, 10, 60, 90, 0.5), ("toon_cat", 100, 20, 300, 90, 0.7)]
    )
    xml = image.with_suffix(".xml")
    api = client(folder)
    shot = api.get("/api/screenshot", params={"path": "shot.png"}).json()

    # Saving what annotate wrote, unchanged and not verified, is still annotate's: nobody has looked.
    untouched = save(api, shot, shot["boxes"])
    assert untouched.status_code == 200 and untouched.json()["status"] == PRE_ANNOTATED
    assert review_state(image, find_annotation(image)).status == PRE_ANNOTATED

    moved = [dict(shot["boxes"][0], xmin=20, xmax=70), dict(shot["boxes"][1], xmin=120, xmax=320)]
    done = save(api, shot, moved)
    assert done.status_code == 200, done.text
    ann = read_voc(xml)
    assert [(b.name, b.xmin, b.xmax) for b in ann.boxes] == [("cog_bb_flunky", 20, 70), ("toon_cat", 120, 320)]
    assert ann.boxes[1].truncated and not ann.boxes[0].truncated  # labelImg's rule: it touches the right edge
    assert xml.read_bytes() == voc_bytes(ann)  # labelImg's bytes (they round-trip unchanged)
    assert done.json()["status"] == REVIEWED == review_state(image, find_annotation(image)).status
    assert done.json()["version"] != shot["version"]
    # the page sends the time spent since its last save; the list adds it up per screenshot
    api.post("/api/save", json={"path": "shot.png", "version": done.json()["version"], "boxes": moved, "seconds": 12.5})
    assert api.get("/api/screenshots").json()["screenshots"][0]["seconds"] == 12.5
    assert api.post("/api/seconds", json={"path": "shot.png", "seconds": 3}).json() == {"seconds": 15.5}
    assert api.post("/api/seconds", json={"path": "../x.png", "seconds": 3}).status_code == 403

    shot = api.get("/api/screenshot", params={"path": "shot.png"}).json()
    verified = save(api, shot, shot["boxes"], verified=True)
    assert verified.status_code == 200
    assert xml.read_bytes().startswith(b'<annotation verified="yes">\n\t<folder>shots</folder>')
    assert read_voc(xml).verified and len(read_voc(xml).boxes) == 2
    assert not list(folder.glob(".*.tmp"))


def test_yolo_save_keeps_classes_and_verify_marks_it_reviewed(tmp_path):
    folder = tmp_path / "shots"
    image = pre_annotate(folder, "shot.png", [("cog_lb_bigwig", 10, 10, 60, 90, 0.5)], fmt="yolo")
    txt = image.with_suffix(".txt")
    classes_before = (folder / "classes.txt").read_text()
    api = client(folder)
    shot = api.get("/api/screenshot", params={"path": "shot.png"}).json()
    assert shot["format"] == "yolo" and shot["boxes"][0]["name"] == "cog_lb_bigwig"

    # YOLO has no verified flag: verifying the unchanged file records in the sidecar that a person accepted it.
    written = txt.read_bytes()
    assert save(api, shot, shot["boxes"], verified=True).json()["status"] == REVIEWED
    assert txt.read_bytes() == written
    assert review_state(image, find_annotation(image)).status == REVIEWED
    assert json.loads(sidecar_path(image).read_text())["accepted"]

    shot = api.get("/api/screenshot", params={"path": "shot.png"}).json()
    drawn = [*shot["boxes"], {"name": "toon_mymouse", "xmin": 100, "ymin": 20, "xmax": 140, "ymax": 100}]
    assert save(api, shot, drawn).status_code == 200
    classes = (folder / "classes.txt").read_text()
    assert classes.startswith(classes_before) and classes.endswith("toon_mymouse\n")  # appended, indices kept
    boxes = read_yolo(txt, (320, 240)).boxes
    assert [b.name for b in boxes] == ["cog_lb_bigwig", "toon_mymouse"]
    assert [round(v) for v in boxes[1].pixel_box()] == [100, 20, 140, 100]


def test_createml_save_changes_only_its_own_entry(tmp_path):
    folder = tmp_path / "shots"
    image = pre_annotate(folder, "shot.png", [("toon_duck", 10, 10, 60, 90, 0.5)], fmt="createml")
    jsonfile = image.with_suffix(".json")
    other = createml_entry(Annotation("elsewhere.png", boxes=[Box("toon_pig", 1, 2, 3, 4)]))
    jsonfile.write_text(json.dumps([other, *json.loads(jsonfile.read_text())]))  # a person's file: reviewed
    api = client(folder)
    shot = api.get("/api/screenshot", params={"path": "shot.png"}).json()
    assert shot["format"] == "createml" and [b["name"] for b in shot["boxes"]] == ["toon_duck"]
    done = save(api, shot, [dict(shot["boxes"][0], name="toon_horse")], verified=True)
    assert done.status_code == 200, done.text
    entries = json.loads(jsonfile.read_text())
    assert entries[0] == other
    ann = read_createml(jsonfile, "shot.png")
    assert ann.verified and [(b.name, b.xmin, b.ymax) for b in ann.boxes] == [("toon_horse", 10, 90)]


def test_an_unlabelled_screenshot_gets_a_voc_file_and_is_never_created_twice(tmp_path):
    folder = tmp_path / "shots"
    persons(folder, "seen.png", [])
    bare = folder / "bare.png"
    shutil.copy(folder / "seen.png", bare)
    api = client(folder)
    shot = api.get("/api/screenshot", params={"path": "bare.png"}).json()
    assert (shot["status"], shot["version"], shot["boxes"]) == (UNLABELLED, None, [])
    box = {"name": "toon_cat", "xmin": 5, "ymin": 6, "xmax": 50, "ymax": 60}
    assert save(api, shot, [box]).status_code == 200
    assert [(b.name, b.xmin, b.ymax) for b in read_voc(bare.with_suffix(".xml")).boxes] == [("toon_cat", 5, 60)]
    again = save(api, shot, [])  # a second tab that also saw no file
    assert again.status_code == 409 and again.json()["current"]["boxes"][0]["name"] == "toon_cat"
    assert len(read_voc(bare.with_suffix(".xml")).boxes) == 1


def test_a_file_changed_on_disk_is_never_overwritten(tmp_path):
    folder = tmp_path / "shots"
    image = pre_annotate(folder, "shot.png", [("cog_cb_tightwad", 10, 10, 60, 90, 0.5)])
    api = client(folder)
    shot = api.get("/api/screenshot", params={"path": "shot.png"}).json()
    theirs = voc_bytes(Annotation("shot.png", 320, 240, boxes=[Box("cog_cb_loanshark", 1, 1, 30, 30)]))
    image.with_suffix(".xml").write_bytes(theirs)  # labelImg saved meanwhile
    refused = save(api, shot, [dict(shot["boxes"][0], xmin=0)])
    assert refused.status_code == 409
    current = refused.json()["current"]
    assert current["boxes"][0]["name"] == "cog_cb_loanshark" and "cog_cb_loanshark" in current["text"]
    assert image.with_suffix(".xml").read_bytes() == theirs
    # The person chose to keep theirs: saving on the version now on disk goes through.
    assert save(api, current, shot["boxes"]).status_code == 200
    assert read_voc(image.with_suffix(".xml")).boxes[0].name == "cog_cb_tightwad"


def test_a_file_replaced_just_after_a_save_is_not_taken_for_the_saved_one(tmp_path, monkeypatch):
    """labelImg saving in the instant after the server's write: the page is given the version the server wrote,
    so its next save meets the conflict instead of replacing labelImg's file."""
    import toonvision.serving.review_server as review_server

    folder = tmp_path / "shots"
    image = pre_annotate(folder, "shot.png", [("toon_cat", 10, 10, 60, 90, 0.5)])
    xml = image.with_suffix(".xml")
    theirs = voc_bytes(Annotation("shot.png", 320, 240, boxes=[Box("toon_horse", 5, 5, 30, 30)]))
    write = review_server.write_bytes_atomic

    def write_then_labelimg(path: Path, data: bytes) -> None:
        write(path, data)
        if path == xml:
            xml.write_bytes(theirs)

    monkeypatch.setattr(review_server, "write_bytes_atomic", write_then_labelimg)
    api = client(folder)
    shot = api.get("/api/screenshot", params={"path": "shot.png"}).json()
    done = save(api, shot, [dict(shot["boxes"][0], xmin=20)])
    assert done.status_code == 200 and xml.read_bytes() == theirs
    monkeypatch.setattr(review_server, "write_bytes_atomic", write)
    again = save(api, {**shot, "version": done.json()["version"]}, [dict(shot["boxes"][0], xmin=30)], verified=True)
    assert again.status_code == 409 and xml.read_bytes() == theirs


def test_paths_out_of_the_folder_are_refused(tmp_path):
    folder = tmp_path / "shots"
    persons(folder, "inside.png", [("toon_cat", 5, 5, 50, 50)])
    secret = persons(tmp_path / "secret", "secret.png", [("toon_dog", 5, 5, 50, 50)])
    (folder / "link.png").symlink_to(secret)  # a screenshot that is a link out
    (folder / "sub").mkdir()
    shutil.copy(secret, folder / "sub" / "annlink.png")
    (folder / "sub" / "annlink.xml").symlink_to(secret.with_suffix(".xml"))  # an annotation that links out
    before = files(tmp_path / "secret")
    api = client(folder)
    listing = api.get("/api/screenshots").json()
    assert [s["path"] for s in listing["screenshots"]] == ["inside.png"]
    assert sorted(listing["refused"]) == ["link.png", "sub/annlink.png"]
    box = {"name": "toon_cat", "xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9}
    for path in ["../secret/secret.png", str(secret), "/etc/passwd", "link.png", "sub/annlink.png", "..\\x.png"]:
        for response in (
            api.get("/api/screenshot", params={"path": path}),
            api.get("/api/image", params={"path": path}),
            api.post("/api/save", json={"path": path, "version": None, "boxes": [box], "verified": True}),
        ):
            assert response.status_code in (403, 404), (path, response.status_code)
            assert "error" in response.json()
    assert files(tmp_path / "secret") == before


def test_bad_input_is_said_and_the_files_are_left_untouched(tmp_path):
    folder = tmp_path / "shots"
    corrupt = persons(folder, "corrupt.png", [("toon_cat", 5, 5, 50, 50)])
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    broken = persons(folder, "broken.png", [])
    broken.with_suffix(".xml").write_bytes(b"<annotation><object><name>toon_cat</name></annotation>")
    persons(folder, "good.png", [("toon_cat", 5, 5, 50, 50)])
    before = files(folder)
    api = client(folder)
    shot = api.get("/api/screenshot", params={"path": "corrupt.png"}).json()
    assert "corrupt.png is not an image that can be read" in shot["image_error"]
    assert save(api, shot, []).status_code == 422
    shot = api.get("/api/screenshot", params={"path": "broken.png"}).json()
    assert shot["annotation_error"].startswith("labelImg cannot read broken.xml: malformed XML")
    refused = save(api, shot, [{"name": "toon_cat", "xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9}])
    assert refused.status_code == 422 and "left as it is" in refused.json()["error"]
    good = api.get("/api/screenshot", params={"path": "good.png"}).json()
    for boxes in (
        [{"name": "two words", "xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9}],
        [{"name": "toon_cat", "xmin": 9, "ymin": 1, "xmax": 1, "ymax": 9}],
        [{"name": "toon_cat", "xmin": "NaN", "ymin": 1, "xmax": 1, "ymax": 9}],
        [{"xmin": 1}],
        "boxes",
    ):
        response = save(api, good, boxes)
        assert response.status_code == 400 and response.json()["error"], boxes
    assert api.post("/api/save", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    # Another origin's page can only send a "simple" request without a preflight: text/plain, refused.
    plain = json.dumps({"path": "good.png", "version": good["version"], "boxes": []})
    assert api.post("/api/save", content=plain, headers={"Content-Type": "text/plain"}).status_code == 415
    # A name rebound to 127.0.0.1 by some web site is not this server's.
    assert api.get("/api/screenshots", headers={"Host": "evil.example"}).status_code == 400
    assert files(folder) == before


def test_the_verb_refuses_an_empty_folder_and_a_port_in_use(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no screenshots here")
    done = run_cli("review", str(empty), "--root", str(tmp_path / "ws"), "--no-open")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and "holds no screenshots" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    persons(tmp_path / "shots", "a.png", [])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = run_cli("review", str(tmp_path / "shots"), "--root", str(tmp_path / "ws"), "--no-open", "--port", port)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(f"error: port {port} on 127.0.0.1 cannot be used")


# --- the page, in Chromium ---

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    found = os.environ.get("TOONVISION_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).is_file() else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator:
    """Chromium as installed on the machine (never a download), driven by Playwright."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package)")
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no Chromium: apt-get install chromium (Debian), or set TOONVISION_CHROMIUM to a Chromium or Chrome "
            "executable"
        )
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=executable,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 560},
        )
        yield context
        context.close()


@contextlib.contextmanager
def serving(folder: Path, rank: str = "name") -> Iterator[str]:
    """The review server on a free port in a thread of this process."""
    import uvicorn

    from toonvision.serving.review_server import bind

    sock = bind(0)
    config = uvicorn.Config(create_app(ReviewSession.open(folder, LABELS, rank)), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def until(check: Callable[[], object], timeout: float = 5.0) -> object:
    """Wait for ``check()`` to be true (the page saves asynchronously); its last value when time runs out."""
    end = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = check()
            if value:
                return value
        if time.monotonic() > end:
            return check()
        time.sleep(0.05)


def boxes_on_disk(xml: Path) -> list[tuple[str, int, int, int, int]]:
    return [(b.name, *b.pixel_box()) for b in read_voc(xml).boxes]


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    page.mouse.move(*end)
    page.mouse.up()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[tuple[Path, list[tuple[str, int, int, int, int]]]]:
    """Three rendered 800x450 streets (seed 55: every box of the second apart from the others and from the
    edges) with their true boxes."""
    root = tmp_path_factory.mktemp("rendered")
    done = run_cli("synth", "--root", str(root), "-n", "3", "--size", "800x450", "--seed", "55")
    assert done.returncode == 0, done.stderr
    shots = sorted((root / "raw" / "screenshots").glob("*.png"), key=lambda p: p.stem.split("_")[1])
    boxes = [read_voc(s.with_suffix(".xml")).boxes for s in shots]
    return [
        (s, [(b.name, *(round(v) for v in (b.xmin, b.ymin, b.xmax, b.ymax))) for b in bs])
        for s, bs in zip(shots, boxes, strict=True)
    ]


def test_a_person_reviews_a_folder_in_the_page(tmp_path, browser, rendered):
    """Rendered screenshots, pre-annotated with their true boxes (one left out, for the person to draw)."""
    folder = tmp_path / "shots"
    size = (800, 450)
    (shot_a, boxes_a), (shot_b, boxes_b), (shot_c, boxes_c) = rendered
    assert [b[0] for b in boxes_b] == [
        "cog_cb_moneybags",
        "cog_lb_bottomfeeder",
        "cog_sb_coldcaller",
        "cog_sb_movershaker",
        "toon_rabbit",
    ]
    first = pre_annotate(folder, "a_first.png", [(*b, 0.91) for b in boxes_a], size=size, picture=shot_a)
    moneybags, bottomfeeder, coldcaller, movershaker, rabbit = boxes_b
    proposed = [(*moneybags, 0.42), (*bottomfeeder, 0.8), (*coldcaller, 0.7), (*rabbit, 0.77)]
    second = pre_annotate(folder, "b_second.png", proposed, size=size, picture=shot_b)
    pre_annotate(folder, "c_third.png", [(*b, 0.66) for b in boxes_c], size=size, picture=shot_c)
    page = browser.new_page()
    with serving(folder) as url:
        page.goto(url)
        page.wait_for_function(f"document.querySelectorAll('#boxes .box').length === {len(boxes_a)}")
        assert page.inner_text("#counter") == "reviewed 0 / left 3"
        assert f"{boxes_a[0][0]} 0.91" in page.text_content("#boxes")
        assert "time on this screenshot" in page.inner_text("#timer")

        # accept the first as it is: Space is labelImg's Verify Image
        page.keyboard.press(" ")
        assert until(lambda: read_voc(first.with_suffix(".xml")).verified)
        assert review_state(first, find_annotation(first)).status == REVIEWED
        page.wait_for_function("document.getElementById('counter').textContent === 'reviewed 1 / left 2'")

        page.keyboard.press("d")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('b_second.png')")
        xml = second.with_suffix(".xml")
        origin = page.locator("#boxes").bounding_box()
        assert (origin["width"], origin["height"]) == size  # shown at scale 1: page pixels are image pixels
        at = lambda x, y: (origin["x"] + x, origin["y"] + y)  # noqa: E731

        _, x0, y0, x1, y1 = moneybags
        middle = ((x0 + x1) // 2, (y0 + y1) // 2)
        page.mouse.click(*at(*middle))  # select the Cog: the pickers show its kind, suit and name
        assert page.input_value("#kind") == "cog" and page.input_value("#suit") == "cb"
        assert page.input_value("#name") == "moneybags" and page.is_hidden("#animal-row")
        page.screenshot(path=str(tmp_path / "review.png"))
        if os.environ.get("TOONVISION_DOCS_SCREENSHOT"):  # refreshes the README's picture
            shutil.copy(tmp_path / "review.png", REPO / "docs" / "review.png")

        drag(page, at(*middle), at(middle[0] + 20, middle[1] + 10))  # move it by its body
        moved = ("cog_cb_moneybags", x0 + 20, y0 + 10, x1 + 20, y1 + 10)
        assert until(lambda: boxes_on_disk(xml)[0] == moved)
        assert review_state(second, find_annotation(second)).status == REVIEWED  # a person's save
        assert "cog_cb_moneybags 0.42" not in page.text_content("#boxes")  # moved: the person's box, not the model's

        drag(page, at(x1 + 20, y1 + 10), at(x1 + 30, y1 + 30))  # resize it by its bottom-right corner
        resized = ("cog_cb_moneybags", x0 + 20, y0 + 10, x1 + 30, y1 + 30)
        assert until(lambda: boxes_on_disk(xml)[0] == resized)

        # relabel the Toon: its animal; then make it a Cog: kind, suit, and one of that suit's 8
        _, rx0, ry0, rx1, ry1 = rabbit
        page.mouse.click(*at((rx0 + rx1) // 2, (ry0 + ry1) // 2))
        assert page.input_value("#kind") == "toon" and page.is_hidden("#suit-row")
        page.select_option("#animal", "cat")
        assert until(lambda: boxes_on_disk(xml)[3][0] == "toon_cat")
        page.select_option("#kind", "cog")
        page.select_option("#suit", "lb")
        assert page.locator("#name option").count() == 8
        assert page.locator("#name option").all_inner_texts()[-1] == "Big Wig"
        page.select_option("#name", "bloodsucker")
        assert until(lambda: boxes_on_disk(xml)[3] == ("cog_lb_bloodsucker", rx0, ry0, rx1, ry1))

        page.keyboard.press("Delete")  # the selected box
        assert until(lambda: boxes_on_disk(xml) == [resized, bottomfeeder, coldcaller])

        page.keyboard.press("w")  # draw the missed one: it gets the label picked last
        _, mx0, my0, mx1, my1 = movershaker
        drag(page, at(mx0, my0), at(mx1, my1))
        assert until(lambda: len(boxes_on_disk(xml)) == 4)
        assert boxes_on_disk(xml)[3] == ("cog_lb_bloodsucker", mx0, my0, mx1, my1)
        page.screenshot(path=str(tmp_path / "review-edited.png"))

        page.keyboard.press(" ")
        assert until(lambda: read_voc(xml).verified)
        assert xml.read_bytes() == voc_bytes(read_voc(xml))  # still labelImg's bytes
        page.wait_for_function("document.getElementById('counter').textContent === 'reviewed 2 / left 1'")

        page.keyboard.press("a")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('a_first.png')")
        # time spent per screenshot, kept by the server: the page sends it as it saves and as it moves on
        assert until(lambda: page.evaluate("S.list.screenshots.map((s) => s.seconds > 0)") == [True, True, False])
        page.keyboard.press("d")
        page.keyboard.press("d")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('c_third.png')")
        assert page.inner_text("#position") == "3 of 3"
    page.close()


def test_a_file_changed_on_disk_shows_both_versions_in_the_page(tmp_path, browser):
    folder = tmp_path / "shots"
    image = pre_annotate(folder, "shot.png", [("toon_cat", 40, 60, 90, 170, 0.5)])
    xml = image.with_suffix(".xml")
    page, other = browser.new_page(), browser.new_page()
    with serving(folder) as url:
        for tab in (page, other):
            tab.goto(url)
            tab.wait_for_function("document.querySelectorAll('#boxes .box').length === 1")
        origin = page.locator("#boxes").bounding_box()
        at = lambda x, y: (origin["x"] + x, origin["y"] + y)  # noqa: E731

        # Two tabs on one file: the second one's save is refused, and keeping its version is a choice.
        other.bring_to_front()
        drag(other, at(60, 100), at(60, 110))
        assert until(lambda: boxes_on_disk(xml) == [("toon_cat", 40, 70, 90, 180)])
        page.bring_to_front()
        drag(page, at(60, 100), at(80, 100))
        page.wait_for_selector("#conflict:not([hidden])")
        assert "toon_cat  60 60 110 170" in page.inner_text("#conflict-mine")
        assert "toon_cat  40 70 90 180" in page.inner_text("#conflict-theirs")
        assert boxes_on_disk(xml) == [("toon_cat", 40, 70, 90, 180)]
        page.click("#overwrite")
        assert until(lambda: boxes_on_disk(xml) == [("toon_cat", 60, 60, 110, 170)])

        # labelImg (or annotate --refresh) saved meanwhile: the page shows both, the person reloads.
        theirs = voc_bytes(Annotation("shot.png", 320, 240, boxes=[Box("toon_horse", 5, 5, 30, 30)]))
        xml.write_bytes(theirs)
        page.keyboard.press(" ")
        page.wait_for_selector("#conflict:not([hidden])")
        assert "verified\ntoon_cat  60 60 110 170" in page.inner_text("#conflict-mine")
        assert "toon_horse" in page.inner_text("#conflict-theirs")
        page.screenshot(path=str(tmp_path / "conflict.png"))
        assert xml.read_bytes() == theirs
        page.click("#reload")
        page.wait_for_function("document.getElementById('boxes').textContent.includes('toon_horse')")
        page.keyboard.press(" ")  # now on the version on disk: saves go through
        assert until(lambda: read_voc(xml).verified)
        assert boxes_on_disk(xml) == [("toon_horse", 5, 5, 30, 30)]
    page.close()
    other.close()


def test_undo_redo_and_zoom_in_the_page(tmp_path, browser):
    """Ctrl+Z takes back each change and saves the state before it; zoomed in, a drag of page pixels moves the box
    by image pixels, and the point under Ctrl+wheel stays where it is."""
    folder = tmp_path / "shots"
    cat, dog = ("toon_cat", 40, 60, 90, 170), ("toon_dog", 200, 50, 260, 180)
    image = pre_annotate(folder, "shot.png", [(*cat, 0.5), (*dog, 0.6)])
    xml = image.with_suffix(".xml")
    page = browser.new_page()
    with serving(folder) as url:
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#boxes .box').length === 2")
        assert page.is_disabled("#undo") and page.is_disabled("#redo")
        origin = page.locator("#boxes").bounding_box()
        page.mouse.click(origin["x"] + 230, origin["y"] + 100)  # the dog
        page.keyboard.press("Delete")
        assert until(lambda: boxes_on_disk(xml) == [cat])
        page.keyboard.press(" ")
        assert until(lambda: read_voc(xml).verified)

        page.keyboard.press("Control+z")  # the verification
        assert until(lambda: not read_voc(xml).verified)
        page.keyboard.press("Control+z")  # the deletion: the dog is back, with its confidence
        assert until(lambda: boxes_on_disk(xml) == [cat, dog])
        assert "toon_dog 0.60" in page.text_content("#boxes")
        assert page.is_disabled("#undo") and not page.is_disabled("#redo")
        page.keyboard.press("Control+y")
        assert until(lambda: boxes_on_disk(xml) == [cat])
        page.click("#undo")
        assert until(lambda: boxes_on_disk(xml) == [cat, dog])

        page.keyboard.press("+")
        page.keyboard.press("+")  # 1.25 * 1.25: a 320 px image is 500 page px wide
        assert page.inner_text("#zoom") == "zoom 156%"
        zoomed = page.locator("#boxes").bounding_box()
        assert (round(zoomed["width"]), round(zoomed["height"])) == (500, 375)
        scale = zoomed["width"] / 320
        at = lambda x, y: (zoomed["x"] + x * scale, zoomed["y"] + y * scale)  # noqa: E731
        drag(page, at(65, 115), at(65 + 16, 115 + 8))  # the cat's middle, 16 and 8 image px on
        assert until(lambda: boxes_on_disk(xml) == [("toon_cat", 56, 68, 106, 178), dog])
        page.keyboard.press("Control+z")  # a move is one step, however many pointer moves it took
        assert until(lambda: boxes_on_disk(xml) == [cat, dog])

        page.keyboard.press("0")
        assert page.locator("#boxes").bounding_box()["width"] == 320
        for _ in range(6):  # 381%: larger than the view, which scrolls
            page.keyboard.press("=")
        before = page.locator("#boxes").bounding_box()
        dog_middle = (before["x"] + 230 * 3.8147, before["y"] + 115 * 3.8147)
        page.mouse.move(*dog_middle)
        page.keyboard.down("Control")
        page.mouse.wheel(0, -100)
        page.keyboard.up("Control")
        page.wait_for_function("document.getElementById('zoom').textContent === 'zoom 477%'")
        after = page.locator("#boxes").bounding_box()
        # the dog stays under the pointer: the view scrolled by what the zoom moved it
        assert abs(after["x"] + 230 * 4.7684 - dog_middle[0]) <= 1
        assert abs(after["y"] + 115 * 4.7684 - dog_middle[1]) <= 1
    page.close()


def test_game_rule_flags_are_shown_beside_their_box_in_the_page(tmp_path, browser):
    folder = tmp_path / "shots"
    boxes = [("toon_cat", 0, 600, 150, 720, 0.9), ("toon_dog", 600, 300, 660, 430, 0.9)]  # over the Laff meter; fine
    pre_annotate(folder, "pre.png", boxes, size=(1280, 720))
    page = browser.new_page()
    with serving(folder) as url:
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#boxes .box.flagged').length === 1")
        first, second = page.inner_text("#box-list").splitlines()
        assert "toon_cat" in first and "interface:" in first and "the Laff meter (bottom left)" in first
        assert "interface" not in second
    page.close()


def test_bad_input_is_shown_in_the_page(tmp_path, browser):
    folder = tmp_path / "shots"
    corrupt = persons(folder, "a_corrupt.png", [])
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    broken = persons(folder, "b_broken.png", [])
    broken.with_suffix(".xml").write_bytes(b"<annotation><object>")
    persons(folder, "c_odd.png", [("cog_bb_nobody", 10, 10, 50, 50), ("toon_cat", 280, 200, 400, 300)])
    before = files(folder)
    page = browser.new_page()
    with serving(folder) as url:
        page.goto(url)
        page.wait_for_function("document.getElementById('message').textContent.includes('cannot be read')")
        assert "a_corrupt.png cannot be read as an image: skipped" in page.inner_text("#message")
        page.wait_for_selector("#list .unreadable")
        page.keyboard.press("d")
        page.wait_for_function("document.getElementById('message').textContent.includes('labelImg cannot read')")
        page.keyboard.press("w")
        page.keyboard.press(" ")
        assert page.is_disabled("#verify") and page.is_disabled("#kind")
        page.keyboard.press("d")
        page.wait_for_function("document.querySelectorAll('#boxes .box.flagged').length === 2")
        listed = page.inner_text("#box-list")
        assert "cog_bb_nobody not in predefined_classes.txt" in listed
        assert "toon_cat outside the image" in listed
        message = page.inner_text("#message")
        assert "label not in predefined_classes.txt: cog_bb_nobody" in message and "outside the image" in message
    page.close()
    assert files(folder) == before


def test_a_server_killed_while_the_page_saves_leaves_every_file_old_or_new(tmp_path, browser):
    folder = tmp_path / "shots"
    images = [pre_annotate(folder, f"s{i}.png", [("toon_cat", 10, 10, 60, 90, 0.5)]) for i in range(4)]
    server = subprocess.Popen(
        [sys.executable, "-m", "toonvision.cli", "review", str(folder), "--root", str(tmp_path / "ws"), "--no-open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        url = None
        for line in server.stdout:
            if line.startswith("review page: "):
                url = line.split()[2]
                break
        assert url, server.stderr.read()
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#boxes .box').length === 1")
        # The page's own save path, as fast as it goes: move the box, save, next screenshot, and again.
        # The page's own save path as fast as it goes (move the box, save, next screenshot...), not awaited: the
        # loop runs until the server dies under it.
        page.evaluate(
            """() => { (async () => {
                window.saves = 0;
                for (let i = 0; ; i++) {
                    await go(i % 4);
                    const b = S.boxes[0];
                    b.xmin = 10 + (i % 50); b.xmax = b.xmin + 50;
                    changed();
                    await S.chain;
                    window.saves += 1;
                }
            })(); }"""
        )
        assert until(lambda: page.evaluate("window.saves") >= 20, timeout=15)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        saves = page.evaluate("window.saves")
        page.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert saves >= 20
    for image in images:
        ann = read_voc(image.with_suffix(".xml"))  # every file parses: old or new, never half
        (box,) = ann.boxes
        assert 10 <= box.xmin < 60 and box.xmax == box.xmin + 50 and (box.ymin, box.ymax) == (10, 90)
        state = review_state(image, find_annotation(image)).status
        assert state == (PRE_ANNOTATED if box.xmin == 10 else REVIEWED)


def test_ctrl_c_stops_the_server_cleanly(tmp_path):
    persons(tmp_path / "shots", "a.png", [])
    server = subprocess.Popen(
        [sys.executable, "-m", "toonvision.cli", "review", str(tmp_path / "shots"), "--no-open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        url = next((line.split()[2] for line in server.stdout if line.startswith("review page: ")), None)
        assert url and url.startswith("http://127.0.0.1:")
        assert until(lambda: urllib.request.urlopen(url + "api/screenshots", timeout=2).status == 200)
        server.send_signal(signal.SIGINT)
        out, errors = server.communicate(timeout=15)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, errors
    assert "review server stopped" in out and "Traceback" not in errors
