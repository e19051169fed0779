"""Training throughput: the spec's input pipeline against ToonVision's, same model, same data, one process.

(a) the spec's way: ``image_dataset_from_directory`` on the split folders (every crop decoded and resized
    every epoch) with the augmentation layers inside the model;
(b) ToonVision: decoded-pixel cache, NumPy-gathered batches, augmentation as one fused resampling in the
    prefetched tf.data pipeline.

Prints end-to-end training images per second (loading + augmentation + step) with and without
augmentation, the ratios, test accuracy after the timed epochs, the model's FLOPs per image against a
matrix-multiply peak measured in the same run, peak RSS and the cache's size on disk.

    python benchmarks/train_throughput.py [--root WORKSPACE] [--epochs 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import DEFAULT_ROOT, forward_flops, matmul_peak_gflops, peak_rss_mb, seed_workspace


def spec_way(root: Path, augment: bool, epochs: int, seed: int) -> tuple[float, float]:
    import keras

    from toonvision.datasets import IMAGE_SIZE
    from toonvision.models import create_model
    from toonvision.training import TrainConfig, compile_model

    keras.utils.set_random_seed(seed)
    load = lambda split, shuffle: keras.utils.image_dataset_from_directory(  # noqa: E731
        root / "data" / split,
        labels="inferred",
        label_mode="binary",
        image_size=IMAGE_SIZE,
        batch_size=32,
        shuffle=shuffle,
        seed=seed,
        verbose=False,
    )
    train, test = load("train", True), load("test", False)
    model = compile_model(create_model("seed", "binary", augment=augment, seed=seed), TrainConfig(augment=augment))
    n = sum(int(b[1].shape[0]) for b in train)
    model.fit(train, epochs=1, verbose=0)  # tracing and warm-up, not timed (the same for both ways)
    start = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    _, acc = model.evaluate(test, verbose=0)
    return n * epochs / seconds, float(acc)


def our_way(root: Path, augment: bool, epochs: int, seed: int) -> tuple[float, float, float]:
    from toonvision.datasets import find_samples, load_task
    from toonvision.training import TrainConfig, build, evaluate, training_batches
    from toonvision.workspace import Workspace

    ws = Workspace(root)
    start = time.perf_counter()
    parts = load_task(find_samples(ws), "binary", ws=ws).by_folder()
    load_seconds = time.perf_counter() - start
    cfg = TrainConfig(augment=augment, seed=seed)
    import keras

    keras.utils.set_random_seed(seed)
    model = build(cfg)
    batches = training_batches(parts["train"], cfg)
    model.fit(batches, epochs=1, verbose=0)  # tracing and warm-up, not timed
    start = time.perf_counter()
    model.fit(batches, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    # Steady state, as for the spec's way; reading the crops from the cache is a one-off per run, printed apart.
    rate = len(parts["train"].y) * epochs / seconds
    return rate, evaluate(model, parts["test"], "binary")["accuracy"], load_seconds


def compute_ceiling(root: Path, epochs: int, seed: int) -> float:
    """Images per second of the training step alone: every crop already a float32 tensor in memory."""
    import keras
    import numpy as np
    import tensorflow as tf

    from toonvision.datasets import find_samples, load_task
    from toonvision.training import TrainConfig, _targets, build
    from toonvision.workspace import Workspace

    ws = Workspace(root)
    train = load_task(find_samples(ws), "binary", ws=ws).by_folder()["train"]
    keras.utils.set_random_seed(seed)
    model = build(TrainConfig(seed=seed))
    x = tf.constant(train.x.astype(np.float32))
    data = tf.data.Dataset.from_tensor_slices((x, _targets(train.y, "binary"))).batch(32).prefetch(2)
    model.fit(data, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, epochs=epochs, verbose=0)
    return len(train.y) * epochs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="workspace with the seed preset split")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; best and median shown")
    args = parser.parse_args()
    root = seed_workspace(args.root)

    from toonvision.cache import PixelCache

    # Warm the cache once: a cold cache is a one-off cost per crop, reported separately.
    from toonvision.datasets import IMAGE_SIZE, find_samples, load_task
    from toonvision.models import create_model
    from toonvision.workspace import Workspace

    start = time.perf_counter()
    load_task(find_samples(Workspace(root)), "binary", ws=Workspace(root))
    print(f"cache fill (first run only): {time.perf_counter() - start:.1f}s")

    flops = forward_flops(create_model("seed", "binary"))
    peak = matmul_peak_gflops()
    print(f"seed model: {flops / 1e6:.1f} MFLOP forward per image (~{3 * flops / 1e6:.0f} MFLOP per training image)")
    print(f"matrix-multiply peak measured now: {peak:.1f} GFLOP/s")
    print(
        f"{'augment':<8} {'spec img/s':>11} {'ours img/s':>11} {'ratio':>6} {'spec acc':>9} {'our acc':>8} "
        f"{'our GFLOP/s':>12}"
    )
    for augment in (False, True):
        # Interleaved rounds, best of each: a shared or throttled machine slows single measurements by up
        # to 30%, and it slows both ways alike only when they alternate.
        spec_runs, our_runs = [], []
        for _ in range(args.rounds):
            spec_runs.append(spec_way(root, augment, args.epochs, args.seed))
            rate, acc, load_seconds = our_way(root, augment, args.epochs, args.seed)
            our_runs.append((rate, acc))
        (spec_rate, spec_acc), (our_rate, our_acc) = max(spec_runs), max(our_runs)
        if not augment:
            spec_plain, our_plain = spec_rate, our_rate
        achieved = our_rate * 3 * flops / 1e9
        print(
            f"{augment!s:<8} {spec_rate:11.1f} {our_rate:11.1f} {our_rate / spec_rate:5.2f}x {spec_acc:9.3f} "
            f"{our_acc:8.3f} {achieved:8.1f} ({achieved / peak:.0%} of peak)"
        )
        spec_median = statistics.median(r for r, _ in spec_runs)
        our_median = statistics.median(r for r, _ in our_runs)
        print(
            f"{'':<8} median of {args.rounds} rounds: {spec_median:.1f} vs {our_median:.1f} img/s, "
            f"{our_median / spec_median:.2f}x"
        )
    print(f"ours, once per run: reading the crops from the pixel cache {load_seconds:.2f}s")
    ceiling = max(compute_ceiling(root, args.epochs, args.seed) for _ in range(args.rounds))
    print(
        f"ceiling: the same training steps on float32 tensors already in memory (no loading, no augmentation) "
        f"{ceiling:.1f} img/s = {ceiling / spec_plain:.2f}x the spec's way without augmentation: no input pipeline "
        f"can do better than that ratio; ours reaches {our_plain / ceiling:.0%} of the ceiling"
    )
    cache = PixelCache.for_workspace(Workspace(root), IMAGE_SIZE, pad=False)
    print(f"peak RSS {peak_rss_mb():.0f} MB; pixel cache on disk {cache.disk_bytes() / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
