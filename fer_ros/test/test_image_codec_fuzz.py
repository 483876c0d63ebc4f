"""image_codec under hostile input, property-based (hypothesis): whatever the fields of a sensor_msgs/Image and
whatever the bytes of a CompressedImage (real JPEG and PNG files of the astronaut, mutated), decoding gives an RGB
frame or an ImageDecodeError naming its cause, never another exception, within bounded memory, and nothing on
stderr."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer_ros.image_codec import CAUSES, ENCODINGS, ImageDecodeError, compressed_to_rgb8, image_to_rgb8

LIMIT = 1 << 20          # pixel limit in these tests: a mutated size field may ask for up to this much
GROWTH_MIB = 200.0       # most resident memory one decode may add (a 1 MP frame and the decoder's buffers)
FUZZ = settings(max_examples=250, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
HAVE_PROC = Path("/proc/self/clear_refs").exists()


def _status_mib(key: str) -> float:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024.0


def decode_within_bounds(decode):
    """decode() -> (H, W, 3) uint8 RGB array or None for an ImageDecodeError; asserts the bounds on the way."""
    if HAVE_PROC:
        Path("/proc/self/clear_refs").write_text("5")
        base = _status_mib("VmRSS")
    try:
        out = decode()
    except ImageDecodeError as exc:
        assert exc.cause in CAUSES, exc.cause
        assert str(exc) and "\n" not in str(exc), repr(str(exc))  # one line, saying what was wrong
        out = None
    if HAVE_PROC:
        assert _status_mib("VmHWM") - base < GROWTH_MIB
    if out is not None:
        assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert out.flags.c_contiguous and 0 < out.shape[0] * out.shape[1] <= LIMIT
    return out


# --- raw sensor_msgs/Image ---------------------------------------------------------------------------------------------
SIZES = st.one_of(st.integers(-3, 40), st.integers(0, 2 ** 32 - 1), st.sampled_from([2 ** 31, 2 ** 32 - 1, 2 ** 40]))
ENCODING_NAMES = st.one_of(st.sampled_from(sorted(ENCODINGS)), st.sampled_from([e.upper() for e in ENCODINGS]),
                           st.text(max_size=12))


def _containers(data: bytes):
    """The byte containers a message's data field may be, some of them odd."""
    return st.sampled_from([
        data, bytearray(data), memoryview(data), list(data), np.frombuffer(data, np.uint8),
        np.repeat(np.frombuffer(data, np.uint8), 2)[::2],  # a strided array of the same values
        np.frombuffer(data, np.uint8).astype(np.uint16), "text",
    ])


@st.composite
def any_fields(draw):
    """Fields drawn independently: mostly inconsistent."""
    data = draw(st.binary(max_size=3000))
    return (draw(SIZES), draw(SIZES), draw(ENCODING_NAMES), draw(st.integers(0, 255)), draw(SIZES),
            draw(_containers(data)))


@st.composite
def nearly_right_fields(draw):
    """A consistent image of a supported encoding, then one field or the data's length knocked off."""
    enc = draw(st.sampled_from(sorted(ENCODINGS)))
    info = ENCODINGS[enc]
    height, width = draw(st.integers(1, 24)), 2 * draw(st.integers(1, 16))
    step = width * info.channels * info.bytes_per_channel + draw(st.integers(0, 9))
    data = draw(st.binary(min_size=step * height, max_size=step * height))
    fields = [height, width, enc, draw(st.integers(0, 1)), step, data]
    which = draw(st.integers(0, 6))
    if which < 5 and which != 2:
        fields[which] = max(0, fields[which] + draw(st.integers(-3, 3))) if draw(st.booleans()) else draw(SIZES)
    elif which == 5:
        fields[5] = data[:draw(st.integers(0, len(data)))]
    return tuple(fields)


@FUZZ
@given(fields=st.one_of(any_fields(), nearly_right_fields()))
def test_any_image_fields_give_a_frame_or_a_decode_error(fields, capfd):
    out = decode_within_bounds(lambda: image_to_rgb8(*fields, max_pixels=LIMIT))
    if out is not None:
        assert out.shape[:2] == (int(fields[0]), int(fields[1]))
    assert capfd.readouterr().err == ""


