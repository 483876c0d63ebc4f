"""Local binary patterns, defined once for training and inference.

Classic 3x3 LBP with 8 neighbours at distance 1 (no interpolation): bit k of a pixel's code is 1 when its k-th
neighbour is >= the pixel itself. Neighbours are taken clockwise from the top-left one, bit 0 first:

    bit0 bit1 bit2
    bit7  c   bit3
    bit6 bit5 bit4

Pixels outside the image repeat the nearest border pixel (edge padding), so the output has the input's size.
"""
from __future__ import annotations

import numpy as np

# (dy, dx) of the neighbour for bit 0..7.
NEIGHBOURS: tuple[tuple[int, int], ...] = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))

LBP_SPEC: dict = {
    "name": "lbp_classic_3x3",
    "version": 1,
    "neighbours": [list(n) for n in NEIGHBOURS],
    "compare": ">=",
    "border": "edge",
    "dtype": "uint8",
}


def mirror_bit_order() -> tuple[int, ...]:
    """Bit permutation of a horizontal flip: lbp(flipped image)[:, x] has bit k = bit order[k] of
    lbp(image)[:, W - 1 - x] (the neighbour (dy, dx) becomes (dy, -dx))."""
    return tuple(NEIGHBOURS.index((dy, -dx)) for dy, dx in NEIGHBOURS)


def lbp(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 LBP codes of a (H, W) uint8 grayscale image (see the module docstring for the definition)."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"lbp expects a 2-D uint8 image, got shape {gray.shape} dtype {gray.dtype}")
    h, w = gray.shape
    if h == 0 or w == 0:
        raise ValueError(f"lbp got an empty image of shape {gray.shape}")
    padded = np.pad(gray, 1, mode="edge")
    out = np.zeros((h, w), np.uint8)
    for bit, (dy, dx) in enumerate(NEIGHBOURS):
        neighbour = padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        out |= (neighbour >= gray).view(np.uint8) << np.uint8(bit)
    return out
