"""Training augmentation, on aligned gray crops before LBP; landmarks follow every warp.

- `augment`: the whole sample (neutral reference and clip frames together, so the change between them stays what
  it was): horizontal flip (landmarks mirrored through the iBUG-68 left/right table), small rotation and scale
  about the crop centre, shift, brightness and contrast, and (`small_face`) fewer pixels, as a face further away.
- `moment_jitter`: one frame as it would look at another moment of the same face: what lies between a clip and a
  neutral reference taken earlier once the node's alignment has removed most of the pose (a little roll, scale,
  shift and head turn left over, other light, another focus, sensor noise).
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
    small_face: float = 0.0     # probability of showing the face with fewer pixels, as from further away
    small_face_sides: tuple[float, float] = (0.42, 0.92)  # the side it is scaled down to, as a share of the crop's


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
    if cfg.small_face > 0 and rng.random() < cfg.small_face:  # no draw at 0: the same draws as without the option
        side = int(rng.integers(round(cfg.small_face_sides[0] * s), round(cfg.small_face_sides[1] * s) + 1))
        for i in range(n):  # area-averaged down, linear back up: the node's crop of a face that few pixels wide
            small = cv2.resize(gray[i], (side, side), interpolation=cv2.INTER_AREA)
            gray[i] = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)
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
