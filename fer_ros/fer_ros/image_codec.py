"""sensor_msgs/Image and sensor_msgs/CompressedImage fields -> RGB8 numpy frames, without cv_bridge or rclpy.

Shared by the node and the bag tools, so a frame decodes the same way live and offline. The functions take the
message *fields* (or any object carrying them: an rclpy message, a rosbags message), never a ROS type.

Supported raw encodings (sensor_msgs/image_encodings): rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3 (read as
bgr8, like cv_bridge), 8UC4 (bgra8), rgb16, bgr16, rgba16, bgra16, mono16, 16UC1, yuv422 (UYVY), yuv422_yuy2
(YUYV), and the four 8-bit Bayer patterns. Rows are read through `step` (row padding is skipped) and multi-byte
samples honour `is_bigendian`. 16-bit samples are mapped to 8 bits by keeping the high byte (value >> 8), as
cv_bridge does for mono16 -> mono8.

Every malformed input raises `ImageDecodeError` (a `ValueError`) whose message says what was wrong. An image
is refused from its declared size before anything is allocated for its pixels: a raw image when its size fields
pass the pixel limit or its `step` and `height` reach past its data; a JPEG or PNG when its header declares more
pixels than the limit (image_header.py reads the header without decoding).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from fer_ros import native_stderr
from fer_ros.image_header import PNG_MAGIC, HeaderError, image_format, read_header


class ImageDecodeError(ValueError):
    """A sensor_msgs/Image or CompressedImage that cannot be turned into a frame; the message says why, `cause`
    names the kind of problem in a few words (one of CAUSES), for counting and for rate-limiting warnings."""

    def __init__(self, message: str, cause: str = "malformed") -> None:
        super().__init__(message)
        self.cause = cause


#: The kinds of problem an ImageDecodeError names in its `cause`.
CAUSES = ("not an image message", "unsupported encoding", "bad size", "too large", "bad data", "no data",
          "unsupported format", "corrupt", "malformed")


@dataclass(frozen=True)
class EncodingInfo:
    """How one raw encoding is laid out: channels per pixel, bytes per channel, and how it becomes RGB."""

    channels: int
    bytes_per_channel: int
    to_rgb: int | None  # cv2 color conversion code, None when already RGB


_BAYER = {
    # ROS names the pattern by its first row; OpenCV by the second row's first two pixels.
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}

ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo(3, 1, None),
    "bgr8": EncodingInfo(3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": EncodingInfo(4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": EncodingInfo(4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": EncodingInfo(1, 1, cv2.COLOR_GRAY2RGB),
    "8UC1": EncodingInfo(1, 1, cv2.COLOR_GRAY2RGB),
    "8UC3": EncodingInfo(3, 1, cv2.COLOR_BGR2RGB),
    "8UC4": EncodingInfo(4, 1, cv2.COLOR_BGRA2RGB),
    "rgb16": EncodingInfo(3, 2, None),
    "bgr16": EncodingInfo(3, 2, cv2.COLOR_BGR2RGB),
    "rgba16": EncodingInfo(4, 2, cv2.COLOR_RGBA2RGB),
    "bgra16": EncodingInfo(4, 2, cv2.COLOR_BGRA2RGB),
    "mono16": EncodingInfo(1, 2, cv2.COLOR_GRAY2RGB),
    "16UC1": EncodingInfo(1, 2, cv2.COLOR_GRAY2RGB),
    # 4:2:2 packs two pixels in four bytes; seen per pixel that is 2 channels of 1 byte.
    "yuv422": EncodingInfo(2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": EncodingInfo(2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": EncodingInfo(2, 1, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": EncodingInfo(2, 1, cv2.COLOR_YUV2RGB_YUY2),
    **{name: EncodingInfo(1, 1, code) for name, code in _BAYER.items()},
}

_YUV422 = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")

#: Largest frame accepted by default, in pixels: 2^23 (8 MP), room for a 3840x2160 frame. Every decode checks
#: the size an image declares against its limit before it allocates anything for the pixels.
DEFAULT_MAX_PIXELS = 1 << 23

#: Most scans a JPEG may have: a progressive JPEG decodes every scan over the whole image, so a small file of
#: many scans costs seconds. Encoders write about ten.
MAX_JPEG_SCANS = 500


def supported_encodings() -> tuple[str, ...]:
    """The raw encodings `image_to_rgb8` accepts."""
    return tuple(ENCODINGS)


def _as_bytes(data: Any) -> np.ndarray:
    """The message's data field (bytes, bytearray, array.array('B'), memoryview, numpy array, list) as uint8."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageDecodeError(f"image data must be uint8 bytes, got a numpy array of {data.dtype}", "bad data")
        return np.ascontiguousarray(data).reshape(-1)
    if isinstance(data, (list, tuple)):
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (OverflowError, ValueError, TypeError) as exc:
            raise ImageDecodeError(f"image data is not a sequence of bytes: {exc}", "bad data") from None
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as exc:
        raise ImageDecodeError(f"image data of type {type(data).__name__} is not a byte buffer ({exc})",
                               "bad data") from None


