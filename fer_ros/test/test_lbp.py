"""LBP: the vectorised definition against a slow per-pixel reference, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from fer_ros.lbp import LBP_SPEC, NEIGHBOURS, lbp


def lbp_reference(gray: np.ndarray) -> np.ndarray:
    """Per-pixel loops straight from the definition: clockwise from top-left, bit 0 first, >=, edge padding."""
    h, w = gray.shape
    out = np.zeros((h, w), np.uint8)
    order = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    for y in range(h):
        for x in range(w):
            c = int(gray[y, x])
            code = 0
            for bit, (dy, dx) in enumerate(order):
                yy = min(max(y + dy, 0), h - 1)
                xx = min(max(x + dx, 0), w - 1)
                if int(gray[yy, xx]) >= c:
                    code |= 1 << bit
            out[y, x] = code
    return out


@pytest.mark.parametrize("shape,seed", [((17, 23), 0), ((48, 48), 1), ((5, 1), 2), ((1, 1), 3), ((31, 40), 4)])
def test_lbp_matches_reference(shape, seed):
    rng = np.random.default_rng(seed)
    gray = rng.integers(0, 256, shape, dtype=np.uint8)
    # Add ties (equal neighbours) as well, where >= and > differ.
    gray[::3] = gray[::3] // 16 * 16
    assert np.array_equal(lbp(gray), lbp_reference(gray))


def test_lbp_known_values():
    flat = np.full((4, 4), 7, np.uint8)
    assert np.all(lbp(flat) == 255)  # every neighbour equals the centre
    peak = np.zeros((3, 3), np.uint8)
    peak[1, 1] = 9
    assert lbp(peak)[1, 1] == 0  # every neighbour below the centre
    step = np.zeros((3, 3), np.uint8)
    step[:, 2] = 200  # right column brighter: bits 2, 3, 4 set at the centre, zeros elsewhere still >= 0
    assert lbp(step)[1, 1] == 0b11111111  # zeros are >= the zero centre too
    step_c = step.copy()
    step_c[1, 1] = 100
    assert lbp(step_c)[1, 1] == (1 << 2) | (1 << 3) | (1 << 4)


def test_lbp_rejects_bad_input():
    with pytest.raises(ValueError):
        lbp(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        lbp(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        lbp(np.zeros((0, 4), np.uint8))


def test_lbp_spec_records_definition():
    assert LBP_SPEC["neighbours"] == [list(n) for n in NEIGHBOURS]
    assert LBP_SPEC["compare"] == ">=" and LBP_SPEC["border"] == "edge"


@pytest.mark.parametrize("seed", [0, 1])
def test_mirror_bit_order_gives_the_codes_of_the_flipped_image(seed):
    from fer_ros.lbp import mirror_bit_order
    gray = np.random.default_rng(seed).integers(0, 256, (17, 23)).astype(np.uint8)
    gray[:, 5] = gray[:, 6]  # ties, where >= matters
    codes = lbp(gray)[:, ::-1]
    order = mirror_bit_order()
    mirrored = sum(((codes >> src) & 1).astype(np.uint16) << k for k, src in enumerate(order)).astype(np.uint8)
    assert np.array_equal(mirrored, lbp(np.ascontiguousarray(gray[:, ::-1])))
    assert sorted(order) == list(range(8)) and all(order[order[k]] == k for k in range(8))  # an involution
