"""synth --address: Ray tasks render, the driver writes; same bytes as worker processes, dead workers retried,
an unreachable cluster one error line."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
import ray

from conftest import run_cli
from toonvision.data.workspace import Workspace
from toonvision.synth import SynthConfig, generate

# make test runs the suite on two xdist workers: these tests of Ray run on one, one at a time (the demo test,
# whose compare starts a private Ray, may run beside them on the other).
pytestmark = pytest.mark.xdist_group("ray")

SMALL = {"width": 320, "height": 180}
N = 6


@pytest.fixture(scope="module")
def local_ray():
    """One private Ray for the module (starting one takes seconds); generate uses the Ray of its process."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ray_and_processes_write_the_same_bytes(local_ray, tmp_path: Path) -> None:
    cfg = SynthConfig.from_preset("seed", screenshots=N, seed=5, yolo=True, masks=True, **SMALL)
    # The same root for both (the XML records its absolute path): rendered by Ray, moved aside, then by processes.
    root = tmp_path / "ws"
    seen = []
    summary = generate(Workspace(root), cfg, address="local", progress=seen.append)
    assert (summary.written, summary.errors, summary.conflicts) == (N, [], [])
    assert len(seen) == N
    by_ray = _files(root / "raw")
    shutil.rmtree(root)
    assert generate(Workspace(root), cfg, workers=2).written == N
    by_processes = _files(root / "raw")
    assert [sum(name.endswith(ext) for name in by_ray) for ext in (".xml", ".txt", ".mask.png")] == [N, N + 2, N]
    assert by_ray == by_processes

    # Resume on Ray: the done ones are skipped, the missing ones come back identical.
    for name in sorted(by_ray)[:3]:
        (root / "raw" / name).unlink()
    again = generate(Workspace(root), cfg, address="local")
    assert again.written >= 1 and again.written + again.skipped == N and not again.conflicts
    assert _files(root / "raw") == by_processes


# --- workers that die -------------------------------------------------------------------------------------


def _dying_chunk(marker: Path, cfg, jobs):
    """Kills its worker on screenshot 3 while the marker file exists: once (the file is then removed) or always."""
    from toonvision.synth.dataset import _render_chunk

    if any(i == 3 for i, _, _ in jobs) and marker.exists():
        if marker.read_text() == "once":
            marker.unlink()
        os._exit(1)
    return _render_chunk(cfg, jobs)


@pytest.fixture
def dying(local_ray, monkeypatch, tmp_path: Path):
    from ray import cloudpickle

    from toonvision.synth import dataset

    # The workers cannot import this file: ship the hook by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "die"

    def hook(cfg, jobs):
        return _dying_chunk(marker, cfg, jobs)

    monkeypatch.setattr(dataset, "_render_chunk", hook)
    yield marker
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_chunk_whose_worker_dies_is_retried(dying: Path, tmp_path: Path) -> None:
    dying.write_text("once")
    cfg = SynthConfig.from_preset("seed", screenshots=N, seed=5, **SMALL)
    summary = generate(Workspace(tmp_path / "ws"), cfg, address="local")
    assert (summary.written, summary.errors) == (N, [])
    assert not dying.exists()


def test_a_chunk_that_keeps_dying_is_an_error_and_the_others_finish(dying: Path, tmp_path: Path) -> None:
    from toonvision.synth.dataset import RAY_RETRIES

    dying.write_text("always")
    cfg = SynthConfig.from_preset("seed", screenshots=N, seed=5, **SMALL)
    summary = generate(Workspace(tmp_path / "ws"), cfg, address="local")
    assert summary.written == N - 1 and len(summary.errors) == 1
    assert cfg.stem(3) in summary.errors[0] and f"{RAY_RETRIES} retries" in summary.errors[0]
    dying.unlink()
    again = generate(Workspace(tmp_path / "ws"), cfg, address="local")
    assert (again.written, again.skipped, again.errors) == (1, N - 1, [])


# --- an address where no Ray answers ----------------------------------------------------------------------


def test_synth_gives_up_quickly_where_nothing_listens(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"  # free once the socket is closed
    start = time.perf_counter()
    result = run_cli("synth", "--root", str(tmp_path), "-n", "2", "--size", "320x180", "--address", address)
    seconds = time.perf_counter() - start
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot reach a Ray cluster at {address} (connection refused)"), lines[0]
    assert "without --address, synth renders on this machine" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert seconds < 30
    assert not list((tmp_path / "raw" / "screenshots").glob("*.png"))
