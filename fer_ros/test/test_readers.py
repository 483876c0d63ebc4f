"""The FER+ and KDEF readers, the layout detection beside the CK+ layouts, the neutral references they give, and
the image cache: how it finds faces, what its key covers and how it is saved."""
from __future__ import annotations

from pathlib import Path

import pytest

from fer_ros.training.data import ferplus, kdef
from fer_ros.training.data.cache import RETRIES
from fer_ros.training.data.datasets import DatasetError, detect_layout, load_dataset, read_ckplus_emotion
from synth_data import (write_ckplus_official_dataset, write_class_folder_dataset, write_ferplus_dataset,
                        write_kdef_dataset)


# ------------------------------------------------------------------------------------------------ FER+ label rule
@pytest.mark.parametrize("votes, label", [
    ([8, 2, 0, 0, 0, 0, 0, 0, 0, 0], "neutral"),
    ([0, 6, 4, 0, 0, 0, 0, 0, 0, 0], "happy"),
    ([0, 5, 5, 0, 0, 0, 0, 0, 0, 0], None),           # a tie is no majority
    ([0, 0, 0, 4, 3, 3, 0, 0, 0, 0], None),           # 4 of 10 is not more than half
    ([1, 1, 1, 0, 0, 0, 0, 4, 1, 1], "contempt"),     # single votes dropped: 4 of the 4 left
    ([0, 0, 0, 0, 0, 0, 0, 0, 7, 3], None),           # unknown wins
    ([3, 0, 0, 0, 0, 0, 0, 0, 0, 7], None),           # not a face wins
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], None),           # nothing left
])
def test_ferplus_majority_rule(votes, label):
    assert ferplus.majority_label(votes) == label


def test_ferplus_vote_shares_are_the_emotion_votes_without_singles():
    shares = ferplus.vote_shares([6, 3, 1, 0, 0, 0, 0, 0, 0, 0])
    assert shares == pytest.approx({"neutral": 6 / 9, "happy": 3 / 9})
    assert ferplus.vote_shares([0, 0, 0, 0, 0, 0, 0, 0, 8, 2]) == {}  # unknown and NF are not emotions
    assert sum(ferplus.vote_shares([2, 2, 2, 2, 2, 0, 0, 0, 0, 0]).values()) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ FER+ reader
def test_ferplus_reader_labels_splits_and_soft_targets(tmp_path):
    items = [("happy", "clear"), ("anger", "single"), ("surprise", "split"), ("neutral", "unknown"),
             ("sadness", "not_a_face"), ("neutral", "clear")]
    write_ferplus_dataset(tmp_path, {"FER2013Train": items, "FER2013Valid": [("fear", "clear")]})
    assert detect_layout(tmp_path) == "ferplus"
    ds = load_dataset(tmp_path, frames=3)
    by_key = {s.key: s for s in ds.sequences}
    assert sorted(by_key) == ["FER2013Train/fer0000000", "FER2013Train/fer0000001", "FER2013Train/fer0000005",
                              "FER2013Valid/fer0000006"]
    happy = by_key["FER2013Train/fer0000000"]
    assert happy.label == "happy" and happy.split == "train" and happy.still
    assert happy.votes == pytest.approx({"happy": 0.8, "neutral": 0.2})
    assert happy.peaks == [tmp_path / "FER2013Train" / "fer0000000.png"] * 3
    assert happy.self_reference  # no other moment of an anonymous face: compared with itself, as the node does
    assert by_key["FER2013Train/fer0000001"].votes == {"anger": 1.0}  # the three single votes are dropped
    assert by_key["FER2013Valid/fer0000006"].split == "valid"
    assert ds.counts["train"] == {"rows": 6, "majority": 3, "no_majority": 3, "missing": 0, "bad_rows": 0}
    # every image is its own subject: no two images share one
    assert len({s.subject for s in ds.sequences}) == len(ds.sequences)


