import os

import keras
import numpy as np
import pytest
from PIL import Image

import toonvision.data.cache as cache_module
from conftest import toy_crops
from toonvision.data.cache import PixelCache
from toonvision.data.images import IMAGE_SIZE, load_images
from toonvision.data.samples import find_samples, load_task
from toonvision.data.splitting import split
from toonvision.learning.training import TrainConfig, training_batches


@pytest.fixture
def counted(monkeypatch):
    """Count the crops decoded from PNG."""
    calls = []
    real = cache_module.load_images

    def spy(paths, *args, **kwargs):
        calls.extend(paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(cache_module, "load_images", spy)
    return calls


def test_cache_decodes_once_and_follows_changes(ws, counted):
    toy_crops(ws, per_label=3)
    samples = find_samples(ws)
    paths = [s.path for s in samples]
    cache = PixelCache.for_workspace(ws, IMAGE_SIZE, pad=False)
    first = cache.load(paths)
    assert len(counted) == len(paths)
    assert np.array_equal(first, load_images(paths))
    counted.clear()
    split(ws, seed=3)  # crops move between folders: nothing to decode again
    moved = [s.path for s in find_samples(ws)]
    assert moved != paths
    assert np.array_equal(cache.load(moved), first) and counted == []
    # A changed crop is decoded again; a new one gets a row of its own.
    target = moved[0]
    Image.new("RGB", (30, 90), (1, 2, 3)).save(target)
    os.utime(target, ns=(1, 1))
    new = ws.unsorted_dir("toon") / "toon_pig_0.png"
    Image.new("RGB", (40, 80), (200, 10, 10)).save(new)
    again = cache.load([*moved, new])
    assert counted == [target, new]
    assert (again[0] == (1, 2, 3)).all() and (again[-1] == (200, 10, 10)).all()
    assert np.array_equal(again[1:-1], first[1:])
    assert cache.disk_bytes() > 0


def test_load_task_through_the_cache_matches_direct_decoding(ws):
    toy_crops(ws, per_label=2)
    samples = find_samples(ws)
    direct = load_task(samples, "suit")
    cached = load_task(samples, "suit", ws=ws)
    assert np.array_equal(direct.x, cached.x) and np.array_equal(direct.y, cached.y)


def test_fast_pipeline_yields_the_same_crops_and_labels_as_the_specs_way(ws):
    toy_crops(ws, per_label=4)
    split(ws, seed=0)
    train = load_task(find_samples(ws), "binary", ws=ws).by_folder()["train"]
    ours = list(training_batches(train, TrainConfig(batch_size=5, seed=1)).as_numpy_iterator())
    x = np.concatenate([b[0] for b in ours])
    y = np.concatenate([b[1] for b in ours])[:, 0]
    spec = keras.utils.image_dataset_from_directory(
        ws.data / "train", labels="inferred", label_mode="binary", image_size=IMAGE_SIZE, batch_size=5, shuffle=False
    )
    sx = np.concatenate([b[0].numpy() for b in spec])
    sy = np.concatenate([b[1].numpy() for b in spec])[:, 0]
    assert len(x) == len(sx) == len(train.y)
    assert sorted(y.tolist()) == sorted(sy.tolist())
    # Every crop of the spec's pipeline has its twin in ours, with the same label (resampling filters differ
    # slightly between TensorFlow and Pillow, so pixels are compared with a tolerance).
    flat, sflat = x.reshape(len(x), -1), sx.reshape(len(sx), -1)
    for i in range(len(sx)):
        diffs = np.abs(flat - sflat[i]).mean(axis=1)
        j = int(np.argmin(diffs))
        assert diffs[j] < 6.0 and y[j] == sy[i]
    # Epochs are reshuffled, reproducibly.
    again = list(training_batches(train, TrainConfig(batch_size=5, seed=1)).as_numpy_iterator())
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(ours, again, strict=True))


def test_augmented_batches_are_reproducible_and_change_pixels(ws):
    toy_crops(ws, per_label=2)
    data = load_task(find_samples(ws), "binary", ws=ws)
    cfg = TrainConfig(batch_size=4, seed=2, augment=True)
    a = next(training_batches(data, cfg).as_numpy_iterator())
    b = next(training_batches(data, cfg).as_numpy_iterator())
    plain = next(training_batches(data, TrainConfig(batch_size=4, seed=2)).as_numpy_iterator())
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], plain[1])
    assert not np.allclose(a[0], plain[0])
    assert a[0].shape == (4, *IMAGE_SIZE, 3) and a[0].min() >= 0 and a[0].max() <= 255


def test_opencv_augmentation_matches_tensorflows_resampling():
    """The pipeline's OpenCV warp and TensorFlow's ImageProjectiveTransformV3 (the op of the spec's Keras
    layers), given the same flips, angles and zooms, agree up to rounding to whole grey levels, borders
    (reflected) included."""
    from toonvision.learning.augmentation import augment_batch, augment_batch_tf, draw_params

    rng = np.random.default_rng(0)
    # Smooth images with structure near the borders, where the reflection rule shows.
    yy, xx = np.mgrid[0:120, 0:50]
    base = np.stack([(xx * 5) % 256, (yy * 2) % 256, ((xx + yy) * 3) % 256], axis=-1).astype(np.uint8)
    images = np.stack([np.roll(base, k * 7, axis=0) for k in range(6)])
    params = draw_params(rng, 6)
    params[0] = (1.0, 0.0, 1.0)  # identity
    params[1] = (-1.0, 0.0, 1.0)  # flip only
    ours = augment_batch(images, params).astype(np.float32)
    reference = np.asarray(augment_batch_tf(images.astype(np.float32), params))
    assert np.array_equal(ours[0], images[0]) and np.array_equal(ours[1], images[1][:, ::-1])
    diff = np.abs(ours - reference)
    assert diff.max() <= 1.0 and diff.mean() < 0.5
