"""The width and height a JPEG or PNG declares, read from its header without decoding it.

A compressed image is a promise about its size: a few hundred bytes of JPEG may declare 30000x30000 pixels, and
a decoder allocates what the header says before it finds out that the data is missing. Reading the header first
lets `image_codec` refuse such an image before any pixel memory exists.

The JPEG walk follows libjpeg's own: the file starts with SOI, markers are found past stray bytes and fill bytes,
segments are skipped by their length, and the first frame header (SOFn) before the first scan gives the size.
The PNG size is the IHDR chunk, which the format requires to come first.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

JPEG_MAGIC = b"\xff\xd8\xff"  # SOI and the first byte of the next marker: what OpenCV recognises as JPEG
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SOS, _EOI, _SOI, _TEM = 0xDA, 0xD9, 0xD8, 0x01
_STANDALONE = {_TEM, *range(0xD0, 0xD8)}  # TEM and RST0..7 carry no length
_FILL = re.compile(rb"\xff+")


class HeaderError(ValueError):
    """The data does not start with a JPEG or PNG header that can be read; the message says what is wrong."""


@dataclass(frozen=True)
class ImageHeader:
    """What a header declares: the format ("jpeg" or "png"), width and height in pixels, and for JPEG the
    number of scans in the file (a progressive JPEG decodes each one over the whole image)."""

    format: str
    width: int
    height: int
    scans: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height


def image_format(data: bytes) -> str | None:
    """"jpeg" or "png" by the data's first bytes, None for anything else."""
    if data[:len(JPEG_MAGIC)] == JPEG_MAGIC:
        return "jpeg"
    if data[:len(PNG_MAGIC)] == PNG_MAGIC:
        return "png"
    return None


def read_header(data: bytes) -> ImageHeader:
    """The header of a JPEG or PNG in `data`; HeaderError for other data or a header that cannot be read."""
    fmt = image_format(data)
    if fmt == "jpeg":
        return _jpeg_header(data)
    if fmt == "png":
        return _png_header(data)
    raise HeaderError("not a JPEG or PNG (unknown first bytes)")


def _png_header(data: bytes) -> ImageHeader:
    ihdr = data[len(PNG_MAGIC):len(PNG_MAGIC) + 16]
    if len(ihdr) < 16:
        raise HeaderError(f"PNG of {len(data)} B ends inside its header")
    if ihdr[4:8] != b"IHDR" or int.from_bytes(ihdr[0:4], "big") != 13:
        raise HeaderError("PNG does not start with an IHDR chunk")
    return ImageHeader("png", int.from_bytes(ihdr[8:12], "big"), int.from_bytes(ihdr[12:16], "big"))


def _jpeg_header(data: bytes) -> ImageHeader:
    n = len(data)
    i = 2  # past SOI
    size: tuple[int, int] | None = None
    while True:
        # stray bytes before a marker (libjpeg skips them with a warning), then fill bytes; searched in C, as a
        # damaged image may hold megabytes of either
        i = data.find(b"\xff", i)
        i = n if i < 0 else _FILL.match(data, i).end()
        if i >= n:
            raise HeaderError(f"JPEG of {n} B ends before its frame header")
        marker = data[i]
        i += 1
        if marker == 0x00 or marker in _STANDALONE:  # a stuffed zero or a marker without a segment
            continue
        if marker == _SOI:
            raise HeaderError("JPEG has a second start-of-image marker before its frame header")
        if marker in (_SOS, _EOI):
            raise HeaderError("JPEG has no frame header before its first scan")
        if i + 2 > n:
            raise HeaderError(f"JPEG of {n} B ends inside a marker segment")
        length = int.from_bytes(data[i:i + 2], "big")
        if length < 2:
            raise HeaderError(f"JPEG marker 0x{marker:02X} has a segment length of {length}")
        if marker in _SOF:
            if i + 7 > n or length < 8:
                raise HeaderError(f"JPEG of {n} B ends inside its frame header")
            size = (int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 3:i + 5], "big"))
            break
        i += length
    # Markers cannot occur inside entropy-coded data (0xFF is stuffed there), so SOS markers count the scans.
    return ImageHeader("jpeg", size[0], size[1], scans=max(1, data.count(b"\xff\xda", i)))
