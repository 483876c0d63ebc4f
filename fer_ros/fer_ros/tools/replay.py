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

Bad input: a bag that cannot be opened or lacks the topic, and an --out that cannot take the results (a file, a
folder named as one of them), are one-line errors (exit 2) before the model loads; bad messages are skipped
with rate-limited warnings and counted in the summary; a truncated MCAP file is read up to the cut. Results so far
are always written; a failure to write them (a full disk) is a one-line error too. Ctrl-C ends the replay at the
frame it reached: those frames are summarised and written (the summary says "interrupted") and the exit code is
130.

This file is the replay loop and the command; the records, summary and evaluation are in replay_results.py, the
/emotion output bag in emotion_bag.py, the contact sheet in contact_sheet.py.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fer_ros.argtypes import HelpFormatter, number, parse_args
from fer_ros.cdr_header import header_stamp
from fer_ros.face_state import NEUTRAL_POLICIES
from fer_ros.image_codec import DEFAULT_MAX_PIXELS
from fer_ros.pipeline import repeats_stamp
from fer_ros.ratelimit import LOGGER_NAME
from fer_ros.runtime import (BACKENDS, RecognizerSettings, SetupError, add_setting_option, build_recognizer,
                             smooth_results)
from fer_ros.smoothing import ProbabilitySmoother
from fer_ros.strict_json import write_json
from fer_ros.tools.bagtools import (IMAGE_TYPES, STORAGES, BagError, BagFrame, ImageBagReader, bag_storage,
                                    topic_name_problem)
from fer_ros.tools.contact_sheet import ContactSheetCollector
from fer_ros.tools.emotion_bag import EMOTION_TOPIC, EmotionBagWriter
from fer_ros.tools.labels import LabelError, LabelSet, load_labels
from fer_ros.tools.replay_results import (FaceRecord, FrameRecord, ReplayResult, evaluate_records, format_summary,
                                          make_out_dir, summarize, timeline_tracks, write_frames_csv,
                                          write_results_json)

log = logging.getLogger(LOGGER_NAME)

# the plots a replay may write into its output folder; all are removed from it before a run writes its own
# (plots.remove_plots), so one left by another run is never taken for this one's
REPEATED_STAMP = "repeated stamp"  # the skip reason of a frame at the time of the frame before it
PLOT_FILES = ("timeline.png", "confusion_matrix.png", "contact_sheet.png")
OUT_FILES = ("frames.csv", "results.json", "summary.json", *PLOT_FILES)  # every file a replay may write in --out
TIMELINE_FACES = 6  # timeline.png has a panel for each of the longest face tracks, at most this many


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


class _Timeline:
    """Each frame's time on the replay's timeline (FrameRecord.time_ns; its time_s is what seconds-based labels are
    matched against): ns since the topic's first message by header stamps, never going back. Where a header stamp
    goes back (a bag recorded across a loop or a clock reset), the step from the previous image is its bag record
    time's step instead (0 if that goes back too), and a warning says so once.

    The timeline starts at the topic's first message even when that message was skipped (not decodable, over the
    pixel limit): `first_message()` gives its (stamp, bag time) in ns, asked for when the first frame decoded is
    not message 0, so seconds and frame indices count from the same message."""

    def __init__(self, topic: str, first_message: Callable[[], tuple[int, int] | None]) -> None:
        self.topic = topic
        self.warned = False
        self._first_message = first_message
        self._time_ns = 0
        self._last: tuple[int, int] | None = None  # (header stamp, bag time) of the previous image, ns

    def time_ns(self, frame: BagFrame) -> int:
        """The frame's time since the topic's first message, ns (exact)."""
        if self._last is None and frame.index > 0:
            self._last = self._first_message()
        if self._last is not None:
            last_stamp_ns, last_bag_ns = self._last
            step_ns = frame.stamp_ns - last_stamp_ns
            if step_ns < 0:
                if not self.warned:
                    log.warning(f"header stamps of {self.topic} go back at frame {frame.index} "
                                f"({last_stamp_ns * 1e-9:.3f} s to {frame.stamp_s:.3f} s: a bag loop or clock "
                                "reset); time_s, which labels in seconds are matched against, steps over the jump "
                                "by the bag's record time")
                    self.warned = True
                step_ns = max(0, frame.bag_time_ns - last_bag_ns)
            self._time_ns += step_ns
        self._last = (frame.stamp_ns, frame.bag_time_ns)
        return self._time_ns


