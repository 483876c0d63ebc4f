"""Synthetic faces for the perception tests: a plausible iBUG-68 point layout that can be moved, scaled, rotated
and given an expression, without running the landmarker."""
from __future__ import annotations

import numpy as np


def template68() -> np.ndarray:
    """(68, 2) float64 frontal face in units of the eye distance, eye midpoint at the origin, y down."""
    p = np.zeros((68, 2))
    t = np.linspace(np.pi, 0, 17)  # jaw: from the subject's right ear (image left) round the chin
    p[0:17] = np.stack([1.05 * np.cos(t), 0.1 + 1.55 * np.sin(t)], 1)
    p[17:22] = np.stack([np.linspace(-0.85, -0.15, 5), -0.35 - 0.06 * np.sin(np.linspace(0, np.pi, 5))], 1)
    p[22:27] = np.stack([np.linspace(0.15, 0.85, 5), -0.35 - 0.06 * np.sin(np.linspace(0, np.pi, 5))], 1)
    p[27:31] = np.stack([np.zeros(4), np.linspace(0.05, 0.66, 4)], 1)
    p[31:36] = np.stack([np.linspace(-0.2, 0.2, 5), 0.75 + 0.03 * np.abs(np.linspace(-1, 1, 5))], 1)

    def eye(cx: float, flip: bool) -> np.ndarray:
        a = np.array([np.pi, 2 * np.pi / 3, np.pi / 3, 0, -np.pi / 3, -2 * np.pi / 3])
        e = np.stack([cx + 0.2 * np.cos(a), -0.07 * np.sin(a)], 1)
        return e[[3, 2, 1, 0, 5, 4]] if flip else e

    p[36:42] = eye(-0.5, False)
    p[42:48] = eye(0.5, True)
    a = np.linspace(np.pi, -np.pi, 13)[:12]
    p[48:60] = np.stack([0.42 * np.cos(a), 1.15 - 0.16 * np.sin(a)], 1)
    a = np.array([np.pi, 2 * np.pi / 3, np.pi / 2, np.pi / 3, 0, -np.pi / 3, -np.pi / 2, -2 * np.pi / 3])
    p[60:68] = np.stack([0.35 * np.cos(a), 1.15 - 0.05 * np.sin(a)], 1)
    return p


def smile(points: np.ndarray, amount: float) -> np.ndarray:
    """The layout with a smile of `amount` eye distances: mouth corners pulled out and up by `amount`, the rest
    of the lips widened and raised with them, the lower eyelids raised a little (in template units)."""
    p = np.array(points, np.float64)
    mouth = p[48:68]
    half_width = max(float(np.abs(mouth[:, 0]).max()), 1e-6)
    mouth[:, 0] += amount * mouth[:, 0] / half_width
    mouth[:, 1] -= 0.5 * amount * (0.4 + 0.6 * np.abs(mouth[:, 0]) / half_width)
    p[48:68] = mouth
    p[[40, 41, 46, 47], 1] -= 0.15 * amount
    return p


def place(points: np.ndarray, centre_xy, eye_dist_px: float, angle_deg: float = 0.0) -> np.ndarray:
    """Template-unit points -> frame px: scaled to `eye_dist_px`, rotated by `angle_deg`, eye midpoint at
    `centre_xy`."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (np.asarray(points) @ rot.T) * eye_dist_px + np.asarray(centre_xy, np.float64)


def draw_face(shape_hw, points_px: np.ndarray, seed: int = 0) -> np.ndarray:
    """A textured (H, W) uint8 gray frame with the face's features drawn at the points (for crop tests)."""
    import cv2
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(60, 200, shape_hw, dtype=np.uint8), (0, 0), 3)
    pts = np.round(points_px).astype(np.int32)
    cv2.fillPoly(img, [pts[0:17]], 170)
    for a, b in ((36, 42), (42, 48), (48, 60)):
        cv2.fillPoly(img, [pts[a:b]], 30)
    cv2.polylines(img, [pts[17:22], pts[22:27], pts[27:31]], False, 40, 2)
    return img
