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


def emotion_message(record: FrameRecord, class_names: Sequence[str], frame_id: str, points: dict[int, Any]):
    """fer_msgs/FaceEmotionArray (rosbags type) for one replayed frame, with the fields fer_node fills (see
    FaceEmotion.msg): header = the image's, faces in ascending id, box clipped to the image."""
    store = typestore()
    T = store.types
    stamp_ns = record.stamp_ns
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000,
                                                                                nanosec=stamp_ns % 1_000_000_000),
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
    """Collects /emotion messages during a replay, then writes a copy of the input bag with them added."""

    def __init__(self, emotion_topic: str = EMOTION_TOPIC) -> None:
        if "fer_msgs/msg/FaceEmotionArray" not in typestore().types:
            raise BagError("fer_msgs message definitions not found (neither installed nor in the source tree); "
                           "cannot write /emotion to a bag")
        self.topic = emotion_topic
        self.messages: list[tuple[int, bytes]] = []
        self.class_names: tuple[str, ...] = ()

    def on_frame(self, frame: BagFrame, results: list, record: FrameRecord) -> None:
        points = {int(r.id): r.points68 for r in results}
        names = self.class_names or next((tuple(r.class_names) for r in results if r.class_names), ())
        self.class_names = names
        msg = emotion_message(record, names, frame.frame_id, points)
        t_ns = frame.bag_time_ns + int(record.latency_ms * 1e6)
        self.messages.append((t_ns, bytes(typestore().serialize_cdr(msg, EMOTION_TYPE))))

    def write(self, in_bag: Path, out_bag: Path, storage: str, overwrite: bool) -> int:
        """Copy every message of `in_bag` (the bag just replayed: damage was reported then) and add the collected
        /emotion messages, in time order."""
        store = typestore()
        reader = open_bag(in_bag, warn_salvaged=False)
        writer = open_writer(out_bag, storage, overwrite)
        written = 0
        try:
            conns = {}
            for c in reader.connections:
                if c.topic == self.topic:
                    continue
                conns[c.id] = _copy_connection(writer, c, store)
            out = writer.add_connection(self.topic, EMOTION_TYPE, typestore=store)
            pending = sorted(self.messages)
            k = 0
            it = reader.messages(connections=[c for c in reader.connections if c.id in conns])
            while True:
                try:
                    conn, t_ns, raw = next(it)
                except StopIteration:
                    break
                except Exception as exc:  # truncated input: keep what was read
                    log.warning(f"copying {in_bag} stopped early: {type(exc).__name__}: {exc}")
                    break
                while k < len(pending) and pending[k][0] <= t_ns:
                    writer.write(out, *pending[k])
                    k += 1
                    written += 1
                writer.write(conns[conn.id], t_ns, raw)
            for t_ns, raw in pending[k:]:
                writer.write(out, t_ns, raw)
                written += 1
        finally:
            writer.close()
            reader.close()
        return written


def _copy_connection(writer, conn, store):
    ext = getattr(conn, "ext", None)
    qos = getattr(ext, "offered_qos_profiles", ()) or ()
    fmt = getattr(ext, "serialization_format", "cdr") or "cdr"
    if conn.msgtype in store.types:
        return writer.add_connection(conn.topic, conn.msgtype, typestore=store, serialization_format=fmt,
                                     offered_qos_profiles=qos)
    msgdef = getattr(getattr(conn, "msgdef", None), "data", None)
    return writer.add_connection(conn.topic, conn.msgtype, msgdef=msgdef or "", rihs01=getattr(conn, "digest", ""),
                                 serialization_format=fmt, offered_qos_profiles=qos)