def test_ferplus_reader_reads_one_split_folder_and_chosen_splits(tmp_path):
    write_ferplus_dataset(tmp_path)
    only_valid = load_dataset(tmp_path / "FER2013Valid")
    assert {s.split for s in only_valid.sequences} == {"valid"} and len(only_valid.sequences) == 4
    train = load_dataset(tmp_path, splits=("train",))
    assert {s.split for s in train.sequences} == {"train"} and len(train.sequences) == 8


def test_ferplus_reader_counts_malformed_rows_and_missing_images(tmp_path):
    write_ferplus_dataset(tmp_path, {"FER2013Train": [("happy", "clear"), ("anger", "clear")]})
    label = tmp_path / "FER2013Train" / "label.csv"
    rows = label.read_text().splitlines()
    rows += ["fer9999999.png,\"(0, 0, 48, 48)\",0,8,2,0,0,0,0,0,0,0",   # listed, not on disk
             "broken row without votes",
             "fer0000000.png,\"(0, 0, 48, 48)\",0,8,x,0,0,0,0,0,0,0",   # a vote that is not a number
             "../escape.png,\"(0, 0, 48, 48)\",0,8,2,0,0,0,0,0,0,0",    # a name outside the folder
             ""]
    label.write_text("\n".join(rows) + "\n")
    ds = load_dataset(tmp_path)
    assert len(ds.sequences) == 2
    c = ds.counts["train"]
    assert c["missing"] == 1 and c["bad_rows"] == 3
    assert any("fer9999999.png" in s for s in ds.skipped)
    assert any("line 4" in s for s in ds.skipped)


def test_ferplus_rows_that_are_not_utf8_are_bad_rows_and_the_others_are_read(tmp_path):
    """A stray byte that is not UTF-8 (a Latin-1 é) makes its row a bad row, counted and listed; the other rows are
    read."""
    write_ferplus_dataset(tmp_path, {"FER2013Train": [("happy", "clear"), ("anger", "clear")]})
    label = tmp_path / "FER2013Train" / "label.csv"
    label.write_bytes(label.read_bytes() + b'fer0000002\xe9.png,"(0, 0, 48, 48)",0,8,2,0,0,0,0,0,0,0\n')
    ds = load_dataset(tmp_path)
    assert sorted(s.label for s in ds.sequences) == ["anger", "happy"]
    assert ds.counts["train"]["bad_rows"] == 1 and ds.counts["train"]["missing"] == 0
    assert ds.skipped == ["FER2013Train/label.csv line 3 (not UTF-8 text)"]


def test_a_ferplus_label_file_saved_with_a_byte_order_mark_reads_its_first_row(tmp_path):
    write_ferplus_dataset(tmp_path, {"FER2013Train": [("happy", "clear"), ("anger", "clear")]})
    label = tmp_path / "FER2013Train" / "label.csv"
    label.write_bytes(b"\xef\xbb\xbf" + label.read_bytes())
    ds = load_dataset(tmp_path)
    assert sorted(s.label for s in ds.sequences) == ["anger", "happy"] and ds.skipped == []
    assert ds.counts["train"] == {"rows": 2, "majority": 2, "no_majority": 0, "missing": 0, "bad_rows": 0}


def test_a_split_folder_without_usable_rows_is_an_error(tmp_path):
    folder = tmp_path / "FER2013Valid"
    folder.mkdir()
    (folder / "label.csv").write_text("only,garbage\n")
    with pytest.raises(DatasetError, match="no labelled"):
        load_dataset(tmp_path)