def _first_message_time(bag: str | Path, topic: str) -> tuple[int, int] | None:
    """(stamp, bag time) in ns of the first message of `topic`, decoded or not. The stamp is the header stamp read
    from the message's CDR bytes, or, as for a decoded frame (BagFrame.stamp_ns), the bag time where the stamp is
    zero or cannot be read (a message too short, not an image type). None when the bag cannot be read again."""
    try:
        with ImageBagReader(bag, topic, warn_salvaged=False) as reader:
            for _, conn, bag_time_ns, raw in reader.raw_messages():
                stamp = header_stamp(bytes(raw)) if conn.msgtype in IMAGE_TYPES else None
                stamp_ns = stamp[0] * 1_000_000_000 + stamp[1] if stamp is not None else 0
                return (stamp_ns or bag_time_ns), bag_time_ns
    except BagError:
        return None
    return None


def replay_bag(bag: str | Path, recognizer: Any, *, topic: str | None = None, labels: LabelSet | None = None,
               realtime: bool = False, smoothing_time_constant_s: float = 0.0, max_frames: int | None = None,
               on_frame: Callable[[BagFrame, list, FrameRecord], None] | None = None,
               progress: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> ReplayResult:
    """Run every image of `topic` through `recognizer` (a pipeline.Recognizer or an object with its `process`).

    realtime: process at the recorded pace; frames that arrive while the previous one is being processed are
    dropped, newest first, as the node does. on_frame(frame, results, record) is called after each processed
    frame (for contact sheets, output bags). max_frames: no more frames than this are processed (with realtime too:
    a frame that arrives as the last one allowed is processed is not). Images declaring more than `max_pixels`
    pixels are skipped undecoded. Ctrl-C (KeyboardInterrupt) ends the frames there: the result holds those
    processed so far and has `interrupted` set. Raises BagError when the bag cannot be read at all; per-message
    problems are counted in the result."""
    smoother = ProbabilitySmoother(smoothing_time_constant_s)
    t_start = time.perf_counter()
    with ImageBagReader(bag, topic, max_pixels=max_pixels) as reader:
        class_names = tuple(getattr(recognizer, "class_names", ()) or ())
        result = ReplayResult(str(bag), reader.topic, class_names, [])
        result.max_frames = max_frames
        total = reader.message_count if max_frames is None else min(reader.message_count, max_frames)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="frame", desc="replaying")
        timeline = _Timeline(reader.topic, lambda: _first_message_time(bag, reader.topic))
        started = False
        wall0 = bag0 = 0.0
        held: tuple[BagFrame, float, int] | None = None  # realtime: the newest frame that arrived while busy
        left = False  # realtime: the frame read last was left unprocessed as --max-frames was reached

        last_stamp_s: list[float] = []  # the stamp of the frame processed last

        def process(frame: BagFrame, decode_ms: float, time_ns: int) -> None:
            if repeats_stamp(frame.stamp_s, last_stamp_s[0] if last_stamp_s else None):
                reader.stats.skip(REPEATED_STAMP)  # the recognizer skips it too: no record of a frame without faces
            else:
                last_stamp_s[:] = [frame.stamp_s]
                _process(recognizer, frame, time_ns, decode_ms, labels, smoother, result, on_frame)
            if bar is not None:
                bar.update(1)

        def at_limit() -> bool:
            """--max-frames frames processed: no frame may be processed after this."""
            return max_frames is not None and len(result.frames) >= max_frames

        try:
            t_decode = time.perf_counter()
            for frame in reader.frames():
                decode_ms = 1e3 * (time.perf_counter() - t_decode)
                time_ns = timeline.time_ns(frame)
                if not started:
                    started = True
                    wall0, bag0 = time.perf_counter(), frame.bag_time_ns * 1e-9
                if not realtime:
                    process(frame, decode_ms, time_ns)
                else:
                    due = wall0 + (frame.bag_time_ns * 1e-9 - bag0)
                    while True:
                        now = time.perf_counter()
                        if due <= now:  # arrived while the previous frame was processed: it waits, newest wins
                            if held is not None:
                                result.dropped_realtime += 1
                            held = (frame, decode_ms, time_ns)
                            break
                        if held is not None:  # free before this frame arrives: process the waiting one
                            process(*held)
                            held = None
                            if at_limit():  # this frame is past --max-frames
                                left = True
                                break
                            continue
                        time.sleep(due - now)
                        process(frame, decode_ms, time_ns)
                        break
                if at_limit():
                    held = None
                    result.stopped_at_max_frames = left or reader.stats.messages < reader.message_count
                    break
                t_decode = time.perf_counter()
            if held is not None:
                process(*held)
        except KeyboardInterrupt:
            result.interrupted = True
            log.warning("interrupted: writing the results of the frames replayed so far")
        finally:
            if bar is not None:
                bar.close()
        result.read = reader.stats.messages
        result.messages = max(reader.message_count, result.read)  # the metadata's count where it has one
        result.decoded = reader.stats.decoded
        result.skipped = dict(reader.stats.skipped)
        result.truncated = reader.stats.truncated
    result.wall_s = time.perf_counter() - t_start
    return result


