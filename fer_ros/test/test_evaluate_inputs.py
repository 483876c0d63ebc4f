"""fer-eval with bad inputs: one clear line and exit status 2 for a missing or empty folder, a folder in neither
layout, a missing model; unreadable images and images without a face are counted and skipped."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import NO_LIBEGL
from eval_helpers import class_folder_data, face_image, prepare_with_fakes
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
    # ... so its sequence, and the neutral samples of S011_001 and S011_003 that were to be compared with it, are
    # compared with the subject's nearest other neutral frame instead
    refs = {(s["kind"], s["key"]): (s["has_neutral"], s["reference"]) for s in rep["samples"]}
    assert refs[("sequence", "S011_002")] == refs[("neutral", "S011_001")] == refs[("neutral", "S011_003")] \
        == (True, "other")
    assert d["neutral_frames_unusable"] == 3 and d["references_replaced"] == {"other": 3, "self": 0}
    assert "3 references without a face replaced: 3 with another neutral frame of the same subject" in stdout
    # the two samples not scored are in every figure, as wrong answers
    assert rep["sequence_level"]["count"] == 8 + 8 + 2 and rep["sequence_level"]["missed"] == 2
    assert np.asarray(rep["sequence_level"]["confusion_matrix"]).sum() == 18
    # the unreadable frame is its sequence's newest: the windows of its two older frames do not hold it
    assert [m["key"] for m in rep["frame_misses"]] == ["S010_001/S010_001_00000005"]
    assert rep["frame_level"]["missed"] == 1 and rep["frame_level"]["count"] == 27
    assert "1 unreadable images skipped" in stdout and "1 images without a face skipped" in stdout
    # the two samples that could not be scored are misses in the headline, and listed
    assert sorted((m["key"], m["reason"]) for m in rep["misses"]) == [("S010_001", "unreadable"),
                                                                      ("S011_002", "no_face")]
    head = rep["headline"]
    assert head["samples"] == 18 and head["scored"] == 16 and head["missed"] == 2
    right = sum(s["pred_label"] == s["true_label"] for s in rep["samples"] if s["kind"] != "frame")
    assert head["accuracy"] == pytest.approx(right / 18)
    assert stdout.strip().splitlines()[-1] == (f"accuracy {right / 18:.3f} on 18 sequences (4 classes; 1 face not "
                                               f"found, 1 unreadable image, counted as misses)")
    assert "2 samples not scored, counted as misses (1 unreadable image, 1 no face found)" in stdout


def test_a_dataset_without_a_face_is_reported_and_the_others_scored(base, model8, tmp_path, capsys):
    """Two --data: in the first no image can be used (2 unreadable sequences, 1 without a face): its report says 0
    on 3, every sample listed as a miss; the second is scored as usual; exit status 1, with one line saying so."""
    import cv2
    bad = tmp_path / "bad"
    (bad / "happy").mkdir(parents=True)
    for seq in (1, 2):
        (bad / "happy" / f"S001_00{seq}_00000003.png").write_bytes(b"junk")
    (bad / "anger").mkdir()
    cv2.imwrite(str(bad / "anger" / "S001_003_00000003.png"), np.full((96, 96), 128, np.uint8))
    out = tmp_path / "o"
    rc, stdout, err = run_cli(capsys, "--model", model8, "--data", bad, "--data", class_folder_data(base),
                              "--out", out, "--no-frame-level")
    assert rc == 1, err
    rep = json.loads((out / "bad" / "report.json").read_text())
    assert rep["headline"] == {"accuracy": 0.0, "samples": 3, "scored": 0, "missed": 3,
                               "missed_by_class": {"anger": 1, "happy": 2}, "accuracy_on_faces_found": None}
    assert sorted((m["key"], m["reason"]) for m in rep["misses"]) == [
        ("S001_001", "unreadable"), ("S001_002", "unreadable"), ("S001_003", "no_face")]
    assert rep["sequence_level"]["recall"] == {"anger": 0.0, "happy": 0.0}
    assert (out / "synth_folders" / "report.json").is_file()
    summaries = [l for l in stdout.splitlines() if l.startswith("accuracy ")]
    assert summaries[0] == ("accuracy 0.000 on 3 sequences (2 classes; 1 face not found, 2 unreadable images, "
                            "counted as misses)")
    assert len(summaries) == 2 and stdout.index("== bad ==") < stdout.index("== synth_folders ==")
    lines = [l for l in err.strip().splitlines() if l.startswith("fer-eval")]
    assert len(lines) == 1 and "no sample of" in lines[0] and "2 unreadable of 3" in lines[0], err


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


def test_kdef_angles_default_to_straight_and_half_profiles(tmp_path, capsys):
    from fer_ros.tools.eval_data import open_dataset
    from synth_data import write_kdef_dataset
    write_kdef_dataset(tmp_path / "kdef", actors=(("F", 1),), angles=("S", "HR", "FL"), expressions=("happy",))
    args = evaluate.get_args_parser().parse_args(["--data", "d"])
    assert args.angles == ("S", "HL", "HR")
    ds = open_dataset(tmp_path / "kdef", 3, angles=args.angles)
    assert sorted(s.key for s in ds.sequences) == ["AF01HAHR", "AF01HAS", "BF01HAHR", "BF01HAS"]
    assert evaluate.get_args_parser().parse_args(["--data", "d", "--angles", "fl, s"]).angles == ("FL", "S")
    rc, _, err = run_cli(capsys, "--data", tmp_path / "kdef", "--angles", "S,XX")
    assert_user_error(rc, err, "--angles", "FL,HL,S,HR,FR")


def test_no_neutral_samples_leaves_out_ferplus_neutral_photos_and_still_counts_them(tmp_path):
    """FER+'s neutral photos are its neutral samples: left out with --no-neutral-samples as KDEF's are, and counted
    as the data's neutral frames with it or without it."""
    from fer_ros.tools.eval_data import neutral_images, open_dataset
    from synth_data import write_ferplus_dataset
    write_ferplus_dataset(tmp_path / "fer")
    every = open_dataset(tmp_path / "fer", 3)
    assert [Path(p).name for p in neutral_images(every)] == ["fer0000011.png"]  # FER2013Valid's neutral photo
    without = open_dataset(tmp_path / "fer", 3, neutral_samples=False)
    assert sorted(s.label for s in without.sequences) == ["anger", "happy", "surprise"]
    assert neutral_images(without) == neutral_images(every)


