"""Labelled face sequences from the four supported dataset layouts (LAYOUTS), detected automatically: the two CK+
layouts below, FER+ (ferplus.py) and KDEF (kdef.py). A folder that holds datasets in its subfolders is refused:
each dataset is its own --data.

- `ckplus_official`: the CK+ release: cohn-kanade-images/S005/001/S005_001_00000001.png ..., and
  Emotion/S005/001/S005_001_000000NN_emotion.txt holding the CK+ emotion code (1 anger, 2 contempt, 3 disgust,
  4 fear, 5 happy, 6 sadness, 7 surprise). A sequence runs from the neutral onset (first frame) to the peak (last).
  Folders under cohn-kanade-images/ named otherwise (a copy such as S005/001_old), and Emotion files that do not
  hold one of those codes (read_ckplus_emotion), are skipped, listed in `Dataset.skipped` with the reason.
- `class_folders`: <root>/<class>/S<subject>_<sequence>_<frame>.png, peak frames of each sequence in its class's
  folder, and the neutral first frames in <root>/neutral/ with the same subject and sequence numbers. Every frame
  in a class folder is labelled (`Sequence.labelled_frames`); a sequence's clip is its last T.

In both CK+ layouts an entry named as a frame that is not a file (a folder, a link to nothing) is skipped and listed
in `Dataset.skipped` with the reason.

A `Sequence` is (neutral frame or None, last T frames oldest first, label). Neutral frames also form sequences of
their own (label "neutral", the frame repeated T times) for class sets that have a neutral class. Every label is
given in one form, metrics.class_key's (surrounding spaces off, lower case): a `Happy/` folder holds "happy" faces.

A labelled sequence whose own first frame is missing (as in a few of the CK+48 crops' sequences, or a release sequence
too short to have a first frame apart from its last T) borrows the neutral first frame of the same subject's nearest other
sequence, by number, the earlier on a tie: 3DAGN compares the expression with the face at rest, and the node
always has such a reference, taken when it began to track the face, not at the onset of this expression.
`load_dataset(..., borrow_neutral=False)` leaves those sequences without a reference.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from fer_ros.classes import CKPLUS7, NEUTRAL
from fer_ros.metrics import class_key
from fer_ros.training.data import ferplus, kdef

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
FRAME_NAME = re.compile(r"^S(\d+)_(\d+)_(\d+)$")
SUBJECT_FOLDER = re.compile(r"^S[0-9]+$")   # the CK+ release's cohn-kanade-images/S005
SEQUENCE_FOLDER = re.compile(r"^[0-9]+$")   # ... and its sequence folders, S005/001
CKPLUS_CODES = {i + 1: name for i, name in enumerate(CKPLUS7)}


def ckplus_code_label(code: str | float) -> str:
    """The class a CK+ emotion code names: 0 neutral, 1..7 CKPLUS_CODES; written as a number ("5",
    "5.0000000e+00", 5.0). ValueError saying why for a code that is not a finite whole number of 0..7."""
    try:
        value = float(code)
    except (TypeError, ValueError):
        raise ValueError(f"{code!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{code} is not a finite number")
    if value != int(value):
        raise ValueError(f"{code} is not a whole number")
    if int(value) == 0:
        return NEUTRAL
    if int(value) not in CKPLUS_CODES:
        raise ValueError(f"{code} is not a CK+ emotion code (0 neutral, 1 anger ... 7 surprise)")
    return CKPLUS_CODES[int(value)]


def read_ckplus_emotion(path: str | Path) -> str:
    """The class a CK+ Emotion file names by its first number (ckplus_code_label; the release writes
    "   5.0000000e+00"). ValueError saying why for a file that cannot be read, is not UTF-8 text, is empty or does
    not start with a CK+ emotion code."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"cannot be read: {exc.strerror or exc}") from None
    words = text.split()
    if not words:
        raise ValueError("empty")
    return ckplus_code_label(words[0])


class DatasetError(ValueError):
    """The dataset folder cannot be read; the message says what is wrong and what to do."""


@dataclass
class Sequence:
    subject: str
    sequence: str
    label: str
    peaks: list[Path]
    neutral: Path | None = None
    neutral_borrowed: bool = False  # the reference is a neutral frame of another sequence or session of the subject
    split: str | None = None        # the data's own split ("train", "valid", "test"), for data that has one
    votes: dict[str, float] | None = None  # share of the annotators' votes per class (soft targets), where known
    view: str = ""                  # camera angle, where the data has several (a reference is of the same angle)
    name: str | None = None         # the sample's name in the data, where it is not S<subject>_<sequence>
    still: bool = False             # the clip is one photo repeated (no motion between its frames)
    # every frame of the sequence that carries its label, oldest first, where the data labels more than the last T
    # (class folders: every frame in the folder); fer-eval scores each, training reads `peaks` alone
    labelled_frames: list[Path] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.name if self.name is not None else f"S{self.subject}_{self.sequence}"

    @property
    def self_reference(self) -> bool:
        """The neutral reference is the sample's own newest frame (no other moment of the face was available)."""
        return self.neutral is not None and self.neutral == self.peaks[-1]


