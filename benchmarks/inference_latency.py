"""Inference latency: the spec's ``predict_image`` (``model.predict`` per crop) against ToonVision's Classifier.

Prints p50 and p99 latency for one crop, and throughput for batches of 8 and 64, for ``model.predict``
and for ``toonvision.Classifier`` (one traced tf.function), with the model's forward FLOPs per crop against
a matrix-multiply peak measured in the same run. Uses an untrained seed model: latency does not depend on
the weights.

    python benchmarks/inference_latency.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import forward_flops, matmul_peak_gflops


def timed(fn, repeats: int) -> np.ndarray:
    fn()
    fn()
    out = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    from toonvision.inference import Classifier
    from toonvision.models import create_model

    model = create_model("seed", "binary")
    clf = Classifier(model, "binary")
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (600, 200, 3), dtype=np.uint8)  # already at the model's size
    odd = rng.integers(0, 256, (317, 121, 3), dtype=np.uint8)  # a crop as it comes off a screenshot
    x1 = crop[None].astype("float32")

    flops = forward_flops(model)
    peak = matmul_peak_gflops()
    print(f"seed model forward: {flops / 1e6:.1f} MFLOP per crop; matrix-multiply peak now: {peak:.1f} GFLOP/s")
    print(f"{'path':<34} {'p50 ms':>8} {'p99 ms':>8} {'GFLOP/s':>8}")
    rows = {
        "model.predict, 1 crop (spec)": lambda: model.predict(x1, verbose=0),
        "Classifier.predict, 1 crop": lambda: clf.predict(crop),
        "Classifier.predict, 1 crop + resize": lambda: clf.predict(odd),
    }
    p50 = {}
    for name, fn in rows.items():
        t = timed(fn, args.repeats if "spec" not in name else max(20, args.repeats // 5))
        p50[name] = np.percentile(t, 50)
        print(f"{name:<34} {p50[name] * 1e3:8.2f} {np.percentile(t, 99) * 1e3:8.2f} {flops / p50[name] / 1e9:8.1f}")
    ratio = p50["model.predict, 1 crop (spec)"] / p50["Classifier.predict, 1 crop"]
    print(f"one crop: Classifier is {ratio:.1f}x faster than model.predict")
    for batch in (8, 64):
        crops = [crop] * batch
        xb = np.repeat(x1, batch, axis=0)
        spec = timed(lambda xb=xb: model.predict(xb, verbose=0), 10)
        ours = timed(lambda crops=crops: clf.predict(crops), 10)
        print(
            f"batch of {batch}: model.predict {batch / np.median(spec):7.0f} crops/s, "
            f"Classifier {batch / np.median(ours):7.0f} crops/s ({np.median(spec) / np.median(ours):.1f}x)"
        )


if __name__ == "__main__":
    main()
