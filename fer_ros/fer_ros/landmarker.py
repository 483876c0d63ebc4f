"""Face landmarks for every face in a frame.

`Landmarker` is the small interface the pipeline uses (`detect`, `close`); `MediaPipeLandmarker` implements it
with MediaPipe's Tasks FaceLandmarker (478 mesh points per face, and its 52 blendshapes with `blendshapes=True`;
nothing in fer_ros uses them, and they cost time per face). The 68 iBUG points are picked through
`landmark_scheme.MP478_TO_IBUG68`.

The FaceLandmarker's detector sees the whole frame at 128 px, so it misses faces smaller than about an eighth of
the frame's width. The small-face search covers them: the bundle's own face detector runs on overlapping tiles
(about 1.5 ms each), and every face it finds is landmarked on a crop around it (a second FaceLandmarker in IMAGE
mode). In VIDEO mode a face of the previous frame that the whole-frame pass misses is looked for on a crop around
its last box, and the tile search runs at most every `search_period_s` while fewer than `max_faces` faces are
known. While faces are known, a search is spread over tiles.SWEEP_FRAMES frames, a share of the tiles on each. The tile
search itself is `tiles.TileSearch`.

In VIDEO mode, where LiteRT is installed and blendshapes are off, faces known from the previous frame are followed
by the mesh network alone (`mesh.py`): the FaceLandmarker's graph costs about as much again as its network (one face
on a 256 px crop, 2-core Xeon VM, 120 interleaved calls: 17.8 ms median against 10.1 ms through LiteRT). So while
faces are known no whole-frame pass runs: each is landmarked on a view cut around its last points (side by side on
the thread pool), a face the network no longer sees is looked for on a crop around its last box, and new faces are
found by the tile search within `search_period_s` (on frames of any size: see tiles.MIN_SEARCH_SIDE_PX). With no
face known, or without LiteRT, the passes below run. A frame on which every followed face is lost, and neither the
crops nor the tile search find one, gets the whole-frame pass that looks for every face, so a cut to another face is
reported on the frame of the cut (one pass more, on such frames only).

In VIDEO mode MediaPipe's FaceLandmarker runs its face detector on every frame while it follows fewer faces than
it may report. So while exactly one face is known, the whole-frame pass is a second VIDEO FaceLandmarker that
follows that face and does not look for more, and a face that comes into view is found by the tile search within
`search_period_s` (the detector finds a face too big for a tile by the part of it a tile holds). With none known,
or several, the pass is the one that may report `max_faces` and looks for faces on every frame. (fer_node, one
face at 30 Hz on a 2-core Xeon VM, eight paired runs: median latency from image to /emotion lower in seven, 31.7 ms
against 38.0 over the runs. Following one of three faces and the others by their crops made the node slower
there: each crop runs the detector again.)

The mesh network costs the same for every face and runs on one core, and MediaPipe releases the GIL while it runs:
with `threads` > 1 the faces landmarked on crops run side by side, each on its own IMAGE-mode FaceLandmarker. In
VIDEO mode the faces the whole-frame pass missed in the previous frame (small ones, which it will most likely miss
again) are landmarked on their crops, and a due tile search runs, while the whole-frame pass runs; a result the
whole-frame pass makes redundant is dropped, so the faces reported are the same as one after another, only
sooner.
"""
from __future__ import annotations

import io
import math
import os
import queue
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from fer_ros import mesh, native_stderr
from fer_ros.frames import as_rgb8
from fer_ros.landmark_scheme import to_ibug68
from fer_ros.landmarker_model import (LANDMARKER_MODEL_SHA256, LandmarkerError, check_model_file,
                                      default_landmarker_model)
from fer_ros.ratelimit import RateLimiter
from fer_ros.tiles import TileSearch, box_of, interleaved, iou, merge_tile_boxes, mp_image


