"""image_header: the size a JPEG or PNG declares, read as libjpeg and libpng read it, without decoding."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from fer_ros.image_header import HeaderError, image_format, read_header


@pytest.fixture(scope="module")
def face(astronaut_rgb) -> np.ndarray:
    return cv2.resize(astronaut_rgb, (120, 90), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("ext,params", [(".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", []),
                                        (".png", [cv2.IMWRITE_PNG_COMPRESSION, 0])])
def test_header_size_is_the_decoded_size(face, ext, params):
    for image in (face, face[:, :, 0], face[:77, :33]):
        ok, data = cv2.imencode(ext, image, params)
        header = read_header(data.tobytes())
        decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        assert (header.height, header.width) == decoded.shape[:2]
        assert header.pixels == decoded.shape[0] * decoded.shape[1]
        assert header.format == ("jpeg" if ext == ".jpg" else "png")


def test_progressive_jpeg_scans_are_counted(face):
    ok, baseline = cv2.imencode(".jpg", face)
    ok, progressive = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert read_header(baseline.tobytes()).scans == 1
    assert read_header(progressive.tobytes()).scans == progressive.tobytes().count(b"\xff\xda") > 1


def test_jpeg_segments_stray_and_fill_bytes_before_the_frame_header(face):
    ok, jpg = cv2.imencode(".jpg", face)
    data = jpg.tobytes()
    comment = b"\xff\xfe" + struct.pack(">H", 2 + 40) + b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff" * 4 + b"abcd"
    # A comment that holds a fake frame header, stray bytes, fill bytes and a restart marker: the real frame
    # header still gives the size, as it does for libjpeg.
    padded = data[:2] + comment + b"\x12\x34" + b"\xff\xff\xff\xd0" + data[2:]
    decoded = cv2.imdecode(np.frombuffer(padded, np.uint8), cv2.IMREAD_UNCHANGED)
    header = read_header(padded)
    assert decoded is not None and (header.height, header.width) == decoded.shape[:2] == face.shape[:2]


class _CountedBytes(bytes):
    """bytes that count the indexing done on them one byte at a time from Python."""

    reads = 0

    def __getitem__(self, key):
        type(self).reads += 1
        return super().__getitem__(key)


@pytest.mark.parametrize("filler", [b"\x12", b"\xff"], ids=["stray", "fill"])
def test_megabytes_of_stray_or_fill_bytes_are_skipped_without_a_python_step_per_byte(face, filler):
    ok, jpg = cv2.imencode(".jpg", face)
    data = jpg.tobytes()
    head = data[:2] + b"\xff\xfe" + struct.pack(">H", 4) + b"ab"  # SOI, a comment, then the filler
    _CountedBytes.reads = 0
    padded = _CountedBytes(head + filler * (1 << 20) + data[2:])
    header = read_header(padded)
    assert (header.height, header.width) == face.shape[:2]
    assert _CountedBytes.reads < 100  # a handful per marker segment, not one per byte
    _CountedBytes.reads = 0
    with pytest.raises(HeaderError, match="ends before its frame header"):
        read_header(_CountedBytes(head + filler * (1 << 20)))
    assert _CountedBytes.reads < 100


@pytest.mark.parametrize("data,match", [
    (b"\xff\xd8\xff", "ends before its frame header"),
    (b"\xff\xd8\xff\xe0\x00", "ends inside a marker segment"),
    (b"\xff\xd8\xff\xe0\x00\x01", "segment length of 1"),
    (b"\xff\xd8\xff\xda\x00\x08", "no frame header before its first scan"),
    (b"\xff\xd8\xff\xd9", "no frame header before its first scan"),
    (b"\xff\xd8\xff\xd8", "second start-of-image"),
    (b"\xff\xd8\xff\xc0\x00\x11\x08\x01", "ends inside its frame header"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00", "ends inside its header"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIDAT" + bytes(8), "does not start with an IHDR"),
    (b"BM" + bytes(60), "not a JPEG or PNG"),
    (b"", "not a JPEG or PNG"),
])
def test_unreadable_headers_say_why(data, match):
    with pytest.raises(HeaderError, match=match):
        read_header(data)


def test_format_by_first_bytes():
    assert image_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert image_format(b"\xff\xd8\x00") is None  # OpenCV would not take it for a JPEG either
    assert image_format(b"\x89PNG\r\n\x1a\nrest") == "png"
    assert image_format(b"GIF89a") is None
