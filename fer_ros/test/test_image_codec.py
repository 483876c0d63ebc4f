"""image_codec: every raw encoding, step padding, byte order, compressed images, and malformed input."""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from fer_ros.image_codec import (ENCODINGS, ImageDecodeError, compressed_msg_to_rgb8, compressed_to_rgb8,
                                 encode_rgb8, image_msg_to_rgb8, image_to_rgb8)


@pytest.fixture(scope="module")
def small_rgb(astronaut_rgb) -> np.ndarray:
    """A 96x128 real-face RGB frame (even width, smooth enough for 4:2:2 chroma)."""
    return cv2.resize(astronaut_rgb[0:384, 64:576], (128, 96), interpolation=cv2.INTER_AREA)


def _decode(raw) -> np.ndarray:
    return image_to_rgb8(raw.height, raw.width, raw.encoding, raw.is_bigendian, raw.step, raw.data)


EXACT = ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "8UC4", "rgb16", "bgr16", "rgba16", "bgra16"]
GRAY = ["mono8", "8UC1", "mono16", "16UC1"]


@pytest.mark.parametrize("encoding", EXACT)
@pytest.mark.parametrize("padding", [0, 5])
@pytest.mark.parametrize("bigendian", [False, True])
def test_color_encodings_round_trip_exactly(small_rgb, encoding, padding, bigendian):
    raw = encode_rgb8(small_rgb, encoding, row_padding=padding, bigendian=bigendian)
    assert raw.step == small_rgb.shape[1] * ENCODINGS[encoding].channels * ENCODINGS[encoding].bytes_per_channel \
        + padding
    out = _decode(raw)
    assert out.dtype == np.uint8 and out.shape == small_rgb.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, small_rgb)


@pytest.mark.parametrize("encoding", GRAY)
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_mono_encodings_give_gray_in_all_channels(small_rgb, encoding, padding, bigendian):
    gray = cv2.cvtColor(small_rgb, cv2.COLOR_RGB2GRAY)
    out = _decode(encode_rgb8(small_rgb, encoding, row_padding=padding, bigendian=bigendian))
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_16bit_byte_order_is_honoured():
    # One pixel of value 0x1234: its high byte 0x12 is the 8-bit result, whatever the byte order.
    assert image_to_rgb8(1, 1, "mono16", 1, 2, b"\x12\x34")[0, 0, 0] == 0x12
    assert image_to_rgb8(1, 1, "mono16", 0, 2, b"\x34\x12")[0, 0, 0] == 0x12
    # Reading big-endian data as little-endian gives the other byte: the flag matters.
    assert image_to_rgb8(1, 1, "16UC1", 0, 2, b"\x12\x34")[0, 0, 0] == 0x34