def _faceless_reference_and_a_neutral_frame_no_sample_uses(root: Path, layout: str) -> str:
    """Data whose one labelled sample's reference has no face, and whose one other neutral frame of the same subject
    serves no sample but as a neutral sample; returns the labelled sample's key."""
    if layout == "ckplus_official":  # S010/002 is not labelled: its first frame is a neutral frame alone
        for seq in ("001", "002"):
            for f in range(1, 6):
                face_image(root / "cohn-kanade-images" / "S010" / seq / f"S010_{seq}_{f:08d}.png",
                           face=(seq, f) != ("001", 1))
            (root / "Emotion" / "S010" / seq).mkdir(parents=True)
        (root / "Emotion" / "S010" / "001" / "S010_001_00000005_emotion.txt").write_text("   5.0000000e+00\n")
        return "S010_001"
    if layout == "class_folders":  # neutral/S010_002: a first frame whose sequence is in no class folder
        face_image(root / "neutral" / "S010_001_00000001.png", face=False)
        face_image(root / "neutral" / "S010_002_00000001.png")
        for f in (5, 6, 7):
            face_image(root / "happy" / f"S010_001_{f:08d}.png")
        return "S010_001"
    face_image(root / "AF01NES.jpg")  # KDEF: session A has no expression photo to be compared with it
    face_image(root / "BF01NES.jpg", face=False)
    face_image(root / "BF01HAS.jpg")
    return "BF01HAS"


