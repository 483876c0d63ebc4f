"""Landmark scheme table and the MediaPipe landmarker on a real face."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import NO_LIBEGL, record_whole_frame_passes
from fer_ros import native_stderr
from fer_ros.landmark_scheme import (MP478_TO_IBUG68, REGION_WEIGHTS, REGIONS, SCHEME_SPEC, eye_centres,
                                     point_weights, to_ibug68)
from fer_ros.landmarker import (FaceLandmarks, Landmarker, LandmarkerError, MediaPipeLandmarker, check_model_file,
                                default_landmarker_model)


# --- scheme ---------------------------------------------------------------------------------------------------
def test_table_has_68_distinct_mesh_indices():
    assert len(MP478_TO_IBUG68) == 68
    assert len(set(MP478_TO_IBUG68)) == 68
    assert all(0 <= i < 468 for i in MP478_TO_IBUG68)


def test_regions_cover_all_points_once():
    covered = sorted(i for a, b in REGIONS.values() for i in range(a, b))
    assert covered == list(range(68))
    assert set(REGION_WEIGHTS) == set(REGIONS)


def test_point_weights():
    w = point_weights()
    assert w.shape == (68,) and w.dtype == np.float32
    assert w.mean() == pytest.approx(1.0, abs=1e-6)
    assert w[REGIONS["mouth"][0]] > w[REGIONS["jaw"][0]]
    assert SCHEME_SPEC["indices"] == list(MP478_TO_IBUG68)


def test_to_ibug68_picks_rows():
    p = np.arange(478 * 2, dtype=np.float32).reshape(478, 2)
    assert np.array_equal(to_ibug68(p)[:, 0], np.array(MP478_TO_IBUG68) * 2)
    with pytest.raises(ValueError):
        to_ibug68(np.zeros((68, 2)))


# --- model file ------------------------------------------------------------------------------------------------
def test_default_model_found_and_checked(tmp_path):
    path = default_landmarker_model()
    assert path.name == "face_landmarker.task"
    bad = tmp_path / "face_landmarker.task"
    bad.write_bytes(path.read_bytes()[:-1] + b"x")
    with pytest.raises(LandmarkerError, match="sha256"):
        check_model_file(bad)
    with pytest.raises(LandmarkerError, match="sha256"):
        MediaPipeLandmarker(bad)
    with pytest.raises(LandmarkerError, match="does not exist"):
        MediaPipeLandmarker(tmp_path / "missing.task")
    with pytest.raises(LandmarkerError, match="mode"):
        MediaPipeLandmarker(mode="stream")


# --- the real landmarker ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_landmarker():
    lm = MediaPipeLandmarker(mode="image", max_faces=4)
    yield lm
    lm.close()


def _check_face_geometry(face: FaceLandmarks, region=None):
    assert face.points478.shape == (478, 3) and face.points478.dtype == np.float32
    assert face.points68.shape == (68, 2) and face.points68.dtype == np.float32
    assert face.blendshapes.shape == (0,)  # not asked for
    p = face.points68
    right_eye, left_eye = eye_centres(p)
    nose_tip = p[30]
    mouth = p[48:68].mean(axis=0)
    chin = p[8]
    # Upright face: eyes above the nose tip above the mouth above the chin (image y grows downwards).
    assert max(right_eye[1], left_eye[1]) < nose_tip[1] < mouth[1] < chin[1]
    # The subject's right eye is on the image's left.
    assert right_eye[0] < nose_tip[0] < left_eye[0]
    eye_dist = float(np.linalg.norm(left_eye - right_eye))
    x0, y0, x1, y1 = face.box
    width = x1 - x0
    assert 0.25 * width < eye_dist < 0.6 * width
    if region is not None:
        rx0, ry0, rx1, ry1 = region
        assert np.all((p[:, 0] > rx0) & (p[:, 0] < rx1) & (p[:, 1] > ry0) & (p[:, 1] < ry1))
    return eye_dist


def test_a_missing_system_library_is_named_not_a_traceback(break_mediapipe):
    """mediapipe installed but a shared library it loads missing (libEGL on a bare GPU image): a LandmarkerError
    that names the library and what to run, as for mediapipe itself missing."""
    break_mediapipe(NO_LIBEGL)
    with pytest.raises(LandmarkerError, match=r"could not load a system library it needs \(libEGL.so.1.*make setup"):
        MediaPipeLandmarker(mode="image")
    break_mediapipe(ImportError("No module named 'mediapipe'"))
    with pytest.raises(LandmarkerError, match="mediapipe is not installed"):
        MediaPipeLandmarker(mode="image")


def test_start_and_stop_print_no_library_chatter(capfd, monkeypatch, face_frame, faces3_frame):
    # MediaPipe and LiteRT announce every graph they start ("Created TensorFlow Lite XNNPACK delegate", ...), and
    # each MediaPipe task its first frame: a page of lines in front of every tool's and node's output, which the
    # landmarker keeps off standard error. The small faces bring the tile search's detectors and the crop
    # landmarkers into play after a first frame without them, the video stream the whole-frame passes and the mesh
    # followers.
    monkeypatch.delenv("FER_ROS_NATIVE_LOGS", raising=False)
    capfd.readouterr()
    frame, (region,) = face_frame
    x0, y0, x1, y1 = (int(v) for v in region)
    small = np.ascontiguousarray(cv2.resize(frame[y0:y1, x0:x1], (48, 48), interpolation=cv2.INTER_AREA))
    with MediaPipeLandmarker(mode="image", max_faces=4) as lm:  # a dataset's 48 px face, then a frame to search
        assert len(lm.detect(small)) == 1
        lm.detect(np.pad(small, ((216, 216), (296, 296), (0, 0))))
        assert len(lm.detect(faces3_frame[0])) == 3
    with MediaPipeLandmarker(mode="video", max_faces=2) as lm:
        for i in range(3):
            assert len(lm.detect(face_frame[0], i / 30)) == 1
    err = capfd.readouterr().err
    assert not [line for line in err.splitlines() if native_stderr.CHATTER.match(line)], err


def test_astronaut_one_face(image_landmarker, astronaut_rgb):
    faces = image_landmarker.detect(astronaut_rgb)
    assert len(faces) == 1
    eye_dist = _check_face_geometry(faces[0], region=(150, 50, 300, 210))
    # The astronaut's eyes are about 40 px apart in the 512x512 image.
    assert 30 < eye_dist < 55
    assert isinstance(image_landmarker, Landmarker)


def test_blendshapes_on_request_leave_the_points_as_they_were(image_landmarker, astronaut_rgb):
    """blendshapes=True adds the 52 scores and changes no point: leaving them out (the default) costs nothing
    the pipeline uses."""
    with MediaPipeLandmarker(mode="image", max_faces=4, blendshapes=True) as lm:
        with_scores = lm.detect(astronaut_rgb)
    without = image_landmarker.detect(astronaut_rgb)
    assert len(with_scores) == len(without) == 1
    face = with_scores[0]
    assert face.blendshapes.shape == (52,) and len(face.blendshape_names) == 52
    assert np.all((face.blendshapes >= 0) & (face.blendshapes <= 1))
    np.testing.assert_allclose(face.points68, without[0].points68, atol=1e-3)


def test_three_faces(image_landmarker, faces3_frame):
    frame, regions = faces3_frame  # faces too small for the whole-frame detector: found by the tile search
    faces = image_landmarker.detect(frame)
    assert len(faces) == 3
    for face in faces:
        cx = (face.box[0] + face.box[2]) / 2
        region = next(r for r in regions if r[0] <= cx <= r[2])
        _check_face_geometry(face, region=region)
    assert len({round(f.box[0]) // 50 for f in faces}) == 3  # three different faces


@pytest.mark.parametrize("mesh_tracking", [False, True])
def test_three_small_faces_followed_in_video_mode(faces3_frame, mesh_tracking):
    frame, regions = faces3_frame
    with MediaPipeLandmarker(mode="video", max_faces=4, search_period_s=10.0, mesh_tracking=mesh_tracking) as lm:
        counts = [len(lm.detect(frame, 0.033 * i)) for i in range(4)]  # one search, then followed by their crops
        assert counts == [3, 3, 3, 3]
        assert len(lm.detect(frame, 0.2)) == 3
    with MediaPipeLandmarker(mode="video", max_faces=2) as lm:
        assert len(lm.detect(frame, 0.0)) == 2  # max_faces holds
    with MediaPipeLandmarker(mode="image", max_faces=4, small_faces=False) as lm:
        assert len(lm.detect(frame)) < 3  # what the whole-frame detector alone finds


def test_huge_frame_detects_on_downscaled_copy(astronaut_rgb):
    import cv2
    big = cv2.resize(astronaut_rgb, (4096, 4096), interpolation=cv2.INTER_LINEAR)  # 8x
    with MediaPipeLandmarker(mode="image", max_detect_side_px=1024) as lm:
        small = lm.detect(astronaut_rgb)
        faces = lm.detect(big)
    assert len(faces) == 1
    # Points come back in the big frame's pixels.
    assert np.allclose(faces[0].points68 / 8.0, small[0].points68, atol=3.0)


def _blob_centre(rgb):
    weight = np.clip(rgb[..., 1].astype(np.float64) - 128.0, 0.0, None)
    y, x = np.mgrid[0:rgb.shape[0], 0:rgb.shape[1]]
    return np.array([(weight * x).sum(), (weight * y).sum()]) / weight.sum()


@pytest.mark.parametrize("shape", [(1080, 1920), (1500, 1000)])
def test_points_found_on_the_downscaled_copy_map_back_to_the_same_pixel_of_the_frame(shape, monkeypatch):
    """The copy's px x covers the frame's px (x + 0.5) * s - 0.5 (s: the frame's side over the copy's): a point
    found there comes back where it is in the frame, not 0.5 * (s - 1) px (0.25 px at 1920 -> 1280) above and to
    the left of it."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    blob = 128.0 + 120.0 * np.exp(-((x - 701.3) ** 2 + (y - 402.8) ** 2) / (2 * 9.0 ** 2))
    frame = np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, axis=2)
    seen = []

    def blob_face(image, ts_ms):  # a face all of whose points are at the centre of the blob it is shown
        seen.append(image.shape[:2])
        return [(np.tile(np.append(_blob_centre(image), 0.0), (478, 1)).astype(np.float32), np.zeros(0), ())]
    with MediaPipeLandmarker(mode="image", small_faces=False) as lm:
        monkeypatch.setattr(lm, "_detect_full", blob_face)
        faces = lm.detect(frame)
    assert max(seen[0]) == 1280
    assert np.abs(faces[0].points478[:, :2] - _blob_centre(frame)).max() < 0.05


