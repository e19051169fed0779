"""Synthetic screenshots per second at 1280x720: one process, then all cores.

Each figure is a full ``generate`` run into a fresh temporary workspace (render, ID pass, PNG + XML written),
timed after the renderers have started, so process start-up is not counted against the rate.

    .venv/bin/python benchmarks/synth_speed.py --screenshots 60
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def measure(workers: int, screenshots: int, size: tuple[int, int], seed: int) -> tuple[float, float]:
    """(screenshots per second once rendering started, wall seconds including start-up)."""
    from toonvision.data.workspace import Workspace
    from toonvision.synth import SynthConfig, generate

    cfg = SynthConfig.from_preset("seed", screenshots=screenshots, seed=seed, width=size[0], height=size[1])
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="toonvision-speed-") as tmp:
        t0 = time.monotonic()
        summary = generate(
            Workspace(Path(tmp)), cfg, workers=workers, progress=lambda r: stamps.append(time.monotonic())
        )
        wall = time.monotonic() - t0
    if summary.written != screenshots:
        raise RuntimeError(f"expected {screenshots} screenshots, wrote {summary.written}: {summary.errors[:3]}")
    # Rate between the first and the last finished screenshot: start-up (spawn, Panda3D) excluded.
    span = stamps[-1] - stamps[0]
    return (len(stamps) - 1) / span if span > 0 else float("nan"), wall


def main(argv: list[str] | None = None) -> int:
    from toonvision.synth.dataset import parse_size, resolve_workers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--screenshots", type=int, default=60)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0, help="processes for the all-cores figure (0 = all)")
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    cores = resolve_workers(args.workers)
    one, one_wall = measure(1, args.screenshots, size, args.seed)
    print(f"1 process : {one:6.2f} screenshots/s ({args.screenshots} in {one_wall:.1f}s with start-up)")
    many, many_wall = measure(cores, args.screenshots, size, args.seed)
    print(
        f"{cores} processes: {many:6.2f} screenshots/s ({args.screenshots} in {many_wall:.1f}s with start-up), "
        f"{many / cores:.2f} per core"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
