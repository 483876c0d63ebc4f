"""fer-make-bag (`ros2 run fer_ros make_bag`): a rosbag2 bag of camera images from a video file, an image folder
or a CK+ sequence (plus its label file), without a ROS install.

    fer-make-bag video clip.mp4 out_bag --rate-hz 30                  # sensor_msgs/Image, bgr8, sqlite3
    fer-make-bag folder frames/ out_bag --rate-hz 10 --storage mcap    # images sorted by name
    fer-make-bag video clip.mp4 out_bag --compressed jpeg              # sensor_msgs/CompressedImage
    fer-make-bag ckplus CK+/cohn-kanade-images/S005/001 out_bag        # one CK+ sequence + out_bag.labels.csv
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from fer_ros.argtypes import HelpFormatter, number, parse_args
from fer_ros.image_codec import ENCODINGS
from fer_ros.tools.bagtools import DEFAULT_TOPIC, STORAGES, BagError, BagWriteInfo, write_image_bag
from fer_ros.tools.frame_sources import (ckplus_labels, find_ckplus_sequence, folder_frames, image_files,
                                         labels_path_for, video_frames, video_info)
from fer_ros.tools.labels import LabelRange, LabelSet, save_labels

# the encodings image_codec can write (it reads Bayer images but does not make them)
WRITABLE_ENCODINGS = tuple(e for e in ENCODINGS if not e.startswith("bayer_"))
MAX_STAMP_S = 2**31 - 1  # a header stamp's seconds are an int32


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-make-bag",
        description="Make a rosbag2 bag (sqlite3 or mcap) of camera images from a video file, an image folder or a "
                    "CK+ sequence (plus its label file). No ROS install needed.",
        formatter_class=HelpFormatter)
    p.add_argument("source_kind", choices=("video", "folder", "ckplus"),
                   help="video: a video file OpenCV reads; folder: images sorted by name; ckplus: one CK+ sequence "
                        "folder (official release) or, with --sequence, a class-folder root")
    p.add_argument("source", type=Path, help="the video file or folder")
    p.add_argument("out", type=Path, help="output bag folder")
    p.add_argument("--rate-hz", type=number(low=0.0, low_open=True, finite=True, says="a positive rate"), default=None,
                   help="frames per second; default: the video's own rate, 30 for folders, 10 for CK+")
    p.add_argument("--topic", default=DEFAULT_TOPIC, help="image topic (\"/compressed\" is appended with --compressed)")
    p.add_argument("--storage", choices=STORAGES, default="sqlite3", help="bag storage format")
    p.add_argument("--encoding", choices=WRITABLE_ENCODINGS, default="bgr8", metavar="ENCODING",
                   help=f"sensor_msgs/Image encoding: {', '.join(WRITABLE_ENCODINGS)}")
    p.add_argument("--compressed", choices=("jpeg", "png"), default=None,
                   help="write sensor_msgs/CompressedImage in this format; default: raw sensor_msgs/Image")
    p.add_argument("--frame-id", default="camera", help="header frame_id")
    p.add_argument("--scale", type=number(low=0.0, low_open=True, finite=True, says="a positive number"), default=1.0,
                   help="resize frames by this factor (e.g. 3 for tiny clips)")
    p.add_argument("--max-frames", type=number(int, low=1, says=">= 1"), default=None,
                   help="stop after this many frames; default: all of the source's")
    p.add_argument("--start-time-s",
                   type=number(low=0.0, high=MAX_STAMP_S, finite=True,
                               says=f"a time in s from 0 to {MAX_STAMP_S} (a header stamp's seconds are an int32)"),
                   default=1_700_000_000.0, help="stamp of the first frame (s)")
    p.add_argument("--sequence", default=None,
                   help="ckplus with class folders: the sequence, e.g. S011_006; default: none (SOURCE is one "
                        "sequence folder)")
    p.add_argument("--neutral-frames", type=number(int, low=0, says=">= 0"), default=1,
                   help="ckplus: first frames labelled neutral (with --sequence: of the neutral/ folder's "
                        "frames only)")
    p.add_argument("--peak-frames", type=number(int, low=0, says=">= 0"), default=3,
                   help="ckplus: last frames labelled with the emotion")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output bag (and, for ckplus, its label file)")
    return p


def first_frames(labels: LabelSet, n_frames: int) -> LabelSet:
    """Frame-range `labels` cut to the first `n_frames` frames: a range across the cut ends there, a range after it
    is left out."""
    return LabelSet(labels.unit, [LabelRange(r.start, min(r.end, n_frames), r.label, r.face)
                                  for r in labels.ranges if r.start < n_frames])


def check_output(out: Path, sources: Iterable[Path]) -> None:
    """Refuses an output bag path that is a source (a video file, an image folder) or a folder holding one: with
    --overwrite the new bag would replace it, deleting the source."""
    target = out.resolve()
    for source in sources:
        resolved = source.resolve()
        if target == resolved or target in resolved.parents:
            relation = "is" if target == resolved else "holds"
            raise BagError(f"the output {out} {relation} the source {source}: writing the bag would delete the "
                           "source; choose another output")


def check_label_file(path: Path, overwrite: bool) -> None:
    """Refuses to replace an existing label file without --overwrite (the same rule as for the bag)."""
    if path.exists() and not overwrite:
        raise BagError(f"the label file {path} already exists; choose another output or pass --overwrite")


def check_last_stamp(start_time_s: float, rate_hz: float, total: int | None) -> None:
    """Refuses a start time from which the last frame's stamp would not fit a header stamp."""
    if total:
        last_s = start_time_s + (total - 1) / rate_hz
        if last_s >= MAX_STAMP_S + 1:
            raise BagError(f"the stamp of the last frame would be {last_s:.0f} s, past {MAX_STAMP_S} s (a header "
                           "stamp's seconds are an int32); choose an earlier --start-time-s")


