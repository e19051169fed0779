"""Training throughput: the spec's input pipeline against ToonVision's, same model, same data, one process.

(a) the spec's way: ``image_dataset_from_directory`` on the split folders (every crop decoded and resized
    every epoch) with the augmentation layers inside the model;
(b) ToonVision: decoded-pixel cache, NumPy-gathered batches, augmentation as one fused resampling in the
    prefetched tf.data pipeline.

Prints end-to-end training images per second (loading + augmentation + step) with and without
augmentation, the ratios, test accuracy after the timed epochs, the model's FLOPs per image against a
matrix-multiply peak measured in the same run, peak RSS and the cache's size on disk.

    python benchmarks/train_throughput.py [--root WORKSPACE] [--epochs 3]
"""

from __future__ import annotations

import argparse
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
    start = time.perf_counter()
    model.fit(training_batches(parts["train"], cfg), epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    # End to end: the time to fetch the crops from the cache counts, spread over the epochs.
    rate = len(parts["train"].y) * epochs / (seconds + load_seconds)
    return rate, evaluate(model, parts["test"], "binary")["accuracy"], load_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="workspace with the seed preset split")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
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
        spec_rate, spec_acc = spec_way(root, augment, args.epochs, args.seed)
        our_rate, our_acc, _ = our_way(root, augment, args.epochs, args.seed)
        achieved = our_rate * 3 * flops / 1e9
        print(
            f"{augment!s:<8} {spec_rate:11.1f} {our_rate:11.1f} {our_rate / spec_rate:5.2f}x {spec_acc:9.3f} "
            f"{our_acc:8.3f} {achieved:8.1f} ({achieved / peak:.0%} of peak)"
        )
    cache = PixelCache.for_workspace(Workspace(root), IMAGE_SIZE, pad=False)
    print(f"peak RSS {peak_rss_mb():.0f} MB; pixel cache on disk {cache.disk_bytes() / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
