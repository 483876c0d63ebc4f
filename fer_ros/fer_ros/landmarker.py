"""Face landmarks for every face in a frame.

`Landmarker` is the small interface the pipeline uses (`detect`, `close`); `MediaPipeLandmarker` implements it
with MediaPipe's Tasks FaceLandmarker (478 mesh points + 52 blendshapes per face). The 68 iBUG points are
picked through `landmark_scheme.MP478_TO_IBUG68`.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from fer_ros.frames import as_rgb8
from fer_ros.landmark_scheme import to_ibug68
from fer_ros.ratelimit import LOGGER_NAME, RateLimiter

LANDMARKER_MODEL_NAME = "face_landmarker.task"
LANDMARKER_MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"

# Frames whose longer side exceeds this are searched on a downscaled copy (px).
DEFAULT_MAX_DETECT_SIDE_PX = 1280
# Frames with a shorter side below this hold no usable face (px).
MIN_FRAME_SIDE_PX = 8

_log = logging.getLogger(LOGGER_NAME)


class LandmarkerError(RuntimeError):
    """The landmarker cannot be created (missing or altered model file, bad option); the message says what to do."""


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


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_landmarker_model() -> Path:
    """Path of the shipped `models/face_landmarker.task` (source tree first, then the ROS install space), after
    checking its sha256. Raises LandmarkerError naming where it looked and what to do."""
    candidates = [Path(__file__).resolve().parents[1] / "models" / LANDMARKER_MODEL_NAME]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            candidates.append(Path(get_package_share_directory("fer_ros")) / "models" / LANDMARKER_MODEL_NAME)
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    for path in candidates:
        if path.is_file():
            check_model_file(path)
            return path
    raise LandmarkerError(
        f"face landmarker model not found (looked at {', '.join(str(c) for c in candidates)}); it ships with "
        f"fer_ros in models/{LANDMARKER_MODEL_NAME}: restore it from the repository (see models/NOTICE)")


def check_model_file(path: Path, sha256: str = LANDMARKER_MODEL_SHA256) -> None:
    """Raise LandmarkerError unless `path` exists and has the expected sha256."""
    path = Path(path)
    if not path.is_file():
        raise LandmarkerError(f"face landmarker model {path} does not exist")
    got = sha256_of(path)
    if got != sha256:
        raise LandmarkerError(
            f"face landmarker model {path} has sha256 {got}, expected {sha256}: the file is damaged or not the "
            "shipped one; restore it from the repository")


class MediaPipeLandmarker:
    """MediaPipe Tasks FaceLandmarker.

    mode "video": frames of one stream, tracked between calls (faster); timestamps must grow, so stamps that do
    not are moved just past the previous one. mode "image": every call independent (datasets of single images).
    Frames with a longer side above `max_detect_side_px` are searched on a downscaled copy; points are returned in
    the original frame's pixels. Call `close()` when done (or use it as a context manager)."""

    def __init__(self, model_path: str | Path | None = None, mode: str = "video", max_faces: int = 4,
                 min_detection_confidence: float = 0.5, min_presence_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, blendshapes: bool = True,
                 max_detect_side_px: int = DEFAULT_MAX_DETECT_SIDE_PX,
                 sha256: str | None = LANDMARKER_MODEL_SHA256) -> None:
        if mode not in ("video", "image"):
            raise LandmarkerError(f"landmarker mode must be 'video' or 'image', got {mode!r}")
        if int(max_faces) < 1:
            raise LandmarkerError(f"max_faces must be >= 1, got {max_faces}")
        if int(max_detect_side_px) < 64:
            raise LandmarkerError(f"max_detect_side_px must be >= 64, got {max_detect_side_px}")
        path = Path(model_path) if model_path is not None else default_landmarker_model()
        if model_path is not None and sha256 is not None:
            check_model_file(path, sha256)
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:
            raise LandmarkerError(f"mediapipe is not installed ({exc}); install it with `make setup`") from None
        self.mode = mode
        self.max_faces = int(max_faces)
        self.max_detect_side_px = int(max_detect_side_px)
        running = vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=path.read_bytes()),
            running_mode=running, num_faces=self.max_faces,
            min_face_detection_confidence=float(min_detection_confidence),
            min_face_presence_confidence=float(min_presence_confidence),
            min_tracking_confidence=float(min_tracking_confidence),
            output_face_blendshapes=bool(blendshapes))
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._last_ts_ms: int | None = None
        self._frame_count = 0
        self._warn = RateLimiter(5.0)

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
        scale = 1.0
        if max(h, w) > self.max_detect_side_px:
            scale = self.max_detect_side_px / float(max(h, w))
            dw, dh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
            frame = cv2.resize(frame, (dw, dh), interpolation=cv2.INTER_AREA)
            scale_x, scale_y = w / float(dw), h / float(dh)
        else:
            scale_x = scale_y = 1.0
        import mediapipe as mp
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        if self.mode == "video":
            result = self._landmarker.detect_for_video(image, self._timestamp_ms(stamp_s))
        else:
            result = self._landmarker.detect(image)
        dh_, dw_ = frame.shape[:2]
        faces = []
        for i, lms in enumerate(result.face_landmarks or []):
            pts = np.array([(lm.x, lm.y, lm.z) for lm in lms], np.float32)
            pts[:, 0] *= dw_ * scale_x
            pts[:, 1] *= dh_ * scale_y
            pts[:, 2] *= dw_ * scale_x
            bs, names = np.zeros(0, np.float32), ()
            if result.face_blendshapes and i < len(result.face_blendshapes):
                cats = result.face_blendshapes[i]
                bs = np.array([c.score for c in cats], np.float32)
                names = tuple(c.category_name for c in cats)
            faces.append(FaceLandmarks.from_points478(pts, bs, names))
        return faces

    def close(self) -> None:
        """Release the MediaPipe graph (safe to call twice)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "MediaPipeLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------------------------------
    def _timestamp_ms(self, stamp_s: float | None) -> int:
        """A strictly increasing ms timestamp for VIDEO mode from the frame stamp (or a 33 ms frame counter)."""
        self._frame_count += 1
        if stamp_s is None or not math.isfinite(float(stamp_s)):
            ts = self._frame_count * 33
        else:
            ts = int(round(float(stamp_s) * 1000.0))
        if self._last_ts_ms is not None and ts <= self._last_ts_ms:
            ts = self._last_ts_ms + 1
        self._last_ts_ms = ts
        return ts