def test_video_mode_and_bad_frames(face_frame):
    frame, region = face_frame
    with MediaPipeLandmarker(mode="video", max_faces=2) as lm:
        for i, stamp in enumerate([0.0, 0.033, 0.066, 0.02, None, 0.1]):  # one stamp goes backwards, one missing
            faces = lm.detect(frame, stamp)
            assert len(faces) == 1
        _check_face_geometry(faces[0], region=region[0])
        gray16 = (frame[:, :, 1].astype(np.uint16) * 257)
        assert len(lm.detect(gray16, 0.2)) == 1  # 16-bit gray input
        assert lm.detect(np.zeros((4, 4, 3), np.uint8), 0.3) == []  # tiny
        assert lm.detect(np.zeros((480, 640, 3), np.uint8), 0.4) == []  # no face
    lm.close()  # twice is fine
    with pytest.raises(LandmarkerError):
        lm.detect(frame)


def test_video_timestamps_strictly_increase_at_the_stream_pace():
    lm = MediaPipeLandmarker.__new__(MediaPipeLandmarker)  # only the timestamp helper, no MediaPipe graph
    lm._last_ts_ms, lm._offset_ms, lm._frame_count = None, 0, 0
    got = [lm._timestamp_ms(s) for s in (10.0, 10.033, 10.033, 2.0, 2.033, 2.066, None, float("nan"))]
    assert all(b > a for a, b in zip(got, got[1:]))
    assert got[:2] == [10000, 10033]
    assert got[4] - got[3] == 33 and got[5] - got[4] == 33  # after the jump back, the pace is kept


