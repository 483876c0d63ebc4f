"""fer-replay: run a rosbag2 bag's camera images through the recognition pipeline the node uses, offline.

    fer-replay BAG                                  # results in BAG_replay/ (CSV, JSON, summary, timeline PNG)
    fer-replay BAG --labels truth.csv               # + accuracy, per-class recall, confusion matrix PNG
    fer-replay BAG --out-bag BAG_emotion            # + a copy of the bag with /emotion (fer_msgs) added
    fer-replay BAG --realtime                       # at recorded speed, dropping frames like the node would
    ros2 run fer_ros replay BAG ...                 # the same on a ROS 2 install

Reads sqlite3 and mcap bags through `rosbags` (no ROS install needed); images are decoded by `image_codec`, the
node's decoder, and recognised by the recognizer `runtime.build_recognizer` builds for the node, smoothed by the
node's `runtime.smooth_results`, so offline and online results agree. The label file format is described in
`fer_ros.tools.labels`. To play a bag onto ROS topics for a running fer_node instead, use `fer-publish-bag`.

Bad input: a bag that cannot be opened or lacks the topic is a one-line error (exit 2); bad messages are skipped
with rate-limited warnings and counted in the summary; a truncated MCAP file is read up to the cut. Results so far
are always written.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from fer_ros.tools.bagtools import BagError, BagFrame, ImageBagReader, STORAGES, open_bag, open_writer, typestore
from fer_ros.tools.labels import LabelError, LabelSet, load_labels
from fer_ros.ratelimit import LOGGER_NAME
from fer_ros.runtime import RecognizerSettings, SetupError, build_recognizer, smooth_results
from fer_ros.smoothing import ProbabilitySmoother

log = logging.getLogger(LOGGER_NAME)

EMOTION_TYPE = "fer_msgs/msg/FaceEmotionArray"


# --------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------
@dataclass
class FaceRecord:
    """One face in one replayed frame. box (x0, y0, x1, y1) px; probs (K,) or None while the window fills;
    dominant: the largest box of the frame; true_label from the label file (None when unlabelled); window_frames
    and track_age_s (s) as in FaceResult."""

    id: int
    box: tuple[float, float, float, float]
    window_ready: bool
    has_neutral: bool
    label: str
    confidence: float
    probs: list[float] | None
    dominant: bool
    true_label: str | None = None
    window_frames: int = 0
    track_age_s: float = 0.0


@dataclass
class FrameRecord:
    """One replayed image: index on the topic, header stamp (ns, exact), time since the first image (s), bag
    receive time (ns), decode + recognition time (ms), size (px) and its faces."""

    index: int
    stamp_ns: int
    time_s: float
    bag_time_ns: int
    latency_ms: float
    width: int
    height: int
    faces: list[FaceRecord] = field(default_factory=list)

    @property
    def stamp_s(self) -> float:
        return self.stamp_ns * 1e-9


def format_stamp(stamp_ns: int) -> str:
    """Exact decimal seconds of a ns stamp ("1700000000.250000000"); a float would lose the last digits."""
    sign = "-" if stamp_ns < 0 else ""
    sec, nsec = divmod(abs(int(stamp_ns)), 1_000_000_000)
    return f"{sign}{sec}.{nsec:09d}"


@dataclass
class ReplayResult:
    """Everything one replay produced: the per-frame records and the figures of the summary."""

    bag: str
    topic: str
    class_names: tuple[str, ...]
    frames: list[FrameRecord]
    messages: int = 0
    decoded: int = 0
    dropped_realtime: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: str | None = None
    wall_s: float = 0.0
    recognize_s: float = 0.0
    model: str = ""
    backend: str = ""


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values, np.float64)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def summarize(result: ReplayResult) -> dict:
    """The summary figures of a replay: frame counts, faces, frame rates (Hz), latency percentiles (ms), the labels
    each face got over the replay."""
    frames = result.frames
    faces: dict[int, dict[str, int]] = {}
    detections = ready = 0
    for fr in frames:
        for f in fr.faces:
            detections += 1
            counts = faces.setdefault(f.id, {})
            if f.window_ready and f.probs is not None:
                ready += 1
                counts[f.label] = counts.get(f.label, 0) + 1
    n = len(frames)
    return {
        "bag": result.bag, "topic": result.topic, "model": result.model, "backend": result.backend,
        "class_names": list(result.class_names),
        "frames": {"messages": result.messages, "decoded": result.decoded, "processed": n,
                   "dropped_realtime": result.dropped_realtime, "skipped": dict(result.skipped),
                   "with_faces": sum(1 for fr in frames if fr.faces)},
        "truncated": result.truncated,
        "faces": {"tracks": len(faces), "detections": detections, "with_scores": ready,
                  "labels_per_face": {str(k): dict(sorted(v.items(), key=lambda kv: -kv[1]))
                                      for k, v in sorted(faces.items())}},
        "duration_s": (frames[-1].time_s if frames else 0.0),
        "wall_s": result.wall_s,
        "frame_rate_hz": (n / result.wall_s) if result.wall_s > 0 else 0.0,
        "pipeline_rate_hz": (n / result.recognize_s) if result.recognize_s > 0 else 0.0,
        "latency_ms": _percentiles([fr.latency_ms for fr in frames]),
    }


# --------------------------------------------------------------------------------------------------------------
# The replay loop
# --------------------------------------------------------------------------------------------------------------
def _dominant_id(results: Sequence[Any]) -> int | None:
    best, best_area = None, -1.0
    for r in results:
        x0, y0, x1, y1 = r.box
        area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
        if area > best_area:
            best, best_area = int(r.id), area
    return best


def replay_bag(bag: str | Path, recognizer: Any, *, topic: str | None = None, labels: LabelSet | None = None,
               realtime: bool = False, smoothing_time_constant_s: float = 0.0, max_frames: int | None = None,
               on_frame: Callable[[BagFrame, list, FrameRecord], None] | None = None,
               progress: bool = False) -> ReplayResult:
    """Run every image of `topic` through `recognizer` (a pipeline.Recognizer or an object with its `process`).

    realtime: process at the recorded pace; frames that arrive while the previous one is being processed are
    dropped, newest first, as the node does. on_frame(frame, results, record) is called after each processed
    frame (for contact sheets, output bags). Raises BagError when the bag cannot be read at all; per-message
    problems are counted in the result."""
    smoother = ProbabilitySmoother(smoothing_time_constant_s)
    t_start = time.perf_counter()
    with ImageBagReader(bag, topic) as reader:
        class_names = tuple(getattr(recognizer, "class_names", ()) or ())
        result = ReplayResult(str(bag), reader.topic, class_names, [])
        total = reader.message_count if max_frames is None else min(reader.message_count, max_frames)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="frame", desc="replaying")
        first_stamp: int | None = None
        wall0 = bag0 = 0.0
        held: tuple[BagFrame, float] | None = None  # realtime: the newest frame that arrived while busy

        def process(frame: BagFrame, decode_ms: float) -> None:
            _process(recognizer, frame, first_stamp, decode_ms, labels, smoother, result, on_frame)
            if bar is not None:
                bar.update(1)

        try:
            t_decode = time.perf_counter()
            for frame in reader.frames():
                decode_ms = 1e3 * (time.perf_counter() - t_decode)
                if first_stamp is None:
                    first_stamp = frame.stamp_ns
                    wall0, bag0 = time.perf_counter(), frame.bag_time_ns * 1e-9
                if not realtime:
                    process(frame, decode_ms)
                else:
                    due = wall0 + (frame.bag_time_ns * 1e-9 - bag0)
                    while True:
                        now = time.perf_counter()
                        if due <= now:  # arrived while the previous frame was processed: it waits, newest wins
                            if held is not None:
                                result.dropped_realtime += 1
                            held = (frame, decode_ms)
                            break
                        if held is not None:  # free before this frame arrives: process the waiting one
                            process(*held)
                            held = None
                            continue
                        time.sleep(due - now)
                        process(frame, decode_ms)
                        break
                if max_frames is not None and len(result.frames) >= max_frames:
                    held = None
                    break
                t_decode = time.perf_counter()
            if held is not None:
                process(*held)
        except KeyboardInterrupt:
            log.warning("interrupted: writing the results of the frames replayed so far")
        finally:
            if bar is not None:
                bar.close()
        result.messages = reader.stats.messages
        result.decoded = reader.stats.decoded
        result.skipped = dict(reader.stats.skipped)
        result.truncated = reader.stats.truncated
    result.wall_s = time.perf_counter() - t_start
    return result


def _process(recognizer: Any, frame: BagFrame, first_stamp: int, decode_ms: float, labels: LabelSet | None,
             smoother: ProbabilitySmoother, result: ReplayResult, on_frame) -> FrameRecord:
    t0 = time.perf_counter()
    results = recognizer.process(frame.rgb8, frame.stamp_s)
    results = smooth_results(results, smoother, frame.stamp_s)
    elapsed = time.perf_counter() - t0
    result.recognize_s += elapsed
    if not result.class_names:
        names = next((tuple(r.class_names) for r in results if r.class_names), ())
        result.class_names = names
    time_s = (frame.stamp_ns - first_stamp) * 1e-9
    dominant = _dominant_id(results)
    record = FrameRecord(frame.index, frame.stamp_ns, time_s, frame.bag_time_ns, decode_ms + 1e3 * elapsed,
                         int(frame.rgb8.shape[1]), int(frame.rgb8.shape[0]))
    for r in results:
        ready = bool(r.window_ready) and r.probs is not None
        is_dominant = int(r.id) == dominant
        record.faces.append(FaceRecord(
            id=int(r.id), box=tuple(float(v) for v in r.box), window_ready=ready, has_neutral=bool(r.has_neutral),
            label=str(r.label) if ready else "", confidence=float(r.confidence) if ready else 0.0,
            probs=[float(p) for p in np.asarray(r.probs).reshape(-1)] if ready else None, dominant=is_dominant,
            true_label=labels.label_for(frame.index, time_s, int(r.id), is_dominant) if labels else None,
            window_frames=int(r.window_frames), track_age_s=float(r.track_age_s)))
    result.frames.append(record)
    if on_frame is not None:
        on_frame(frame, results, record)
    return record


# --------------------------------------------------------------------------------------------------------------
# Evaluation against labels
# --------------------------------------------------------------------------------------------------------------
def evaluate_records(frames: Iterable[FrameRecord], labels: LabelSet, class_names: Sequence[str]) -> dict:
    """Accuracy, per-class recall and the confusion matrix (rows: true class, columns: predicted, in
    `class_names` order) over every face with a true label and scores. Faces with a true label but no scores yet
    (window filling) and labelled frames where the labelled face was not found are counted, not scored."""
    from fer_ros import metrics
    names = list(class_names)
    labels.check_classes(names)
    y_true, y_pred = [], []
    unscored = 0
    covered_frames = missed_frames = 0
    for fr in frames:
        got_dominant = False
        for f in fr.faces:
            if f.true_label is None:
                continue
            if f.dominant:
                got_dominant = True
            if not f.window_ready or f.probs is None:
                unscored += 1
                continue
            y_true.append(names.index(f.true_label))
            y_pred.append(names.index(f.label))
        dominant_truth = labels.label_for(fr.index, fr.time_s, None, True)
        if dominant_truth is not None:
            covered_frames += 1
            if not got_dominant:
                missed_frames += 1
    report = metrics.classification_report(np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64), names)
    report.update({"scored_faces": len(y_true), "labelled_faces_without_scores": unscored,
                   "labelled_frames_dominant": covered_frames, "labelled_frames_no_face": missed_frames})
    return report


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------
def write_frames_csv(path: Path, frames: Iterable[FrameRecord], class_names: Sequence[str]) -> Path:
    """One row per face per frame (and one row with an empty face_id for a frame without faces)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "stamp_s", "time_s", "latency_ms", "face_id", "x0", "y0", "x1", "y1", "dominant",
                    "window_ready", "has_neutral", "label", "confidence", "true_label",
                    *[f"p_{n}" for n in class_names]])
        for fr in frames:
            head = [fr.index, format_stamp(fr.stamp_ns), f"{fr.time_s:.6f}", f"{fr.latency_ms:.3f}"]
            if not fr.faces:
                w.writerow(head + [""] * (11 + len(class_names)))
            for f in fr.faces:
                probs = [f"{p:.6f}" for p in f.probs] if f.probs else [""] * len(class_names)
                w.writerow(head + [f.id, *(f"{v:.1f}" for v in f.box), int(f.dominant), int(f.window_ready),
                                   int(f.has_neutral), f.label, f"{f.confidence:.6f}", f.true_label or "", *probs])
    return path