@pytest.mark.parametrize("layout", ["ckplus_official", "class_folders", "kdef"])
def test_no_neutral_samples_leaves_every_other_sample_s_reference_as_it_is(tmp_path, layout):
    """The labelled sample's own reference has no face: it gives way to the subject's other neutral frame, which
    no sample uses once the neutral samples are left out, with --no-neutral-samples as without it."""
    key = _faceless_reference_and_a_neutral_frame_no_sample_uses(tmp_path / layout, layout)
    refs = {}
    for neutral_samples in (True, False):
        _, got = prepare_with_fakes(tmp_path / layout, neutral_samples=neutral_samples)
        refs[neutral_samples] = [(s.key, s.reference, s.has_neutral) for s in got.samples if s.kind == "sequence"]
        assert got.counts["references_replaced"]["other"] >= 1 and got.counts["sequences_without_neutral"] == 0
        assert got.counts["no_face_images"] == 1
    assert refs[False] == refs[True] == [(key, "other", True)]


def _sequences_of_five_frames(root: Path, faceless: tuple[str, int] | None) -> None:
    """Class folders: subject 10's happy sequence 1 and anger sequence 2, frames 3 to 7 in the class folders (five
    labelled frames, two more than the model's window of 3), first frames in neutral/; `faceless`: (class, frame)
    without a face."""
    for seq, cls in (("001", "happy"), ("002", "anger")):
        face_image(root / "neutral" / f"S010_{seq}_00000001.png")
        for f in range(3, 8):
            face_image(root / cls / f"S010_{seq}_{f:08d}.png", face=(cls, f) != faceless)


def test_the_frame_level_scores_every_labelled_frame_and_the_sequence_level_its_last_three(tmp_path):
    """Every frame in a class folder is labelled: each is a frame sample, the newest of its window (the earliest
    repeated in front); the sequence sample and training read the last 3. An older frame without a face is counted
    as one and makes the frame samples whose window holds it misses."""
    _sequences_of_five_frames(tmp_path, faceless=("anger", 3))
    ds, got = prepare_with_fakes(tmp_path)
    assert [[p.name[-6:-4] for p in s.peaks] for s in ds.sequences if s.label != "neutral"] == [["05", "06", "07"]] * 2
    frames = [s.key.split("_")[-1][-1] for s in got.samples if s.kind == "frame" and s.true_label == "happy"]
    assert frames == ["3", "4", "5", "6", "7"]
    assert [s.key.split("_")[-1][-1] for s in got.samples if s.kind == "frame" and s.true_label == "anger"] \
        == ["6", "7"]
    assert sorted((m.kind, m.key.split("_")[-1][-1], m.file) for m in got.misses) == [
        ("frame", f, "anger/S010_002_00000003.png") for f in "345"]
    assert {s.key for s in got.samples if s.kind == "sequence"} == {"S010_001", "S010_002"}
    assert got.counts["images"] == 12 and got.counts["no_face_images"] == 1
    # frame 4's window is frames 3, 3, 4: the same clip as a sequence whose last frames those are
    from eval_helpers import DarkCentreLandmarker, small_manifest
    from fer_ros.tools.eval_data import prepare
    happy = next(s for s in ds.sequences if s.label == "happy")
    said = replace(happy, peaks=[happy.labelled_frames[0]] * 2 + [happy.labelled_frames[1]], labelled_frames=[])
    ds.sequences = [said]
    want = prepare(ds, small_manifest(), None, frame_level=False, progress=False, landmarker=DarkCentreLandmarker())
    i = [s.key for s in got.samples].index("S010_001/S010_001_00000004")
    np.testing.assert_array_equal(want.clips[0], got.clips[i])
    np.testing.assert_array_equal(want.geos[0], got.geos[i])


@pytest.mark.parametrize("faceless, missed", [(7, ["7"]), (6, ["6", "7"])])
def test_a_frame_sample_is_a_miss_only_when_its_own_window_holds_a_frame_without_a_face(tmp_path, faceless, missed):
    """The happy sequence's frames are 5, 6 and 7 (windows 5 5 5, 5 5 6, 5 6 7): a frame without a face makes the
    sequence sample a miss, and of its frame samples those whose window holds it; the others are scored, with the
    sequence's reference."""
    for seq, cls in (("001", "happy"), ("002", "anger")):
        face_image(tmp_path / "neutral" / f"S010_{seq}_00000001.png")
        for f in (5, 6, 7):
            face_image(tmp_path / cls / f"S010_{seq}_{f:08d}.png", face=(cls, f) != ("happy", faceless))
    _, got = prepare_with_fakes(tmp_path, neutral_samples=False)
    assert [(m.kind, m.key) for m in got.misses if m.kind != "frame"] == [("sequence", "S010_001")]
    frame_misses = [m for m in got.misses if m.kind == "frame"]
    assert [m.key[-1] for m in frame_misses] == missed
    assert {m.file for m in got.misses} == {f"happy/S010_001_{faceless:08d}.png"}
    scored = [s for s in got.samples if s.kind == "frame" and s.true_label == "happy"]
    assert [s.key[-1] for s in scored] == [f for f in "567" if f not in missed]
    assert all(s.reference == "own" and s.has_neutral for s in scored)
    assert got.counts["sequences_skipped"] == {"no_face": 1}