@pytest.mark.parametrize("mesh_tracking", [False, True])
def test_a_stream_that_changes_resolution_keeps_finding_the_face(astronaut_rgb, mesh_tracking):
    """The faces known from the last frame are in its pixels: after a change of resolution they are not looked for
    there."""
    big = cv2.resize(astronaut_rgb, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    with MediaPipeLandmarker(mode="video", max_faces=2, mesh_tracking=mesh_tracking) as lm:
        boxes = []
        for i, frame in enumerate([astronaut_rgb, astronaut_rgb, big, big, astronaut_rgb]):
            faces = lm.detect(frame, i / 30)
            assert len(faces) == 1, f"frame {i} ({frame.shape[1]} px): {len(faces)} faces"
            scale = 512 / frame.shape[1]
            boxes.append(np.asarray(faces[0].box) * scale)
    assert np.abs(np.array(boxes) - boxes[0]).max() < 8.0  # the same face, in 512 px units


@pytest.mark.parametrize("mesh_tracking", [False, True])
def test_face_missed_by_whole_frame_pass_is_found_by_its_last_crop(face_frame, mesh_tracking):
    """The face of the last frame that this frame's pass misses (the whole-frame pass, or the mesh network that
    follows it) is looked for on a crop around its last box."""
    frame, regions = face_frame
    with MediaPipeLandmarker(mode="video", max_faces=2, search_period_s=100.0, mesh_tracking=mesh_tracking) as lm:
        first = lm.detect(frame, 0.0)
        assert len(first) == 1
        lm._detect_full = lambda image, ts_ms: []  # the whole-frame pass misses the face this time
        if lm._follower is not None:
            lm._follower.follow = lambda frame, tracks, pool: []  # and so does the mesh network
        again = lm.detect(frame, 0.033)
    assert len(again) == 1
    assert np.abs(again[0].points68 - first[0].points68).max() < 6.0


@pytest.mark.parametrize("mesh_tracking", [False, True])
def test_a_still_small_face_keeps_its_crop_and_its_landmarks(faces3_frame, mesh_tracking):
    """Small faces are landmarked on a crop around last frame's box; re-centring that crop on every frame's own
    landmarks made a still face's points alternate between two sets. The crop now stays until the face moves."""
    frame, regions = faces3_frame

    def faces(lm, image, stamp_s):
        return sorted(lm.detect(image, stamp_s), key=lambda f: f.box[0])
    with MediaPipeLandmarker(mode="video", max_faces=4, search_period_s=10.0, mesh_tracking=mesh_tracking) as lm:
        runs = [faces(lm, frame, 0.033 * i) for i in range(6)]
        assert [len(r) for r in runs] == [3] * 6
        for later in runs[2:]:  # the first frame's crop comes from the detector's box, the rest from landmarks
            for settled, face in zip(runs[1], later):
                np.testing.assert_array_equal(face.points68, settled.points68)
        moved = faces(lm, np.roll(frame, 30, axis=1), 0.2)  # a real move: the crops follow
    assert len(moved) == 3
    for before, after in zip(runs[-1], moved):
        assert np.median(after.points68[:, 0] - before.points68[:, 0]) == pytest.approx(30.0, abs=2.0)


@pytest.mark.parametrize("mesh_tracking", [False, True])
def test_faces_landmarked_side_by_side_are_the_faces_landmarked_one_after_another(astronaut_rgb, mesh_tracking):
    """With threads, last frame's faces from crops are landmarked on worker threads while the whole-frame pass runs
    (and further faces on crops side by side), or, followed by the mesh network, side by side: the faces
    reported, and every point, are those of one thread."""
    import threading

    from fer_ros import mesh
    if mesh_tracking and not mesh.available():
        pytest.skip("ai-edge-litert is not installed: MediaPipe follows the faces, as in the other case")

    from conftest import place_faces
    three, _ = place_faces(astronaut_rgb, 3, scale=0.7)
    five, _ = place_faces(astronaut_rgb, 5, scale=0.45)
    one_big, _ = place_faces(astronaut_rgb, 1, scale=0.9)
    # Small faces followed by their crops, a move, more faces, a big face the whole-frame pass finds, and back.
    stream = [three, three, np.roll(three, 12, axis=1), five, five, np.roll(five, -8, axis=0), one_big, three, three,
              three, three, three]  # back to three: the small faces found again within a search's sweep

    def run(threads):
        with MediaPipeLandmarker(mode="video", max_faces=5, search_period_s=0.1, threads=threads,
                                 mesh_tracking=mesh_tracking) as lm:
            where = []
            owner, name = (lm._follower, "_one") if mesh_tracking else (lm, "_landmark_roi")
            landmark = getattr(owner, name)

            def recorded(*args, **kwargs):
                where.append(threading.current_thread().name)
                return landmark(*args, **kwargs)
            setattr(owner, name, recorded)
            out = [sorted(lm.detect(frame, 0.1 * i), key=lambda f: f.box[0]) for i, frame in enumerate(stream)]
        return out, where

    alone, alone_where = run(1)
    together, together_where = run(3)
    counts = [len(f) for f in alone]
    assert counts[:3] == [3, 3, 3] and 5 in counts[3:6] and counts[6] == 1 and counts[-1] == 3, counts
    assert [len(f) for f in together] == [len(f) for f in alone]
    for frame_alone, frame_together in zip(alone, together):
        for a, b in zip(frame_alone, frame_together):
            np.testing.assert_array_equal(a.points478, b.points478)
    assert all(name == threading.current_thread().name for name in alone_where)
    assert sum(name.startswith("fer_landmarks") for name in together_where) >= 10


def test_landmark_threads_option(face_frame):
    from fer_ros.landmarker import default_threads
    assert 1 <= default_threads() <= 4
    with pytest.raises(LandmarkerError, match="threads"):
        MediaPipeLandmarker(threads=-1)
    lm = MediaPipeLandmarker(mode="video", max_faces=2, threads=0)
    assert lm.threads == default_threads()
    assert len(lm.detect(face_frame[0], 0.0)) == 1
    lm.close()
    assert lm._pool is None and lm._roi_landmarkers == []
    lm.close()
    with MediaPipeLandmarker(mode="video", max_faces=1, threads=4) as one:
        assert one._pool is None  # one face at most: one crop landmarker, no worker threads


def test_the_tile_search_split_over_threads_finds_what_one_thread_finds(astronaut_rgb):
    from conftest import place_faces
    from fer_ros.tiles import interleaved, merge_tile_boxes, tile_origins
    items = list(range(11))
    assert interleaved([items[k::3] for k in range(3)]) == items
    assert interleaved([[]]) == []
    frame, _ = place_faces(astronaut_rgb, 5, scale=0.45)
    with MediaPipeLandmarker(mode="video", max_faces=5, threads=3) as lm:
        assert len(lm._search) == 3
        alone = lm._search.search(frame)
        futures = lm._search.submit(lm._pool, frame, *tile_origins(frame))
        split = merge_tile_boxes(interleaved([f.result() for f in futures]))
    assert len(alone) >= 5 and split == alone


def test_while_faces_are_known_the_tile_search_is_spread_over_frames(face_frame):
    """No frame pays for the whole search once a face is known: it is dealt over SWEEP_FRAMES frames, and each
    search still covers every tile."""
    from fer_ros.tiles import SWEEP_FRAMES, tile_origins
    frame, _ = face_frame
    tile, every = tile_origins(frame)
    per_frame = []
    with MediaPipeLandmarker(mode="video", max_faces=4, search_period_s=0.3, threads=1) as lm:
        detect_tiles = lm._search.detect

        def recorded(image, side, origins):
            per_frame[-1].extend(origins)
            return detect_tiles(image, side, origins)
        lm._search.detect = recorded
        for i in range(3 + SWEEP_FRAMES + 3):
            per_frame.append([])
            assert len(lm.detect(frame, 0.1 * i)) == 1
    # nothing known at first: every tile at once; then not due for search_period_s; then dealt over the frames
    share = -(-len(every) // SWEEP_FRAMES)
    sweep = per_frame[3:3 + SWEEP_FRAMES]
    assert [len(p) for p in per_frame[:3]] == [len(every), 0, 0]
    assert all(0 < len(p) <= share for p in sweep) and sorted(sum(sweep, [])) == sorted(every)


def test_while_one_face_is_known_the_whole_frame_pass_follows_it(astronaut_rgb):
    """With exactly one face known, the whole-frame pass is the FaceLandmarker that follows one face (it does not
    run its detector on every frame); a face that comes into view, even one bigger than a tile, is found by the
    search; with several faces known, or none, the pass is the one that may report max_faces."""
    import cv2
    head = astronaut_rgb[0:256, 96:352]

    def paste(frame, side, x0, y0):
        frame[y0:y0 + side, x0:x0 + side] = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
        return frame
    small = paste(np.full((480, 640, 3), 110, np.uint8), 120, 10, 180)
    with_big = paste(small.copy(), 470, 165, 5)  # a second face, bigger than any tile (320 px), comes closer
    with MediaPipeLandmarker(mode="video", max_faces=5, search_period_s=0.2, mesh_tracking=False) as lm:
        used = record_whole_frame_passes(lm)
        stamps = iter(0.05 * i for i in range(100))
        assert [len(lm.detect(small, next(stamps))) for _ in range(3)] == [1, 1, 1]
        assert used == ["_landmarker", "_one_face", "_one_face"]  # nothing known at first: the pass that finds all
        counts = [len(lm.detect(with_big, next(stamps))) for _ in range(8)]
        assert counts[-1] == 2 and counts.index(2) <= 5, counts  # found within search_period_s and a sweep
        first_two = 3 + counts.index(2)
        assert set(used[3:first_two + 1]) == {"_one_face"}
        assert set(used[first_two + 1:]) == {"_landmarker"}  # two faces known: the pass that may report them all
    with MediaPipeLandmarker(mode="video", max_faces=1) as lm:
        assert lm._one_face is None  # one face at most: the whole-frame pass already follows one


def _paste_head(frame, face_rgb, side, x0, y0, mirror=False):
    """The astronaut's head region, `side` px square (mirrored: another face to the detector), pasted at (x0, y0)."""
    head = cv2.resize(face_rgb[0:256, 96:352], (side, side), interpolation=cv2.INTER_AREA)
    frame[y0:y0 + side, x0:x0 + side] = head[:, ::-1] if mirror else head
    return frame


@pytest.mark.parametrize("mesh_tracking", [False, True])
@pytest.mark.parametrize("size", [(240, 320), (116, 300)])  # a small stream; one whose shorter side is under a tile
def test_in_a_small_frame_a_face_that_comes_into_view_is_found_while_another_is_followed(astronaut_rgb, size,
                                                                                           mesh_tracking):
    """While a face is followed, no pass looks for more but the tile search, so it searches small frames too: a
    second face is found within search_period_s and a sweep of SWEEP_FRAMES frames."""
    from fer_ros.tiles import SWEEP_FRAMES
    h, w = size
    side = min(h, 2 * w // 5)
    one = _paste_head(np.full((h, w, 3), 110, np.uint8), astronaut_rgb, side, 0, 0)
    two = _paste_head(one.copy(), astronaut_rgb, side, w - side, h - side, mirror=True)
    period_s, step_s = 0.2, 0.05
    bound = round(period_s / step_s) + SWEEP_FRAMES
    with MediaPipeLandmarker(mode="video", max_faces=4, search_period_s=period_s, threads=1,
                             mesh_tracking=mesh_tracking) as lm:
        stamps = iter(step_s * i for i in range(100))
        assert [len(lm.detect(one, next(stamps))) for _ in range(5)] == [1] * 5
        counts = [len(lm.detect(two, next(stamps))) for _ in range(bound + 2)]
    assert 2 in counts[:bound] and counts[counts.index(2):] == [2] * (len(counts) - counts.index(2)), counts


@pytest.mark.parametrize("mesh_tracking", [False, True])
def test_a_cut_to_another_face_is_reported_on_the_frame_of_the_cut(astronaut_rgb, mesh_tracking):
    """When every followed face is lost and neither the crops around them nor the tile search find a face, the
    frame gets the whole-frame pass that looks for every face: one pass more, on that frame only."""
    left = _paste_head(np.full((480, 640, 3), 110, np.uint8), astronaut_rgb, 230, 0, 100)
    right = _paste_head(np.full((480, 640, 3), 110, np.uint8), astronaut_rgb, 230, 640 - 230, 100, mirror=True)
    with MediaPipeLandmarker(mode="video", max_faces=4, search_period_s=100.0, threads=1,
                             mesh_tracking=mesh_tracking) as lm:
        used = record_whole_frame_passes(lm)
        sides = []
        for i, frame in enumerate([left] * 4 + [right] * 4):  # the search is not due at the cut
            sides.append("".join("L" if f.box[2] < 320 else "R" if f.box[0] > 320 else "?"
                                 for f in lm.detect(frame, i / 30)))
    assert sides == ["L"] * 4 + ["R"] * 4, sides
    assert used.count("_landmarker") == 2  # the first frame and the frame of the cut


def test_the_tile_search_plan_keeps_its_period_and_deals_a_search_over_frames():
    import io
    import zipfile

    from fer_ros.landmarker_model import default_landmarker_model
    from fer_ros.tiles import MIN_SEARCH_SIDE_PX, MIN_TILE_SIDE_PX, SWEEP_FRAMES, TileSearch, tile_origins
    with zipfile.ZipFile(io.BytesIO(default_landmarker_model().read_bytes())) as z:
        search = TileSearch(z.read("face_detector.tflite"), 1, 0.5, period_s=1.0)
    try:
        frame = np.full((480, 640, 3), 110, np.uint8)
        tile, every = tile_origins(frame)
        assert search.plan(frame, 0, known=0, max_faces=4) == (tile, every)  # nothing known: all tiles at once
        assert search.plan(frame, 500, known=1, max_faces=4) is None  # not due within period_s
        shares = [search.plan(frame, 1000 + 33 * i, known=1, max_faces=4) for i in range(SWEEP_FRAMES)]
        assert sorted(o for _, part in shares for o in part) == sorted(every)  # a face known: dealt over frames
        assert all(len(part) < len(every) for _, part in shares)
        assert search.plan(frame, 1200, known=1, max_faces=4) is None
        assert search.plan(frame, 2500, known=4, max_faces=4) is None  # due, but no room for more faces
        assert search.plan(frame, 900, known=0, max_faces=4) == (tile, every)  # stream time went back: due
        small = np.full((MIN_SEARCH_SIDE_PX - 1, 640, 3), 110, np.uint8)
        assert not search.due(small, None) and search.search(frame) == []
        assert search.due(small, None, known=1)  # faces known: the search is how new ones are found
        for shape in [(MIN_SEARCH_SIDE_PX - 1, 640), (100, 300), (100, 100)]:
            side, origins = tile_origins(np.zeros(shape + (3,), np.uint8))
            assert side == min(shape[0], max(MIN_TILE_SIDE_PX, shape[0] * 2 // 3)) and origins
            assert all(x + side <= shape[1] and y + side <= shape[0] for x, y in origins)  # tiles in the frame
            assert max(x for x, _ in origins) + side == shape[1] and max(y for _, y in origins) + side == shape[0]
    finally:
        search.close()
