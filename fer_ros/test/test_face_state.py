"""Per-face windows and neutral references on synthetic sequences; bounded memory."""
from __future__ import annotations

import numpy as np
import pytest

from fer_ros.face_state import NEUTRAL_POLICIES, FaceTrackState, check_neutral_policy
from fer_ros.preprocess import FaceSample
from perception_helpers import smile, template68

FPS = 30.0
NEUTRAL = (template68() * 0.25 + [0.5, 0.35]).astype(np.float32)


def sample(points: np.ndarray, value: int = 0, size: int = 16, gray: int | np.ndarray = 0) -> FaceSample:
    """A face sample with uniform LBP codes `value` and gray level `gray` (a level, or the (size, size) crop)."""
    crop = np.array(np.broadcast_to(np.asarray(gray, np.uint8), (size, size)))
    return FaceSample(lbp=np.full((size, size), value, np.uint8), gray=crop, points68=np.asarray(points, np.float32))


def smiling(amount: float) -> np.ndarray:
    return (smile(template68(), amount) * 0.25 + [0.5, 0.35]).astype(np.float32)


def jitter(points: np.ndarray, rng, sd: float = 0.002) -> np.ndarray:
    return (points + rng.normal(0, sd, points.shape)).astype(np.float32)


def test_window_fills_and_keeps_last_t_oldest_first():
    st = FaceTrackState(1, window_length=3, neutral_policy="manual", clip_input="lbp")
    for i in range(5):
        st.push(sample(NEUTRAL, value=10 * i), i / FPS)
        assert st.window_frames == min(i + 1, 3)
        assert st.window_ready == (i >= 2)
        if not st.window_ready:
            with pytest.raises(ValueError):
                st.clip()
    clip = st.clip()
    assert clip.shape == (1, 3, 16, 16)
    assert [round(float(clip[0, k, 0, 0]) * 255) for k in range(3)] == [20, 30, 40]
    assert st.track_age_s == pytest.approx(4 / FPS)


RAMP = np.tile(np.arange(0, 80, 5, dtype=np.uint8), (16, 1))  # a 16x16 crop, darker on the left


def test_the_delta_norm_channel_is_the_change_from_the_neutral_references_crop_without_the_light():
    st = FaceTrackState(1, window_length=3, neutral_policy="first_frame", clip_input="lbp+gray_norm+delta_norm")
    brighter = RAMP * 2 + 40                        # the same face in other light: twice the contrast, brighter
    patched = RAMP.copy()
    patched[4:8, 4:8] = 200                         # the same face with a part of it changed
    for i, gray in enumerate((RAMP, RAMP, brighter, patched)):  # the first frame becomes the reference
        st.push(sample(NEUTRAL, gray=gray), i / FPS)
    clip = st.clip()
    assert clip.shape == (3, 3, 16, 16)
    assert np.allclose(clip[1, 0], clip[1, 1], atol=1e-6)        # the gray level, light aside
    assert np.allclose(clip[2, :2], 0.0, atol=1e-6)              # no change from the reference
    assert np.abs(clip[2, 2]).max() > 0.3                        # the changed part
    assert np.array_equal(st.neutral.gray, RAMP)
    # the reference keeps its own copy of the crop
    st.samples[0].gray[:] = 0
    assert np.array_equal(st.neutral.gray, RAMP)


def test_without_a_neutral_reference_the_change_is_taken_from_the_newest_frame():
    st = FaceTrackState(1, window_length=2, neutral_policy="manual", clip_input="lbp+gray_norm+delta_norm")
    st.push(sample(NEUTRAL, gray=RAMP), 0.0)
    st.push(sample(NEUTRAL, gray=RAMP[:, ::-1]), 1 / FPS)
    assert not st.has_neutral
    delta = st.clip()[2]
    assert np.abs(delta[0]).max() > 0.3 and np.all(delta[1] == 0.0)  # a still face: no change at the newest frame
    st.capture_neutral()
    assert st.neutral.source == "captured" and np.array_equal(st.neutral.gray, RAMP[:, ::-1])


def test_an_unknown_clip_input_is_refused():
    with pytest.raises(ValueError, match="unknown clip input"):
        FaceTrackState(1, clip_input="lbp+colour")


