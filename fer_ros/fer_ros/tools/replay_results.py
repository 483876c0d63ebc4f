"""What a replay produced and how it is reported: the per-frame and per-face records, the summary figures
(counts, rates, latency, each face's labels), the evaluation against a label file, the output folder's check,
frames.csv and results.json, the timeline's tracks and the terminal summary."""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fer_ros.strict_json import write_json
from fer_ros.tools.labels import LabelSet


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
    """One replayed image: index on the topic, header stamp (ns, exact), time since the topic's first message (ns,
    exact; by header stamps, never going back: see replay's timeline), bag receive time (ns), decode + recognition
    time (ms), size (px) and its faces."""

    index: int
    stamp_ns: int
    time_ns: int
    bag_time_ns: int
    latency_ms: float
    width: int
    height: int
    faces: list[FaceRecord] = field(default_factory=list)

    @property
    def stamp_s(self) -> float:
        return self.stamp_ns * 1e-9

    @property
    def time_s(self) -> float:
        """time_ns in seconds: the float nearest to the exact decimal frames.csv writes (format_stamp), so a label
        range starting at a frame's written time_s covers that frame."""
        return seconds(self.time_ns)


def seconds(ns: int) -> float:
    """A ns count in seconds, correctly rounded: equal to float() of its exact decimal text (format_stamp), where
    ns * 1e-9 may be one unit in the last place above it."""
    return int(ns) / 1_000_000_000


def format_stamp(stamp_ns: int) -> str:
    """Exact decimal seconds of a ns stamp ("1700000000.250000000"); a float would lose the last digits."""
    sign = "-" if stamp_ns < 0 else ""
    sec, nsec = divmod(abs(int(stamp_ns)), 1_000_000_000)
    return f"{sign}{sec}.{nsec:09d}"


@dataclass
class ReplayResult:
    """Everything one replay produced: the per-frame records and the figures of the summary. messages: the topic's
    message count (the bag's metadata; what could be read of a salvaged bag); read: the messages the replay read
    (fewer when --max-frames, Ctrl-C or a damaged bag ended it early). interrupted: Ctrl-C ended the frames before
    the topic (or --max-frames) did. stopped_at_max_frames: the replay ended at `max_frames` processed frames with
    messages of the topic left unreplayed."""

    bag: str
    topic: str
    class_names: tuple[str, ...]
    frames: list[FrameRecord]
    messages: int = 0
    read: int = 0
    decoded: int = 0
    dropped_realtime: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: str | None = None
    wall_s: float = 0.0
    interrupted: bool = False
    max_frames: int | None = None
    stopped_at_max_frames: bool = False
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
    each face got over the replay. frame_rate_hz: frames over the replay's wall time; rate_at_median_latency_hz: one
    frame per median latency (decode + recognition), the rate the pipeline keeps up once warm (a slow first frame,
    as the pipeline warms up, does not move it)."""
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
    latency = _percentiles([fr.latency_ms for fr in frames])
    return {
        "bag": result.bag, "topic": result.topic, "model": result.model, "backend": result.backend,
        "class_names": list(result.class_names),
        "frames": {"messages": result.messages, "read": result.read, "decoded": result.decoded, "processed": n,
                   "dropped_realtime": result.dropped_realtime, "skipped": dict(result.skipped),
                   "with_faces": sum(1 for fr in frames if fr.faces)},
        "truncated": result.truncated,
        "interrupted": result.interrupted,
        "max_frames": result.max_frames,
        "stopped_at_max_frames": result.stopped_at_max_frames,
        "faces": {"tracks": len(faces), "detections": detections, "with_scores": ready,
                  "labels_per_face": {str(k): dict(sorted(v.items(), key=lambda kv: -kv[1]))
                                      for k, v in sorted(faces.items())}},
        "duration_s": (frames[-1].time_s if frames else 0.0),
        "wall_s": result.wall_s,
        "frame_rate_hz": (n / result.wall_s) if result.wall_s > 0 else 0.0,
        "rate_at_median_latency_hz": (1e3 / latency["p50"]) if latency and latency["p50"] > 0 else 0.0,
        "latency_ms": latency,
    }


def evaluate_records(frames: Iterable[FrameRecord], labels: LabelSet, class_names: Sequence[str]) -> dict:
    """Accuracy, per-class recall and the confusion matrix (rows: true class, columns: predicted, in
    `class_names` order) over every face with a true label and scores. Faces with a true label but no scores yet
    (window filling) and labelled faces not found in their frame are counted, not scored: a frame that a
    dominant-face range covers with no face at all, and each face's own range covering a frame without that track
    id. True labels match the class names by metrics.class_key."""
    from fer_ros import metrics
    names = list(class_names)
    labels.check_classes(names)
    keys = [metrics.class_key(n) for n in names]
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
            y_true.append(keys.index(metrics.class_key(f.true_label)))
            y_pred.append(names.index(f.label))
        dominant_truth = labels.label_for(fr.index, fr.time_s, None, True)
        if dominant_truth is not None:
            covered_frames += 1
            if not got_dominant:
                missed_frames += 1
        missed_frames += len(labels.labelled_faces(fr.index, fr.time_s) - {f.id for f in fr.faces})
    report = metrics.classification_report(np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64), names)
    report.update({"scored_faces": len(y_true), "labelled_faces_without_scores": unscored,
                   "labelled_frames_dominant": covered_frames, "labelled_frames_no_face": missed_frames})
    return report


def make_out_dir(out_dir: Path, names: Iterable[str], option: str = "--out") -> str | None:
    """Make the output folder `out_dir` (parents too) unless it is there; None when it can take the files `names`,
    else why not, in one line saying what to do: a path that is not a folder, a folder that cannot be made, a folder
    in it named as one of the files. Shared by fer-replay and fer-eval, which check it before the model loads."""
    if (out_dir.exists() or out_dir.is_symlink()) and not out_dir.is_dir():
        return f"{option} {out_dir} exists and is not a folder: remove it or choose another {option}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot make the {option} folder {out_dir} ({exc.strerror or exc}): choose another {option}"
    folders = [name for name in names if (out_dir / name).is_dir()]
    if folders:
        one = len(folders) == 1
        return (f"{option} {out_dir} holds {'a folder' if one else 'folders'} named {', '.join(folders)}, "
                f"{'a file' if one else 'files'} it writes: remove {'it' if one else 'them'} or choose another "
                f"{option}")
    return None


def write_frames_csv(path: Path, frames: Iterable[FrameRecord], class_names: Sequence[str]) -> Path:
    """One row per face per frame (and one row with an empty face_id for a frame without faces). stamp_s and
    time_s are exact decimal seconds (9 digits, format_stamp)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "stamp_s", "time_s", "latency_ms", "face_id", "x0", "y0", "x1", "y1", "dominant",
                    "window_ready", "has_neutral", "label", "confidence", "true_label",
                    *[f"p_{n}" for n in class_names]])
        for fr in frames:
            head = [fr.index, format_stamp(fr.stamp_ns), format_stamp(fr.time_ns), f"{fr.latency_ms:.3f}"]
            if not fr.faces:
                w.writerow(head + [""] * (11 + len(class_names)))
            for f in fr.faces:
                probs = [f"{p:.6f}" for p in f.probs] if f.probs else [""] * len(class_names)
                w.writerow(head + [f.id, *(f"{v:.1f}" for v in f.box), int(f.dominant), int(f.window_ready),
                                   int(f.has_neutral), f.label, f"{f.confidence:.6f}", f.true_label or "", *probs])
    return path


