"""Stable face ids across frames.

Each track keeps a constant-velocity estimate of its box centre and size, and an appearance descriptor (any
vector; the pipeline uses a small normalised gray thumbnail of the aligned face plus the face's landmark shape).
A new frame's faces are matched to the tracks by minimum total cost (Hungarian assignment), where the cost of a
pair adds the distance from the predicted centre (in face sizes), the size change and the descriptor distance;
pairs beyond the gates never match. Prediction is what keeps ids through two faces crossing (their boxes overlap
then, so overlap alone would swap them); the descriptor settles what prediction cannot. Unmatched faces start
new tracks. A track is dropped when it was missing from the last update and was last seen longer than `timeout_s`
before the present one: a face in the last frame processed is never dropped for the time between frames alone, so
frames further apart than `timeout_s` (a low frame rate, a stall) keep their faces' ids.

The descriptor steadies ids; it does not recognise people. Between KDEF photos of different actors (same pose and
expression) its distance is 0.14 at the median, while one actor's photos of two expressions differ by up to 0.39, so
no gate on it keeps one person's id through expressions and turns yet refuses another person: a new face that
appears where a track was lost, within `timeout_s`, takes over that track. Where a lost track may be taken over is
bounded: its gate stops growing once the time unseen passes `horizon_s`, as its prediction does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

_BIG = 1e9


@dataclass
class Detection:
    """One face to track. box: (x0, y0, x1, y1) px. descriptor: optional appearance vector (any length, the same
    for every detection)."""

    box: tuple[float, float, float, float]
    descriptor: np.ndarray | None = None


@dataclass
class Track:
    """A tracked face. Centre and size in px, velocities in px/s; times in s (frame stamps)."""

    id: int
    centre: np.ndarray
    size: float
    first_seen_s: float
    last_seen_s: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    size_rate: float = 0.0  # relative size change per s
    descriptor: np.ndarray | None = None
    hits: int = 1
    misses: int = 0  # updates since the last sighting (0: seen in the last update)

    def predict(self, stamp_s: float, horizon_s: float, max_size_ratio: float = 2.0) -> tuple[np.ndarray, float]:
        """Predicted (centre px, size px) at `stamp_s` (extrapolating at most `horizon_s`; the size by at most
        `max_size_ratio` either way)."""
        dt = min(max(stamp_s - self.last_seen_s, 0.0), horizon_s)
        limit = math.log(max(max_size_ratio, 1.0))
        return self.centre + self.velocity * dt, self.size * math.exp(min(max(self.size_rate * dt, -limit), limit))


def _centre_size(box) -> tuple[np.ndarray, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0]), max(math.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0)), 1.0)


def _unit(v: np.ndarray | None) -> np.ndarray | None:
    if v is None:
        return None
    v = np.asarray(v, np.float32).ravel()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 and math.isfinite(n) else None


def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost (row, col) pairs of a cost matrix, leaving out pairs whose cost is >= the gate value _BIG. A
    cost that is not a finite number (a box with NaN in it) counts as _BIG: that pair never matches."""
    if cost.size == 0:
        return []
    cost = np.where(np.isfinite(cost), np.minimum(cost, _BIG), _BIG)
    try:
        from scipy.optimize import linear_sum_assignment
        rows, cols = linear_sum_assignment(cost)
        pairs = list(zip(rows.tolist(), cols.tolist()))
    except ImportError:  # greedy fallback: cheapest pair first
        pairs, used_r, used_c = [], set(), set()
        for flat in np.argsort(cost, axis=None):
            r, c = divmod(int(flat), cost.shape[1])
            if r not in used_r and c not in used_c:
                pairs.append((r, c))
                used_r.add(r)
                used_c.add(c)
    return [(r, c) for r, c in pairs if cost[r, c] < _BIG]


