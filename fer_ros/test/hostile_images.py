"""Compressed images that lie about their size, for the tests of the decoding limits: a few hundred bytes of JPEG
or PNG whose header declares a frame of gigabytes."""
from __future__ import annotations

import struct
import zlib

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
    (the header still declares all of them). Zeros compress about 1000:1."""
    squeeze = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    parts = [squeeze.compress(row) for _ in range(height if rows is None else rows)]
    parts.append(squeeze.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(parts))
            + png_chunk(b"IEND", b""))
