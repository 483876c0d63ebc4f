"""The geometric network's input: the weighted displacement of the 68 landmarks from the neutral reference to the
newest frame, drawn as a small image.

Both point sets are in normalised crop coordinates ([0, 1] across the aligned crop), so head position, size and
roll are already removed by the alignment. For every point k the displacement d_k = peak_k - neutral_k is
multiplied by its region weight w_k (landmark_scheme.point_weights) and by SCALE, and splatted as a Gaussian of
SIGMA_PX (cut off at TRUNCATE_SIGMAS) at the neutral position on a G x G grid, one channel for dx and one for dy. Where splats overlap the
values are averaged (divided by the summed Gaussian weight when that exceeds 1), so a pixel holds about the
weighted displacement of the points around it; values are clipped to [-CLIP, CLIP].

SCALE = 10 maps a displacement of a tenth of the crop (a broad smile's mouth corner) to about 1.

A horizontal flip of the face gives the image flipped left-right with the dx channel negated (MIRROR_SIGN): the
grid and the region weights are symmetric.
"""
from __future__ import annotations

import numpy as np

from fer_ros.landmark_scheme import SCHEME_SPEC, point_weights

SIZE = 32
CHANNELS = ("dx", "dy")
MIRROR_SIGN = (-1.0, 1.0)  # per channel, for a horizontally flipped face
SIGMA_PX = 1.5
SCALE = 10.0
CLIP = 1.0
TRUNCATE_SIGMAS = 3.0  # splats are zero beyond this many sigmas

GEO_SPEC: dict = {
    "name": "weighted_landmark_displacement",
    "version": 3,
    "size": SIZE,
    "channels": list(CHANNELS),
    "sigma_px": SIGMA_PX,
    "scale": SCALE,
    "clip": CLIP,
    "truncate_sigmas": TRUNCATE_SIGMAS,
    "normalisation": "divide by max(1, summed splat weight)",
    "coordinates": "normalised crop [0, 1]",
    "landmark_scheme": {"name": SCHEME_SPEC["name"], "version": SCHEME_SPEC["version"]},
}

_WEIGHTS = point_weights()
_GRID = np.arange(SIZE, dtype=np.float32) + 0.5  # pixel centres, px


def render(neutral_points: np.ndarray, peak_points: np.ndarray) -> np.ndarray:
    """(2, SIZE, SIZE) float32 difference image from two (68, 2) point sets in normalised crop coordinates."""
    n = np.asarray(neutral_points, np.float32).reshape(-1, 2)
    p = np.asarray(peak_points, np.float32).reshape(-1, 2)
    if n.shape != (68, 2) or p.shape != (68, 2):
        raise ValueError(f"difference image needs two (68, 2) point sets, got {n.shape} and {p.shape}")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(p))):
        raise ValueError("difference image got non-finite landmark coordinates")
    d = (p - n) * (_WEIGHTS[:, None] * SCALE)  # (68, 2)
    centres = n * SIZE  # px
    gx = _splat_1d(centres[:, 0:1])  # (68, G)
    gy = _splat_1d(centres[:, 1:2])  # (68, G)
    norm = np.maximum(gy.T @ gx, 1.0)  # (G, G) summed weight
    out = np.empty((2, SIZE, SIZE), np.float32)
    out[0] = (gy * d[:, 0:1]).T @ gx / norm
    out[1] = (gy * d[:, 1:2]).T @ gx / norm
    np.clip(out, -CLIP, CLIP, out=out)
    return out


def _splat_1d(centres: np.ndarray) -> np.ndarray:
    z = (_GRID[None, :] - centres) / SIGMA_PX
    g = np.exp(-0.5 * z * z)
    g[np.abs(z) > TRUNCATE_SIGMAS] = 0.0
    return g


def empty() -> np.ndarray:
    """The (2, SIZE, SIZE) zero image used when a face has no neutral reference yet."""
    return np.zeros((len(CHANNELS), SIZE, SIZE), np.float32)
