"""Camera frames in any common numpy form -> (H, W, 3) uint8 RGB, or a clear BadFrame."""
from __future__ import annotations

import numpy as np


class BadFrame(ValueError):
    """A frame that cannot be used (empty, wrong shape, unsupported type); the message says what was wrong."""


def as_rgb8(frame) -> np.ndarray:
    """(H, W, 3) uint8 RGB, C-contiguous, from:

    - gray (H, W) or (H, W, 1), RGB (H, W, 3), RGBA (H, W, 4) (alpha dropped);
    - uint8 as is; uint16 scaled by 1/257 (full 16-bit range -> 0..255); other integer types clipped to 0..255;
      bool as 0/255; float in [0, 1] (clipped; NaN -> 0).

    Raises BadFrame for None, non-arrays, empty frames and unsupported shapes or types."""
    if frame is None:
        raise BadFrame("frame is None")
    try:
        a = np.asarray(frame)
    except Exception as exc:  # objects numpy cannot turn into an array
        raise BadFrame(f"frame is not an array: {type(frame).__name__} ({exc})") from None
    if a.dtype == object or a.dtype.kind not in "uifb":
        raise BadFrame(f"unsupported frame dtype {a.dtype}; use uint8, uint16, another integer type or float")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise BadFrame(f"frame shape {a.shape} is not (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise BadFrame(f"frame is empty (shape {a.shape})")
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    a = _to_uint8(a)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if not a.dtype.isnative:  # e.g. big-endian 16-bit: the same values in this machine's byte order
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255)
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if a.dtype.kind in "iu":
        return np.clip(a, 0, 255).astype(np.uint8)
    f = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