# ------------------------------------------------------------------------------------------------ KDEF reader
@pytest.mark.parametrize("subfolders", [False, True])
def test_kdef_reader_names_references_and_subjects(tmp_path, subfolders):
    write_kdef_dataset(tmp_path, actors=(("F", 1), ("M", 2)), angles=("S", "HL"), subfolders=subfolders)
    assert detect_layout(tmp_path) == "kdef"
    ds = load_dataset(tmp_path, frames=3)
    assert ds.layout == "kdef" and len(ds.sequences) == 2 * 2 * 2 * 4
    assert ds.subjects() == ["F01", "M02"]  # both sessions of an actor are one subject
    by_key = {s.key: s for s in ds.sequences}
    happy = by_key["AF01HAS"]
    assert happy.label == "happy" and happy.view == "S" and happy.still
    assert happy.neutral.name == "AF01NES.jpg" and not happy.neutral_borrowed  # its own session, same angle
    neutral = by_key["BM02NEHL"]
    assert neutral.label == "neutral" and neutral.neutral.name == "AM02NEHL.jpg" and neutral.neutral_borrowed
    assert not any(s.self_reference for s in ds.sequences)


def test_kdef_neutral_without_the_other_session_is_its_own_reference(tmp_path):
    write_kdef_dataset(tmp_path, actors=(("F", 1),), missing=("BF01NES", "BF01ANS"))
    ds = load_dataset(tmp_path)
    by_key = {s.key: s for s in ds.sequences}
    assert by_key["AF01NES"].self_reference and not by_key["AF01NES"].neutral_borrowed
    # no neutral photo of its session: the other session's
    assert by_key["BF01HAS"].neutral.name == "AF01NES.jpg" and by_key["BF01HAS"].neutral_borrowed
    assert "BF01ANS" not in by_key


def test_kdef_reader_skips_other_names_and_can_leave_neutral_out(tmp_path):
    write_kdef_dataset(tmp_path, actors=(("F", 1),))
    (tmp_path / "notes.jpg").write_bytes(b"not a photo")
    (tmp_path / "AF01XXS.jpg").write_bytes(b"not a photo")
    ds = load_dataset(tmp_path, with_neutral_sequences=False)
    assert {s.label for s in ds.sequences} == {"anger", "happy", "surprise"}
    assert sorted(ds.skipped) == ["AF01XXS.jpg", "notes.jpg"]


def test_kdef_reader_reads_the_angles_asked_for(tmp_path):
    write_kdef_dataset(tmp_path, actors=(("F", 1),), angles=("S", "HL", "FL", "FR"), expressions=("happy", "neutral"))
    ds = load_dataset(tmp_path, angles=("S", "HL", "HR"))
    assert sorted(s.key for s in ds.sequences) == ["AF01HAHL", "AF01HAS", "AF01NEHL", "AF01NES",
                                                   "BF01HAHL", "BF01HAS", "BF01NEHL", "BF01NES"]
    assert {s.view for s in ds.sequences} == {"S", "HL"} and len(load_dataset(tmp_path).sequences) == 16
    with pytest.raises(DatasetError, match="no KDEF photo of the angles HR; choose some of FL, HL, S, HR, FR"):
        load_dataset(tmp_path, angles=("HR",))


def test_kdef_name_parsing():
    assert kdef.parse(Path("AF01HAS.jpg")) == ("A", "F", "01", "HA", "S")
    assert kdef.parse(Path("bm35suhr.JPG")) == ("B", "M", "35", "SU", "HR")
    assert kdef.parse(Path("AF01HAS.txt")) is None and kdef.parse(Path("CF01HAS.jpg")) is None


# ------------------------------------------------------------------------------------------------ CK+ neutral
def test_ckplus_neutral_samples_take_another_sequences_first_frame(tmp_path):
    write_class_folder_dataset(tmp_path / "a", classes=("anger", "happy"), subjects=(10, 11))
    write_class_folder_dataset(tmp_path / "b", classes=("anger",), subjects=(12,))
    for root in (tmp_path / "a", tmp_path / "b"):
        ds = load_dataset(root)
        neutral = [s for s in ds.sequences if s.label == "neutral"]
        assert neutral
        for s in neutral:
            others = [p for (subj, _), p in ds.neutral_frames.items() if subj == s.subject and p != s.peaks[-1]]
            if others:  # another moment of the same subject exists: never itself
                assert s.neutral in others and s.neutral_borrowed and not s.self_reference
            else:       # subject 12 has one sequence only
                assert s.self_reference and not s.neutral_borrowed


