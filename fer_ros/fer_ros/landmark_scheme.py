"""The landmark scheme: which 68 of MediaPipe's 478 face-mesh points stand for the iBUG-68 points, the facial
regions they form, and how much each region counts in the geometric (difference image) input.

There is no official 478-to-68 table. This one picks, for every iBUG-68 point, the mesh vertex at the same
anatomical place (eye corners and lids, brow contour, nose bridge and base, outer and inner lip contour, face
silhouette), mirrored left/right so the table is symmetric. Training and inference use the same landmarker and
this same table, which is what matters; the table's name and version go into every model manifest.

"Right"/"left" are the subject's: the subject's right eye appears on the left of a non-mirrored image.
"""
from __future__ import annotations

import numpy as np

# iBUG-68 order: jaw 0-16 (subject's right ear -> chin -> left ear), right brow 17-21 (outer -> inner), left brow
# 22-26 (inner -> outer), nose bridge 27-30 (top -> tip), nose base 31-35 (right -> left), right eye 36-41 and left
# eye 42-47 (outer/inner corner, two upper lid, other corner, two lower lid points), outer lip 48-59 (right corner,
# upper lip, left corner, lower lip), inner lip 60-67.
MP478_TO_IBUG68: tuple[int, ...] = (
    # jaw 0-16
    127, 234, 93, 132, 58, 172, 136, 149, 152, 378, 365, 397, 288, 361, 323, 454, 356,
    # right brow 17-21, left brow 22-26
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30, nose base 31-35
    168, 197, 5, 1, 98, 97, 2, 326, 327,
    # right eye 36-41: outer corner, upper lid x2, inner corner, lower lid x2
    33, 160, 158, 133, 153, 144,
    # left eye 42-47: inner corner, upper lid x2, outer corner, lower lid x2
    362, 385, 387, 263, 373, 380,
    # outer lip 48-59: right corner, upper lip to left corner, lower lip back
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    # inner lip 60-67
    78, 81, 13, 311, 308, 402, 14, 178,
)

# Region -> (first, last + 1) iBUG index range.
REGIONS: dict[str, tuple[int, int]] = {
    "jaw": (0, 17),
    "right_brow": (17, 22),
    "left_brow": (22, 27),
    "nose": (27, 36),
    "right_eye": (36, 42),
    "left_eye": (42, 48),
    "mouth": (48, 68),
}

# Relative importance of each region's motion for expressions: brows, eyes, nose (wrinkling, flaring) and lips are
# weighted up; the jaw contour mostly moves with the head and is the least precise part of the mesh.
REGION_WEIGHTS: dict[str, float] = {
    "jaw": 0.5,
    "right_brow": 1.5,
    "left_brow": 1.5,
    "nose": 1.25,
    "right_eye": 1.25,
    "left_eye": 1.25,
    "mouth": 1.5,
}

# Left/right mirror of the iBUG-68 points: IBUG68_MIRROR[i] is the point that takes point i's place when the
# image is flipped horizontally (jaw, brows, nose base, eyes and lips swap sides; the midline maps to itself).
IBUG68_MIRROR: tuple[int, ...] = tuple(
    list(range(16, -1, -1))                      # jaw
    + list(range(26, 16, -1))                    # brows
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]    # nose bridge, nose base
    + [45, 44, 43, 42, 47, 46]                   # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]                   # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65]           # inner lip
)

# Points used for alignment: the eye centres (mean of each eye's six points) and the mouth corners.
RIGHT_EYE = tuple(range(*REGIONS["right_eye"]))
LEFT_EYE = tuple(range(*REGIONS["left_eye"]))
MOUTH_CORNERS = (48, 54)

SCHEME_SPEC: dict = {
    "name": "mp478_ibug68",
    "version": 1,
    "indices": list(MP478_TO_IBUG68),
    "regions": {k: list(v) for k, v in REGIONS.items()},
    "region_weights": dict(REGION_WEIGHTS),
}


def point_weights() -> np.ndarray:
    """(68,) float32 weight of every iBUG point (its region's weight), scaled to a mean of 1."""
    w = np.zeros(68, np.float32)
    for region, (a, b) in REGIONS.items():
        w[a:b] = REGION_WEIGHTS[region]
    return w / w.mean()


def to_ibug68(points478: np.ndarray) -> np.ndarray:
    """The 68 iBUG points (68, D) picked from MediaPipe's (478, D) mesh points through MP478_TO_IBUG68."""
    points478 = np.asarray(points478)
    if points478.ndim != 2 or points478.shape[0] < 468:
        raise ValueError(f"expected (478, D) mesh points, got shape {points478.shape}")
    return points478[list(MP478_TO_IBUG68)]


def eye_centres(points68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right eye centre, left eye centre) of (68, 2) points, each (2,)."""
    p = np.asarray(points68, np.float64)
    return p[list(RIGHT_EYE), :2].mean(axis=0), p[list(LEFT_EYE), :2].mean(axis=0)