def frame_json(fr: FrameRecord) -> dict:
    """One frame of results.json: the record's fields with time_s (s) after time_ns (ns)."""
    row = {}
    for key, value in asdict(fr).items():
        row[key] = value
        if key == "time_ns":
            row["time_s"] = fr.time_s
    return row


def write_results_json(path: Path, frames: Iterable[FrameRecord]) -> Path:
    return write_json(path, {"frames": [frame_json(fr) for fr in frames]})


def timeline_tracks(result: ReplayResult) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{face id: (times s (N,), probs (N, K))} over the frames where the face had scores."""
    tracks: dict[int, tuple[list, list]] = {}
    for fr in result.frames:
        for f in fr.faces:
            if f.probs is not None:
                t, p = tracks.setdefault(f.id, ([], []))
                t.append(fr.time_s)
                p.append(f.probs)
    return {k: (np.asarray(t, np.float64), np.asarray(p, np.float32)) for k, (t, p) in tracks.items()}


def _cut_note(summary: dict) -> str:
    """What the terminal's first line adds when the replay did not read the whole topic: where --max-frames stopped
    it, and how many of the topic's messages were read."""
    fr = summary["frames"]
    read = fr.get("read", fr["messages"])
    if summary.get("stopped_at_max_frames"):
        return f"; stopped at --max-frames {summary['max_frames']} ({read} messages read)"
    if read != fr["messages"]:
        return f"; {read} messages read"
    return ""


def format_summary(summary: dict, labels_shown: int | None = 3) -> str:
    """A few lines for the terminal: counts, rates, latency, each face's labels, the evaluation. Each face's line
    gives the share of its `labels_shown` most frequent labels, largest first (None: all of them)."""
    fr = summary["frames"]
    lines = [f"{summary['bag']} {summary['topic']}: {fr['processed']} frames replayed of {fr['messages']} messages"
             f" ({fr['with_faces']} with faces), {summary['faces']['tracks']} face tracks{_cut_note(summary)}"]
    if fr["skipped"]:
        lines.append("skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(fr["skipped"].items())))
    if fr["dropped_realtime"]:
        lines.append(f"dropped (realtime, busy): {fr['dropped_realtime']}")
    if summary.get("truncated"):
        lines.append(f"bag ended early: {summary['truncated']}")
    lat = summary["latency_ms"]
    if lat:
        lines.append(f"rate {summary['frame_rate_hz']:.1f} frames/s overall, "
                     f"{summary['rate_at_median_latency_hz']:.1f} frames/s at the median latency; latency ms p50 "
                     f"{lat['p50']:.1f}, p90 {lat['p90']:.1f}, p99 {lat['p99']:.1f}")
    for face_id, counts in summary["faces"]["labels_per_face"].items():
        total = sum(counts.values())
        if total:
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:labels_shown]
            top = ", ".join(f"{k} {100.0 * v / total:.0f}%" for k, v in ranked)
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
                         f"window, {ev['labelled_frames_no_face']} labelled faces not found in their frame")
    return "\n".join(lines)