def _as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise ImageDecodeError(f"image {name} {value!r} is not a whole number", "bad size") from None


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{what} has zero size ({width}x{height} px)", "bad size")
    if width * height > max_pixels:
        raise ImageDecodeError(f"{what} of {width}x{height} px is larger than the {max_pixels} px accepted",
                               "too large")


def image_to_rgb8(height: int, width: int, encoding: str, is_bigendian: int | bool, step: int,
                  data: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode sensor_msgs/Image fields into a contiguous (height, width, 3) uint8 RGB array.

    `step` is the row length in bytes (>= width * bytes per pixel, <= the data's length); bytes past the pixels
    of a row are padding, and the last row may come without its padding. Memory: the output and at most one copy
    of the pixels, never what `step` or the size fields claim beyond the data. Raises ImageDecodeError for zero sizes, more than
    `max_pixels` pixels, an unknown encoding, a short step or short data.
    """
    height, width, step = _as_int(height, "height"), _as_int(width, "width"), _as_int(step, "step")
    enc = str(encoding).strip()
    info = ENCODINGS.get(enc) or ENCODINGS.get(enc.lower())
    if info is None:
        raise ImageDecodeError(
            f"unsupported image encoding {str(encoding)[:40]!r}; supported: {', '.join(ENCODINGS)}",
            "unsupported encoding")
    _check_pixels(width, height, max_pixels, "image")
    enc = enc if enc in ENCODINGS else enc.lower()
    if enc in _YUV422 and width % 2:
        raise ImageDecodeError(f"{enc} packs pixel pairs, so its width must be even (got {width} px)", "bad size")
    if enc.startswith("bayer_") and (width < 2 or height < 2):
        raise ImageDecodeError(f"a {enc} image needs at least 2x2 px to hold its pattern (got {width}x{height})",
                               "bad size")
    row_bytes = width * info.channels * info.bytes_per_channel
    if step < row_bytes:
        raise ImageDecodeError(
            f"step {step} B is smaller than one {enc} row of {width} px ({row_bytes} B)", "bad size")
    buf = _as_bytes(data)
    needed = step * (height - 1) + row_bytes  # the last row may omit its padding
    if buf.size < needed:
        raise ImageDecodeError(
            f"image data has {buf.size} B, a {width}x{height} {enc} image with step {step} needs {needed} B",
            "bad data")
    if step > buf.size:  # possible for one row only: a row longer than all of the data is a broken message
        raise ImageDecodeError(f"step {step} B is longer than all of the image data ({buf.size} B)", "bad size")
    # A view of the rows without their padding: nothing is allocated, whatever `step` says (all of it lies
    # within the data, checked above).
    rows = np.lib.stride_tricks.as_strided(buf[:needed], shape=(height, row_bytes),
                                           strides=(step if height > 1 else row_bytes, 1), writeable=False)
    if info.bytes_per_channel == 2:  # keep each sample's high byte: the first of two when big-endian
        high = 0 if is_bigendian else 1
        samples = rows.reshape(height, row_bytes // 2, 2)[:, :, high]
    else:
        samples = rows
    pixels = np.ascontiguousarray(samples).reshape(height, width, info.channels)
    if info.to_rgb is None:
        return pixels if pixels.flags.writeable else pixels.copy()
    if info.channels == 1:
        pixels = pixels[:, :, 0]
    try:
        return cv2.cvtColor(pixels, info.to_rgb)
    except cv2.error as exc:
        raise ImageDecodeError(f"a {width}x{height} {enc} image cannot be converted to RGB: "
                               f"{str(exc).strip().splitlines()[-1]}", "bad size") from None


def image_msg_to_rgb8(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode any object with sensor_msgs/Image fields (rclpy or rosbags message) into (H, W, 3) uint8 RGB."""
    try:
        fields = (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)
    except AttributeError as exc:
        raise ImageDecodeError(f"not a sensor_msgs/Image: {exc}", "not an image message") from None
    return image_to_rgb8(*fields, max_pixels=max_pixels)


def compressed_to_rgb8(fmt: str, data: Any, max_pixels: int = DEFAULT_MAX_PIXELS,
                       on_warning: Callable[[str], None] | None = None) -> np.ndarray:
    """Decode sensor_msgs/CompressedImage fields (format, data) into (H, W, 3) uint8 RGB.

    `fmt` is image_transport's format string ("jpeg", "png", "bgr8; jpeg compressed bgr8",
    "16UC1; compressedDepth png", ...); the codec itself is found from the data, so the string only matters for
    compressedDepth, whose data starts with a small header before the PNG. Only JPEG and PNG are decoded, and
    only after their header's width and height were found within `max_pixels`. 16-bit images keep their high
    byte. What the JPEG and PNG libraries print about the data goes into the error message of an image that
    cannot be decoded, and to `on_warning` (one line) for one that decodes anyway; it never reaches stderr.
    Raises ImageDecodeError for empty, unsupported, oversized or undecodable data.
    """
    buf = _as_bytes(data)
    label = f"compressed image ({str(fmt)[:60] or 'no format'}, {buf.size} B)"
    if buf.size == 0:
        raise ImageDecodeError(f"{label} has no data", "no data")
    raw = data if isinstance(data, bytes) else buf.tobytes()
    if "compresseddepth" in str(fmt).lower():
        start = raw[:64].find(PNG_MAGIC)
        if start > 0:
            raw = raw[start:]
    if image_format(raw) is None:
        raise ImageDecodeError(f"{label} is neither JPEG nor PNG, the formats decoded here", "unsupported format")
    try:
        header = read_header(raw)
    except HeaderError as exc:
        raise ImageDecodeError(f"{label} could not be decoded: {exc}", "corrupt") from None
    _check_pixels(header.width, header.height, max_pixels, f"{label}: {header.format.upper()} declaring a frame")
    if header.scans > MAX_JPEG_SCANS:
        raise ImageDecodeError(f"{label} has {header.scans} scans; more than {MAX_JPEG_SCANS} are refused",
                               "corrupt")
    with native_stderr.capture() as noise:
        try:
            decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            decoded = None
    said = "; ".join(noise.lines())
    if decoded is None or decoded.size == 0:
        raise ImageDecodeError(f"{label} could not be decoded: {said or 'corrupt or not an image'}", "corrupt")
    if said and on_warning is not None:
        on_warning(f"{label} decoded despite: {said}")
    if decoded.dtype == np.uint16:
        decoded = (decoded >> 8).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        raise ImageDecodeError(f"{label} decodes to {decoded.dtype} samples; only 8 and 16 bit are supported",
                               "unsupported format")
    channels = 1 if decoded.ndim == 2 else decoded.shape[2]
    if channels == 1:
        return cv2.cvtColor(decoded.reshape(decoded.shape[:2]), cv2.COLOR_GRAY2RGB)
    if channels == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    if channels == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    raise ImageDecodeError(f"{label} decodes to {channels} channels; 1, 3 or 4 are supported", "unsupported format")


def compressed_msg_to_rgb8(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS,
                           on_warning: Callable[[str], None] | None = None) -> np.ndarray:
    """Decode any object with sensor_msgs/CompressedImage fields into (H, W, 3) uint8 RGB."""
    try:
        fields = (msg.format, msg.data)
    except AttributeError as exc:
        raise ImageDecodeError(f"not a sensor_msgs/CompressedImage: {exc}", "not an image message") from None
    return compressed_to_rgb8(*fields, max_pixels=max_pixels, on_warning=on_warning)


def read_image(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """The image in a file, decoded by OpenCV with `flags` (a cv2.IMREAD_* value), or None when the file cannot be
    read or holds no decodable image, as cv2.imread answers. The file's bytes are read by Python and decoded in
    memory: cv2.imread takes the file's name as UTF-8 text and crashes the process on a name that is not UTF-8 (a
    folder named in Latin-1), which Python reads as it is. Every image file of a dataset or a folder is read here."""
    try:
        raw = Path(path).read_bytes()
    except (OSError, ValueError):
        return None
    if not raw:
        return None
    try:
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), flags)
    except cv2.error:
        return None
    return img if img is not None and img.size else None


@dataclass(frozen=True)
class RawImage:
    """sensor_msgs/Image payload fields (no header): what `encode_rgb8` produces."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


def encode_rgb8(rgb8: np.ndarray, encoding: str = "rgb8", *, row_padding: int = 0,
                bigendian: bool = False) -> RawImage:
    """Encode an (H, W, 3) uint8 RGB frame as sensor_msgs/Image fields in `encoding`.

    Used to publish frames (bag maker, tests, debug image). 16-bit encodings scale by 257 so that decoding gives
    the input back; `row_padding` adds that many bytes to every row (exercises `step`). Bayer encodings are not
    produced.
    """
    rgb = np.ascontiguousarray(rgb8)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageDecodeError(f"encode_rgb8 needs an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    enc = encoding
    if enc not in ENCODINGS or enc.startswith("bayer_"):
        raise ImageDecodeError(f"cannot encode to {encoding!r}")
    h, w = rgb.shape[:2]
    info = ENCODINGS[enc]
    if enc in _YUV422:
        if w % 2:
            raise ImageDecodeError(f"{enc} needs an even width (got {w} px)")
        pixels = _rgb_to_yuv422(rgb, uyvy=enc in ("yuv422", "uyvy"))
    else:
        if info.channels == 1:
            code = cv2.COLOR_RGB2GRAY
        elif info.channels == 3:
            code = None if enc.startswith("rgb") else cv2.COLOR_RGB2BGR
        else:
            code = cv2.COLOR_RGB2RGBA if enc.startswith("rgba") else cv2.COLOR_RGB2BGRA
        pixels = rgb if code is None else cv2.cvtColor(rgb, code)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if info.bytes_per_channel == 2:
            pixels = pixels.astype(np.uint16) * 257
            pixels = pixels.astype(">u2" if bigendian else "<u2")
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(h, -1)
    if row_padding:
        rows = np.concatenate([rows, np.zeros((h, row_padding), np.uint8)], axis=1)
    return RawImage(h, w, enc, int(bigendian and info.bytes_per_channel == 2), rows.shape[1],
                    rows.tobytes())


def _rgb_to_yuv422(rgb: np.ndarray, uyvy: bool) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W, 2) packed 4:2:2 bytes (UYVY or YUYV), BT.601 video range (Y 16..235), the range
    OpenCV's YUV422 decoder expects. Chroma is averaged over each pixel pair."""
    r, g, b = (rgb[:, :, i].astype(np.float32) for i in range(3))
    y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b
    y = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    u = np.clip(np.rint((u[:, 0::2] + u[:, 1::2]) / 2), 0, 255).astype(np.uint8)
    v = np.clip(np.rint((v[:, 0::2] + v[:, 1::2]) / 2), 0, 255).astype(np.uint8)
    out = np.empty((rgb.shape[0], rgb.shape[1] // 2, 4), np.uint8)
    if uyvy:
        out[:, :, 0], out[:, :, 1], out[:, :, 2], out[:, :, 3] = u, y[:, 0::2], v, y[:, 1::2]
    else:
        out[:, :, 0], out[:, :, 1], out[:, :, 2], out[:, :, 3] = y[:, 0::2], u, y[:, 1::2], v
    return out.reshape(rgb.shape[0], rgb.shape[1], 2)