def write_results_json(path: Path, frames: Iterable[FrameRecord]) -> Path:
    with open(path, "w") as fh:
        json.dump({"frames": [asdict(fr) for fr in frames]}, fh)
    return path


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

    def __init__(self, emotion_topic: str = "/emotion") -> None:
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
        """Copy every message of `in_bag` and add the collected /emotion messages, in time order."""
        store = typestore()
        reader = open_bag(in_bag)
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


# --------------------------------------------------------------------------------------------------------------
# Contact sheet
# --------------------------------------------------------------------------------------------------------------
def contact_sheet(tiles: Sequence[tuple[np.ndarray, str]], columns: int = 4, tile_width_px: int = 320) -> np.ndarray:
    """Annotated frames side by side, `columns` per row, each scaled to `tile_width_px` with a caption bar
    underneath; returns an RGB8 image."""
    import cv2
    if not tiles:
        raise ValueError("a contact sheet needs at least one frame")
    scaled = []
    for rgb, caption in tiles:
        h, w = rgb.shape[:2]
        th = max(1, int(round(h * tile_width_px / w)))
        img = cv2.resize(rgb, (tile_width_px, th), interpolation=cv2.INTER_AREA if w > tile_width_px
                         else cv2.INTER_LINEAR)
        bar = np.full((22, tile_width_px, 3), 255, np.uint8)
        cv2.putText(bar, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        scaled.append(np.concatenate([img, bar], axis=0))
    tile_h = max(t.shape[0] for t in scaled)
    columns = max(1, min(columns, len(scaled)))
    rows = math.ceil(len(scaled) / columns)
    pad = 4
    sheet = np.full((rows * (tile_h + pad) + pad, columns * (tile_width_px + pad) + pad, 3), 235, np.uint8)
    for i, t in enumerate(scaled):
        r, c = divmod(i, columns)
        y, x = pad + r * (tile_h + pad), pad + c * (tile_width_px + pad)
        sheet[y:y + t.shape[0], x:x + t.shape[1]] = t
    return sheet


class ContactSheetCollector:
    """Keeps annotated copies of `count` frames spread evenly over a topic of `total` messages."""

    def __init__(self, total: int, count: int) -> None:
        count = max(0, min(count, total))
        self.wanted = set(np.linspace(0, total - 1, count).round().astype(int).tolist()) if count else set()
        self.tiles: list[tuple[np.ndarray, str]] = []

    def on_frame(self, frame: BagFrame, results: list, record: FrameRecord) -> None:
        if frame.index not in self.wanted:
            return
        from fer_ros.annotate import draw_results
        self.tiles.append((draw_results(frame.rgb8, results), f"frame {frame.index}  t={record.time_s:.2f} s"))

    def save(self, path: Path, columns: int = 4) -> Path | None:
        if not self.tiles:
            return None
        import cv2
        cv2.imwrite(str(path), cv2.cvtColor(contact_sheet(self.tiles, columns), cv2.COLOR_RGB2BGR))
        return path


class ReplayError(RuntimeError):
    """A user error of fer-replay (bad option, missing model, unusable labels); the message says what to do."""


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------
def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-replay", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bag", type=Path, help="rosbag2 bag folder (sqlite3 or mcap)")
    p.add_argument("--topic", default=None, help="image topic (Image or CompressedImage); default: the only one")
    p.add_argument("--out", type=Path, default=None, help="output folder; default: <bag>_replay next to the bag")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("recognition (same meaning as fer_node's parameters)")
    g.add_argument("--model", type=Path, default=None, help="model directory; default: the shipped ckplus8_default")
    g.add_argument("--backend", default="auto", help="auto | onnxruntime | torch | tensorrt")
    g.add_argument("--device", default="auto", help="auto (a GPU when there is one) | cpu | cuda | cuda:N")
    g.add_argument("--fp16", action="store_true", help="half precision where the backend supports it (GPU)")
    g.add_argument("--engine-cache-dir", type=Path, default=None, help="TensorRT engine cache; default: backend's")
    g.add_argument("--max-faces", type=int, default=4, help="most faces tracked per frame")
    g.add_argument("--min-face-size-px", type=float, default=0.0, help="smaller faces (box side, px) are ignored")
    g.add_argument("--face-timeout-s", type=float, default=1.0, help="a face unseen this long (s) is dropped")
    g.add_argument("--neutral-policy", default="auto", help="how each face's neutral reference is chosen")
    g.add_argument("--smoothing-time-constant-s", type=float, default=0.0, help="score smoothing per face, s")
    g.add_argument("--realtime", action="store_true",
                   help="process at the recorded pace, dropping frames that arrive while busy (like the node)")
    g.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    o = p.add_argument_group("outputs")
    o.add_argument("--labels", type=Path, default=None,
                   help="ground-truth label file (see fer_ros.tools.labels): adds accuracy, recall, confusion matrix")
    o.add_argument("--out-bag", type=Path, default=None, help="write a copy of the bag with /emotion added here")
    o.add_argument("--out-bag-storage", choices=STORAGES, default=None, help="default: the input bag's storage")
    o.add_argument("--emotion-topic", default="/emotion", help="topic of the FaceEmotionArray messages (--out-bag)")
    o.add_argument("--contact-sheet", type=int, default=0, metavar="N",
                   help="also write contact_sheet.png with N annotated frames spread over the bag")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out-bag")
    return p


