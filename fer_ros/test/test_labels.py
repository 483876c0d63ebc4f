"""Label files: parsing, lookup per face and for the dominant face, round trip, and every error case."""
from __future__ import annotations

import math

import pytest

from fer_ros.tools.labels import LabelError, LabelRange, LabelSet, format_labels, load_labels, parse_labels, save_labels

EXAMPLE = """\
# a comment, then blank lines

start_s,end_s,label,face
0.0,2.0,neutral,
2.0,inf,happy,*
3.0,,surprise,2
"""


def test_parse_time_ranges_and_lookup():
    labels = parse_labels(EXAMPLE)
    assert labels.unit == "s"
    assert labels.ranges[0] == LabelRange(0.0, 2.0, "neutral", None)
    assert labels.ranges[1].end == math.inf and labels.ranges[1].face is None
    assert labels.ranges[2] == LabelRange(3.0, math.inf, "surprise", 2)
    # dominant face: half-open ranges
    assert labels.label_for(0, 0.0, face_id=1, is_dominant=True) == "neutral"
    assert labels.label_for(0, 1.999, face_id=1, is_dominant=True) == "neutral"
    assert labels.label_for(0, 2.0, face_id=1, is_dominant=True) == "happy"
    # a face that is not dominant and has no range of its own has no label
    assert labels.label_for(0, 2.5, face_id=1, is_dominant=False) is None
    # face 2's own range wins over the dominant-face range
    assert labels.label_for(0, 3.5, face_id=2, is_dominant=True) == "surprise"
    assert labels.label_for(0, 2.5, face_id=2, is_dominant=True) == "happy"
    assert labels.label_for(0, 2.5, face_id=2, is_dominant=False) is None
    assert labels.labels == {"neutral", "happy", "surprise"}


def test_frame_ranges_without_face_column():
    labels = parse_labels("start_frame,end_frame,label\n0,1,neutral\n7,10,fear\n")
    assert labels.unit == "frame"
    assert [labels.label_for(i, 99.0, None, True) for i in (0, 1, 6, 7, 9, 10)] == \
        ["neutral", None, None, "fear", "fear", None]


def test_round_trip(tmp_path):
    labels = LabelSet("frame", [LabelRange(0, 1, "neutral"), LabelRange(5, math.inf, "happy", 3)])
    path = save_labels(tmp_path / "sub" / "x.labels.csv", labels, comment="two lines\nof comment")
    text = path.read_text()
    assert text.startswith("# two lines\n# of comment\nstart_frame,end_frame,label,face\n")
    back = load_labels(path)
    assert back == labels
    assert parse_labels(format_labels(back)) == labels


def test_label_names_are_read_as_class_key_reads_them():
    """`Happy ` is `happy`, as fer-eval and fer-train read class names (metrics.class_key)."""
    labels = parse_labels("start_s,end_s,label,face\n0,1,Happy ,\n1,2, SADNESS,3\n")
    assert [r.label for r in labels.ranges] == ["happy", "sadness"]
    labels.check_classes(["happy", "sadness"])
    LabelSet("s", [LabelRange(0, 1, "Fear")]).check_classes(["fear"])
    with pytest.raises(LabelError, match="joy are not classes"):
        parse_labels("start_s,end_s,label\n0,1,Joy\n").check_classes(["happy"])


def test_check_classes():
    labels = parse_labels("start_s,end_s,label\n0,1,happy\n1,2,joy\n")
    labels.check_classes(["happy", "joy"])
    with pytest.raises(LabelError, match="joy.*not classes of the model.*happy"):
        labels.check_classes(["happy", "sad"])


@pytest.mark.parametrize("text, message", [
    ("", "no header line"),
    ("# only a comment\n", "no header line"),
    ("begin,end,label\n0,1,happy\n", "header"),
    ("start_s,end_s,emotion\n", "header"),
    ("start_s,end_s,label,face,extra\n", "header"),
    ("start_s,end_s,label\n0,1\n", ":2: expected 'start,end,label"),
    ("start_s,end_s,label\nzero,1,happy\n", "start 'zero' is not a number"),
    ("start_s,end_s,label\n-1,1,happy\n", "start must be a number >= 0"),
    ("start_s,end_s,label\ninf,5,happy\n", "start must be a number >= 0"),
    ("start_s,end_s,label\n2,1,happy\n", "end \\(1\\) must be greater than start \\(2\\)"),
    ("start_s,end_s,label\n1,2, \n", "empty label"),
    ("start_s,end_s,label,face\n1,2,happy,bob\n", "face 'bob' is not a track id"),
    ("start_s,end_s,label,face\n1,2,happy,-3\n", "face id must be >= 0"),
    ("start_s,end_s,label,face\n0,2,happy,1\n1,3,sadness,1\n", "of face 1 overlap"),
    ("start_s,end_s,label\n0,2,happy\n1.5,inf,sadness\n", "of the dominant face overlap"),
    ("start_frame,end_frame,label\n0,inf,happy,2\n",
     "x.csv:2: 4 cells but the header names 3 \\(start_frame,end_frame,label\\): add 'face' to the header"),
    ("start_s,end_s,label\n0,1,happy\n1,2,sadness,\n", "x.csv:3: 4 cells but the header names 3"),
    ("start_s,end_s,label\n", "x.csv: no label ranges after the header"),
    ("# made by hand\nstart_frame,end_frame,label,face\n\n# nothing yet\n", "x.csv: no label ranges after the header"),
])
def test_bad_files(text, message):
    with pytest.raises(LabelError, match=message):
        parse_labels(text, "x.csv")


def test_overlap_between_different_faces_is_fine():
    labels = parse_labels("start_s,end_s,label,face\n0,2,happy,1\n1,3,sadness,2\n0,5,neutral,\n")
    assert len(labels.ranges) == 3


def test_missing_and_unreadable_file(tmp_path):
    with pytest.raises(LabelError, match="does not exist"):
        load_labels(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LabelError, match="cannot be read"):
        load_labels(bad)


def test_a_byte_order_mark_is_skipped(tmp_path):
    """Excel's "CSV UTF-8" starts the file with a byte order mark."""
    path = tmp_path / "excel.csv"
    path.write_bytes("start_s,end_s,label\r\n0,1.5,happy\r\n".encode("utf-8-sig"))
    assert load_labels(path) == LabelSet("s", [LabelRange(0.0, 1.5, "happy")])


@pytest.mark.parametrize("line, message", [
    ("0.5,2,happy", "start '0.5' is not a whole frame number"),
    ("0,2.7,happy", "end '2.7' is not a whole frame number"),
])
def test_frame_bounds_must_be_whole_numbers(line, message):
    with pytest.raises(LabelError, match=f"x.csv:2: {message}"):
        parse_labels(f"start_frame,end_frame,label\n{line}\n", "x.csv")
    assert parse_labels("start_frame,end_frame,label\n0,2.0,neutral\n2,,happy\n").ranges == \
        [LabelRange(0, 2, "neutral"), LabelRange(2, math.inf, "happy")]


def test_saving_a_fractional_frame_bound_is_refused(tmp_path):
    with pytest.raises(LabelError, match="end 2.7 is not a whole frame number"):
        save_labels(tmp_path / "x.csv", LabelSet("frame", [LabelRange(0, 2.7, "happy")]))
