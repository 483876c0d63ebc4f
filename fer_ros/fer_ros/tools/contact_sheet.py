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
    """Keeps annotated copies of `count` frames spread evenly over a topic of `total` messages (message indices
    0 .. total - 1), picked among the frames the replay processes (on_frame).

    Each target index takes the first processed frame at or after it, which moves past every target at or below
    its index. A frame taken later than its target (the message there was skipped, dropped or repeated a stamp)
    spreads the tiles still to take evenly over the messages after it. Tiles still missing at the end (targets with
    no processed frame from there on, frames past `total`) are filled with the latest processed frames not taken,
    so the sheet has `count` tiles whenever the replay processed that many frames. At most `count` frames are held
    at any time."""

    def __init__(self, total: int, count: int) -> None:
        self.count = max(0, min(count, total))
        self.last_index = total - 1
        self.targets: list[int] = _spread(0, self.last_index, self.count)
        self.tiles: list[tuple[int, np.ndarray, str]] = []  # (message index, annotated RGB8 frame, caption)
        self._spares: list[tuple[int, np.ndarray, list, str]] = []  # latest frames not taken, unannotated

    def on_frame(self, frame: BagFrame, results: list, record: FrameRecord) -> None:
        caption = f"frame {frame.index}  t={record.time_s:.2f} s"
        if self.targets and self.targets[0] <= frame.index:
            self._take(frame.index, frame.rgb8, results, caption)
            return
        self._spares.append((frame.index, frame.rgb8, results, caption))
        del self._spares[:max(0, len(self._spares) - self._missing())]

    def _take(self, index: int, rgb8: np.ndarray, results: list, caption: str) -> None:
        from fer_ros.annotate import draw_results
        on_time = self.targets[0] == index
        self.targets = [t for t in self.targets if t > index]
        self.tiles.append((index, draw_results(rgb8, results), caption))
        if not on_time:
            self.targets = [t for t in _spread(index, self.last_index, self._missing() + 1) if t > index]
        del self._spares[:max(0, len(self._spares) - self._missing())]

    def _missing(self) -> int:
        """Tiles still to take."""
        return self.count - len(self.tiles)

    def sheet_tiles(self) -> list[tuple[np.ndarray, str]]:
        """The tiles of the sheet, (annotated RGB8 frame, caption) in message order: those taken for their targets
        and the latest frames not taken, as many as tiles are missing (the spares are kept to that number)."""
        from fer_ros.annotate import draw_results
        spares = [(i, draw_results(rgb8, results), caption) for i, rgb8, results, caption in self._spares]
        tiles = self.tiles + spares
        return [(rgb, caption) for _, rgb, caption in sorted(tiles, key=lambda t: t[0])]

    def save(self, path: Path, columns: int = 4) -> Path | None:
        tiles = self.sheet_tiles()
        if not tiles:
            return None
        import cv2
        cv2.imwrite(str(path), cv2.cvtColor(contact_sheet(tiles, columns), cv2.COLOR_RGB2BGR))
        return path


def _spread(first: int, last: int, count: int) -> list[int]:
    """`count` message indices spread evenly over first .. last (both included), ascending; fewer where the range
    holds fewer indices."""
    if count <= 0 or last < first:
        return []
    return sorted(set(np.linspace(first, last, count).round().astype(int).tolist()))
