"""Tracking on synthetic moving boxes: crossing faces keep their ids, short misses keep ids, timeouts drop."""
from __future__ import annotations

import numpy as np
import pytest

from fer_ros.tracking import Detection, Tracker, assign

FPS = 30.0
SIZE = 80.0


def box_at(x: float, y: float, size: float = SIZE) -> tuple[float, float, float, float]:
    return (x - size / 2, y - size / 2, x + size / 2, y + size / 2)


def crossing_paths(n: int = 45, seed: int = 0):
    """Face A moves right, face B left, crossing at frame n/2 (centres pass within a few px)."""
    rng = np.random.default_rng(seed)
    xa = np.linspace(100, 540, n) + rng.normal(0, 1.5, n)
    xb = np.linspace(540, 100, n) + rng.normal(0, 1.5, n)
    ya = 240 + rng.normal(0, 1.5, n)
    yb = 250 + rng.normal(0, 1.5, n)
    return xa, ya, xb, yb


@pytest.mark.parametrize("with_descriptors", [False, True])
def test_two_faces_crossing_keep_ids(with_descriptors):
    rng = np.random.default_rng(1)
    desc_a, desc_b = rng.normal(size=32), rng.normal(size=32)
    xa, ya, xb, yb = crossing_paths(n=24)  # about 19 px per frame: nearest-to-last-position would swap them
    tr = Tracker(timeout_s=1.0)
    ids_a, ids_b = [], []
    for i in range(len(xa)):
        det_a = Detection(box_at(xa[i], ya[i]), desc_a + rng.normal(0, 0.3, 32) if with_descriptors else None)
        det_b = Detection(box_at(xb[i], yb[i]), desc_b + rng.normal(0, 0.3, 32) if with_descriptors else None)
        if i % 2:  # the landmarker's order means nothing
            b, a = tr.update([det_b, det_a], i / FPS)
        else:
            a, b = tr.update([det_a, det_b], i / FPS)
        ids_a.append(a)
        ids_b.append(b)
    assert len(set(ids_a)) == 1 and len(set(ids_b)) == 1 and ids_a[0] != ids_b[0]


def test_crossing_with_occlusion_keeps_ids():
    """While the faces overlap only the front one is detected; both keep their ids afterwards."""
    xa, ya, xb, yb = crossing_paths(n=60, seed=2)
    tr = Tracker(timeout_s=1.0)
    first = tr.update([Detection(box_at(xa[0], ya[0])), Detection(box_at(xb[0], yb[0]))], 0.0)
    hidden = 0
    for i in range(1, len(xa)):
        if abs(xa[i] - xb[i]) < 70:  # A is behind B
            hidden += 1
            ids = tr.update([Detection(box_at(xb[i], yb[i]))], i / FPS)
            assert ids == [first[1]]
        else:
            ids = tr.update([Detection(box_at(xa[i], ya[i])), Detection(box_at(xb[i], yb[i]))], i / FPS)
            assert ids == first, f"frame {i}"
    assert hidden >= 5


def test_short_miss_keeps_id_and_timeout_drops():
    tr = Tracker(timeout_s=0.5)
    stamps = np.arange(40) / FPS
    x = 200 + 3 * np.arange(40)
    ids = []
    for i, t in enumerate(stamps):
        if 10 <= i < 16:  # missing for 6 frames (0.2 s), still moving
            assert tr.update([], t) == []
            continue
        ids.append(tr.update([Detection(box_at(x[i], 240))], t)[0])
    assert len(set(ids)) == 1
    # Missing from the frames for longer than the timeout: the track is dropped and a return gets a new id.
    t_back = stamps[-1] + 0.6
    assert tr.update([], stamps[-1] + 1 / FPS) == [] and ids[0] in tr.tracks
    assert tr.update([], t_back - 0.01) == [] and not tr.tracks
    new = tr.update([Detection(box_at(x[-1], 240))], t_back)[0]
    assert new != ids[0]