def test_class_folder_names_are_labels_in_one_form(tmp_path):
    """`Happy/` holds "happy" faces and ` Neutral/` the neutral frames, as the models name their classes."""
    write_class_folder_dataset(tmp_path, classes=("anger", "happy"), subjects=(10,))
    (tmp_path / "happy").rename(tmp_path / "Happy")
    (tmp_path / "neutral").rename(tmp_path / " Neutral")
    ds = load_dataset(tmp_path, with_neutral_sequences=False)
    assert sorted(s.label for s in ds.sequences) == ["anger", "happy"] and ds.classes_found == ["anger", "happy"]
    assert all(s.neutral is not None and s.neutral.parent.name == " Neutral" for s in ds.sequences)


def test_ckplus_release_folders_not_named_by_number_are_skipped_and_listed(tmp_path):
    """A copy of a sequence (S010/001_old) or of a subject (S011_old) beside the release's folders is left out and
    listed with the files that do not follow the layout; the sequences read are those of the release alone."""
    import shutil
    write_ckplus_official_dataset(tmp_path, classes=("anger", "happy"), subjects=(10, 11), sequence_length=4)
    before = load_dataset(tmp_path)
    images, emotion = tmp_path / "cohn-kanade-images", tmp_path / "Emotion"
    shutil.copytree(images / "S010" / "001", images / "S010" / "001_old")
    shutil.copytree(emotion / "S010" / "001", emotion / "S010" / "001_old")
    shutil.copytree(images / "S011", images / "S011_old")
    shutil.copytree(emotion / "S011", emotion / "S011_old")
    ds = load_dataset(tmp_path)
    assert [(s.subject, s.sequence, s.label) for s in ds.sequences] == \
        [(s.subject, s.sequence, s.label) for s in before.sequences]
    assert ds.skipped == ["cohn-kanade-images/S010/001_old/ (folder not named by a sequence number)",
                          "cohn-kanade-images/S011_old/ (folder not named S<subject number>)"]


@pytest.mark.parametrize("layout", ["class_folders", "ckplus_official"])
def test_ckplus_entries_named_as_frames_that_are_not_files_are_skipped_and_listed(tmp_path, layout):
    """A folder or a link to nothing named as a frame (a newest frame, a first frame) is left out and listed with the
    reason, as the FER+ and KDEF readers do; the sequences read are those of the image files alone."""
    write = write_class_folder_dataset if layout == "class_folders" else write_ckplus_official_dataset
    write(tmp_path, classes=("anger", "happy"), subjects=(10, 11), sequence_length=5)
    before = load_dataset(tmp_path)
    where = (tmp_path / "anger", tmp_path / "neutral") if layout == "class_folders" else \
        (tmp_path / "cohn-kanade-images" / "S010" / "001", tmp_path / "cohn-kanade-images" / "S010" / "001")
    folder, link = where[0] / "S010_001_00000009.png", where[1] / "S010_001_00000000.png"
    folder.mkdir()
    link.symlink_to(tmp_path / "gone.png")
    ds = load_dataset(tmp_path)
    assert detect_layout(tmp_path) == layout
    assert [(s.subject, s.sequence, s.label, s.peaks, s.neutral) for s in ds.sequences] == \
        [(s.subject, s.sequence, s.label, s.peaks, s.neutral) for s in before.sequences]
    assert sorted(ds.skipped) == sorted([f"{folder.relative_to(tmp_path)} (a folder, not an image file)",
                                         f"{link.relative_to(tmp_path)} (a link to nothing)"])


