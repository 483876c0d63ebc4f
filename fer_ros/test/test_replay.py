"""fer-replay on generated bags: round trip (counts and stamps) in both storages, labelled replay (accuracy and
confusion matrix against a hand computation), the /emotion output bag, realtime dropping, and every malformed-bag
case (partial results still written). The pipeline is the real Recognizer with a scripted landmarker and a
scripted engine, so the expected figures are known exactly; test_replay_model.py runs the real model."""
from __future__ import annotations

import csv
import json
import logging
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import yaml

from bag_helpers import numbered_frames, write_mixed_bag
from perception_helpers import ScriptedLandmarker, place, template68
from fer_ros.argtypes import parse_args
from fer_ros.cdr_header import header_stamp
from fer_ros.tools import replay
from fer_ros.tools.bagtools import (IMAGE_TYPE, STORAGES, BagFrame, ImageBagReader, image_message, list_topics,
                                    open_writer, typestore, write_image_bag)
from fer_ros.tools.contact_sheet import ContactSheetCollector
from fer_ros.tools.emotion_bag import EMOTION_TYPE, emotion_message
from fer_ros.tools.replay_results import FaceRecord, FrameRecord, ReplayResult, format_stamp
from fer_ros.classes import class_names
from fer_ros.crop import CropConfig
from fer_ros.pipeline import Recognizer
from fer_ros.ratelimit import LOGGER_NAME

CK8 = class_names("ckplus8")


class ScheduleEngine:
    """An engine whose top class for the n-th face it scores is schedule[n] (probability 0.6, the rest shared)."""

    def __init__(self, schedule, names=CK8, delay_s: float = 0.0) -> None:
        self.schedule = list(schedule)
        self.class_names = tuple(names)
        self.calls = 0
        self.delay_s = delay_s

    def predict(self, clip, geo, geo_valid):
        if self.delay_s:
            time.sleep(self.delay_s)
        b = clip.shape[0]
        probs = np.full((b, len(self.class_names)), 0.4 / (len(self.class_names) - 1), np.float32)
        for row in range(b):
            probs[row, self.class_names.index(self.schedule[self.calls % len(self.schedule)])] = 0.6
            self.calls += 1
        return probs


def one_face(i, stamp):
    return [place(template68(), (32, 24), 12)]


def two_faces(i, stamp):  # a big face on the left (dominant), a smaller one on the right
    return [place(template68(), (40, 60), 30), place(template68(), (120, 60), 15)]


def recognizer(engine, script=one_face) -> Recognizer:
    return Recognizer(landmarker=ScriptedLandmarker(script), engine=engine, crop_cfg=CropConfig(size=32))


def args_for(bag: Path, out: Path, *extra: str):
    return replay.get_args_parser().parse_args([str(bag), "--out", str(out), "--quiet", *extra])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("storage", STORAGES)
def test_round_trip_counts_and_stamps(tmp_path, storage):
    info = write_image_bag(tmp_path / "bag", numbered_frames(20), rate_hz=30.0, storage=storage,
                           start_time_s=1_763_000_000.123456789)
    engine = ScheduleEngine(["happy"])
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out"), recognizer=recognizer(engine))
    assert summary["frames"] == {"messages": 20, "read": 20, "decoded": 20, "processed": 20, "dropped_realtime": 0,
                                 "skipped": {}, "with_faces": 20}
    assert summary["faces"]["tracks"] == 1 and summary["faces"]["detections"] == 20
    assert summary["faces"]["with_scores"] == 18  # the window of T=3 frames fills on the third frame
    assert summary["faces"]["labels_per_face"] == {"1": {"happy": 18}} or \
        list(summary["faces"]["labels_per_face"].values()) == [{"happy": 18}]
    assert summary["duration_s"] == pytest.approx(19 / 30.0, abs=1e-6)
    assert summary["frame_rate_hz"] > 0 and summary["latency_ms"]["p50"] > 0
    rows = read_csv(tmp_path / "out" / "frames.csv")
    assert [int(r["frame"]) for r in rows] == list(range(20))
    stamps_ns = [int(r["stamp_s"].replace(".", "")) for r in rows]  # exact decimal seconds, 9 digits
    assert stamps_ns == info.stamps_ns
    assert [r["label"] for r in rows] == [""] * 2 + ["happy"] * 18
    assert float(rows[5]["p_happy"]) == pytest.approx(0.6)
    frames = json.loads((tmp_path / "out" / "results.json").read_text())["frames"]
    assert len(frames) == 20 and frames[3]["faces"][0]["label"] == "happy"
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["frames"]["processed"] == 20


def test_labelled_replay_accuracy_and_confusion(tmp_path):
    """10 frames, window ready from frame 2: predictions for frames 2..9 are the schedule; labels cover frames
    0..9 with frame ranges; 6 of the 8 scored frames are right."""
    write_image_bag(tmp_path / "bag", numbered_frames(10), rate_hz=10.0)
    schedule = ["happy", "happy", "happy", "sadness", "surprise", "surprise", "neutral", "happy"]
    truth = ["neutral", "neutral", "happy", "happy", "happy", "happy", "surprise", "surprise", "neutral", "neutral"]
    (tmp_path / "labels.csv").write_text(
        "# frame ranges\nstart_frame,end_frame,label,face\n0,2,neutral,\n2,6,happy,*\n6,8,surprise,\n"
        "8,inf,neutral,dominant\n")
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--labels", str(tmp_path / "labels.csv")),
                         recognizer=recognizer(ScheduleEngine(schedule)))
    ev = summary["evaluation"]
    y_true = [CK8.index(t) for t in truth[2:]]
    y_pred = [CK8.index(p) for p in schedule]
    expected_cm = np.zeros((8, 8), int)
    for t, p in zip(y_true, y_pred):
        expected_cm[t, p] += 1
    assert ev["scored_faces"] == 8 and ev["labelled_faces_without_scores"] == 2
    assert ev["accuracy"] == pytest.approx(6 / 8)
    assert np.array_equal(np.asarray(ev["confusion_matrix"]), expected_cm)
    recall = ev["recall"] if isinstance(ev["recall"], dict) else dict(zip(CK8, ev["recall"]))
    assert recall["happy"] == pytest.approx(3 / 4)  # frames 2..5 predicted happy, happy, happy, sadness
    assert recall["surprise"] == pytest.approx(2 / 2)  # frames 6, 7 predicted surprise, surprise
    assert recall["neutral"] == pytest.approx(1 / 2)  # frames 8, 9 predicted neutral, happy
    rows = read_csv(tmp_path / "out" / "frames.csv")
    assert [r["true_label"] for r in rows] == truth
    assert (tmp_path / "out" / "confusion_matrix.png").stat().st_size > 1000


