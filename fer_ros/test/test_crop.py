"""Alignment and crop: eyes level at the configured place, invariant to frame position, size and roll; faces
partly outside the frame; large faces downscaled by area."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from fer_ros.crop import AlignedFace, CropConfig, align_crop, crop_matrix, face_size
from fer_ros.landmark_scheme import eye_centres
from perception_helpers import draw_face, place, template68


@pytest.mark.parametrize("size", [112, 48, 64])
def test_eyes_level_at_configured_place(size):
    cfg = CropConfig(size=size, margin=0.1)
    pts = place(template68(), (300, 200), 60, angle_deg=25)
    frame = draw_face((480, 640), pts)
    out = align_crop(frame, pts, cfg)
    assert isinstance(out, AlignedFace)
    assert out.gray.shape == (size, size) and out.gray.dtype == np.uint8
    assert out.matrix.shape == (2, 3) and out.points68.shape == (68, 2)
    r, l = eye_centres(out.points68)
    assert r[1] == pytest.approx(l[1], abs=1e-3) and r[0] < l[0]
    mid = (r + l) / 2
    assert mid == pytest.approx([size / 2, cfg.eye_y_frac * size], abs=1e-3)
    # Face size L spans size / (face_scale * (1 + 2 margin)) crop px.
    assert face_size(out.points68) == pytest.approx(size / (cfg.face_scale * 1.2), rel=1e-4)


def test_invariant_to_position_scale_and_roll():
    cfg = CropConfig(size=64)
    a = align_crop(draw_face((480, 640), place(template68(), (320, 200), 50)), place(template68(), (320, 200), 50),
                   cfg)
    pts_b = place(template68(), (200, 260), 80, angle_deg=-30)
    frame_b = draw_face((480, 640), pts_b)
    b = align_crop(frame_b, pts_b, cfg)
    assert np.allclose(a.points68, b.points68, atol=1e-3)
    # The same drawn face, rotated and scaled in the frame, gives nearly the same crop.
    pts = place(template68(), (320, 200), 50)
    frame = draw_face((480, 640), pts, seed=3)
    m = cv2.getRotationMatrix2D((300, 220), 20, 1.3)
    frame_r = cv2.warpAffine(frame, m, (640, 480), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    pts_r = pts @ m[:, :2].T + m[:, 2]
    c1 = align_crop(frame, pts, cfg).gray.astype(np.float32)
    c2 = align_crop(frame_r, pts_r, cfg).gray.astype(np.float32)
    assert np.mean(np.abs(c1 - c2)) < 8.0


def test_rgb_and_gray_frames_agree():
    pts = place(template68(), (320, 240), 60)
    gray = draw_face((480, 640), pts)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    assert np.array_equal(align_crop(gray, pts).gray, align_crop(rgb, pts).gray)


@pytest.mark.parametrize("centre", [(10, 240), (630, 470), (-30, -20), (320, 2)])
def test_face_partly_or_fully_outside_frame(centre):
    """Crop px read from the frame are those of the crop of a frame that holds the whole face; the others are
    black with border constant and the frame's edge with replicate."""
    pts = place(template68(), centre, 60)
    frame = draw_face((480, 640), place(template68(), (320, 240), 60))
    h, w = frame.shape
    crops = {border: align_crop(frame, pts, CropConfig(size=48, border=border)).gray
             for border in ("replicate", "constant", "reflect")}
    assert all(c.shape == (48, 48) and c.dtype == np.uint8 for c in crops.values())
    # where each crop px reads the frame; px near the frame's edge mix both sides (bilinear sampling after the
    # area downscale), so only those a few frame px inside or outside are checked
    inv = cv2.invertAffineTransform(crop_matrix(pts, CropConfig(size=48)))
    v, u = np.mgrid[0:48, 0:48]
    x, y = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2], inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    edge = 4
    inside = (x >= edge) & (x <= w - 1 - edge) & (y >= edge) & (y <= h - 1 - edge)
    outside = (x < -edge) | (x > w - 1 + edge) | (y < -edge) | (y > h - 1 + edge)
    assert inside.any() and outside.any()
    pad = 200  # the frame, its edge px repeated, inside a larger one that holds the whole face
    whole = align_crop(np.pad(frame, pad, mode="edge"), pts + pad, CropConfig(size=48)).gray
    for border, crop in crops.items():  # within 1: OpenCV's rounding differs by border mode
        diff = np.abs(crop[inside].astype(int) - whole[inside])
        assert diff.max() <= 1, (border, diff.max())
    assert np.all(crops["constant"][outside] == 0)
    assert np.abs(crops["replicate"][outside].astype(int) - whole[outside]).max() <= 1
    assert np.all(crops["replicate"][outside] > 0) and np.all(crops["reflect"][outside] > 0)  # frame px, not fill


