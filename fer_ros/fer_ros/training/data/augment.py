"""Training augmentation, on aligned gray crops before LBP; landmarks follow every warp.

- `augment`: the whole sample (neutral reference and clip frames together, so the change between them stays what
  it was): horizontal flip (landmarks mirrored through the iBUG-68 left/right table), small rotation and scale
  about the crop centre, shift, brightness and contrast.
- `moment_jitter`: one frame as it would look at another moment of the same face: what lies between a clip and a
  neutral reference taken earlier once the node's alignment has removed most of the pose (a little roll, scale,
  shift and head turn left over, other light, another focus, sensor noise).
- `talking_mouth`: the frames of a clip as a face at rest would look while it speaks: the jaw and lower lip
  lowered and the lips parted over a dark mouth (some teeth showing), the lips a little rounded, by a different
  amount in every frame; brows, eyes and nose stay where they are.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fer_ros.landmark_scheme import IBUG68_MIRROR


@dataclass
class AugmentConfig:
    flip: float = 0.5           # probability
    rotate_deg: float = 8.0     # max |angle|
    scale: float = 0.08         # max |relative scale change|
    shift: float = 0.04         # max |shift| as a fraction of the crop side
    brightness: float = 0.15    # max |offset| as a fraction of 255
    contrast: float = 0.15      # max |relative contrast change|


def augment(gray: np.ndarray, points: np.ndarray, rng: np.random.Generator,
            cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray, bool]:
    """gray (N, S, S) uint8 frames of one sample, points (N, 68, 2) normalised -> augmented copies, and whether
    the sample was mirrored."""
    n, s, _ = gray.shape
    gray = gray.copy()
    points = points.copy()
    flipped = bool(rng.random() < cfg.flip)
    if flipped:
        gray = gray[:, :, ::-1].copy()
        points = points[:, list(IBUG68_MIRROR)]
        points[..., 0] = 1.0 - points[..., 0]
    angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
    scale = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
    tx, ty = rng.uniform(-cfg.shift, cfg.shift, size=2) * s
    m = cv2.getRotationMatrix2D((s / 2.0, s / 2.0), angle, scale)
    m[:, 2] += (tx, ty)
    alpha = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    beta = rng.uniform(-cfg.brightness, cfg.brightness) * 255.0
    for i in range(n):
        warped = cv2.warpAffine(gray[i], m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        gray[i] = np.clip(warped.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)
        px = points[i] * s
        points[i] = (px @ m[:, :2].T + m[:, 2]) / s
    return gray, points, flipped


@dataclass
class MomentConfig:
    """How much another moment of a face may differ from this one (maxima of uniform draws, at strength 1)."""
    rotate_deg: float = 1.0     # in-plane roll left after alignment
    scale: float = 0.015        # relative
    shift: float = 0.01         # share of the crop side
    yaw: float = 0.03           # horizontal stretch about the centre (a small head turn)
    brightness: float = 0.12    # offset, share of 255
    contrast: float = 0.2       # relative
    gamma: float = 0.3          # gamma in [1 / (1 + gamma), 1 + gamma], log-uniform
    blur_prob: float = 0.3      # Gaussian blur of sigma up to blur_sigma px
    blur_sigma: float = 1.0
    noise: float = 3.0          # Gaussian noise of sigma up to this (gray levels)


def moment_jitter(gray: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                  cfg: MomentConfig = MomentConfig(), strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One (S, S) uint8 frame and its (68, 2) normalised points as at another moment (MomentConfig's ranges times
    strength; 0 leaves the frame as it is); the points follow the warp."""
    s = gray.shape[0]
    f = float(strength)
    m = cv2.getRotationMatrix2D((s / 2.0, s / 2.0), rng.uniform(-1, 1) * cfg.rotate_deg * f,
                                1.0 + rng.uniform(-1, 1) * cfg.scale * f)
    yaw = rng.uniform(-1, 1) * cfg.yaw * f  # x' = cx + (x - cx) * (1 + yaw)
    m[0, :] *= 1.0 + yaw
    m[0, 2] -= yaw * s / 2.0
    m[:, 2] += rng.uniform(-1, 1, size=2) * cfg.shift * f * s
    out = cv2.warpAffine(gray, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    x = np.power(out.astype(np.float32) / 255.0, float(np.exp(rng.uniform(-1, 1) * np.log1p(cfg.gamma * f))))
    x = (x - 0.5) * (1.0 + rng.uniform(-1, 1) * cfg.contrast * f) + 0.5 + rng.uniform(-1, 1) * cfg.brightness * f
    x *= 255.0
    if rng.random() < cfg.blur_prob * min(f, 1.0):
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=float(rng.uniform(0.3, max(0.3, cfg.blur_sigma * f))))
    x = x + rng.normal(0.0, rng.uniform(0.0, cfg.noise * f), size=x.shape).astype(np.float32)
    pts = (points * s) @ m[:, :2].T + m[:, 2]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8), (pts / s).astype(np.float32)