@pytest.mark.parametrize("timeout_s, stamps", [
    (1.0, [1.25 * i for i in range(6)]),          # max_rate_hz 0.8 with the default face_timeout_s
    (0.05, [0.1 * i for i in range(6)]),          # a face_timeout_s shorter than the frame interval
    (1.0, [0.0, 1 / FPS, 2.5, 2.5 + 1 / FPS]),    # a stall of 2.5 s between two frames
])
def test_a_face_in_every_frame_keeps_its_id_however_far_apart_the_frames(timeout_s, stamps):
    tr = Tracker(timeout_s=timeout_s)
    ids = [tr.update([Detection(box_at(320 + 2 * i, 240))], t)[0] for i, t in enumerate(stamps)]
    assert len(set(ids)) == 1, ids
    assert len(tr.tracks) == 1


def test_at_a_low_frame_rate_a_face_missing_from_a_frame_is_dropped_at_the_next():
    """Frames 1.25 s apart, timeout 1 s: a face missing from one frame is kept through it (it was in the frame
    before), and dropped at the next frame; coming back then, it gets a new id."""
    tr = Tracker(timeout_s=1.0)
    (tid,) = tr.update([Detection(box_at(320, 240))], 0.0)
    assert tr.update([Detection(box_at(322, 240))], 1.25) == [tid]
    assert tr.update([], 2.5) == [] and list(tr.tracks) == [tid]
    assert tr.update([], 3.75) == [] and not tr.tracks
    (back,) = tr.update([Detection(box_at(322, 240))], 5.0)
    assert back != tid


def test_a_track_that_missed_a_frame_is_dropped_once_unseen_longer_than_the_timeout():
    tr = Tracker(timeout_s=0.5)
    (tid,) = tr.update([Detection(box_at(320, 240))], 0.0)
    assert tr.update([], 0.1) == [] and tid in tr.tracks
    assert tr.drop_stale(0.5) == [] and tid in tr.tracks  # unseen 0.5 s: not longer than the timeout
    assert tr.drop_stale(0.6) == [tid] and not tr.tracks


def test_the_recognizer_fills_a_window_at_a_frame_rate_below_one_per_face_timeout():
    """The node at max_rate_hz 0.8 (frames 1.25 s apart) with face_timeout_s 1.0: the face keeps one id, its
    window fills at the third frame; once the face is gone for longer than the timeout, its track and its window
    state go together."""
    from fer_ros.crop import CropConfig
    from fer_ros.pipeline import Recognizer
    from perception_helpers import ScriptedLandmarker, place, template68

    def one_face_then_none(i, stamp):
        return [place(template68(), (320, 240), 60)] if i < 4 else []
    rec = Recognizer(landmarker=ScriptedLandmarker(one_face_then_none), crop_cfg=CropConfig(size=32),
                     face_timeout_s=1.0)
    frame = np.zeros((480, 640, 3), np.uint8)
    results = [rec.process(frame, 1.25 * i) for i in range(4)]
    assert [len(r) for r in results] == [1, 1, 1, 1]
    assert len({r[0].id for r in results}) == 1
    assert [r[0].window_ready for r in results] == [False, False, True, True]
    assert rec.process(frame, 5.0) == [] and len(rec.states) == 1  # in the frame before: kept
    assert rec.process(frame, 6.25) == [] and not rec.states and not rec.tracker.tracks


def test_far_apart_faces_do_not_take_over_ids():
    tr = Tracker(timeout_s=1.0)
    (a,) = tr.update([Detection(box_at(100, 100))], 0.0)
    (b,) = tr.update([Detection(box_at(500, 380))], 1 / FPS)  # a is missed, someone else far away
    assert b != a
    ids = tr.update([Detection(box_at(102, 100)), Detection(box_at(500, 380))], 2 / FPS)
    assert ids == [a, b]
    # A much bigger face at the same place is not the same track (size gate).
    (c,) = tr.update([Detection(box_at(102, 100, size=3 * SIZE))], 3 / FPS)
    assert c not in (a, b)


