"""Ground-truth labels for a recording: time or frame ranges with an expression label, per face or for the
dominant face.

A label file is CSV text (UTF-8, with or without a byte order mark). Lines starting with `#` and blank lines are
ignored. The first other line is the header and names the unit of the ranges:

    start_s,end_s,label,face          # seconds from the first image of the replayed topic (its time_s)
    start_frame,end_frame,label,face  # 0-based index of the image message on the topic (bag order)

Every following line is one range: `start,end,label[,face]`.

- Seconds are counted by the images' header stamps. Where the stamps go back (a bag recorded across a loop or a
  clock reset), the time goes on over the jump by the bag's record time instead, so it never goes back: the
  `time_s` column of `fer-replay`'s per-frame CSV.
- Ranges are half-open: `start <= t < end` (seconds) or `start <= i < end` (frames). `end` may be `inf` or empty
  for "until the end of the recording". Frame bounds are whole numbers.
- `label` is a class name of the model (e.g. `happy`, `neutral`), read as `metrics.class_key` reads class names
  (surrounding spaces off, lower case: `Happy` is `happy`), as fer-eval matches them; the replay checks it against
  the model's classes.
- `face` is a track id as written by `fer-replay` in its per-frame CSV (run once without labels to learn the ids),
  or empty / `*` / `dominant` for the dominant face: the face with the largest box in that frame.
  The `face` column may be left out entirely: every range then labels the dominant face. A line with more cells
  than the header names is an error: a track id needs the `face` column in the header.
- Two ranges for the same face (or both for the dominant face) must not overlap.
- A file without a range (a header alone) is an error: it has nothing to score.

A face-specific range takes precedence over a dominant-face range covering the same frame.

Example (a person neutral for 2 s, then smiling; a second person, track 2, surprised from 3 s on):

    # session 1, camera A
    start_s,end_s,label,face
    0.0,2.0,neutral,
    2.0,inf,happy,
    3.0,inf,surprise,2
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from fer_ros.metrics import class_key

UNITS = ("s", "frame")
_HEADERS = {"s": ("start_s", "end_s"), "frame": ("start_frame", "end_frame")}
_DOMINANT_WORDS = ("", "*", "dominant")


class LabelError(ValueError):
    """A label file that cannot be used; the message names the file, the line and what was wrong."""


@dataclass(frozen=True)
class LabelRange:
    """One labelled range: [start, end) in the file's unit, the label, and the face (None = the dominant face)."""

    start: float
    end: float
    label: str
    face: int | None = None

    def covers(self, position: float) -> bool:
        return self.start <= position < self.end


@dataclass
class LabelSet:
    """All ranges of one label file. `unit` is "s" (seconds from the first image) or "frame" (0-based index)."""

    unit: str
    ranges: list[LabelRange] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise LabelError(f"label unit must be one of {UNITS}, got {self.unit!r}")

    @property
    def labels(self) -> set[str]:
        return {r.label for r in self.ranges}

    def label_for(self, frame_index: int, time_s: float, face_id: int | None, is_dominant: bool) -> str | None:
        """The true label of a face in one frame, or None when no range covers it.

        `frame_index` is the 0-based index of the image on the topic, `time_s` its time in seconds from the first
        image; `face_id` the track id and `is_dominant` whether it has the largest box in the frame."""
        position = self._position(frame_index, time_s)
        if face_id is not None:
            for r in self.ranges:
                if r.face == face_id and r.covers(position):
                    return r.label
        if is_dominant:
            for r in self.ranges:
                if r.face is None and r.covers(position):
                    return r.label
        return None

    def labelled_faces(self, frame_index: int, time_s: float) -> set[int]:
        """The track ids that a face's own range labels in one frame (dominant-face ranges left out)."""
        position = self._position(frame_index, time_s)
        return {r.face for r in self.ranges if r.face is not None and r.covers(position)}

    def _position(self, frame_index: int, time_s: float) -> float:
        return float(frame_index) if self.unit == "frame" else float(time_s)

    def check_classes(self, class_names: Sequence[str]) -> None:
        """Raise LabelError when a label is not one of `class_names` (the model's classes), names matched by
        metrics.class_key."""
        known = {class_key(n) for n in class_names}
        unknown = sorted(label for label in self.labels if class_key(label) not in known)
        if unknown:
            raise LabelError(f"labels {', '.join(unknown)} are not classes of the model; "
                             f"use one of: {', '.join(class_names)}")


def _parse_number(text: str, what: str, where: str, allow_inf: bool) -> float:
    text = text.strip()
    if text == "" and allow_inf:
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise LabelError(f"{where}: {what} {text!r} is not a number") from None
    if math.isnan(value) or (math.isinf(value) and not allow_inf) or value < 0:
        raise LabelError(f"{where}: {what} must be a number >= 0{' or inf' if allow_inf else ''}, got {text!r}")
    return value


def _check_frame_bound(value: float, text: str, what: str, where: str) -> None:
    if not (math.isinf(value) or value.is_integer()):
        raise LabelError(f"{where}: {what} {text.strip()!r} is not a whole frame number; frame ranges count the "
                         "images of the topic (0, 1, 2, ...): use seconds (start_s,end_s) for times between frames")