def _check_args(args) -> None:
    if args.max_frames is not None and args.max_frames < 1:
        raise ReplayError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.contact_sheet < 0:
        raise ReplayError(f"--contact-sheet must be >= 0, got {args.contact_sheet}")
    if not (math.isfinite(args.smoothing_time_constant_s) and args.smoothing_time_constant_s >= 0):
        raise ReplayError("--smoothing-time-constant-s must be a number of seconds >= 0")


def recognizer_settings(args) -> RecognizerSettings:
    """The recognizer settings of the command line (args from get_args_parser). Inference threads are left to the
    backend (0) and the window to the model (0), as fer-replay has no options for them."""
    return RecognizerSettings(
        model_path=str(args.model or ""), backend=args.backend, device=args.device, fp16=args.fp16,
        engine_cache_dir=str(args.engine_cache_dir or ""), num_threads=0, max_faces=args.max_faces,
        min_face_size_px=args.min_face_size_px, window_length=0, neutral_policy=args.neutral_policy,
        smoothing_time_constant_s=args.smoothing_time_constant_s, face_timeout_s=args.face_timeout_s)


def bag_storage(bag: Path) -> str:
    """"mcap" or "sqlite3": the storage of an existing bag folder."""
    return "mcap" if any(Path(bag).glob("*.mcap")) else "sqlite3"