class Tracker:
    """Assigns track ids to each frame's detections; see the module docstring.

    timeout_s: drop a track missing from the last update and unseen this long (s). gate_sizes: largest centre
    distance from the prediction, in face sizes, for a frame right after the last sighting; it widens by
    gate_growth_per_s for every second unseen up to horizon_s (so after a stall, a stamp jump or a lost face, a face
    that enters far from where a track was last seen starts a track of its own).
    max_size_ratio: largest size change between the prediction and a detection. appearance_weight: weight of the
    descriptor distance (0..1 for unit vectors) against the centre distance (face sizes). Velocities are smoothed
    with weight velocity_smoothing per frame; a frame that follows the last sighting by less than rate_interval_s
    weighs in proportionally less, so stamps a few microseconds apart cannot turn a pixel of jitter into a huge
    velocity."""

    def __init__(self, timeout_s: float = 1.0, gate_sizes: float = 1.0, gate_growth_per_s: float = 2.0,
                 max_size_ratio: float = 1.8, appearance_weight: float = 1.0, velocity_smoothing: float = 0.5,
                 descriptor_smoothing: float = 0.3, horizon_s: float = 0.5, rate_interval_s: float = 0.01) -> None:
        self.timeout_s = float(timeout_s)
        self.gate_sizes = float(gate_sizes)
        self.gate_growth_per_s = float(gate_growth_per_s)
        self.max_size_ratio = float(max_size_ratio)
        self.appearance_weight = float(appearance_weight)
        self.velocity_smoothing = float(velocity_smoothing)
        self.descriptor_smoothing = float(descriptor_smoothing)
        self.horizon_s = float(horizon_s)
        self.rate_interval_s = float(rate_interval_s)
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (ids keep counting up, so old ids are never reused)."""
        self.tracks.clear()

    def update(self, detections: Sequence[Detection], stamp_s: float) -> list[int]:
        """Track ids for `detections` (same order) at frame time `stamp_s` (s, non-decreasing; the caller resets
        the tracker when time goes backwards). Drops stale tracks first (see drop_stale)."""
        self.drop_stale(stamp_s)
        ids = list(self.tracks)
        dets = [(*_centre_size(d.box), _unit(d.descriptor)) for d in detections]
        cost = np.full((len(ids), len(dets)), _BIG)
        for r, tid in enumerate(ids):
            cost[r] = [self._cost(self.tracks[tid], c, s, desc, stamp_s) for c, s, desc in dets]
        out: list[int | None] = [None] * len(dets)
        for r, c in assign(cost):
            tid = ids[r]
            self._correct(self.tracks[tid], *dets[c], stamp_s)
            out[c] = tid
        matched = set(out)
        for tid in ids:
            if tid not in matched:
                self.tracks[tid].misses += 1
        for c, (centre, size, desc) in enumerate(dets):
            if out[c] is None:
                tid = self._next_id
                self._next_id += 1
                self.tracks[tid] = Track(id=tid, centre=centre, size=size, first_seen_s=stamp_s,
                                         last_seen_s=stamp_s, descriptor=desc)
                out[c] = tid
        return [int(t) for t in out]

    def drop_stale(self, stamp_s: float) -> list[int]:
        """Drop the tracks that missed the last update and were last seen longer than timeout_s before `stamp_s`;
        returns their ids. A track seen in the last update stays, however long ago that update was."""
        gone = [tid for tid, t in self.tracks.items() if t.misses > 0 and stamp_s - t.last_seen_s > self.timeout_s]
        for tid in gone:
            del self.tracks[tid]
        return gone

    # -- internals ---------------------------------------------------------------------------------------------
    def _cost(self, track: Track, centre: np.ndarray, size: float, desc, stamp_s: float) -> float:
        pred_c, pred_s = track.predict(stamp_s, self.horizon_s, self.max_size_ratio)
        scale = max(pred_s, size)
        dist = float(np.linalg.norm(centre - pred_c)) / scale
        # the gate grows no further than the prediction reaches: after a gap (a stall, a stamp jump, a lost face)
        # a face far from where the track was last seen gets an id of its own
        unseen_s = min(max(stamp_s - track.last_seen_s, 0.0), self.horizon_s)
        if dist > self.gate_sizes + self.gate_growth_per_s * unseen_s:
            return _BIG
        size_change = abs(math.log(size / pred_s))
        if size_change > math.log(self.max_size_ratio):
            return _BIG
        appearance = 0.0
        if desc is not None and track.descriptor is not None and desc.shape == track.descriptor.shape:
            appearance = 0.5 * (1.0 - float(np.dot(desc, track.descriptor)))
        return dist + 0.5 * size_change + self.appearance_weight * appearance

    def _correct(self, track: Track, centre: np.ndarray, size: float, desc, stamp_s: float) -> None:
        dt = stamp_s - track.last_seen_s
        if dt > 0.0:
            a = self.velocity_smoothing * min(1.0, dt / self.rate_interval_s) if self.rate_interval_s > 0 \
                else self.velocity_smoothing
            track.velocity = (1 - a) * track.velocity + a * (centre - track.centre) / dt
            track.size_rate = (1 - a) * track.size_rate + a * math.log(size / track.size) / dt
        track.centre, track.size, track.last_seen_s = centre, size, stamp_s
        track.hits += 1
        track.misses = 0
        if desc is not None:
            if track.descriptor is None or track.descriptor.shape != desc.shape:
                track.descriptor = desc
            else:
                b = self.descriptor_smoothing
                track.descriptor = _unit((1 - b) * track.descriptor + b * desc)
