"""How unsure the detector is of where each box's edges lie, by test-time augmentation, and what it nearly found.

The detector looks at the screenshot twice more: mirrored left to right, and shrunk (the screenshot in the
middle of a canvas :data:`ZOOM_OUT` times larger, so every Toon and Cog reaches the network smaller). Each copy's
boxes are mapped back onto the screenshot and matched to the plain run's by IoU; a box's *position spread* is
how far its four edges move, each divided by the box's width (left, right) or height (top, bottom), averaged over
the edges and the copies. A box no copy finds again (no match with IoU >= :data:`MATCH_IOU`) gets
:data:`UNMATCHED`: the detector cannot place it twice.

A steady detector gives a few hundredths; a box a person would have to redraw (IoU < 0.7 with the truth)
typically moves by a tenth of its size or more. It costs two more detector passes per screenshot, so only
``annotate`` asks for it (``Pipeline.detect(..., position_spread=True)``); predict and watch keep their speed.

The mirrored look also places each box better: :func:`look_again` returns each box as the mean of the plain
run's and the mirrored copy's box of the same class (where there is one). Each look's errors are partly its own,
so their mean is nearer the truth: on the shipped detector's 300 held-out screenshots, AP50:95 0.613 -> 0.627.

The same look lists the *near misses*: the detector's peaks below the threshold, down to :data:`NEAR_MISS` of
it, that overlap no proposed box and no stronger near miss (IoU >= :data:`MATCH_IOU`). Each is a Toon or Cog a
person may have to draw with about the probability of its score: the one kind of work the proposed boxes
cannot show.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toonvision.data.detection import Detections, iou_matrix

ZOOM_OUT = 1.25  # the shrunk copy's canvas, as a multiple of the screenshot's sides
MATCH_IOU = 0.3  # a copy's box this close to a plain box is the same Toon or Cog seen again
UNMATCHED = 1.0  # the spread of a box no copy finds again
NEAR_MISS = 0.5  # peaks down to this share of the threshold are near misses
COPY_SCORE = 0.5  # the copies keep boxes down to this share of the plain run's threshold, so a box that only
# dims a little in a copy is still matched rather than taken for one that vanished


def _copies(array: np.ndarray) -> list[tuple[np.ndarray, Any]]:
    """The augmented copies of ``array``, each with the function that maps its boxes back onto ``array``."""
    height, width = array.shape[:2]

    def unflip(boxes: np.ndarray) -> np.ndarray:
        out = boxes.copy()
        out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
        return out

    canvas_h, canvas_w = round(height * ZOOM_OUT), round(width * ZOOM_OUT)
    top, left = (canvas_h - height) // 2, (canvas_w - width) // 2
    canvas = np.zeros((canvas_h, canvas_w, 3), np.uint8)
    canvas[top : top + height, left : left + width] = array

    def unshrink(boxes: np.ndarray) -> np.ndarray:
        out = boxes - np.array([left, top, left, top], np.float32)
        out[:, 0::2] = np.clip(out[:, 0::2], 0, width)
        out[:, 1::2] = np.clip(out[:, 1::2], 0, height)
        return out

    return [(np.ascontiguousarray(array[:, ::-1]), unflip), (canvas, unshrink)]


def edge_shift(box: np.ndarray, other: np.ndarray) -> float:
    """How far ``other``'s edges lie from ``box``'s, each divided by ``box``'s width or height, averaged."""
    width = max(float(box[2] - box[0]), 1.0)
    height = max(float(box[3] - box[1]), 1.0)
    moved = np.abs(np.asarray(other, np.float64) - np.asarray(box, np.float64)) / [width, height, width, height]
    return float(moved.mean())


def _best_match(overlap: np.ndarray) -> list[int | None]:
    """For each row of ``overlap`` (IoU of our boxes against a copy's), the copy's box it matches best, or None
    below :data:`MATCH_IOU`."""
    if not overlap.shape[1]:
        return [None] * overlap.shape[0]
    best = overlap.argmax(axis=1)
    return [int(j) if overlap[i, j] >= MATCH_IOU else None for i, j in enumerate(best)]


def look_again(
    detector: Any, array: np.ndarray, found: Detections, threshold: float | None = None
) -> tuple[np.ndarray, Detections]:
    """The position spread of each of ``found``'s boxes (the plain run of ``detector`` on ``array``, at
    ``threshold``), as the module's docstring says: one float per box, 0 (steady) upwards, at most
    :data:`UNMATCHED` per copy; and ``found`` with each box averaged with the mirrored copy's of its class."""
    boxes = np.asarray(found.boxes, np.float32).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(0), found
    base = detector.threshold if threshold is None else threshold
    shifts, steadied = [], boxes.copy()
    for k, (copy, back) in enumerate(_copies(array)):
        seen = detector.detect(copy, base * COPY_SCORE)
        mapped = back(np.asarray(seen.boxes, np.float32).reshape(-1, 4))
        overlap = iou_matrix(boxes, mapped)
        shifts.append(
            [
                UNMATCHED if j is None else min(edge_shift(boxes[i], mapped[j]), UNMATCHED)
                for i, j in enumerate(_best_match(overlap))
            ]
        )
        if k == 0:  # the mirrored copy: the shrunk one sees every box smaller, and places it worse
            same_class = np.asarray(found.classes)[:, None] == np.asarray(seen.classes)[None, :]
            for i, j in enumerate(_best_match(overlap * same_class)):
                if j is not None:
                    steadied[i] = (boxes[i] + mapped[j]) / 2
    return np.mean(shifts, axis=0), Detections(steadied, found.classes, found.scores, found.class_scores)


def near_misses(low: Detections, threshold: float) -> list[tuple[np.ndarray, float]]:
    """The near misses of ``low`` (the detector's boxes down to :data:`NEAR_MISS` of ``threshold``, best first):
    (box, score) of each box below ``threshold`` that overlaps no box above it and no stronger near miss."""
    boxes = np.asarray(low.boxes, np.float32).reshape(-1, 4)
    taken = list(boxes[low.scores >= threshold])
    out = []
    for box, score in zip(boxes, low.scores, strict=True):
        if score >= threshold or (taken and iou_matrix(box[None], np.array(taken)).max() >= MATCH_IOU):
            continue
        taken.append(box)
        out.append((box, float(score)))
    return out
