"""Where the frames of a new bag come from: image files of a folder, a video file, one CK+ sequence (with the
label file that marks its neutral and peak frames)."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from fer_ros.classes import NEUTRAL
from fer_ros.metrics import class_key
from fer_ros.ratelimit import LOGGER_NAME, RateLimiter
from fer_ros.tools.bagtools import WARN_PERIOD_S, BagError
from fer_ros.tools.labels import LabelRange, LabelSet
from fer_ros.training.data.datasets import FRAME_NAME, read_ckplus_emotion

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

log = logging.getLogger(LOGGER_NAME)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def image_files(folder: str | Path) -> list[Path]:
    """Image files directly in `folder`, in natural name order (frame2 before frame10)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BagError(f"{folder} is not a folder of images")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=_natural_key)
    if not files:
        raise BagError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def resize_frame(rgb8: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The frame scaled by `scale` (area interpolation down, cubic up); 1 returns it unchanged."""
    if scale == 1.0:
        return rgb8
    h, w = rgb8.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(rgb8, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def read_image_file(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (gray and 16-bit images converted); BagError if unreadable."""
    from fer_ros.image_codec import read_image
    img = read_image(path, cv2.IMREAD_COLOR)
    if img is None:
        raise BagError(f"{path} is not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def folder_frames(files: Sequence[Path], scale: float = 1.0, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB8 frames of image files, at most `max_frames` (frames read: an unreadable file does not count, and no
    file is read once there are that many). Unreadable files are skipped with a rate-limited warning, and once the
    files are read, a warning says how many of them were skipped."""
    limiter = RateLimiter(WARN_PERIOD_S)
    tried: list[Path] = []
    skipped = read = 0
    for f in files:
        if max_frames is not None and read >= max_frames:
            break
        tried.append(f)
        try:
            frame = resize_frame(read_image_file(f), scale)
        except BagError as exc:
            skipped += 1
            limiter.warning("unreadable", f"skipped: {exc}")
            continue
        read += 1
        yield frame
    if skipped:
        folders = sorted({str(f.parent) for f in tried})
        where = f"in {folders[0]}" if len(folders) == 1 else f"in {len(folders)} folders"
        log.warning(f"{skipped} of {len(tried)} images {where} were unreadable and skipped")


@dataclass
class VideoInfo:
    """Frame count and rate OpenCV reports for a video file (count may be 0 when unknown)."""

    frames: int
    fps: float
    size_px: tuple[int, int]


def video_info(path: str | Path) -> VideoInfo:
    path = Path(path)
    if path.is_dir():
        raise BagError(f"{path} is a folder, not a video file; for a folder of images use the folder source: "
                       f"fer-make-bag folder {path} <output bag>")
    if not path.is_file():
        raise BagError(f"video file {path} does not exist")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise BagError(f"OpenCV cannot open {path} as a video")
        return VideoInfo(max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))), float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                         (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))))
    finally:
        cap.release()


def video_frames(path: str | Path, scale: float = 1.0, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB8 frames of a video file decoded by OpenCV, optionally scaled, at most `max_frames`."""
    video_info(path)  # clear error for a missing or unreadable file
    cap = cv2.VideoCapture(str(path))
    try:
        n = 0
        while max_frames is None or n < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            n += 1
            yield resize_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), scale)
    finally:
        cap.release()


# --------------------------------------------------------------------------------------------------------------
# CK+ sequences
# --------------------------------------------------------------------------------------------------------------
@dataclass
class CkSequence:
    """One CK+ sequence: frame files from neutral onset to peak, its emotion label (None when unlabelled), and
    `neutral_files`: how many of the first files are neutral frames by their source, in the class-folder layout
    those from the `neutral/` folder (None for the release, whose sequences start at the neutral onset)."""

    subject: str
    sequence: str
    files: list[Path]
    label: str | None
    neutral_files: int | None = None


