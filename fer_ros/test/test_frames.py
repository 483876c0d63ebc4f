"""frames.as_rgb8: every accepted frame form, and clear errors for the rest."""
from __future__ import annotations

import numpy as np
import pytest

from fer_ros.frames import BadFrame, as_rgb8


def test_rgb8_passthrough():
    f = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    out = as_rgb8(f)
    assert out.dtype == np.uint8 and out.shape == (5, 6, 3) and np.array_equal(out, f)
    assert as_rgb8(f[:, ::-1]).flags.c_contiguous


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 1)])
def test_gray(shape):
    f = np.arange(30, dtype=np.uint8).reshape(shape)
    out = as_rgb8(f)
    assert out.shape == (5, 6, 3)
    assert np.array_equal(out[:, :, 0], out[:, :, 2]) and out[1, 1, 0] == 7


def test_rgba_drops_alpha():
    f = np.zeros((2, 2, 4), np.uint8)
    f[..., 0], f[..., 3] = 10, 99
    out = as_rgb8(f)
    assert out.shape == (2, 2, 3) and np.all(out[..., 0] == 10)


def test_types():
    assert as_rgb8(np.full((2, 2), 65535, np.uint16))[0, 0, 0] == 255
    assert as_rgb8(np.full((2, 2), 257 * 100, np.uint16))[0, 0, 0] == 100
    assert as_rgb8(np.full((2, 2, 3), 0.5, np.float32))[0, 0, 0] == 128
    assert as_rgb8(np.full((2, 2), np.nan, np.float64))[0, 0, 0] == 0
    assert as_rgb8(np.full((2, 2), 2.0))[0, 0, 0] == 255
    assert as_rgb8(np.full((2, 2), 300, np.int32))[0, 0, 0] == 255
    assert as_rgb8(np.ones((2, 2), bool))[0, 0, 0] == 255


@pytest.mark.parametrize("order", ["<", ">"])
def test_16_bit_frames_of_either_byte_order_scale_alike(order):
    assert as_rgb8(np.full((2, 2), 257 * 128, order + "u2"))[0, 0, 0] == 128
    assert as_rgb8(np.full((2, 2), 0.5, order + "f4"))[0, 0, 0] == 128


@pytest.mark.parametrize("bad", [None, np.zeros((0, 5, 3), np.uint8), np.zeros((5,), np.uint8),
                                 np.zeros((4, 4, 2), np.uint8), np.zeros((2, 2, 3, 1), np.uint8),
                                 np.array([["a", "b"]]), "not a frame"])
def test_bad_frames(bad):
    with pytest.raises(BadFrame):
        as_rgb8(bad)
    assert issubclass(BadFrame, ValueError)
