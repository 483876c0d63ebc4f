"""fer-make-bag's outputs: an output that is the source or holds it is refused before anything is removed; a
write that fails leaves no bag behind; --encoding and --start-time-s are checked when read; the CK+ label file
follows the bag's --overwrite rule and never outlives the bag it was made for. (Round trips, sources and CK+
labels: test_bagtools.py.)"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bag_helpers import numbered_frames
from fer_ros.tools import make_bag
from fer_ros.tools.bagtools import list_topics, write_image_bag
from fer_ros.tools.frame_sources import labels_path_for


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


def test_a_failed_overwrite_removes_its_partial_bag(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(2))
    _image_folder(tmp_path / "odd", size=(48, 63))
    assert make_bag.main(["folder", str(tmp_path / "odd"), str(tmp_path / "bag"), "--encoding", "yuv422",
                          "--overwrite"]) == 2
    assert not (tmp_path / "bag").exists()


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
