"""fer-eval with bad inputs: one clear line and exit status 2 for a missing or empty folder, a folder in neither
layout, a missing model; unreadable images and images without a face are counted and skipped."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import NO_LIBEGL
from eval_helpers import class_folder_data
from fer_ros.tools import evaluate

pytest.importorskip("onnxruntime")


def run_cli(capsys, *argv):
    rc = evaluate.main([*map(str, argv), "--no-progress"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_user_error(rc, err, *words):
    assert rc == 2
    lines = [l for l in err.strip().splitlines() if l.startswith("fer-eval")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_data_folder(model8, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "--model", model8, "--data", tmp_path / "nope", "--out", tmp_path / "o")
    assert_user_error(rc, err, "data folder not found", "nope")


def test_empty_data_folder(model8, tmp_path, capsys):
    (tmp_path / "empty" / "happy").mkdir(parents=True)
    rc, _, err = run_cli(capsys, "--model", model8, "--data", tmp_path / "empty", "--out", tmp_path / "o")
    assert_user_error(rc, err, "holds no images")


def test_folder_in_neither_layout(model8, tmp_path, capsys):
    (tmp_path / "d" / "happy").mkdir(parents=True)
    shutil.copy(next((class_folder_data(tmp_path.parent / "x")).glob("happy/*.png")), tmp_path / "d" / "happy" /
                "smile.png")
    rc, _, err = run_cli(capsys, "--model", model8, "--data", tmp_path / "d", "--out", tmp_path / "o")
    assert_user_error(rc, err, "none of the known layouts", "KDEF")


def test_missing_model(base, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "--model", tmp_path / "no_model", "--data", class_folder_data(base),
                         "--out", tmp_path / "o")
    assert_user_error(rc, err, "model not found")


def test_data_is_a_file(model8, tmp_path, capsys):
    f = tmp_path / "f.png"
    f.write_bytes(b"x")
    rc, _, err = run_cli(capsys, "--model", model8, "--data", f, "--out", tmp_path / "o")
    assert_user_error(rc, err, "is a file")


def test_unreadable_and_faceless_images_are_counted_and_skipped(base, model8, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(class_folder_data(base), data)
    (data / "anger" / "S010_001_00000005.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")  # peak frame
    import cv2
    cv2.imwrite(str(data / "neutral" / "S011_002_00000001.png"), np.full((96, 96), 128, np.uint8))  # no face
    (data / "happy" / "notes.png").write_bytes(b"")  # not named like a frame: ignored and counted
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "--model", model8, "--data", data, "--out", out)
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    d = rep["data"]
    assert d["unreadable_images"] == 1 and d["unreadable_examples"] == ["anger/S010_001_00000005.png"]
    assert d["no_face_images"] == 1 and d["no_face_examples"] == ["neutral/S011_002_00000001.png"]
    assert d["sequences_skipped"] == {"unreadable": 1, "no_face": 1}  # a sequence; a neutral sample
    assert d["files_not_in_layout"] == 1
    keys = {(s["kind"], s["key"]) for s in rep["samples"]}
    assert ("sequence", "S010_001") not in keys  # its peak frame was unreadable
    assert ("neutral", "S011_002") not in keys  # its neutral frame has no face ...
    seq = next(s for s in rep["samples"] if s["kind"] == "sequence" and s["key"] == "S011_002")
    assert not seq["has_neutral"]  # ... so its sequence is scored without a reference
    # its own sequence and the neutral samples of S011_001 and S011_003, which are compared with it
    assert d["neutral_frames_unusable"] == 3
    assert rep["sequence_level"]["count"] == 8 + 8
    assert np.asarray(rep["sequence_level"]["confusion_matrix"]).sum() == 16
    assert "1 unreadable images skipped" in stdout and "1 images without a face skipped" in stdout
    # the two samples that could not be scored are misses in the headline, and listed
    assert sorted((m["key"], m["reason"]) for m in rep["misses"]) == [("S010_001", "unreadable"),
                                                                      ("S011_002", "no_face")]
    head = rep["headline"]
    assert head["samples"] == 18 and head["scored"] == 16 and head["missed"] == 2
    right = sum(s["pred_label"] == s["true_label"] for s in rep["samples"] if s["kind"] != "frame")
    assert head["accuracy"] == pytest.approx(right / 18)
    assert stdout.strip().splitlines()[-1] == (f"accuracy {right / 18:.3f} on 18 sequences (4 classes; 2 faces "
                                               f"not found, counted as misses)")
    assert "2 samples without a face (counted as misses)" in stdout


def test_only_unreadable_images(model8, tmp_path, capsys):
    (tmp_path / "d" / "happy").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "d" / "happy" / f"S001_001_0000000{i}.png").write_bytes(b"junk")
    rc, _, err = run_cli(capsys, "--model", model8, "--data", tmp_path / "d", "--out", tmp_path / "o")
    assert_user_error(rc, err, "no usable samples", "3 unreadable")


def test_only_classes_unknown_to_the_model(base, model8, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(class_folder_data(base) / "happy", data / "boredom")
    rc, _, err = run_cli(capsys, "--model", model8, "--data", data, "--out", tmp_path / "o")
    assert_user_error(rc, err, "no sequence", "boredom")
    assert (tmp_path / "o" / "report.json").is_file()


def test_a_landmarker_that_cannot_load_is_one_line(base, model8, tmp_path, capsys, break_mediapipe):
    """mediapipe installed but a system library it loads missing: fer-eval says so in one line, no traceback."""
    break_mediapipe(NO_LIBEGL)
    rc, _, err = run_cli(capsys, "--model", model8, "--data", class_folder_data(base), "--out", tmp_path / "o",
                         "--no-cache")
    assert_user_error(rc, err, "libEGL.so.1", "make setup")


def test_bad_batch_size(base, model8, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "--model", model8, "--data", class_folder_data(base), "--batch-size", "0")
    assert_user_error(rc, err, "--batch-size")


def test_help():
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--help"])
    assert e.value.code == 0
