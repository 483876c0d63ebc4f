"""fer-make-bag's outputs: an output that is the source or holds it is refused before anything is removed; a
write that fails leaves no bag behind; --encoding and --start-time-s are checked when read; the CK+ label file
follows the bag's --overwrite rule and never outlives the bag it was made for; a CK+ source is read as the training
readers read it (class folder names, emotion codes), and one it cannot read is refused in one line that says what to
give. (Round trips, sources and CK+ labels: test_bagtools.py.)"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bag_helpers import numbered_frames
from fer_ros.tools import make_bag
from fer_ros.tools.bagtools import list_topics, write_image_bag
from fer_ros.tools.frame_sources import labels_path_for
from fer_ros.tools.labels import load_labels


def _image_folder(folder: Path, n: int = 3, size=(48, 64)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(numbered_frames(n, size)):
        paths.append(folder / f"frame{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return paths


def _video(path: Path, n: int = 4) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert w.isOpened()
    for f in numbered_frames(n):
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return path


def _ckplus_sequence(root: Path, n: int = 5) -> Path:
    """A CK+ release sequence S005/001 of `n` frames under `root`, labelled happy (code 5)."""
    seq = root / "cohn-kanade-images" / "S005" / "001"
    seq.mkdir(parents=True)
    for i in range(1, n + 1):
        cv2.imwrite(str(seq / f"S005_001_{i:08d}.png"), np.full((48, 48), 10 * i, np.uint8))
    emotion = root / "Emotion" / "S005" / "001"
    emotion.mkdir(parents=True)
    (emotion / f"S005_001_{n:08d}_emotion.txt").write_text("   5.0000000e+00\n")
    return seq


@pytest.mark.parametrize("case", ["folder is the output", "output holds the folder", "video is the output",
                                  "output holds a class folder"])
def test_an_output_that_is_or_holds_the_source_is_refused_and_the_source_kept(tmp_path, capsys, case):
    if case == "video is the output":
        video = _video(tmp_path / "clip.avi")
        argv, kept = ["video", str(video), str(video)], [video]
    elif case == "output holds a class folder":
        kept = [tmp_path / "data" / "happy" / f"S011_006_0000000{i}.png" for i in (2, 3)]
        kept[0].parent.mkdir(parents=True)
        for i, path in enumerate(kept):
            cv2.imwrite(str(path), np.full((48, 48), 10 * i, np.uint8))
        argv = ["ckplus", str(tmp_path / "data"), str(tmp_path / "data" / "happy"), "--sequence", "S011_006"]
    else:
        kept = _image_folder(tmp_path / "frames")
        out = tmp_path / "frames" if case == "folder is the output" else tmp_path
        argv = ["folder", str(tmp_path / "frames"), str(out)]
    before = {p: p.read_bytes() for p in kept}
    assert make_bag.main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "would delete the source" in err and "choose another output" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in kept if p.exists()} == before


def test_an_output_inside_the_source_folder_is_allowed(tmp_path):
    _image_folder(tmp_path / "frames")
    assert make_bag.main(["folder", str(tmp_path / "frames"), str(tmp_path / "frames" / "bag")]) == 0
    assert list_topics(tmp_path / "frames" / "bag")["/camera/image_raw"][1] == 3
    assert len(list((tmp_path / "frames").glob("*.png"))) == 3


def test_a_write_that_fails_leaves_no_bag_to_block_the_next_run(tmp_path, capsys):
    """yuv422 needs an even width: a 63 px wide frame fails after the bag was opened."""
    _image_folder(tmp_path / "odd", size=(48, 63))
    out = tmp_path / "bag"
    assert make_bag.main(["folder", str(tmp_path / "odd"), str(out), "--encoding", "yuv422"]) == 2
    assert "even width" in capsys.readouterr().err
    assert not out.exists()
    assert make_bag.main(["folder", str(tmp_path / "odd"), str(out)]) == 0  # no --overwrite needed


def test_a_failed_overwrite_keeps_the_old_bag_and_leaves_no_partial_one(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(2))
    _image_folder(tmp_path / "odd", size=(48, 63))
    assert make_bag.main(["folder", str(tmp_path / "odd"), str(tmp_path / "bag"), "--encoding", "yuv422",
                          "--overwrite"]) == 2
    assert list_topics(tmp_path / "bag")["/camera/image_raw"][1] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "odd"]


@pytest.mark.parametrize("option, value, says", [
    ("--encoding", "32FC1", "invalid choice"),
    ("--start-time-s", "1700000000000", "int32"),
])
def test_encoding_and_start_time_are_checked_when_read(tmp_path, capsys, option, value, says):
    _image_folder(tmp_path / "frames")
    out = tmp_path / "bag"
    assert make_bag.main(["folder", str(tmp_path / "frames"), str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert option in err and says in err and "Traceback" not in err
    assert not out.exists()


def test_a_start_time_whose_last_frame_would_not_fit_a_stamp_is_refused(tmp_path, capsys):
    _image_folder(tmp_path / "frames")
    out = tmp_path / "bag"
    assert make_bag.main(["folder", str(tmp_path / "frames"), str(out), "--rate-hz", "1",
                          "--start-time-s", str(2**31 - 2)]) == 2  # frames at 2^31 - 2, 2^31 - 1, 2^31
    assert "choose an earlier --start-time-s" in capsys.readouterr().err
    assert not out.exists()
    assert make_bag.main(["folder", str(tmp_path / "frames"), str(out), "--rate-hz", "1",
                          "--start-time-s", str(2**31 - 3)]) == 0


def test_an_existing_label_file_is_kept_without_overwrite(tmp_path, capsys):
    seq = _ckplus_sequence(tmp_path)
    out = tmp_path / "bags" / "s005"
    label_file = labels_path_for(out)
    label_file.parent.mkdir()
    label_file.write_text("start_frame,end_frame,label\n0,5,happy\n")  # written by hand
    assert make_bag.main(["ckplus", str(seq), str(out)]) == 2
    assert "label file" in capsys.readouterr().err
    assert label_file.read_text() == "start_frame,end_frame,label\n0,5,happy\n"
    assert not out.exists()  # refused before the bag was written
    assert make_bag.main(["ckplus", str(seq), str(out), "--overwrite"]) == 0
    assert "S005_001, label happy" in label_file.read_text()


def test_a_new_bag_without_labels_removes_the_old_label_file(tmp_path, capsys):
    seq = _ckplus_sequence(tmp_path)
    out = tmp_path / "s005"
    assert make_bag.main(["ckplus", str(seq), str(out)]) == 0
    assert labels_path_for(out).is_file()
    (seq / "S005_001_00000003.png").write_bytes(b"not a png")  # unreadable: the ranges would not match
    assert make_bag.main(["ckplus", str(seq), str(out), "--overwrite"]) == 2
    assert "no label file written" in capsys.readouterr().err
    assert list_topics(out)["/camera/image_raw"][1] == 4
    assert not labels_path_for(out).exists()


def test_frames_that_hold_no_labelled_range_get_no_label_file(tmp_path, capsys):
    """A label file with no range is one fer-replay refuses: none is written, and the output says why."""
    seq = _ckplus_sequence(tmp_path)
    out = tmp_path / "s005"
    assert make_bag.main(["ckplus", str(seq), str(out), "--neutral-frames", "0", "--max-frames", "2"]) == 0
    assert "no label file" in capsys.readouterr().out
    assert list_topics(out)["/camera/image_raw"][1] == 2 and not labels_path_for(out).exists()


# --- CK+ sources -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, reason", [
    (b"inf\n", "inf is not a finite number"),
    (b"   1e999\n", "1e999 is not a finite number"),
    (b"   4.6000000e+00\n", "4.6000000e+00 is not a whole number"),
    ("   5.0000000e+00\n".encode("utf-16"), "not UTF-8 text"),
], ids=["inf", "1e999", "4.6", "utf-16"])
def test_an_emotion_file_without_a_ckplus_code_is_refused_in_one_line(tmp_path, capsys, content, reason):
    seq = _ckplus_sequence(tmp_path)
    emotion = next((tmp_path / "Emotion" / "S005" / "001").glob("*_emotion.txt"))
    emotion.write_bytes(content)
    out = tmp_path / "s005"
    assert make_bag.main(["ckplus", str(seq), str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"fer-make-bag: error: {emotion} does not hold a CK+ emotion code: {reason}\n"
    assert not out.exists() and not labels_path_for(out).exists()


def _class_folder_frame(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((48, 48), value, np.uint8))


def test_class_folders_name_their_class_as_the_training_readers_do(tmp_path, capsys):
    """`Happy/` holds "happy" frames and ` Neutral/` the neutral ones (metrics.class_key), as fer-train and fer-eval
    read them: the label file names the class in that form."""
    _class_folder_frame(tmp_path / "data" / " Neutral" / "S011_006_00000001.png", 1)
    for i in (19, 20):
        _class_folder_frame(tmp_path / "data" / "Happy" / f"S011_006_{i:08d}.png", i)
    out = tmp_path / "bags" / "s011_006"
    assert make_bag.main(["ckplus", str(tmp_path / "data"), str(out), "--sequence", "S011_006",
                          "--neutral-frames", "2"]) == 0, capsys.readouterr().err
    labels = load_labels(labels_path_for(out))
    assert [(r.start, r.end, r.label) for r in labels.ranges] == [(0, 1, "neutral"), (1, 3, "happy")]


def test_a_class_folder_root_without_a_sequence_says_to_pick_one(tmp_path, capsys):
    _class_folder_frame(tmp_path / "data" / "neutral" / "S011_006_00000001.png", 1)
    _class_folder_frame(tmp_path / "data" / "happy" / "S011_006_00000019.png", 19)
    assert make_bag.main(["ckplus", str(tmp_path / "data"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-make-bag: error: {tmp_path / 'data'} holds no images") and err.count("\n") == 1
    assert "--sequence (e.g. --sequence S011_006)" in err and "cohn-kanade-images/Sxxx/nnn" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["take#1", "copy?x", "copy%41"])
def test_a_sqlite3_output_sqlite_would_read_as_a_uri_is_refused_before_anything_is_made(tmp_path, capsys,
                                                                                         monkeypatch, name):
    """sqlite opens the bag's file through a `file:` URI: "take#1" would write to a file "take"."""
    monkeypatch.chdir(tmp_path)
    _video(tmp_path / "clip.avi")
    assert make_bag.main(["video", "clip.avi", name]) == 2
    err = capsys.readouterr().err
    assert "rename" in err and "--storage mcap" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]
    assert make_bag.main(["video", "clip.avi", name, "--storage", "mcap"]) == 0
    assert list_topics(tmp_path / name)["/camera/image_raw"][1] == 4