def test_first_frame_policy():
    st = FaceTrackState(1, neutral_policy="first_frame")
    st.push(sample(smiling(0.05)), 0.0)
    st.push(sample(NEUTRAL), 1 / FPS)
    assert st.has_neutral and st.neutral.source == "first_frame"
    assert np.allclose(st.neutral.points68, smiling(0.05))


def test_least_motion_picks_a_resting_frame_early_and_then_stays():
    rng = np.random.default_rng(0)
    st = FaceTrackState(1, neutral_policy="least_motion", neutral_search_s=1.0)
    # The track starts at the end of a smile, then rests for a second.
    frames = [smiling(0.2), smiling(0.15), smiling(0.1)] + [jitter(NEUTRAL, rng) for _ in range(30)]
    for i, p in enumerate(frames):
        st.push(sample(p), i / FPS)
    assert st.has_neutral and st.neutral.source == "least_motion"
    chosen_t = st.neutral.stamp_s
    assert chosen_t >= 3 / FPS  # not one of the smiling frames
    assert np.abs(st.neutral.points68 - NEUTRAL).max() < 0.01
    # A long smile after the search window does not move the reference.
    for i in range(len(frames), len(frames) + 90):
        st.push(sample(smiling(0.12)), i / FPS)
    assert st.neutral.stamp_s == chosen_t
    geo, valid = st.geo()
    assert valid == 1.0 and np.abs(geo).max() > 0.1  # the smile shows in the difference image


def test_manual_policy_and_capture():
    st = FaceTrackState(1, neutral_policy="manual")
    assert not st.capture_neutral()  # nothing to capture yet
    st.push(sample(NEUTRAL), 0.0)
    assert not st.has_neutral
    geo, valid = st.geo()
    assert valid == 0.0 and not geo.any()
    st.push(sample(smiling(0.03)), 1 / FPS)
    assert st.capture_neutral()
    assert st.neutral.source == "captured" and np.allclose(st.neutral.points68, smiling(0.03))
    st.push(sample(NEUTRAL), 2 / FPS)
    assert np.allclose(st.neutral.points68, smiling(0.03))


def test_capture_replaces_automatic_reference():
    st = FaceTrackState(1, neutral_policy="least_motion")
    st.push(sample(NEUTRAL), 0.0)
    st.push(sample(smiling(0.05)), 1 / FPS)
    st.capture_neutral()
    for i in range(2, 40):
        st.push(sample(NEUTRAL), i / FPS)
    assert st.neutral.source == "captured" and np.allclose(st.neutral.points68, smiling(0.05))
    assert not st.offer_neutral_probability(0.99, True)


def test_model_neutral_probability_in_auto_policy():
    st = FaceTrackState(1, neutral_policy="auto")
    st.push(sample(smiling(0.1)), 0.0)
    assert st.neutral.source == "least_motion"  # before any model output
    assert st.offer_neutral_probability(0.4, True)
    assert st.neutral.source == "model"
    st.push(sample(NEUTRAL), 1 / FPS)
    assert st.offer_neutral_probability(0.9, True)
    st.push(sample(smiling(0.05)), 2 / FPS)
    assert not st.offer_neutral_probability(0.5, True)
    assert not st.offer_neutral_probability(float("nan"), True)
    assert np.allclose(st.neutral.points68, NEUTRAL) and st.neutral.score == pytest.approx(0.9)
    other = FaceTrackState(2, neutral_policy="least_motion")
    other.push(sample(NEUTRAL), 0.0)
    assert not other.offer_neutral_probability(0.9, True)  # only "auto" listens to the model


def test_auto_policy_ignores_the_neutral_probability_of_a_face_read_as_another_expression():
    """A smiling face's neutral probability is small noise that depends on the present reference: the highest
    such value must not replace the least_motion reference, or identical faces lock onto different ones."""
    st = FaceTrackState(1, neutral_policy="auto")
    for i in range(5):
        st.push(sample(smiling(0.1 + 0.002 * (i % 2))), i / FPS)
        chosen = st.neutral.stamp_s
        assert not st.offer_neutral_probability(0.01 + 0.001 * i, False)
        assert st.neutral.source == "least_motion" and st.neutral.stamp_s == chosen
    st.push(sample(NEUTRAL), 5 / FPS)
    assert st.offer_neutral_probability(0.6, True)  # called neutral: now the model chooses
    st.push(sample(smiling(0.1)), 6 / FPS)
    assert not st.offer_neutral_probability(0.7, False)
    assert np.allclose(st.neutral.points68, NEUTRAL) and st.neutral.score == pytest.approx(0.6)