# Frames whose longer side exceeds this are searched on a downscaled copy (px).
DEFAULT_MAX_DETECT_SIDE_PX = 1280
# Frames with a shorter side below this hold no usable face (px).
MIN_FRAME_SIDE_PX = 8
# A small face's crop is kept from frame to frame while the crop its new box asks for moves none of its edges by
# more than mesh.ROI_HOLD of its side (the share a followed face's view is held by, one definition for both):
# re-centring on every frame's box feeds the landmarks' own sub-pixel wobble back into the crop, and a still face
# then alternates between two sets of landmarks.
# Default number of threads that landmark faces at once: one per core, at most this many.
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """Threads for side-by-side landmarking when none is asked for: the cores, between 1 and MAX_DEFAULT_THREADS."""
    return max(1, min(MAX_DEFAULT_THREADS, os.cpu_count() or 1))


@dataclass
class FaceLandmarks:
    """One face in one frame. All coordinates in pixels of the frame given to `detect`.

    points478: (478, 3) float32 mesh points (x, y px; z in px-like units, smaller = nearer the camera).
    points68: (68, 2) float32 iBUG-68 points (x, y px), via landmark_scheme.MP478_TO_IBUG68.
    blendshapes: (52,) float32 scores in [0, 1], in the order of `blendshape_names` (empty if unavailable).
    box: (x0, y0, x1, y1) px, the bounding box of the 478 points (may reach outside the frame).
    """

    points478: np.ndarray
    points68: np.ndarray
    blendshapes: np.ndarray
    blendshape_names: tuple[str, ...]
    box: tuple[float, float, float, float]

    @staticmethod
    def from_points478(points478: np.ndarray, blendshapes: np.ndarray | None = None,
                       blendshape_names: tuple[str, ...] = ()) -> "FaceLandmarks":
        """Build from (478, 2 or 3) image-px points (the 68 points and the box are derived)."""
        p = np.asarray(points478, np.float32)
        if p.shape[1] == 2:
            p = np.concatenate([p, np.zeros((p.shape[0], 1), np.float32)], axis=1)
        xy = p[:, :2]
        box = (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()))
        bs = np.zeros(0, np.float32) if blendshapes is None else np.asarray(blendshapes, np.float32)
        return FaceLandmarks(points478=p, points68=np.ascontiguousarray(to_ibug68(xy)), blendshapes=bs,
                             blendshape_names=tuple(blendshape_names), box=box)


@runtime_checkable
class Landmarker(Protocol):
    """What the pipeline needs from a landmark backend."""

    def detect(self, rgb8: np.ndarray, stamp_s: float | None = None) -> list[FaceLandmarks]:
        """All faces in an (H, W, 3) uint8 RGB frame; `stamp_s` is the frame time (s) for video backends."""
        ...

    def close(self) -> None:
        """Release the backend's resources."""
        ...


@dataclass
class _Known:
    """A face of the last frame (VIDEO mode), in detection px: its points, the crop a small face was landmarked on
    (None: found otherwise), the mesh view it was followed with (None: found otherwise)."""

    points478: np.ndarray
    crop: tuple | None = None
    view: object = None

    @property
    def box(self) -> tuple[float, float, float, float]:
        return box_of(self.points478)


