"""The landmarker's model file: MediaPipe's `face_landmarker.task` bundle (face detector, face mesh network,
blendshapes), shipped in `models/`, found in the source tree or the install space and checked against its sha256
before anything reads it."""
from __future__ import annotations

import hashlib
from pathlib import Path

LANDMARKER_MODEL_NAME = "face_landmarker.task"
LANDMARKER_MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"


class LandmarkerError(RuntimeError):
    """The landmarker cannot be created (missing or altered model file, bad option); the message says what to do."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_landmarker_model() -> Path:
    """Path of the shipped `models/face_landmarker.task` (source tree first, then the ROS install space), after
    checking its sha256. Raises LandmarkerError naming where it looked and what to do."""
    from fer_ros.resources import shipped_candidates
    candidates = shipped_candidates("fer_ros", "models", LANDMARKER_MODEL_NAME)[::-1]  # source tree first
    for path in candidates:
        if path.is_file():
            check_model_file(path)
            return path
    raise LandmarkerError(
        f"face landmarker model not found (looked at {', '.join(str(c) for c in candidates)}); it ships with "
        f"fer_ros in models/{LANDMARKER_MODEL_NAME}: restore it from the repository (see models/NOTICE)")


def check_model_file(path: Path, sha256: str = LANDMARKER_MODEL_SHA256) -> None:
    """Raise LandmarkerError unless `path` exists and has the expected sha256."""
    path = Path(path)
    if not path.is_file():
        raise LandmarkerError(f"face landmarker model {path} does not exist")
    got = sha256_of(path)
    if got != sha256:
        raise LandmarkerError(
            f"face landmarker model {path} has sha256 {got}, expected {sha256}: the file is damaged or not the "
            "shipped one; restore it from the repository")
