"""The perception pipeline: frame -> landmarks -> tracking -> crops/LBP -> per-face windows -> (with an engine)
one batched inference for all faces whose window is full.

`Recognizer.process(frame, stamp_s)` returns one `FaceResult` per face. It is two stages that may run on two
threads, one frame apart: `perceive(frame, stamp_s)` (the landmarker: most of the time, and threads of its own) and
`recognise(perception)` (crops, LBP, tracking, windows and the networks); `process` is one after the other.
Without an engine the results carry ids, boxes, landmarks and window/neutral state only (probs None). The engine
is any object with `.predict(clip (B, 1, T, S, S), geo (B, C, G, G), geo_valid (B,)) -> probs (B, K)` and
`.class_names`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import cv2
import numpy as np

from fer_ros.classes import NEUTRAL
from fer_ros.crop import CropConfig, to_gray
from fer_ros.face_state import FaceTrackState, check_neutral_policy
from fer_ros.frames import BadFrame, as_rgb8
from fer_ros.landmarker import FaceLandmarks, Landmarker
from fer_ros.preprocess import (BASE_CLIP_INPUT, DEFAULT_WINDOW_LENGTH, FaceSample, Preprocessor,
                                 check_preprocess_spec, spec_clip_input)
from fer_ros.ratelimit import RateLimiter
from fer_ros.tracking import Detection, Tracker

THUMB_PX = 12  # side of the gray thumbnail used as the tracker's appearance cue
_RIGID = list(range(0, 17)) + list(range(27, 36)) + [36, 39, 42, 45]  # jaw, nose, eye corners


@dataclass
class FaceResult:
    """One face in one frame.

    id: track id. box: (x0, y0, x1, y1) px. points68: (68, 2) float32 px. window_frames / window_ready: how many
    of the T frames are in the face's window / whether it is full. has_neutral: a neutral reference exists.
    probs: (K,) float32 or None (no engine, or window not full). label / confidence: the top class and its
    probability ("" / 0.0 without probs). class_names: the engine's classes (empty without an engine).
    track_age_s: time since the face was first seen (s). blendshapes: the landmarker's blendshape scores of this
    frame (empty unless it was made with `blendshapes=True`).
    """

    id: int
    box: tuple[float, float, float, float]
    points68: np.ndarray
    window_frames: int
    window_ready: bool
    has_neutral: bool
    probs: np.ndarray | None = None
    label: str = ""
    confidence: float = 0.0
    class_names: tuple[str, ...] = ()
    track_age_s: float = 0.0
    blendshapes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


@dataclass
class Perception:
    """What `Recognizer.perceive` found in one frame, for `Recognizer.recognise`: the RGB frame, its stamp (s), the
    faces' landmarks, whether the stamp went back (the tracks reset first), and the landmark time (ms)."""

    rgb: np.ndarray
    stamp_s: float
    faces: list[FaceLandmarks]
    reset: bool = False
    landmarks_ms: float = 0.0


def repeats_stamp(stamp_s: float, previous_s: float | None) -> bool:
    """Whether a frame at `stamp_s` (s) has the time of the frame before it (`previous_s`; None: there was none).
    One moment must not count twice in a face's window (nor in its smoothed scores), so such a frame is skipped:
    by Recognizer.perceive, and by fer_node before it decodes the image."""
    return previous_s is not None and stamp_s == previous_s


def face_timeout_problem(face_timeout_s: float) -> str:
    """Why `face_timeout_s` is not a usable face timeout (it must be a finite number of seconds above 0)."""
    return (f"face_timeout_s must be a number of seconds above 0, got {face_timeout_s}: a face unseen for longer "
            "than this is dropped, so with 0 every face is dropped before the next frame can find it again and none "
            "is ever recognised; give about 1 s (longer to keep faces through short occlusions)")


def engine_preprocess_spec(engine: Any) -> dict | None:
    """The preprocessing spec an engine carries (engine.preprocess_spec or engine.manifest.preprocess), if any."""
    spec = getattr(engine, "preprocess_spec", None)
    if spec is None:
        manifest = getattr(engine, "manifest", None)
        spec = getattr(manifest, "preprocess", None)
        if spec is None and isinstance(manifest, dict):
            spec = manifest.get("preprocess")
    return dict(spec) if spec else None


