"""Rosbag2 bags of camera images without a ROS install (through the `rosbags` library): write them, read them.

Writing: `write_image_bag(path, frames, ...)` stores frames as sensor_msgs/Image or CompressedImage (fer-make-bag,
in make_bag.py, makes bags from videos, image folders and CK+ sequences with it).

Reading: `ImageBagReader(path, topic)` yields decoded frames of one image topic (Image or CompressedImage, decoded by
`image_codec`, the node's decoder). A malformed bag never raises mid-way: undecodable messages are skipped with a
rate-limited warning and counted; a truncated storage file ends the iteration with what could be read, and the
reader's `stats` say what happened. The MCAP files of a bag that rosbags cannot open (no metadata.yaml, a file
without a valid end) are read up to their cuts and chained in time order (mcap_salvage.py).
Images declaring more than `max_pixels` pixels are skipped before they are decoded, and counted apart.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from fer_ros.image_codec import (DEFAULT_MAX_PIXELS, ImageDecodeError, compressed_msg_to_rgb8, encode_rgb8,
                                 image_msg_to_rgb8)
from fer_ros.ratelimit import LOGGER_NAME, RateLimiter
from fer_ros.tools.mcap_salvage import SalvagedMcap

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
STORAGES = ("sqlite3", "mcap")
DEFAULT_TOPIC = "/camera/image_raw"
# names of a rosbag2 bag's storage files (with sqlite3's side files), beside its metadata.yaml
BAG_FILE_SUFFIXES = (".mcap", ".mcap.zstd", ".db3", ".db3.zstd", ".db3-wal", ".db3-shm", ".db3-journal")
WARN_PERIOD_S = 5.0

log = logging.getLogger(LOGGER_NAME)


class BagError(RuntimeError):
    """A bag that cannot be written or read at all; the message says what was wrong and what to do."""


@lru_cache(maxsize=1)
def typestore():
    """The rosbags type store of ROS 2 Jazzy, with fer_msgs registered when its .msg files can be found."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_JAZZY)
    msg_dir = fer_msgs_dir()
    if msg_dir is not None:
        types: dict = {}
        for name in ("FaceEmotion", "FaceEmotionArray"):
            types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"fer_msgs/msg/{name}"))
        store.register(types)
    return store


def topic_name_problem(topic: str) -> str | None:
    """Why `topic` is not a full ROS topic name as a bag holds it, or None: absolute, at most 247 characters, parts
    between single slashes of letters, digits and _, none starting with a digit (rcl's rule for a full name)."""
    if not topic.startswith("/"):
        return "it must be absolute, starting with /" if topic else "it must not be empty"
    if len(topic) > 247:
        return "it must be at most 247 characters long"
    if not re.fullmatch(r"(/[A-Za-z_][A-Za-z0-9_]*)+", topic):
        return ("each part between slashes must be letters, digits and _, not start with a digit, and not be empty "
                "(no // and no / at the end)")
    return None


def fer_msgs_dir() -> Path | None:
    """The folder holding fer_msgs' .msg files: the install space (ament index), else the source tree."""
    from fer_ros.resources import first_existing, shipped_candidates
    return first_existing(shipped_candidates("fer_msgs", "msg"), "FaceEmotionArray.msg")


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------
@dataclass
class BagWriteInfo:
    """What `write_image_bag` wrote: path, storage, topic and type, frame count, stamps (ns) of the frames."""

    path: Path
    storage: str
    topic: str
    msgtype: str
    frames: int
    size_px: tuple[int, int] | None  # (width, height) of the first frame
    stamps_ns: list[int] = field(default_factory=list)


def _storage_plugin(storage: str):
    from rosbags.rosbag2 import StoragePlugin
    if storage not in STORAGES:
        raise BagError(f"unknown bag storage {storage!r}; use one of {', '.join(STORAGES)}")
    return StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP


def is_bag_file(path: Path) -> bool:
    """Whether `path` is named like one of a rosbag2 bag's own files (metadata.yaml, storage files)."""
    return path.name == "metadata.yaml" or path.name.endswith(BAG_FILE_SUFFIXES)


