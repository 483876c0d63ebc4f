"""Rosbag2 bags of camera images without a ROS install (through the `rosbags` library): make them, read them.

Making (CLI `fer-make-bag`, also `ros2 run fer_ros make_bag`):

    fer-make-bag video clip.mp4 out_bag --rate-hz 30                  # sensor_msgs/Image, bgr8, sqlite3
    fer-make-bag folder frames/ out_bag --rate-hz 10 --storage mcap    # images sorted by name
    fer-make-bag video clip.mp4 out_bag --compressed jpeg              # sensor_msgs/CompressedImage
    fer-make-bag ckplus CK+/cohn-kanade-images/S005/001 out_bag        # one CK+ sequence + out_bag.labels.csv

Reading: `ImageBagReader(path, topic)` yields decoded frames of one image topic (Image or CompressedImage, decoded by
`image_codec`, the node's decoder). A malformed bag never raises mid-way: undecodable messages are skipped with a
rate-limited warning and counted; a truncated storage file ends the iteration with what could be read, and the
reader's `stats` say what happened.
"""
from __future__ import annotations

import argparse
import logging
import math
import re
import shutil
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from fer_ros.classes import NEUTRAL
from fer_ros.image_codec import ImageDecodeError, compressed_msg_to_rgb8, encode_rgb8, image_msg_to_rgb8
from fer_ros.ratelimit import LOGGER_NAME, RateLimiter
from fer_ros.tools.labels import LabelRange, LabelSet, save_labels
from fer_ros.training.data.datasets import CKPLUS_CODES, FRAME_NAME

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
STORAGES = ("sqlite3", "mcap")
DEFAULT_TOPIC = "/camera/image_raw"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
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


def open_writer(path: Path, storage: str, overwrite: bool):
    """An open rosbags Writer at `path` (a bag is a folder); refuses to replace an existing one unless `overwrite`."""
    from rosbags.rosbag2 import Writer
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise BagError(f"{path} already exists; choose another output or pass --overwrite")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = Writer(path, version=9, storage_plugin=_storage_plugin(storage))
    writer.open()
    return writer


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
                    overwrite: bool = False, progress: bool = False, total: int | None = None) -> BagWriteInfo:
    """Write RGB8 frames as one image topic at `rate_hz` (stamps start_time_s + i / rate_hz, header = bag time).

    With `compressed` ("jpeg" or "png") the messages are CompressedImage and the topic gets a "/compressed" suffix
    unless it already has one. Raises BagError for a bad rate, storage, encoding or existing output."""
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
            msg = image_message(rgb, stamp_ns, frame_id, encoding, compressed)
            writer.write(conn, stamp_ns, store.serialize_cdr(msg, msgtype))
            info.frames += 1
            info.stamps_ns.append(stamp_ns)
            if info.size_px is None:
                info.size_px = (int(rgb.shape[1]), int(rgb.shape[0]))
    finally:
        writer.close()
    return info


# --------------------------------------------------------------------------------------------------------------
# Frame sources
# --------------------------------------------------------------------------------------------------------------
def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def image_files(folder: str | Path) -> list[Path]:
    """Image files directly in `folder`, in natural name order (frame2 before frame10)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BagError(f"{folder} is not a folder of images")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=_natural_key)
    if not files:
        raise BagError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def resize_frame(rgb8: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The frame scaled by `scale` (area interpolation down, cubic up); 1 returns it unchanged."""
    if scale == 1.0:
        return rgb8
    h, w = rgb8.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(rgb8, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def read_image_file(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (gray and 16-bit images converted); BagError if unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise BagError(f"{path} is not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def folder_frames(files: Sequence[Path], scale: float = 1.0) -> Iterator[np.ndarray]:
    """RGB8 frames of image files; unreadable files are skipped with a rate-limited warning."""
    limiter = RateLimiter(WARN_PERIOD_S)
    for f in files:
        try:
            yield resize_frame(read_image_file(f), scale)
        except BagError as exc:
            limiter.warning("unreadable", f"skipped: {exc}")


@dataclass
class VideoInfo:
    """Frame count and rate OpenCV reports for a video file (count may be 0 when unknown)."""

    frames: int
    fps: float
    size_px: tuple[int, int]


def video_info(path: str | Path) -> VideoInfo:
    path = Path(path)
    if not path.is_file():
        raise BagError(f"video file {path} does not exist")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise BagError(f"OpenCV cannot open {path} as a video")
        return VideoInfo(max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))), float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                         (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))))
    finally:
        cap.release()


