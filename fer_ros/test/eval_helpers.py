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


class DarkCentreLandmarker:
    """A stand-in for the landmarker, fast and certain: one face in every image whose centre pixel is not dark,
    none where it is (face_image(face=False))."""

    def detect(self, rgb, stamp_s=None):
        from perception_helpers import place, synthetic_face, template68
        h, w = rgb.shape[:2]
        if int(rgb[h // 2, w // 2].max()) < 20:
            return []
        return [synthetic_face(place(template68(), (w / 2, h / 2 - 5), w * 0.25))]

    def close(self):
        pass


def face_image(path: Path, face: bool = True) -> Path:
    """A 64x64 gray PNG (or JPEG, by its suffix) in which DarkCentreLandmarker finds a face, or (face False) none."""
    import zlib

    import cv2
    import numpy as np
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(bytes(path)))
    img = rng.integers(30, 220, (64, 64), dtype=np.uint8) if face else np.zeros((64, 64), np.uint8)
    ok, buf = cv2.imencode(path.suffix, img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def small_manifest(class_set: str = "ckplus8"):
    """The manifest of a 3-frame model on 32 px crops (no weights: for prepare alone)."""
    from fer_ros.classes import class_names
    from fer_ros.crop import CropConfig
    from fer_ros.manifest import Manifest
    from fer_ros.preprocess import PREPROCESS_SPEC
    return Manifest(name="small", class_set=class_set, class_names=list(class_names(class_set)), arch="agn3d_c3d",
                    arch_cfg={"frames": 3}, preprocess=PREPROCESS_SPEC(CropConfig(size=32)))


def prepare_with_fakes(root: Path, neutral_samples: bool = True, frame_level: bool = True):
    """fer-eval's dataset and samples of `root` (open_dataset, prepare) with DarkCentreLandmarker and
    small_manifest: (dataset, PreparedData)."""
    from fer_ros.tools.eval_data import open_dataset, prepare
    manifest = small_manifest()
    ds = open_dataset(root, manifest.window_length, neutral_samples=neutral_samples)
    return ds, prepare(ds, manifest, None, frame_level=frame_level, progress=False,
                       landmarker=DarkCentreLandmarker())
