"""Small labelled face-sequence datasets generated from the one real face the tests use (skimage's astronaut),
in both layouts the data loader reads:

- `write_class_folder_dataset(root, ...)`: <root>/<class>/S<subject>_<sequence>_<frame>.png (the last frames of
  each sequence) and <root>/neutral/S<subject>_<sequence>_<first frame>.png;
- `write_ckplus_official_dataset(root, ...)`: cohn-kanade-images/S<subj>/<seq>/S<subj>_<seq>_<frame>.png and
  Emotion/S<subj>/<seq>/S<subj>_<seq>_<last frame>_emotion.txt holding the CK+ emotion code.

Each sequence starts at the neutral face and warps it progressively towards a class-specific expression (mouth
corners and brows pushed in a direction that depends on the class), plus a slight per-frame jitter; subjects
differ by pose, scale and brightness. The FaceLandmarker finds the face in every image (tested), and the classes
differ geometrically so a model can learn them.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fer_ros.classes import CKPLUS7

# The astronaut's face: centre and side (px) of a CK+-like square crop around it, and expression anchor points.
_CENTRE = (225.0, 122.0)
_SIDE = 160.0
_MOUTH_CORNERS = ((205.0, 146.0), (244.0, 146.0))
_BROWS = ((206.0, 88.0), (246.0, 88.0))
CKPLUS_CODE = {name: i + 1 for i, name in enumerate(CKPLUS7)}


@dataclass
class SynthInfo:
    """What was written: root, layout, labelled sequences per class, neutral frames, and all image paths."""

    root: Path
    layout: str
    sequences: dict[str, int] = field(default_factory=dict)
    neutral_frames: int = 0
    images: list[Path] = field(default_factory=list)


def _astronaut() -> np.ndarray:
    from skimage import data
    return data.astronaut()


def _class_angle(label: str) -> float:
    if label in CKPLUS7:
        k = CKPLUS7.index(label)
    else:
        k = zlib.crc32(label.encode()) % 97
    return 2.0 * math.pi * k / 7.0


def expression_frame(label: str, intensity: float, subject: int, jitter_seed: int, size_px: int = 96,
                     gray: bool = True) -> np.ndarray:
    """One (size_px, size_px) uint8 gray (or RGB) face crop: the astronaut as subject `subject`, warped towards
    `label`'s expression by `intensity` in [0, 1], with a slight jitter drawn from `jitter_seed`."""
    import cv2
    src = _astronaut().astype(np.float32)
    h, w = src.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = _class_angle(label)
    amp = 9.0 * float(intensity)  # px in the astronaut image (the face is ~100 px wide)
    dx = np.zeros((h, w), np.float32)
    dy = np.zeros((h, w), np.float32)

    def bump(cx, cy, vx, vy, sigma=9.0):
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma * sigma))
        dx[...] += vx * g
        dy[...] += vy * g

    for side, (cx, cy) in zip((-1.0, 1.0), _MOUTH_CORNERS):
        bump(cx, cy, side * amp * math.cos(theta), -amp * math.sin(theta))
    for cx, cy in _BROWS:
        bump(cx, cy, 0.0, -0.8 * amp * math.cos(theta + 1.0), sigma=11.0)
    warped = cv2.remap(src, xx - dx, yy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # Subject: pose, scale, brightness. Frame: sub-pixel jitter.
    rs = np.random.default_rng(1000 + subject)
    angle = float(rs.uniform(-8, 8))
    scale = float(rs.uniform(0.92, 1.08))
    gain, bias = float(rs.uniform(0.8, 1.15)), float(rs.uniform(-20, 20))
    rj = np.random.default_rng(jitter_seed)
    cx = _CENTRE[0] + float(rj.uniform(-1.0, 1.0))
    cy = _CENTRE[1] + float(rj.uniform(-1.0, 1.0))
    m = cv2.getRotationMatrix2D((cx, cy), angle + float(rj.uniform(-0.5, 0.5)), scale * size_px / _SIDE)
    m[0, 2] += size_px / 2.0 - cx
    m[1, 2] += size_px / 2.0 - cy
    crop = cv2.warpAffine(warped, m, (size_px, size_px), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    crop = np.clip(crop * gain + bias, 0, 255).astype(np.uint8)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if gray else crop


def _write(path: Path, img: np.ndarray) -> Path:
    import cv2
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"could not write {path}")
    return path


def _sequence_frames(label: str, subject: int, seq: int, length: int, size_px: int, gray: bool) -> list[np.ndarray]:
    """`length` frames from neutral (intensity 0) to peak (intensity 1)."""
    return [expression_frame(label, i / max(length - 1, 1), subject, jitter_seed=subject * 1000 + seq * 50 + i,
                             size_px=size_px, gray=gray) for i in range(length)]


def write_class_folder_dataset(root: str | Path, classes: Sequence[str] = ("anger", "happy", "surprise"),
                               subjects: Iterable[int] = (10, 11), sequences_per_class: int = 1,
                               peak_frames: int = 3, sequence_length: int = 6, with_neutral: bool = True,
                               missing_neutral: Iterable[tuple[int, int]] = (), size_px: int = 96,
                               gray: bool = True) -> SynthInfo:
    """Class-folder layout. For each subject and class, `sequences_per_class` sequences of `sequence_length`
    frames; the last `peak_frames` go to <class>/, the first to neutral/ (unless `with_neutral` is False or
    (subject, sequence) is in `missing_neutral`). Sequence numbers run 1, 2, ... per subject across classes."""
    root = Path(root)
    info = SynthInfo(root, "class_folders")
    missing = set(tuple(x) for x in missing_neutral)
    for subject in subjects:
        seq = 0
        for label in classes:
            for _ in range(sequences_per_class):
                seq += 1
                frames = _sequence_frames(label, subject, seq, sequence_length, size_px, gray)
                first = 1
                for i, img in enumerate(frames[-peak_frames:]):
                    n = sequence_length - peak_frames + i + 1
                    info.images.append(_write(root / label / f"S{subject:03d}_{seq:03d}_{n:08d}.png", img))
                if with_neutral and (subject, seq) not in missing:
                    info.images.append(_write(root / "neutral" / f"S{subject:03d}_{seq:03d}_{first:08d}.png",
                                              frames[0]))
                    info.neutral_frames += 1
                info.sequences[label] = info.sequences.get(label, 0) + 1
    return info


def write_ckplus_official_dataset(root: str | Path, classes: Sequence[str] = ("anger", "happy", "surprise"),
                                  subjects: Iterable[int] = (10, 11), sequences_per_class: int = 1,
                                  sequence_length: int = 5, unlabelled_per_subject: int = 0, size_px: int = 96,
                                  gray: bool = True) -> SynthInfo:
    """Official CK+ release layout: every frame of each sequence under cohn-kanade-images/, the emotion code of
    labelled ones under Emotion/. `classes` must be CK+ emotions. `unlabelled_per_subject` extra sequences have
    no emotion file (their first frame is still a neutral sample)."""
    root = Path(root)
    info = SynthInfo(root, "ckplus_official")
    for label in classes:
        if label not in CKPLUS_CODE:
            raise ValueError(f"{label!r} has no CK+ emotion code; use one of {', '.join(CKPLUS7)}")
    for subject in subjects:
        seq = 0
        todo = [(label, True) for label in classes for _ in range(sequences_per_class)]
        todo += [(classes[0], False)] * unlabelled_per_subject
        for label, labelled in todo:
            seq += 1
            sdir = f"S{subject:03d}"
            frames = _sequence_frames(label, subject, seq, sequence_length, size_px, gray)
            for i, img in enumerate(frames):
                name = f"{sdir}_{seq:03d}_{i + 1:08d}.png"
                info.images.append(_write(root / "cohn-kanade-images" / sdir / f"{seq:03d}" / name, img))
            info.neutral_frames += 1
            if labelled:
                emo = root / "Emotion" / sdir / f"{seq:03d}" / f"{sdir}_{seq:03d}_{sequence_length:08d}_emotion.txt"
                emo.parent.mkdir(parents=True, exist_ok=True)
                emo.write_text(f"   {float(CKPLUS_CODE[label]):.7e}\n")
                info.sequences[label] = info.sequences.get(label, 0) + 1
    # The loader expects the Emotion/ folder even when no sequence is labelled.
    (root / "Emotion").mkdir(parents=True, exist_ok=True)
    return info