@dataclass
class Dataset:
    root: Path
    layout: str
    sequences: list[Sequence]
    classes_found: list[str]
    skipped: list[str] = field(default_factory=list)  # file and folder names that do not follow the layout
    # (subject, sequence) -> the sequence's neutral first frame, for every sequence, labelled or not (KDEF:
    # (actor, session + angle) -> the neutral photo)
    neutral_frames: dict[tuple[str, str], Path] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)  # what the layout's reader counted (FER+: rows per split)

    def subjects(self) -> list[str]:
        return sorted({s.subject for s in self.sequences})


LAYOUTS = ("ckplus_official", "class_folders", "ferplus", "kdef")


def detect_layout(root: Path) -> str:
    if (root / "cohn-kanade-images").is_dir() and (root / "Emotion").is_dir():
        return "ckplus_official"
    if ferplus.detect(root):
        return "ferplus"
    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    nested = {d for d in subdirs if _holds_dataset(d)}
    if nested:
        held = [d for d in subdirs if d in nested or kdef.detect(d)]
        raise DatasetError(f"{root} holds datasets in its subfolders ({', '.join(d.name + '/' for d in held)}), "
                           f"which would be read as one dataset or not at all: give each dataset as its own --data, "
                           f"e.g. " + " ".join(f"--data {d}" for d in held))
    if any(_frame_files(d) for d in subdirs):
        return "class_folders"
    if kdef.detect(root):
        return "kdef"
    raise DatasetError(f"{root}: none of the known layouts: the CK+ release (cohn-kanade-images/ and Emotion/), "
                       f"class folders (<class>/S<subject>_<sequence>_<frame>.png), FER+ (FER2013Train/, "
                       f"FER2013Valid/ or FER2013Test/ with label.csv) or KDEF (<session><sex><id><expression>"
                       f"<angle>.jpg, e.g. AF01HAS.jpg); see README 'Training'")


def _holds_dataset(folder: Path) -> bool:
    """The folder is a dataset of its own in the CK+ release, FER+ or class-folder layout. (A KDEF folder inside
    another is not counted: the KDEF release itself keeps its photos in one folder per session and actor.)"""
    if (folder / "cohn-kanade-images").is_dir() and (folder / "Emotion").is_dir():
        return True
    if ferplus.detect(folder):
        return True
    return any(d.is_dir() and _frame_files(d) for d in folder.iterdir())


def load_dataset(root: str | Path, frames: int = 3, with_neutral_sequences: bool = True,
                 borrow_neutral: bool = True, splits: tuple[str, ...] | None = None,
                 angles: tuple[str, ...] | None = None) -> Dataset:
    """The labelled samples of a dataset folder in any known layout (LAYOUTS, detected), labels in class_key form.
    splits: for data with its own split (FER+), which splits to read (None: all present). with_neutral_sequences:
    neutral frames are samples of their own. borrow_neutral: a sample without its own neutral frame is compared
    with a neutral frame of the same subject taken at another moment (CK+: another sequence's first frame; KDEF
    always does this). angles: for data shot from several angles (KDEF: kdef.ANGLES), which to read (None: all)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    layout = detect_layout(root)
    if layout == "ferplus":
        seqs, skipped, counts = ferplus.load(root, frames, splits)
        ds = Dataset(root, layout, seqs, [], skipped, {}, counts)
    elif layout == "kdef":
        seqs, skipped, neutral = kdef.load(root, frames, angles)
        ds = Dataset(root, layout, seqs, [], skipped, neutral)
        if not with_neutral_sequences:
            ds.sequences = [s for s in ds.sequences if s.label != NEUTRAL]
    else:
        ds = _load_official(root, frames) if layout == "ckplus_official" else _load_class_folders(root, frames)
        if borrow_neutral:
            _borrow_neutrals(ds)
        if with_neutral_sequences:
            ds.sequences += _neutral_sequences(ds, frames)
    if not ds.sequences and layout == "kdef" and angles is not None:
        raise DatasetError(f"{root}: no KDEF photo of the angles {', '.join(angles)}; choose some of "
                           f"{', '.join(kdef.ANGLES)}")
    if not ds.sequences:
        raise DatasetError(f"{root}: no labelled sequences found ({layout} layout)")
    for s in ds.sequences:
        s.label = class_key(s.label)
    ds.classes_found = sorted({s.label for s in ds.sequences})
    return ds


def _frame_named(folder: Path) -> list[Path]:
    """The entries of folder named as frames (S<subject>_<sequence>_<frame> with an image suffix), files or not."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and FRAME_NAME.match(p.stem))


def _frame_files(folder: Path) -> list[Path]:
    return [p for p in _frame_named(folder) if p.is_file()]


def _not_a_file(p: Path) -> str | None:
    """Why an entry named as an image cannot be read as one (a folder, a link to nothing, another kind of entry);
    None for a file (or a link to one)."""
    if p.is_file():
        return None
    if p.is_dir():
        return "a folder, not an image file"
    if p.is_symlink() and not p.exists():
        return "a link to nothing"
    return "not a file"