def find_ckplus_sequence(seq_dir: str | Path, sequence: str | None = None) -> CkSequence:
    """A CK+ sequence from either layout:

    - the official release: `seq_dir` = .../cohn-kanade-images/S005/001 (frames S005_001_<n>.png); the label is
      read from .../Emotion/S005/001/S005_001_*_emotion.txt when present;
    - class folders: `seq_dir` = the root holding <class>/S<subject>_<sequence>_<frame>.png and `sequence` =
      "S011_006": the frames of that sequence in all class folders, label = the non-neutral folder they are in;
      only the frames of the `neutral/` folder are neutral frames (the others are peak frames). A folder's class
      is its name as the training and evaluation readers read it (metrics.class_key: `Happy/` holds "happy").
    """
    seq_dir = Path(seq_dir)
    if not seq_dir.is_dir():
        raise BagError(f"{seq_dir} is not a folder")
    if sequence is not None:
        m = re.fullmatch(r"S?(\d+)_(\d+)", sequence)
        if not m:
            raise BagError(f"sequence {sequence!r} is not S<subject>_<sequence>, e.g. S011_006")
        subject, seq = m.group(1), m.group(2)
        files, labels = [], set()
        for cls_dir in sorted(p for p in seq_dir.iterdir() if p.is_dir()):
            for f in cls_dir.glob(f"S{subject}_{seq}_*"):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                    if class_key(cls_dir.name) != NEUTRAL:
                        labels.add(class_key(cls_dir.name))
        if not files:
            raise BagError(f"no frames of S{subject}_{seq} in the class folders under {seq_dir}")
        if len(labels) > 1:
            raise BagError(f"S{subject}_{seq} appears under several classes: {', '.join(sorted(labels))}")
        files.sort(key=lambda p: int(FRAME_NAME.match(p.stem).group(3)) if FRAME_NAME.match(p.stem) else 0)
        neutral_files = next((i for i, f in enumerate(files) if class_key(f.parent.name) != NEUTRAL), len(files))
        return CkSequence(f"S{subject}", seq, files, labels.pop() if labels else None, neutral_files)
    try:
        files = image_files(seq_dir)
    except BagError:
        raise BagError(f"{seq_dir} holds no images: give a sequence folder of the CK+ release "
                       f"(cohn-kanade-images/Sxxx/nnn, e.g. cohn-kanade-images/S011/006), or the root of class "
                       f"folders (<class>/S<subject>_<sequence>_<frame>.png) with --sequence (e.g. --sequence "
                       f"S011_006)") from None
    label = None
    seq_dir = Path(os.path.abspath(seq_dir))  # a relative path ("001", ".") still names subject and Emotion folder
    subject, seq = seq_dir.parent.name, seq_dir.name
    emotion_root = seq_dir.parent.parent.parent / "Emotion"
    emotion_dir = emotion_root / subject / seq
    emotion_files = sorted(emotion_dir.glob("*_emotion.txt")) if emotion_dir.is_dir() else []
    if not emotion_root.is_dir():
        log.warning(f"no Emotion folder at {emotion_root} (the CK+ release keeps it beside cohn-kanade-images): "
                    f"{subject}_{seq} is unlabelled; for the class-folder layout pass the root and --sequence")
    if emotion_files:
        try:
            label = read_ckplus_emotion(emotion_files[-1])
        except ValueError as exc:
            raise BagError(f"{emotion_files[-1]} does not hold a CK+ emotion code: {exc}") from None
    return CkSequence(subject, seq, files, label)


def ckplus_labels(n_frames: int, label: str | None, neutral_frames: int = 1, peak_frames: int = 3,
                  neutral_files: int | None = None) -> LabelSet:
    """Frame-range labels of a CK+ sequence of `n_frames`: the first `neutral_frames` neutral, the last
    `peak_frames` the sequence's label (frames in between are left unlabelled: the expression is building up).
    `neutral_files` (CkSequence.neutral_files): how many of the first frames are neutral by their source; only
    those may be labelled neutral and none of them with the emotion (None: a release sequence, all may)."""
    ranges = []
    n_neutral = min(neutral_frames, n_frames, n_frames if neutral_files is None else neutral_files)
    if n_neutral > 0:
        ranges.append(LabelRange(0, n_neutral, NEUTRAL))
    if label is not None and label != NEUTRAL and peak_frames > 0:
        start = max(n_neutral if neutral_files is None else neutral_files, n_frames - peak_frames)
        if start < n_frames:
            ranges.append(LabelRange(start, n_frames, label))
    return LabelSet("frame", ranges)


def labels_path_for(bag_path: Path) -> Path:
    """Where the bag maker puts the label file of a bag: beside it, named <bag>.labels.csv."""
    bag_path = Path(bag_path)
    return bag_path.with_name(bag_path.name + ".labels.csv")
