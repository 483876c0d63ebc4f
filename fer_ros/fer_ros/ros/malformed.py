"""Malformed and hostile image messages, as a broken driver or a malicious publisher sends them: the set the soak
benchmark mixes into its stream, and the lying JPEG and PNG files the tests refuse. Each one names the cause
fer_node's decoder gives it (image_codec.ImageDecodeError.cause). No ROS import at module level: the byte makers
serve tests without a ROS install."""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np


def jpeg_declaring(width: int, height: int) -> bytes:
    """A valid 8x8 gray JPEG whose frame header is rewritten to declare width x height px (the scan then ends
    long before such a frame would be filled: a decoder allocates the frame first, and learns that later)."""
    import cv2
    ok, jpg = cv2.imencode(".jpg", np.full((8, 8), 128, np.uint8))
    data = bytearray(jpg.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_of_zeros(width: int, height: int, rows: int | None = None) -> bytes:
    """An 8-bit gray PNG of width x height black pixels; with `rows`, only the first `rows` rows are in the data
    (the header still declares all of them). Zeros compress about 1000:1: 30000x30000 px is 875 kB."""
    squeeze = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    parts = [squeeze.compress(row) for _ in range(height if rows is None else rows)]
    parts.append(squeeze.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(parts))
            + png_chunk(b"IEND", b""))


@dataclass(frozen=True)
class BadImage:
    """One malformed message: a raw Image (`fields`: height, width, encoding, is_bigendian, step, data) or, with
    `compressed_format` set, a CompressedImage of `data`; `cause`: what the decoder calls it."""

    name: str
    cause: str
    fields: tuple = ()
    compressed_format: str | None = None
    data: bytes = b""


def bad_images(real_jpeg: bytes) -> list[BadImage]:
    """A set of broken messages of every kind, `real_jpeg` (a real frame's JPEG) supplying the damaged ones. The
    first of each cause is the one whose warning says most (the PNG's carries libpng's own words)."""
    cut = real_jpeg[:len(real_jpeg) // 2]
    corrupt_png = bytearray(png_of_zeros(64, 64))
    corrupt_png[41:45] = b"\x00\x00\x00\x00"  # the zlib header of the image data
    return [
        BadImage("step shorter than a row", "bad size", (480, 640, "rgb8", 0, 100, bytes(480 * 100))),
        BadImage("data shorter than its size", "bad data", (480, 640, "rgb8", 0, 1920, bytes(1000))),
        BadImage("unknown encoding", "unsupported encoding", (480, 640, "rgb9", 0, 1920, bytes(480 * 1920))),
        BadImage("zero size", "bad size", (0, 0, "rgb8", 0, 0, b"")),
        BadImage("4 GB step for one byte", "bad size", (1, 1, "mono8", 0, 4294967295, b"\x01")),
        BadImage("40000x40000 declared", "too large", (40000, 40000, "mono8", 0, 40000, b"\x00")),
        BadImage("JPEG declaring 30000x30000", "too large", compressed_format="jpeg",
                 data=jpeg_declaring(30000, 30000)),
        BadImage("PNG of 30000x30000 zeros", "too large", compressed_format="png", data=png_of_zeros(30000, 30000)),
        BadImage("PNG with broken data", "corrupt", compressed_format="png", data=bytes(corrupt_png)),
        BadImage("JPEG cut in half", "corrupt", compressed_format="jpeg", data=cut),
        BadImage("not an image", "unsupported format", compressed_format="jpeg", data=b"GIF89a" + bytes(100)),
        BadImage("empty", "no data", compressed_format="jpeg", data=b""),
    ]


def to_message(bad: BadImage):
    """The rclpy sensor_msgs message of `bad` (Image or CompressedImage), header left empty."""
    from sensor_msgs.msg import CompressedImage, Image
    if bad.compressed_format is not None:
        msg = CompressedImage(format=bad.compressed_format)
        msg.data = bad.data
        return msg
    height, width, encoding, bigendian, step, data = bad.fields
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=bigendian, step=step)
    msg.data = data
    return msg