@pytest.mark.parametrize("content, reason", [
    (b"inf\n", "inf is not a finite number"),
    (b"   1e999\n", "1e999 is not a finite number"),
    (b"nan\n", "nan is not a finite number"),
    (b"   4.6000000e+00\n", "4.6000000e+00 is not a whole number"),
    (b"   8.0000000e+00\n", "8.0000000e+00 is not a CK+ emotion code"),
    (b"   0.0000000e+00\n", "code 0 (neutral), not an expression code 1..7"),
    (b"happy\n", "'happy' is not a number"),
    (b"  \n", "empty"),
    ("   5.0000000e+00\n".encode("utf-16"), "not UTF-8 text"),
], ids=["inf", "1e999", "nan", "4.6", "8", "0", "word", "blank", "utf-16"])
def test_ckplus_release_emotion_files_without_an_expression_code_are_skipped_and_listed(tmp_path, content, reason):
    """An Emotion file that does not hold a whole code 1..7 leaves its sequence out, listed with the reason; the
    other sequences are read."""
    write_ckplus_official_dataset(tmp_path, classes=("anger", "happy"), subjects=(10, 11), sequence_length=4)
    bad = next((tmp_path / "Emotion" / "S010" / "002").glob("*_emotion.txt"))
    bad.write_bytes(content)
    ds = load_dataset(tmp_path, with_neutral_sequences=False)
    assert sorted((s.subject, s.sequence, s.label) for s in ds.sequences) == [
        ("010", "001", "anger"), ("011", "001", "anger"), ("011", "002", "happy")]
    assert len(ds.skipped) == 1 and ds.skipped[0].startswith(f"{bad.relative_to(tmp_path)} (")
    assert reason in ds.skipped[0]


def test_a_ckplus_emotion_file_names_its_class_by_a_whole_code(tmp_path):
    path = tmp_path / "S005_001_00000008_emotion.txt"
    for text, label in [("   5.0000000e+00\n", "happy"), ("7", "surprise"), ("0.0\n", "neutral"),
                        ("\ufeff3.0000000e+00 \n", "disgust")]:
        path.write_text(text, encoding="utf-8")
        assert read_ckplus_emotion(path) == label
    with pytest.raises(ValueError, match="cannot be read"):
        read_ckplus_emotion(tmp_path / "missing_emotion.txt")


def test_a_folder_holding_datasets_in_its_subfolders_is_refused(tmp_path):
    """--data <folder holding ckplus/ ferplus/ kdef/> would be read as KDEF (its photos are found at any depth) and
    the other two left out: refused, with what to give instead."""
    write_class_folder_dataset(tmp_path / "ckplus", ("anger", "happy"), (10, 11), sequence_length=4)
    write_ferplus_dataset(tmp_path / "ferplus")
    write_kdef_dataset(tmp_path / "kdef", actors=(("F", 1),))
    with pytest.raises(DatasetError, match=r"holds datasets in its subfolders \(ckplus/, ferplus/, kdef/\).*give "
                                           r"each dataset as its own --data, e\.g\. --data .*ckplus --data "):
        load_dataset(tmp_path)
    for name in ("ckplus", "ferplus", "kdef"):  # each on its own is read
        assert load_dataset(tmp_path / name).sequences
    # the KDEF release's own folders per session and actor are not datasets of their own
    write_kdef_dataset(tmp_path / "release", actors=(("F", 1), ("M", 2)), subfolders=True)
    assert load_dataset(tmp_path / "release").layout == "kdef"