def _process(recognizer: Any, frame: BagFrame, time_ns: int, decode_ms: float, labels: LabelSet | None,
             smoother: ProbabilitySmoother, result: ReplayResult, on_frame) -> FrameRecord:
    """Recognise one frame (time_ns: its time on the replay's timeline, ns) and append its FrameRecord."""
    t0 = time.perf_counter()
    results = recognizer.process(frame.rgb8, frame.stamp_s)
    results = smooth_results(results, smoother, frame.stamp_s)
    elapsed = time.perf_counter() - t0
    if not result.class_names:
        names = next((tuple(r.class_names) for r in results if r.class_names), ())
        result.class_names = names
    dominant = _dominant_id(results)
    record = FrameRecord(frame.index, frame.stamp_ns, time_ns, frame.bag_time_ns, decode_ms + 1e3 * elapsed,
                         int(frame.rgb8.shape[1]), int(frame.rgb8.shape[0]))
    for r in results:
        ready = bool(r.window_ready) and r.probs is not None
        is_dominant = int(r.id) == dominant
        record.faces.append(FaceRecord(
            id=int(r.id), box=tuple(float(v) for v in r.box), window_ready=ready, has_neutral=bool(r.has_neutral),
            label=str(r.label) if ready else "", confidence=float(r.confidence) if ready else 0.0,
            probs=[float(p) for p in np.asarray(r.probs).reshape(-1)] if ready else None, dominant=is_dominant,
            true_label=labels.label_for(frame.index, record.time_s, int(r.id), is_dominant) if labels else None,
            window_frames=int(r.window_frames), track_age_s=float(r.track_age_s)))
    result.frames.append(record)
    if on_frame is not None:
        on_frame(frame, results, record)
    return record


class ReplayError(RuntimeError):
    """A user error of fer-replay that its option types cannot see (an --out-bag that exists or is the input bag, an
    --out that is a file), or results that cannot be written; the message says what to do."""


def bag_name(bag: str | Path) -> str:
    """The bag's own name, also for a path such as "." or "bag/" (the folder it names, not its last part)."""
    return Path(os.path.abspath(bag)).name


def _check_out_bag(out_bag: Path, bag: Path, out_dir: Path) -> None:
    """Refuses an --out-bag that is the input bag or the output folder, or a folder holding either: with
    --overwrite the finished output bag replaces what was there."""
    target = out_bag.resolve()
    for what, path in (("the input bag", bag), ("the --out folder", out_dir)):
        resolved = path.resolve()
        if target == resolved or target in resolved.parents:
            relation = "is" if target == resolved else "holds"
            raise ReplayError(f"--out-bag {out_bag} {relation} {what} {path}; choose another --out-bag")


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------
def _full_topic_name(text: str) -> str:
    """An argparse type: a full ROS topic name, as a bag holds it (bagtools.topic_name_problem)."""
    problem = topic_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"must be a full topic name, e.g. /emotion_replay: {problem}; got {text!r}")
    return text


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-replay", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("bag", type=Path, help="rosbag2 bag folder (sqlite3 or mcap)")
    p.add_argument("--topic", default=None,
                   help="image topic (Image or CompressedImage); default: the bag's only image topic")
    p.add_argument("--out", type=Path, default=None, help="output folder; default: <bag>_replay next to the bag")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("recognition (fer_node's parameters of the same names: same meaning, same defaults)")
    add_setting_option(g, "model_path", "--model")
    add_setting_option(g, "backend", choices=BACKENDS)
    add_setting_option(g, "device")
    add_setting_option(g, "fp16")
    add_setting_option(g, "int8")
    add_setting_option(g, "engine_cache_dir")
    add_setting_option(g, "max_faces", type=number(int, low=1, says="at least 1"))
    add_setting_option(g, "min_face_size_px", type=number(int, low=0, says="a number of pixels >= 0"))
    add_setting_option(g, "face_timeout_s",
                       type=number(low=0.0, low_open=True, finite=True, says="a number of seconds above 0"))
    add_setting_option(g, "neutral_policy", choices=NEUTRAL_POLICIES)
    add_setting_option(g, "smoothing_time_constant_s",
                       type=number(low=0.0, finite=True, says="a number of seconds >= 0"))
    g.add_argument("--max-image-pixels", type=number(int, low=1, says=">= 1"), default=DEFAULT_MAX_PIXELS,
                   help="images declaring more pixels (width x height) are skipped undecoded, as fer_node's "
                        "max_image_pixels does")
    g.add_argument("--realtime", action="store_true",
                   help="process at the recorded pace, dropping frames that arrive while busy (like the node)")
    g.add_argument("--max-frames", type=number(int, low=1, says=">= 1"), default=None,
                   help="stop after this many frames; default: all of them")
    o = p.add_argument_group("outputs")
    o.add_argument("--labels", type=Path, default=None,
                   help="ground-truth label file (see fer_ros.tools.labels): adds accuracy, recall, confusion "
                        "matrix; default: none")
    o.add_argument("--out-bag", type=Path, default=None,
                   help="write a copy of the bag with the FaceEmotionArray messages added here; default: none")
    o.add_argument("--out-bag-storage", choices=STORAGES, default=None,
                   help="storage of --out-bag; default: the input bag's storage")
    o.add_argument("--emotion-topic", type=_full_topic_name, default=EMOTION_TOPIC,
                   help="topic of the FaceEmotionArray messages in --out-bag (where a fer_node in the root "
                        "namespace publishes them)")
    o.add_argument("--contact-sheet", type=number(int, low=0, says=">= 0"), default=0, metavar="N",
                   help="also write contact_sheet.png with N annotated frames spread over the frames replayed "
                        "(the bag, or its first --max-frames); N of them whenever N frames were replayed; 0 = none")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out-bag")
    return p


