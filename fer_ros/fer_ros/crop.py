"""Face alignment and crop, defined once for training and inference.

The crop is a similarity transform of the frame: rotated so the eye centres are level, scaled so the face's size
L fills a fixed share of the crop, translated so the midpoint of the eyes sits at (size/2, eye_y_frac*size).
L = max(distance between the eye centres, NOSE_FACTOR * distance from their midpoint to the nose tip): both
lengths are rigid (expressions barely move them), and the max keeps L steady when the head turns (yaw shrinks
the first, pitch the second). The crop side covers face_scale * L * (1 + 2 * margin) frame pixels.

Pixels outside the frame are filled by the configured border mode, so faces partly outside the frame still give
a full crop. With `reflect` the crop is that of the frame mirrored at its edges beforehand (BORDER_REFLECT_101),
except where the crop spans more px than the frame holds (a downscaled face larger than the frame): the part
inside the frame is mirrored then after its downscaling, at the edges of its downscaled px (a fraction of a crop px
off the frame's mirror image at each reflection). Strong downscaling is done with area averaging first, so a large
face and a small face give similar crops (this matters for LBP).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from fer_ros.landmark_scheme import eye_centres

NOSE_TIP = 30
NOSE_FACTOR = 1.5  # eye-midpoint-to-nose-tip distance is about 1/1.5 of the eye distance on a frontal face

_BORDERS = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}


@dataclass(frozen=True)
class CropConfig:
    """size: crop side (px). face_scale: crop side (before margin) in units of the face size L. margin: extra
    share of that side added on every edge (0 frames the face like the CK+48 crops: brows to chin). eye_y_frac: height of the eye line from the top (share of size).
    border: how pixels outside the frame are filled (replicate, constant (black), reflect)."""

    size: int = 112
    face_scale: float = 2.4
    margin: float = 0.0
    eye_y_frac: float = 0.3
    border: str = "replicate"

    def __post_init__(self) -> None:
        if int(self.size) < 8:
            raise ValueError(f"crop size must be >= 8 px, got {self.size}")
        if not (_finite(self.face_scale) and self.face_scale > 0):
            raise ValueError(f"crop face_scale must be a finite number > 0, got {self.face_scale}")
        if not (_finite(self.margin) and 0 <= self.margin < 2):
            raise ValueError(f"crop margin must be a finite number in [0, 2), got {self.margin}")
        if not (_finite(self.eye_y_frac) and 0 < self.eye_y_frac < 1):
            raise ValueError(f"crop eye_y_frac must be a finite number in (0, 1), got {self.eye_y_frac}")
        if self.border not in _BORDERS:
            raise ValueError(f"crop border must be one of {', '.join(_BORDERS)}, got {self.border!r}")

    def to_spec(self) -> dict:
        """Everything that defines the crop, for the model manifest."""
        return {"name": "eyes_level_similarity", "version": 1, "nose_factor": NOSE_FACTOR, **asdict(self)}

    @staticmethod
    def from_spec(spec: dict) -> "CropConfig":
        """The CropConfig a manifest's crop spec describes (unknown keys ignored)."""
        keys = {"size", "face_scale", "margin", "eye_y_frac", "border"}
        return CropConfig(**{k: v for k, v in spec.items() if k in keys})


def _finite(value) -> bool:
    """Whether `value` is a finite real number."""
    try:
        return math.isfinite(value)
    except TypeError:
        return False


@dataclass
class AlignedFace:
    """gray: (S, S) uint8 crop. matrix: (2, 3) float64 affine map frame px -> crop px. points68: (68, 2) float32
    iBUG points in crop px."""

    gray: np.ndarray
    matrix: np.ndarray
    points68: np.ndarray


def face_size(points68: np.ndarray) -> float:
    """The face size L (px) used for scaling (see the module docstring)."""
    p = np.asarray(points68, np.float64)
    right, left = eye_centres(p)
    mid = (right + left) / 2.0
    return float(max(np.linalg.norm(left - right), NOSE_FACTOR * np.linalg.norm(p[NOSE_TIP, :2] - mid)))


def crop_matrix(points68: np.ndarray, cfg: CropConfig) -> np.ndarray:
    """(2, 3) affine map from frame px to crop px for a face with these (68, 2) points (px)."""
    p = np.asarray(points68, np.float64)
    if p.ndim != 2 or p.shape[0] != 68 or p.shape[1] < 2:
        raise ValueError(f"align_crop needs (68, 2) points, got shape {p.shape}")
    if not np.all(np.isfinite(p[:, :2])):
        raise ValueError(f"align_crop needs finite points, got {int(np.sum(~np.isfinite(p[:, :2])))} values that "
                         f"are NaN or infinite")
    right, left = eye_centres(p)
    mid = (right + left) / 2.0
    dx, dy = left - right
    angle = np.arctan2(dy, dx)  # eye line angle in the frame (y down)
    side_px = cfg.face_scale * max(face_size(p), 1e-3) * (1.0 + 2.0 * cfg.margin)
    s = cfg.size / side_px
    c, si = np.cos(-angle) * s, np.sin(-angle) * s
    rot = np.array([[c, -si], [si, c]])
    target = np.array([cfg.size / 2.0, cfg.eye_y_frac * cfg.size])
    t = target - rot @ mid
    return np.hstack([rot, t[:, None]])


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 gray from (H, W) uint8 or (H, W, 3) uint8 RGB."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected a gray (H, W) or RGB (H, W, 3) uint8 image, got shape {image.shape}")