def test_unknown_folders_name_every_layout(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "photo.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="FER2013Train.*KDEF"):
        load_dataset(tmp_path)


# ------------------------------------------------------------------------------------------------ finding the face
class _FindsOnTry:
    """A landmarker that finds one face only on its `on_try`-th call (1 = the photo itself), at fixed canvas
    pixels; it records the images it was shown."""

    def __init__(self, on_try, canvas_points):
        self.on_try, self.canvas_points, self.shown = on_try, canvas_points, []

    def detect(self, rgb, stamp_s=None):
        from fer_ros.landmarker import FaceLandmarks
        self.shown.append(rgb.copy())
        if len(self.shown) != self.on_try:
            return []
        return [FaceLandmarks.from_points478(self.canvas_points)]


@pytest.mark.parametrize("retry", range(len(RETRIES)))
def test_a_face_missed_in_a_face_filling_photo_is_found_on_a_rendition_and_mapped_back(retry):
    import numpy as np

    from fer_ros.training.data.cache import find_face
    rng = np.random.default_rng(retry)
    photo = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    side, pad_share, equalise = RETRIES[retry]
    scale = np.array([round(40 * side / 48) / 40, side / 48])  # the rendition's sides are rounded
    pad = round(pad_share * side)
    in_photo = rng.uniform(5, 35, (478, 2)).astype(np.float32)
    on_canvas = (in_photo + 0.5) * scale - 0.5 + pad  # pixel centres, as cv2.resize maps them
    lm = _FindsOnTry(retry + 2, np.hstack([on_canvas, np.zeros((478, 1))]).astype(np.float32))
    face = find_face(lm, photo)
    # the photo, then the renditions in order up to the one that found the face
    assert [im.shape for im in lm.shown] == [photo.shape] + [
        (round(48 * side / 48) + 2 * round(p * side), round(40 * side / 48) + 2 * round(p * side), 3)
        for side, p, _ in RETRIES[:retry + 1]]
    canvas = lm.shown[-1]
    assert (canvas[:pad, :pad] == 128).all()  # mid-gray border
    inner = canvas[pad:-pad or None, pad:-pad or None]
    assert equalise == bool((inner[..., 0] == inner[..., 1]).all() and (inner[..., 1] == inner[..., 2]).all())
    assert np.allclose(face.points478[:, :2], in_photo, atol=1e-3)
    assert np.allclose(face.box, (in_photo[:, 0].min(), in_photo[:, 1].min(), in_photo[:, 0].max(),
                                  in_photo[:, 1].max()), atol=1e-3)


class _BlobCentreOnTry(_FindsOnTry):
    """A landmarker that finds, on its `on_try`-th call only, a face all of whose points are at the centre of the
    bright blob in the image (its brightness above mid-gray as weights)."""

    def __init__(self, on_try):
        super().__init__(on_try, None)

    def detect(self, rgb, stamp_s=None):
        import numpy as np
        self.canvas_points = np.tile(np.append(_blob_centre(rgb), 0.0), (478, 1)).astype(np.float32)
        return super().detect(rgb, stamp_s)


def _blob_centre(rgb):
    import numpy as np
    weight = np.clip(rgb[..., 1].astype(np.float64) - 128.0, 0.0, None)
    y, x = np.mgrid[0:rgb.shape[0], 0:rgb.shape[1]]
    return np.array([(weight * x).sum(), (weight * y).sum()]) / weight.sum()


@pytest.mark.parametrize("retry", [i for i, (_, _, equalise) in enumerate(RETRIES) if not equalise])
def test_a_point_found_on_an_enlarged_rendition_maps_back_to_the_same_pixel_of_the_photo(retry):
    """The rendition enlarges the photo with cv2.resize, which puts the centre of photo px x at (x + 0.5) * s - 0.5
    (s: the scaled side over the photo's, which rounding makes differ between the axes): a blob's centre found on
    it comes back where it is in the photo, not 0.5 - 0.5 / s px (0.375 px at 4x) to the right of and below it."""
    import numpy as np

    from fer_ros.training.data.cache import find_face
    y, x = np.mgrid[0:48, 0:40]
    blob = 128.0 + 120.0 * np.exp(-((x - 17.3) ** 2 + (y - 21.8) ** 2) / (2 * 4.0 ** 2))
    photo = np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, axis=2)
    face = find_face(_BlobCentreOnTry(retry + 2), photo)
    assert np.abs(face.points478[:, :2] - _blob_centre(photo)).max() < 0.05


def test_a_photo_without_a_face_on_any_rendition_gives_none():
    import numpy as np

    from fer_ros.training.data.cache import find_face
    lm = _FindsOnTry(0, None)
    assert find_face(lm, np.zeros((48, 48, 3), np.uint8)) is None
    assert len(lm.shown) == 1 + len(RETRIES)