@pytest.mark.parametrize("encoding,pair", [("yuv422", b"\x80\xeb\x80\x10"), ("yuv422_yuy2", b"\xeb\x80\x10\x80")])
def test_yuv422_byte_layouts(encoding, pair):
    # A white pixel (Y=235) then a black one (Y=16), no chroma: UYVY and YUYV order their bytes differently.
    out = image_to_rgb8(2, 2, encoding, 0, 4, pair * 2)
    np.testing.assert_array_equal(out[:, 0], np.full((2, 3), 255, np.uint8))
    np.testing.assert_array_equal(out[:, 1], np.zeros((2, 3), np.uint8))


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_round_trip_is_close(small_rgb, encoding):
    out = _decode(encode_rgb8(small_rgb, encoding, row_padding=4))
    err = np.abs(out.astype(int) - small_rgb.astype(int))
    assert err.mean() < 4.0, err.mean()


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"])
def test_bayer_patterns_recover_a_flat_colour(encoding):
    colour = {"r": 200, "g": 120, "b": 40}
    pattern = encoding[len("bayer_"):len("bayer_") + 4]  # e.g. "rggb": row 0 = r g, row 1 = g b
    mosaic = np.zeros((16, 16), np.uint8)
    for i, ch in enumerate(pattern):
        mosaic[i // 2::2, i % 2::2] = colour[ch]
    out = image_to_rgb8(16, 16, encoding, 0, 16, mosaic.tobytes())
    np.testing.assert_allclose(out[8, 8], [200, 120, 40], atol=2)


def test_accepts_every_data_container(small_rgb):
    raw = encode_rgb8(small_rgb, "bgr8")
    for data in (raw.data, bytearray(raw.data), array.array("B", raw.data), memoryview(raw.data),
                 np.frombuffer(raw.data, np.uint8), list(raw.data[:])):
        np.testing.assert_array_equal(image_to_rgb8(raw.height, raw.width, "bgr8", 0, raw.step, data), small_rgb)


def test_last_row_without_padding_is_accepted(small_rgb):
    raw = encode_rgb8(small_rgb, "rgb8", row_padding=8)
    out = image_to_rgb8(raw.height, raw.width, "rgb8", 0, raw.step, raw.data[:-8])
    np.testing.assert_array_equal(out, small_rgb)


class _Msg:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_message_objects(small_rgb):
    raw = encode_rgb8(small_rgb, "rgba8")
    msg = _Msg(height=raw.height, width=raw.width, encoding=raw.encoding, is_bigendian=0, step=raw.step,
               data=raw.data)
    np.testing.assert_array_equal(image_msg_to_rgb8(msg), small_rgb)
    ok, jpg = cv2.imencode(".png", cv2.cvtColor(small_rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(compressed_msg_to_rgb8(_Msg(format="png", data=jpg.tobytes())), small_rgb)
    with pytest.raises(ImageDecodeError, match="not a sensor_msgs/Image"):
        image_msg_to_rgb8(object())


@pytest.mark.parametrize("fields,match", [
    ((4, 4, "rgb8", 0, 11, bytes(48)), "step 11 B is smaller"),
    ((4, 4, "rgb8", 0, 12, bytes(40)), "needs 48 B"),
    ((4, 4, "rgb9", 0, 12, bytes(48)), "unsupported image encoding 'rgb9'"),
    ((0, 4, "rgb8", 0, 12, b""), "zero size"),
    ((4, 0, "mono8", 0, 0, b""), "zero size"),
    ((2, 3, "yuv422", 0, 6, bytes(12)), "width must be even"),
    ((100000, 100000, "mono8", 0, 100000, b""), "larger than"),
    ((2, 2, "mono8", 0, 2, np.zeros(4, np.float32)), "uint8"),
    ((2, 2, "mono8", 0, 2, 12345), "not a byte buffer"),
])
def test_malformed_images_raise_a_clear_value_error(fields, match):
    with pytest.raises(ImageDecodeError, match=match) as info:
        image_to_rgb8(*fields)
    assert isinstance(info.value, ValueError)


def test_compressed_jpeg_png_and_16bit(small_rgb):
    bgr = cv2.cvtColor(small_rgb, cv2.COLOR_RGB2BGR)
    ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = compressed_to_rgb8("bgr8; jpeg compressed bgr8", jpg.tobytes())
    assert out.shape == small_rgb.shape
    assert np.abs(out.astype(int) - small_rgb.astype(int)).mean() < 3.0
    gray = cv2.cvtColor(small_rgb, cv2.COLOR_RGB2GRAY)
    ok, png = cv2.imencode(".png", gray)
    np.testing.assert_array_equal(compressed_to_rgb8("mono8; png compressed mono8", png)[:, :, 1], gray)
    ok, png16 = cv2.imencode(".png", gray.astype(np.uint16) * 257)
    np.testing.assert_array_equal(compressed_to_rgb8("png", png16.tobytes())[:, :, 2], gray)
    # compressedDepth: a 12-byte header precedes the PNG.
    depth = b"\x00" * 12 + png16.tobytes()
    np.testing.assert_array_equal(compressed_to_rgb8("16UC1; compressedDepth png", depth)[:, :, 0], gray)


@pytest.mark.parametrize("data,match", [(b"", "no data"), (b"\xff\xd8\xff\xe0 this is not a jpeg" * 4, "could not be decoded")])
def test_corrupt_compressed_images_raise(data, match):
    with pytest.raises(ImageDecodeError, match=match):
        compressed_to_rgb8("jpeg", data)


def test_truncated_jpeg_is_rejected(small_rgb):
    ok, jpg = cv2.imencode(".jpg", small_rgb)
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        compressed_to_rgb8("jpeg", jpg.tobytes()[: jpg.size // 2])


# --- sizes declared before anything is allocated ---------------------------------------------------------------------
def _peak_growth_mib(decode) -> tuple[float, ImageDecodeError]:
    """(peak resident memory growth in MiB, the error) of decode(), which must raise ImageDecodeError."""
    import re
    from pathlib import Path

    def status(key: str) -> float:
        return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024.0
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from the present size
    base = status("VmRSS")
    with pytest.raises(ImageDecodeError) as info:
        decode()
    return status("VmHWM") - base, info.value


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize("case", ["raw step of 4 GB", "JPEG declaring 30000x30000", "PNG of 30000x30000 zeros"])
def test_huge_declared_sizes_are_refused_without_allocating_them(case):
    from fer_ros.ros.malformed import jpeg_declaring, png_of_zeros
    if case == "raw step of 4 GB":
        mib, err = _peak_growth_mib(lambda: image_to_rgb8(1, 1, "mono8", 0, 4294967295, b"\x01"))
        assert err.cause == "bad size" and "longer than all of the image data" in str(err)
    elif case == "JPEG declaring 30000x30000":
        data = jpeg_declaring(30000, 30000)
        assert len(data) < 1000
        mib, err = _peak_growth_mib(lambda: compressed_to_rgb8("jpeg", data))
        assert err.cause == "too large" and "30000x30000" in str(err)
    else:  # the first 2000 rows of 30000 zeros are real; the header declares all 30000 (900 MB decoded)
        data = png_of_zeros(30000, 30000, rows=2000)
        mib, err = _peak_growth_mib(lambda: compressed_to_rgb8("png", data))
        assert err.cause == "too large"
    assert mib < 300.0, mib


def test_the_pixel_limit_is_the_callers():
    ok, png = cv2.imencode(".png", np.zeros((40, 50), np.uint8))
    assert compressed_to_rgb8("png", png.tobytes(), max_pixels=2000).shape == (40, 50, 3)
    with pytest.raises(ImageDecodeError, match="50x40 px is larger than the 1999 px") as info:
        compressed_to_rgb8("png", png.tobytes(), max_pixels=1999)
    assert info.value.cause == "too large"
    assert image_to_rgb8(40, 50, "mono8", 0, 50, bytes(2000), max_pixels=2000).shape == (40, 50, 3)
    with pytest.raises(ImageDecodeError, match="larger than") as info:
        image_to_rgb8(40, 50, "mono8", 0, 50, bytes(2000), max_pixels=1999)
    assert info.value.cause == "too large"


def test_only_jpeg_and_png_are_decoded(small_rgb):
    for ext in (".bmp", ".tiff", ".webp"):
        ok, data = cv2.imencode(ext, small_rgb)
        with pytest.raises(ImageDecodeError, match="neither JPEG nor PNG") as info:
            compressed_to_rgb8("bgr8; " + ext[1:], data.tobytes())
        assert info.value.cause == "unsupported format"


def test_jpeg_with_too_many_scans_is_refused(small_rgb):
    from fer_ros.image_codec import MAX_JPEG_SCANS
    ok, jpg = cv2.imencode(".jpg", small_rgb, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    data = jpg.tobytes()
    assert compressed_to_rgb8("jpeg", data).shape == small_rgb.shape
    sos = data.index(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    repeated = data[:end] + data[sos:end][:200] * MAX_JPEG_SCANS + data[end:]
    with pytest.raises(ImageDecodeError, match="scans"):
        compressed_to_rgb8("jpeg", repeated)


def test_decoder_messages_go_to_the_caller_not_to_stderr(small_rgb, capfd):
    ok, jpg = cv2.imencode(".jpg", small_rgb)
    damaged = bytearray(jpg.tobytes())
    middle = len(damaged) // 2
    damaged[middle:middle + 2] = b"\xff\xd9"  # an end-of-image marker inside the scan
    said = []
    out = compressed_to_rgb8("jpeg", bytes(damaged), on_warning=said.append)
    assert out.shape == small_rgb.shape
    assert len(said) == 1 and "Corrupt JPEG data" in said[0], said
    ok, png = cv2.imencode(".png", small_rgb)
    broken = bytearray(png.tobytes())
    broken[41:45] = b"\x00\x00\x00\x00"  # the zlib header of the image data
    with pytest.raises(ImageDecodeError, match="libpng error"):
        compressed_to_rgb8("png", bytes(broken))
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("fields,cause", [
    ((1, 1, "mono8", 0, 4294967295, b"\x01"), "bad size"),
    ((1, 1, "bayer_rggb8", 0, 1, b"\x01"), "bad size"),
    (("2", None, "mono8", 0, 2, bytes(4)), "bad size"),
    ((float("nan"), 2, "mono8", 0, 2, bytes(4)), "bad size"),
    ((2, 2, object(), 0, 2, bytes(4)), "unsupported encoding"),
])
def test_hostile_fields_name_their_cause(fields, cause):
    with pytest.raises(ImageDecodeError) as info:
        image_to_rgb8(*fields)
    assert info.value.cause == cause


def test_strided_numpy_data_is_read_as_its_values():
    values = np.arange(32, dtype=np.uint8)
    out = image_to_rgb8(2, 4, "mono8", 0, 4, values[::4])  # 8 values, every fourth of the array
    np.testing.assert_array_equal(out[:, :, 0].ravel(), values[::4])


@pytest.mark.parametrize("container", ["array", "bytearray"])
def test_decoded_frames_do_not_share_the_message_buffer(small_rgb, container):
    """rclpy's Image.data is a writeable array.array('B'): a frame that viewed it would change with the message."""
    raw = encode_rgb8(small_rgb, "rgb8")
    data = array.array("B", raw.data) if container == "array" else bytearray(raw.data)
    out = image_to_rgb8(raw.height, raw.width, "rgb8", 0, raw.step, data)
    assert out.flags.writeable and out.flags.c_contiguous
    source = np.frombuffer(data, np.uint8)
    assert not np.shares_memory(out, source)
    source[:] = 255 - source  # the message's buffer is reused or changed: the frame stays as it was decoded
    np.testing.assert_array_equal(out, small_rgb)


def test_the_hostile_set_gets_the_causes_it_names(small_rgb):
    """The malformed messages the soak benchmark and the node test send are refused for the cause they name."""
    from fer_ros.ros.malformed import bad_images
    ok, jpg = cv2.imencode(".jpg", small_rgb)
    for bad in bad_images(jpg.tobytes()):
        with pytest.raises(ImageDecodeError) as info:
            if bad.compressed_format is None:
                image_to_rgb8(*bad.fields)
            else:
                compressed_to_rgb8(bad.compressed_format, bad.data)
        assert info.value.cause == bad.cause, (bad.name, str(info.value))
