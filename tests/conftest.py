from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toonvision.data.annotations import Annotation, Box, voc_bytes
from toonvision.data.workspace import Workspace

# Keep TensorFlow quiet and single-machine friendly in every test process; a wide terminal for the verbs run
# in this process, whose rich consoles read the width once.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["COLUMNS"] = "200"
# A test process holds TensorFlow's and many models' objects: with Python's default thresholds a full collection
# over all of them runs every few thousand allocations, about a tenth of the suite's time. Rarer ones.
gc.set_threshold(100_000, 50, 100)

# Groups of tests whose Ray must not run beside another of the same group (see test_compare_ray.py).
RAY_GROUPS = ("ray", "ray-cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest work first: the slow tests (the demo's two minutes), then the Ray groups, then the rest in
    file order. make test hands tests out in this order (xdist's --no-loadscope-reorder): so one worker runs the
    demo while the other gets through the Ray tests and builds the shared trained workspace, instead of both
    reaching it at once and one waiting half a minute for the other to build it."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow"):
            return 0
        group = item.get_closest_marker("xdist_group")
        return 1 if group is not None and group.args and group.args[0] in RAY_GROUPS else 2

    items.sort(key=rank)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws").init()


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def add_screenshot(
    ws: Workspace,
    name: str,
    boxes: Sequence[tuple[str, float, float, float, float]],
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    folder: Path | None = None,
) -> tuple[Path, Path]:
    """A noise screenshot with a labelImg Pascal VOC file beside it."""
    folder = folder or ws.screenshots
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / name
    noise_image(*size, seed=seed).save(image)
    ann = Annotation(
        filename=image.name,
        width=size[0],
        height=size[1],
        folder=folder.name,
        path=str(image),
        boxes=[Box(*b) for b in boxes],
    )
    xml = image.with_suffix(".xml")
    xml.write_bytes(voc_bytes(ann))
    return image, xml


# Verbs that stay in a child process even when a test does not ask for one: Ray's drivers (compare, synth
# fan out and shut down), Panda3D's one engine per process (synth, demo), the review server's event loop.
OWN_PROCESS = {"compare", "synth", "demo", "review"}


def run_cli(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    subprocess_: bool | None = None,
) -> subprocess.CompletedProcess:
    """Run the ``toonvision`` command as a user would and return its exit code, standard output and error.

    Most verbs run inside this test process through typer's runner: each child process would spend ~5 s of
    CPU importing TensorFlow again, and ~100 calls made that a third of ``make test``. A call with ``env``,
    one of OWN_PROCESS's verbs (but for its ``--help``), or ``subprocess_=True`` runs ``python -m toonvision.cli``
    in a child process; ``subprocess_=False`` keeps an OWN_PROCESS verb in this one, for a call that the test
    knows ends before it starts any of theirs (a refused option, stages all done earlier).
    """
    verb = next((arg for arg in args if not arg.startswith("-")), "")
    own_process = verb in OWN_PROCESS and "--help" not in args  # help starts no Ray, Panda3D or server
    if subprocess_ or env is not None or (own_process and subprocess_ is None):
        return subprocess.run(
            [sys.executable, "-m", "toonvision.cli", *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
        )
    return _run_in_process(list(args), cwd)


def _run_in_process(args: list[str], cwd: Path | None) -> subprocess.CompletedProcess:
    from typer.testing import CliRunner

    from toonvision.cli import app

    if "keras" in sys.modules:
        # A fresh start as in a new process: Keras numbers its layers per session (conv2d_1...), and verbs
        # such as explain find layers by those names.
        sys.modules["keras"].backend.clear_session(free_memory=False)
    before = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, args, env={"COLUMNS": "200"}, prog_name="toonvision")
    finally:
        os.chdir(before)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # A traceback is what a user would see: keep it in stderr, where the tests look for one.
        import traceback

        trace = "".join(traceback.format_exception(result.exception))
        return subprocess.CompletedProcess(args, 1, result.stdout, result.stderr + trace)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def kill_group(pgid: int, timeout: float = 30) -> None:
    """SIGKILL a process group and return once none of its processes runs any more (each gone or a zombie).
    The signal lands on each process when it is next scheduled: on a loaded machine a child of the group may
    still write for a moment after its parent has been reaped, and a test that looks at once would see it."""
    import signal
    import time

    def runs(stat: Path) -> bool:
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[-1].split()[:3]
        except OSError:
            return False  # gone meanwhile
        return int(group) == pgid and state != "Z"

    os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(runs(stat) for stat in Path("/proc").glob("[0-9]*/stat")):
            return
        time.sleep(0.05)
    raise TimeoutError(f"process group {pgid} still runs {timeout} s after SIGKILL")


def start_xvfb(seconds: float = 30) -> tuple[subprocess.Popen, str]:
    """An Xvfb of the test's own (640x360) on a display number it picks itself among the free ones (another
    suite may run beside this one) and its name, such as ":1"; returns once a client can connect to it. Fails
    with what Xvfb said when it ends first or does not answer within ``seconds``."""
    import select
    import time

    from Xlib import display, error

    read, write = os.pipe()
    # -noreset: the server stays as it is when its last client leaves (this function's own test connection, or
    # a watch run); otherwise it resets then, and a client connecting during the reset is thrown out.
    command = ["Xvfb", "-displayfd", str(write), "-screen", "0", "640x360x24", "-nolisten", "tcp", "-noreset"]
    xvfb = subprocess.Popen(command, pass_fds=(write,), stderr=subprocess.PIPE)
    os.close(write)
    deadline = time.monotonic() + seconds
    number, name = b"", None
    try:
        while True:
            if name is None and select.select([read], [], [], 0.05)[0]:
                chunk = os.read(read, 16)  # Xvfb writes the number and a newline once it listens
                if not chunk:
                    pytest.fail(f"Xvfb ended (code {xvfb.wait(timeout=10)}): {xvfb.stderr.read().decode()}")
                number += chunk
                if number.endswith(b"\n"):
                    name = f":{int(number)}"
            if name is not None:
                try:
                    display.Display(name).close()
                    return xvfb, name
                except error.DisplayConnectionError:
                    time.sleep(0.05)
            if xvfb.poll() is not None:
                pytest.fail(f"Xvfb ended (code {xvfb.returncode}): {xvfb.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail(f"Xvfb {name or '(no display number yet)'} accepted no connection within {seconds} s")
    except BaseException:
        xvfb.kill()
        xvfb.wait()
        raise
    finally:
        os.close(read)


def toy_crops(ws: Workspace, per_label: int = 6, labels: Sequence[str] | None = None, seed: int = 0) -> list[Path]:
    """Small learnable crops straight into unsorted/: Cogs are a suit-coloured suit on a grey field, Toons a
    bright shirt; sizes and positions vary. Enough for a model to learn within a couple of epochs."""
    from toonvision.data.taxonomy import SUIT_BY_SHORT, parse_label

    rng = np.random.default_rng(seed)
    labels = labels or [
        "cog_bb_flunky",
        "cog_lb_bloodsucker",
        "cog_cb_tightwad",
        "cog_sb_coldcaller",
        "toon_cat",
        "toon_dog",
    ]
    paths = []
    for label in labels:
        parsed = parse_label(label)
        for i in range(per_label):
            h, w = int(rng.integers(60, 140)), int(rng.integers(25, 60))
            img = np.full((h, w, 3), 128, dtype=np.uint8) + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
            if parsed.is_cog:
                color = np.array([int(SUIT_BY_SHORT[parsed.suit].color[k : k + 2], 16) for k in (1, 3, 5)])
                img[h // 4 : h * 3 // 4, w // 5 : w * 4 // 5] = color
            else:
                img[h // 3 : h * 2 // 3, :] = (250, 240, 60)
                img[: h // 4, w // 4 : w * 3 // 4] = (255, 255, 255)
            path = ws.unsorted_dir(parsed.kind) / f"{label}_{i}.png"
            Image.fromarray(img).save(path)
            paths.append(path)
    return paths


# --- one trained workspace for the whole session, shared by the xdist workers ---

TRAINED_TASKS = ("binary", "suit", "name", "animal")
DETECT_TRAIN = ("--task", "detect", "--imgsz", "128", "--batch-size", "4", "--split-seed", "0")


UNKNOWN_LABEL = "cog_xx_foo"  # a label no class scheme knows: the detector leaves its box out and counts it
DETECT_OUTPUT = "train-detect.out.json"  # what the detector's training printed, kept in the shared workspace


def build_trained(root: Path) -> Workspace:
    """12 small rendered screenshots (320x180, seed 5; the first box of the last one labelled UNKNOWN_LABEL), a
    tiny detector trained on them for 2 epochs without augmentation (its stdout and stderr kept in
    DETECT_OUTPUT), toy crops (6 labels, 4 each) and binary, suit, name and animal models trained on them for an
    epoch; every run exported to ONNX (so annotate and watch run without TensorFlow, as a labelling or a bot's
    machine would)."""
    import json
    import re

    ws = Workspace(root).init()
    done = run_cli("synth", "--root", str(ws.root), "-n", "12", "--size", "320x180", "--seed", "5")
    assert done.returncode == 0, done.stderr
    last = sorted(ws.screenshots.glob("*.xml"))[-1]
    first_box = r"(<object>\s*<name>)[^<]+(</name>)"
    last.write_text(re.sub(first_box, rf"\g<1>{UNKNOWN_LABEL}\g<2>", last.read_text(), count=1))
    done = run_cli("train", "--root", str(ws.root), *DETECT_TRAIN, "--epochs", "2", "--no-augment")
    assert done.returncode == 0, done.stderr
    (ws.root / DETECT_OUTPUT).write_text(json.dumps({"stdout": done.stdout, "stderr": done.stderr}))
    toy_crops(ws, per_label=4)
    for task in TRAINED_TASKS:
        done = run_cli("train", "--root", str(ws.root), "--task", task, "--epochs", "1", "--split-seed", "0")
        assert done.returncode == 0, done.stderr
    for run in sorted((ws.runs / "train").iterdir()):
        done = run_cli("export", str(run), "--root", str(ws.root))
        assert done.returncode == 0, done.stderr
    return ws


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory) -> Workspace:
    """The workspace of build_trained, made once per test session: under pytest-xdist the first worker that
    needs it builds it in the session's common temporary folder while holding a lock, and the other waits for
    it and uses the same one (the pattern of the pytest-xdist docs). Read only: a test that changes anything in
    it works on a copy (``trained_copy``), and ``trained`` checks after each test that nothing changed."""
    from toonvision.data.files import file_lock

    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: nobody to share with
        return build_trained(tmp_path_factory.mktemp("trained") / "ws")
    common = tmp_path_factory.getbasetemp().parent  # this session's, shared by its workers
    folder, finished = common / "trained", common / "trained.done"
    with file_lock(common / "trained.lock"):
        if not finished.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed half-way left
            build_trained(folder / "ws")
            finished.touch()
    return Workspace(folder / "ws")


def _fingerprint(root: Path) -> dict[str, tuple[int, int] | None]:
    return {
        p.relative_to(root).as_posix(): (None if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns))
        for p in root.rglob("*")
    }


@pytest.fixture
def trained(trained_workspace) -> Workspace:
    """The shared trained workspace, for tests that only read it (they write into their own tmp_path); fails the
    test when it changed anything in it, since the other tests of the session use it too."""
    before = _fingerprint(trained_workspace.root)
    yield trained_workspace
    after = _fingerprint(trained_workspace.root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k, 0) != after.get(k, 0))
    assert not changed, f"the test changed the shared trained workspace (use trained_copy): {changed[:10]}"


@pytest.fixture
def trained_copy(trained_workspace, tmp_path_factory) -> Workspace:
    """A copy of the shared trained workspace of the test's own (same files, same times), to change at will."""
    root = tmp_path_factory.mktemp("trained") / "ws"
    shutil.copytree(trained_workspace.root, root, symlinks=True)
    return Workspace(root)
