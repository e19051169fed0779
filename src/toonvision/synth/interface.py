"""The game's interface drawn over a rendered street: what a screenshot of the real game has on top of the world.

ToonTown pins its buttons and meters to the screen's corners (the regions of :mod:`toonvision.data.game_rules`,
which ``annotate`` and ``review`` flag boxes under) and floats chat balloons over the heads of Toons who speak.
Drawn here, seeded, after the 3D render: the chat and SpeedChat buttons (top left), the friends and map buttons
(top right), the Laff meter (bottom left), the Shtiker Book (bottom right), sometimes the gag toolbar (bottom),
and chat balloons over some Toons. A box the interface hides for at least :data:`HIDDEN_SHARE` of its area is
no longer labelled: nobody could see what stands there.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from toonvision.data.annotations import Box
from toonvision.data.game_rules import INTERFACE_REGIONS, Region

HIDDEN_SHARE = 0.5
GAG_TOOLBAR = 0.3  # share of screenshots in a battle, where the gag toolbar is up
BALLOON = 0.35  # chance that a Toon in the picture is speaking
WORDS = ("Hi!", "Toons of the world, unite!", "Gotta go!", "Let's work together!", "Need a toon-up?", "Yes")


def _pixels(region: Region, width: int, height: int) -> tuple[int, int, int, int]:
    return (
        round(region.left * width),
        round(region.top * height),
        round(region.right * width),
        round(region.bottom * height),
    )


def _buttons(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], count: int, rng: random.Random) -> None:
    left, top, right, bottom = box
    side = min((right - left) // count, bottom - top) * 0.8
    for i in range(count):
        x = left + (right - left) * (i + 0.5) / count
        y = (top + bottom) / 2
        colour = rng.choice(((235, 180, 40), (70, 150, 230), (230, 90, 60), (120, 200, 90)))
        shape = (x - side / 2, y - side / 2, x + side / 2, y + side / 2)
        draw.rounded_rectangle(shape, radius=side / 4, fill=(*colour, 255), outline=(40, 40, 40, 255), width=2)


def _laff_meter(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], rng: random.Random) -> None:
    left, top, right, bottom = box
    r = min(right - left, bottom - top) * 0.42
    cx, cy = (left + right) / 2, (top + bottom) / 2
    face = rng.choice(((240, 190, 120), (150, 110, 70), (250, 250, 250), (230, 120, 170), (120, 170, 230)))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*face, 255), outline=(30, 30, 30, 255), width=3)
    for dx in (-0.35, 0.35):  # eyes
        draw.ellipse(
            (cx + dx * r - r * 0.1, cy - r * 0.3, cx + dx * r + r * 0.1, cy - r * 0.05), fill=(20, 20, 20, 255)
        )
    draw.arc((cx - r * 0.45, cy - r * 0.1, cx + r * 0.45, cy + r * 0.5), 20, 160, fill=(20, 20, 20, 255), width=3)
    draw.text((cx - r * 0.25, cy + r * 0.45), str(rng.randint(15, 137)), fill=(200, 20, 20, 255))


def _balloon(draw: ImageDraw.ImageDraw, head: tuple[float, float], width: int, rng: random.Random) -> None:
    text = rng.choice(WORDS)
    w, h = 14 + 7 * len(text), 30
    x = min(max(head[0] - w / 2, 2), width - w - 2)
    y = max(head[1] - h - 18, 2)
    draw.rounded_rectangle((x, y, x + w, y + h), radius=10, fill=(255, 255, 255, 255), outline=(60, 60, 60, 255))
    draw.polygon([(head[0] - 6, y + h), (head[0] + 6, y + h), (head[0], y + h + 12)], fill=(255, 255, 255, 255))
    draw.text((x + 7, y + 9), text, fill=(0, 0, 0, 255))


def draw_interface(image: np.ndarray, boxes: Sequence[Box], rng: random.Random) -> tuple[np.ndarray, list[Box]]:
    """``image`` (H, W, 3 uint8) with the interface drawn over it, and the boxes still visible under it."""
    height, width = image.shape[:2]
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    battle = rng.random() < GAG_TOOLBAR
    for region in INTERFACE_REGIONS:
        box = _pixels(region, width, height)
        if region.name == "laff":
            _laff_meter(draw, box, rng)
        elif region.name == "gags":
            if battle:
                _buttons(draw, box, 7, rng)
        else:
            _buttons(draw, box, {"chat": 2, "friends": 2, "book": 1}.get(region.name, 1), rng)
    for b in boxes:
        if b.name.startswith("toon_") and rng.random() < BALLOON:
            _balloon(draw, ((b.xmin + b.xmax) / 2, b.ymin), width, rng)
    covered = np.asarray(layer)[..., 3] > 0
    kept = []
    for b in boxes:
        x0, y0, x1, y1 = (int(v) for v in (b.xmin, b.ymin, b.xmax, b.ymax))
        area = covered[y0:y1, x0:x1]
        if area.size and area.mean() >= HIDDEN_SHARE:
            continue
        kept.append(b)
    street = Image.fromarray(image).convert("RGBA")
    return np.asarray(Image.alpha_composite(street, layer).convert("RGB")), kept


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` as it comes back from JPEG at ``quality``: the blocks and ringing of a compressed capture."""
    import io

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))