def align_crop(image: np.ndarray, points68: np.ndarray, cfg: CropConfig = CropConfig()) -> AlignedFace:
    """Aligned gray crop of the face with these (68, 2) frame-px points from an (H, W) gray or (H, W, 3) RGB
    uint8 frame (see the module docstring)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.size == 0:
        raise ValueError(f"align_crop expects a non-empty uint8 frame, got dtype {image.dtype} shape {image.shape}")
    m = crop_matrix(points68, cfg)
    scale = float(np.hypot(m[0, 0], m[1, 0]))  # crop px per frame px
    gray_src, m_src = _source_region(image, m, scale, cfg)
    gray = cv2.warpAffine(gray_src, m_src, (cfg.size, cfg.size), flags=cv2.INTER_LINEAR,
                          borderMode=_BORDERS[cfg.border], borderValue=0)
    pts = np.asarray(points68, np.float64)[:, :2] @ m[:, :2].T + m[:, 2]
    return AlignedFace(gray=gray, matrix=m, points68=pts.astype(np.float32))


def _with_mirror(lo: list[int], hi: list[int], size: tuple[int, int]) -> tuple[list[int], list[int]]:
    """Frame px lo to hi - 1 (x, y) widened by the mirror image (BORDER_REFLECT_101: px -d of a side of n px mirrors
    to d, n - 1 + d to n - 1 - d) of those outside the frame, which then lies inside it."""
    return ([min(lo[i], 2 * size[i] - 1 - hi[i]) for i in (0, 1)], [max(hi[i], 1 - lo[i]) for i in (0, 1)])


def _reflected(image: np.ndarray, lo: list[int], hi: list[int]) -> np.ndarray:
    """Frame px lo to hi - 1 (x, y) of the gray frame mirrored at its edges (BORDER_REFLECT_101), as in the frame
    padded so beforehand: the part inside the frame and the mirror image of what lies outside it, padded."""
    h, w = image.shape[:2]
    a, b = _with_mirror(lo, hi, (w, h))
    a = [min(max(a[0], 0), w - 1), min(max(a[1], 0), h - 1)]
    b = [min(max(b[0], a[0] + 1), w), min(max(b[1], a[1] + 1), h)]
    before, after = [max(a[i] - lo[i], 0) for i in (0, 1)], [max(hi[i] - b[i], 0) for i in (0, 1)]
    padded = cv2.copyMakeBorder(to_gray(image[a[1]:b[1], a[0]:b[0]]), before[1], after[1], before[0], after[0],
                                cv2.BORDER_REFLECT_101)
    x, y = lo[0] - a[0] + before[0], lo[1] - a[1] + before[1]
    return padded[y:y + hi[1] - lo[1], x:x + hi[0] - lo[0]]


def _source_region(image: np.ndarray, m: np.ndarray, scale: float, cfg: CropConfig) -> tuple[np.ndarray, np.ndarray]:
    """The gray frame part the crop reads from (area-downscaled when the crop shrinks it by more than 2x), and the
    affine map from that part's px to crop px. Only the region is converted to gray."""
    h, w = image.shape[:2]
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0], [cfg.size, 0], [0, cfg.size], [cfg.size, cfg.size]], np.float64)
    src = corners @ inv[:, :2].T + inv[:, 2]
    lo = [int(v) for v in np.floor(src.min(axis=0)) - 2]  # frame px (x, y) read: lo to hi - 1
    hi = [int(v) for v in np.ceil(src.max(axis=0)) + 3]
    reach = (hi[0] - lo[0]) * (hi[1] - lo[1])
    # reflect: the px the crop reads, mirrored and padded, where they are no more than a frame's (or an
    # undownscaled crop's) worth
    if cfg.border == "reflect" and reach <= max(h * w, (2 * cfg.size + 5) ** 2):
        region, (x0, y0), (x1, y1) = _reflected(image, lo, hi), lo, hi
    else:  # the part inside the frame (and its mirror image, for reflect): warpAffine fills the rest
        if cfg.border == "reflect":
            lo, hi = _with_mirror(lo, hi, (w, h))
        x0, y0 = min(max(lo[0], 0), w - 1), min(max(lo[1], 0), h - 1)
        x1, y1 = min(max(hi[0], x0 + 1), w), min(max(hi[1], y0 + 1), h)
        region = to_gray(image[y0:y1, x0:x1])
    shift = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    m3 = np.vstack([m, [0.0, 0.0, 1.0]]) @ shift  # region px -> crop px
    if scale < 0.5:
        f = 1.0 / scale / 1.5  # shrink by area averaging to about 1.5 region px per crop px
        rw, rh = max(1, int(round((x1 - x0) / f))), max(1, int(round((y1 - y0) / f)))
        fx, fy = (x1 - x0) / rw, (y1 - y0) / rh
        region = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
        # resized px (u, v) covers region px ((u + 0.5) * fx - 0.5, ...)
        back = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5], [0.0, 0.0, 1.0]])
        m3 = m3 @ back
    return np.ascontiguousarray(region), m3[:2]
