"""fer-eval: score a trained model on labelled face datasets, the ones it was trained on or any other.

    fer-eval --data ../shared/data/ferplus --data ../shared/data/kdef
    fer-eval --model my_model --data my_folders --out runs/eval_mine --no-neutral-samples

Each data folder is read in any layout the training script reads (fer_ros.training.data.datasets, detected): the
official CK+ release, class folders <class>/S<subject>_<sequence>_<frame>.png with the neutral first frames in
neutral/, FER+ (split folders with label.csv; a FER+ folder with a training split is scored on its held-out
splits) or KDEF photos (the angles of --angles). Every image goes through the node's landmarker (IMAGE mode) and
crop (fer_ros.training.data.cache, cached on disk), then the node's preprocessing (clip of the last T frames, difference
image neutral -> newest frame) and the node's inference engine. A sequence without a neutral frame is scored as the
node scores a face without a neutral reference: geo_valid = 0 (appearance network alone).

Samples:
- sequence: one per labelled sequence: its neutral frame (reference) and its last T frames; a photo (FER+, KDEF)
  is a still face, the photo repeated T times, compared with its session's neutral photo (KDEF) or, where the data
  has no other moment of the face (FER+), with itself, as the node compares a face that kept its expression;
- frame: where a sequence has several labelled frames (class folders; the CK+ release labels its last frame
  alone), each one as the newest frame of a window of the frames up to it (the earliest repeated to fill T), as the
  node sees the expression arrive;
- neutral: every neutral frame or photo as a still face, compared with another neutral image of the same subject
  (another sequence's first frame, the other session's photo) or with itself where there is none (the report says
  how many), labelled "neutral"; scored for models with a neutral class (`--no-neutral-samples` leaves them out).
A reference in which no face is found gives way to the subject's nearest other usable neutral frame of the same
view (a neutral sample's, then to itself).

A sample that cannot be scored (no face found, image unreadable, non-finite scores) is a miss: the answer
"not found", wrong in every figure (a column of its own in the confusion matrices), and listed; each level also
gives the accuracy on the faces found alone. A dataset where no sample can be scored is reported (0 on N).
Outputs in --out (one sub-folder per dataset when several are given): report.json (every figure, the misses, the
model manifest, the dataset's counts, per-sample predictions), predictions.csv, confusion_matrix.png (sequences),
confusion_matrix_frames.png (frames, when they apply). The last line printed per dataset is
`accuracy A on N sequences (M classes)`, followed with `; K faces not found, U unreadable images, J with non-finite
scores, counted as misses` (the parts that apply) when there were.
Exit status: 0; 1 when a dataset had not one sample scored; 2 for a user error (the other datasets are still
scored and reported). An --out that cannot take the outputs (a file, a folder named as one of them, a cache path
that is a file) is one before the model loads; a failure to write them (a full disk) ends that dataset so.

Class sets: a prediction of a class the data lacks (e.g. neutral from an 8-class model on 7-class data) is a
wrong answer; the accuracy with the model restricted to the data's classes is reported too. Data classes the model
lacks are reported (counts and what the model called them) and left out of the accuracy.

This file is the command; the samples are made in eval_data.py, the figures and files in eval_report.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fer_ros.argtypes import HelpFormatter, number, parse_args
from fer_ros.runtime import BACKENDS, add_setting_option
from fer_ros.training.data import kdef
from fer_ros.training.data.samples import unique_names
from fer_ros.tools.eval_data import EvalError, open_dataset, predict, prepare
from fer_ros.tools.eval_report import OUT_FILES, build_report, format_report, write_outputs
from fer_ros.tools.replay_results import make_out_dir
from fer_ros.training.data.cache import cache_dir_problem

PROG = "fer-eval"
DEFAULT_ANGLES = ("S", "HL", "HR")  # KDEF: straight and half profiles, the full profiles (FL, FR) left out


def kdef_angles(text: str) -> tuple[str, ...]:
    """--angles: comma-separated KDEF angle codes (kdef.ANGLES), any case, as an upper-case tuple."""
    angles = tuple(dict.fromkeys(a.strip().upper() for a in text.split(",") if a.strip()))
    wrong = [a for a in angles if a not in kdef.ANGLES]
    if wrong or not angles:
        raise argparse.ArgumentTypeError(f"must be KDEF angles among {','.join(kdef.ANGLES)}, got {text!r}")
    return angles


def open_model(model: str | Path | None, backend: str = "auto", device: str = "auto", fp16: bool = False,
               engine_cache_dir: str | Path | None = None, int8: bool = True):
    """(engine, manifest, model directory) through the node's front door (runtime.open_engine) with the node's
    options: backend, device, fp16, engine cache folder, int8; `model` None is the shipped default. Raises
    EvalError with what to do."""
    from fer_ros.runtime import RecognizerSettings, SetupError, open_engine
    settings = RecognizerSettings(model_path=str(model or ""), backend=backend, device=device, fp16=fp16,
                                  engine_cache_dir=str(engine_cache_dir or ""), num_threads=0, int8=int8)
    try:
        engine, model_dir = open_engine(settings)
    except SetupError as exc:
        raise EvalError(str(exc)) from None
    return engine, engine.manifest, model_dir


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Score a trained fer_ros model on labelled face datasets "
                                "(CK+ release layout, class folders, FER+ or KDEF): accuracy per sequence and per "
                                "frame with faces not found counted as misses, per-class recall and precision, "
                                "confusion matrix PNG, JSON report; one report per dataset.",
                                formatter_class=HelpFormatter)
    add_setting_option(p, "model_path", "--model")
    p.add_argument("--data", type=Path, required=True, action="append",
                   help="dataset folder in any layout fer-train reads; repeat for several datasets")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder; default: runs/eval/<model name>-<data folder name(s)>")
    g = p.add_argument_group("inference (fer_node's parameters of the same names: same meaning, same defaults)")
    add_setting_option(g, "backend", choices=BACKENDS)
    add_setting_option(g, "device")
    add_setting_option(g, "fp16")
    add_setting_option(g, "int8")
    add_setting_option(g, "engine_cache_dir")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="landmark/crop cache folder; default: <out>/cache (keep it out of version control)")
    p.add_argument("--no-cache", action="store_true", help="compute landmarks and crops without a disk cache")
    p.add_argument("--no-neutral-samples", action="store_true",
                   help="do not score neutral frames as samples of their own (7-class data); they still serve "
                        "as neutral references")
    p.add_argument("--own-neutral-only", action="store_true",
                   help="score a sequence without its own neutral first frame without a reference, instead of "
                        "with the first frame of the same subject's nearest other sequence")
    p.add_argument("--angles", type=kdef_angles, default=DEFAULT_ANGLES,
                   help="KDEF camera angles to score, comma-separated, of " + ",".join(kdef.ANGLES) + " (default: "
                        + ",".join(DEFAULT_ANGLES) + ", the frontal and half-profile photos; other layouts ignore it)")
    p.add_argument("--no-frame-level", action="store_true", help="sequence level only")
    p.add_argument("--batch-size", type=number(int, low=1, says="at least 1"), default=64,
                   help="samples per engine call")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def dataset_names(roots: Sequence[Path]) -> list[str]:
    """One name per data folder, for sub-folders and headings: the folder's name, numbered as fer-train numbers
    repeated names (samples.unique_names)."""
    return unique_names([Path(root).expanduser().resolve().name or "data" for root in roots])


def cache_folder(args, out_dir: Path) -> Path | None:
    """The landmark/crop cache folder of a dataset written to `out_dir`: --cache-dir, else <out_dir>/cache; None
    with --no-cache."""
    return None if args.no_cache else (args.cache_dir or out_dir / "cache")


def make_out_dirs(out: Path, names: Sequence[str], args) -> list[Path]:
    """The output folder of each dataset (`out`, or its sub-folder per dataset when several), made; EvalError when
    one cannot take the outputs (replay_results.make_out_dir) or its cache folder is not a folder."""
    dirs = [out] if len(names) == 1 else [out / name for name in names]
    for d in dict.fromkeys([out, *dirs]):  # --out first, then each dataset's folder in it
        problem = make_out_dir(d, OUT_FILES if d in dirs else ())
        if problem:
            raise EvalError(problem)
        cache = cache_folder(args, d) if d in dirs else None
        if cache is not None and (problem := cache_dir_problem(cache)):
            raise EvalError(problem if args.cache_dir else f"the cache folder {cache} exists and is not a folder: "
                            "remove it, or pass --cache-dir or --no-cache")
    return dirs


def evaluate_one(engine, manifest, model_dir: Path, data_root: Path, out_dir: Path, args, landmarker=None) -> dict:
    """Score one data folder and write its outputs to out_dir; returns its report (one where no face was found
    scores 0, every sample a miss). Raises EvalError, also when the outputs cannot be written."""
    names = list(manifest.class_names)
    ds = open_dataset(data_root, manifest.window_length, neutral_samples=not args.no_neutral_samples,
                      borrow_neutral=not args.own_neutral_only, angles=args.angles)
    cache_dir = cache_folder(args, out_dir)
    progress = not args.no_progress
    data = prepare(ds, manifest, cache_dir, frame_level=not args.no_frame_level, progress=progress,
                   landmarker=landmarker, borrow_neutral=not args.own_neutral_only)
    predict(engine, data, names, batch_size=args.batch_size, progress=progress)
    backend = getattr(engine, "label", None) or getattr(engine, "name", None) or args.backend
    report = build_report(data.samples, names, ds, data.counts, manifest, model_dir, str(backend), data.misses)
    try:
        write_outputs(report, data.samples, names, out_dir)
    except OSError as exc:
        raise EvalError(f"writing the results to {out_dir} failed ({exc}); free some space or choose another --out") \
            from None
    if not (report["sequence_level"] or {}).get("count"):
        unknown = ", ".join(report["class_mapping"]["unknown_to_model"]) or "none"
        raise EvalError(f"no sequence in {data_root} has a class the model knows (model: {', '.join(names)}; "
                        f"data classes unknown to it: {unknown}); report written to {out_dir / 'report.json'}")
    return report


def nothing_scored(report: dict) -> bool:
    """Not one sample of the report could be scored (no face found, unreadable images, non-finite scores): its
    headline is 0."""
    head = report["headline"]
    return bool(head["samples"]) and not head["scored"]


def run(args, landmarker=None) -> dict[str, dict | EvalError]:
    """Evaluate as the CLI does: {dataset name: its report, or the EvalError that stopped it} in the order given
    (each report written to its output folder); a dataset that fails leaves the others to be scored. Raises
    EvalError when the model cannot be opened or --out cannot take the outputs (checked before the model loads
    where --out is given)."""
    roots = [Path(d) for d in args.data]
    names = dataset_names(roots)
    out_dirs = make_out_dirs(Path(args.out), names, args) if args.out else None
    engine, manifest, model_dir = open_model(args.model, args.backend, args.device, args.fp16,
                                             args.engine_cache_dir, args.int8)
    if out_dirs is None:  # the default folder is named after the model
        out_dirs = make_out_dirs(Path("runs") / "eval" / f"{manifest.name}-{'+'.join(names)}", names, args)
    reports: dict[str, dict | EvalError] = {}
    for name, root, out_dir in zip(names, roots, out_dirs):
        try:
            reports[name] = evaluate_one(engine, manifest, model_dir, root, out_dir, args, landmarker)
        except EvalError as exc:
            reports[name] = exc
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 every dataset scored; 1 a dataset of which no sample could be scored (no face found: reported,
    0 on N); 2 a user error (a dataset or the model that could not be read, an option), the other datasets
    reported still."""
    args = parse_args(get_args_parser(), argv, f"{PROG}: error")
    if args is None:
        return 2
    try:
        reports = run(args)
    except EvalError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: error: {exc}; check that --out and the cache folder can be written, with room for the results",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    status = 0
    for name, report in reports.items():
        if len(reports) > 1:
            print(f"== {name} ==")
        if isinstance(report, EvalError):
            print(f"{PROG}: error: {report}", file=sys.stderr)
            status = 2
            continue
        for line in format_report(report):
            print(line)
        print(f"report: {report['outputs']['report_json']}, confusion matrix: "
              f"{report['outputs'].get('sequence_level_png', 'n/a')}")
        print(report["summary"])
        if nothing_scored(report):
            d = report["data"]
            print(f"{PROG}: no sample of {d['root']} could be scored ({d['no_face_images']} images without a face, "
                  f"{d['unreadable_images']} unreadable of {d['images']}, {d.get('non_finite_scores', 0)} non-finite "
                  f"scores): all {report['headline']['samples']} counted as misses; check the images and the model",
                  file=sys.stderr)
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
