"""The header stamp of a serialized ROS 2 message, read from its CDR bytes without deserializing the message: for
tools that handle messages they do not decode (a bag player that forwards raw messages, a replay that places an
image it could not decode on its timeline). No rclpy."""
from __future__ import annotations

ENCAPSULATION_BYTES = 4  # the CDR encapsulation header (representation id, options) before the first field


def header_stamp(raw: bytes) -> tuple[int, int] | None:
    """(sec, nanosec) of the std_msgs/Header that a message starts with (sensor_msgs/Image, CompressedImage and
    other stamped messages): its first two fields, right after the encapsulation header, in the byte order that
    header names. None when `raw` is too short to hold them."""
    at = ENCAPSULATION_BYTES
    if len(raw) < at + 8:
        return None
    order = "little" if raw[1] == 1 else "big"
    return (int.from_bytes(raw[at:at + 4], order, signed=True), int.from_bytes(raw[at + 4:at + 8], order))
