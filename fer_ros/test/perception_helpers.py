"""Synthetic faces for the perception tests: a plausible iBUG-68 point layout that can be moved, scaled, rotated
and given an expression, without running the landmarker."""
from __future__ import annotations

import functools

import numpy as np


def template68() -> np.ndarray:
    """(68, 2) float64 frontal face in units of the eye distance, eye midpoint at the origin, y down."""
    return _template68().copy()


@functools.lru_cache(maxsize=1)
def _template68() -> np.ndarray:
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


def synthetic_face(points_px: np.ndarray):
    """A FaceLandmarks with these (68, 2) px points (the 478 mesh holds them at the table's indices)."""
    from fer_ros.landmark_scheme import MP478_TO_IBUG68
    from fer_ros.landmarker import FaceLandmarks
    p68 = np.asarray(points_px, np.float32)
    mesh = np.zeros((478, 3), np.float32)
    mesh[:, :2] = p68.mean(axis=0)
    mesh[list(MP478_TO_IBUG68), :2] = p68
    box = (float(p68[:, 0].min()), float(p68[:, 1].min()), float(p68[:, 0].max()), float(p68[:, 1].max()))
    return FaceLandmarks(points478=mesh, points68=p68, blendshapes=np.zeros(52, np.float32),
                         blendshape_names=tuple(f"b{i}" for i in range(52)), box=box)


class ScriptedLandmarker:
    """A Landmarker whose faces come from `script(call_index, stamp_s) -> list of (68, 2) px point sets`."""

    def __init__(self, script) -> None:
        self.script = script
        self.calls = 0
        self.closed = False
        self.frames = []

    def detect(self, rgb8, stamp_s=None):
        self.frames.append((rgb8.shape, rgb8.dtype))
        faces = [synthetic_face(p) for p in self.script(self.calls, stamp_s)]
        self.calls += 1
        return faces

    def close(self) -> None:
        self.closed = True


class FakeEngine:
    """An engine that checks its inputs and returns fixed probabilities (favouring `favourite`)."""

    def __init__(self, class_names, favourite: int = 0, crop_size: int = 48, window_length: int = 3,
                 preprocess_spec=None) -> None:
        self.class_names = tuple(class_names)
        self.favourite = favourite
        self.crop_size = crop_size
        self.window_length = window_length
        self.preprocess_spec = preprocess_spec
        self.calls = []

    def predict(self, clip, geo, geo_valid):
        from fer_ros import difference_image
        from fer_ros.preprocess import clip_channels, spec_clip_input
        b = clip.shape[0]
        c = clip_channels(spec_clip_input(self.preprocess_spec or {}))
        assert clip.shape == (b, c, self.window_length, self.crop_size, self.crop_size) and clip.dtype == np.float32
        assert geo.shape == (b, len(difference_image.CHANNELS), difference_image.SIZE, difference_image.SIZE)
        assert geo_valid.shape == (b,) and geo.dtype == np.float32
        assert 0.0 <= clip[:, 0].min() and clip[:, 0].max() <= 1.0  # LBP codes / 255
        assert -1.0 <= clip.min() and clip.max() <= 1.0
        self.calls.append((clip.copy(), geo.copy(), geo_valid.copy()))
        probs = np.full((b, len(self.class_names)), 0.5 / (len(self.class_names) - 1), np.float32)
        probs[:, self.favourite] = 0.5
        return probs
