"""The generated datasets: both layouts load with the data loader, with the expected sequences and neutral
frames, and the node's landmarker finds the face in every image."""
from __future__ import annotations

import numpy as np
import pytest

from fer_ros.training.data.datasets import load_dataset
from synth_data import expression_frame, write_ckplus_official_dataset, write_class_folder_dataset


def test_class_folder_layout(tmp_path):
    info = write_class_folder_dataset(tmp_path / "d", ("anger", "happy"), (1, 2), sequences_per_class=2,
                                      missing_neutral=[(2, 3)])
    ds = load_dataset(tmp_path / "d", frames=3, with_neutral_sequences=True)
    assert ds.layout == "class_folders"
    labelled = [s for s in ds.sequences if s.label != "neutral"]
    assert len(labelled) == 8 == sum(info.sequences.values())
    assert sum(s.label == "neutral" for s in ds.sequences) == 7 == info.neutral_frames
    # S002_003 borrows the first frame of the nearest other sequence of subject 2 (2 and 4 are as near: the earlier)
    assert [(s.key, s.neutral.name) for s in labelled if s.neutral_borrowed] == [("S002_003", "S002_002_00000001.png")]
    assert all(s.neutral.name == f"{s.key}_00000001.png" for s in labelled if not s.neutral_borrowed)
    own = load_dataset(tmp_path / "d", frames=3, with_neutral_sequences=False, borrow_neutral=False)
    assert [s.key for s in own.sequences if s.neutral is None] == ["S002_003"]
    assert all(len(set(s.peaks)) == 3 for s in labelled)


def test_official_layout(tmp_path):
    info = write_ckplus_official_dataset(tmp_path / "d", ("fear", "sadness"), (5,), sequence_length=6,
                                         unlabelled_per_subject=1)
    ds = load_dataset(tmp_path / "d", frames=3, with_neutral_sequences=True)
    assert ds.layout == "ckplus_official"
    labelled = [s for s in ds.sequences if s.label != "neutral"]
    assert sorted(s.label for s in labelled) == ["fear", "sadness"]
    assert all(s.neutral is not None and s.neutral.name.endswith("_00000001.png") for s in labelled)
    assert sum(s.label == "neutral" for s in ds.sequences) == 3 == info.neutral_frames
    with pytest.raises(ValueError, match="CK\\+ emotion code"):
        write_ckplus_official_dataset(tmp_path / "e", ("neutral",))


def test_landmarker_finds_every_face_and_expressions_differ(tmp_path):
    from fer_ros.classes import CKPLUS7
    from fer_ros.landmarker import MediaPipeLandmarker
    from fer_ros.preprocess import Preprocessor
    lm = MediaPipeLandmarker(mode="image", max_faces=1)
    pre = Preprocessor()
    mouth = {}
    try:
        for subject in (1, 2):
            for label in CKPLUS7:
                for t in (0.0, 1.0):
                    img = expression_frame(label, t, subject, jitter_seed=7)
                    assert img.shape == (96, 96) and img.dtype == np.uint8
                    faces = lm.detect(np.repeat(img[..., None], 3, axis=2))
                    assert len(faces) == 1, (subject, label, t)
                    if subject == 1:
                        mouth[(label, t)] = pre.face_sample(img, faces[0]).points68[48:68]
    finally:
        lm.close()
    # at the peak the mouth has moved from the neutral face, and differently per class
    moves = {c: mouth[(c, 1.0)] - mouth[(c, 0.0)] for c in CKPLUS7}
    assert all(np.abs(m).max() > 0.01 for m in moves.values())
    assert np.abs(moves["happy"] - moves["sadness"]).max() > 0.01


def test_a_release_sequence_too_short_for_a_neutral_frame_borrows_one(tmp_path):
    """A labelled release sequence with no frame before its last 3 has no neutral onset of its own: it borrows the
    first frame of the subject's nearest other sequence, and its first (peak) frame is no neutral sample."""
    write_ckplus_official_dataset(tmp_path / "d", ("fear", "sadness"), (5,), sequence_length=5,
                                  unlabelled_per_subject=1)
    for p in sorted((tmp_path / "d" / "cohn-kanade-images" / "S005" / "001").iterdir())[:2]:
        p.unlink()  # sequence 1 keeps frames 3, 4, 5: its peaks
    ds = load_dataset(tmp_path / "d", frames=3, with_neutral_sequences=True)
    short = next(s for s in ds.sequences if s.key == "S005_001")
    assert short.neutral_borrowed and short.neutral.name == "S005_002_00000001.png"
    assert [p.name for p in short.peaks] == [f"S005_001_0000000{i}.png" for i in (3, 4, 5)]
    assert sorted(s.key for s in ds.sequences if s.label == "neutral") == ["S005_002", "S005_003"]
    assert load_dataset(tmp_path / "d", frames=3, borrow_neutral=False).sequences[0].neutral is None