class MediaPipeLandmarker:
    """MediaPipe Tasks FaceLandmarker.

    mode "video": frames of one stream, tracked between calls (faster); timestamps must grow, so stamps that do
    not are moved just past the previous one. mode "image": every call independent (datasets of single images).
    Frames with a longer side above `max_detect_side_px` are searched on a downscaled copy; points are returned in
    the original frame's pixels. `threads`: faces landmarked at once (see the module docstring); 0 = one per core
    (at most MAX_DEFAULT_THREADS), 1 = one after another. `mesh_tracking`: in VIDEO mode, follow known faces with
    the mesh network alone where LiteRT is installed (see the module docstring). Call `close()` when done (or use
    it as a context manager)."""

    def __init__(self, model_path: str | Path | None = None, mode: str = "video", max_faces: int = 4,
                 min_detection_confidence: float = 0.5, min_presence_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, blendshapes: bool = False,
                 max_detect_side_px: int = DEFAULT_MAX_DETECT_SIDE_PX,
                 sha256: str | None = LANDMARKER_MODEL_SHA256, small_faces: bool = True,
                 search_period_s: float = 0.5, roi_scale: float = 2.2, threads: int = 0,
                 mesh_tracking: bool = True) -> None:
        if mode not in ("video", "image"):
            raise LandmarkerError(f"landmarker mode must be 'video' or 'image', got {mode!r}")
        if int(max_faces) < 1:
            raise LandmarkerError(f"max_faces must be >= 1, got {max_faces}")
        if int(threads) < 0:
            raise LandmarkerError(f"threads must be >= 0 (0 = one per core), got {threads}")
        if int(max_detect_side_px) < 64:
            raise LandmarkerError(f"max_detect_side_px must be >= 64, got {max_detect_side_px}")
        path = Path(model_path) if model_path is not None else default_landmarker_model()
        if model_path is not None and sha256 is not None:
            check_model_file(path, sha256)
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:
            raise LandmarkerError(f"mediapipe is not installed ({exc}); install it with `make setup`") from None
        except OSError as exc:  # mediapipe is there, a system library it loads is not (e.g. libEGL.so.1)
            raise LandmarkerError(f"mediapipe could not load a system library it needs ({exc}); on Debian or "
                                  "Ubuntu `make setup` installs the missing ones (libEGL: apt install libegl1)"
                                  ) from None
        self.mode = mode
        self.max_faces = int(max_faces)
        self.max_detect_side_px = int(max_detect_side_px)
        self.small_faces = bool(small_faces)
        self.roi_scale = float(roi_scale)
        self.threads = int(threads) or default_threads()
        self._warn = RateLimiter(5.0)
        bundle = path.read_bytes()

        def landmarker(running, num_faces):
            return native_stderr.FirstCallsQuiet(vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_buffer=bundle), running_mode=running, num_faces=num_faces,
                min_face_detection_confidence=float(min_detection_confidence),
                min_face_presence_confidence=float(min_presence_confidence),
                min_tracking_confidence=float(min_tracking_confidence),
                output_face_blendshapes=bool(blendshapes))))

        self._landmarker = self._pool = None
        self._roi_landmarkers: list = []
        self._free_roi: queue.SimpleQueue = queue.SimpleQueue()  # ROI landmarkers not in use
        self._search: TileSearch | None = None  # the tile search for faces the whole-frame pass misses
        with native_stderr.library_chatter():  # MediaPipe's and LiteRT's start-up lines
            running = vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE
            self._landmarker = landmarker(running, self.max_faces)
            # VIDEO mode: the whole-frame pass that follows one face (see the module docstring)
            self._one_face = (landmarker(running, 1) if mode == "video" and self.small_faces and self.max_faces > 1
                              else None)
            if self.small_faces:
                for _ in range(min(self.threads, self.max_faces)):
                    self._roi_landmarkers.append(landmarker(vision.RunningMode.IMAGE, 1))
                    self._free_roi.put(self._roi_landmarkers[-1])
                if len(self._roi_landmarkers) > 1:
                    self._pool = ThreadPoolExecutor(len(self._roi_landmarkers), thread_name_prefix="fer_landmarks")
                try:
                    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
                        detector_model = z.read("face_detector.tflite")
                except (zipfile.BadZipFile, KeyError) as exc:
                    self.close()
                    raise LandmarkerError(f"face landmarker bundle {path} holds no face detector ({exc})") from None
                # one tile detector per crop landmarker
                self._search = TileSearch(detector_model, len(self._roi_landmarkers), min_detection_confidence,
                                          search_period_s)
            # VIDEO mode: known faces followed by the mesh network alone (module docstring)
            self._follower = None
            if mesh_tracking and mode == "video" and self.small_faces and not blendshapes and mesh.available():
                try:  # a network for each of the pool's threads and the calling one
                    self._follower = mesh.MeshFollower(bundle, len(self._roi_landmarkers) + 1,
                                                       float(min_tracking_confidence), self.threads)
                except (zipfile.BadZipFile, KeyError, ValueError, RuntimeError) as exc:
                    self._warn.warning("mesh", f"the mesh network of {path} cannot run on its own ({exc}); faces are "
                                       "followed by MediaPipe's FaceLandmarker instead")
        self._known: list[_Known] = []  # last frame's faces (VIDEO mode)
        self._known_shape: tuple[int, ...] = ()  # (h, w) of the frame they were found in, after downscaling
        self._last_ts_ms: int | None = None
        self._offset_ms = 0
        self._frame_count = 0

    # -- interface ---------------------------------------------------------------------------------------------
    def detect(self, rgb8: np.ndarray, stamp_s: float | None = None) -> list[FaceLandmarks]:
        """All faces (at most max_faces) in the frame; see the class docstring."""
        if self._landmarker is None:
            raise LandmarkerError("the landmarker was closed")
        frame = as_rgb8(rgb8)
        h, w = frame.shape[:2]
        if min(h, w) < MIN_FRAME_SIDE_PX:
            self._warn.warning("tiny", f"frame {w}x{h} is too small to hold a face; no faces reported")
            return []
        if max(h, w) > self.max_detect_side_px:
            scale = self.max_detect_side_px / float(max(h, w))
            dw, dh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
            frame = cv2.resize(frame, (dw, dh), interpolation=cv2.INTER_AREA)
            scale_x, scale_y = w / float(dw), h / float(dh)
        else:
            scale_x = scale_y = 1.0
        if frame.shape[:2] != self._known_shape:  # the last frame's faces are in another frame's pixels
            self._known, self._known_shape = [], frame.shape[:2]
        ts_ms = self._timestamp_ms(stamp_s) if self.mode == "video" else None
        ahead = {}  # last frame's faces from crops, landmarked while the whole-frame pass runs
        tiles = (self._search.plan(frame, ts_ms, len(self._known), self.max_faces)
                 if ts_ms is not None and self.small_faces else None)
        search = None  # this frame's tiles, searched while the whole-frame pass runs
        following = bool(ts_ms is not None and self._follower is not None and self._known)
        # faces were known and followed without looking for more: if all are lost, the whole frame is looked at
        look_again = bool(self._known) and (following or self._whole_frame_task(ts_ms) is not self._landmarker)
        if self._pool is not None and ts_ms is not None:
            if not following:
                ahead = {i: self._pool.submit(self._landmark_roi, frame, k.box, k.crop)
                         for i, k in enumerate(self._known) if k.crop is not None}
            if tiles is not None:
                search = self._search.submit(self._pool, frame, *tiles)
        views: list = []  # the mesh view each face of `found` was followed with (None: found otherwise)
        try:
            if following:
                tracks = [(k.points478, k.view) for k in self._known[:self.max_faces]]
                followed = self._follower.follow(frame, tracks, self._pool)
                found = [(points, np.zeros(0, np.float32), ()) for points, _ in followed]
                views = [view for _, view in followed]
            else:
                found = self._detect_full(frame, ts_ms)
        finally:
            landmarked = {i: f.result() for i, f in ahead.items()}
            searched = merge_tile_boxes(interleaved([f.result() for f in search])) if search else None
        if tiles is not None and searched is None:
            searched = merge_tile_boxes(self._search.detect(frame, *tiles))
        crops: list = [None] * len(found)  # the crop a small face was landmarked on
        if self.small_faces:
            if len(found) < self.max_faces:
                small = self._detect_small(frame, found, ts_ms, landmarked, searched)
                found += [face for face, _ in small]
                crops += [crop for _, crop in small]
            if look_again and not found:  # e.g. a cut to another face: reported on this frame, not the next
                found = self._detect_full(frame, ts_ms, self._landmarker)
                crops, views = [None] * len(found), []
            # In VIDEO mode every face of this frame is followed next frame (mesh view), or looked for by its crop
            # if the whole-frame pass misses it then.
            views += [None] * (len(found) - len(views))
            self._known = ([_Known(p, crop, view) for (p, _, _), crop, view in zip(found, crops, views)]
                           if ts_ms is not None else [])
        faces = []
        for pts, bs, names in found:
            pts = pts.copy()
            # the downscaled copy's px x covers the frame's px (x + 0.5) * scale - 0.5 (pixel centres)
            pts[:, 0] = (pts[:, 0] + 0.5) * scale_x - 0.5
            pts[:, 1] = (pts[:, 1] + 0.5) * scale_y - 0.5
            pts[:, 2] *= scale_x
            faces.append(FaceLandmarks.from_points478(pts, bs, names))
        return faces

    def describe(self) -> str:
        """One line: what finds and follows the faces."""
        threads = max(1, len(self._roi_landmarkers))
        text = f"landmarks: MediaPipe FaceLandmarker ({self.mode} mode, up to {self.max_faces} faces, {threads} " \
               f"thread{'s' if threads > 1 else ''})"
        if self._follower is not None:
            return text + "; known faces followed by the face mesh network through LiteRT"
        if self.mode == "video" and not mesh.available():
            return text + "; LiteRT (pip package ai-edge-litert) is not installed, so known faces are followed " \
                          "by the FaceLandmarker, which is slower"
        return text

    def close(self) -> None:
        """Release the MediaPipe graphs and the worker threads (safe to call twice)."""
        with native_stderr.library_chatter():
            self._close()

    def _close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)
            self._pool = None
        for task in getattr(self, "_roi_landmarkers", []):
            task.close()
        self._roi_landmarkers = []
        if getattr(self, "_search", None) is not None:
            self._search.close()
            self._search = None
        if getattr(self, "_follower", None) is not None:
            self._follower.close()
        self._follower, self._known = None, []
        for name in ("_one_face", "_landmarker"):
            task = getattr(self, name, None)
            if task is not None:
                task.close()
                setattr(self, name, None)

    def __enter__(self) -> "MediaPipeLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------------------------------
    def _whole_frame_task(self, ts_ms: int | None):
        """The FaceLandmarker of this frame's whole-frame pass: in VIDEO mode, while exactly one face is known, the
        one that follows it without looking for more (see the module docstring)."""
        if ts_ms is not None and self._one_face is not None and len(self._known) == 1:
            return self._one_face
        return self._landmarker

    def _detect_full(self, frame: np.ndarray, ts_ms: int | None, task=None) -> list:
        """[(points478 px, blendshapes, names)] from the FaceLandmarker on the whole frame (`task`, by default
        `_whole_frame_task`'s)."""
        image = mp_image(frame)
        task = self._whole_frame_task(ts_ms) if task is None else task
        result = task.detect_for_video(image, ts_ms) if ts_ms is not None else task.detect(image)
        return _unpack(result, frame.shape[1], frame.shape[0], 0.0, 0.0)

    def _detect_small(self, frame: np.ndarray, found: list, ts_ms: int | None, landmarked: dict | None = None,
                      searched: list | None = None) -> list:
        """[(face, crop)]: faces the whole-frame pass missed, last frame's faces by their crop, new ones by the
        tile search. `landmarked`: _landmark_roi's results already made for some of last frame's faces, by their
        index in _known; `searched`: in VIDEO mode, the boxes on the tiles TileSearch.plan chose for this frame
        (None: none); in IMAGE mode the search runs here when there is room for more faces."""
        landmarked = landmarked or {}
        known = [box_of(p) for p, _, _ in found]
        # (box, last crop, its result when already made)
        candidates = [(k.box, k.crop, landmarked.get(i)) for i, k in enumerate(self._known)
                      if not any(iou(k.box, b) > 0.3 for b in known)]
        if ts_ms is None and self._search.due(frame, ts_ms) and len(known) + len(candidates) < self.max_faces:
            searched = self._search.search(frame)
        for box in searched or []:
            if not any(iou(box, k) > 0.2 for k in known + [b for b, _, _ in candidates]):
                candidates.append((box, None, None))
        out, boxes = [], []
        for i, (box, last_crop, made) in enumerate(candidates):
            if len(found) + len(out) >= self.max_faces:
                break
            if made is None:
                self._landmark_ahead(frame, candidates, i, self.max_faces - len(found) - len(out))
                made = candidates[i][2]
            face, crop = made
            if face is None:
                continue
            fbox = box_of(face[0])
            if any(iou(fbox, k) > 0.3 for k in known + boxes):
                continue
            out.append((face, crop))
            boxes.append(fbox)
        return out

    def _landmark_ahead(self, frame: np.ndarray, candidates: list, start: int, wanted: int) -> None:
        """Landmark candidates[start] and, side by side when there are threads, the next ones without a result,
        up to `wanted` in all (the most that can still be reported); results are stored in `candidates`."""
        todo = [j for j in range(start, len(candidates)) if candidates[j][2] is None][:max(1, wanted)]
        if self._pool is None or len(todo) == 1:
            todo = todo[:1]
            results = [self._landmark_roi(frame, *candidates[todo[0]][:2])]
        else:
            results = list(self._pool.map(lambda j: self._landmark_roi(frame, *candidates[j][:2]), todo))
        for j, made in zip(todo, results):
            candidates[j] = (candidates[j][0], candidates[j][1], made)

    def _landmark_roi(self, frame: np.ndarray, box, last_crop=None) -> tuple:
        """(the face nearest the centre of a square crop of roi_scale times the box around it, or None; the crop
        (x0, y0, x1, y1) used). `last_crop`, the crop this face was found in last frame, is used again while the
        new one would differ from it by less than mesh.ROI_HOLD of its side."""
        h, w = frame.shape[:2]
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        half = max(box[2] - box[0], box[3] - box[1]) * self.roi_scale / 2.0
        crop = (int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half))),
                int(min(w, np.ceil(cx + half))), int(min(h, np.ceil(cy + half))))
        if last_crop is not None and max(abs(a - b) for a, b in zip(crop, last_crop)) <= mesh.ROI_HOLD * 2.0 * half:
            crop = last_crop
        x0, y0, x1, y1 = crop
        if x1 - x0 < MIN_FRAME_SIDE_PX or y1 - y0 < MIN_FRAME_SIDE_PX:
            return None, crop
        task = self._free_roi.get()  # one landmarker per thread at a time (a MediaPipe task is not thread-safe)
        try:
            result = task.detect(mp_image(frame[y0:y1, x0:x1]))
        finally:
            self._free_roi.put(task)
        faces = _unpack(result, x1 - x0, y1 - y0, float(x0), float(y0))
        if not faces:
            return None, crop
        return min(faces, key=lambda f: float(np.hypot(*(f[0][:, :2].mean(axis=0) - (cx, cy))))), crop

    def _timestamp_ms(self, stamp_s: float | None) -> int:
        """A strictly increasing ms timestamp for VIDEO mode from the frame stamp (or a 33 ms frame counter)."""
        self._frame_count += 1
        if stamp_s is None or not math.isfinite(float(stamp_s)):
            raw = self._frame_count * 33
        else:
            raw = int(round(float(stamp_s) * 1000.0))
        ts = raw + self._offset_ms
        if self._last_ts_ms is not None and ts <= self._last_ts_ms:
            # Time went back (or stood still): shift later stamps so they continue just after the last one and
            # then advance at their own pace.
            self._offset_ms += self._last_ts_ms + 1 - ts
            ts = raw + self._offset_ms
        self._last_ts_ms = ts
        return ts


def _unpack(result, width: int, height: int, x0: float, y0: float) -> list:
    """FaceLandmarkerResult -> [(points478 (478, 3) px offset by (x0, y0), blendshapes (52,), names)]."""
    out = []
    for i, lms in enumerate(result.face_landmarks or []):
        pts = np.array([(lm.x, lm.y, lm.z) for lm in lms], np.float32)
        pts[:, 0] = pts[:, 0] * width + x0
        pts[:, 1] = pts[:, 1] * height + y0
        pts[:, 2] *= width
        bs, names = np.zeros(0, np.float32), ()
        if result.face_blendshapes and i < len(result.face_blendshapes):
            cats = result.face_blendshapes[i]
            bs = np.array([c.score for c in cats], np.float32)
            names = tuple(c.category_name for c in cats)
        out.append((pts, bs, names))
    return out