@pytest.mark.parametrize("timeout_s", [1.0, 5.0, 10.0])
def test_a_lost_track_is_not_taken_over_by_a_face_far_from_where_it_was_lost(timeout_s):
    tr = Tracker(timeout_s=timeout_s)
    (a,) = tr.update([Detection(box_at(60, 240))], 0.0)
    tr.update([], 1 / FPS)  # a leaves
    (b,) = tr.update([Detection(box_at(60 + 4 * SIZE, 240))], 0.9 * timeout_s)  # someone else, 4 face sizes away
    assert b != a
    (c,) = tr.update([Detection(box_at(60 + 1.5 * SIZE, 240))], 0.95 * timeout_s)  # near where a was lost
    assert c == a


@pytest.mark.parametrize("gap_s", [2.0, 5.0, 7200.0])
def test_after_a_gap_a_face_far_from_where_a_track_was_seen_gets_its_own_id(gap_s):
    """A stall or a stamp jump: the track was in the last frame, but the face after the gap, at the far side of the
    frame, is someone else; a face where the track was keeps its id, however long the gap."""
    tr = Tracker(timeout_s=5.0)
    (a,) = tr.update([Detection(box_at(60, 240))], 0.0)
    (b,) = tr.update([Detection(box_at(60 + 8 * SIZE, 240))], gap_s)
    assert b != a
    tr = Tracker(timeout_s=5.0)
    (a,) = tr.update([Detection(box_at(60, 240))], 0.0)
    assert tr.update([Detection(box_at(60 + SIZE, 240))], gap_s) == [a]


def test_reset_and_unique_ids():
    tr = Tracker()
    ids = tr.update([Detection(box_at(100 * k, 100)) for k in range(1, 5)], 0.0)
    assert len(set(ids)) == 4
    tr.reset()
    assert not tr.tracks
    again = tr.update([Detection(box_at(100, 100))], 0.0)
    assert again[0] not in ids  # ids are never reused


def test_assign_gates():
    cost = np.array([[1.0, 1e9], [0.5, 1e9]])
    assert assign(cost) in ([(1, 0)], [(0, 0)])
    assert assign(cost) == [(1, 0)]
    assert assign(np.zeros((0, 3))) == []


def test_assign_never_pairs_costs_that_are_not_finite_numbers():
    cost = np.array([[np.nan, 2.0], [1.0, np.inf], [-np.inf, np.nan]])
    assert assign(cost) == [(0, 1), (1, 0)]
    assert assign(np.full((2, 2), np.nan)) == []


def test_a_box_with_nan_in_it_neither_stops_tracking_nor_keeps_its_track_alive():
    tr = Tracker(timeout_s=0.5)
    (bad,) = tr.update([Detection((np.nan, 100.0, np.nan, 180.0))], 0.0)
    ids = [tr.update([Detection(box_at(320, 240))], i / FPS) for i in range(1, 30)]
    assert len({tuple(i) for i in ids}) == 1 and bad not in ids[0]
    assert bad not in tr.tracks  # missed from the next update on: dropped after the timeout


@pytest.mark.parametrize("gap_s", [2e-6, 1e-5, 1e-4])
def test_stamps_microseconds_apart_neither_crash_nor_switch_ids(gap_s):
    """Two frames a few microseconds apart (a driver stamping twice) with the face 30% larger in the second must
    not make the next prediction overflow or throw the face out of its gate."""
    tr = Tracker(timeout_s=1.0)
    first = tr.update([Detection(box_at(320, 240, 100))], 0.0)
    second = tr.update([Detection(box_at(322, 240, 130))], gap_s)
    third = tr.update([Detection(box_at(322, 240, 130))], 0.4)
    fourth = tr.update([Detection(box_at(322, 240, 128))], 0.4 + 1 / FPS)
    assert first == second == third == fourth
    track = tr.tracks[first[0]]
    assert np.all(np.isfinite(track.velocity)) and np.isfinite(track.size_rate)


def test_prediction_size_is_bounded():
    tr = Tracker()
    (tid,) = tr.update([Detection(box_at(320, 240, 100))], 0.0)
    tr.tracks[tid].size_rate = 1e6  # whatever the estimate, the prediction stays within max_size_ratio
    centre, size = tr.tracks[tid].predict(0.5, tr.horizon_s, tr.max_size_ratio)
    assert size <= 100 * tr.max_size_ratio + 1e-6
