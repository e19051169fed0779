"""Small procedural textures made with numpy: shirt patterns and building facades.

Each texture depends only on its arguments, so a cache keyed by them gives the same pixels whatever order a
worker renders screenshots in (determinism does not depend on which process drew what before).
"""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
from panda3d.core import SamplerState, Texture

from toonvision.synth.palette import RGB, mix, shade


def _to_texture(name: str, img: np.ndarray, *, mipmap: bool) -> Texture:
    h, w, _ = img.shape
    tex = Texture(name)
    tex.setup2dTexture(w, h, Texture.TUnsignedByte, Texture.FRgb)
    # Panda3D stores rows bottom-up and channels as BGR.
    tex.setRamImage(np.ascontiguousarray(img[::-1, :, ::-1]).tobytes())
    tex.setMagfilter(SamplerState.FTLinear)
    tex.setMinfilter(SamplerState.FTLinearMipmapLinear if mipmap else SamplerState.FTLinear)
    tex.setWrapU(SamplerState.WMClamp)
    tex.setWrapV(SamplerState.WMClamp)
    return tex


def _rgb8(c: RGB) -> np.ndarray:
    return np.array([round(v * 255) for v in c], dtype=np.uint8)


PATTERNS = ("solid", "stripes", "dots", "band", "checks", "star")


@lru_cache(maxsize=512)
def shirt_texture(pattern: str, base: RGB, accent: RGB) -> Texture:
    """A 32x32 shirt pattern wrapped around a Toon's torso (u around the body, v up)."""
    size = 32
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _rgb8(base)
    acc = _rgb8(accent)
    yy, xx = np.mgrid[0:size, 0:size]
    if pattern == "stripes":
        img[(yy // 4) % 2 == 0] = acc
    elif pattern == "dots":
        img[((xx % 8 - 4) ** 2 + (yy % 8 - 4) ** 2) < 5] = acc
    elif pattern == "band":
        img[(yy > 12) & (yy < 20)] = acc
    elif pattern == "checks":
        img[((xx // 8) + (yy // 8)) % 2 == 0] = acc
    elif pattern == "star":
        # An emblem on the chest: the front of the torso is u around 0.25 (the +Y side).
        cx, cy = 8, 16
        img[(np.abs(xx - cx) + np.abs(yy - cy) * 0.8) < 6] = acc
    return _to_texture(f"shirt-{pattern}", img, mipmap=False)


@lru_cache(maxsize=256)
def facade_texture(wall: RGB, window: RGB, lit: bool, variant: int) -> Texture:
    """A building front: wall, a grid of framed windows, a door on the ground floor, a cornice."""
    rng = random.Random(f"facade:{variant}")
    w, h = 128, 128
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _rgb8(wall)
    trim = _rgb8(shade(wall, 0.7))
    img[:6] = trim
    cols = rng.choice((2, 3, 4))
    rows = rng.choice((2, 3))
    door_col = rng.randrange(cols)
    cell_w = w // cols
    cell_h = (h - 10) // (rows + 1)
    glass = _rgb8(window)
    frame = _rgb8(mix(wall, (1.0, 1.0, 1.0), 0.6))
    for r in range(rows + 1):
        for c in range(cols):
            x0 = c * cell_w + cell_w // 4
            x1 = (c + 1) * cell_w - cell_w // 4
            y0 = 10 + r * cell_h + cell_h // 5
            y1 = 10 + (r + 1) * cell_h - cell_h // 5
            if r == rows:
                if c != door_col:
                    continue
                # The door reaches the ground.
                y1 = h
                img[y0 - 2 : y1, x0 - 2 : x1 + 2] = frame
                img[y0:y1, x0:x1] = _rgb8(shade(wall, 0.45))
                continue
            img[y0 - 2 : y1 + 2, x0 - 2 : x1 + 2] = frame
            pane = glass if (not lit or rng.random() < 0.7) else _rgb8(shade(window, 0.35))
            img[y0:y1, x0:x1] = pane
            img[(y0 + y1) // 2, x0:x1] = frame
    return _to_texture(f"facade-{variant}", img, mipmap=True)
