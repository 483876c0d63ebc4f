"""Small labelled face datasets generated from the one real face the tests use (skimage's astronaut), in every
layout the data loader reads:

- `write_class_folder_dataset(root, ...)`: <root>/<class>/S<subject>_<sequence>_<frame>.png (the last frames of
  each sequence) and <root>/neutral/S<subject>_<sequence>_<first frame>.png;
- `write_ckplus_official_dataset(root, ...)`: cohn-kanade-images/S<subj>/<seq>/S<subj>_<seq>_<frame>.png and
  Emotion/S<subj>/<seq>/S<subj>_<seq>_<last frame>_emotion.txt holding the CK+ emotion code;
- `write_ferplus_dataset(root, ...)`: FER+'s split folders of 48x48 faces with label.csv vote rows;
- `write_kdef_dataset(root, ...)`: KDEF's <session><sex><id><expression><angle>.jpg photos.

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


# FER+ vote columns (label.csv order) of the synthetic images, by the class each image shows
_FERPLUS_VOTE_COLUMN = {"neutral": 0, "happy": 1, "surprise": 2, "sadness": 3, "anger": 4, "disgust": 5, "fear": 6,
                        "contempt": 7}


def ferplus_votes(label: str, kind: str = "clear") -> list[int]:
    """Ten vote counts (label.csv order) for an image of `label`: "clear" (8 votes for it, 2 for neutral or
    happy), "split" (5 against 5: no majority), "single" (7 for it and three single votes elsewhere: the singles are
    dropped), "unknown" (7 votes for unknown) or "not_a_face" (7 votes for NF)."""
    v = [0] * 10
    col = _FERPLUS_VOTE_COLUMN[label]
    other = 0 if col != 0 else 1
    if kind == "clear":
        v[col], v[other] = 8, 2
    elif kind == "split":
        v[col], v[other] = 5, 5
    elif kind == "single":
        v[col] = 7
        for c in [c for c in range(8) if c != col][:3]:
            v[c] = 1
    elif kind == "unknown":
        v[8], v[col] = 7, 3
    elif kind == "not_a_face":
        v[9], v[col] = 7, 3
    else:
        raise ValueError(f"unknown vote kind {kind!r}")
    return v


def write_ferplus_dataset(root: str | Path, splits: dict[str, Sequence[tuple[str, str]]] | None = None,
                          size_px: int = 48) -> SynthInfo:
    """FER+ layout: <root>/<split folder>/fer<NNNNNNN>.png (48x48 gray faces) and label.csv rows
    `name,"(0, 0, 48, 48)",<10 votes>`. splits: folder -> [(class shown, vote kind of ferplus_votes)], default a
    few clear images of three classes in FER2013Train and FER2013Valid. Image numbers run on across folders."""
    root = Path(root)
    info = SynthInfo(root, "ferplus")
    splits = splits or {"FER2013Train": [(c, "clear") for c in ("anger", "happy", "surprise", "neutral")] * 2,
                        "FER2013Valid": [(c, "clear") for c in ("anger", "happy", "surprise", "neutral")]}
    n = 0
    for folder, items in splits.items():
        rows = []
        for label, kind in items:
            name = f"fer{n:07d}.png"
            intensity = 0.0 if label == "neutral" else 1.0
            img = expression_frame(label if label != "neutral" else "happy", intensity, subject=20 + n % 7,
                                   jitter_seed=n, size_px=size_px)
            info.images.append(_write(root / folder / name, img))
            rows.append(f'{name},"(0, 0, {size_px}, {size_px})",' + ",".join(map(str, ferplus_votes(label, kind))))
            if kind in ("clear", "single"):
                info.sequences[label] = info.sequences.get(label, 0) + 1
            n += 1
        (root / folder / "label.csv").write_text("\n".join(rows) + "\n")
    return info


KDEF_CODES = {"fear": "AF", "anger": "AN", "disgust": "DI", "happy": "HA", "neutral": "NE", "sadness": "SA",
              "surprise": "SU"}


def write_kdef_dataset(root: str | Path, actors: Sequence[tuple[str, int]] = (("F", 1), ("M", 2), ("F", 3)),
                       sessions: str = "AB", angles: Sequence[str] = ("S",),
                       expressions: Sequence[str] = ("anger", "happy", "surprise", "neutral"),
                       missing: Iterable[str] = (), subfolders: bool = False, size_px: int = 160) -> SynthInfo:
    """KDEF layout: <session><sex><id><expression><angle>.jpg colour photos, flat or (subfolders) in one folder
    per session and actor as the release has them. `missing`: file stems not written. Each actor is its own
    synthetic subject; the B session is shot with another jitter and brightness than A."""
    root = Path(root)
    info = SynthInfo(root, "kdef")
    skip = set(missing)
    for sex, ident in actors:
        for session in sessions:
            for angle in angles:
                for label in expressions:
                    stem = f"{session}{sex}{ident:02d}{KDEF_CODES[label]}{angle}"
                    if stem in skip:
                        continue
                    seed = ident * 100 + (0 if session == "A" else 50) + list(KDEF_CODES).index(label)
                    img = expression_frame(label if label != "neutral" else "happy",
                                           0.0 if label == "neutral" else 1.0, subject=30 + ident,
                                           jitter_seed=seed, size_px=size_px, gray=False)
                    if session == "B":
                        img = np.clip(img.astype(np.float32) * 0.9 + 12, 0, 255).astype(np.uint8)
                    folder = root / f"{session}{sex}{ident:02d}" if subfolders else root
                    info.images.append(_write(folder / f"{stem}.jpg", img))
                    if label == "neutral":
                        info.neutral_frames += 1
                    info.sequences[label] = info.sequences.get(label, 0) + 1
    return info
