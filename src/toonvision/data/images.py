"""Images: the one way ToonVision reads a screenshot or a crop, and fits a crop to a model's input size.

Every reader raises :class:`ImageError` (a ValueError) naming the file when it is not an image Pillow can
decode, so that every verb can say so in one line instead of a traceback.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SIZE: tuple[int, int] = (600, 200)  # height, width: the spec's image_dataset_from_directory size

# What Pillow raises for a file that is not a decodable image (truncated, corrupt, another format, a bomb).
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageError(ValueError):
    """A file that is not an image that can be read; the message names it."""


def is_image(path: Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def decode_image(data: bytes, path: Path | str = "image") -> Image.Image:
    """An RGB image decoded from ``data`` (all of it now: a truncated file fails here, not later)."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{path} is not an image that can be read ({exc or type(exc).__name__})") from None
    return img if img.mode == "RGB" else img.convert("RGB")


def header_size(data: bytes, path: Path | str = "image") -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels (a truncated file passes here)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{path} is not an image that can be read ({exc or type(exc).__name__})") from None


def open_image(path: Path) -> Image.Image:
    """The RGB image in ``path``; FileNotFoundError when it does not exist, ImageError when it is no image."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path} cannot be read: {exc.strerror or exc}") from None
    return decode_image(data, path)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header alone; (0, 0) when it is not an image."""
    try:
        with Image.open(path) as img:
            return img.size
    except _DECODE_ERRORS:
        return (0, 0)


def find_images(paths: Iterable[Path]) -> list[Path]:
    """Image files, and the images inside folders (recursively, sorted), each once. A path that does not
    exist, or a folder without images, is an error."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(f for f in p.rglob("*") if f.is_file() and is_image(f) and not f.name.startswith("."))
            if not inside:
                raise ImageError(f"{p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found += inside
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return list(dict.fromkeys(found))


def fit_image(img: Image.Image, size: tuple[int, int] = IMAGE_SIZE, *, pad: bool = False) -> np.ndarray:
    """A PIL image as a uint8 (height, width, 3) array of ``size``.

    By default the crop is stretched to ``size`` as Keras' ``image_dataset_from_directory`` does (bilinear).
    With ``pad`` it is scaled to fit inside ``size`` keeping its aspect ratio, centred on black.
    """
    height, width = size
    img = img.convert("RGB")
    if not pad:
        return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR))
    scale = min(width / img.width, height / img.height)
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    canvas = Image.new("RGB", (width, height))
    canvas.paste(img.resize(new, Image.Resampling.BILINEAR), ((width - new[0]) // 2, (height - new[1]) // 2))
    return np.asarray(canvas)


def load_image(path: Path, size: tuple[int, int] = IMAGE_SIZE, *, pad: bool = False) -> np.ndarray:
    """One crop file as a uint8 (height, width, 3) array of ``size`` (see :func:`fit_image`)."""
    return fit_image(open_image(path), size, pad=pad)


def load_images(
    paths: Sequence[Path], size: tuple[int, int] = IMAGE_SIZE, *, pad: bool = False, threads: int | None = None
) -> np.ndarray:
    """Decode many crops in parallel (Pillow releases the GIL while decoding and resizing)."""
    from concurrent.futures import ThreadPoolExecutor

    out = np.empty((len(paths), *size, 3), dtype=np.uint8)

    def fill(i: int) -> None:
        out[i] = load_image(paths[i], size, pad=pad)

    with ThreadPoolExecutor(max_workers=threads or min(8, (os.cpu_count() or 1) * 2)) as pool:
        list(pool.map(fill, range(len(paths))))
    return out
