"""How hard is the synthetic seed dataset? Train the spec's baseline model on it, like the spec did.

Renders the ``seed`` preset (unless the workspace already has it), crops every labelled box from the
screenshots with Pillow, stretches each crop to 600x200 (HxW) and caches the crops once as a uint8 array.
Then, for each run, re-splits the crops 60/20/20 (stratified by Cog/Toon), trains the baseline (Input(600,200,3)
-> Rescaling(1/255) -> MaxPool2 -> Conv16 -> MaxPool2 -> Conv32 -> MaxPool2 -> Conv32 -> MaxPool2 -> Flatten ->
Dense(1, sigmoid); Adam 1e-3, binary cross-entropy, 25 epochs, batch 32) and evaluates it on the test split.

The spec's real screenshots gave this model a median test accuracy of 0.965 over 200 runs; the synthetic data
aims for 0.95-0.985 (hard enough to be realistic, not a trivial 1.0).

    .venv/bin/python benchmarks/synth_realism.py --runs 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 600, 200


def crops_from_workspace(root: Path, *, skip_difficult: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every box of every screenshot under ``root``/raw, stretched to 600x200. Labels: 0 Cog, 1 Toon."""
    from PIL import Image

    from toonvision.data.annotations import read_voc
    from toonvision.data.workspace import Workspace

    ws = Workspace(root)
    xmls = sorted(ws.screenshots.glob("*.xml")) + sorted(ws.processed.rglob("*.xml"))
    images, labels, names = [], [], []
    for xml in xmls:
        ann = read_voc(xml)
        png = xml.with_suffix(".png")
        if not png.exists():
            continue
        with Image.open(png) as im:
            im = im.convert("RGB")
            for box in ann.boxes:
                if skip_difficult and box.difficult:
                    continue
                crop = im.crop(box.pixel_box()).resize((WIDTH, HEIGHT), Image.BILINEAR)
                images.append(np.asarray(crop, np.uint8))
                labels.append(1 if box.name.startswith("toon_") else 0)
                names.append(f"{xml.stem}:{box.name}")
    return np.stack(images), np.array(labels, np.float32), names


def stratified_split(y: np.ndarray, seed: int, ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)):
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        n_train = int(len(idx) * ratios[0])
        n_val = int(len(idx) * ratios[1])
        parts[0] += idx[:n_train].tolist()
        parts[1] += idx[n_train : n_train + n_val].tolist()
        parts[2] += idx[n_train + n_val :].tolist()
    return [np.array(sorted(p)) for p in parts]


def make_baseline():
    """The spec's baseline: the registry's seed model (its make_model), Adam 1e-3, binary cross-entropy."""
    from toonvision.learning.models import create_model
    from toonvision.learning.training import TrainConfig, compile_model

    return compile_model(create_model("small_convnet", "binary", input_shape=(HEIGHT, WIDTH, 3)), TrainConfig())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="workspace to render into / read (default: a temporary folder)")
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--seed", type=int, default=0, help="dataset seed")
    ap.add_argument("--screenshots", type=int, help="override the preset's screenshot count")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--first-run", type=int, default=0, help="split/initialisation seed of the first run")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--workers", type=int, default=0, help="render processes (0 = all cores)")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0 = all cores)")
    ap.add_argument("--skip-difficult", action="store_true", help="leave out boxes marked difficult")
    ap.add_argument("--cache", type=Path, help="npz cache of the crops (default: <root>/.toonvision/crops.npz)")
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="toonvision-realism-")
        root = Path(tmp.name)
    from toonvision.data.workspace import Workspace
    from toonvision.synth import SynthConfig, generate

    cfg = SynthConfig.from_preset(args.preset, seed=args.seed, screenshots=args.screenshots)
    t0 = time.monotonic()
    summary = generate(Workspace(root), cfg, workers=args.workers)
    print(
        f"dataset: preset={args.preset} seed={args.seed} screenshots={cfg.screenshots} "
        f"written={summary.written} skipped={summary.skipped} ({time.monotonic() - t0:.1f}s)"
    )
    cache = args.cache or (
        root / ".toonvision" / f"crops-{args.preset}-{args.seed}-{cfg.screenshots}"
        f"{'-nodiff' if args.skip_difficult else ''}.npz"
    )
    if cache.exists() and summary.written == 0:
        data = np.load(cache)
        X, y = data["X"], data["y"]
    else:
        X, y, _ = crops_from_workspace(root, skip_difficult=args.skip_difficult)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, X=X, y=y)
    n_toon = int(y.sum())
    print(f"crops: {len(y)} (cog={len(y) - n_toon}, toon={n_toon})")

    import tensorflow as tf

    threads = args.threads or len(os.sched_getaffinity(0))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    accs = []
    for run in range(args.first_run, args.first_run + args.runs):
        keras.utils.set_random_seed(run)
        train, _val, test = stratified_split(y, run)
        model = make_baseline()
        t = time.monotonic()
        model.fit(X[train], y[train], batch_size=32, epochs=args.epochs, shuffle=True, verbose=0)
        loss, acc = model.evaluate(X[test], y[test], batch_size=64, verbose=0)
        accs.append(acc)
        wrong = round((1 - acc) * len(test))
        print(
            f"run {run:3d}: test accuracy {acc:.4f} loss {loss:.3f} ({wrong}/{len(test)} wrong, "
            f"{time.monotonic() - t:.0f}s)",
            flush=True,
        )
        keras.backend.clear_session()
    print(
        f"median test accuracy over {len(accs)} runs: {statistics.median(accs):.4f} "
        f"(min {min(accs):.4f}, max {max(accs):.4f}, mean {statistics.fmean(accs):.4f})"
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