def test_a_face_no_rendition_gives_is_looked_for_with_the_lenient_landmarker_on_each_rendition():
    import numpy as np

    from fer_ros.training.data.cache import find_face
    strict = _FindsOnTry(0, None)
    in_photo = np.random.default_rng(5).uniform(5, 43, (478, 2)).astype(np.float32)
    side, pad_share, _ = RETRIES[1]
    scale, pad = side / 48, round(pad_share * side)
    lenient = _FindsOnTry(2, np.hstack([(in_photo + 0.5) * scale - 0.5 + pad, np.zeros((478, 1), np.float32)]))
    made = []

    def make():
        made.append(lenient)
        return lenient
    face = find_face(strict, np.zeros((48, 48, 3), np.uint8), make)
    assert len(strict.shown) == 1 + len(RETRIES) and len(lenient.shown) == 2 and made == [lenient]
    assert np.allclose(face.points478[:, :2], in_photo, atol=1e-3)
    found_first = _FindsOnTry(1, np.full((478, 3), 10.0, np.float32))
    assert find_face(found_first, np.zeros((48, 48, 3), np.uint8), make) is not None and len(made) == 1


def test_a_face_found_at_first_is_not_looked_for_again():
    import numpy as np

    from fer_ros.training.data.cache import find_face
    lm = _FindsOnTry(1, np.full((478, 3), 10.0, np.float32))
    assert find_face(lm, np.zeros((48, 48, 3), np.uint8)) is not None
    assert len(lm.shown) == 1


# ------------------------------------------------------------------------------------------------ the image cache
def _two_images(folder: Path) -> list[Path]:
    import cv2
    import numpy as np
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"S001_001_0000000{i}.png" for i in (1, 2)]
    for i, path in enumerate(paths):
        cv2.imwrite(str(path), np.full((64, 64, 3), 60 + 40 * i, np.uint8))
    return paths


def _change_retries(m, cache, landmarker_model, metadata):
    m.setattr(cache, "RETRIES", cache.RETRIES[:-1])


def _change_lenient_confidence(m, cache, landmarker_model, metadata):
    m.setattr(cache, "LENIENT_CONFIDENCE", 0.2)


def _change_landmarker_model(m, cache, landmarker_model, metadata):
    m.setattr(landmarker_model, "LANDMARKER_MODEL_SHA256", "0" * 64)


def _change_mediapipe_release(m, cache, landmarker_model, metadata):
    real = metadata.version
    m.setattr(metadata, "version", lambda name: "0.0.1" if name == "mediapipe" else real(name))


@pytest.mark.parametrize("change", [_change_retries, _change_lenient_confidence, _change_landmarker_model,
                                    _change_mediapipe_release])
def test_the_cache_key_covers_how_faces_are_found(tmp_path, monkeypatch, change):
    """A change in the renditions, the lenient thresholds, the landmarker model or the mediapipe release makes
    another cache; the same settings keep the key."""
    import importlib.metadata

    from fer_ros import landmarker_model
    from fer_ros.crop import CropConfig
    from fer_ros.training.data import cache
    paths, cfg = _two_images(tmp_path), CropConfig(size=48, margin=0.0)
    key = cache.cache_key(paths, cfg)
    assert cache.cache_key(paths, cfg) == key
    with monkeypatch.context() as m:
        change(m, cache, landmarker_model, importlib.metadata)
        assert cache.cache_key(paths, cfg) != key
    assert cache.cache_key(paths, cfg) == key


def test_the_cache_is_made_with_the_landmarker_arguments_its_key_records(tmp_path, monkeypatch):
    """build_cache makes its landmarkers (the first and the lenient one) with the arguments face_search gives the
    key, so a change of them is a change of the key."""
    import fer_ros.landmarker
    from fer_ros.crop import CropConfig
    from fer_ros.training.data import cache
    made = []

    class Recorded:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def detect(self, rgb, stamp_s=None):
            return []

        def close(self):
            pass
    monkeypatch.setattr(fer_ros.landmarker, "MediaPipeLandmarker", Recorded)
    paths, cfg = _two_images(tmp_path), CropConfig(size=48, margin=0.0)
    cache.build_cache(paths, cfg, None, progress=False)
    search = cache.face_search()
    assert made == [search["landmarker"], search["lenient_landmarker"]]
    assert search["lenient_landmarker"]["min_detection_confidence"] == cache.LENIENT_CONFIDENCE
    key = cache.cache_key(paths, cfg)
    monkeypatch.setitem(cache.LANDMARKER_ARGS, "max_detect_side_px", 640)
    assert cache.cache_key(paths, cfg) != key