def run(args, recognizer=None) -> dict:
    """Replay as the CLI does (args from get_args_parser); returns the summary dict. `recognizer` replaces the
    model loading (tests, other pipelines). Raises ReplayError, SetupError, BagError or LabelError for user
    errors."""
    _check_args(args)
    labels = load_labels(args.labels) if args.labels else None
    out_dir = args.out or args.bag.parent / (args.bag.name.rstrip("/") + "_replay")
    if not args.bag.exists():
        raise BagError(f"bag {args.bag} does not exist")
    emotion_writer = None
    if args.out_bag:
        if args.out_bag.exists() and not args.overwrite:
            raise ReplayError(f"{args.out_bag} already exists; choose another --out-bag or pass --overwrite")
        emotion_writer = EmotionBagWriter(args.emotion_topic)
    with ImageBagReader(args.bag, args.topic) as probe:  # bag errors before the model loads; total for the sheet
        total, topic = probe.message_count, probe.topic
    model_name, backend = "", ""
    if recognizer is None:
        recognizer, backend, model_dir = build_recognizer(recognizer_settings(args))
        model_name = str(model_dir)
    try:
        if labels is not None and getattr(recognizer, "class_names", None):
            labels.check_classes(recognizer.class_names)
        sheet = ContactSheetCollector(total, args.contact_sheet) if args.contact_sheet else None
        hooks = [h.on_frame for h in (sheet, emotion_writer) if h is not None]

        def on_frame(frame, results, record):
            for h in hooks:
                h(frame, results, record)

        result = replay_bag(args.bag, recognizer, topic=topic, labels=labels, realtime=args.realtime,
                            smoothing_time_constant_s=args.smoothing_time_constant_s, max_frames=args.max_frames,
                            on_frame=on_frame if hooks else None, progress=not args.quiet)
    finally:
        if model_name:  # we made it, we close it
            recognizer.close()
    result.model, result.backend = model_name, backend
    return write_outputs(result, out_dir, labels, sheet, emotion_writer, args)


