"""Contact sheets: annotated frames of a replay side by side in one PNG (fer-replay --contact-sheet, the demo)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from fer_ros.tools.bagtools import BagFrame
from fer_ros.tools.replay_results import FrameRecord


def contact_sheet(tiles: Sequence[tuple[np.ndarray, str]], columns: int = 4, tile_width_px: int = 320) -> np.ndarray:
    """Annotated frames side by side, `columns` per row, each scaled to `tile_width_px` with a caption bar
    underneath; returns an RGB8 image."""
    import cv2
    if not tiles:
        raise ValueError("a contact sheet needs at least one frame")
    scaled = []
    for rgb, caption in tiles:
        h, w = rgb.shape[:2]
        th = max(1, int(round(h * tile_width_px / w)))
        img = cv2.resize(rgb, (tile_width_px, th), interpolation=cv2.INTER_AREA if w > tile_width_px
                         else cv2.INTER_LINEAR)
        bar = np.full((22, tile_width_px, 3), 255, np.uint8)
        cv2.putText(bar, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        scaled.append(np.concatenate([img, bar], axis=0))
    tile_h = max(t.shape[0] for t in scaled)
    columns = max(1, min(columns, len(scaled)))
    rows = math.ceil(len(scaled) / columns)
    pad = 4
    sheet = np.full((rows * (tile_h + pad) + pad, columns * (tile_width_px + pad) + pad, 3), 235, np.uint8)
    for i, t in enumerate(scaled):
        r, c = divmod(i, columns)
        y, x = pad + r * (tile_h + pad), pad + c * (tile_width_px + pad)
        sheet[y:y + t.shape[0], x:x + t.shape[1]] = t
    return sheet


class ContactSheetCollector:
    """Keeps annotated copies of `count` frames spread evenly over a topic of `total` messages."""

    def __init__(self, total: int, count: int) -> None:
        count = max(0, min(count, total))
        self.wanted = set(np.linspace(0, total - 1, count).round().astype(int).tolist()) if count else set()
        self.tiles: list[tuple[np.ndarray, str]] = []

    def on_frame(self, frame: BagFrame, results: list, record: FrameRecord) -> None:
        if frame.index not in self.wanted:
            return
        from fer_ros.annotate import draw_results
        self.tiles.append((draw_results(frame.rgb8, results), f"frame {frame.index}  t={record.time_s:.2f} s"))

    def save(self, path: Path, columns: int = 4) -> Path | None:
        if not self.tiles:
            return None
        import cv2
        cv2.imwrite(str(path), cv2.cvtColor(contact_sheet(self.tiles, columns), cv2.COLOR_RGB2BGR))
        return path
