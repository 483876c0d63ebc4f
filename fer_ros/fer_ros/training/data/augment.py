"""Training augmentation of a whole sample (neutral + clip frames together, so motion stays consistent):
horizontal flip (landmarks mirrored through the iBUG-68 left/right table), small rotation and scale about the
crop centre, shift, brightness and contrast, and optionally random erasing (one rectangle of every frame, the neutral
reference included, filled with the sample's mean gray: an occluder that stays put, so the gray change from the
reference is zero under it). Works on aligned gray crops before LBP; landmarks follow every warp (erasing leaves
them alone: it hides appearance, not geometry)."""
from __future__ import annotations

from dataclasses import dataclass, replace

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
    erase: float = 0.0          # probability of erasing a rectangle (0: off, and no random numbers drawn for it)
    erase_area: tuple[float, float] = (0.02, 0.2)   # its area as a fraction of the crop, drawn uniformly
    erase_aspect: tuple[float, float] = (0.5, 2.0)  # its height / width, drawn log-uniformly

    def scaled(self, factor: float) -> "AugmentConfig":
        """This configuration with the ranges of rotation, scale, shift, brightness and contrast multiplied by
        factor (0: flips only); the flip and erasing probabilities stay."""
        return replace(self, **{k: getattr(self, k) * factor for k in SCALED_RANGES})


SCALED_RANGES = ("rotate_deg", "scale", "shift", "brightness", "contrast")


def augment(gray: np.ndarray, points: np.ndarray, rng: np.random.Generator,
            cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """gray (N, S, S) uint8 frames of one sample, points (N, 68, 2) normalised -> augmented copies."""
    gray, points, _ = augment_flip(gray, points, rng, cfg)
    return gray, points


def augment_flip(gray: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                 cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray, bool]:
    """As `augment`, and whether the sample was mirrored (what follows the face's sides, such as left/right
    blendshapes, must be mirrored with it)."""
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
    if cfg.erase > 0 and rng.random() < cfg.erase:
        y0, x0, h, w = _erase_box(s, rng, cfg)
        gray[:, y0:y0 + h, x0:x0 + w] = np.uint8(round(float(gray.mean())))
    return gray, points, flipped


def _erase_box(s: int, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random rectangle inside an s x s crop."""
    area = rng.uniform(*cfg.erase_area) * s * s
    aspect = float(np.exp(rng.uniform(np.log(cfg.erase_aspect[0]), np.log(cfg.erase_aspect[1]))))
    h = int(np.clip(round(np.sqrt(area * aspect)), 1, s))
    w = int(np.clip(round(np.sqrt(area / aspect)), 1, s))
    y0, x0 = int(rng.integers(0, s - h + 1)), int(rng.integers(0, s - w + 1))
    return y0, x0, h, w
