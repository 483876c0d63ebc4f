"""Per-face state: the window of the last T preprocessed frames and the face's neutral reference.

Neutral reference policies (NEUTRAL_POLICIES):
- "auto": "least_motion" until the model (one with a "neutral" class) calls a frame of the face neutral, its most
  probable class; from then on the frame it calls neutral with the highest probability. The neutral probability
  of a frame the model reads as another expression is not a measure of rest: it is small, and it is computed
  against the present reference, so the highest of such values picks the frame whose misalignment with the
  reference confuses the model most, after which no frame can displace it. Identical faces then lock onto
  references of different phases of the landmarker's jitter and disagree for as long as they are tracked.
- "least_motion": during the first `neutral_search_s` of the track (at most `max_neutral_candidates` frames),
  the frame whose landmarks are nearest (weighted by landmark_scheme.point_weights) to the mean of those
  frames; fixed afterwards. A face usually starts out at rest, and a resting face is what its shape averages to.
- "first_frame": the first frame of the track.
- "manual": none until `capture_neutral()`.
`capture_neutral()` (any policy) takes the newest frame as the reference; automatic choices stop for that face.
Every track keeps its first frame and runs the least_motion search whatever its policy, so a change of policy at
run time (`set_policy`) gives the face the reference the new policy would have chosen over the track's life (for
"auto" the model's choice where the model made one while the policy was "auto", else the least_motion choice; for
"manual" none), not one chosen from the frames that happen to be in the window when the policy changes.

Memory per face is bounded: T samples, at most max_neutral_candidates candidates and at most three references
(the first frame, the least_motion choice, the model's choice; a captured reference replaces them), each a
(68, 2) point set and its (S, S) aligned gray crop (the appearance clip's delta_norm channel needs the crop).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from fer_ros.landmark_scheme import point_weights
from fer_ros.preprocess import BASE_CLIP_INPUT, FaceSample, clip_input_kinds, make_clip, make_geo

NEUTRAL_POLICIES: tuple[str, ...] = ("auto", "least_motion", "first_frame", "manual")

_W = point_weights()[:, None]


def check_neutral_policy(policy: str) -> str:
    """`policy` if it is known; ValueError naming the known ones otherwise."""
    if policy not in NEUTRAL_POLICIES:
        raise ValueError(f"unknown neutral policy {policy!r}; use one of: {', '.join(NEUTRAL_POLICIES)}")
    return policy


@dataclass
class Neutral:
    """A neutral reference: (68, 2) float32 normalised crop points, the frame's stamp (s), how it was chosen
    ("least_motion", "first_frame", "model", "captured"), for "model" the neutral probability, and the frame's
    (S, S) uint8 aligned gray crop."""

    points68: np.ndarray
    stamp_s: float
    source: str
    score: float = 0.0
    gray: np.ndarray | None = None

    @classmethod
    def of(cls, sample: FaceSample, stamp_s: float, source: str, score: float = 0.0) -> "Neutral":
        return cls(np.asarray(sample.points68, np.float32).copy(), float(stamp_s), source, float(score),
                   np.array(sample.gray, copy=True))


class FaceTrackState:
    """Window and neutral reference of one tracked face (see the module docstring)."""

    def __init__(self, track_id: int, window_length: int = 3, neutral_policy: str = "auto",
                 neutral_search_s: float = 2.0, max_neutral_candidates: int = 60,
                 clip_input: str = BASE_CLIP_INPUT) -> None:
        if int(window_length) < 1:
            raise ValueError(f"window_length must be >= 1, got {window_length}")
        self.track_id = int(track_id)
        self.window_length = int(window_length)
        self.neutral_policy = check_neutral_policy(neutral_policy)
        clip_input_kinds(clip_input)  # ValueError for an unknown clip input
        self.clip_input = clip_input
        self.neutral_search_s = float(neutral_search_s)
        self.max_neutral_candidates = int(max_neutral_candidates)
        self.samples: deque[FaceSample] = deque(maxlen=self.window_length)
        self.stamps: deque[float] = deque(maxlen=self.window_length)
        self.first_seen_s: float | None = None
        self.last_seen_s: float | None = None
        self.neutral: Neutral | None = None
        self._first: Neutral | None = None          # the track's first frame
        self._least: Neutral | None = None          # the least_motion search's choice
        self._model: Neutral | None = None          # the model's choice (policy "auto")
        self._candidates: list[FaceSample] = []
        self._candidate_stamps: list[float] = []
        self._search_open = True

    # -- frames ----------------------------------------------------------------------------------------------
    def push(self, sample: FaceSample, stamp_s: float) -> None:
        """Add the newest frame's sample (and update the automatic neutral reference)."""
        stamp_s = float(stamp_s)
        if self.first_seen_s is None:
            self.first_seen_s = stamp_s
        self.last_seen_s = stamp_s
        self.samples.append(sample)
        self.stamps.append(stamp_s)
        if self._captured:
            return
        if self._first is None:
            self._first = Neutral.of(sample, stamp_s, "first_frame")
        self._least_motion(sample, stamp_s)
        self.neutral = self._policy_choice()

    @property
    def window_frames(self) -> int:
        return len(self.samples)

    @property
    def window_ready(self) -> bool:
        return len(self.samples) == self.window_length

    @property
    def has_neutral(self) -> bool:
        return self.neutral is not None

    @property
    def track_age_s(self) -> float:
        if self.first_seen_s is None or self.last_seen_s is None:
            return 0.0
        return self.last_seen_s - self.first_seen_s

    def clip(self) -> np.ndarray:
        """(C, T, S, S) float32 appearance input of the window for this state's clip input (requires
        window_ready)."""
        if not self.window_ready:
            raise ValueError(f"face {self.track_id}: window has {self.window_frames} of {self.window_length} frames")
        return make_clip(list(self.samples), self.clip_input, None if self.neutral is None else self.neutral.gray)

    def geo(self) -> tuple[np.ndarray, np.float32]:
        """(difference image neutral -> newest frame, valid)."""
        if not self.samples:
            raise ValueError(f"face {self.track_id}: no frames yet")
        return make_geo(None if self.neutral is None else self.neutral.points68, self.samples[-1].points68)

    # -- neutral reference --------------------------------------------------------------------------------------
    def capture_neutral(self) -> bool:
        """Take the newest frame as the neutral reference; False when the face has no frame yet."""
        if not self.samples:
            return False
        self.neutral = Neutral.of(self.samples[-1], self.stamps[-1], "captured")
        self._first = self._least = self._model = None  # automatic choices stop for this face
        self._close_search()
        return True

    def offer_neutral_probability(self, probability: float, neutral_is_top: bool) -> bool:
        """The model's neutral probability for the newest frame ("auto" policy with a neutral class) and whether
        neutral is the model's most probable class for it: the newest frame becomes the reference when the model
        calls it neutral with the highest probability so far. Returns whether it did."""
        if self.neutral_policy != "auto" or not self.samples or not neutral_is_top:
            return False
        if self._captured:
            return False
        p = float(probability)
        if not np.isfinite(p):
            return False
        if self._model is None or p > self._model.score:
            self._model = self.neutral = Neutral.of(self.samples[-1], self.stamps[-1], "model", p)
            return True
        return False

    def set_policy(self, policy: str) -> None:
        """Change the policy: the face gets the reference the new policy would have chosen over the track's life
        (see the module docstring); a captured reference stays."""
        self.neutral_policy = check_neutral_policy(policy)
        if not self._captured:
            self.neutral = self._policy_choice()

    def memory_items(self) -> int:
        """How many arrays this state holds (for memory tests)."""
        references = {id(r) for r in (self.neutral, self._first, self._least, self._model) if r is not None}
        return len(self.samples) + len(self._candidates) + len(references)

    @property
    def _captured(self) -> bool:
        return self.neutral is not None and self.neutral.source == "captured"

    def _policy_choice(self) -> Neutral | None:
        """The automatic reference of the present policy."""
        if self.neutral_policy == "first_frame":
            return self._first
        if self.neutral_policy == "least_motion":
            return self._least
        if self.neutral_policy == "auto":
            return self._model if self._model is not None else self._least
        return None  # manual

    def _least_motion(self, sample: FaceSample, stamp_s: float) -> None:
        if not self._search_open:
            return
        start = self._candidate_stamps[0] if self._candidate_stamps else stamp_s
        if stamp_s - start > self.neutral_search_s or len(self._candidates) >= self.max_neutral_candidates:
            self._close_search()
            return
        self._candidates.append(sample)
        self._candidate_stamps.append(stamp_s)
        pts = np.stack([np.asarray(c.points68, np.float32) for c in self._candidates])  # (N, 68, 2)
        mean = pts.mean(axis=0)
        dist = (np.linalg.norm(pts - mean, axis=2) * _W[:, 0]).mean(axis=1)  # (N,)
        best = int(np.argmin(dist))
        self._least = Neutral.of(self._candidates[best], self._candidate_stamps[best], "least_motion",
                                 float(dist[best]))

    def _close_search(self) -> None:
        self._search_open = False
        self._candidates, self._candidate_stamps = [], []
