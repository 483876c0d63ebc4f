"""Face boxes and the geometry of the landmarker's tile search: a box around points, the overlap of two boxes,
the overlapping tiles a frame is searched on, and putting the tiles' results back together in the tiles' order
after they were dealt over several threads."""
from __future__ import annotations

import numpy as np


def box_of(points: np.ndarray) -> tuple[float, float, float, float]:
    """The (x0, y0, x1, y1) box around (N, 2 or 3) points."""
    xy = points[:, :2]
    return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())


def iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def tile_origins(frame: np.ndarray) -> tuple[int, list[tuple[int, int]]]:
    """(side, [(x, y)] row by row): the overlapping square tiles of 2/3 of the frame's shorter side."""
    h, w = frame.shape[:2]
    tile = max(128, int(min(h, w) * 2 / 3))
    xs = sorted(set(list(range(0, max(1, w - tile + 1), tile // 2)) + [max(0, w - tile)]))
    ys = sorted(set(list(range(0, max(1, h - tile + 1), tile // 2)) + [max(0, h - tile)]))
    return tile, [(x, y) for y in ys for x in xs]


def interleaved(parts: list[list]) -> list:
    """Undo dealing items to len(parts) hands in turn: parts[k] holds items k, k + n, k + 2n, ..."""
    n = len(parts)
    return [parts[j % n][j // n] for j in range(sum(len(p) for p in parts))]


def merge_tile_boxes(per_tile: list[list[tuple]]) -> list[tuple[float, float, float, float]]:
    """The tiles' boxes in order, each kept unless it overlaps one kept before (IoU > 0.3)."""
    boxes: list[tuple[float, float, float, float]] = []
    for tile_boxes in per_tile:
        for box in tile_boxes:
            if not any(iou(box, b) > 0.3 for b in boxes):
                boxes.append(box)
    return boxes
