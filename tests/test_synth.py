"""The synthetic renderer: determinism, tight boxes, nametags, labels, resume after a kill, every class."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import kill_group, start_xvfb
from toonvision.data.annotations import read_voc
from toonvision.data.taxonomy import STREET_SHORTS, all_labels, parse_label
from toonvision.data.workspace import Workspace
from toonvision.synth import PRESETS, SynthConfig, apply_weights, generate, masks_dir, parse_size
from toonvision.synth.dataset import render_files, targets, write_files
from toonvision.synth.scene import Conditions

# make test runs the suite on two xdist workers: this module's tests share a module fixture, so they run on one.
pytestmark = pytest.mark.xdist_group("synth")

SMALL = {"width": 320, "height": 180}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def renderer():
    from toonvision.synth.render import get_renderer

    return get_renderer(SMALL["width"], SMALL["height"])


@pytest.fixture(scope="session")  # session: under xdist, other modules' tests may run between this module's
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, SynthConfig]:
    ws = Workspace(tmp_path_factory.mktemp("synth"))
    cfg = SynthConfig.from_preset("seed", screenshots=10, seed=7, masks=True, yolo=True, **SMALL)
    summary = generate(ws, cfg, workers=1)
    assert summary.written == 10 and not summary.errors and not summary.conflicts
    return ws, cfg


def test_same_seed_same_bytes(small_run: tuple[Workspace, SynthConfig], renderer, tmp_path: Path) -> None:
    ws, cfg = small_run
    other = Workspace(tmp_path / "other")
    # The same indices rendered in another order (the last first), after screenshots of another seed, by a
    # renderer that has drawn other scenes before: the bytes must not depend on what was rendered before.
    seed8 = Workspace(tmp_path / "s8")
    generate(seed8, SynthConfig.from_preset("seed", screenshots=2, seed=8, **SMALL), workers=1)
    for i in reversed(range(cfg.screenshots)):
        files, _ = render_files(renderer, cfg, i, targets(other, cfg, i))
        assert write_files(files) == []
    for i in range(cfg.screenshots):
        a, b = targets(ws, cfg, i), targets(other, cfg, i)
        assert a.png.read_bytes() == b.png.read_bytes()
        assert a.mask.read_bytes() == b.mask.read_bytes()
        # The XML holds the absolute path, which differs between the two roots; the rest is identical.
        assert a.xml.read_bytes().replace(str(ws.root).encode(), b"ROOT") == b.xml.read_bytes().replace(
            str(other.root).encode(), b"ROOT"
        )
    # A different seed gives different screenshots.
    eight = SynthConfig.from_preset("seed", screenshots=1, seed=8, **SMALL)
    assert targets(seed8, eight, 0).png.read_bytes() != targets(ws, cfg, 0).png.read_bytes()


def test_files_and_labels(small_run: tuple[Workspace, SynthConfig]) -> None:
    ws, cfg = small_run
    assert ws.classes_file.exists()
    assert (ws.screenshots / "classes.txt").read_text().split() == [str(lab) for lab in all_labels()]
    n_boxes = 0
    for i in range(cfg.screenshots):
        t = targets(ws, cfg, i)
        assert t.png.stem.split("_")[0] in STREET_SHORTS
        ann = read_voc(t.xml)
        assert ann.folder == "screenshots" and ann.filename == t.png.name
        assert ann.path == str(t.png.resolve())
        assert (ann.width, ann.height, ann.depth) == (cfg.width, cfg.height, 3)
        with Image.open(t.png) as im:
            assert im.size == (cfg.width, cfg.height) and im.mode == "RGB"
        for box in ann.boxes:
            parse_label(box.name)
            assert 1 <= box.xmin < box.xmax <= cfg.width
            assert 1 <= box.ymin < box.ymax <= cfg.height
        n_boxes += len(ann.boxes)
        assert len(t.yolo.read_text().splitlines()) == len(ann.boxes)
    assert n_boxes > 0
    # No temporary files left behind.
    assert not [p for p in ws.screenshots.iterdir() if p.name.startswith(".")]


def test_boxes_hug_visible_pixels(small_run: tuple[Workspace, SynthConfig]) -> None:
    ws, cfg = small_run
    for i in range(cfg.screenshots):
        t = targets(ws, cfg, i)
        ann = read_voc(t.xml)
        mask = np.asarray(Image.open(t.mask))
        for k, box in enumerate(ann.boxes, start=1):
            ys, xs = np.nonzero(mask == k)
            assert len(ys), f"{t.png.name}: box {k} has no pixels in the mask"
            # labelImg never writes 0, so a box starting at the left/top edge starts at 1.
            assert box.xmin == max(1, xs.min()) and box.xmax == xs.max() + 1
            assert box.ymin == max(1, ys.min()) and box.ymax == ys.max() + 1


def test_nametags_outside_their_box_and_boxes_from_id_pass(renderer) -> None:
    from toonvision.synth.scene import Realism

    weights = {str(lab): 1.0 for lab in all_labels()}
    tags = 0
    for index in range(12):
        res = renderer.render_index(3, index, weights, Realism())
        assert res.image.shape == (SMALL["height"], SMALL["width"], 3)
        for inst in res.instances:
            if inst.box is None:
                continue
            ys, xs = np.nonzero(res.ids == inst.id)
            assert (inst.box.xmax, inst.box.ymax) == (xs.max() + 1, ys.max() + 1)
            assert inst.box.truncated == (
                inst.box.xmax == SMALL["width"]
                or inst.box.ymax == SMALL["height"]
                or inst.box.xmin == 1
                or inst.box.ymin == 1
            )
            if inst.nametag is not None:
                tags += 1
                bottom = inst.nametag[3]
                # Entirely above its own box: the tag's bottom edge is above the box's top.
                assert bottom <= inst.box.ymin, (index, inst.label, inst.nametag, inst.box)
    assert tags > 0


def test_every_class_renders_in_the_contact_sheet(tmp_path: Path) -> None:
    from toonvision.synth.contact_sheet import render_closeup, render_contact_sheet, sheet_rows

    rows = sheet_rows()
    labels = [lab for _, row in rows for lab in row]
    assert sorted(map(str, labels)) == sorted(map(str, all_labels()))
    for label in labels:
        img = render_closeup(label, size=(48, 80))
        background = img[0, 0]
        assert (np.abs(img.astype(int) - background).sum(axis=2) > 30).mean() > 0.05, label
    path = render_contact_sheet(tmp_path / "sheet.png", cell=(40, 70))
    with Image.open(path) as im:
        assert im.size[0] == 11 * 40 and im.size[1] > 5 * 70


def test_weights_and_presets() -> None:
    base = PRESETS["seed"].weights
    w = apply_weights(base, ["toon_cat=3", "cog_bb=0.5", "toon=2"])
    assert w["toon_cat"] == pytest.approx(base["toon_cat"] * 6)
    assert w["cog_bb_flunky"] == pytest.approx(base["cog_bb_flunky"] * 0.5)
    assert w["cog_lb_bigwig"] == base["cog_lb_bigwig"]
    for bad in ("toon_cat", "dragon=2", "toon_cat=-1", "cog_bb=x"):
        with pytest.raises(ValueError):
            apply_weights(base, [bad])
    with pytest.raises(ValueError):
        apply_weights(base, ["cog=0", "toon=0"])
    assert parse_size("640x360") == (640, 360)
    with pytest.raises(ValueError):
        parse_size("big")
    seed = PRESETS["seed"].weights
    cogs = sum(v for k, v in seed.items() if k.startswith("cog_"))
    toons = sum(v for k, v in seed.items() if k.startswith("toon_"))
    assert 1.6 < cogs / toons < 2.5


def test_weights_shape_the_data(tmp_path: Path) -> None:
    weights = apply_weights(PRESETS["seed"].weights, ["cog=0", "toon_duck=0"])
    cfg = SynthConfig.from_preset("seed", screenshots=4, seed=1, weights=weights, **SMALL)
    summary = generate(Workspace(tmp_path), cfg, workers=1)
    assert summary.boxes and all(k.startswith("toon_") and k != "toon_duck" for k in summary.boxes)


def test_user_files_are_left_alone_and_processed_ones_skipped(tmp_path: Path) -> None:
    ws = Workspace(tmp_path).init()
    cfg = SynthConfig.from_preset("seed", screenshots=3, seed=2, **SMALL)
    mine = targets(ws, cfg, 0).png
    mine.write_bytes(b"my own screenshot")
    moved = targets(ws, cfg, 1)
    generate(ws, SynthConfig.from_preset("seed", screenshots=3, seed=2, **SMALL), workers=1)
    # Extraction moves a screenshot and its XML to raw/processed: that index is done.
    for p in (moved.png, moved.xml):
        p.rename(ws.processed / p.name)
    summary = generate(ws, cfg, workers=1)
    assert mine.read_bytes() == b"my own screenshot"
    assert summary.written == 0 and summary.skipped == 2 and summary.conflicts == [str(mine)]
    assert not targets(ws, cfg, 0).xml.exists()
    assert not moved.png.exists()


def test_interrupted_run_resumes(tmp_path: Path) -> None:
    """SIGKILL a two-process run mid-way; rerunning completes the set with no duplicates or partial files."""
    root = tmp_path / "ws"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from toonvision.synth import SynthConfig, generate
        from toonvision.data.workspace import Workspace
        if __name__ == "__main__":
            cfg = SynthConfig.from_preset("seed", screenshots=40, seed=5, masks=True, width=320, height=180)
            generate(Workspace(Path({str(root)!r})), cfg, workers=2,
                     progress=lambda r: print("done", r.index, flush=True))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        text=True,
    )
    seen = 0
    deadline = time.monotonic() + 90
    while seen < 5 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line.startswith("done")
    # Kill the whole process group: the parent and its render workers, wherever they are.
    kill_group(proc.pid)
    proc.wait()
    assert seen >= 5
    ws = Workspace(root)
    cfg = SynthConfig.from_preset("seed", screenshots=40, seed=5, masks=True, **SMALL)
    before = {p.name for p in ws.screenshots.glob("*.png")}
    assert 0 < len(before) < 40
    summary = generate(ws, cfg, workers=1)
    assert summary.skipped >= len(before) - 2 and summary.written + summary.skipped == 40
    assert not summary.conflicts and not summary.errors
    pngs = sorted(p.name for p in ws.screenshots.glob("*.png"))
    assert pngs == sorted(f"{cfg.stem(i)}.png" for i in range(40))
    assert len(list(ws.screenshots.glob("*.xml"))) == 40
    assert len(list(masks_dir(ws).glob("*.mask.png"))) == 40
    leftovers = [
        p.name for p in list(ws.screenshots.iterdir()) + list(masks_dir(ws).iterdir()) if p.name.startswith(".")
    ]
    assert leftovers == []
    for p in ws.screenshots.glob("*.png"):
        with Image.open(p) as im:
            im.load()
    # Complete files from the killed run are byte-identical to a clean render.
    clean = Workspace(tmp_path / "clean")
    name = sorted(before)[0]
    index = int(Path(name).stem.split("_")[1])
    generate(clean, SynthConfig.from_preset("seed", screenshots=index + 1, seed=5, masks=True, **SMALL), workers=1)
    assert (ws.screenshots / name).read_bytes() == (clean.screenshots / name).read_bytes()


def test_rendered_scenes_are_freed(renderer) -> None:
    """Every part of a scene instances one shared primitive, so the primitive's parents count the parts alive.
    Panda3D keeps the last frame drawn; no earlier scene may stay (the scenes' lights once kept every scene
    alive: 5 MB a screenshot, until a 6000-screenshot run ran out of 24 GB)."""
    from toonvision.synth.geometry import unit_box

    weights = {str(label): 1.0 for label in all_labels()}
    renderer.render_index(11, 0, weights)
    with_one = unit_box().node().getNumParents()  # this scene's parts, and any other tests' scenes still alive
    for index in range(1, 6):
        renderer.render_index(11, index, weights)
    # A scene has about 200 boxes: kept scenes would add about 1000 here.
    assert unit_box().node().getNumParents() - with_one < 300


def _render_workers(pid: int) -> list[int]:
    """The spawned worker processes of ``pid`` (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in map(int, children):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in command and b"resource_tracker" not in command:
                found.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the render workers through Linux's /proc")
def test_a_render_worker_that_dies_does_not_stop_the_run(tmp_path: Path) -> None:
    """SIGKILL one of two render workers (as the out-of-memory killer does): the run still renders every
    screenshot, where multiprocessing.Pool waited forever for the dead worker's task."""
    root = tmp_path / "ws"
    script = textwrap.dedent(f"""
        from pathlib import Path
        from toonvision.synth import SynthConfig, generate
        from toonvision.data.workspace import Workspace
        if __name__ == "__main__":
            cfg = SynthConfig.from_preset("seed", screenshots=16, seed=5, width=320, height=180)
            s = generate(Workspace(Path({str(root)!r})), cfg, workers=2,
                         progress=lambda r: print("done", r.index, flush=True))
            print("summary", s.written, s.skipped, len(s.errors), len(s.conflicts), flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, start_new_session=True, text=True
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert all(line.startswith("done") for line in lines), lines
        workers = _render_workers(proc.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    finally:
        kill_group(proc.pid)
    assert proc.returncode == 0
    written, skipped, errors, conflicts = map(int, out.strip().splitlines()[-1].split()[1:])
    assert (written, skipped, errors, conflicts) == (16, 0, 0, 0)
    assert len(list((root / "raw" / "screenshots").glob("*.png"))) == 16


def test_command_help_does_not_import_panda3d() -> None:
    code = (
        "import sys, toonvision.cli.synth, toonvision.synth; print(any(m.startswith('panda3d') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert out.stdout.strip() == "False"


def test_command_runs(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from toonvision.cli.synth import synth

    app = typer.Typer()
    app.command("synth")(synth)
    app.command("noop")(lambda: None)  # two commands, so "synth" is addressed by name as in the real CLI
    result = CliRunner().invoke(
        app, ["synth", "--root", str(tmp_path), "-n", "2", "--size", "320x180", "--workers", "1", "--weight", "toon=0"]
    )
    assert result.exit_code == 0, result.output
    assert "preset=seed" in result.output and "written=2" in result.output
    again = CliRunner().invoke(
        app, ["synth", "--root", str(tmp_path), "-n", "2", "--size", "320x180", "--workers", "1", "--weight", "toon=0"]
    )
    assert "written=0 skipped=2" in again.output
    bad = CliRunner().invoke(app, ["synth", "--root", str(tmp_path), "--weight", "dragon=1"])
    assert bad.exit_code == 2 and "matches no class" in bad.output


SHIFTS = {
    "camera": Conditions(fov=(75.0, 90.0), camera_height=2.0),
    "dusk": Conditions(time_of_day="dusk"),
    "night": Conditions(time_of_day="night"),
    "interface": Conditions(interface=True),
    "jpeg": Conditions(jpeg=30),
    "far": Conditions(distance=3.0),
}


@pytest.mark.parametrize("shift", SHIFTS)
def test_a_shifted_world_is_its_own_and_byte_reproducible(renderer, tmp_path: Path, shift: str) -> None:
    """Each setting of a shifted world changes the screenshot and nothing else about its draws: the same seed and
    setting twice give the same bytes, also after other screenshots were rendered."""
    plain = SynthConfig.from_preset("seed", screenshots=1, seed=3, yolo=False, **SMALL)
    shifted = replace(plain, conditions=SHIFTS[shift]).validate()
    ws_a, ws_b, ws_plain = (Workspace(tmp_path / n) for n in ("a", "b", "plain"))
    first, _ = render_files(renderer, shifted, 0, targets(ws_a, shifted, 0))
    render_files(renderer, plain, 1, targets(ws_plain, plain, 1))  # something else in between
    again, _ = render_files(renderer, shifted, 0, targets(ws_b, shifted, 0))
    default, _ = render_files(renderer, plain, 0, targets(ws_plain, plain, 0))
    png = targets(ws_a, shifted, 0).png
    assert first[png] == again[targets(ws_b, shifted, 0).png]
    assert first[png] != default[targets(ws_plain, plain, 0).png]
    assert shifted.fingerprint() != plain.fingerprint()
    assert "conditions" not in plain.fingerprint()  # workspaces rendered before these settings still match


def test_the_interface_hides_what_it_covers() -> None:
    import random

    from toonvision.data.annotations import Box
    from toonvision.synth.interface import draw_interface

    street = np.full((720, 1280, 3), 120, np.uint8)
    under_laff = Box("toon_cat", 10, 600, 150, 710)  # inside the Laff meter's corner
    middle = Box("cog_bb_flunky", 500, 200, 620, 500)
    drawn, kept = draw_interface(street, [under_laff, middle], random.Random(0))
    assert kept == [middle] and drawn.shape == street.shape
    assert (drawn[650, 70] != 120).any() and (drawn[350, 560] == 120).all()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--fov", "wide"), "--fov"),
        (("--fov", "5-200"), "field of view"),
        (("--camera-height", "9"), "camera height"),
        (("--distance", "0.1"), "camera distance"),
        (("--time", "noon"), "time of day"),
        (("--jpeg", "101"), "JPEG quality"),
        (("--interface", "--masks"), "--masks and --interface"),
        (("--contact-sheet", "--time", "night"), "--contact-sheet"),
    ],
)
def test_a_shifted_world_that_cannot_be_is_one_error_line(tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "toonvision.cli", "synth", "--root", str(tmp_path / "w"), "-n", "1", *args],
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and words in lines[0], done.stderr
    assert not (tmp_path / "w" / "raw" / "screenshots").exists() or not any(
        (tmp_path / "w" / "raw" / "screenshots").iterdir()
    )


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed: no X server to stay away from")
def test_the_renderer_never_uses_an_x_display(tmp_path: Path) -> None:
    """Software rendering is offscreen even where an X server answers: TinyPanda's default pipe would join it
    (at $DISPLAY, or :0 without one) and die with it, as a test's Xvfb ending under a render showed."""
    xvfb, name = start_xvfb()
    try:
        script = (
            "from toonvision.synth.render import get_renderer\n"
            "print(get_renderer(64, 48).base.pipe.get_type().get_name())\n"
        )
        env = {**os.environ, "DISPLAY": name}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[-1] == "TinyOffscreenGraphicsPipe"
    finally:
        xvfb.send_signal(signal.SIGTERM)
        xvfb.wait(timeout=10)


def test_facing_is_the_angle_between_where_an_entity_looks_and_the_camera() -> None:
    from toonvision.synth.anatomy import Look
    from toonvision.synth.scene import EntityPlan, facing

    def toon(heading: float) -> EntityPlan:
        return EntityPlan(parse_label("toon_duck"), 0.0, 0.0, heading, Look(), 0)

    assert facing(toon(0), (0, 10, 3)) == pytest.approx(0)  # heading 0 looks along +Y
    assert facing(toon(0), (0, -10, 3)) == pytest.approx(180)
    assert facing(toon(0), (10, 0, 3)) == pytest.approx(90)
    assert facing(toon(90), (-10, 0, 3)) == pytest.approx(0)  # headings turn counter-clockwise
    assert facing(toon(-45), (5, 5, 9)) == pytest.approx(0)
