"""Temporal smoothing of per-face class probabilities: an exponential moving average with a time constant in seconds.

    p <- p + a * (p_new - p),   a = 1 - exp(-dt_s / time_constant_s)

so the weight of a frame does not depend on the frame rate. A time constant of 0 turns smoothing off. Used by the
node and by offline replay so both give the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: An average last updated this many time constants ago would weigh e^-20 (2e-9) against a face's next scores:
#: nothing, so it can be forgotten.
FORGET_AFTER_TIME_CONSTANTS = 20.0


@dataclass
class _FaceAverage:
    probs: np.ndarray
    stamp_s: float


@dataclass
class ProbabilitySmoother:
    """Exponential smoothing per face id. `time_constant_s` = 0 returns the input unchanged."""

    time_constant_s: float = 0.0
    _faces: dict[int, _FaceAverage] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.set_time_constant(self.time_constant_s)

    def set_time_constant(self, time_constant_s: float) -> None:
        """Change the time constant (s, >= 0); running averages are kept."""
        if not math.isfinite(time_constant_s) or time_constant_s < 0:
            raise ValueError(f"smoothing time constant must be a finite number of seconds >= 0, got {time_constant_s}")
        self.time_constant_s = float(time_constant_s)

    def update(self, face_id: int, probs: np.ndarray, stamp_s: float) -> np.ndarray:
        """Blend `probs` (K,) of face `face_id` at time `stamp_s` (s) into its average and return the average.

        The first value of a face, a change in the number of classes, or a stamp going backwards restarts the
        average. Scores or a stamp that are not finite numbers are returned as they are and not averaged in (the
        face's average starts again with its next finite scores), so one bad frame cannot spoil the average for
        good. The result sums to 1 when the inputs do."""
        probs = np.asarray(probs, dtype=np.float32)
        if self.time_constant_s <= 0:
            self._faces.pop(face_id, None)
            return probs
        if not (math.isfinite(stamp_s) and np.isfinite(probs).all()):
            self._faces.pop(face_id, None)
            return probs
        prev = self._faces.get(face_id)
        if prev is None or prev.probs.shape != probs.shape or stamp_s < prev.stamp_s:
            self._faces[face_id] = _FaceAverage(probs.copy(), stamp_s)
            return probs
        alpha = 1.0 - math.exp(-(stamp_s - prev.stamp_s) / self.time_constant_s)
        prev.probs = (prev.probs + np.float32(alpha) * (probs - prev.probs)).astype(np.float32)
        prev.stamp_s = stamp_s
        return prev.probs.copy()

    def forget_stale(self, stamp_s: float) -> None:
        """Forget every face whose average, at `stamp_s` (s), was last updated more than FORGET_AFTER_TIME_CONSTANTS
        time constants ago (it would no longer weigh in) or later than `stamp_s` (time went back: it would restart).
        A face missed for a few frames keeps its average; memory stays bounded."""
        horizon_s = FORGET_AFTER_TIME_CONSTANTS * self.time_constant_s
        for face_id in [f for f, a in self._faces.items() if not 0.0 <= stamp_s - a.stamp_s <= horizon_s]:
            del self._faces[face_id]

    def retain(self, face_ids) -> None:
        """Forget every face not in `face_ids` (call with the ids of the current frame; bounds memory)."""
        keep = set(face_ids)
        for face_id in [f for f in self._faces if f not in keep]:
            del self._faces[face_id]

    def __len__(self) -> int:
        return len(self._faces)