def test_policy_change_and_validation():
    st = FaceTrackState(1, neutral_policy="manual")
    st.push(sample(smiling(0.02)), 0.0)
    st.push(sample(NEUTRAL), 1 / FPS)
    st.set_policy("first_frame")
    assert st.neutral.source == "first_frame" and np.allclose(st.neutral.points68, smiling(0.02))
    with pytest.raises(ValueError, match="neutral policy"):
        st.set_policy("bogus")
    with pytest.raises(ValueError):
        FaceTrackState(1, window_length=0)
    assert check_neutral_policy("auto") == "auto" and "first_frame" in NEUTRAL_POLICIES


def test_a_policy_change_gives_the_reference_the_new_policy_would_have_chosen_over_the_tracks_life():
    """The operator switches the policy while a face smiles: the face gets the track's resting frame
    (least_motion) or its first frame (first_frame), not a frame of the smile in its window."""
    def track(policy: str) -> FaceTrackState:
        st = FaceTrackState(1, window_length=3, neutral_policy=policy)
        # The track starts at the end of a small smile, rests for 3 s, then smiles broadly for a second.
        frames = [smiling(0.05)] * 3 + [NEUTRAL] * 90 + [smiling(0.3)] * 30
        for i, p in enumerate(frames):
            st.push(sample(p, value=i % 256), i / FPS)
        return st

    least_motion = track("least_motion").neutral
    assert 3 / FPS <= least_motion.stamp_s < 93 / FPS and np.allclose(least_motion.points68, NEUTRAL)
    for old in ("auto", "first_frame", "manual"):
        st = track(old)
        st.set_policy("least_motion")
        assert st.neutral.source == "least_motion" and st.neutral.stamp_s == least_motion.stamp_s
        assert np.allclose(st.neutral.points68, NEUTRAL)
        geo, valid = st.geo()
        assert valid == 1.0 and np.abs(geo).max() > 0.1  # the smile shows against the resting frame
    for old in ("auto", "least_motion", "manual"):
        st = track(old)
        st.set_policy("first_frame")
        assert st.neutral.source == "first_frame" and st.neutral.stamp_s == 0.0
        assert np.allclose(st.neutral.points68, smiling(0.05))
        st.set_policy("manual")
        assert not st.has_neutral  # manual: none until captured
        st.set_policy("auto")
        assert st.neutral.source == "least_motion" and st.neutral.stamp_s == least_motion.stamp_s


def test_a_policy_change_keeps_the_models_choice_for_auto_and_a_captured_reference_for_any_policy():
    st = FaceTrackState(1, window_length=3, neutral_policy="auto")
    st.push(sample(smiling(0.1)), 0.0)
    st.push(sample(NEUTRAL), 1 / FPS)
    assert st.offer_neutral_probability(0.8, True)
    for i in range(2, 90):
        st.push(sample(smiling(0.1) if i < 60 else smiling(0.3)), i / FPS)
    assert st.neutral.source == "model" and st.neutral.stamp_s == 1 / FPS
    st.set_policy("least_motion")  # the least_motion search ran on while the model chose
    assert st.neutral.source == "least_motion" and np.allclose(st.neutral.points68, smiling(0.1))
    st.set_policy("auto")
    assert st.neutral.source == "model" and st.neutral.stamp_s == 1 / FPS
    st.capture_neutral()
    for policy in ("first_frame", "least_motion", "manual", "auto"):
        st.set_policy(policy)
        assert st.neutral.source == "captured" and np.allclose(st.neutral.points68, smiling(0.3))
    assert st.memory_items() == 3 + 1  # the window and the captured reference


def test_memory_bounded_over_long_track():
    rng = np.random.default_rng(1)
    st = FaceTrackState(1, window_length=3, neutral_policy="auto", max_neutral_candidates=20)
    peak = 0
    for i in range(10_000):
        st.push(sample(jitter(NEUTRAL, rng)), i / FPS)
        peak = max(peak, st.memory_items())
    assert peak <= 3 + 20 + 2  # the window, the candidates, the least_motion choice and the first frame
    assert st.memory_items() <= 3 + 2  # the search window closed and its candidates were freed