def test_labels_per_face_and_dominant(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(6, (120, 160)), rate_hz=10.0)
    (tmp_path / "labels.csv").write_text("start_s,end_s,label,face\n0,inf,happy,\n0,inf,sadness,2\n")
    engine = ScheduleEngine(["happy", "sadness"])  # two faces per frame, scored in id order: 1 happy, 2 sadness
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--labels", str(tmp_path / "labels.csv")),
                         recognizer=recognizer(engine, two_faces))
    rows = read_csv(tmp_path / "out" / "frames.csv")
    by_face = {fid: [r for r in rows if r["face_id"] == fid] for fid in {r["face_id"] for r in rows}}
    assert len(by_face) == 2
    dominant = [fid for fid, rs in by_face.items() if all(r["dominant"] == "1" for r in rs)]
    assert len(dominant) == 1
    assert summary["evaluation"]["scored_faces"] == 8  # 4 ready frames x 2 labelled faces
    assert summary["evaluation"]["accuracy"] == pytest.approx(1.0)


def test_a_seconds_range_starting_at_a_frame_s_written_time_covers_that_frame(tmp_path):
    """At 29.97 fps the frames' times are not whole microseconds: frames.csv writes them exactly (9 digits), and a
    label file whose ranges start at those values labels every frame by its own range."""
    info = write_image_bag(tmp_path / "bag", numbered_frames(12), rate_hz=29.97)
    replay.run(args_for(tmp_path / "bag", tmp_path / "first"), recognizer=recognizer(ScheduleEngine(["happy"])))
    rows = read_csv(tmp_path / "first" / "frames.csv")
    assert [r["time_s"] for r in rows] == [format_stamp(t - info.stamps_ns[0]) for t in info.stamps_ns]
    frames = json.loads((tmp_path / "first" / "results.json").read_text())["frames"]
    assert [f["time_s"] for f in frames] == [float(r["time_s"]) for r in rows]
    assert [f["time_ns"] for f in frames] == [t - info.stamps_ns[0] for t in info.stamps_ns]
    truth = ["happy" if i % 2 else "sadness" for i in range(len(rows))]
    ends = [r["time_s"] for r in rows[1:]] + ["inf"]
    (tmp_path / "labels.csv").write_text("start_s,end_s,label\n" + "".join(
        f"{r['time_s']},{end},{label}\n" for r, end, label in zip(rows, ends, truth)))
    replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--labels", str(tmp_path / "labels.csv")),
               recognizer=recognizer(ScheduleEngine(["happy"])))
    assert [r["true_label"] for r in read_csv(tmp_path / "out" / "frames.csv")] == truth


def write_bag_with_stamps(path: Path, stamps_ns: list[int]) -> None:
    """A bag of numbered frames recorded 100 ms apart (bag time) whose header stamps are `stamps_ns`."""
    store = typestore()
    writer = open_writer(path, "sqlite3", overwrite=False)
    try:
        conn = writer.add_connection("/camera/image_raw", IMAGE_TYPE, typestore=store)
        t0 = 1_700_000_000_000_000_000
        for i, (frame, stamp) in enumerate(zip(numbered_frames(len(stamps_ns)), stamps_ns)):
            writer.write(conn, t0 + i * 100_000_000, store.serialize_cdr(image_message(frame, stamp, "cam"),
                                                                           IMAGE_TYPE))
    finally:
        writer.close()


def test_stamps_that_go_back_keep_a_timeline_for_labels(tmp_path):
    """A bag recorded across clock resets: header stamps jump back after frames 4 and 7. time_s steps over each
    jump by the bag's record time, so a seconds-based label covers every frame; the tracks still reset there (a new
    id whose window fills again). Said once."""
    t = 1_700_000_000_000_000_000
    stamps = ([t + i * 100_000_000 for i in range(5)] + [t - 10**9 + i * 100_000_000 for i in range(3)]
              + [t - 2 * 10**9 + i * 100_000_000 for i in range(2)])
    write_bag_with_stamps(tmp_path / "bag", stamps)
    (tmp_path / "labels.csv").write_text("start_s,end_s,label,face\n0,inf,happy,\n")
    summary, said = _replay_saying(
        args_for(tmp_path / "bag", tmp_path / "out", "--labels", str(tmp_path / "labels.csv")))
    rows = read_csv(tmp_path / "out" / "frames.csv")
    assert [float(r["time_s"]) for r in rows] == pytest.approx([i / 10 for i in range(10)], abs=1e-9)
    assert [int(r["stamp_s"].replace(".", "")) for r in rows] == stamps
    assert [r["face_id"] for r in rows] == ["1"] * 5 + ["2"] * 3 + ["3"] * 2
    assert [r["true_label"] for r in rows] == ["happy"] * 10
    assert summary["duration_s"] == pytest.approx(0.9)
    ev = summary["evaluation"]
    assert ev["scored_faces"] == 4 and ev["labelled_faces_without_scores"] == 6  # tracks of 5, 3, 2 frames: 2 each filling
    assert ev["labelled_frames_no_face"] == 0 and ev["accuracy"] == pytest.approx(1.0)
    assert sum("header stamps of /camera/image_raw go back at frame 5" in line for line in said.lines) == 1
    assert not any("go back at frame 8" in line for line in said.lines), said.lines


def test_a_frame_whose_stamp_repeats_the_previous_one_is_skipped_and_counted(tmp_path):
    """A driver that stamps two images alike: the second is skipped as fer_node skips it (one moment must not count
    twice in a face's window) and counted by reason, not recorded as a frame without faces (a labelled miss)."""
    t = 1_700_000_000_000_000_000
    stamps = [t, t + 100_000_000, t + 100_000_000, t + 200_000_000, t + 300_000_000]
    write_bag_with_stamps(tmp_path / "bag", stamps)
    (tmp_path / "labels.csv").write_text("start_s,end_s,label,face\n0,inf,happy,\n")
    summary, _ = _replay_saying(
        args_for(tmp_path / "bag", tmp_path / "out", "--labels", str(tmp_path / "labels.csv")))
    rows = read_csv(tmp_path / "out" / "frames.csv")
    assert [int(r["frame"]) for r in rows] == [0, 1, 3, 4]
    assert [r["face_id"] for r in rows] == ["1"] * 4
    assert summary["evaluation"]["labelled_frames_no_face"] == 0
    assert "repeated stamp" in json.dumps(summary)


def write_bag_with_a_bad_first_message(path: Path, first: str) -> None:
    """10 images 100 ms apart (header stamp = bag time); message 0 is skipped by the replay: "undecodable" (an
    unknown encoding), "too large" (over a --max-image-pixels of 48 x 64) or "garbage" (too short to hold a
    header: its bag time stands for its stamp)."""
    store = typestore()
    writer = open_writer(path, "sqlite3", overwrite=False)
    try:
        conn = writer.add_connection("/camera/image_raw", IMAGE_TYPE, typestore=store)
        t0 = 1_700_000_000_000_000_000
        for i, frame in enumerate(numbered_frames(10)):
            t = t0 + i * 100_000_000
            msg = image_message(frame, t, "cam")
            if i == 0 and first == "undecodable":
                msg.encoding = "32FC7"
            elif i == 0 and first == "too large":
                msg = image_message(np.zeros((96, 128, 3), np.uint8), t, "cam")
            raw = b"\x00\x01garbage" if i == 0 and first == "garbage" else store.serialize_cdr(msg, IMAGE_TYPE)
            writer.write(conn, t, raw)
    finally:
        writer.close()