def test_a_source_with_no_readable_image_leaves_no_bag_and_an_old_one_as_it_was(tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"frame{i}.png").write_bytes(b"not a png")
    assert make_bag.main(["folder", str(junk), str(tmp_path / "new")]) == 2
    assert "no frames could be read" in capsys.readouterr().err
    write_image_bag(tmp_path / "bag", numbered_frames(2))
    assert make_bag.main(["folder", str(junk), str(tmp_path / "bag"), "--overwrite"]) == 2
    assert "no frames could be read" in capsys.readouterr().err
    assert list_topics(tmp_path / "bag")["/camera/image_raw"][1] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "junk"]  # no new bag, no partial one


def test_max_frames_counts_frames_read_and_every_unreadable_image_is_counted(tmp_path, capsys, fer_warnings):
    paths = _image_folder(tmp_path / "mixed", n=6)
    for i in (0, 2, 4):
        paths[i].write_bytes(b"not a png")
    assert make_bag.main(["folder", str(tmp_path / "mixed"), str(tmp_path / "bag"), "--max-frames", "3"]) == 0
    assert "wrote 3 frames" in capsys.readouterr().out
    assert f"3 of 6 images in {tmp_path / 'mixed'} were unreadable and skipped" in fer_warnings.text
    assert make_bag.main(["folder", str(tmp_path / "mixed"), str(tmp_path / "all")]) == 0
    assert "wrote 3 frames" in capsys.readouterr().out


def test_a_frame_too_big_for_sqlite_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """sqlite refuses a blob over its length limit (1 GB by default; 100 kB here): a 256x192 bgr8 frame."""
    import sqlite3
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000)
        return conn
    monkeypatch.setattr(sqlite3, "connect", connect)
    _video(tmp_path / "clip.avi")
    write_image_bag(tmp_path / "bag", numbered_frames(2))
    assert make_bag.main(["video", str(tmp_path / "clip.avi"), str(tmp_path / "bag"), "--scale", "4",
                          "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("fer-make-bag: error: the sqlite3 storage could not write frame 0 (256x192 px")
    assert "--scale" in err and "--compressed" in err and "--storage mcap" in err
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    assert list_topics(tmp_path / "bag")["/camera/image_raw"][1] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "clip.avi"]


def test_a_video_source_that_is_a_folder_says_to_use_the_folder_source(tmp_path, capsys):
    _image_folder(tmp_path / "frames")
    assert make_bag.main(["video", str(tmp_path / "frames"), str(tmp_path / "bag")]) == 2
    err = capsys.readouterr().err
    assert "is a folder, not a video file" in err and "fer-make-bag folder" in err
    assert not (tmp_path / "bag").exists()