def not_only_a_bag(path: Path) -> str | None:
    """Why the existing `path` is not a folder holding only a bag's own files (or nothing), as "<path> exists and
    ..."; None when it is: what may be replaced by a new bag."""
    if path.is_symlink() or not path.is_dir():
        return f"{path} exists and is not a bag folder"
    others = sorted(p.name for p in path.iterdir() if p.is_dir() or not is_bag_file(p))
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        return f"{path} exists and holds more than a bag ({shown})"
    return None


def open_writer(path: Path, storage: str, overwrite: bool):
    """An open writer (add_connection, write) of a new bag at `path` (a bag is a folder), written beside it and
    moved there by `close()`, or removed by `discard()` (bag_output.StagedWriter): an existing output stays as it
    was until the new bag is complete. Refuses, before creating anything, to replace an existing one unless
    `overwrite`, to replace a path that is not a bag (a file, a folder holding other files), and a sqlite3 path
    that sqlite cannot open (holding # ? or %); a writer that cannot be opened is a BagError too."""
    from fer_ros.tools.bag_output import StagedWriter
    return StagedWriter(Path(path), storage, _storage_plugin(storage), overwrite)


def image_message(rgb8: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "bgr8",
                  compressed: str | None = None):
    """A rosbags sensor_msgs Image (in `encoding`) or, with `compressed` = "jpeg"/"png", CompressedImage."""
    store = typestore()
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    header = Header(stamp=Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)),
                    frame_id=frame_id)
    if compressed:
        ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(compressed)
        if ext is None:
            raise BagError(f"unknown compression {compressed!r}; use jpeg or png")
        ok, buf = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(rgb8), cv2.COLOR_RGB2BGR))
        if not ok:
            raise BagError(f"OpenCV could not encode a {rgb8.shape} frame as {compressed}")
        fmt = "jpeg" if ext == ".jpg" else "png"
        return store.types[COMPRESSED_TYPE](header=header, format=f"bgr8; {fmt} compressed bgr8",
                                            data=np.frombuffer(buf.tobytes(), np.uint8))
    try:
        raw = encode_rgb8(rgb8, encoding)
    except ImageDecodeError as exc:
        raise BagError(str(exc)) from None
    return store.types[IMAGE_TYPE](header=header, height=raw.height, width=raw.width, encoding=raw.encoding,
                                   is_bigendian=raw.is_bigendian, step=raw.step,
                                   data=np.frombuffer(raw.data, np.uint8))


def write_image_bag(path: str | Path, frames: Iterable[np.ndarray], *, rate_hz: float = 30.0,
                    topic: str = DEFAULT_TOPIC, storage: str = "sqlite3", encoding: str = "bgr8",
                    compressed: str | None = None, frame_id: str = "camera", start_time_s: float = 1_700_000_000.0,
                    overwrite: bool = False, progress: bool = False, total: int | None = None,
                    require_frames: bool = False) -> BagWriteInfo:
    """Write RGB8 frames as one image topic at `rate_hz` (stamps start_time_s + i / rate_hz, header = bag time).

    With `compressed` ("jpeg" or "png") the messages are CompressedImage and the topic gets a "/compressed" suffix
    unless it already has one. Raises BagError for a bad rate, storage, encoding or existing output, a frame the
    storage cannot take, and with `require_frames` when `frames` gives none (else that is a bag of no message); the
    bag is moved to `path` only once all frames are written,
    so when writing fails an existing output is left as it was (open_writer)."""
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise BagError(f"rate must be a positive number of frames per second, got {rate_hz}")
    if compressed and not topic.endswith("/compressed"):
        topic = topic.rstrip("/") + "/compressed"
    msgtype = COMPRESSED_TYPE if compressed else IMAGE_TYPE
    store = typestore()
    path = Path(path)
    writer = open_writer(path, storage, overwrite)
    info = BagWriteInfo(path, storage, topic, msgtype, 0, None)
    try:
        conn = writer.add_connection(topic, msgtype, typestore=store)
        start_ns = int(round(start_time_s * 1e9))
        period_ns = 1e9 / rate_hz
        iterator: Iterable[np.ndarray] = frames
        if progress:
            from tqdm import tqdm
            iterator = tqdm(frames, total=total, unit="frame", desc=f"writing {path.name}")
        for i, rgb in enumerate(iterator):
            stamp_ns = start_ns + int(round(i * period_ns))
            data = store.serialize_cdr(image_message(rgb, stamp_ns, frame_id, encoding, compressed), msgtype)
            try:
                writer.write(conn, stamp_ns, data)
            except Exception as exc:  # the storage's own errors (sqlite's size limit, a full disk)
                from fer_ros.tools.bag_output import write_failure
                raise BagError(write_failure(path, storage, i, rgb.shape, len(data), exc)) from None
            info.frames += 1
            info.stamps_ns.append(stamp_ns)
            if info.size_px is None:
                info.size_px = (int(rgb.shape[1]), int(rgb.shape[0]))
        if require_frames and not info.frames:
            raise BagError(f"no frames to write: no bag written to {path}"
                           + (" (the bag there is kept)" if writer.replaces else ""))
    except BaseException:
        writer.discard()
        raise
    writer.close()
    return info