@pytest.mark.parametrize("case, message", [
    ("a file", "--out {out} exists and is not a folder: remove it or choose another --out"),
    ("under a file", "cannot make the --out folder {out}/sub"),
    ("report.json", "--out {out} holds a folder named report.json, a file it writes: remove it"),
    ("predictions.csv", "holds a folder named predictions.csv"),
    ("confusion_matrix_frames.png", "holds a folder named confusion_matrix_frames.png"),
    ("cache", "the cache folder {out}/cache exists and is not a folder: remove it, or pass --cache-dir or --no-cache"),
    ("--cache-dir", "--cache-dir {out}/c exists and is not a folder"),
    ("a dataset's report.json", "--out {out}/d holds a folder named report.json"),
])
def test_an_out_that_cannot_take_the_outputs_is_one_line_before_the_model_loads(tmp_path, capsys, case, message):
    """Said before the model loads: the model here does not exist, and the error is about --out."""
    out, extra = tmp_path / "o", []
    data = [tmp_path / "d"]
    if case in ("a file", "under a file"):
        out.write_text("x")
    elif case == "cache":
        out.mkdir()
        (out / "cache").write_text("x")
    elif case == "--cache-dir":
        out.mkdir()
        (out / "c").write_text("x")
        extra = ["--cache-dir", out / "c"]
    elif case == "a dataset's report.json":
        (out / "d" / "report.json").mkdir(parents=True)
        data.append(tmp_path / "e")
    else:
        (out / case).mkdir(parents=True)
    argv = ["--model", tmp_path / "no_model", "--out", out / "sub" if case == "under a file" else out, *extra]
    rc, _, err = run_cli(capsys, *argv, *(x for d in data for x in ("--data", d)))
    assert_user_error(rc, err, message.format(out=out))
    assert "model not found" not in err


def test_a_failure_writing_a_dataset_s_outputs_is_one_line_and_the_others_are_scored(tmp_path, capsys, monkeypatch):
    from eval_helpers import DarkCentreLandmarker, small_manifest
    from fer_ros.tools import eval_data

    class Engine:
        def predict(self, clip, geo, valid):
            return np.tile(np.eye(8, dtype=np.float32)[1], (len(clip), 1))
    monkeypatch.setattr(evaluate, "open_model", lambda *a, **k: (Engine(), small_manifest(), tmp_path / "model"))
    monkeypatch.setattr(evaluate, "prepare", lambda *a, **k: eval_data.prepare(
        *a, **{**k, "landmarker": DarkCentreLandmarker()}))
    real_write = evaluate.write_outputs

    def write(report, samples, names, out_dir):
        if out_dir.name == "first":
            raise OSError(28, "No space left on device", str(out_dir / "predictions.csv"))
        return real_write(report, samples, names, out_dir)
    monkeypatch.setattr(evaluate, "write_outputs", write)
    for name in ("first", "second"):
        for cls, subject in (("happy", 10), ("anger", 11)):
            face_image(tmp_path / name / cls / f"S0{subject}_001_00000003.png")
    out = tmp_path / "o"
    rc, stdout, err = run_cli(capsys, "--data", tmp_path / "first", "--data", tmp_path / "second", "--out", out,
                              "--no-cache")
    assert_user_error(rc, err, f"writing the results to {out / 'first'} failed", "No space left on device")
    assert (out / "second" / "report.json").is_file() and "== second ==" in stdout


def test_help():
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--help"])
    assert e.value.code == 0
