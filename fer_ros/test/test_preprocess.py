"""The one preprocessing path: a real face -> FaceSample; clips and difference images; the manifest spec."""
from __future__ import annotations

import numpy as np
import pytest

from fer_ros import difference_image
from fer_ros.crop import CropConfig
from fer_ros.landmarker import FaceLandmarks, MediaPipeLandmarker
from fer_ros.lbp import lbp
from fer_ros.preprocess import PREPROCESS_SPEC, FaceSample, Preprocessor, make_clip, make_geo
from perception_helpers import place, smile, template68


@pytest.fixture(scope="module")
def astronaut_face(astronaut_rgb) -> FaceLandmarks:
    with MediaPipeLandmarker(mode="image") as lm:
        faces = lm.detect(astronaut_rgb)
    assert len(faces) == 1
    return faces[0]


@pytest.mark.parametrize("size", [112, 48])
def test_face_sample_on_real_face(astronaut_rgb, astronaut_face, size):
    pp = Preprocessor(CropConfig(size=size))
    s = pp.face_sample(astronaut_rgb, astronaut_face)
    assert isinstance(s, FaceSample) and pp.size == size
    assert s.gray.shape == s.lbp.shape == (size, size) and s.lbp.dtype == np.uint8
    assert np.array_equal(s.lbp, lbp(s.gray))
    assert s.points68.shape == (68, 2) and s.points68.dtype == np.float32
    assert np.all((s.points68 > -0.1) & (s.points68 < 1.1))
    # Eyes level in the crop, above the mouth.
    assert abs(s.points68[36:42, 1].mean() - s.points68[42:48, 1].mean()) < 0.01
    assert s.points68[36:48, 1].mean() < s.points68[48:68, 1].mean()
    # Gray input and raw (68, 2) points give the same sample.
    gray = np.asarray(astronaut_rgb @ [0.299, 0.587, 0.114], np.float64).round().astype(np.uint8)
    s2 = pp.face_sample(gray, astronaut_face.points68)
    assert np.mean(np.abs(s2.gray.astype(int) - s.gray.astype(int))) < 1.5


def test_make_clip_order_and_range():
    samples = []
    for v in (0, 128, 255):
        samples.append(FaceSample(lbp=np.full((48, 48), v, np.uint8), gray=np.zeros((48, 48), np.uint8),
                                  points68=np.zeros((68, 2), np.float32)))
    clip = make_clip(samples)
    assert clip.shape == (1, 3, 48, 48) and clip.dtype == np.float32
    assert clip[0, 0, 0, 0] == 0.0 and clip[0, 1, 0, 0] == pytest.approx(128 / 255) and clip[0, 2, 0, 0] == 1.0
    with pytest.raises(ValueError):
        make_clip([])