def write_new_bag(out: Path, frames: Iterable[np.ndarray], source: Path, **options) -> BagWriteInfo:
    """write_image_bag(out, frames, **options): the bag reaches `out` only once every frame is written, so a run
    that fails leaves no bag behind and an existing one (--overwrite) as it was. A source that gives no frame
    (every image unreadable) is an error naming `source`."""
    given = 0
    finished = False

    def counted() -> Iterator[np.ndarray]:
        nonlocal given, finished
        for frame in frames:
            given += 1
            yield frame
        finished = True

    try:
        return write_image_bag(out, counted(), require_frames=True, **options)
    except BagError:
        if finished and not given:
            kept = f"; {out} was left as it was" if out.exists() else ""
            raise BagError(f"no frames could be read from {source}; no bag was written{kept}") from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(get_args_parser(), argv, "fer-make-bag: error")
    if args is None:
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        labels = None
        if args.source_kind == "video":
            vi = video_info(args.source)
            rate = args.rate_hz or (vi.fps if vi.fps > 0 else 30.0)
            total = min(vi.frames, args.max_frames or vi.frames) or None
            frames: Iterable[np.ndarray] = video_frames(args.source, args.scale, args.max_frames)
            sources = [args.source]
        elif args.source_kind == "folder":
            files = image_files(args.source)
            rate, total = args.rate_hz or 30.0, min(len(files), args.max_frames or len(files))
            frames = folder_frames(files, args.scale, args.max_frames)  # --max-frames counts the frames read
            sources = [args.source]
        else:
            seq = find_ckplus_sequence(args.source, args.sequence)
            files = seq.files[:args.max_frames]
            rate, total = args.rate_hz or 10.0, len(files)
            frames = folder_frames(files, args.scale)
            sources = [args.source, *sorted({f.parent for f in files})]  # class folders: the frames' folders too
            # the labels of the whole sequence (its peak is its last frames), then those of the frames written
            labels = first_frames(ckplus_labels(len(seq.files), seq.label, args.neutral_frames, args.peak_frames,
                                                seq.neutral_files), len(files))
        check_output(args.out, sources)
        label_path = labels_path_for(args.out)
        if labels is not None:
            check_label_file(label_path, args.overwrite)
        check_last_stamp(args.start_time_s, rate, total)
        info = write_new_bag(args.out, frames, args.source, rate_hz=rate, topic=args.topic, storage=args.storage,
                             encoding=args.encoding, compressed=args.compressed, frame_id=args.frame_id,
                             start_time_s=args.start_time_s, overwrite=args.overwrite, progress=True, total=total)
        if labels is not None:
            label_path.unlink(missing_ok=True)  # the label file of a bag this one replaced
        size = f"{info.size_px[0]}x{info.size_px[1]} px" if info.size_px else "?"
        print(f"wrote {info.frames} frames ({size}, {rate:g} Hz) on {info.topic} [{info.msgtype}] to {info.path} "
              f"({info.storage})")
        if labels is not None:
            if info.frames != len(files):  # unreadable frames were skipped: ranges would not match
                raise BagError(f"{len(files) - info.frames} frames of the sequence could not be read; "
                               "no label file written")
            if not labels.ranges:  # fer-replay refuses a label file with no range
                print(f"no label file: none of the {info.frames} frames written lies in a labelled range (no "
                      f"neutral frame among them, and no peak frame: the sequence has no label, --peak-frames is 0 "
                      f"or --max-frames ends before its peak)")
                return 0
            lp = save_labels(label_path, labels,
                             comment=f"CK+ sequence {seq.subject}_{seq.sequence}, label {seq.label or 'none'}; "
                                     f"frame ranges of {info.topic} in {info.path.name}")
            print(f"wrote labels to {lp}")
    except BagError as exc:
        print(f"fer-make-bag: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