@pytest.mark.parametrize("zoom,centre,size", [(1, (-10, 120), 40), (1, (-30, 200), 40), (1, (290, 300), 50),
                                              (1, (100, 530), 40), (1, (-5, -5), 30), (1, (140, 250), 40),
                                              (3, (-40, 600), 150), (3, (860, 60), 160)])
def test_reflect_gives_the_crop_of_the_frame_mirrored_at_its_edges(astronaut_rgb, zoom, centre, size):
    """Crop px outside the frame are those of the frame padded beforehand with the same reflection (OpenCV's
    BORDER_REFLECT_101), however far the crop reaches past the edge (zoom 3: a face downscaled by area)."""
    gray = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC) if zoom > 1 else gray
    frame = np.ascontiguousarray(gray[:, 230 * zoom:])
    pts = place(template68(), centre, size, angle_deg=15)
    cfg = CropConfig(size=112, border="reflect")
    pad = 1024
    whole = align_crop(cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REFLECT_101), pts + pad, cfg).gray
    diff = np.abs(align_crop(frame, pts, cfg).gray.astype(int) - whole)
    assert diff.max() <= 1, (diff.mean(), diff.max())


def test_large_face_downscaled_by_area():
    cfg = CropConfig(size=48)
    pts = place(template68(), (1000, 700), 400)
    big = draw_face((1800, 2000), pts, seed=5)
    small = cv2.resize(big, (500, 450), interpolation=cv2.INTER_AREA)
    a = align_crop(big, pts, cfg).gray.astype(np.float32)
    b = align_crop(small, pts / 4.0, cfg).gray.astype(np.float32)
    assert np.mean(np.abs(a - b)) < 4.0


def test_config_validation_and_spec():
    cfg = CropConfig(size=48, margin=0.2)
    spec = cfg.to_spec()
    assert spec["size"] == 48 and spec["margin"] == 0.2 and spec["name"]
    assert CropConfig.from_spec(spec) == cfg
    for bad in (dict(size=4), dict(margin=-0.1), dict(eye_y_frac=1.5), dict(border="wrap"), dict(face_scale=0)):
        with pytest.raises(ValueError):
            CropConfig(**bad)
    with pytest.raises(ValueError):
        crop_matrix(np.full((68, 2), np.nan), cfg)
    with pytest.raises(ValueError):
        align_crop(np.zeros((10, 10), np.float32), place(template68(), (5, 5), 3), cfg)


@pytest.mark.parametrize("key,value", [("face_scale", float("inf")), ("face_scale", float("nan")),
                                       ("margin", float("inf")), ("eye_y_frac", float("nan")), ("face_scale", "2")])
def test_a_crop_value_that_is_not_a_finite_number_is_refused(key, value):
    """An infinite face_scale would make every crop empty and fail on the first face."""
    with pytest.raises(ValueError, match=rf"crop {key} must be a finite number"):
        CropConfig(**{key: value})


def test_points_of_the_wrong_shape_and_points_that_are_not_finite_are_told_apart():
    cfg = CropConfig(size=48)
    with pytest.raises(ValueError, match=r"needs \(68, 2\) points, got shape \(67, 2\)"):
        crop_matrix(np.zeros((67, 2)), cfg)
    with pytest.raises(ValueError, match=r"needs \(68, 2\) points, got shape \(\)"):
        crop_matrix(np.float64(3.0), cfg)
    pts = place(template68(), (100, 100), 40)
    pts[5, 1] = np.nan
    pts[7, 0] = np.inf
    with pytest.raises(ValueError, match=r"needs finite points, got 2 values that are NaN or infinite"):
        crop_matrix(pts, cfg)