def test_clip_inputs_channels_and_values():
    from fer_ros.lbp import lbp
    from fer_ros.preprocess import CLIP_INPUTS, clip_channels, clip_from_gray
    rng = np.random.default_rng(0)
    grays = rng.integers(0, 256, (3, 20, 20), dtype=np.uint8)
    neutral = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    codes = np.stack([lbp(g) for g in grays])
    for name in CLIP_INPUTS:
        clip = clip_from_gray(name, grays, neutral)
        assert clip.shape == (clip_channels(name), 3, 20, 20) and clip.dtype == np.float32, name
        assert np.all(np.isfinite(clip)) and clip.min() >= -1.0 and clip.max() <= 1.0, name
    assert np.allclose(clip_from_gray("lbp", grays) * 255, codes)

    def standardised(g):
        g = g.astype(np.float32)
        return (g - g.mean()) / max(float(g.std()), 4.0)

    shipped = clip_from_gray("lbp+gray_norm+delta_norm", grays, neutral)
    assert np.allclose(shipped[0] * 255, codes)
    assert np.allclose(shipped[1], np.clip(np.stack([standardised(g) for g in grays]) / 3, -1, 1), atol=1e-6)
    assert np.allclose(shipped[2], np.clip(np.stack([standardised(g) - standardised(neutral) for g in grays]) / 3,
                                           -1, 1), atol=1e-6)
    # the light's brightness and contrast do not count: the same faces at half the contrast, brighter
    even_grays, even_neutral = grays & 0xFE, neutral & 0xFE  # even levels halve exactly
    lit = clip_from_gray("lbp+gray_norm+delta_norm", even_grays // 2 + 60, even_neutral // 2 + 60)
    unlit = clip_from_gray("lbp+gray_norm+delta_norm", even_grays, even_neutral)
    assert np.allclose(lit[1:], unlit[1:], atol=1e-5)
    # no neutral reference: the newest frame stands in, so the newest frame shows no change
    assert np.all(clip_from_gray("lbp+gray_norm+delta_norm", grays)[2, -1] == 0.0)
    with pytest.raises(ValueError, match="unknown clip input"):
        clip_from_gray("rgb", grays)


def test_the_manifest_spec_records_the_clip_input_and_old_manifests_read_as_lbp():
    from fer_ros.crop import CropConfig
    from fer_ros.preprocess import check_preprocess_spec, spec_clip_input
    spec = PREPROCESS_SPEC(CropConfig(), 3, "lbp+gray_norm+delta_norm")
    assert spec["clip"]["input"] == "lbp+gray_norm+delta_norm" and spec["clip"]["channels"] == 3
    assert spec["clip"]["kinds"] == ["lbp", "gray_norm", "delta_norm"]
    check_preprocess_spec(spec)
    old = dict(spec, clip={"channels": 1, "frames": 3, "value": "lbp / 255", "order": "oldest first"})
    assert spec_clip_input(old) == "lbp"
    check_preprocess_spec(old)
    with pytest.raises(ValueError, match=r"clip input 'lbp\+colour' unknown"):
        check_preprocess_spec(dict(spec, clip=dict(spec["clip"], input="lbp+colour")))
    with pytest.raises(ValueError, match="3 channels here"):
        check_preprocess_spec(dict(spec, clip=dict(spec["clip"], channels=2)))


def test_make_geo():
    n = (template68() * 0.25 + [0.5, 0.35]).astype(np.float32)
    p = (smile(template68(), 0.1) * 0.25 + [0.5, 0.35]).astype(np.float32)
    geo, valid = make_geo(n, p)
    assert valid == 1.0 and geo.shape == (len(difference_image.CHANNELS), difference_image.SIZE,
                                          difference_image.SIZE)
    assert np.abs(geo).max() > 0
    geo0, valid0 = make_geo(None, p)
    assert valid0 == 0.0 and np.all(geo0 == 0) and geo0.shape == geo.shape


def test_same_face_different_frames_same_points():
    pp = Preprocessor(CropConfig(size=64))
    frame = np.full((480, 640), 100, np.uint8)
    a = pp.face_sample(frame, place(template68(), (200, 200), 50))
    b = pp.face_sample(frame, place(template68(), (400, 260), 90, angle_deg=15))
    assert np.allclose(a.points68, b.points68, atol=1e-4)


def test_spec_has_every_part():
    spec = PREPROCESS_SPEC(CropConfig(size=48))
    assert spec["crop"]["size"] == 48
    assert {"crop", "lbp", "landmark_scheme", "difference_image"} <= set(spec)
    import json
    json.dumps(spec)  # goes into manifest.json


def test_check_preprocess_spec():
    from fer_ros.preprocess import check_preprocess_spec
    spec = PREPROCESS_SPEC(CropConfig(size=48), window_length=3)
    assert spec["clip"]["frames"] == 3
    import json
    check_preprocess_spec(json.loads(json.dumps(spec)))  # survives a manifest round trip
    bad = json.loads(json.dumps(spec))
    bad["lbp"]["version"] = 99
    with pytest.raises(ValueError, match="lbp"):
        check_preprocess_spec(bad)
    bad = json.loads(json.dumps(spec))
    del bad["difference_image"]
    with pytest.raises(ValueError, match="difference_image"):
        check_preprocess_spec(bad)
    bad = json.loads(json.dumps(spec))
    bad["crop"]["name"] = "other"
    with pytest.raises(ValueError, match="crop"):
        check_preprocess_spec(bad)
