"""Bag maker and bag reader: round trips in both storages, the sources (video, folder, CK+ in both layouts), the
CLI's errors, and every malformed-bag case (truncated file, missing topic, non-image messages, unknown encoding)."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from bag_helpers import frame_number, numbered_frames, write_mixed_bag
from fer_ros.tools import bagtools, frame_sources, make_bag
from fer_ros.tools.bagtools import STORAGES, BagError, ImageBagReader, list_topics, write_image_bag
from fer_ros.tools.frame_sources import ckplus_labels, find_ckplus_sequence
from fer_ros.tools.labels import load_labels


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("encoding, compressed", [("bgr8", None), ("rgb8", None), ("mono8", None),
                                                  ("bgr8", "png"), ("bgr8", "jpeg")])
def test_round_trip(tmp_path, storage, encoding, compressed):
    frames = numbered_frames(12)
    info = write_image_bag(tmp_path / "bag", frames, rate_hz=20.0, storage=storage, encoding=encoding,
                           compressed=compressed, start_time_s=100.0)
    assert info.frames == 12 and info.size_px == (64, 48)
    expected_topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    assert list_topics(tmp_path / "bag") == {expected_topic: (info.msgtype, 12)}
    with ImageBagReader(tmp_path / "bag") as reader:
        got = list(reader.frames())
        assert reader.topic == expected_topic
    assert [f.index for f in got] == list(range(12))
    assert [f.bag_time_ns for f in got] == info.stamps_ns
    assert [f.stamp_s for f in got] == pytest.approx([100.0 + i / 20.0 for i in range(12)], abs=1e-9)
    assert all(f.frame_id == "camera" for f in got)
    if encoding == "mono8":  # gray loses colour: each frame is its own frame's gray, in all three channels
        for f, frame in zip(got, frames):
            np.testing.assert_array_equal(f.rgb8, np.repeat(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[:, :, None], 3, 2))
    elif compressed == "jpeg":  # these flat frames come back within 1 of their values (frames are 3 apart)
        assert [int(np.abs(f.rgb8.astype(int) - frame).max()) <= 1 for f, frame in zip(got, frames)] == [True] * 12
    else:
        assert [frame_number(f.rgb8) for f in got] == list(range(12))
        np.testing.assert_array_equal(got[7].rgb8, frames[7])


def test_write_errors(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(1))
    with pytest.raises(BagError, match="already exists.*--overwrite"):
        write_image_bag(tmp_path / "bag", numbered_frames(1))
    write_image_bag(tmp_path / "bag", numbered_frames(2), overwrite=True)
    assert list_topics(tmp_path / "bag")["/camera/image_raw"][1] == 2
    with pytest.raises(BagError, match="rate must be a positive"):
        write_image_bag(tmp_path / "b2", numbered_frames(1), rate_hz=0)
    with pytest.raises(BagError, match="unknown bag storage"):
        write_image_bag(tmp_path / "b3", numbered_frames(1), storage="rosbag1")
    with pytest.raises(BagError, match="cannot encode"):
        write_image_bag(tmp_path / "b4", numbered_frames(1), encoding="32FC1")


def test_overwrite_replaces_only_a_bag(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(1), storage="mcap")
    write_image_bag(tmp_path / "bag", numbered_frames(2), storage="sqlite3", overwrite=True)  # a bag: replaced
    assert list_topics(tmp_path / "bag")["/camera/image_raw"][1] == 2
    killed = tmp_path / "killed"  # a recorder's folder without metadata.yaml: only the bag's own files
    killed.mkdir()
    (killed / "killed_0.mcap").write_bytes(b"\x89MCAP0\r\n")
    write_image_bag(killed, numbered_frames(3), overwrite=True)
    assert list_topics(killed)["/camera/image_raw"][1] == 3
    (tmp_path / "empty").mkdir()
    write_image_bag(tmp_path / "empty", numbered_frames(1), overwrite=True)


def test_overwrite_never_deletes_what_is_not_a_bag(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i, f in enumerate(numbered_frames(3)):
        cv2.imwrite(str(images / f"frame{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    with pytest.raises(BagError, match=r"images exists and holds more than a bag \(frame0.png, frame1.png, "
                                       r"frame2.png\); --overwrite only replaces a bag: choose another output"):
        write_image_bag(images, numbered_frames(1), overwrite=True)
    with_metadata = tmp_path / "bag_and_notes"  # a bag with the user's own files beside it
    write_image_bag(with_metadata, numbered_frames(1))
    (with_metadata / "notes.txt").write_text("mine")
    with pytest.raises(BagError, match="holds more than a bag \\(notes.txt\\)"):
        write_image_bag(with_metadata, numbered_frames(1), overwrite=True)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"a video")
    with pytest.raises(BagError, match="clip.mp4 exists and is not a bag folder"):
        write_image_bag(video, numbered_frames(1), overwrite=True)
    source = tmp_path / "source"
    source.mkdir()
    cv2.imwrite(str(source / "a.png"), cv2.cvtColor(numbered_frames(1)[0], cv2.COLOR_RGB2BGR))
    assert make_bag.main(["folder", str(source), str(images), "--overwrite"]) == 2
    assert "--overwrite only replaces a bag" in capsys.readouterr().err
    assert sorted(p.name for p in images.iterdir()) == ["frame0.png", "frame1.png", "frame2.png"]
    assert (with_metadata / "notes.txt").read_text() == "mine" and video.read_bytes() == b"a video"


def test_video_and_folder_sources(tmp_path, capsys):
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (64, 48))
    assert w.isOpened()
    for f in numbered_frames(6):
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    assert make_bag.main(["video", str(video), str(tmp_path / "vbag"), "--scale", "2", "--storage", "mcap"]) == 0
    assert "wrote 6 frames (128x96 px, 15 Hz)" in capsys.readouterr().out
    with ImageBagReader(tmp_path / "vbag") as r:
        stamps = [f.stamp_s for f in r.frames()]
    assert np.diff(stamps) == pytest.approx([1 / 15.0] * 5, abs=1e-6)

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(numbered_frames(11)):
        cv2.imwrite(str(folder / f"frame{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (folder / "frame5.png").write_bytes(b"not a png")  # unreadable: skipped with a warning
    (folder / "notes.txt").write_text("ignored")
    assert make_bag.main(["folder", str(folder), str(tmp_path / "fbag"), "--rate-hz", "5",
                          "--compressed", "png"]) == 0
    assert "wrote 10 frames" in capsys.readouterr().out
    with ImageBagReader(tmp_path / "fbag") as r:
        numbers = [frame_number(f.rgb8) for f in r.frames()]
    assert numbers == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]  # natural order: frame10 after frame9


def test_cli_errors(tmp_path, capsys):
    assert make_bag.main(["video", str(tmp_path / "missing.mp4"), str(tmp_path / "o")]) == 2
    assert "video file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert make_bag.main(["folder", str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    assert "holds no images" in capsys.readouterr().err
    assert make_bag.main(["folder", str(tmp_path / "empty"), str(tmp_path / "o"), "--scale", "0"]) == 2
    assert "--scale" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        make_bag.main(["--help"])
    assert "fer-make-bag" in capsys.readouterr().out


def _write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((48, 48), value, np.uint8))


def _ckplus_release_sequence(root: Path) -> Path:
    """S005/001 of the CK+ release layout under `root`: 8 frames (gray 10, 20, ... 80), emotion code 3 (disgust)."""
    seq = root / "cohn-kanade-images" / "S005" / "001"
    for i in range(1, 9):
        _write_png(seq / f"S005_001_{i:08d}.png", 10 * i)
    emotion = root / "Emotion" / "S005" / "001" / "S005_001_00000008_emotion.txt"
    emotion.parent.mkdir(parents=True)
    emotion.write_text("   3.0000000e+00\n")  # 3 = disgust
    return seq


def test_ckplus_official_layout(tmp_path, capsys):
    seq = _ckplus_release_sequence(tmp_path)
    found = find_ckplus_sequence(seq)
    assert (found.subject, found.sequence, found.label, len(found.files)) == ("S005", "001", "disgust", 8)
    out = tmp_path / "bags" / "s005_001"
    assert make_bag.main(["ckplus", str(seq), str(out), "--storage", "mcap"]) == 0
    labels = load_labels(tmp_path / "bags" / "s005_001.labels.csv")
    assert labels.unit == "frame"
    assert [labels.label_for(i, 0.0, None, True) for i in range(8)] == \
        ["neutral", None, None, None, None, "disgust", "disgust", "disgust"]
    with ImageBagReader(out) as r:
        values = [int(f.rgb8[0, 0, 0]) for f in r.frames()]
    assert values == [10 * i for i in range(1, 9)]
    assert "wrote labels" in capsys.readouterr().out


@pytest.mark.parametrize("max_frames, expected", [
    (3, ["neutral", None, None]),  # the peak frames are cut off: no emotion range
    (6, ["neutral", None, None, None, None, "disgust"]),
])
def test_ckplus_max_frames_keeps_the_whole_sequence_s_labels(tmp_path, max_frames, expected):
    seq = _ckplus_release_sequence(tmp_path)
    out = tmp_path / "bags" / "s005_001"
    assert make_bag.main(["ckplus", str(seq), str(out), "--max-frames", str(max_frames)]) == 0
    labels = load_labels(tmp_path / "bags" / "s005_001.labels.csv")
    assert [labels.label_for(i, 0.0, None, True) for i in range(max_frames + 2)] == expected + [None, None]
    assert all(r.end <= max_frames for r in labels.ranges)
    assert list_topics(out)["/camera/image_raw"][1] == max_frames


def test_ckplus_class_folder_layout(tmp_path):
    _write_png(tmp_path / "neutral" / "S011_006_00000001.png", 1)
    for i in (19, 20, 21):
        _write_png(tmp_path / "happy" / f"S011_006_{i:08d}.png", i)
    _write_png(tmp_path / "sadness" / "S012_001_00000009.png", 9)  # another sequence
    seq = find_ckplus_sequence(tmp_path, "S011_006")
    assert seq.label == "happy"
    assert [p.name for p in seq.files] == ["S011_006_00000001.png", "S011_006_00000019.png",
                                           "S011_006_00000020.png", "S011_006_00000021.png"]
    labels = ckplus_labels(len(seq.files), seq.label)
    assert [labels.label_for(i, 0.0, None, True) for i in range(4)] == ["neutral", "happy", "happy", "happy"]
    with pytest.raises(BagError, match="no frames of S099_001"):
        find_ckplus_sequence(tmp_path, "S099_001")
    with pytest.raises(BagError, match="is not S<subject>_<sequence>"):
        find_ckplus_sequence(tmp_path, "011-006")


def test_ckplus_class_folders_without_a_neutral_folder_label_no_frame_neutral(tmp_path):
    """Every frame of a class folder other than neutral/ is a peak frame: none is labelled neutral."""
    for i in (17, 18, 19):
        _write_png(tmp_path / "data" / "happy" / f"S010_004_{i:08d}.png", i)
    assert find_ckplus_sequence(tmp_path / "data", "S010_004").label == "happy"
    out = tmp_path / "bags" / "s010_004"
    assert make_bag.main(["ckplus", str(tmp_path / "data"), str(out), "--sequence", "S010_004",
                          "--neutral-frames", "2"]) == 0
    labels = load_labels(tmp_path / "bags" / "s010_004.labels.csv")
    assert [(r.start, r.end, r.label) for r in labels.ranges] == [(0, 3, "happy")]


def test_ckplus_class_folders_label_only_the_neutral_folder_s_frames_neutral(tmp_path):
    _write_png(tmp_path / "neutral" / "S011_006_00000001.png", 1)
    for i in (19, 20):
        _write_png(tmp_path / "happy" / f"S011_006_{i:08d}.png", i)
    out = tmp_path / "bags" / "s011_006"
    assert make_bag.main(["ckplus", str(tmp_path), str(out), "--sequence", "S011_006", "--neutral-frames", "2"]) == 0
    labels = load_labels(tmp_path / "bags" / "s011_006.labels.csv")
    assert [(r.start, r.end, r.label) for r in labels.ranges] == [(0, 1, "neutral"), (1, 3, "happy")]


@pytest.mark.parametrize("relative", ["S005/001", "001", "."])
def test_ckplus_relative_sequence_path_keeps_its_emotion_label(tmp_path, monkeypatch, relative):
    seq = _ckplus_release_sequence(tmp_path)
    monkeypatch.chdir({"S005/001": seq.parent.parent, "001": seq.parent, ".": seq}[relative])
    found = find_ckplus_sequence(relative)
    assert (found.subject, found.sequence, found.label, len(found.files)) == ("S005", "001", "disgust", 8)


def test_ckplus_sequence_without_an_emotion_folder_says_so(tmp_path, fer_warnings):
    seq = tmp_path / "cohn-kanade-images" / "S005" / "001"
    _write_png(seq / "S005_001_00000001.png", 1)
    assert find_ckplus_sequence(seq).label is None
    assert "no Emotion folder" in fer_warnings.text and str(tmp_path / "Emotion") in fer_warnings.text


def test_ckplus_codes():
    from fer_ros.training.data.datasets import ckplus_code_label
    assert ckplus_code_label(0) == "neutral"
    assert ckplus_code_label(1.0) == "anger"
    assert ckplus_code_label("7") == "surprise"
    with pytest.raises(ValueError):
        ckplus_code_label(8)


# --- malformed bags ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", STORAGES)
def test_bad_messages_are_skipped_and_counted(tmp_path, storage, fer_warnings):
    expected = write_mixed_bag(tmp_path / "bag", storage)
    with ImageBagReader(tmp_path / "bag") as r:
        frames = list(r.frames())
    assert [f.index for f in frames] == expected["good_indices"]
    assert [frame_number(f.rgb8) for f in frames] == expected["good_indices"]
    assert r.stats.messages == expected["messages"]
    assert r.stats.skipped == expected["skipped"]
    assert "unsupported image encoding '32FC7'" in fer_warnings.text
    assert "cannot be deserialized" in fer_warnings.text
    assert "2 undecodable images" in r.stats.summary()


def test_non_image_messages_on_the_image_topic(tmp_path, fer_warnings):
    store = bagtools.typestore()
    writer = bagtools.open_writer(tmp_path / "bag", "sqlite3", overwrite=False)
    img = writer.add_connection("/cam", bagtools.IMAGE_TYPE, typestore=store)
    txt = writer.add_connection("/cam", "std_msgs/msg/String", typestore=store)
    String = store.types["std_msgs/msg/String"]
    for i, f in enumerate(numbered_frames(4)):
        writer.write(img, 1000 + 2 * i, store.serialize_cdr(bagtools.image_message(f, 1000 + 2 * i, "c"),
                                                            bagtools.IMAGE_TYPE))
        writer.write(txt, 1001 + 2 * i, store.serialize_cdr(String(data="x"), "std_msgs/msg/String"))
    writer.close()
    with ImageBagReader(tmp_path / "bag", "/cam") as r:
        frames = list(r.frames())
    assert [frame_number(f.rgb8) for f in frames] == [0, 1, 2, 3]
    assert r.stats.skipped == {"non-image messages": 4}
    assert "is a std_msgs/msg/String, not an image" in fer_warnings.text


def test_missing_topic_and_wrong_type(tmp_path):
    write_mixed_bag(tmp_path / "bag")
    with pytest.raises(BagError, match=r"has no topic /nope; its topics: .*/camera/image_raw \(sensor_msgs"):
        ImageBagReader(tmp_path / "bag", "/nope")
    with pytest.raises(BagError, match="topic /chatter .* carries std_msgs/msg/String, not"):
        ImageBagReader(tmp_path / "bag", "/chatter")
    # two image topics: the reader cannot guess
    store = bagtools.typestore()
    writer = bagtools.open_writer(tmp_path / "two", "sqlite3", overwrite=False)
    writer.add_connection("/a", bagtools.IMAGE_TYPE, typestore=store)
    writer.add_connection("/b", bagtools.COMPRESSED_TYPE, typestore=store)
    writer.close()
    with pytest.raises(BagError, match="choose the image topic with --topic \\(image topics: /a, /b\\)"):
        ImageBagReader(tmp_path / "two")


def test_a_bag_without_an_image_topic_says_what_it_holds(tmp_path):
    store = bagtools.typestore()
    writer = bagtools.open_writer(tmp_path / "chat", "sqlite3", overwrite=False)
    writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
    writer.close()
    with pytest.raises(BagError, match=r"holds no image topic: its topics are /chatter \(std_msgs/msg/String\); "
                                       r"record the camera's sensor_msgs/Image"):
        ImageBagReader(tmp_path / "chat")
    write_image_bag(tmp_path / "bag", numbered_frames(3), storage="mcap")
    _truncate_storage(tmp_path / "bag", 0.01)  # cut before the first channel
    with pytest.raises(BagError, match=r"holds no image topic: no readable topic at all \(the MCAP file has no "
                                       r"valid end"):
        ImageBagReader(tmp_path / "bag")


def test_not_a_bag(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        ImageBagReader(tmp_path / "nothing")
    (tmp_path / "folder").mkdir()
    with pytest.raises(BagError, match="is not a rosbag2 bag: it has no metadata.yaml and no .mcap or .db3 file"):
        ImageBagReader(tmp_path / "folder")
    (tmp_path / "file.db3").write_bytes(b"x")
    with pytest.raises(BagError, match="pass the bag folder .* or an .mcap file"):
        ImageBagReader(tmp_path / "file.db3")


def test_a_sqlite3_bag_without_metadata_says_to_reindex(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(3), storage="sqlite3")
    (tmp_path / "bag" / "metadata.yaml").unlink()  # a killed recorder leaves none
    with pytest.raises(BagError, match=r"run `ros2 bag reindex .*bag -s sqlite3` to rebuild its metadata.yaml"):
        ImageBagReader(tmp_path / "bag")


def test_bag_storage_of_a_folder_its_metadata_or_one_file(tmp_path):
    write_image_bag(tmp_path / "m", numbered_frames(1), storage="mcap")
    write_image_bag(tmp_path / "s", numbered_frames(1), storage="sqlite3")
    assert [bagtools.bag_storage(p) for p in (tmp_path / "m", tmp_path / "m" / "metadata.yaml",
                                               next((tmp_path / "m").glob("*.mcap")))] == ["mcap"] * 3
    assert [bagtools.bag_storage(p) for p in (tmp_path / "s", tmp_path / "s" / "metadata.yaml",
                                               next((tmp_path / "s").glob("*.db3")))] == ["sqlite3"] * 3


def _truncate_storage(bag: Path, fraction: float) -> None:
    data_file = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    size = data_file.stat().st_size
    with open(data_file, "r+b") as fh:
        fh.truncate(int(size * fraction))


def test_mcap_with_a_corrupt_zstd_chunk_keeps_the_frames_before_it(tmp_path, fer_warnings):
    import struct
    write_image_bag(tmp_path / "bag", numbered_frames(6), storage="mcap")
    data_file = next((tmp_path / "bag").glob("*.mcap"))
    data = data_file.read_bytes()
    pos = 8  # the records after the magic: the header, then the chunk of every message
    while data[pos] != 0x06:
        pos += 9 + struct.unpack_from("<Q", data, pos + 1)[0]
    chunk_end = pos + 9 + struct.unpack_from("<Q", data, pos + 1)[0]
    payload = b"\x28\xb5\x2f\xfd" + b"\x00not zstd data" * 4  # zstd's magic, then garbage
    body = (struct.pack("<QQQI", 0, 0, 1000, 0) + struct.pack("<I", 4) + b"zstd"
            + struct.pack("<Q", len(payload)) + payload)
    data_file.write_bytes(data[:chunk_end] + b"\x06" + struct.pack("<Q", len(body)) + body)  # and no end
    with ImageBagReader(tmp_path / "bag") as r:
        got = [frame_number(f.rgb8) for f in r.frames()]
    assert got == list(range(6))
    assert f"record at byte {chunk_end} is corrupt (zstd chunk cannot be decompressed" in r.stats.truncated
    assert "cannot be opened normally" in fer_warnings.text


def test_truncated_sqlite_gives_a_clear_error(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(20, (120, 160)), storage="sqlite3")
    _truncate_storage(tmp_path / "bag", 0.6)
    with pytest.raises(BagError, match="cannot be opened .*truncated"):
        ImageBagReader(tmp_path / "bag")


@pytest.mark.parametrize("fraction", [0.3, 0.97])
def test_truncated_mcap_keeps_the_frames_before_the_cut(tmp_path, fraction, fer_warnings):
    frames = numbered_frames(30, (120, 160))
    write_image_bag(tmp_path / "bag", frames, storage="mcap")
    _truncate_storage(tmp_path / "bag", fraction)
    with ImageBagReader(tmp_path / "bag") as r:
        got = [frame_number(f.rgb8) for f in r.frames()]
    assert 0 < len(got) < 30
    assert got == list(range(len(got)))  # a clean prefix, in order
    assert math.isclose(len(got) / 30, fraction, abs_tol=0.1)
    assert r.stats.truncated and "no valid end" in r.stats.truncated
    assert "cannot be opened normally" in fer_warnings.text



def test_a_sqlite3_path_sqlite_would_read_as_a_uri_is_refused_and_mcap_written(tmp_path):
    for path in (tmp_path / "take#1", tmp_path / "runs?2" / "bag", tmp_path / "50%" / "bag"):
        with pytest.raises(BagError, match="rename .*--storage mcap"):
            write_image_bag(path, numbered_frames(1))
    assert list(tmp_path.iterdir()) == []
    write_image_bag(tmp_path / "runs?2" / "bag", numbered_frames(2), storage="mcap")
    assert list_topics(tmp_path / "runs?2" / "bag")["/camera/image_raw"][1] == 2


def test_a_writer_that_cannot_open_is_a_bag_error_leaving_nothing(tmp_path, monkeypatch):
    from rosbags.rosbag2 import Writer

    def refuse(self):
        raise OSError(13, "Permission denied")
    monkeypatch.setattr(Writer, "open", refuse)
    with pytest.raises(BagError, match="cannot create the sqlite3 bag .*Permission denied"):
        bagtools.open_writer(tmp_path / "sub" / "bag", "sqlite3", overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_a_bag_appears_only_when_complete_and_an_overwritten_one_stays_until_then(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(2))

    def frames():
        yield from numbered_frames(3)
        assert list_topics(tmp_path / "bag")["/camera/image_raw"][1] == 2  # the old bag, whole, while writing
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        write_image_bag(tmp_path / "bag", frames(), overwrite=True)
    assert list_topics(tmp_path / "bag")["/camera/image_raw"][1] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]
    write_image_bag(tmp_path / "bag", numbered_frames(3), overwrite=True, storage="mcap")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]
    assert sorted(p.name for p in (tmp_path / "bag").iterdir()) == ["bag.mcap", "metadata.yaml"]
    assert list_topics(tmp_path / "bag")["/camera/image_raw"][1] == 3
    with pytest.raises(BagError, match="no frames to write.*kept"):
        write_image_bag(tmp_path / "bag", iter(()), overwrite=True, require_frames=True)
    assert list_topics(tmp_path / "bag")["/camera/image_raw"][1] == 3