# --------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------
@dataclass
class BagFrame:
    """One decoded image of the topic: its index among the topic's messages (skipped ones included), its stamp
    (header stamp, or the bag's receive time when the header stamp is zero) in ns (exact) and s, the bag time (ns),
    the frame, and its header as the message holds it: frame_id and `header_stamp` (sec, nanosec), zero included
    (None: the header stamp is `stamp_ns`)."""

    index: int
    stamp_ns: int
    bag_time_ns: int
    rgb8: np.ndarray
    frame_id: str
    msgtype: str
    header_stamp: tuple[int, int] | None = None

    @property
    def stamp_s(self) -> float:
        return self.stamp_ns * 1e-9


@dataclass
class ReadStats:
    """What reading a topic found: messages seen, frames decoded, skipped messages by reason, read errors."""

    messages: int = 0
    decoded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: str | None = None  # why reading stopped early (storage error), None when it read to the end

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def summary(self) -> str:
        parts = [f"{self.messages} messages on the topic, {self.decoded} frames decoded"]
        if self.skipped:
            parts.append("skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())))
        if self.truncated:
            parts.append(f"stopped early: {self.truncated}")
        return "; ".join(parts)


def open_bag(path: str | Path, warn_salvaged: bool = True):
    """An open rosbags Reader of the bag at `path` (its folder, its metadata.yaml, or a single .mcap file).

    When rosbags cannot open it (no metadata.yaml: a recorder that was killed; an MCAP file without a valid end),
    the readable part of its MCAP files chained in time order: a SalvagedMcap, with one warning saying what was
    salvaged unless `warn_salvaged` is False (for a bag that was said to be damaged when it was opened before).
    Raises BagError saying what is wrong and what to do when it cannot be read at all."""
    from rosbags.rosbag2 import Reader
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    if path.is_file() and path.name == "metadata.yaml":
        path = path.parent
    if path.is_file() and path.suffix != ".mcap":
        raise BagError(f"{path} is a file; pass the bag folder (the one holding metadata.yaml) or an .mcap file")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        return _salvage(path, "it has no metadata.yaml", warn_salvaged)
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several types for broken storage files
        return _salvage(path, f"{type(exc).__name__}: {exc}", warn_salvaged)
    return reader


def _salvage(path: Path, why: str, warn: bool) -> SalvagedMcap:
    """The readable part of the MCAP files of the bag at `path` (a folder or one .mcap file) that rosbags could not
    open for `why`; BagError when there is none."""
    info = _bag_metadata(path) if path.is_dir() else {}
    files = [path] if path.is_file() else mcap_files(path, info)
    folder = path.parent if path.is_file() else path
    if not files:
        raise BagError(_unsalvageable(path, folder, why))
    try:
        salvaged = SalvagedMcap(files, _metadata_digests(info))
    except ValueError as exc:
        raise BagError(f"bag {path} cannot be opened ({why}) and none of its MCAP files can be read ({exc}); "
                       f"run `ros2 bag reindex {folder} -s mcap`, or check that it is a rosbag2 bag") from None
    if warn:
        log.warning(f"bag {path} cannot be opened normally ({why}); {salvaged.report()}")
    return salvaged


def _unsalvageable(path: Path, folder: Path, why: str) -> str:
    """What to say of a bag that rosbags cannot open for `why` and that has no MCAP file to salvage."""
    if any(folder.glob("*.db3")):
        return (f"bag {path} cannot be opened ({why}); the file may be truncated or not a rosbag2 bag; if its "
                f"recorder was killed, run `ros2 bag reindex {folder} -s sqlite3` to rebuild its metadata.yaml")
    if not (folder / "metadata.yaml").is_file():
        return f"{path} is not a rosbag2 bag: it has no metadata.yaml and no .mcap or .db3 file"
    return f"bag {path} cannot be opened ({why}); the file may be truncated or not a rosbag2 bag"


def _bag_metadata(folder: Path) -> dict:
    """The rosbag2_bagfile_information of the folder's metadata.yaml; {} when it is missing or unreadable."""
    import yaml
    try:
        info = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except Exception:  # missing, unreadable or not a rosbag2 metadata file: the files are found by name
        return {}
    return info if isinstance(info, dict) else {}


def mcap_files(folder: Path, info: dict | None = None) -> list[Path]:
    """The .mcap files of a bag folder: those metadata `info` lists, in its order, then the others by name (numbers
    in names compared as numbers: bag_2 before bag_10)."""
    import re
    listed = [str(p) for p in (info or {}).get("relative_file_paths") or [] if isinstance(p, str)]
    order = {Path(p).name: i for i, p in enumerate(listed)}

    def key(p: Path):
        natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", p.name)]
        return (order.get(p.name, len(order)), natural)
    return sorted((p for p in folder.glob("*.mcap") if p.is_file()), key=key)


def _metadata_digests(info: dict) -> dict[tuple[str, str], str]:
    """{(topic, type): type_description_hash} of the topics metadata `info` lists."""
    digests = {}
    for entry in info.get("topics_with_message_count") or []:
        meta = entry.get("topic_metadata", {}) if isinstance(entry, dict) else {}
        if meta.get("type_description_hash"):
            digests[(meta.get("name", ""), meta.get("type", ""))] = str(meta["type_description_hash"])
    return digests


def bag_storage(bag: Path) -> str:
    """"mcap" or "sqlite3": the storage of an existing bag (its folder, its metadata.yaml or one storage file)."""
    bag = Path(bag)
    if bag.name == "metadata.yaml":
        bag = bag.parent
    if bag.is_file():
        return "mcap" if bag.suffix == ".mcap" else "sqlite3"
    return "mcap" if any(bag.glob("*.mcap")) else "sqlite3"


def list_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """{topic: (message type, message count)} of a bag."""
    reader = open_bag(Path(path))
    try:
        return {t: (info.msgtype or "", int(info.msgcount)) for t, info in reader.topics.items()}
    finally:
        reader.close()


class ImageBagReader:
    """Reads one image topic of a bag as decoded RGB8 frames. Use as a context manager.

    `topic` None picks the only image topic (Image or CompressedImage) of the bag. Raises BagError when the bag
    cannot be opened, the topic does not exist (the message lists the image topics there are) or carries no image
    type. Iteration never raises for bad messages: see `stats`. `max_pixels`: images declaring more pixels are
    skipped undecoded. `warn_salvaged`: as for open_bag."""

    def __init__(self, path: str | Path, topic: str | None = None, limiter: RateLimiter | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, warn_salvaged: bool = True) -> None:
        self.path = Path(path)
        self.max_pixels = int(max_pixels)
        self._reader = open_bag(self.path, warn_salvaged)
        self.stats = ReadStats()
        if isinstance(self._reader, SalvagedMcap) and self._reader.problem:
            self.stats.truncated = (f"the MCAP file has no valid end ({self._reader.problem}); "
                                    "read the messages before it")
        self._limiter = limiter or RateLimiter(WARN_PERIOD_S)
        topics = {t: (info.msgtype or "", int(info.msgcount)) for t, info in self._reader.topics.items()}
        image_topics = sorted(t for t, (typ, _) in topics.items() if typ in IMAGE_TYPES)
        if topic is None:
            if not image_topics:
                self.close()
                listing = ", ".join(f"{t} ({typ})" for t, (typ, _) in sorted(topics.items()))
                damage = f" ({self.stats.truncated})" if self.stats.truncated else ""
                raise BagError(f"bag {self.path} holds no image topic: "
                               + (f"its topics are {listing}" if listing else f"no readable topic at all{damage}")
                               + "; record the camera's sensor_msgs/Image or CompressedImage topic")
            if len(image_topics) > 1:
                self.close()
                raise BagError(f"bag {self.path}: choose the image topic with --topic (image topics: "
                               f"{', '.join(image_topics)})")
            topic = image_topics[0]
        self.topic = topic
        conns = [c for c in self._reader.connections if c.topic == topic]
        if not conns:
            self.close()
            listing = ", ".join(f"{t} ({typ})" for t, (typ, _) in sorted(topics.items())) or "none"
            raise BagError(f"bag {self.path} has no topic {topic}; its topics: {listing}")
        if not any(c.msgtype in IMAGE_TYPES for c in conns):
            self.close()
            types = ", ".join(sorted({c.msgtype for c in conns}))
            raise BagError(f"topic {topic} of bag {self.path} carries {types}, not sensor_msgs/msg/Image or "
                           "CompressedImage; choose an image topic with --topic")
        self.connections = conns
        self.message_count = topics[topic][1]

    def __enter__(self) -> "ImageBagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # closing a broken bag must not hide the real problem
                pass
            self._reader = None

    def _warn(self, reason: str, message: str) -> None:
        self.stats.skip(reason)
        self._limiter.warning(reason, message)

    def _decoder_warning(self, index: int):
        def say(text: str) -> None:
            self._limiter.warning("decoder warnings", f"{self.topic}: message {index}: {text}")
        return say

    def raw_messages(self) -> Iterator[tuple[int, Any, int, bytes]]:
        """(index on the topic, connection, bag time ns, raw CDR) of every message; stops at a storage error
        (recorded in stats.truncated)."""
        it = self._reader.messages(connections=self.connections)
        index = 0
        while True:
            try:
                conn, timestamp, raw = next(it)
            except StopIteration:
                return
            except Exception as exc:  # truncated or corrupt storage
                self.stats.truncated = f"{type(exc).__name__}: {exc}"
                log.warning(f"bag {self.path}: reading stopped after {index} messages of {self.topic}: "
                            f"{self.stats.truncated} (the file may be truncated); results so far are kept")
                return
            self.stats.messages += 1
            yield index, conn, int(timestamp), raw
            index += 1

    def frames(self) -> Iterator[BagFrame]:
        """Decoded frames, in bag order; bad messages are skipped and counted (stats.skipped)."""
        store = typestore()
        for index, conn, timestamp, raw in self.raw_messages():
            if conn.msgtype not in IMAGE_TYPES:
                self._warn("non-image messages",
                           f"{self.topic}: message {index} is a {conn.msgtype}, not an image; skipped")
                continue
            try:
                msg = store.deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:  # malformed CDR raises assorted errors inside rosbags
                self._warn("undeserializable messages",
                           f"{self.topic}: message {index} cannot be deserialized as {conn.msgtype} "
                           f"({type(exc).__name__}: {exc}); skipped")
                continue
            try:
                if conn.msgtype == COMPRESSED_TYPE:
                    rgb = compressed_msg_to_rgb8(msg, self.max_pixels, self._decoder_warning(index))
                else:
                    rgb = image_msg_to_rgb8(msg, self.max_pixels)
            except ImageDecodeError as exc:
                reason = "images over the pixel limit" if exc.cause == "too large" else "undecodable images"
                self._warn(reason, f"{self.topic}: message {index} skipped: {exc}")
                continue
            stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
            stamp_ns = stamp[0] * 1_000_000_000 + stamp[1]
            if stamp_ns == 0:
                stamp_ns = timestamp
            self.stats.decoded += 1
            yield BagFrame(index, stamp_ns, timestamp, rgb, msg.header.frame_id, conn.msgtype, stamp)