def recognizer_settings(args) -> RecognizerSettings:
    """The recognizer settings of the command line (args from get_args_parser). Inference threads are left to the
    backend (0) and the window to the model (0), as fer-replay has no options for them."""
    return RecognizerSettings(
        model_path=str(args.model or ""), backend=args.backend, device=args.device, fp16=args.fp16,
        int8=args.int8, engine_cache_dir=str(args.engine_cache_dir or ""), num_threads=0, max_faces=args.max_faces,
        min_face_size_px=args.min_face_size_px, window_length=0, neutral_policy=args.neutral_policy,
        smoothing_time_constant_s=args.smoothing_time_constant_s, face_timeout_s=args.face_timeout_s)


def run(args, recognizer=None) -> dict:
    """Replay as the CLI does (args from get_args_parser); returns the summary dict. `recognizer` replaces the
    model loading (tests, other pipelines). Raises ReplayError, SetupError, BagError or LabelError for user
    errors."""
    labels = load_labels(args.labels) if args.labels else None
    out_dir = args.out or Path(os.path.abspath(args.bag)).parent / (bag_name(args.bag) + "_replay")
    if not args.bag.exists():
        raise BagError(f"bag {args.bag} does not exist")
    emotion_writer = None
    if args.out_bag:
        _check_out_bag(args.out_bag, args.bag, out_dir)  # first: --overwrite does not make these an --out-bag
        if args.out_bag.exists() and not args.overwrite:
            raise ReplayError(f"{args.out_bag} already exists; choose another --out-bag or pass --overwrite")
        emotion_writer = EmotionBagWriter(args.emotion_topic)
    # Bag errors before the model loads, and the total for the sheet; a damaged bag is reported by the replay.
    with ImageBagReader(args.bag, args.topic, warn_salvaged=False) as probe:
        total, topic = probe.message_count, probe.topic
    if emotion_writer is not None:  # what cannot be copied into the output bag is said before the model loads
        emotion_writer.open(args.bag, args.out_bag, args.out_bag_storage or bag_storage(args.bag), args.overwrite)
    try:
        problem = make_out_dir(out_dir, OUT_FILES)  # before the model loads
        if problem:
            raise ReplayError(problem)
        return _replay_and_write(args, recognizer, labels, total, topic, out_dir, emotion_writer)
    finally:
        if emotion_writer is not None:  # an output bag the replay did not get to write is removed
            emotion_writer.discard()