def test_processes_saving_the_same_cache_at_once_each_save_it_whole(tmp_path, monkeypatch):
    """Another process saves the same cache while this one is writing it (torchrun's ranks, or two runs): each
    writes a file of its own and renames it, so neither loses its file to the other's rename."""
    import numpy as np

    from fer_ros.crop import CropConfig
    from fer_ros.training.data import cache
    paths, cfg, folder = _two_images(tmp_path / "images"), CropConfig(size=48, margin=0.0), tmp_path / "cache"
    real_save, saves = np.savez_compressed, []

    def save_while_another_saves(file, **arrays):
        real_save(file, **arrays)
        saves.append(str(file))
        if len(saves) == 1:  # the other process saves between this one's write and its rename
            cache.build_cache(paths, cfg, folder, progress=False, landmarker=_FindsOnTry(0, None))
    monkeypatch.setattr(np, "savez_compressed", save_while_another_saves)
    made = cache.build_cache(paths, cfg, folder, progress=False, landmarker=_FindsOnTry(0, None))
    assert len(saves) == 2 and saves[0] != saves[1]
    assert [f.name for f in folder.iterdir()] == [f"images-{cache.cache_key(paths, cfg)}.npz"]
    loaded = cache.build_cache(paths, cfg, folder, progress=False, landmarker=_FindsOnTry(1, None))
    assert loaded.paths == made.paths and not loaded.ok.any()


# ------------------------------------------------------------------------------------------------ reading image files
def test_images_in_a_folder_whose_name_is_not_utf8_are_read_from_their_bytes(tmp_path, monkeypatch):
    """A folder named in Latin-1 (`fâché`): cv2.imread takes a file name as UTF-8 text and crashes the process on
    it, so no reader calls it; the image cache, fer-eval's check of an unusable image and the frames of a folder
    read the files through image_codec.read_image, which answers None for a file it cannot decode."""
    import os

    import cv2
    import numpy as np

    from eval_helpers import DarkCentreLandmarker, face_image
    from fer_ros.crop import CropConfig
    from fer_ros.tools import eval_data, frame_sources
    from fer_ros.training.data import cache

    def crash(*args, **kwargs):
        raise AssertionError("cv2.imread crashes the process on a file name that is not UTF-8")
    monkeypatch.setattr(cv2, "imread", crash)
    folder = tmp_path / os.fsdecode(b"f\xe2ch\xe9")
    face, dark = face_image(folder / "S001_001_00000001.png"), face_image(folder / "S001_001_00000002.png", False)
    junk, empty = folder / "S001_001_00000003.png", folder / "S001_001_00000004.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    empty.write_bytes(b"")
    made = cache.build_cache([face, dark, junk, empty], CropConfig(size=32), None, progress=False,
                             landmarker=DarkCentreLandmarker())
    assert made.ok.tolist() == [True, False, False, False]
    assert [eval_data._unusable_reason(str(p)) for p in (dark, junk, empty)] == ["no_face", "unreadable",
                                                                                 "unreadable"]
    frames = list(frame_sources.folder_frames(frame_sources.image_files(folder)))
    assert len(frames) == 2 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8

    from fer_ros.image_codec import read_image
    assert read_image(face).shape == (64, 64, 3) and read_image(face, cv2.IMREAD_UNCHANGED).shape == (64, 64)
    assert read_image(junk) is None and read_image(empty) is None and read_image(folder / "none.png") is None