@pytest.mark.parametrize("first", ["undecodable", "too large", "garbage"])
def test_seconds_count_from_the_topic_s_first_message_even_when_it_is_skipped(tmp_path, first):
    """Frame 5 is 0.5 s after message 0, which is skipped: labels in seconds and the same labels in frames give
    every frame the same true label."""
    write_bag_with_a_bad_first_message(tmp_path / "bag", first)
    (tmp_path / "seconds.csv").write_text("start_s,end_s,label\n0,0.5,neutral\n0.5,inf,happy\n")
    (tmp_path / "frames.csv").write_text("start_frame,end_frame,label\n0,5,neutral\n5,inf,happy\n")
    rows = {}
    for unit in ("seconds", "frames"):
        replay.run(args_for(tmp_path / "bag", tmp_path / unit, "--labels", str(tmp_path / f"{unit}.csv"),
                            "--max-image-pixels", str(48 * 64)), recognizer=recognizer(ScheduleEngine(["happy"])))
        rows[unit] = read_csv(tmp_path / unit / "frames.csv")
    assert [int(r["frame"]) for r in rows["seconds"]] == list(range(1, 10))
    assert [float(r["time_s"]) for r in rows["seconds"]] == pytest.approx([i / 10 for i in range(1, 10)], abs=1e-9)
    assert [r["true_label"] for r in rows["seconds"]] == ["neutral"] * 4 + ["happy"] * 5
    assert [r["true_label"] for r in rows["seconds"]] == [r["true_label"] for r in rows["frames"]]


def test_header_stamp_is_read_from_the_message_bytes():
    msg = image_message(numbered_frames(1)[0], 1_700_000_000_250_000_000, "cam")
    for little_endian in (True, False):
        raw = bytes(typestore().serialize_cdr(msg, IMAGE_TYPE, little_endian=little_endian))
        assert header_stamp(raw) == (1_700_000_000, 250_000_000)
        assert header_stamp(raw[:11]) is None


def test_a_face_labelled_by_id_that_is_lost_counts_as_missed(tmp_path):
    """Labels for track 1 over all 10 frames; the stamps jump back after frame 4, the tracks reset and the face
    comes back as track 2: its 5 frames are missed faces, not left out silently."""
    t = 1_700_000_000_000_000_000
    write_bag_with_stamps(tmp_path / "bag", [t + i * 100_000_000 for i in range(5)]
                          + [t - 10**9 + i * 100_000_000 for i in range(5)])
    (tmp_path / "labels.csv").write_text("start_frame,end_frame,label,face\n0,10,happy,1\n")
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--labels", str(tmp_path / "labels.csv")),
                         recognizer=recognizer(ScheduleEngine(["happy"])))
    rows = read_csv(tmp_path / "out" / "frames.csv")
    assert [r["face_id"] for r in rows] == ["1"] * 5 + ["2"] * 5
    ev = summary["evaluation"]
    assert ev["scored_faces"] == 3 and ev["labelled_faces_without_scores"] == 2
    assert ev["labelled_frames_no_face"] == 5
    assert "5 labelled faces not found in their frame" in replay.format_summary(summary)


