"""The /emotion output bag of fer-replay: a fer_msgs/FaceEmotionArray per replayed frame, with the fields
fer_node fills, written into a copy of the input bag in time order."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fer_ros.ratelimit import LOGGER_NAME
from fer_ros.tools.bagtools import BagError, BagFrame, open_bag, open_writer, typestore
from fer_ros.tools.replay_results import FrameRecord

log = logging.getLogger(LOGGER_NAME)

EMOTION_TYPE = "fer_msgs/msg/FaceEmotionArray"
EMOTION_TOPIC = "/emotion"  # where a fer_node in the root namespace publishes (bags hold absolute topic names)


def emotion_message(record: FrameRecord, class_names: Sequence[str], frame_id: str, points: dict[int, Any],
                    stamp: tuple[int, int] | None = None):
    """fer_msgs/FaceEmotionArray (rosbags type) for one replayed frame, with the fields fer_node fills (see
    FaceEmotion.msg): header = the image's (`frame_id`, `stamp` as (sec, nanosec); None: record.stamp_ns), faces in
    ascending id, box clipped to the image."""
    store = typestore()
    T = store.types
    sec, nanosec = stamp if stamp is not None else divmod(record.stamp_ns, 1_000_000_000)
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                      frame_id=frame_id)
    faces = []
    for f in sorted(record.faces, key=lambda f: f.id):
        x0, y0, x1, y1 = f.box
        x0 = int(np.clip(np.floor(x0), 0, record.width))
        y0 = int(np.clip(np.floor(y0), 0, record.height))
        x1 = int(np.clip(np.ceil(x1), 0, record.width))
        y1 = int(np.clip(np.ceil(y1), 0, record.height))
        roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=x0, y_offset=y0, width=max(0, x1 - x0),
                                                    height=max(0, y1 - y0), do_rectify=False)
        pts = np.asarray(points.get(f.id, np.zeros((0, 2))), np.float64).reshape(-1, 2)
        faces.append(T["fer_msgs/msg/FaceEmotion"](
            face_id=f.id, label=f.label if f.window_ready else "",
            confidence=float(f.confidence) if f.window_ready else 0.0, class_names=list(class_names),
            scores=np.asarray(f.probs if f.window_ready else [], np.float32), box=roi,
            landmarks=[T["geometry_msgs/msg/Point"](x=float(x), y=float(y), z=0.0) for x, y in pts],
            has_neutral_reference=f.has_neutral, window_ready=f.window_ready,
            window_frames=int(np.clip(f.window_frames, 0, 255)), track_age_s=float(f.track_age_s)))
    return T[EMOTION_TYPE](header=header, faces=faces)


class EmotionBagWriter:
    """Writes the replay's /emotion messages into a copy of the input bag. `open` (before the replay) opens the
    output bag with every connection of the input, so what cannot be copied is said before any frame is
    replayed; `on_frame` collects a message per frame; `write` (after the replay) copies the input's messages with
    the collected ones added; `discard` removes an output that will not be finished. The bag is written beside
    the output path and moved there by `write` (bagtools.open_writer): until then a bag that was there (replaced
    with --overwrite) is left as it was, and stays so when the run fails."""

    def __init__(self, emotion_topic: str = EMOTION_TOPIC) -> None:
        if "fer_msgs/msg/FaceEmotionArray" not in typestore().types:
            raise BagError("fer_msgs message definitions not found (neither installed nor in the source tree); "
                           "cannot write /emotion to a bag")
        self.topic = emotion_topic
        self.messages: list[tuple[int, bytes]] = []
        self.class_names: tuple[str, ...] = ()
        self.in_bag: Path | None = None
        self.out_bag: Path | None = None
        self._reader = None
        self._writer = None
        self._copies: dict[int, Any] = {}  # input connection id -> output connection
        self._out = None  # the output connection of the emotion topic

    def open(self, in_bag: Path, out_bag: Path, storage: str, overwrite: bool) -> None:
        """Open `in_bag` (the bag about to be replayed) and the output bag, and add the input's connections and
        the emotion topic to the output. Raises BagError, leaving no output, for an input that already has the
        emotion topic (the copy would mix its messages with the replay's) or a connection the output cannot
        take."""
        reader = open_bag(in_bag, warn_salvaged=False)
        try:
            _check_topic_is_new(reader, in_bag, self.topic)
            self._writer = open_writer(out_bag, storage, overwrite)
        except BaseException:
            reader.close()
            raise
        self._reader, self.in_bag, self.out_bag = reader, Path(in_bag), Path(out_bag)
        try:
            store = typestore()
            for c in reader.connections:
                self._copies[c.id] = _copy_connection(self._writer, c, store, self.out_bag)
            self._out = self._writer.add_connection(self.topic, EMOTION_TYPE, typestore=store)
        except BaseException:
            self.discard()
            raise

    def on_frame(self, frame: BagFrame, results: list, record: FrameRecord) -> None:
        points = {int(r.id): r.points68 for r in results}
        names = self.class_names or next((tuple(r.class_names) for r in results if r.class_names), ())
        self.class_names = names
        msg = emotion_message(record, names, frame.frame_id, points, frame.header_stamp)
        t_ns = frame.bag_time_ns + int(record.latency_ms * 1e6)
        self.messages.append((t_ns, bytes(typestore().serialize_cdr(msg, EMOTION_TYPE))))

    def write(self) -> int:
        """Copy every message of the input bag (the bag just replayed: damage was reported then) into the output
        opened by `open`, with the collected messages added in time order, and close both; returns how many were
        added. Raises BagError when writing fails; the partial output is removed then (and a bag that was at the
        output path kept)."""
        try:
            written = self._copy_messages()
            self._writer.close()
        except Exception as exc:  # rosbags, sqlite and the file system raise assorted errors
            self.discard()
            why = str(exc) if isinstance(exc, BagError) else f"{type(exc).__name__}: {exc}"
            raise BagError(f"writing {self.out_bag} failed ({why}); the partial bag was removed") from None
        self._writer = None
        self._close_reader()
        return written

    def discard(self) -> None:
        """Close both bags and remove the output bag `open` started, unless `write` finished it; a bag that was at
        the output path is left as it was."""
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
        self._close_reader()

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _copy_messages(self) -> int:
        pending = sorted(self.messages)
        k = written = 0
        it = self._reader.messages(connections=self._reader.connections)
        while True:
            try:
                conn, t_ns, raw = next(it)
            except StopIteration:
                break
            except Exception as exc:  # truncated input: keep what was read
                log.warning(f"copying {self.in_bag} stopped early: {type(exc).__name__}: {exc}")
                break
            while k < len(pending) and pending[k][0] <= t_ns:
                self._writer.write(self._out, *pending[k])
                k += 1
                written += 1
            self._writer.write(self._copies[conn.id], t_ns, raw)
        for t_ns, raw in pending[k:]:
            self._writer.write(self._out, t_ns, raw)
            written += 1
        return written


def _check_topic_is_new(reader, in_bag: Path, topic: str) -> None:
    """Refuses an input bag that already has `topic`: the copy would hold its messages and the replay's on one
    topic."""
    if any(c.topic == topic for c in reader.connections):
        raise BagError(f"bag {in_bag} already has a topic {topic} (a fer_node's output recorded with it?); write "
                       f"the replay's messages on another topic, e.g. --emotion-topic {topic.rstrip('/')}_replay")


def _copy_connection(writer, conn, store, out_bag: Path):
    """`conn` of the input bag added to the output bag: with the type store's definition where it knows the type,
    else with the definition the bag holds (its type hash computed where the bag has none). Raises BagError when
    the writer refuses it."""
    ext = getattr(conn, "ext", None)
    qos = getattr(ext, "offered_qos_profiles", ()) or ()
    fmt = getattr(ext, "serialization_format", "cdr") or "cdr"
    try:
        if conn.msgtype in store.types:
            return writer.add_connection(conn.topic, conn.msgtype, typestore=store, serialization_format=fmt,
                                         offered_qos_profiles=qos)
        msgdef = getattr(getattr(conn, "msgdef", None), "data", None) or ""
        if not msgdef:
            raise BagError(f"bag holds no message definition of {conn.msgtype}")
        digest = getattr(conn, "digest", "") or _definition_hash(conn.msgtype, msgdef)
        return writer.add_connection(conn.topic, conn.msgtype, msgdef=msgdef, rihs01=digest,
                                     serialization_format=fmt, offered_qos_profiles=qos)
    except Exception as exc:  # rosbags' writer and type parser raise assorted errors
        why = str(exc) if isinstance(exc, BagError) else f"{type(exc).__name__}: {exc}"
        raise BagError(f"topic {conn.topic} ({conn.msgtype}) of the input bag cannot be copied into {out_bag}: "
                       f"{why}; replay without --out-bag for the other results") from None


def _definition_hash(msgtype: str, msgdef: str) -> str:
    """The RIHS01 type hash of `msgtype` from its message definition (followed by those of the types it uses, as
    bags store it)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(msgdef, msgtype))
    return store.hash_rihs01(msgtype)