# --- CompressedImage: real JPEG and PNG, mutated -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoded(astronaut_rgb) -> dict[str, bytes]:
    face = cv2.cvtColor(cv2.resize(astronaut_rgb, (256, 256), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    gray16 = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    out = {}
    for name, image, ext, params in [("jpeg", face, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]),
                                     ("jpeg progressive", face, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                     ("png", face, ".png", []), ("png 16-bit", gray16, ".png", []),
                                     ("png rgba", cv2.cvtColor(face, cv2.COLOR_BGR2BGRA), ".png", [])]:
        ok, data = cv2.imencode(ext, image, params)
        assert ok
        out[name] = data.tobytes()
    return out


def _size_field(data: bytes) -> int:
    """Offset of the declared height (JPEG frame header) or width (PNG IHDR) in `data`."""
    return data.index(b"\xff\xc0" if b"\xff\xc0" in data else b"\xff\xc2") + 5 if data[:2] == b"\xff\xd8" else 16


@st.composite
def mutations(draw):
    """(name of the source file, list of edits): each edit overwrites, inserts, deletes, truncates or rewrites the
    declared size. Positions favour the first kilobyte, where the headers are."""
    name = draw(st.sampled_from(["jpeg", "jpeg progressive", "png", "png 16-bit", "png rgba"]))
    position = st.one_of(st.integers(0, 1024), st.integers(0, 2 ** 20))
    edit = st.one_of(
        st.tuples(st.just("overwrite"), position, st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), position, st.integers(1, 256)),
        st.tuples(st.just("truncate"), position, st.none()),
        st.tuples(st.just("size"), st.integers(0, 2 ** 16 - 1), st.integers(0, 2 ** 16 - 1)),
    )
    return name, draw(st.lists(edit, min_size=1, max_size=4))


def mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, a, b in edits:
        at = a % (len(buf) + 1)
        if kind == "overwrite":
            buf[at:at + len(b)] = b
        elif kind == "insert":
            buf[at:at] = b
        elif kind == "delete":
            del buf[at:at + b]
        elif kind == "truncate":
            del buf[at:]
        else:
            try:
                offset = _size_field(bytes(buf))
            except ValueError:  # the frame header was edited away
                continue
            width_first = buf[:4] == b"\x89PNG"
            buf[offset:offset + 8 if width_first else offset + 4] = (
                struct.pack(">II", b, a) if width_first else struct.pack(">HH", a, b))
    return bytes(buf)


@FUZZ
@given(mutation=mutations(), fmt=st.sampled_from(["jpeg", "png", "bgr8; jpeg compressed bgr8",
                                                    "16UC1; compressedDepth png", ""]))
def test_mutated_jpeg_and_png_give_a_frame_or_a_decode_error(encoded, mutation, fmt, capfd):
    name, edits = mutation
    data = mutate(encoded[name], edits)
    said: list[str] = []
    decode_within_bounds(lambda: compressed_to_rgb8(fmt, data, max_pixels=LIMIT, on_warning=said.append))
    assert all("\n" not in line for line in said)
    assert capfd.readouterr().err == "", "the decoder's messages must not reach stderr"


@FUZZ
@given(data=st.binary(max_size=2000), prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"]))
def test_any_bytes_give_a_frame_or_a_decode_error(data, prefix, capfd):
    decode_within_bounds(lambda: compressed_to_rgb8("jpeg", prefix + data, max_pixels=LIMIT))
    assert capfd.readouterr().err == ""


def test_the_mutations_reach_the_decoder(encoded):
    """Not every mutation is refused from its header: some decode, some decode with a warning from the decoder,
    and some fail inside it (else the properties above would only test the header checks)."""
    outcomes = set()
    rng = np.random.default_rng(0)
    for name in ("jpeg", "png"):
        data = encoded[name]
        for _ in range(60):
            at = int(rng.integers(len(data) // 4, len(data)))
            broken = mutate(data, [("overwrite", at, bytes(rng.integers(0, 256, 4, dtype=np.uint8)))])
            said: list[str] = []
            try:
                compressed_to_rgb8(name, broken, on_warning=said.append)
                outcomes.add("decoded with a warning" if said else "decoded")
            except ImageDecodeError as exc:
                outcomes.add("refused: " + exc.cause)
    assert {"decoded", "decoded with a warning", "refused: corrupt"} <= outcomes, outcomes
