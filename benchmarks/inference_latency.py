"""Inference latency: the spec's ``predict_image`` (``model.predict`` per crop) against ToonVision's Classifier.

Prints p50 and p99 latency for one crop, and throughput for batches of 8 and 64, for ``model.predict``
(the spec), ``toonvision.Classifier`` on Keras (one traced tf.function, with and without XLA) and on ONNX
Runtime (the model exported by ``toonvision export`` to a temporary folder), each with its speed-up over
``model.predict``; then the model's forward FLOPs per crop against a matrix-multiply peak measured in the
same run. Uses an untrained seed model: latency does not depend on the weights.

Figures are wall-clock times on whatever else the machine is doing: the load average is printed first, the
rows are timed in turn over several rounds so that they share any disturbance alike, and "min" (the fastest
call) and "CPU ms" (CPU time per call, all threads) hint at what an otherwise idle machine gives.

    python benchmarks/inference_latency.py [--repeats 200] [--rounds 10] [--model seed]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _common import forward_flops, matmul_peak_gflops

SPEC = "model.predict (spec)"


def interleaved(
    rows: dict[str, tuple[Callable[[], object], int]], rounds: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Wall-clock and process CPU time of every call of every row, timed in turn ``rounds`` times over
    (``calls`` calls of a row per round), so that all rows get the same share of whatever else the machine
    is doing and their ratios stay fair. CPU time (all threads of this process) is what a call costs
    whoever else runs: wall time is about CPU time / free cores."""
    for fn, _ in rows.values():
        fn()  # warm-up: traces, compiles, first allocations
        fn()
    wall: dict[str, list[float]] = {name: [] for name in rows}
    cpu: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, (fn, calls) in rows.items():
            for _ in range(calls):
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return {name: (np.array(wall[name]), np.array(cpu[name])) for name in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per one-crop row (model.predict: 40)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds the calls are spread over, rows in turn")
    parser.add_argument("--model", default="small_convnet", help="architecture from the registry (toonvision models)")
    args = parser.parse_args()

    from PIL import Image

    from toonvision.data.images import fit_image
    from toonvision.learning.backend import available_cores
    from toonvision.learning.models import create_model
    from toonvision.serving.export import export_onnx
    from toonvision.serving.inference import Classifier

    cores = available_cores()
    print(f"{cores} cores; load average {os.getloadavg()[0]:.2f} (above 0, other processes share the cores)")
    model = create_model(args.model, "binary")
    with tempfile.TemporaryDirectory(prefix="toonvision-bench-") as tmp:
        model.save(Path(tmp) / "model.keras")
        start = time.perf_counter()
        onnx_file = export_onnx(Path(tmp) / "model.keras")
        print(f"toonvision export: {onnx_file.name} in {time.perf_counter() - start:.1f} s")
        onnx = Classifier.load(onnx_file)  # the session holds the model: the file may go
        onnx_spin = Classifier.load(onnx_file, spin=True)
    classifiers = {
        "Classifier, Keras": Classifier(model, "binary"),
        "Classifier, Keras + XLA": Classifier(model, "binary", jit_compile=True),
        "Classifier, ONNX Runtime": onnx,
        "Classifier, ONNX Runtime, spin": onnx_spin,
    }

    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (600, 200, 3), dtype=np.uint8)  # already at the model's size
    odd = rng.integers(0, 256, (317, 121, 3), dtype=np.uint8)  # a crop as it comes off a screenshot
    x1 = crop[None].astype("float32")

    print("\none crop (600x200 array, or 121x317 resized as in training)")
    print(f"{'path':<40} {'p50 ms':>8} {'p99 ms':>8} {'min ms':>8} {'CPU ms':>8} {'GFLOP/s':>8} {'vs spec':>8}")
    flops = forward_flops(model)
    rows = {SPEC: lambda: model.predict(x1, verbose=0)}
    rows |= {name: (lambda c=c: c.predict(crop)) for name, c in classifiers.items()}
    rows["Classifier, ONNX Runtime + resize"] = lambda: classifiers["Classifier, ONNX Runtime"].predict(odd)
    rows["resize alone (Pillow bilinear)"] = lambda: fit_image(Image.fromarray(odd))
    per_round = max(1, args.repeats // args.rounds)
    one = interleaved({name: (fn, 4 if name == SPEC else per_round) for name, fn in rows.items()}, args.rounds)
    p50 = {name: float(np.percentile(wall, 50)) for name, (wall, _) in one.items()}
    cpu = {name: float(np.median(used)) for name, (_, used) in one.items()}
    for name, (wall, _) in one.items():
        gflops = f"{flops / p50[name] / 1e9:8.1f}" if name.startswith(("model", "Classifier")) else f"{'':8}"
        print(
            f"{name:<40} {p50[name] * 1e3:8.2f} {np.percentile(wall, 99) * 1e3:8.2f} {wall.min() * 1e3:8.2f} "
            f"{cpu[name] * 1e3:8.2f} {gflops} {p50[SPEC] / p50[name]:7.1f}x"
        )

    chunks = ", ".join(f"{c.engine} {c.batch_size}" for c in classifiers.values() if c.engine != "keras+xla")
    print(f"\nthroughput in crops/s, from the median time of a batch (crops per forward call: {chunks})")
    print(f"{'path':<40} {'batch 8':>9} {'vs spec':>8} {'batch 64':>9} {'vs spec':>8}")
    throughput: dict[str, dict[int, float]] = {name: {} for name in (SPEC, *classifiers)}
    for batch in (8, 64):
        xb = np.repeat(x1, batch, axis=0)
        crops = [crop] * batch
        batch_rows = {SPEC: (lambda xb=xb: model.predict(xb, verbose=0), 2 if batch == 8 else 1)}
        for name, c in classifiers.items():
            batch_rows[name] = (lambda c=c, crops=crops: c.predict(crops), 2 if batch == 8 else 1)
        for name, (wall, _) in interleaved(batch_rows, max(4, args.rounds)).items():
            throughput[name][batch] = batch / float(np.median(wall))
    for name, rate in throughput.items():
        spec = throughput[SPEC]
        print(f"{name:<40} {rate[8]:9.0f} {rate[8] / spec[8]:7.1f}x {rate[64]:9.0f} {rate[64] / spec[64]:7.1f}x")

    peak = matmul_peak_gflops()
    best = min((p50[n], n) for n in classifiers)
    print(
        f"\n{args.model} model forward: {flops / 1e6:.1f} MFLOP per crop (convolutions and dense layer); "
        f"float32 matrix-multiply peak now: {peak:.1f} GFLOP/s on {cores} cores, at which the arithmetic of one "
        f"crop takes {flops / peak / 1e9 * 1e3:.2f} ms"
    )
    print(
        f"fastest one-crop path, {best[1]}: {best[0] * 1e3:.2f} ms p50 = {flops / best[0] / 1e9:.1f} GFLOP/s, "
        f"{flops / best[0] / 1e9 / peak:.0%} of that peak; it uses {cpu[best[1]] * 1e3:.2f} ms of CPU per crop "
        f"({flops / cpu[best[1]] / 1e9:.1f} GFLOP/s per busy core), so {cpu[best[1]] / cores * 1e3:.2f} ms "
        f"per crop when all {cores} cores are free"
    )
    print(f"load average after the run: {os.getloadavg()[0]:.2f}")
    for onnx_name in ("Classifier, ONNX Runtime", "Classifier, ONNX Runtime, spin"):
        print(
            f"targets, {onnx_name}: one crop p50 < 1 ms: {p50[onnx_name] * 1e3:.2f} ms; >= 50x model.predict: "
            f"{p50[SPEC] / p50[onnx_name]:.0f}x; batches >= 1,000 crops/s: {throughput[onnx_name][8]:.0f} (8), "
            f"{throughput[onnx_name][64]:.0f} (64)"
        )


if __name__ == "__main__":
    main()
