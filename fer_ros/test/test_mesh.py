"""The face mesh network on its own (fer_ros/mesh.py) and the landmarker following known faces with it."""
from __future__ import annotations

import dataclasses
import io
import math
import zipfile

import cv2
import numpy as np
import pytest

from conftest import record_whole_frame_passes
from fer_ros import mesh
from fer_ros.landmarker import MediaPipeLandmarker, default_landmarker_model
from fer_ros.mesh import INPUT_SIDE, MeshNetwork, Roi, roi_from_points

needs_litert = pytest.mark.skipif(not mesh.available(), reason="ai-edge-litert is not installed")


def _eye_distance(points) -> float:
    return float(np.linalg.norm(points[mesh.LEFT_EYE_OUTER, :2] - points[mesh.RIGHT_EYE_OUTER, :2]))


def _mean_error(points, reference) -> float:
    """Mean point distance over the outer-eye distance."""
    return float(np.linalg.norm(points[:, :2] - reference[:, :2], axis=1).mean()) / _eye_distance(reference)


# --- geometry, no network ---------------------------------------------------------------------------------------
def test_a_view_maps_input_pixels_to_the_frame_as_its_warp_does():
    """A marker drawn at frame point (x, y) appears, in the warped view, at the input pixel that to_frame maps
    back to (x, y): the warp matrix and the point mapping are one transform."""
    angle = math.radians(25.0)
    roi = Roi(cx=300.0, cy=200.0, side=180.0, ax=math.cos(angle), ay=math.sin(angle))
    frame = np.zeros((400, 600, 3), np.uint8)
    uv = np.array([[60.0, 90.0], [200.0, 40.0], [128.0, 128.0]])
    for x, y in roi.to_frame(uv):
        frame[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
    view = cv2.warpAffine(frame, roi.inverse_affine(), (INPUT_SIDE, INPUT_SIDE),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    for u, v in uv:
        patch = view[int(v) - 6:int(v) + 7, int(u) - 6:int(u) + 7, 0].astype(np.float64)
        ys, xs = np.nonzero(patch > 40)
        assert len(xs), (u, v)
        w = patch[ys, xs]
        assert (xs * w).sum() / w.sum() + int(u) - 6 == pytest.approx(u, abs=1.5)
        assert (ys * w).sum() / w.sum() + int(v) - 6 == pytest.approx(v, abs=1.5)


def test_the_view_of_a_face_is_upright_on_its_eye_line_and_half_as_big_again():
    rng = np.random.default_rng(0)
    points = rng.uniform([100, 50], [220, 210], (478, 2))
    angle = math.radians(-30.0)
    points[mesh.LEFT_EYE_OUTER] = (130.0, 120.0)
    points[mesh.RIGHT_EYE_OUTER] = (130.0 + 60 * math.cos(angle), 120.0 + 60 * math.sin(angle))
    roi = roi_from_points(points)
    assert (roi.ax, roi.ay) == pytest.approx((math.cos(angle), math.sin(angle)))
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    assert (roi.cx, roi.cy) == pytest.approx(((x0 + x1) / 2, (y0 + y1) / 2))
    assert roi.side == pytest.approx(1.5 * max(x1 - x0, y1 - y0))
    flat = points.copy()
    flat[mesh.RIGHT_EYE_OUTER] = flat[mesh.LEFT_EYE_OUTER]  # no eye line: upright
    assert (roi_from_points(flat).ax, roi_from_points(flat).ay) == (1.0, 0.0)


def test_views_close_enough_are_held_and_far_ones_are_not():
    roi = Roi(cx=100.0, cy=100.0, side=200.0, ax=1.0, ay=0.0)
    assert roi.close_to(dataclasses.replace(roi, cx=108.0, side=205.0))
    assert not roi.close_to(dataclasses.replace(roi, cx=112.0))
    assert not roi.close_to(dataclasses.replace(roi, side=215.0))
    turned = math.radians(5.0)
    assert not roi.close_to(dataclasses.replace(roi, ax=math.cos(turned), ay=math.sin(turned)))
    assert roi.offset(dataclasses.replace(roi, cy=140.0)) == pytest.approx(0.2)


# --- the network --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def astronaut_points(astronaut_rgb):
    with MediaPipeLandmarker(mode="image", max_faces=1, small_faces=False) as lm:
        faces = lm.detect(astronaut_rgb)
    assert len(faces) == 1
    return faces[0].points478


@pytest.fixture(scope="module")
def network():
    if not mesh.available():
        pytest.skip("ai-edge-litert is not installed")
    net = MeshNetwork.from_bundle(default_landmarker_model().read_bytes())
    yield net
    net.close()


@needs_litert
def test_the_network_alone_finds_mediapipes_points(network, astronaut_rgb, astronaut_points):
    points, presence = network.landmark(astronaut_rgb, roi_from_points(astronaut_points))
    assert points.shape == (478, 3) and points.dtype == np.float32
    assert presence > 0.9
    assert _mean_error(points, astronaut_points) < 0.02
    again, _ = network.landmark(astronaut_rgb, roi_from_points(astronaut_points))
    np.testing.assert_array_equal(again, points)  # same view, same points


@needs_litert
def test_a_turned_face_is_found_on_its_turned_view(network, astronaut_rgb):
    turned = cv2.warpAffine(astronaut_rgb, cv2.getRotationMatrix2D((256, 256), 25, 1.0), (512, 512))
    with MediaPipeLandmarker(mode="image", max_faces=1, small_faces=False) as lm:
        reference = lm.detect(turned)[0].points478
    points, presence = network.landmark(turned, roi_from_points(reference))
    assert presence > 0.9 and _mean_error(points, reference) < 0.02


@needs_litert
def test_no_face_in_the_view_is_reported_absent(network, astronaut_rgb, astronaut_points):
    _, presence = network.landmark(np.full_like(astronaut_rgb, 110), roi_from_points(astronaut_points))
    assert presence < 0.1


@needs_litert
def test_a_face_far_off_its_view_is_landmarked_again_on_the_view_its_points_give(network, astronaut_rgb,
                                                                                  astronaut_points):
    centred = roi_from_points(astronaut_points)
    reference, _ = network.landmark(astronaut_rgb, centred)
    off = dataclasses.replace(centred, cx=centred.cx + 0.2 * centred.side)
    first, _ = network.landmark(astronaut_rgb, off)
    points, presence, view = network.follow(astronaut_rgb, off)
    assert view != off and view.offset(centred) < mesh.ROI_HOLD
    assert _mean_error(points, reference) < 0.01 < _mean_error(first, reference)
    near = dataclasses.replace(centred, cx=centred.cx + 0.03 * centred.side)
    assert network.follow(astronaut_rgb, near)[2] == near  # close enough: one pass


@needs_litert
def test_a_lone_face_is_followed_by_the_network_on_several_cores_with_the_same_points(astronaut_rgb,
                                                                                     astronaut_points):
    """With solo_threads above 1 a single face goes to the network that spreads over that many cores (several
    faces to the one-core networks, side by side); the points are those of a one-core network."""
    bundle = default_landmarker_model().read_bytes()
    alone = mesh.MeshFollower(bundle, 2, solo_threads=1)
    spread = mesh.MeshFollower(bundle, 2, solo_threads=2)
    try:
        assert alone._solo is None and spread._solo is not None
        calls = []
        solo_follow = spread._solo.follow
        spread._solo.follow = lambda *a: calls.append(1) or solo_follow(*a)
        track = (astronaut_points, None)
        (one, view_one), = alone.follow(astronaut_rgb, [track])
        (two, view_two), = spread.follow(astronaut_rgb, [track])
        assert calls == [1] and view_one == view_two
        np.testing.assert_allclose(two, one, atol=1e-3)
        assert len(spread.follow(astronaut_rgb, [track, track])) == 1  # the same face twice: one kept
        assert calls == [1]  # two faces: the one-core networks
    finally:
        alone.close()
        spread.close()


@needs_litert
def test_a_model_of_the_wrong_shape_is_refused_with_its_name():
    with zipfile.ZipFile(io.BytesIO(default_landmarker_model().read_bytes())) as z:
        detector = z.read("face_detector.tflite")
    with pytest.raises(ValueError, match="face_landmarks_detector.tflite"):
        MeshNetwork(detector)


# --- the landmarker following known faces ----------------------------------------------------------------------
@needs_litert
def test_known_faces_are_followed_by_the_mesh_network_alone(astronaut_rgb):
    """VIDEO mode: once a face is known, no MediaPipe whole-frame pass runs; a still face keeps exactly its points,
    a moving one is followed, one that leaves is dropped, and one that comes back is found again."""
    from conftest import place_faces
    frame, _ = place_faces(astronaut_rgb, 1, scale=0.9)
    stamps = iter(i / 30.0 for i in range(100))
    with MediaPipeLandmarker(mode="video", max_faces=4, search_period_s=10.0) as lm:
        assert lm._follower is not None and "followed by the face mesh network through LiteRT" in lm.describe()
        used = record_whole_frame_passes(lm)
        runs = [lm.detect(frame, next(stamps)) for _ in range(5)]
        assert [len(r) for r in runs] == [1] * 5
        assert used == ["_landmarker"]  # only the first frame, when nothing was known
        for later in runs[3:]:
            np.testing.assert_array_equal(later[0].points68, runs[2][0].points68)
        moved = lm.detect(np.roll(frame, 40, axis=1), next(stamps))
        assert len(moved) == 1
        assert np.median(moved[0].points68[:, 0] - runs[-1][0].points68[:, 0]) == pytest.approx(40.0, abs=2.0)
        assert lm.detect(np.full_like(frame, 110), next(stamps)) == []
        assert used == ["_landmarker"] * 2  # every face lost: the whole frame is looked at on that frame
        assert len(lm.detect(frame, next(stamps))) == 1
        assert used == ["_landmarker"] * 3  # nothing known after the face left: a whole-frame pass again


@needs_litert
def test_followed_faces_are_the_faces_mediapipe_follows(faces3_frame):
    """Three faces followed by the mesh network, on worker threads, land where MediaPipe's own passes put them."""
    frame, _ = faces3_frame
    stream = [frame, frame, np.roll(frame, 10, axis=0), np.roll(frame, 10, axis=0)]
    results = {}
    for tracking in (True, False):
        with MediaPipeLandmarker(mode="video", max_faces=4, search_period_s=10.0, mesh_tracking=tracking) as lm:
            assert (lm._follower is not None) == tracking
            results[tracking] = [sorted(lm.detect(f, i / 30.0), key=lambda face: face.box[0])
                                 for i, f in enumerate(stream)]
    for ours, theirs in zip(results[True], results[False]):
        assert len(ours) == len(theirs) == 3
        for a, b in zip(ours, theirs):
            assert _mean_error(a.points478, b.points478) < 0.03


def test_without_litert_or_with_blendshapes_faces_are_followed_by_mediapipe(monkeypatch, face_frame):
    frame, _ = face_frame
    with MediaPipeLandmarker(mode="video", max_faces=2, blendshapes=True) as lm:
        assert lm._follower is None
        assert len(lm.detect(frame, 0.0)) == 1 and len(lm.detect(frame, 0.033)) == 1
    monkeypatch.setattr(mesh, "available", lambda: False)
    with MediaPipeLandmarker(mode="video", max_faces=2) as lm:
        assert lm._follower is None
        assert "ai-edge-litert) is not installed" in lm.describe()  # the log says why, and what to install
        assert len(lm.detect(frame, 0.0)) == 1 and len(lm.detect(frame, 0.033)) == 1


@needs_litert
def test_a_frame_of_another_size_while_faces_are_followed(astronaut_rgb):
    """The camera's resolution changes under a followed face: no error, and the face is found in the new frames."""
    from conftest import place_faces
    big, _ = place_faces(astronaut_rgb, 1, scale=0.9)
    small, _ = place_faces(astronaut_rgb, 1, size=(240, 320), scale=0.6)
    gray = np.full((240, 320, 3), 110, np.uint8)
    with MediaPipeLandmarker(mode="video", max_faces=2, search_period_s=0.1) as lm:
        assert len(lm.detect(big, 0.0)) == 1 and len(lm.detect(big, 0.033)) == 1
        counts = [len(lm.detect(small, 0.066 + i / 30.0)) for i in range(3)]
        assert counts[-1] == 1, counts
        assert lm.detect(gray, 0.2) == []
        assert len(lm.detect(big, 0.233)) == 1