def _parse(p: Path) -> tuple[str, str, int]:
    m = FRAME_NAME.match(p.stem)
    return m.group(1), m.group(2), int(m.group(3))


def _load_class_folders(root: Path, frames: int) -> Dataset:
    groups: dict[tuple[str, str, str], list[tuple[int, Path]]] = defaultdict(list)
    neutral: dict[tuple[str, str], Path] = {}
    skipped = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        for p in sorted(d.iterdir()):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if not FRAME_NAME.match(p.stem):
                skipped.append(str(p.relative_to(root)))
                continue
            if why := _not_a_file(p):
                skipped.append(f"{p.relative_to(root)} ({why})")
                continue
            subject, seq, idx = _parse(p)
            if class_key(d.name) == NEUTRAL:
                prev = neutral.get((subject, seq))
                if prev is None or _parse(prev)[2] > idx:
                    neutral[(subject, seq)] = p
            else:
                groups[(d.name, subject, seq)].append((idx, p))
    seqs = []
    for (label, subject, seq), items in sorted(groups.items()):
        items.sort()
        peaks = [p for _, p in items[-frames:]]
        while len(peaks) < frames:  # fewer frames than the window: repeat the first
            peaks.insert(0, peaks[0])
        seqs.append(Sequence(subject, seq, label, peaks, neutral.get((subject, seq)),
                             labelled_frames=[p for _, p in items]))
    return Dataset(root, "class_folders", seqs, [], skipped, neutral)


def _load_official(root: Path, frames: int) -> Dataset:
    images, emotion = root / "cohn-kanade-images", root / "Emotion"
    seqs, skipped = [], []
    neutral: dict[tuple[str, str], Path] = {}
    for subj_dir in sorted(p for p in images.iterdir() if p.is_dir()):
        if not SUBJECT_FOLDER.match(subj_dir.name):
            skipped.append(f"{subj_dir.relative_to(root)}/ (folder not named S<subject number>)")
            continue
        for seq_dir in sorted(p for p in subj_dir.iterdir() if p.is_dir()):
            if not SEQUENCE_FOLDER.match(seq_dir.name):
                skipped.append(f"{seq_dir.relative_to(root)}/ (folder not named by a sequence number)")
                continue
            named = _frame_named(seq_dir)
            skipped += [f"{p.relative_to(root)} ({why})" for p in named if (why := _not_a_file(p))]
            files = sorted((p for p in named if p.is_file()), key=lambda p: _parse(p)[2])
            if not files:
                continue
            subject, seq = subj_dir.name.lstrip("S"), seq_dir.name
            labels = sorted((emotion / subj_dir.name / seq_dir.name).glob("*_emotion.txt"))
            if not labels or len(files) > frames:  # a labelled sequence's first frame is neutral unless a peak
                neutral[(subject, seq)] = files[0]
            if not labels:
                continue  # unlabelled sequence: its first frame still serves as a neutral sample
            try:
                label = read_ckplus_emotion(labels[-1])
                if label == NEUTRAL:
                    raise ValueError("code 0 (neutral), not an expression code 1..7")
            except ValueError as exc:
                skipped.append(f"{labels[-1].relative_to(root)} ({exc})")
                continue
            peaks = files[-frames:]
            while len(peaks) < frames:
                peaks.insert(0, peaks[0])
            seqs.append(Sequence(subject, seq, label, peaks, files[0] if len(files) > frames else None))
    return Dataset(root, "ckplus_official", seqs, [], skipped, neutral)


def _borrow_neutrals(ds: Dataset) -> None:
    """Give each labelled sequence without a neutral frame the first frame of its subject's nearest other sequence
    (by sequence number; the earlier on a tie)."""
    by_subject: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for (subject, seq), p in ds.neutral_frames.items():
        by_subject[subject].append((int(seq), p))
    for s in ds.sequences:
        if s.neutral is not None:
            continue
        others = [(abs(n - int(s.sequence)), n, p) for n, p in by_subject.get(s.subject, []) if n != int(s.sequence)]
        if others:
            s.neutral, s.neutral_borrowed = min(others)[2], True


def _neutral_sequences(ds: Dataset, frames: int) -> list[Sequence]:
    """Every neutral onset frame as a 'neutral' sequence: a still face compared with the first frame of the same
    subject's nearest other sequence (by number; the earlier on a tie), or with itself when the subject has no other.
    A neutral face is a state, not an identity: its reference was taken at another moment, as a robot's is."""
    by_subject: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for (subject, seq), p in ds.neutral_frames.items():
        by_subject[subject].append((int(seq), p))
    out = []
    for (subject, seq), p in sorted(ds.neutral_frames.items()):
        others = [(abs(n - int(seq)), n, q) for n, q in by_subject[subject] if n != int(seq)]
        ref = min(others)[2] if others else p
        out.append(Sequence(subject, seq, NEUTRAL, [p] * frames, ref, neutral_borrowed=bool(others), still=True))
    return out