# iBUG-68 points of the mouth and lower face (landmark_scheme.REGIONS): outer lips 48-59, inner lips 60-67; the
# upper inner lip 61-63 and lower inner lip 65-67.
_UPPER_INNER = (61, 62, 63)
_LOWER_INNER = (65, 66, 67)
_INNER_CORNERS = (60, 64)
# A closed mouth's lips meet on the lip line, so which side a lip point belongs to is told by its index.
_UPPER_LIP = (49, 50, 51, 52, 53, 61, 62, 63)
_LIP_CORNERS = (48, 54, 60, 64)
_LOWER_LIP = (55, 56, 57, 58, 59, 65, 66, 67)


@dataclass
class TalkConfig:
    """How far a speaking mouth moves (normalised crop units; the crop spans the brows to the chin), per frame."""
    open_max: float = 0.15      # jaw drop at the widest frame, drawn in [open_min, open_max] per clip
    open_min: float = 0.03
    frame_min: float = 0.15     # each frame opens by a share of the widest drawn in [frame_min, 1]
    round_max: float = 0.12     # lips drawn together by up to this share of their half width (o, u)
    spread_max: float = 0.04    # ... or apart by up to this share
    cavity_dark: tuple[float, float] = (0.1, 0.4)  # the open mouth's gray level, a share of the lips' mean
    teeth_prob: float = 0.4     # upper teeth showing under the upper lip


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def talking_mouth(gray: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                  cfg: TalkConfig = TalkConfig()) -> tuple[np.ndarray, np.ndarray]:
    """gray (N, S, S) uint8 clip frames and points (N, 68, 2) normalised -> copies as the face would look while it
    speaks (module docstring). The opening and rounding are drawn once for the clip and scaled by a draw in [0, 1]
    for every frame, so the mouth moves within the clip; the points follow the warp."""
    n, s, _ = gray.shape
    gray, points = gray.copy(), points.astype(np.float32).copy()
    widest = rng.uniform(cfg.open_min, cfg.open_max)
    rounding = rng.uniform(-cfg.spread_max, cfg.round_max)
    dark = rng.uniform(*cfg.cavity_dark)
    teeth = rng.random() < cfg.teeth_prob
    grid_y, grid_x = np.mgrid[0:s, 0:s].astype(np.float32)
    gx, gy = (grid_x + 0.5) / s, (grid_y + 0.5) / s
    for i in range(n):
        amount = rng.uniform(cfg.frame_min, 1.0)
        p = points[i]
        cx = float(p[[48, 54], 0].mean())
        half = max(float(p[54, 0] - p[48, 0]) / 2.0, 1.0 / s)
        lip_line = float((p[list(_UPPER_INNER), 1].mean() + p[list(_LOWER_INNER), 1].mean()) / 2.0)
        drop, squeeze = widest * amount, rounding * amount
        band = 1.5 / s  # the lip line's soft edge

        def dy(x, y, below=None):  # downward shift of what lies below the lip line, less towards the jaw's sides
            below = _smoothstep((y - lip_line) / (2 * band)) if below is None else below
            return drop * np.exp(-((x - cx) / (1.8 * half)) ** 4) * below

        def dx(x, y):  # lips drawn towards (or away from) the mouth's centre line; the nose and above stay
            reach = np.where(y < lip_line, 0.6 * half, 1.5 * half)
            return -squeeze * (x - cx) * _smoothstep(1.0 - np.abs(y - lip_line) / reach) * \
                np.exp(-((x - cx) / (1.6 * half)) ** 4)

        src_x = (gx - dx(gx, gy)) * s - 0.5
        src_y = (gy - dy(gx, gy)) * s - 0.5
        frame = cv2.remap(gray[i], src_x.astype(np.float32), src_y.astype(np.float32), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        moved = p.copy()
        moved[:, 0] += dx(p[:, 0], p[:, 1])
        # a closed mouth's lips meet on the lip line: which side a lip point is on is known from its index
        below = _smoothstep((p[:, 1] - lip_line) / (2 * band))
        below[list(_UPPER_LIP)], below[list(_LIP_CORNERS)], below[list(_LOWER_LIP)] = 0.0, 0.5, 1.0
        moved[:, 1] += dy(p[:, 0], p[:, 1], below)
        # the opening between the lips: a dark mouth, the upper teeth under the upper lip in some clips
        top = float(moved[list(_UPPER_INNER), 1].mean())
        bottom = float(moved[list(_LOWER_INNER), 1].mean())
        mouth_half = max(float(moved[64, 0] - moved[60, 0]) / 2.0, 1.0 / s) * 0.9
        centre_x = float(moved[list(_INNER_CORNERS), 0].mean())
        if bottom - top > 1.0 / s:
            ry = (bottom - top) / 2.0
            inside = ((gx - centre_x) / mouth_half) ** 2 + ((gy - (top + ry)) / ry) ** 2
            mask = cv2.GaussianBlur(np.clip(1.2 - inside, 0.0, 1.0).astype(np.float32), (0, 0), 0.6)
            lips = frame[mask > 0.05] if (mask > 0.05).any() else frame
            cavity = np.full_like(frame, dark * float(lips.mean()))
            if teeth:
                teeth_rows = _smoothstep((top + 0.35 * 2 * ry - gy) * s / 1.5)
                cavity = cavity + teeth_rows * (rng.uniform(0.55, 0.85) * 255.0 - cavity)
            frame = frame + mask * (cavity - frame)
        gray[i] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        points[i] = moved
    return gray, points
