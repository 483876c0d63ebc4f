"""Draw recognition results on a frame: a box, the track id, the label and its probability for every face."""
from __future__ import annotations

from typing import Any, Iterable

import cv2
import numpy as np

_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230))


def face_caption(result: Any) -> str:
    """"#<id> <label> <pct>%" for a face with scores, else "#<id> warming up (<frames>)", <frames> the frames its
    window holds (while it fills, or without an engine); a "*" after the id marks a neutral reference."""
    mark = "*" if getattr(result, "has_neutral", False) else ""
    if result.window_ready and result.probs is not None:
        return f"#{result.id}{mark} {result.label} {100.0 * float(result.confidence):.0f}%"
    return f"#{result.id}{mark} warming up ({result.window_frames})"


def draw_results(rgb8: np.ndarray, results: Iterable[Any], landmarks: bool = True) -> np.ndarray:
    """A copy of the (H, W, 3) uint8 frame with every FaceResult drawn (box, caption, optional 68 landmarks); each
    caption lies wholly inside the frame, above its box, else below it, else inside the box's top."""
    out = np.ascontiguousarray(rgb8).copy()
    height, width = out.shape[:2]
    scale = max(0.4, min(out.shape[:2]) / 900.0)
    thick = max(1, int(round(2 * scale)))
    for r in results:
        colour = _PALETTE[int(r.id) % len(_PALETTE)]
        x0, y0, x1, y1 = (int(round(float(v))) for v in r.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        if landmarks and r.points68 is not None:
            for x, y in np.asarray(r.points68, np.float64).reshape(-1, 2):
                cv2.circle(out, (int(round(x)), int(round(y))), max(1, thick - 1), colour, -1)
        text = face_caption(r)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        # the caption stays inside the frame: above the box where it fits, else below it, else inside its top
        if y0 - 4 - th - base >= 0:
            ty = y0 - 4
        elif y1 + th + 4 + base <= height - 1:
            ty = y1 + th + 4
        else:
            ty = max(th + base, min(max(y0, 0) + thick + th + base, height - 1 - base))
        tx = max(0, min(x0, width - 1 - (tw + 4)))
        cv2.rectangle(out, (tx, ty - th - base), (tx + tw + 4, ty + base), colour, -1)
        cv2.putText(out, text, (tx + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out