def test_unknown_label_is_a_clear_error(tmp_path, capsys, monkeypatch):
    write_image_bag(tmp_path / "bag", numbered_frames(3))
    (tmp_path / "labels.csv").write_text("start_s,end_s,label\n0,1,joy\n")
    monkeypatch.setattr(replay, "build_recognizer",
                        lambda *a, **k: (recognizer(ScheduleEngine(["happy"])), "scripted", tmp_path))
    rc = replay.main([str(tmp_path / "bag"), "--labels", str(tmp_path / "labels.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "joy" in err and "not classes of the model" in err and "Traceback" not in err


def test_out_bag_has_emotion_messages(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(8), rate_hz=10.0, storage="mcap")
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--out-bag", str(tmp_path / "with_emotion")),
                         recognizer=recognizer(ScheduleEngine(["fear"])))
    assert summary["emotion_messages"] == 8
    topics = list_topics(tmp_path / "with_emotion")
    assert topics == {"/camera/image_raw": ("sensor_msgs/msg/Image", 8),
                      "/emotion": ("fer_msgs/msg/FaceEmotionArray", 8)}
    # the output bag keeps the input's storage: one .mcap file beside its metadata, which names mcap
    files = sorted(f.name for f in (tmp_path / "with_emotion").iterdir())
    assert files == ["metadata.yaml", "with_emotion.mcap"], files
    metadata = yaml.safe_load((tmp_path / "with_emotion" / "metadata.yaml").read_text())
    assert metadata["rosbag2_bagfile_information"]["storage_identifier"] == "mcap"
    from fer_ros.tools.bagtools import open_bag
    reader = open_bag(tmp_path / "with_emotion")
    try:
        conn = [c for c in reader.connections if c.topic == "/emotion"]
        raws = [raw for _, _, raw in reader.messages(connections=conn)]
        img_stamps = []
        with ImageBagReader(tmp_path / "with_emotion") as r:
            img_stamps = [f.stamp_ns for f in r.frames()]
    finally:
        reader.close()
    msgs = [typestore().deserialize_cdr(raw, "fer_msgs/msg/FaceEmotionArray") for raw in raws]
    assert [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in msgs] == img_stamps
    assert [len(m.faces) for m in msgs] == [1] * 8
    last = msgs[-1].faces[0]
    assert last.label == "fear" and last.window_ready and list(last.class_names) == list(CK8)
    assert len(last.scores) == 8 and len(last.landmarks) == 68 and last.window_frames == 3
    assert msgs[0].faces[0].label == "" and len(msgs[0].faces[0].scores) == 0
    # the same bytes as the node's own message (rclpy serialization of convert.face_emotion_array)
    rclpy_ser = pytest.importorskip("rclpy.serialization")
    fer_msgs = pytest.importorskip("fer_msgs.msg")
    decoded = rclpy_ser.deserialize_message(bytes(raws[-1]), fer_msgs.FaceEmotionArray)
    assert decoded.faces[0].label == "fear" and decoded.faces[0].box.width > 0
    assert decoded.header.stamp.sec == msgs[-1].header.stamp.sec


def _scripted_build(monkeypatch, tmp_path) -> list:
    """build_recognizer replaced by the always-happy scripted recognizer; returns the list of its calls."""
    built: list = []

    def build(*args, **kwargs):
        built.append(args)
        return recognizer(ScheduleEngine(["happy"])), "scripted", tmp_path
    monkeypatch.setattr(replay, "build_recognizer", build)
    return built


def write_bag_with_emotion(path: Path, n: int) -> None:
    """`n` images and, for each, a FaceEmotionArray on /emotion: a recording of a running fer_node."""
    store = typestore()
    writer = open_writer(path, "sqlite3", overwrite=False)
    try:
        image = writer.add_connection("/camera/image_raw", IMAGE_TYPE, typestore=store)
        emotion = writer.add_connection("/emotion", EMOTION_TYPE, typestore=store)
        for i, frame in enumerate(numbered_frames(n)):
            t = 1_700_000_000_000_000_000 + i * 100_000_000
            writer.write(image, t, store.serialize_cdr(image_message(frame, t, "cam"), IMAGE_TYPE))
            record = FrameRecord(index=i, stamp_ns=t, time_ns=0, bag_time_ns=t, latency_ms=1.0, width=64, height=48)
            writer.write(emotion, t + 1_000_000, store.serialize_cdr(emotion_message(record, CK8, "cam", {}),
                                                                      EMOTION_TYPE))
    finally:
        writer.close()


def test_an_input_that_has_the_emotion_topic_is_refused_before_the_replay(tmp_path, capsys, monkeypatch):
    write_bag_with_emotion(tmp_path / "bag", 6)
    built = _scripted_build(monkeypatch, tmp_path)
    argv = [str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--quiet", "--out-bag", str(tmp_path / "copy")]
    assert replay.main(argv) == 2
    err = capsys.readouterr().err
    assert "already has a topic /emotion" in err and "--emotion-topic /emotion_replay" in err
    assert "Traceback" not in err and not built and not (tmp_path / "copy").exists()
    assert replay.main([*argv, "--emotion-topic", "/emotion_replay"]) == 0
    assert list_topics(tmp_path / "copy") == {"/camera/image_raw": (IMAGE_TYPE, 6), "/emotion": (EMOTION_TYPE, 6),
                                              "/emotion_replay": (EMOTION_TYPE, 6)}


@pytest.mark.parametrize("overwrite", [["--overwrite"], []])
@pytest.mark.parametrize("where", ["the input bag", "a folder holding the input bag"])
def test_an_out_bag_that_is_or_holds_the_input_bag_is_refused(tmp_path, capsys, monkeypatch, where, overwrite):
    """Refused as the input bag with or without --overwrite: the refusal never suggests --overwrite, which would
    refuse it too."""
    write_image_bag(tmp_path / "data" / "bag", numbered_frames(4))
    built = _scripted_build(monkeypatch, tmp_path)
    out_bag = tmp_path / "data" / "bag" if where == "the input bag" else tmp_path / "data"
    assert replay.main([str(tmp_path / "data" / "bag"), "--out", str(tmp_path / "out"), "--quiet", "--out-bag",
                        str(out_bag), *overwrite]) == 2
    err = capsys.readouterr().err
    assert "the input bag" in err and "choose another --out-bag" in err and not built
    assert "--overwrite" not in err and err.count("\n") == 1
    assert list_topics(tmp_path / "data" / "bag") == {"/camera/image_raw": (IMAGE_TYPE, 4)}


def write_bag_with_a_custom_type(path: Path, definition: bool) -> None:
    """4 images and /counter of a type the type store does not know (my_pkg/msg/Counter), with no type hash
    recorded (as a recorder before ROS 2 Jazzy writes it), and without `definition` no message definition either."""
    import sqlite3
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    own = get_typestore(Stores.ROS2_JAZZY)
    own.register(get_types_from_msg("int32 value\n", "my_pkg/msg/Counter"))
    store = typestore()
    writer = open_writer(path, "sqlite3", overwrite=False)
    try:
        image = writer.add_connection("/camera/image_raw", IMAGE_TYPE, typestore=store)
        counter = writer.add_connection("/counter", "my_pkg/msg/Counter", typestore=own)
        for i, frame in enumerate(numbered_frames(4)):
            t = 1_700_000_000_000_000_000 + i * 100_000_000
            writer.write(image, t, store.serialize_cdr(image_message(frame, t, "cam"), IMAGE_TYPE))
            writer.write(counter, t, own.serialize_cdr(own.types["my_pkg/msg/Counter"](value=i), "my_pkg/msg/Counter"))
    finally:
        writer.close()
    db = sqlite3.connect(next(path.glob("*.db3")))
    db.execute("UPDATE topics SET type_description_hash = ''")
    db.execute("UPDATE message_definitions SET type_description_hash = ''")
    if not definition:
        db.execute("UPDATE message_definitions SET encoded_message_definition = ''")
    db.commit()
    db.close()
    metadata = yaml.safe_load((path / "metadata.yaml").read_text())
    for entry in metadata["rosbag2_bagfile_information"]["topics_with_message_count"]:
        entry["topic_metadata"]["type_description_hash"] = ""
    (path / "metadata.yaml").write_text(yaml.safe_dump(metadata))


def test_a_type_without_a_recorded_hash_is_copied_into_the_out_bag(tmp_path):
    write_bag_with_a_custom_type(tmp_path / "bag", definition=True)
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--out-bag", str(tmp_path / "copy")),
                         recognizer=recognizer(ScheduleEngine(["happy"])))
    assert summary["emotion_messages"] == 4
    assert list_topics(tmp_path / "copy") == {"/camera/image_raw": (IMAGE_TYPE, 4),
                                              "/counter": ("my_pkg/msg/Counter", 4), "/emotion": (EMOTION_TYPE, 4)}


def test_a_topic_the_out_bag_cannot_take_is_said_before_the_replay(tmp_path, capsys, monkeypatch):
    write_bag_with_a_custom_type(tmp_path / "bag", definition=False)
    built = _scripted_build(monkeypatch, tmp_path)
    assert replay.main([str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--quiet", "--out-bag",
                        str(tmp_path / "copy")]) == 2
    err = capsys.readouterr().err
    assert "topic /counter (my_pkg/msg/Counter)" in err and "no message definition" in err
    assert "Traceback" not in err and not built
    assert not (tmp_path / "copy").exists() and not (tmp_path / "out").exists()


def _disk_full_on_emotion(monkeypatch):
    """Writing an /emotion message into a bag fails as on a full disk; the other topics are written."""
    from rosbags.rosbag2 import Writer
    real_write = Writer.write

    def write(self, connection, timestamp, data):
        if connection.topic == "/emotion":
            raise OSError(28, "No space left on device")
        return real_write(self, connection, timestamp, data)
    monkeypatch.setattr(Writer, "write", write)


def test_a_failure_while_writing_the_out_bag_is_an_error_after_the_other_outputs(tmp_path, capsys, monkeypatch):
    write_image_bag(tmp_path / "bag", numbered_frames(6), rate_hz=10.0)
    _disk_full_on_emotion(monkeypatch)
    _scripted_build(monkeypatch, tmp_path)
    assert replay.main([str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--quiet", "--out-bag",
                        str(tmp_path / "copy")]) == 2
    out = capsys.readouterr()
    assert "No space left on device" in out.err and "partial bag was removed" in out.err
    assert "Traceback" not in out.err and "6 frames replayed" in out.out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "No space left on device" in summary["out_bag_error"] and summary["frames"]["processed"] == 6
    assert len(read_csv(tmp_path / "out" / "frames.csv")) == 6 and (tmp_path / "out" / "timeline.png").exists()
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize("case", ["a file", "frames.csv", "summary.json", "timeline.png", "contact_sheet.png",
                                  "results.json", "confusion_matrix.png", "under a file"])
def test_an_out_that_cannot_take_the_results_is_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch, case):
    """--out a file, a folder in it named as one of the results, a path under a file: one line, exit 2, before the
    model loads; a bag at --out-bag (--overwrite) is left as it was."""
    write_image_bag(tmp_path / "bag", numbered_frames(4), rate_hz=10.0)
    write_image_bag(tmp_path / "copy", numbered_frames(2), topic="/old")
    out = tmp_path / "out"
    if case in ("a file", "under a file"):
        out.write_text("x")
    else:
        (out / case).mkdir(parents=True)
    built = _scripted_build(monkeypatch, tmp_path)
    rc = replay.main([str(tmp_path / "bag"), "--out", str(out / "sub" if case == "under a file" else out), "--quiet",
                      "--out-bag", str(tmp_path / "copy"), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("fer-replay: error: ") and "--out" in err
    assert {"a file": "exists and is not a folder: remove it or choose another --out",
            "under a file": "cannot make the --out folder"}.get(case, f"holds a folder named {case}") in err
    assert not built
    assert list_topics(tmp_path / "copy") == {"/old": (IMAGE_TYPE, 2)}
    if case not in ("a file", "under a file"):
        assert [p.name for p in out.iterdir()] == [case]


def test_a_failure_writing_the_results_is_one_line_and_keeps_the_out_bag(tmp_path, capsys, monkeypatch):
    write_image_bag(tmp_path / "bag", numbered_frames(4), rate_hz=10.0)
    _scripted_build(monkeypatch, tmp_path)

    def disk_full(path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr(replay, "write_frames_csv", disk_full)
    rc = replay.main([str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--quiet", "--out-bag",
                      str(tmp_path / "copy")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "No space left on device" in err and f"the --out-bag {tmp_path / 'copy'} was written" in err
    assert list_topics(tmp_path / "copy") == {"/camera/image_raw": (IMAGE_TYPE, 4), "/emotion": (EMOTION_TYPE, 4)}


def test_replaying_the_current_folder_writes_beside_the_bag(tmp_path, monkeypatch):
    """`fer-replay .` inside the bag: the results go to <bag>_replay next to it, the timeline titled with its name."""
    from fer_ros import plots
    write_image_bag(tmp_path / "my_bag", numbered_frames(4), rate_hz=10.0)
    titles = []
    real_plot = plots.plot_timeline
    monkeypatch.setattr(plots, "plot_timeline", lambda *a, **k: (titles.append(k["title"]), real_plot(*a, **k))[1])
    _scripted_build(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path / "my_bag")
    assert replay.main([".", "--quiet"]) == 0
    assert (tmp_path / "my_bag_replay" / "summary.json").is_file() and not (tmp_path / "my_bag" / "_replay").exists()
    assert titles == ["my_bag /camera/image_raw"]


def test_label_names_match_the_model_s_classes_by_class_key(tmp_path, capsys, monkeypatch):
    """`Happy ` in a label file is the model's `happy`, as fer-eval matches class names (metrics.class_key)."""
    write_image_bag(tmp_path / "bag", numbered_frames(5), rate_hz=10.0)
    (tmp_path / "labels.csv").write_text("start_frame,end_frame,label\n0,inf,Happy \n")
    _scripted_build(monkeypatch, tmp_path)
    rc = replay.main([str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--quiet", "--labels",
                      str(tmp_path / "labels.csv")])
    assert rc == 0, capsys.readouterr().err
    ev = json.loads((tmp_path / "out" / "summary.json").read_text())["evaluation"]
    assert ev["accuracy"] == 1.0 and ev["scored_faces"] == 3
    assert [r["true_label"] for r in read_csv(tmp_path / "out" / "frames.csv")] == ["happy"] * 5


def test_face_timeout_must_be_above_0(capsys):
    assert parse_args(replay.get_args_parser(), ["bag", "--face-timeout-s", "0"], "fer-replay: error") is None
    assert "--face-timeout-s must be a number of seconds above 0, got 0.0" in capsys.readouterr().err
    args = parse_args(replay.get_args_parser(), ["bag", "--face-timeout-s", "0.25"], "fer-replay: error")
    assert args.face_timeout_s == 0.25


def test_realtime_drops_frames_like_the_node(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(12), rate_hz=20.0)
    engine = ScheduleEngine(["happy"], delay_s=0.12)  # slower than the 50 ms between frames
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--realtime"),
                         recognizer=recognizer(engine))
    fr = summary["frames"]
    assert fr["dropped_realtime"] > 0
    assert fr["processed"] + fr["dropped_realtime"] == 12
    rows = read_csv(tmp_path / "out" / "frames.csv")
    indices = [int(r["frame"]) for r in rows]
    assert indices[0] == 0 and indices[-1] == 11 and indices == sorted(indices)
    assert summary["wall_s"] >= 0.55 - 0.05  # never faster than the recording


def test_realtime_processes_no_more_frames_than_max_frames(tmp_path):
    """The first frame waits while replay starts and is processed as the second one is due: --max-frames 1 ends
    the replay there, the second frame left unprocessed."""
    write_image_bag(tmp_path / "bag", numbered_frames(10), rate_hz=10.0)
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--realtime", "--max-frames", "1"),
                         recognizer=recognizer(ScheduleEngine(["happy"])))
    assert summary["frames"]["processed"] == 1
    assert [int(r["frame"]) for r in read_csv(tmp_path / "out" / "frames.csv")] == [0]
    assert summary["stopped_at_max_frames"] is True


def test_the_summary_counts_the_topic_s_messages_and_says_where_max_frames_stopped(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(20), rate_hz=10.0)
    cut = replay.run(args_for(tmp_path / "bag", tmp_path / "cut", "--max-frames", "5"),
                     recognizer=recognizer(ScheduleEngine(["happy"])))
    assert cut["frames"]["messages"] == 20 and cut["frames"]["read"] == 5 and cut["frames"]["processed"] == 5
    assert cut["max_frames"] == 5 and cut["stopped_at_max_frames"] is True
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["frames"]["messages"] == 20
    first = replay.format_summary(cut).splitlines()[0]
    assert "5 frames replayed of 20 messages" in first
    assert first.endswith("; stopped at --max-frames 5 (5 messages read)")
    whole = replay.run(args_for(tmp_path / "bag", tmp_path / "whole", "--max-frames", "20"),
                       recognizer=recognizer(ScheduleEngine(["happy"])))
    assert whole["frames"]["messages"] == whole["frames"]["read"] == 20 and whole["stopped_at_max_frames"] is False
    assert replay.format_summary(whole).splitlines()[0].endswith("20 frames replayed of 20 messages (20 with faces), "
                                                                 "1 face tracks")


# --- malformed bags: partial results still written ----------------------------------------------------------------
@pytest.mark.parametrize("storage", STORAGES)
def test_bad_messages_skipped_counted_and_results_written(tmp_path, storage, capsys, monkeypatch):
    expected = write_mixed_bag(tmp_path / "bag", storage)
    monkeypatch.setattr(replay, "build_recognizer",
                        lambda *a, **k: (recognizer(ScheduleEngine(["happy"])), "scripted", tmp_path))
    rc = replay.main([str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--quiet"])
    out = capsys.readouterr()
    assert rc == 0
    assert "skipped: 2 undecodable images, 1 undeserializable messages" in out.out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames"]["skipped"] == expected["skipped"]
    assert summary["frames"]["processed"] == 4
    assert [int(r["frame"]) for r in read_csv(tmp_path / "out" / "frames.csv")] == expected["good_indices"]


class InterruptedRecognizer(Recognizer):
    """The always-happy recognizer; a Ctrl-C (KeyboardInterrupt) arrives while it processes its `at`-th frame."""

    def __init__(self, at: int) -> None:
        super().__init__(landmarker=ScriptedLandmarker(one_face), engine=ScheduleEngine(["happy"]),
                         crop_cfg=CropConfig(size=32))
        self.at, self.frames = at, 0

    def process(self, frame, stamp_s=None):
        self.frames += 1
        if self.frames == self.at:
            raise KeyboardInterrupt
        return super().process(frame, stamp_s)


def test_an_interrupted_replay_writes_its_frames_says_so_and_exits_130(tmp_path, capsys, monkeypatch):
    write_image_bag(tmp_path / "bag", numbered_frames(10, (120, 160)), rate_hz=10.0)
    monkeypatch.setattr(replay, "build_recognizer",
                        lambda *a, **k: (InterruptedRecognizer(at=5), "scripted", tmp_path))
    rc = replay.main([str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--quiet"])
    out = capsys.readouterr()
    assert rc == 130
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["frames"]["processed"] == 4
    assert len(read_csv(tmp_path / "out" / "frames.csv")) == 4
    assert out.err.strip().splitlines()[-1] == "fer-replay: interrupted after 4 frames; those are summarised above"
    whole = replay.run(args_for(tmp_path / "bag", tmp_path / "out2"),
                       recognizer=recognizer(ScheduleEngine(["happy"])))
    assert whole["interrupted"] is False and whole["frames"]["processed"] == 10


class _Lines(logging.Handler):
    """The messages of the "fer_ros" logger, whatever its propagation (launch's logger class turns it off)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())


def _replay_saying(args) -> tuple[dict, "_Lines"]:
    """replay.run(args) on an always-happy recognizer, with what it logged."""
    said = _Lines()
    logging.getLogger(LOGGER_NAME).addHandler(said)
    try:
        return replay.run(args, recognizer=recognizer(ScheduleEngine(["happy"]))), said
    finally:
        logging.getLogger(LOGGER_NAME).removeHandler(said)


def test_truncated_mcap_partial_results_said_once(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(30, (120, 160)), storage="mcap")
    data = next((tmp_path / "bag").glob("*.mcap"))
    with open(data, "r+b") as fh:
        fh.truncate(int(data.stat().st_size * 0.6))
    summary, said = _replay_saying(
        args_for(tmp_path / "bag", tmp_path / "out", "--out-bag", str(tmp_path / "emotion")))
    assert 10 < summary["frames"]["processed"] < 30
    assert "no valid end" in summary["truncated"]
    assert len(read_csv(tmp_path / "out" / "frames.csv")) == summary["frames"]["processed"]
    # The bag is opened three times (checked first, opened for the copy, replayed); its damage is said once.
    assert sum("cannot be opened normally" in line for line in said.lines) == 1, said.lines


def test_images_over_the_pixel_limit_are_skipped_and_counted(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(5, (48, 64)), rate_hz=10.0)
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--max-image-pixels", str(48 * 64 - 1)),
                         recognizer=recognizer(ScheduleEngine(["happy"])))
    assert summary["frames"]["skipped"] == {"images over the pixel limit": 5}
    assert summary["frames"]["processed"] == 0
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--max-image-pixels", str(48 * 64)),
                         recognizer=recognizer(ScheduleEngine(["happy"])))
    assert summary["frames"]["skipped"] == {} and summary["frames"]["processed"] == 5


@pytest.mark.parametrize("case, message", [
    ("missing_topic", "has no topic /nope; its topics"),
    ("non_image_topic", "carries std_msgs/msg/String, not sensor_msgs/msg/Image"),
    ("truncated_sqlite", "cannot be opened"),
    ("no_bag", "does not exist"),
])
def test_unusable_bags_are_one_line_errors(tmp_path, case, message, capsys, monkeypatch):
    monkeypatch.setattr(replay, "build_recognizer",
                        lambda *a, **k: (recognizer(ScheduleEngine(["happy"])), "scripted", tmp_path))
    bag = tmp_path / "bag"
    extra: list[str] = []
    if case == "missing_topic":
        write_mixed_bag(bag)
        extra = ["--topic", "/nope"]
    elif case == "non_image_topic":
        write_mixed_bag(bag)
        extra = ["--topic", "/chatter"]
    elif case == "truncated_sqlite":
        write_image_bag(bag, numbered_frames(20, (120, 160)))
        db = next(bag.glob("*.db3"))
        with open(db, "r+b") as fh:
            fh.truncate(db.stat().st_size // 2)
    rc = replay.main([str(bag), "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_contact_sheet(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(9, (120, 160)), rate_hz=10.0)
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--contact-sheet", "4"),
                         recognizer=recognizer(ScheduleEngine(["happy"])))
    import cv2
    sheet = cv2.imread(summary["outputs"]["contact_sheet_png"])
    assert sheet is not None and sheet.shape[1] > 4 * 320 and sheet.shape[0] > 240


def test_contact_sheet_spreads_over_the_frames_max_frames_keeps(tmp_path):
    """20 messages, --max-frames 5: the 4 tiles are spread over frames 0..4, not over 0..19 (0, 6, 13, 19: only
    frame 0 is replayed)."""
    write_image_bag(tmp_path / "bag", numbered_frames(20, (120, 160)), rate_hz=10.0)
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--max-frames", "5", "--contact-sheet", "4"),
                         recognizer=recognizer(ScheduleEngine(["happy"])))
    assert summary["frames"]["processed"] == 5
    import cv2
    sheet = cv2.imread(summary["outputs"]["contact_sheet_png"])
    assert sheet.shape[1] > 4 * 320  # four tiles side by side


def sheet_tile_count(summary: dict) -> int:
    """The tiles of a one-row contact sheet (at most 4 tiles), from its width: 320 px a tile, 4 px between."""
    import cv2
    sheet = cv2.imread(summary["outputs"]["contact_sheet_png"])
    assert sheet is not None
    return (sheet.shape[1] - 4) // (320 + 4)


def test_the_contact_sheet_has_its_tiles_when_a_wanted_message_is_skipped(tmp_path):
    """10 messages, the last repeating the stamp of the one before (skipped): --contact-sheet 3 wants messages 0, 4
    and 9; message 8, the last frame replayed, stands in for 9."""
    t = 1_700_000_000_000_000_000
    write_bag_with_stamps(tmp_path / "bag", [t + i * 100_000_000 for i in range(9)] + [t + 8 * 100_000_000])
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--contact-sheet", "3"),
                         recognizer=recognizer(ScheduleEngine(["happy"])))
    assert summary["frames"]["processed"] == 9
    assert sheet_tile_count(summary) == 3


def collect(monkeypatch, tmp_path: Path, total: int, count: int, processed: list[int]) -> list[int]:
    """The message indices of the tiles a ContactSheetCollector(total, count) saves after `processed` frames (the
    message indices the replay processed, ascending); checks it never keeps more than `count` of their images."""
    from fer_ros.tools import contact_sheet
    saved: list[str] = []

    def sheet_of(tiles, columns=4):
        saved.extend(caption for _, caption in tiles)
        return np.zeros((8, 8, 3), np.uint8)
    monkeypatch.setattr(contact_sheet, "contact_sheet", sheet_of)
    sheet = ContactSheetCollector(total, count)
    images = []
    for i in processed:
        rgb8 = np.full((12, 16, 3), i % 256, np.uint8)
        images.append(weakref.ref(rgb8))
        sheet.on_frame(BagFrame(i, i, i, rgb8, "cam", IMAGE_TYPE), [],
                       FrameRecord(i, i, i * 100_000_000, i, 1.0, 16, 12))
        del rgb8
        assert sum(ref() is not None for ref in images) <= count
    sheet.save(tmp_path / "sheet.png")
    return [int(caption.split()[1]) for caption in saved]


@pytest.mark.parametrize("total, count, processed, shown", [
    (5, 5, [0, 2, 3, 4, 5], [0, 2, 3, 4, 5]),  # --max-frames 5, message 1 skipped: message 5 is the fifth frame
    (10, 3, list(range(9)), [0, 4, 8]),  # the last message skipped: the last frame replayed stands in for it
    (12, 4, [0, 1, 7, 10, 11], [0, 7, 10, 11]),  # --realtime dropped messages 2..6 and 8, 9
    (10, 5, [0, 5], [0, 5]),  # fewer frames replayed than tiles asked for: each of them
])
def test_the_contact_sheet_takes_the_first_frame_replayed_at_or_after_each_wanted_message(
        monkeypatch, tmp_path, total, count, processed, shown):
    assert collect(monkeypatch, tmp_path, total, count, processed) == shown


def test_the_contact_sheet_spreads_its_tiles_over_the_frames_after_a_gap(monkeypatch, tmp_path):
    """120 messages, 12 tiles wanted at 0, 11, 22, ...; a slow first frame under --realtime drops messages 1..50:
    message 51 takes the tile of 11 and the other 10 are spread over 52..119, not taken from the end only."""
    shown = collect(monkeypatch, tmp_path, 120, 12, [0] + list(range(51, 120)))
    assert len(shown) == 12 and shown[:2] == [0, 51] and shown[-1] == 119
    assert all(5 <= b - a <= 8 for a, b in zip(shown[1:], shown[2:])), shown


def test_a_second_run_into_the_same_folder_leaves_no_plot_of_the_first(tmp_path):
    write_image_bag(tmp_path / "bag", numbered_frames(6, (120, 160)), rate_hz=10.0)
    (tmp_path / "labels.csv").write_text("start_frame,end_frame,label\n0,inf,happy\n")
    out = tmp_path / "out"
    first = replay.run(args_for(tmp_path / "bag", out, "--labels", str(tmp_path / "labels.csv"), "--contact-sheet",
                                "2"), recognizer=recognizer(ScheduleEngine(["happy"])))
    assert {"confusion_png", "contact_sheet_png"} <= set(first["outputs"])
    assert (out / "confusion_matrix.png").exists() and (out / "contact_sheet.png").exists()
    second = replay.run(args_for(tmp_path / "bag", out), recognizer=recognizer(ScheduleEngine(["happy"])))
    assert not {"confusion_png", "contact_sheet_png"} & set(second["outputs"])
    assert not (out / "confusion_matrix.png").exists() and not (out / "contact_sheet.png").exists()
    assert (out / "timeline.png").exists()


def test_the_log_says_how_many_face_tracks_the_timeline_leaves_out(tmp_path):
    """Seven faces side by side, each its own track: timeline.png has panels for six, and one line says so."""
    def seven_faces(i, stamp):
        return [place(template68(), (30 + 65 * k, 50), 12) for k in range(7)]
    write_image_bag(tmp_path / "bag", numbered_frames(4, (120, 480)), rate_hz=10.0)
    said = _Lines()
    said.setLevel(logging.INFO)
    logger = logging.getLogger(LOGGER_NAME)
    level = logger.level
    logger.addHandler(said)
    logger.setLevel(logging.INFO)
    try:
        summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out"), recognizer=Recognizer(
            landmarker=ScriptedLandmarker(seven_faces), engine=ScheduleEngine(["happy"]), crop_cfg=CropConfig(size=32),
            max_faces=7))
    finally:
        logger.removeHandler(said)
        logger.setLevel(level)
    assert summary["faces"]["tracks"] == 7
    assert [line for line in said.lines if "timeline.png" in line] == [
        "timeline.png shows the 6 longest of 7 face tracks; 1 left out of it (frames.csv and results.json have every "
        "track)"]


def _strict_json(path: Path):
    def refuse(constant):
        raise ValueError(f"{path.name} holds {constant}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null(tmp_path):
    record = FrameRecord(index=0, stamp_ns=1_700_000_000_000_000_000, time_ns=0, bag_time_ns=0,
                         latency_ms=float("nan"), width=160, height=120)
    probs = [float("nan")] + [0.1] * 7
    record.faces.append(FaceRecord(id=1, box=(0.0, 0.0, 10.0, 10.0), window_ready=True, has_neutral=True,
                                   label="anger", confidence=float("inf"), probs=probs, dominant=True))
    result = ReplayResult("bag", "/camera/image_raw", CK8, [record], messages=1, decoded=1)
    summary = replay.write_outputs(result, tmp_path / "out", None, None, None, None)
    face = _strict_json(tmp_path / "out" / "results.json")["frames"][0]["faces"][0]
    assert face["probs"][:2] == [None, 0.1] and face["confidence"] is None
    written = _strict_json(tmp_path / "out" / "summary.json")
    assert written["latency_ms"]["p50"] is None and summary["outputs"]["summary_json"]


def test_emotion_message_is_the_nodes_message():
    """The /emotion message replay writes is, field by field, the message fer_node publishes (convert.py) for the
    same results (compared after deserializing with rclpy: CDR padding bytes are unspecified)."""
    convert = pytest.importorskip("fer_ros.ros.convert", reason="rclpy and fer_msgs are needed for the comparison")
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import Header
    from fer_msgs.msg import FaceEmotionArray

    from fer_ros.pipeline import FaceResult
    pts = place(template68(), (100, 80), 30).astype(np.float32)
    probs = np.linspace(1, 8, 8).astype(np.float32)
    probs /= probs.sum()
    results = [
        FaceResult(id=3, box=(-5.2, 10.7, 150.1, 130.0), points68=pts, window_frames=3, window_ready=True,
                   has_neutral=True, probs=probs, label="neutral", confidence=float(probs[-1]), class_names=CK8,
                   track_age_s=1.25),
        FaceResult(id=1, box=(200.0, 20.0, 260.5, 300.0), points68=pts + 100, window_frames=1, window_ready=False,
                   has_neutral=False, class_names=CK8, track_age_s=0.0),
    ]
    record = FrameRecord(index=0, stamp_ns=1700000000_250000000, time_ns=0, bag_time_ns=0, latency_ms=1.0,
                                width=320, height=240)
    for r in results:
        ready = r.window_ready
        record.faces.append(FaceRecord(
            id=r.id, box=r.box, window_ready=ready, has_neutral=r.has_neutral, label=r.label,
            confidence=r.confidence, probs=[float(p) for p in r.probs] if ready else None, dominant=False,
            window_frames=r.window_frames, track_age_s=r.track_age_s))
    ours = emotion_message(record, CK8, "cam", {r.id: r.points68 for r in results})
    ours_raw = bytes(typestore().serialize_cdr(ours, EMOTION_TYPE))
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 1700000000, 250000000
    theirs = convert.face_emotion_array(header, results, 320, 240)
    assert deserialize_message(ours_raw, FaceEmotionArray) == theirs


def test_a_slow_first_frame_does_not_set_the_pipeline_rate(tmp_path):
    """The pipeline's rate is one frame per median latency: a first frame that takes 0.5 s (the pipeline warming
    up) does not move it, where a rate over the whole recognition time would be at most 10 frames / 0.5 s."""
    write_image_bag(tmp_path / "bag", numbered_frames(10), rate_hz=30.0)

    def slow_first(i, stamp):
        if i == 0:
            time.sleep(0.5)
        return one_face(i, stamp)
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out"),
                         recognizer=recognizer(ScheduleEngine(["happy"]), slow_first))
    lat = summary["latency_ms"]
    assert lat["max"] >= 500 and summary["frames"]["processed"] == 10
    rate = summary["rate_at_median_latency_hz"]
    assert rate == pytest.approx(1e3 / lat["p50"]) and rate > 10 / 0.5
    assert f"{rate:.1f} frames/s at the median latency" in replay.format_summary(summary)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rate_at_median_latency_hz"] == \
        pytest.approx(rate)


def _emotion_headers(bag: Path, topic: str = "/emotion") -> list[tuple[int, int, str]]:
    from fer_ros.tools.bagtools import open_bag
    reader = open_bag(bag)
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        msgs = [typestore().deserialize_cdr(raw, EMOTION_TYPE) for _, _, raw in reader.messages(connections=conns)]
    finally:
        reader.close()
    return [(m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) for m in msgs]


def test_the_emotion_header_is_the_image_s_header_also_when_its_stamp_is_zero(tmp_path):
    """An unstamped camera driver leaves header stamps at 0; fer_node copies the image's header as it is, and the
    replay's time for the frame (the bag time then) must not take its place."""
    write_bag_with_stamps(tmp_path / "bag", [0, 0, 0, 0])
    summary = replay.run(args_for(tmp_path / "bag", tmp_path / "out", "--out-bag", str(tmp_path / "copy")),
                         recognizer=recognizer(ScheduleEngine(["happy"])))
    assert summary["emotion_messages"] == 4
    assert _emotion_headers(tmp_path / "copy") == [(0, 0, "cam")] * 4


@pytest.mark.parametrize("failure", ["model not found", "writing fails"])
def test_a_replay_that_fails_with_overwrite_keeps_the_old_out_bag(tmp_path, capsys, monkeypatch, failure):
    write_image_bag(tmp_path / "bag", numbered_frames(4), rate_hz=10.0)
    write_image_bag(tmp_path / "copy", numbered_frames(2), topic="/old")  # a bag made before
    argv = [str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--quiet", "--out-bag", str(tmp_path / "copy"),
            "--overwrite"]
    if failure == "model not found":
        argv += ["--model", str(tmp_path / "nonexistent")]
    else:
        _disk_full_on_emotion(monkeypatch)
        _scripted_build(monkeypatch, tmp_path)
    assert replay.main(argv) == 2
    err = capsys.readouterr().err
    assert ("model not found" if failure == "model not found" else "No space left on device") in err
    assert list_topics(tmp_path / "copy") == {"/old": (IMAGE_TYPE, 2)}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "out") == ["bag", "copy"]
    monkeypatch.undo()
    _scripted_build(monkeypatch, tmp_path)
    assert replay.main(argv[:-2] if failure == "model not found" else argv) == 0
    assert list_topics(tmp_path / "copy") == {"/camera/image_raw": (IMAGE_TYPE, 4), "/emotion": (EMOTION_TYPE, 4)}


@pytest.mark.parametrize("topic", ["", "/bad topic", "emotion", "/emotion/", "/cam//emotion", "/1cam/emotion",
                                   "/emotion-replay", "/" + "e" * 247])
def test_the_emotion_topic_must_be_a_full_topic_name(capsys, topic):
    assert parse_args(replay.get_args_parser(), ["bag", "--emotion-topic", topic], "fer-replay: error") is None
    err = capsys.readouterr().err
    assert err.startswith("fer-replay: error: --emotion-topic must be a full topic name") and repr(topic) in err
    for good in ("/emotion_replay", "/cam1/emotion", "/_x/E2", "/" + "e" * 246):
        assert parse_args(replay.get_args_parser(), ["bag", "--emotion-topic", good], "x").emotion_topic == good


def test_the_emotion_topic_rule_is_rcl_s():
    validate = pytest.importorskip("rclpy.validate_full_topic_name").validate_full_topic_name
    from fer_ros.tools.bagtools import topic_name_problem
    for topic in ("", "/", "x", "/x", "/x/", "//x", "/x//y", "/1x", "/x/_1", "/x1_", "/a b", "/a-b", "/é", "/~/x",
                  "/{node}", "/x.y", "/" + "e" * 246, "/" + "e" * 247, "/" + "e" * 400):
        try:
            validate(topic)
            rcl_ok = True
        except Exception:  # rclpy's InvalidTopicNameException
            rcl_ok = False
        assert (topic_name_problem(topic) is None) == rcl_ok, topic