def _model_crop_and_frames(spec: dict, crop_cfg: CropConfig | None,
                           window_length: int | None) -> tuple[CropConfig, int | None]:
    """The crop and clip length of a model with preprocessing spec `spec`: the spec's, and a crop_cfg or
    window_length given must equal them (ValueError naming both otherwise), as runtime.build_recognizer asks of
    the window_length setting."""
    model_crop = CropConfig.from_spec(spec["crop"])
    if crop_cfg is not None and crop_cfg != model_crop:
        given, model = crop_cfg.to_spec(), model_crop.to_spec()
        differ = ", ".join(f"{k} {given[k]!r} (the model's {model[k]!r})" for k in given if given[k] != model[k])
        raise ValueError(f"crop_cfg does not match the model's crop: {differ}; the model reads only crops made as "
                         "in its training: give no crop_cfg (use the model's)")
    frames = spec.get("clip", {}).get("frames")
    if frames:
        if window_length is not None and int(window_length) != int(frames):
            raise ValueError(f"window_length {window_length} does not match the model's {int(frames)} frames; "
                             "give none (use the model's)")
        window_length = int(frames)
    return model_crop, window_length


def check_face_numbers(face: FaceLandmarks) -> None:
    """ValueError unless the face's box and points are finite numbers (a landmarker may give NaN or inf)."""
    if not (np.all(np.isfinite(np.asarray(face.box, np.float64)))
            and np.all(np.isfinite(np.asarray(face.points68, np.float64)))):
        raise ValueError("its box or landmarks are not finite numbers")


def largest_faces(faces: list[FaceLandmarks], max_faces: int) -> list[FaceLandmarks]:
    """The `max_faces` faces with the largest boxes (by area; a box that is not a finite number counts as
    smallest), in the landmarker's order."""
    if len(faces) <= max_faces:
        return faces

    def area(face: FaceLandmarks) -> float:
        x0, y0, x1, y1 = (float(v) for v in face.box)
        a = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
        return a if math.isfinite(a) else -1.0
    ranked = sorted(range(len(faces)), key=lambda i: -area(faces[i]))  # stable: ties keep their order
    keep = sorted(ranked[:max_faces])
    return [faces[i] for i in keep]


