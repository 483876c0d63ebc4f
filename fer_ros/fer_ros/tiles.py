"""The landmarker's tile search for faces too small for its whole-frame pass (`TileSearch`), and its geometry: a
box around points, the overlap of two boxes, the overlapping tiles a frame is searched on, and putting the tiles'
results back together in the tiles' order after they were dealt over several threads."""
from __future__ import annotations

import numpy as np

from fer_ros import native_stderr

# The smallest tile side (px): the face detector's input size.
MIN_TILE_SIDE_PX = 128


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
    """(side, [(x, y)] row by row): the overlapping square tiles of 2/3 of the frame's shorter side, at least
    MIN_TILE_SIDE_PX and at most the shorter side (a frame that small is one tile, or a row of them)."""
    h, w = frame.shape[:2]
    tile = min(min(h, w), max(MIN_TILE_SIDE_PX, int(min(h, w) * 2 / 3)))
    xs = sorted(set(list(range(0, max(1, w - tile + 1), tile // 2)) + [max(0, w - tile)]))
    ys = sorted(set(list(range(0, max(1, h - tile + 1), tile // 2)) + [max(0, h - tile)]))
    return tile, [(x, y) for y in ys for x in xs]


def interleaved(parts: list[list]) -> list:
    """Undo dealing items to len(parts) hands in turn: parts[k] holds items k, k + n, k + 2n, ..."""
    n = len(parts)
    return [parts[j % n][j // n] for j in range(sum(len(p) for p in parts))]


def mp_image(rgb: np.ndarray):
    """A MediaPipe image of an (H, W, 3) RGB uint8 array (copied where it is not contiguous, as a tile is)."""
    import mediapipe as mp
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))


def merge_tile_boxes(per_tile: list[list[tuple]]) -> list[tuple[float, float, float, float]]:
    """The tiles' boxes in order, each kept unless it overlaps one kept before (IoU > 0.3)."""
    boxes: list[tuple[float, float, float, float]] = []
    for tile_boxes in per_tile:
        for box in tile_boxes:
            if not any(iou(box, b) > 0.3 for b in boxes):
                boxes.append(box)
    return boxes


# While faces are known, a tile search looking for more is spread over this many frames (a share of the tiles on
# each: one of a 640x480 frame's six), so that no single frame pays for all of them; with nothing known it covers
# every tile at once. (fer_node, one face at 30 Hz on a 2-core Xeon VM, ten paired runs of 15 s against 3 frames:
# p95 latency lower in seven, median of the p95s 31.3 ms against 34.5; a new face is found up to 0.1 s later.)
SWEEP_FRAMES = 6
# Frames with a shorter side below this are not tiled for small faces while no face is known (px): the
# whole-frame pass then looks for every face. While faces are known the search is how a new face is found (the
# faces are followed without looking for more), so it then covers frames of any size.
MIN_SEARCH_SIDE_PX = 256


class TileSearch:
    """The search for faces the landmarker's whole-frame pass misses: a face detector (the landmarker bundle's own,
    `detectors` copies, one per thread at a time) on the overlapping tiles of `tile_origins`, about 1.5 ms a tile.
    On a stream it runs at most every `period_s` of stream time, and only while there is room for more faces;
    while faces are known a search is dealt over SWEEP_FRAMES frames, and frames under MIN_SEARCH_SIDE_PX are
    searched too.

    Used two ways: `search` (all tiles, on the calling thread: single images) and, on a stream, `plan` the tiles
    of this frame, then `detect` them on the calling thread or `submit` them to a thread pool."""

    def __init__(self, detector_model: bytes, detectors: int, min_confidence: float, period_s: float) -> None:
        import queue

        from mediapipe.tasks.python import BaseOptions, vision
        self.period_s = float(period_s)
        self._detectors: list = []
        self._free: queue.SimpleQueue = queue.SimpleQueue()  # detectors not in use
        for _ in range(max(1, int(detectors))):
            self._detectors.append(native_stderr.FirstCallsQuiet(vision.FaceDetector.create_from_options(
                vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=detector_model),
                                           running_mode=vision.RunningMode.IMAGE,
                                           min_detection_confidence=float(min_confidence)))))
            self._free.put(self._detectors[-1])
        self._last_s: float | None = None  # stream time (s) of the last search's start
        self._sweep: list[tuple[int, int]] = []  # tile origins of the search in progress, not searched yet
        self._sweep_key: tuple = ()  # (frame shape, tile side, tiles per frame) of that search

    def __len__(self) -> int:
        return len(self._detectors)

    def due(self, frame: np.ndarray, ts_ms: int | None, known: int = 0) -> bool:
        """Whether a search may run on this frame: one big enough to tile or, with `known` faces, any frame, and
        (on a stream) no search in the last period_s; a stream time that went back makes it due."""
        if not known and min(frame.shape[:2]) < MIN_SEARCH_SIDE_PX:
            return False
        if ts_ms is None or self._last_s is None:
            return True
        now_s = ts_ms / 1000.0
        return now_s < self._last_s or now_s - self._last_s >= self.period_s

    def plan(self, frame: np.ndarray, ts_ms: int, known: int, max_faces: int) -> tuple[int, list] | None:
        """(tile side, origins) of the tiles to search on this frame of a stream, or None. A search starts when it is
        due and `known` (last frame's faces) leaves room for more; with no face known it covers every tile at
        once, otherwise it is dealt over SWEEP_FRAMES frames."""
        key_shape = frame.shape[:2]
        if self._sweep and self._sweep_key[0] == key_shape:
            _, tile, per_frame = self._sweep_key
            now, self._sweep = self._sweep[:per_frame], self._sweep[per_frame:]
            return tile, now
        self._sweep = []
        if known >= max_faces or not self.due(frame, ts_ms, known):
            return None
        self._last_s = ts_ms / 1000.0
        tile, origins = tile_origins(frame)
        if not known:
            return tile, origins
        per_frame = -(-len(origins) // SWEEP_FRAMES)
        self._sweep, self._sweep_key = origins[per_frame:], (key_shape, tile, per_frame)
        return tile, origins[:per_frame]

    def detect(self, frame: np.ndarray, tile: int, origins: list) -> list[list[tuple]]:
        """For each (x, y) tile origin, the face boxes (frame px) the detector finds on that tile."""
        detector = self._free.get()  # one detector per thread at a time
        try:
            out = []
            for x, y in origins:
                result = detector.detect(mp_image(frame[y:y + tile, x:x + tile]))
                out.append([(x + d.bounding_box.origin_x, y + d.bounding_box.origin_y,
                             x + d.bounding_box.origin_x + d.bounding_box.width,
                             y + d.bounding_box.origin_y + d.bounding_box.height)
                            for d in result.detections or []])
            return out
        finally:
            self._free.put(detector)

    def search(self, frame: np.ndarray) -> list[tuple[float, float, float, float]]:
        """The face boxes (px) on every tile of the frame, searched on the calling thread."""
        return merge_tile_boxes(self.detect(frame, *tile_origins(frame)))

    def submit(self, pool, frame: np.ndarray, tile: int, origins: list) -> list:
        """The tiles at `origins` searched on the thread pool: futures of `detect`, one per detector, tiles dealt
        to them in turn (k, k + n, ...); `interleaved` puts their results back in the tiles' order."""
        parts = min(len(self._detectors), len(origins))
        return [pool.submit(self.detect, frame, tile, origins[k::parts]) for k in range(parts)]

    def close(self) -> None:
        """Release the detectors (after the pool that runs `submit`'s searches has been shut down)."""
        for detector in self._detectors:
            detector.close()
        self._detectors = []