def _frame_bound(value: float, what: str, r: LabelRange) -> int | str:
    if math.isinf(value):
        return "inf"
    if not float(value).is_integer():
        raise LabelError(f"range [{r.start:g}, {r.end:g}) of {r.label!r}: {what} {value:g} is not a whole frame "
                         "number; round it, or write the labels in seconds")
    return int(value)


def _parse_face(text: str, where: str) -> int | None:
    text = text.strip()
    if text.lower() in _DOMINANT_WORDS:
        return None
    try:
        face = int(text)
    except ValueError:
        raise LabelError(f"{where}: face {text!r} is not a track id (an integer) or '*' for the dominant face") \
            from None
    if face < 0:
        raise LabelError(f"{where}: face id must be >= 0, got {face}")
    return face


def parse_labels(text: str, source: str = "<labels>") -> LabelSet:
    """Parse label file text (see the module docstring). Raises LabelError naming `source` and the line."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise LabelError(f"{source}: no header line; the first line must be 'start_s,end_s,label,face' "
                         "or 'start_frame,end_frame,label,face'")
    header_no, header_line = lines[0]
    header = [h.strip().lower() for h in next(csv.reader([header_line]))]
    unit = next((u for u, (a, b) in _HEADERS.items() if header[:2] == [a, b]), None)
    if unit is None or len(header) < 3 or header[2] != "label" or (len(header) > 3 and header[3] != "face") \
            or len(header) > 4:
        raise LabelError(f"{source}:{header_no}: header {header_line.strip()!r} is not 'start_s,end_s,label[,face]' "
                         "or 'start_frame,end_frame,label[,face]'")
    if len(lines) == 1:
        raise LabelError(f"{source}: no label ranges after the header; add one line 'start,end,label[,face]' per "
                         "range")
    ranges: list[LabelRange] = []
    for n, line in lines[1:]:
        where = f"{source}:{n}"
        cells = next(csv.reader([line]))
        if len(cells) < 3 or len(cells) > 4:
            raise LabelError(f"{where}: expected 'start,end,label[,face]', got {line.strip()!r}")
        if len(cells) > len(header):
            raise LabelError(f"{where}: {len(cells)} cells but the header names {len(header)} "
                             f"({','.join(header)}): add 'face' to the header to label a face by its track id, or "
                             f"remove the last cell; got {line.strip()!r}")
        start = _parse_number(cells[0], "start", where, allow_inf=False)
        end = _parse_number(cells[1], "end", where, allow_inf=True)
        if unit == "frame":
            _check_frame_bound(start, cells[0], "start", where)
            _check_frame_bound(end, cells[1], "end", where)
        if end <= start:
            raise LabelError(f"{where}: end ({cells[1].strip()}) must be greater than start ({cells[0].strip()})")
        label = class_key(cells[2])
        if not label:
            raise LabelError(f"{where}: empty label")
        face = _parse_face(cells[3], where) if len(cells) == 4 else None
        ranges.append(LabelRange(start, end, label, face))
    _check_overlaps(ranges, source)
    return LabelSet(unit, ranges)


def _check_overlaps(ranges: Iterable[LabelRange], source: str) -> None:
    by_face: dict[int | None, list[LabelRange]] = {}
    for r in ranges:
        by_face.setdefault(r.face, []).append(r)
    for face, items in by_face.items():
        items = sorted(items, key=lambda r: r.start)
        for a, b in zip(items, items[1:]):
            if b.start < a.end:
                who = "the dominant face" if face is None else f"face {face}"
                raise LabelError(f"{source}: ranges [{a.start:g}, {a.end:g}) and [{b.start:g}, {b.end:g}) of {who} "
                                 "overlap")


def load_labels(path: str | Path) -> LabelSet:
    """Read a label file; raises LabelError (missing file, bad header, bad line, overlap)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # "-sig": a byte order mark (Excel's "CSV UTF-8") is skipped
    except FileNotFoundError:
        raise LabelError(f"label file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"label file {path} cannot be read: {exc}") from None
    return parse_labels(text, str(path))


def format_labels(labels: LabelSet, comment: str = "") -> str:
    """Label file text for `labels` (what `load_labels` reads back). LabelError for a frame bound that is not a
    whole number (it would not read back the same)."""
    out = io.StringIO()
    for line in comment.splitlines():
        out.write(f"# {line}\n")
    start_col, end_col = _HEADERS[labels.unit]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([start_col, end_col, "label", "face"])
    for r in labels.ranges:
        if labels.unit == "frame":
            start, end = _frame_bound(r.start, "start", r), _frame_bound(r.end, "end", r)
        else:
            start, end = r.start, "inf" if math.isinf(r.end) else r.end
        writer.writerow([start, end, r.label, "" if r.face is None else r.face])
    return out.getvalue()


def save_labels(path: str | Path, labels: LabelSet, comment: str = "") -> Path:
    """Write `labels` to `path` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_labels(labels, comment), encoding="utf-8")
    return path
