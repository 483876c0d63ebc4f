"""sensor_msgs/Image and sensor_msgs/CompressedImage fields -> RGB8 numpy frames, without cv_bridge or rclpy.

Shared by the node and the bag tools, so a frame decodes the same way live and offline. The functions take the
message *fields* (or any object carrying them: an rclpy message, a rosbags message), never a ROS type.

Supported raw encodings (sensor_msgs/image_encodings): rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3 (read as
bgr8, like cv_bridge), 8UC4 (bgra8), rgb16, bgr16, rgba16, bgra16, mono16, 16UC1, yuv422 (UYVY), yuv422_yuy2
(YUYV), and the four 8-bit Bayer patterns. Rows are read through `step` (row padding is skipped) and multi-byte
samples honour `is_bigendian`. 16-bit samples are mapped to 8 bits by keeping the high byte (value >> 8), as
cv_bridge does for mono16 -> mono8.

Every malformed input raises `ImageDecodeError` (a `ValueError`) whose message says what was wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


class ImageDecodeError(ValueError):
    """A sensor_msgs/Image or CompressedImage that cannot be turned into a frame; the message says why."""


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

#: Largest frame accepted, in pixels: a guard against absurd height/width fields (bigger than 8K UHD x 4).
MAX_PIXELS = 4 * 7680 * 4320


def supported_encodings() -> tuple[str, ...]:
    """The raw encodings `image_to_rgb8` accepts."""
    return tuple(ENCODINGS)


def _as_bytes(data: Any) -> np.ndarray:
    """The message's data field (bytes, bytearray, array.array('B'), memoryview, numpy array, list) as uint8."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageDecodeError(f"image data must be uint8 bytes, got a numpy array of {data.dtype}")
        return data.reshape(-1)
    if isinstance(data, (list, tuple)):
        try:
            return np.asarray(data, dtype=np.uint8)
        except (OverflowError, ValueError, TypeError) as exc:
            raise ImageDecodeError(f"image data is not a sequence of bytes: {exc}") from None
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        raise ImageDecodeError(f"image data of type {type(data).__name__} is not a byte buffer") from None


def image_to_rgb8(height: int, width: int, encoding: str, is_bigendian: int | bool, step: int,
                  data: Any) -> np.ndarray:
    """Decode sensor_msgs/Image fields into a contiguous (height, width, 3) uint8 RGB array.

    `step` is the row length in bytes (>= width * bytes per pixel); bytes past the pixels of a row are padding.
    Raises ImageDecodeError for zero or absurd sizes, an unknown encoding, a short step or short data.
    """
    height, width, step = int(height), int(width), int(step)
    enc = str(encoding).strip()
    info = ENCODINGS.get(enc) or ENCODINGS.get(enc.lower())
    if info is None:
        raise ImageDecodeError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image has zero size ({width}x{height} px)")
    if height * width > MAX_PIXELS:
        raise ImageDecodeError(f"image of {width}x{height} px is larger than the {MAX_PIXELS} px accepted")
    enc = enc if enc in ENCODINGS else enc.lower()
    if enc in _YUV422 and width % 2:
        raise ImageDecodeError(f"{enc} packs pixel pairs, so its width must be even (got {width} px)")
    row_bytes = width * info.channels * info.bytes_per_channel
    if step < row_bytes:
        raise ImageDecodeError(
            f"step {step} B is smaller than one {enc} row of {width} px ({row_bytes} B)")
    buf = _as_bytes(data)
    needed = step * (height - 1) + row_bytes  # the last row may omit its padding
    if buf.size < needed:
        raise ImageDecodeError(
            f"image data has {buf.size} B, a {width}x{height} {enc} image with step {step} needs {needed} B")

    if buf.size >= step * height:
        rows = buf[:step * height].reshape(height, step)[:, :row_bytes]
    else:  # no padding after the last row: pad one row's worth so a plain reshape works
        rows = np.concatenate([buf[:needed], np.zeros(step - row_bytes, np.uint8)]).reshape(height, step)
        rows = rows[:, :row_bytes]

    if info.bytes_per_channel == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        pixels16 = np.ascontiguousarray(rows).view(dtype).reshape(height, width, info.channels)
        pixels = (pixels16 >> 8).astype(np.uint8)
    else:
        pixels = np.ascontiguousarray(rows).reshape(height, width, info.channels)

    if info.to_rgb is None:
        return np.ascontiguousarray(pixels)
    if info.channels == 1:
        pixels = pixels[:, :, 0]
    return cv2.cvtColor(pixels, info.to_rgb)


def image_msg_to_rgb8(msg: Any) -> np.ndarray:
    """Decode any object with sensor_msgs/Image fields (rclpy or rosbags message) into (H, W, 3) uint8 RGB."""
    try:
        fields = (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)
    except AttributeError as exc:
        raise ImageDecodeError(f"not a sensor_msgs/Image: {exc}") from None
    return image_to_rgb8(*fields)


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def compressed_to_rgb8(fmt: str, data: Any) -> np.ndarray:
    """Decode sensor_msgs/CompressedImage fields (format, data) into (H, W, 3) uint8 RGB.

    `fmt` is image_transport's format string ("jpeg", "png", "bgr8; jpeg compressed bgr8",
    "16UC1; compressedDepth png", ...); the codec itself is found from the data, so the string only matters for
    compressedDepth, whose data starts with a small header before the PNG. 16-bit images keep their high byte.
    Raises ImageDecodeError for empty or undecodable data.
    """
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageDecodeError(f"compressed image ({fmt or 'no format'}) has no data")
    if "compresseddepth" in str(fmt).lower():
        start = bytes(buf[:64]).find(_PNG_MAGIC)
        if start > 0:
            buf = buf[start:]
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageDecodeError(
            f"compressed image ({fmt or 'no format'}, {buf.size} B) could not be decoded: corrupt or not an image")
    if decoded.dtype == np.uint16:
        decoded = (decoded >> 8).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        raise ImageDecodeError(f"compressed image decodes to {decoded.dtype} samples; only 8 and 16 bit are supported")
    if decoded.ndim == 2 or decoded.shape[2] == 1:
        return cv2.cvtColor(decoded.reshape(decoded.shape[:2]), cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def compressed_msg_to_rgb8(msg: Any) -> np.ndarray:
    """Decode any object with sensor_msgs/CompressedImage fields into (H, W, 3) uint8 RGB."""
    try:
        fields = (msg.format, msg.data)
    except AttributeError as exc:
        raise ImageDecodeError(f"not a sensor_msgs/CompressedImage: {exc}") from None
    return compressed_to_rgb8(*fields)


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
