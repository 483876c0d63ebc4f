"""Helpers for the fer-eval tests: generated datasets in both layouts and a small model trained on them for two
epochs by fer-train (made once per test session and reused)."""
from __future__ import annotations

import json
from pathlib import Path

from synth_data import write_ckplus_official_dataset, write_class_folder_dataset

CLASSES = ("anger", "happy", "surprise")
SUBJECTS = (10, 11, 12)


def class_folder_data(base: Path) -> Path:
    """Class folders: 3 classes x 3 subjects, 3 peak frames each, neutral/ first frames (made once)."""
    root = Path(base) / "synth_folders"
    if not (root / "neutral").is_dir():
        write_class_folder_dataset(root, CLASSES, SUBJECTS, peak_frames=3, sequence_length=5)
    return root


def official_data(base: Path) -> Path:
    """CK+ release layout: 3 classes x 3 subjects, 5-frame sequences, one unlabelled sequence per subject."""
    root = Path(base) / "synth_official"
    if not (root / "cohn-kanade-images").is_dir():
        write_ckplus_official_dataset(root, CLASSES, SUBJECTS, sequence_length=5, unlabelled_per_subject=1)
    return root


def trained_model(base: Path, class_set: str = "ckplus8") -> Path:
    """A tiny 3DAGN trained for two epochs by fer-train on the class-folder data and exported (made once)."""
    base = Path(base)
    out = base / f"trained_{class_set}"
    if (out / "manifest.json").is_file():
        return out
    from fer_ros.training import train
    data = class_folder_data(base)
    rc = train.main(["--data", str(data), "--class-set", class_set, "--epochs", "2", "--folds", "0",
                     "--size", "32", "--app-widths", "4,8,8,8", "--geo-width", "4", "--batch-size", "8",
                     "--threads", "2", "--cache-dir", str(base / "train_cache"),
                     "--out", str(base / "train_run"),
                     "--export", str(out), "--name", f"synth_{class_set}", "--no-progress"])
    assert rc == 0, f"fer-train failed with {rc}"
    assert json.loads((out / "manifest.json").read_text())["class_set"] == class_set
    return out