def video_frames(path: str | Path, scale: float = 1.0, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB8 frames of a video file decoded by OpenCV, optionally scaled, at most `max_frames`."""
    video_info(path)  # clear error for a missing or unreadable file
    cap = cv2.VideoCapture(str(path))
    try:
        n = 0
        while max_frames is None or n < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            n += 1
            yield resize_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), scale)
    finally:
        cap.release()


# --------------------------------------------------------------------------------------------------------------
# CK+ sequences
# --------------------------------------------------------------------------------------------------------------
@dataclass
class CkSequence:
    """One CK+ sequence: frame files from neutral onset to peak, its emotion label (None when unlabelled)."""

    subject: str
    sequence: str
    files: list[Path]
    label: str | None


def ckplus_code_to_label(code: float) -> str:
    """CK+ Emotion file code (0 neutral, 1 anger ... 7 surprise: data.datasets.CKPLUS_CODES) -> class name."""
    c = int(round(float(code)))
    if c == 0:
        return NEUTRAL
    if c in CKPLUS_CODES:
        return CKPLUS_CODES[c]
    raise BagError(f"CK+ emotion code {code} is not 0..7")


def find_ckplus_sequence(seq_dir: str | Path, sequence: str | None = None) -> CkSequence:
    """A CK+ sequence from either layout:

    - the official release: `seq_dir` = .../cohn-kanade-images/S005/001 (frames S005_001_<n>.png); the label is
      read from .../Emotion/S005/001/S005_001_*_emotion.txt when present;
    - class folders: `seq_dir` = the root holding <class>/S<subject>_<sequence>_<frame>.png and `sequence` =
      "S011_006": the frames of that sequence in all class folders, label = the non-neutral folder they are in.
    """
    seq_dir = Path(seq_dir)
    if not seq_dir.is_dir():
        raise BagError(f"{seq_dir} is not a folder")
    if sequence is not None:
        m = re.fullmatch(r"S?(\d+)_(\d+)", sequence)
        if not m:
            raise BagError(f"sequence {sequence!r} is not S<subject>_<sequence>, e.g. S011_006")
        subject, seq = m.group(1), m.group(2)
        files, labels = [], set()
        for cls_dir in sorted(p for p in seq_dir.iterdir() if p.is_dir()):
            for f in cls_dir.glob(f"S{subject}_{seq}_*"):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                    if cls_dir.name != NEUTRAL:
                        labels.add(cls_dir.name)
        if not files:
            raise BagError(f"no frames of S{subject}_{seq} in the class folders under {seq_dir}")
        if len(labels) > 1:
            raise BagError(f"S{subject}_{seq} appears under several classes: {', '.join(sorted(labels))}")
        files.sort(key=lambda p: int(FRAME_NAME.match(p.stem).group(3)) if FRAME_NAME.match(p.stem) else 0)
        return CkSequence(f"S{subject}", seq, files, labels.pop() if labels else None)
    files = image_files(seq_dir)
    label = None
    subject, seq = seq_dir.parent.name, seq_dir.name
    emotion_dir = seq_dir.parent.parent.parent / "Emotion" / subject / seq
    emotion_files = sorted(emotion_dir.glob("*_emotion.txt")) if emotion_dir.is_dir() else []
    if emotion_files:
        text = emotion_files[-1].read_text().strip()
        try:
            label = ckplus_code_to_label(float(text.split()[0]))
        except (ValueError, IndexError):
            raise BagError(f"{emotion_files[-1]} does not hold a CK+ emotion code") from None
    return CkSequence(subject, seq, files, label)


def ckplus_labels(n_frames: int, label: str | None, neutral_frames: int = 1, peak_frames: int = 3) -> LabelSet:
    """Frame-range labels of a CK+ sequence of `n_frames`: the first `neutral_frames` neutral, the last
    `peak_frames` the sequence's label (frames in between are left unlabelled: the expression is building up)."""
    ranges = []
    n_neutral = min(neutral_frames, n_frames)
    if n_neutral > 0:
        ranges.append(LabelRange(0, n_neutral, NEUTRAL))
    if label is not None and label != NEUTRAL and peak_frames > 0:
        start = max(n_neutral, n_frames - peak_frames)
        if start < n_frames:
            ranges.append(LabelRange(start, n_frames, label))
    return LabelSet("frame", ranges)


def labels_path_for(bag_path: Path) -> Path:
    """Where the bag maker puts the label file of a bag: beside it, named <bag>.labels.csv."""
    bag_path = Path(bag_path)
    return bag_path.with_name(bag_path.name + ".labels.csv")


# --------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------
@dataclass
class BagFrame:
    """One decoded image of the topic: its index among the topic's messages (skipped ones included), its stamp
    (header stamp, or the bag's receive time when the header stamp is zero) in ns (exact) and s, the bag time (ns)
    and the frame."""

    index: int
    stamp_ns: int
    bag_time_ns: int
    rgb8: np.ndarray
    frame_id: str
    msgtype: str

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


_MCAP_MAGIC = b"\x89MCAP0\r\n"


@dataclass
class _SalvagedConnection:
    id: int
    topic: str
    msgtype: str


@dataclass
class _SalvagedTopic:
    msgtype: str
    msgcount: int


def _mcap_decompress(data: bytes, compression: str) -> bytes:
    if compression == "":
        return data
    if compression == "lz4":
        from lz4.frame import decompress
        return decompress(data)
    if compression == "zstd":
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            from backports import zstd
        return zstd.decompress(data)
    raise ValueError(f"unsupported chunk compression {compression!r}")


class SalvagedMcap:
    """Reads what is readable of an MCAP file that has no valid end (a recorder that was killed, a truncated copy):
    scans records from the start and stops at the first incomplete one. Offers the subset of the rosbags Reader
    interface that ImageBagReader uses (topics, connections, messages(), close())."""

    def __init__(self, path: Path) -> None:
        import mmap
        with open(path, "rb") as fh:
            try:
                data: Any = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                data = b""
        if data[:len(_MCAP_MAGIC)] != _MCAP_MAGIC:
            raise BagError(f"{path} does not start like an MCAP file")
        self.problem: str | None = None
        schemas: dict[int, str] = {}
        self.connections: list[_SalvagedConnection] = []
        # (channel id, log time ns, buffer, start, end): message data stays in the mapped file or its chunk
        self._messages: list[tuple[int, int, Any, int, int]] = []
        self._scan(data, len(_MCAP_MAGIC), len(data), schemas, top_level=True)
        self.topics: dict[str, _SalvagedTopic] = {}
        counts: dict[int, int] = {}
        for cid, *_ in self._messages:
            counts[cid] = counts.get(cid, 0) + 1
        for c in self.connections:
            t = self.topics.setdefault(c.topic, _SalvagedTopic(c.msgtype, 0))
            t.msgcount += counts.get(c.id, 0)

    def _scan(self, data: bytes, pos: int, end: int, schemas: dict[int, str], top_level: bool) -> None:
        import struct
        while pos < end:
            if pos + 9 > end:
                self.problem = f"incomplete record header at byte {pos}"
                return
            opcode, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
            body_start, body_end = pos + 9, pos + 9 + length
            if body_end > end:
                self.problem = f"record at byte {pos} is cut off (needs {length} B, {end - body_start} B left)"
                if opcode == 0x06 and top_level:  # an uncompressed chunk still holds whole records up to the cut
                    self._scan_cut_chunk(data[body_start:end], schemas)
                return
            body = data[body_start:body_end] if opcode != 0x05 else b""
            try:
                if opcode == 0x03:  # Schema: id u16, name str, encoding str, data bytes
                    sid = struct.unpack_from("<H", body, 0)[0]
                    n = struct.unpack_from("<I", body, 2)[0]
                    schemas[sid] = body[6:6 + n].decode()
                elif opcode == 0x04:  # Channel: id u16, schema id u16, topic str, encoding str, metadata
                    cid, sid = struct.unpack_from("<HH", body, 0)
                    n = struct.unpack_from("<I", body, 4)[0]
                    topic = body[8:8 + n].decode()
                    self.connections.append(_SalvagedConnection(cid, topic, schemas.get(sid, "")))
                elif opcode == 0x05:  # Message: channel u16, sequence u32, log time u64, publish time u64, data
                    if length < 22:
                        raise ValueError("message record too short")
                    cid = struct.unpack_from("<H", data, body_start)[0]
                    log_time = struct.unpack_from("<Q", data, body_start + 6)[0]
                    self._messages.append((cid, log_time, data, body_start + 22, body_end))
                elif opcode == 0x06 and top_level:  # Chunk: times, sizes, crc, compression str, records
                    n = struct.unpack_from("<I", body, 28)[0]
                    compression = body[32:32 + n].decode()
                    size = struct.unpack_from("<Q", body, 32 + n)[0]
                    records = _mcap_decompress(body[40 + n:40 + n + size], compression)
                    self._scan(records, 0, len(records), schemas, top_level=False)
                elif opcode in (0x02, 0x0F) and top_level:  # Footer or DataEnd: the data section is over
                    return
            except (struct.error, UnicodeDecodeError, ValueError, RuntimeError) as exc:
                self.problem = f"record at byte {pos} is corrupt ({exc})"
                return
            pos = body_end

    def _scan_cut_chunk(self, body: bytes, schemas: dict[int, str]) -> None:
        import struct
        if len(body) < 32:
            return
        n = struct.unpack_from("<I", body, 28)[0]
        if len(body) < 40 + n or body[32:32 + n] != b"":
            return  # compressed chunks cannot be read in part
        problem = self.problem
        self._scan(body, 40 + n, len(body), schemas, top_level=False)
        self.problem = problem

    def messages(self, connections: Sequence[Any] = ()) -> Iterator[tuple[Any, int, bytes]]:
        wanted = {c.id: c for c in connections} if connections else {c.id: c for c in self.connections}
        for cid, log_time, buf, start, end in self._messages:
            if cid in wanted:
                yield wanted[cid], log_time, bytes(buf[start:end])

    def close(self) -> None:
        self._messages = []


def open_bag(path: str | Path):
    """An open rosbags Reader of the bag folder at `path` (or, for an MCAP file without a valid end, a
    SalvagedMcap). Raises BagError saying what is wrong when it cannot be opened."""
    from rosbags.rosbag2 import Reader
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    if path.is_file():
        if path.name == "metadata.yaml":
            path = path.parent
        else:
            raise BagError(f"{path} is a file; pass the bag folder (the one holding metadata.yaml)")
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 bag: it has no metadata.yaml")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several types for broken storage files
        mcaps = sorted(path.glob("*.mcap"))
        if len(mcaps) == 1:
            salvaged = SalvagedMcap(mcaps[0])
            log.warning(f"bag {path} cannot be opened normally ({type(exc).__name__}: {exc}); read what is "
                        f"readable of {mcaps[0].name}: {sum(t.msgcount for t in salvaged.topics.values())} messages"
                        + (f", then {salvaged.problem}" if salvaged.problem else ""))
            return salvaged
        raise BagError(f"bag {path} cannot be opened ({type(exc).__name__}: {exc}); the file may be truncated or "
                       "not a rosbag2 bag") from None
    return reader


def bag_storage(bag: Path) -> str:
    """"mcap" or "sqlite3": the storage of an existing bag folder."""
    return "mcap" if any(Path(bag).glob("*.mcap")) else "sqlite3"


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
    type. Iteration never raises for bad messages: see `stats`."""

    def __init__(self, path: str | Path, topic: str | None = None, limiter: RateLimiter | None = None) -> None:
        self.path = Path(path)
        self._reader = open_bag(self.path)
        self.stats = ReadStats()
        if isinstance(self._reader, SalvagedMcap):
            self.stats.truncated = (f"the MCAP file has no valid end ({self._reader.problem or 'no footer'}); "
                                    "read the messages before it")
        self._limiter = limiter or RateLimiter(WARN_PERIOD_S)
        topics = {t: (info.msgtype or "", int(info.msgcount)) for t, info in self._reader.topics.items()}
        image_topics = sorted(t for t, (typ, _) in topics.items() if typ in IMAGE_TYPES)
        if topic is None:
            if len(image_topics) != 1:
                self.close()
                found = ", ".join(image_topics) if image_topics else "none"
                raise BagError(f"bag {self.path}: choose the image topic with --topic (image topics: {found})")
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
                    rgb = compressed_msg_to_rgb8(msg)
                else:
                    rgb = image_msg_to_rgb8(msg)
            except ImageDecodeError as exc:
                self._warn("undecodable images", f"{self.topic}: message {index} skipped: {exc}")
                continue
            stamp = msg.header.stamp
            stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
            if stamp_ns == 0:
                stamp_ns = timestamp
            self.stats.decoded += 1
            yield BagFrame(index, stamp_ns, timestamp, rgb, msg.header.frame_id, conn.msgtype)


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------
def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-make-bag",
        description="Make a rosbag2 bag (sqlite3 or mcap) of camera images from a video file, an image folder or a "
                    "CK+ sequence (plus its label file). No ROS install needed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("source_kind", choices=("video", "folder", "ckplus"),
                   help="video: a video file OpenCV reads; folder: images sorted by name; ckplus: one CK+ sequence "
                        "folder (official release) or, with --sequence, a class-folder root")
    p.add_argument("source", type=Path, help="the video file or folder")
    p.add_argument("out", type=Path, help="output bag folder")
    p.add_argument("--rate-hz", type=float, default=None,
                   help="frames per second; default: the video's own rate, 30 for folders, 10 for CK+")
    p.add_argument("--topic", default=DEFAULT_TOPIC, help="image topic (\"/compressed\" is appended with --compressed)")
    p.add_argument("--storage", choices=STORAGES, default="sqlite3", help="bag storage format")
    p.add_argument("--encoding", default="bgr8", help="sensor_msgs/Image encoding (rgb8, bgr8, mono8, ...)")
    p.add_argument("--compressed", choices=("jpeg", "png"), default=None,
                   help="write sensor_msgs/CompressedImage in this format instead of raw Image")
    p.add_argument("--frame-id", default="camera", help="header frame_id")
    p.add_argument("--scale", type=float, default=1.0, help="resize frames by this factor (e.g. 3 for tiny clips)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--start-time-s", type=float, default=1_700_000_000.0, help="stamp of the first frame (s)")
    p.add_argument("--sequence", default=None, help="ckplus with class folders: the sequence, e.g. S011_006")
    p.add_argument("--neutral-frames", type=int, default=1, help="ckplus: first frames labelled neutral")
    p.add_argument("--peak-frames", type=int, default=3, help="ckplus: last frames labelled with the emotion")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        if not (args.scale > 0 and math.isfinite(args.scale)):
            raise BagError(f"--scale must be a positive number, got {args.scale}")
        if args.max_frames is not None and args.max_frames < 1:
            raise BagError(f"--max-frames must be >= 1, got {args.max_frames}")
        labels = None
        if args.source_kind == "video":
            vi = video_info(args.source)
            rate = args.rate_hz or (vi.fps if vi.fps > 0 else 30.0)
            total = min(vi.frames, args.max_frames or vi.frames) or None
            frames: Iterable[np.ndarray] = video_frames(args.source, args.scale, args.max_frames)
        elif args.source_kind == "folder":
            files = image_files(args.source)[:args.max_frames]
            rate, total = args.rate_hz or 30.0, len(files)
            frames = folder_frames(files, args.scale)
        else:
            seq = find_ckplus_sequence(args.source, args.sequence)
            files = seq.files[:args.max_frames]
            rate, total = args.rate_hz or 10.0, len(files)
            frames = folder_frames(files, args.scale)
            labels = ckplus_labels(len(files), seq.label, args.neutral_frames, args.peak_frames)
        info = write_image_bag(args.out, frames, rate_hz=rate, topic=args.topic, storage=args.storage,
                               encoding=args.encoding, compressed=args.compressed, frame_id=args.frame_id,
                               start_time_s=args.start_time_s, overwrite=args.overwrite, progress=True, total=total)
        if info.frames == 0:
            raise BagError(f"no frames could be read from {args.source}; the bag {args.out} is empty")
        size = f"{info.size_px[0]}x{info.size_px[1]} px" if info.size_px else "?"
        print(f"wrote {info.frames} frames ({size}, {rate:g} Hz) on {info.topic} [{info.msgtype}] to {info.path} "
              f"({info.storage})")
        if labels is not None:
            if info.frames != len(files):  # unreadable frames were skipped: ranges would not match
                raise BagError(f"{len(files) - info.frames} frames of the sequence could not be read; "
                               "no label file written")
            lp = save_labels(labels_path_for(info.path), labels,
                             comment=f"CK+ sequence {seq.subject}_{seq.sequence}, label {seq.label or 'none'}; "
                                     f"frame ranges of {info.topic} in {info.path.name}")
            print(f"wrote labels to {lp}")
    except BagError as exc:
        print(f"fer-make-bag: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