class Recognizer:
    """See the module docstring.

    landmarker: a Landmarker (default: MediaPipeLandmarker in VIDEO mode with max_faces); the Recognizer closes
    it in close(). engine: optional model. crop_cfg / window_length: default to the engine's preprocessing spec,
    else CropConfig() and 3; given with an engine that has a spec, they must equal the spec's (ValueError
    otherwise: the model reads only crops and clips made as in its training). max_faces: the largest faces of a
    frame kept, whatever the landmarker found. face_timeout_s: a face unseen this long is dropped (s).
    neutral_policy: see face_state.NEUTRAL_POLICIES. min_face_size_px: faces with a smaller box side are not
    reported."""

    def __init__(self, landmarker: Landmarker | None = None, engine: Any = None, crop_cfg: CropConfig | None = None,
                 window_length: int | None = None, max_faces: int = 4, face_timeout_s: float = 1.0,
                 neutral_policy: str = "auto", min_face_size_px: float = 0.0) -> None:
        spec = engine_preprocess_spec(engine) if engine is not None else None
        if spec is not None:
            check_preprocess_spec(spec)
            crop_cfg, window_length = _model_crop_and_frames(spec, crop_cfg, window_length)
        self.clip_input = spec_clip_input(spec) if spec is not None else BASE_CLIP_INPUT
        self.crop_cfg = crop_cfg or CropConfig()
        self.window_length = int(window_length or getattr(engine, "window_length", None) or DEFAULT_WINDOW_LENGTH)
        if self.window_length < 1:
            raise ValueError(f"window_length must be >= 1, got {self.window_length}")
        self.engine = engine
        self.class_names: tuple[str, ...] = tuple(getattr(engine, "class_names", ()) or ())
        self._neutral_index = self.class_names.index(NEUTRAL) if NEUTRAL in self.class_names else None
        self.preprocessor = Preprocessor(self.crop_cfg)
        self.max_faces = int(max_faces)
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.tracker = Tracker(timeout_s=1.0)
        self.states: dict[int, FaceTrackState] = {}
        self.neutral_policy = "auto"
        self.min_face_size_px = 0.0
        self.configure(min_face_size_px=min_face_size_px, face_timeout_s=face_timeout_s,
                       neutral_policy=neutral_policy)
        if landmarker is None:
            from fer_ros.landmarker import MediaPipeLandmarker
            landmarker = MediaPipeLandmarker(mode="video", max_faces=self.max_faces)
        self.landmarker = landmarker
        self.timings_ms: dict[str, float] = {}
        self._last_stamp_s: float | None = None
        self._reset_pending = False
        self._latest_ids: list[int] = []  # the faces recognise reported last
        self._warn = RateLimiter(5.0)

    # -- settings --------------------------------------------------------------------------------------------
    def configure(self, min_face_size_px: float | None = None, face_timeout_s: float | None = None,
                  neutral_policy: str | None = None) -> None:
        """Change settings at run time; ValueError (nothing changed) for a bad value."""
        if min_face_size_px is not None and not (math.isfinite(min_face_size_px) and min_face_size_px >= 0):
            raise ValueError(f"min_face_size_px must be >= 0, got {min_face_size_px}")
        if face_timeout_s is not None and not (math.isfinite(face_timeout_s) and face_timeout_s > 0):
            raise ValueError(face_timeout_problem(face_timeout_s))
        if neutral_policy is not None:
            check_neutral_policy(neutral_policy)
        if min_face_size_px is not None:
            self.min_face_size_px = float(min_face_size_px)
        if face_timeout_s is not None:
            self.tracker.timeout_s = float(face_timeout_s)
        if neutral_policy is not None and neutral_policy != self.neutral_policy:
            self.neutral_policy = neutral_policy
            for state in self.states.values():
                state.set_policy(neutral_policy)

    # -- main entry --------------------------------------------------------------------------------------------
    def process(self, frame: Any, stamp_s: float | None = None) -> list[FaceResult]:
        """Results for every face in `frame` (any form frames.as_rgb8 accepts) at `stamp_s` (s; default: the
        monotonic clock). Bad frames, and frames whose stamp repeats the previous frame's, give [] and a
        rate-limited warning; a stamp earlier than the previous one resets all tracks (logged)."""
        perception = self.perceive(frame, stamp_s)
        return [] if perception is None else self.recognise(perception)

    def perceive(self, frame: Any, stamp_s: float | None = None) -> Perception | None:
        """The first stage of `process`: the frame checked and its faces' landmarks; None for a bad frame or stamp,
        or a stamp that repeats the previous frame's (repeats_stamp; warned about, rate-limited). Frames must go
        through perceive in stamp order and through recognise in the same order; recognise of one frame may run, on
        another thread, while perceive runs on the next."""
        t0 = time.perf_counter()
        try:
            rgb = as_rgb8(frame)
        except BadFrame as exc:
            self._warn.warning("bad_frame", f"frame skipped: {exc}")
            return None
        stamp_s = time.monotonic() if stamp_s is None else float(stamp_s)
        if not math.isfinite(stamp_s):
            self._warn.warning("bad_stamp", f"frame skipped: stamp {stamp_s} is not a finite number of seconds")
            return None
        if repeats_stamp(stamp_s, self._last_stamp_s):
            self._warn.warning("repeated_stamp", f"frame skipped: its stamp {stamp_s:.9f} s repeats the previous "
                                                 "frame's, and one moment must not count twice in a face's window; "
                                                 "give every frame the time it was taken")
            return None
        reset = self._last_stamp_s is not None and stamp_s < self._last_stamp_s
        if reset:
            self._warn.warning("time_backwards", f"frame stamp went back from {self._last_stamp_s:.3f} s to "
                                                 f"{stamp_s:.3f} s (bag loop or clock reset): face tracks reset")
        self._last_stamp_s = stamp_s
        # the reset waits for a frame whose landmarks come back: a failed detect must not lose it
        self._reset_pending = self._reset_pending or reset
        faces = largest_faces(list(self.landmarker.detect(rgb, stamp_s)), self.max_faces)
        reset, self._reset_pending = self._reset_pending, False
        return Perception(rgb, stamp_s, faces, reset, 1e3 * (time.perf_counter() - t0))

    def recognise(self, perception: Perception) -> list[FaceResult]:
        """The second stage of `process`: crops and LBP, tracking, the face windows and one batched inference;
        results sorted by id; `timings_ms` then holds this frame's stages."""
        if perception.reset:
            self.reset()
        rgb, stamp_s, faces = perception.rgb, perception.stamp_s, perception.faces
        t1 = time.perf_counter()
        gray = to_gray(rgb)
        kept: list[tuple[FaceLandmarks, FaceSample]] = []
        for face in faces:
            try:
                check_face_numbers(face)
                kept.append((face, self.preprocessor.face_sample(gray, face)))
            except ValueError as exc:  # degenerate landmarks
                self._warn.warning("bad_face", f"face skipped: {exc}")
        t2 = time.perf_counter()
        ids = self.tracker.update([Detection(f.box, _descriptor(s)) for f, s in kept], stamp_s)
        for tid in [t for t in self.states if t not in self.tracker.tracks]:
            del self.states[tid]
        for tid, (_, sample) in zip(ids, kept):
            state = self.states.get(tid)
            if state is None:
                state = self.states[tid] = FaceTrackState(tid, self.window_length, self.neutral_policy,
                                                          clip_input=self.clip_input)
            state.push(sample, stamp_s)
        t3 = time.perf_counter()
        probs = self._infer([self.states[t] for t in ids])
        t4 = time.perf_counter()
        results = []
        for (face, _), tid, p in zip(kept, ids, probs):
            x0, y0, x1, y1 = face.box
            if min(x1 - x0, y1 - y0) < self.min_face_size_px:
                continue
            results.append(self._result(face, self.states[tid], p))
        results.sort(key=lambda r: r.id)
        self._latest_ids = [r.id for r in results]
        self.timings_ms = {"landmarks": perception.landmarks_ms, "crops_lbp": 1e3 * (t2 - t1),
                           "tracking": 1e3 * (t3 - t2), "inference": 1e3 * (t4 - t3),
                           "total": perception.landmarks_ms + 1e3 * (time.perf_counter() - t1),
                           "faces": float(len(kept))}
        return results

    def capture_neutral(self, face_ids: Iterable[int] | None = None) -> tuple[list[int], list[int]]:
        """Take each face's newest frame as its neutral reference (when face_ids is None or empty: every face the
        latest recognise reported, not the tracks kept alive while unseen nor faces too small to report). Returns
        (captured ids, requested ids not tracked)."""
        wanted = list(self._latest_ids) if not face_ids else [int(i) for i in face_ids]
        captured, missing = [], []
        for tid in wanted:
            state = self.states.get(tid)
            if state is not None and state.capture_neutral():
                captured.append(tid)
            else:
                missing.append(tid)
        return captured, missing

    def reset(self) -> None:
        """Forget every face (tracks, windows, neutral references)."""
        self.tracker.reset()
        self.states.clear()
        self._latest_ids = []

    def close(self) -> None:
        """Release the landmarker (MediaPipe must be closed explicitly)."""
        if self.landmarker is not None:
            self.landmarker.close()
            self.landmarker = None

    def __enter__(self) -> "Recognizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------------------
    def _infer(self, states: list[FaceTrackState]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = [None] * len(states)
        if self.engine is None:
            return out
        ready = [i for i, s in enumerate(states) if s.window_ready]
        if not ready:
            return out
        clips = np.stack([states[i].clip() for i in ready])  # (B, C, T, S, S)
        geos, valid = zip(*(states[i].geo() for i in ready))
        probs = np.asarray(self.engine.predict(clips, np.stack(geos), np.asarray(valid, np.float32)), np.float32)
        if probs.shape != (len(ready), len(self.class_names)):
            raise ValueError(f"engine returned scores of shape {probs.shape}, expected "
                             f"({len(ready)}, {len(self.class_names)})")
        for row, i in enumerate(ready):
            out[i] = probs[row]
            if self._neutral_index is not None:
                states[i].offer_neutral_probability(float(probs[row, self._neutral_index]),
                                                    int(np.argmax(probs[row])) == self._neutral_index)
        return out

    def _result(self, face: FaceLandmarks, state: FaceTrackState, probs: np.ndarray | None) -> FaceResult:
        label, confidence = "", 0.0
        if probs is not None:
            best = int(np.argmax(probs))
            label, confidence = self.class_names[best], float(probs[best])
        return FaceResult(id=state.track_id, box=tuple(float(v) for v in face.box),
                          points68=np.asarray(face.points68, np.float32), window_frames=state.window_frames,
                          window_ready=state.window_ready, has_neutral=state.has_neutral, probs=probs, label=label,
                          confidence=confidence, class_names=self.class_names, track_age_s=state.track_age_s,
                          blendshapes=face.blendshapes)


def _descriptor(sample: FaceSample) -> np.ndarray:
    """Appearance cue for the tracker: a normalised gray thumbnail of the aligned face, plus the shape of its
    rigid landmarks (jaw, nose, eye corners) at half weight."""
    thumb = cv2.resize(sample.gray, (THUMB_PX, THUMB_PX), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    thumb -= thumb.mean()
    thumb /= max(float(np.linalg.norm(thumb)), 1e-6)
    shape = sample.points68[_RIGID].astype(np.float32).ravel()
    shape -= shape.mean()
    shape /= max(float(np.linalg.norm(shape)), 1e-6)
    return np.concatenate([thumb, 0.5 * shape])