def write_outputs(result: ReplayResult, out_dir: Path, labels: LabelSet | None, sheet, emotion_writer, args) -> dict:
    """Write the CSV, JSON, summary, plots (and the contact sheet / output bag when asked); returns the summary."""
    from fer_ros import plots
    out_dir.mkdir(parents=True, exist_ok=True)
    names = result.class_names
    summary = summarize(result)
    outputs = {"frames_csv": str(write_frames_csv(out_dir / "frames.csv", result.frames, names)),
               "results_json": str(write_results_json(out_dir / "results.json", result.frames))}
    if result.frames and names:
        outputs["timeline_png"] = str(plots.plot_timeline(out_dir / "timeline.png", _timeline_tracks(result),
                                                          names, title=f"{Path(result.bag).name} {result.topic}"))
    if labels is not None and names:
        evaluation = evaluate_records(result.frames, labels, names)
        summary["evaluation"] = evaluation
        if evaluation["count"]:
            cm = np.asarray(evaluation["confusion_matrix"])
            outputs["confusion_png"] = str(plots.plot_confusion_matrix(cm, names, out_dir / "confusion_matrix.png",
                                                                       title="replay vs labels"))
    if sheet is not None:
        path = sheet.save(out_dir / "contact_sheet.png")
        if path:
            outputs["contact_sheet_png"] = str(path)
    if emotion_writer is not None:
        storage = args.out_bag_storage or bag_storage(args.bag)
        n = emotion_writer.write(args.bag, args.out_bag, storage, args.overwrite)
        outputs["out_bag"] = str(args.out_bag)
        summary["emotion_messages"] = n
    summary["outputs"] = outputs
    with open(out_dir / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    outputs["summary_json"] = str(out_dir / "summary.json")
    return summary


def _timeline_tracks(result: ReplayResult) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{face id: (times s (N,), probs (N, K))} over the frames where the face had scores."""
    tracks: dict[int, tuple[list, list]] = {}
    for fr in result.frames:
        for f in fr.faces:
            if f.probs is not None:
                t, p = tracks.setdefault(f.id, ([], []))
                t.append(fr.time_s)
                p.append(f.probs)
    return {k: (np.asarray(t, np.float64), np.asarray(p, np.float32)) for k, (t, p) in tracks.items()}


def format_summary(summary: dict) -> str:
    """A few lines for the terminal: counts, rates, latency, each face's labels, the evaluation."""
    fr = summary["frames"]
    lines = [f"{summary['bag']} {summary['topic']}: {fr['processed']} frames replayed of {fr['messages']} messages"
             f" ({fr['with_faces']} with faces), {summary['faces']['tracks']} face tracks"]
    if fr["skipped"]:
        lines.append("skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(fr["skipped"].items())))
    if fr["dropped_realtime"]:
        lines.append(f"dropped (realtime, busy): {fr['dropped_realtime']}")
    if summary.get("truncated"):
        lines.append(f"bag ended early: {summary['truncated']}")
    lat = summary["latency_ms"]
    if lat:
        lines.append(f"rate {summary['frame_rate_hz']:.1f} frames/s overall, {summary['pipeline_rate_hz']:.1f} "
                     f"frames/s in the pipeline; latency ms p50 {lat['p50']:.1f}, p90 {lat['p90']:.1f}, "
                     f"p99 {lat['p99']:.1f}")
    for face_id, counts in summary["faces"]["labels_per_face"].items():
        total = sum(counts.values())
        if total:
            top = ", ".join(f"{k} {100.0 * v / total:.0f}%" for k, v in list(counts.items())[:3])
            lines.append(f"  face #{face_id}: {total} scored frames: {top}")
        else:
            lines.append(f"  face #{face_id}: no scored frame (window never filled)")
    ev = summary.get("evaluation")
    if ev:
        if ev.get("accuracy") is None:
            lines.append("accuracy: no labelled face had scores (labels outside the faces' tracked time?)")
        else:
            recall = ", ".join(f"{k} {v:.2f}" for k, v in ev["recall"].items() if v is not None)
            lines.append(f"accuracy {ev['accuracy']:.3f} on {ev['scored_faces']} labelled faces; recall: {recall}")
        if ev["labelled_faces_without_scores"] or ev["labelled_frames_no_face"]:
            lines.append(f"  not scored: {ev['labelled_faces_without_scores']} labelled faces still filling their "
                         f"window, {ev['labelled_frames_no_face']} labelled frames without a face")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        summary = run(args)
    except (ReplayError, SetupError, BagError, LabelError) as exc:
        print(f"fer-replay: error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"results in {Path(summary['outputs']['summary_json']).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