def _replay_and_write(args, recognizer, labels: LabelSet | None, total: int, topic: str, out_dir: Path,
                      emotion_writer: EmotionBagWriter | None) -> dict:
    """The model loaded (unless `recognizer` is given), the replay, and its outputs written; returns the summary."""
    model_name, backend = "", ""
    if recognizer is None:
        recognizer, backend, model_dir = build_recognizer(recognizer_settings(args))
        model_name = str(model_dir)
    try:
        if labels is not None and getattr(recognizer, "class_names", None):
            labels.check_classes(recognizer.class_names)
        # the sheet's frames are spread over those the replay reaches: --max-frames cuts the topic
        sheet = ContactSheetCollector(min(total, args.max_frames or total), args.contact_sheet) \
            if args.contact_sheet else None
        hooks = [h.on_frame for h in (sheet, emotion_writer) if h is not None]

        def on_frame(frame, results, record):
            for h in hooks:
                h(frame, results, record)

        result = replay_bag(args.bag, recognizer, topic=topic, labels=labels, realtime=args.realtime,
                            smoothing_time_constant_s=args.smoothing_time_constant_s, max_frames=args.max_frames,
                            on_frame=on_frame if hooks else None, progress=not args.quiet,
                            max_pixels=args.max_image_pixels)
    finally:
        if model_name:  # we made it, we close it
            recognizer.close()
    result.model, result.backend = model_name, backend
    return write_outputs(result, out_dir, labels, sheet, emotion_writer, args)


def write_outputs(result: ReplayResult, out_dir: Path, labels: LabelSet | None, sheet, emotion_writer, args) -> dict:
    """Write the output bag when asked (first: a failure with the other files keeps it), then the CSV, JSON,
    summary, plots (and the contact sheet when asked); returns the summary. The plots of PLOT_FILES already in
    `out_dir` are removed first. An output bag that cannot be written is left out, its error in the summary's
    "out_bag_error". ReplayError when the files cannot be written (a full disk)."""
    summary = summarize(result)
    outputs: dict[str, str] = {}
    if emotion_writer is not None:
        try:
            summary["emotion_messages"] = emotion_writer.write()
            outputs["out_bag"] = str(emotion_writer.out_bag)
        except BagError as exc:  # the other outputs stand; the caller reports it
            summary["out_bag_error"] = str(exc)
    try:
        return _write_files(result, out_dir, labels, sheet, summary, outputs)
    except OSError as exc:
        kept = f"; the --out-bag {outputs['out_bag']} was written" if "out_bag" in outputs else ""
        raise ReplayError(f"writing the results to {out_dir} failed ({exc}){kept}; free some space or choose "
                          "another --out") from None


def _write_files(result: ReplayResult, out_dir: Path, labels: LabelSet | None, sheet, summary: dict,
                 outputs: dict[str, str]) -> dict:
    """write_outputs' files in `out_dir`; returns the summary with its "outputs"."""
    from fer_ros import plots
    out_dir.mkdir(parents=True, exist_ok=True)
    plots.remove_plots(out_dir, PLOT_FILES)
    names = result.class_names
    outputs.update(frames_csv=str(write_frames_csv(out_dir / "frames.csv", result.frames, names)),
                   results_json=str(write_results_json(out_dir / "results.json", result.frames)))
    if result.frames and names:
        tracks = timeline_tracks(result)
        outputs["timeline_png"] = str(plots.plot_timeline(out_dir / "timeline.png", tracks, names,
                                                          title=f"{bag_name(result.bag)} {result.topic}",
                                                          max_faces=TIMELINE_FACES))
        _say_tracks_left_out(len(tracks))
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
    summary["outputs"] = outputs
    write_json(out_dir / "summary.json", summary, indent=2)
    outputs["summary_json"] = str(out_dir / "summary.json")
    return summary


def _say_tracks_left_out(tracks: int) -> None:
    """One log line when timeline.png cannot show every face track with scores (more than TIMELINE_FACES)."""
    if tracks > TIMELINE_FACES:
        log.info(f"timeline.png shows the {TIMELINE_FACES} longest of {tracks} face tracks; "
                 f"{tracks - TIMELINE_FACES} left out of it (frames.csv and results.json have every track)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(get_args_parser(), argv, "fer-replay: error")
    if args is None:
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        summary = run(args)
    except (ReplayError, SetupError, BagError, LabelError) as exc:
        print(f"fer-replay: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fer-replay: error: {exc}; check that --out (and --out-bag) can be written, with room for the results",
              file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"results in {Path(summary['outputs']['summary_json']).parent}")
    if summary.get("out_bag_error"):
        print(f"fer-replay: error: {summary['out_bag_error']}", file=sys.stderr)
        return 2
    if summary["interrupted"]:
        print(f"fer-replay: interrupted after {summary['frames']['processed']} frames; those are summarised above",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
