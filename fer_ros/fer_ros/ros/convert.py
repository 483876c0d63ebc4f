"""pipeline.FaceResult -> fer_msgs messages (and the small ROS conversions the node needs)."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from fer_msgs.msg import FaceEmotion, FaceEmotionArray
from geometry_msgs.msg import Point
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header


def stamp_to_s(stamp: Time) -> float:
    """builtin_interfaces/Time -> seconds (float)."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def box_to_roi(box: Sequence[float], width_px: int, height_px: int) -> RegionOfInterest:
    """(x0, y0, x1, y1) box in image px -> RegionOfInterest clipped to the image (a box fully outside is empty)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0 = int(np.clip(np.floor(x0), 0, width_px))
    y0 = int(np.clip(np.floor(y0), 0, height_px))
    x1 = int(np.clip(np.ceil(x1), 0, width_px))
    y1 = int(np.clip(np.ceil(y1), 0, height_px))
    return RegionOfInterest(x_offset=x0, y_offset=y0, width=max(0, x1 - x0), height=max(0, y1 - y0),
                            do_rectify=False)


def face_emotion(result: Any, width_px: int, height_px: int) -> FaceEmotion:
    """One pipeline.FaceResult -> fer_msgs/FaceEmotion.

    Uses the FaceResult fields id, box (x0, y0, x1, y1 px), points68 ((68, 2) px), window_frames, window_ready,
    has_neutral, probs ((K,) or None), label, confidence, class_names, track_age_s. A face whose window is not
    ready gets an empty label and scores and confidence 0, as documented in FaceEmotion.msg."""
    msg = FaceEmotion()
    msg.face_id = int(result.id)
    msg.class_names = [str(n) for n in result.class_names]
    ready = bool(result.window_ready) and result.probs is not None
    msg.window_ready = ready
    if ready:
        probs = np.asarray(result.probs, dtype=np.float32).reshape(-1)
        if probs.size != len(msg.class_names):
            raise ValueError(f"face {msg.face_id}: {probs.size} scores for {len(msg.class_names)} class names")
        msg.scores = probs.tolist()
        msg.label = str(result.label)
        msg.confidence = float(result.confidence)
    msg.box = box_to_roi(result.box, width_px, height_px)
    points = np.asarray(result.points68, dtype=np.float64).reshape(-1, 2)
    msg.landmarks = [Point(x=float(x), y=float(y), z=0.0) for x, y in points]
    msg.has_neutral_reference = bool(result.has_neutral)
    msg.window_frames = int(np.clip(int(result.window_frames), 0, 255))
    msg.track_age_s = float(result.track_age_s)
    return msg


def face_emotion_array(header: Header, results: Iterable[Any], width_px: int, height_px: int) -> FaceEmotionArray:
    """All results of one frame -> FaceEmotionArray with the image header copied and faces in ascending id."""
    out = FaceEmotionArray()
    out.header = header
    out.faces = [face_emotion(r, width_px, height_px) for r in sorted(results, key=lambda r: int(r.id))]
    return out
