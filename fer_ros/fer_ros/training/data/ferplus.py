"""The FER+ layout: FER2013's 48x48 face images with ten crowd votes each (FER+ labels).

    <root>/FER2013Train/label.csv, fer0000000.png, ...
    <root>/FER2013Valid/label.csv, ...
    <root>/FER2013Test/label.csv, ...      (any of the three split folders may be missing)

`label.csv` has no header; a row is `file name, "(x, y, w, h)" face box, 10 vote counts` in the order of
`VOTE_ORDER`. The majority label follows FER+'s rule (`majority_label`); the vote distribution over the emotion
classes is kept as soft targets (`vote_shares`). The images carry no identity: each is a still face of its own
"subject", compared with itself as the node compares a face that has kept its expression since it appeared, and the
split folders are the data's own train/validation/test split.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

# label.csv's vote columns, as this code names the classes (FER+'s "happiness" is "happy" here)
VOTE_ORDER: tuple[str, ...] = ("neutral", "happy", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                               "unknown", "not_a_face")
EMOTIONS: tuple[str, ...] = VOTE_ORDER[:8]
SPLITS: dict[str, str] = {"FER2013Train": "train", "FER2013Valid": "valid", "FER2013Test": "test"}
LABEL_FILE = "label.csv"
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as errors="surrogateescape" reads them
_BOX = re.compile(r"^\(\s*-?\d+\s*,\s*-?\d+\s*,\s*\d+\s*,\s*\d+\s*\)$")


def is_split_folder(folder: Path) -> bool:
    return (folder / LABEL_FILE).is_file()


def split_folders(root: Path) -> list[Path]:
    """The split folders of a FER+ root (or the root itself when it is one split folder)."""
    if is_split_folder(root):
        return [root]
    return [root / name for name in SPLITS if is_split_folder(root / name)]


def detect(root: Path) -> bool:
    return bool(split_folders(root))


def split_of(folder: Path) -> str:
    """train / valid / test for FER+'s folder names; other folder names count as held-out data ("test")."""
    return SPLITS.get(folder.name, "test")


def majority_label(votes: list[int] | tuple[int, ...]) -> str | None:
    """FER+'s majority rule: single votes are dropped, then the class holding more than half of the remaining votes
    wins; None when there is no such class or it is `unknown` or `not_a_face`."""
    kept = [v if v > 1 else 0 for v in votes]
    total = sum(kept)
    if total == 0:
        return None
    best = max(range(len(kept)), key=lambda i: kept[i])
    if 2 * kept[best] <= total:
        return None
    label = VOTE_ORDER[best]
    return label if label in EMOTIONS else None


def vote_shares(votes: list[int] | tuple[int, ...]) -> dict[str, float]:
    """The share of each emotion class among the emotion votes, single votes dropped (as the majority rule does);
    {} when no emotion keeps a vote."""
    kept = {c: float(v) for c, v in zip(EMOTIONS, votes) if v > 1}
    total = sum(kept.values())
    return {c: v / total for c, v in kept.items()} if total > 0 else {}


def read_label_file(folder: Path) -> tuple[list[tuple[str, list[int]]], list[str]]:
    """(file name, 10 votes) rows of a split folder's label.csv and the rows that could not be read (as text).
    The file is UTF-8 text (a byte order mark at its start is not part of the first file name); a row holding bytes
    that are not UTF-8 is a row that could not be read, the others are kept."""
    rows, bad = [], []
    # surrogateescape: each undecodable byte becomes a lone surrogate in its row alone (UTF-8 text holds none)
    with open(folder / LABEL_FILE, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if any(_UNDECODED.search(c) for c in row):
                bad.append(f"{folder.name}/{LABEL_FILE} line {n} (not UTF-8 text)")
                continue
            try:
                name = row[0].strip()
                if not name or "/" in name or "\\" in name or len(row) != 12 or not _BOX.match(row[1].strip()):
                    raise ValueError
                votes = [int(c) for c in row[2:]]
                if any(v < 0 for v in votes):
                    raise ValueError
            except ValueError:
                bad.append(f"{folder.name}/{LABEL_FILE} line {n}")
                continue
            rows.append((name, votes))
    return rows, bad


def load(root: Path, frames: int, splits: tuple[str, ...] | None = None):
    """The FER+ images of `root` as still-face sequences (the image repeated `frames` times, its own reference),
    labelled by the majority rule, with their vote shares. splits: which splits to read (None: all present).
    Returns (sequences, skipped file names, counts per split: images / majority / no_majority / missing / bad rows)."""
    from fer_ros.training.data.datasets import Sequence
    seqs, skipped, counts = [], [], {}
    for folder in split_folders(root):
        split = split_of(folder)
        if splits is not None and split not in splits:
            continue
        rows, bad = read_label_file(folder)
        c = counts.setdefault(split, {"rows": 0, "majority": 0, "no_majority": 0, "missing": 0, "bad_rows": 0})
        c["rows"] += len(rows)
        c["bad_rows"] += len(bad)
        skipped += bad
        for name, votes in rows:
            path = folder / name
            if not path.is_file():
                c["missing"] += 1
                skipped.append(f"{folder.name}/{name} (listed, not found)")
                continue
            label = majority_label(votes)
            if label is None:
                c["no_majority"] += 1
                continue
            c["majority"] += 1
            seqs.append(Sequence(subject=f"{folder.name}/{Path(name).stem}", sequence="1", label=label,
                                 peaks=[path] * frames, neutral=path, split=split, votes=vote_shares(votes),
                                 name=f"{folder.name}/{Path(name).stem}", still=True))
    return seqs, skipped, counts

