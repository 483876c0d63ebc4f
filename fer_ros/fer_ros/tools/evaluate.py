"""fer-eval: score a trained model on a labelled face dataset, the dataset it was trained on or any other.

    fer-eval --model fer_ros/models/ckplus8_default --data ../shared/data/ckplus
    fer-eval --model my_model --data my_folders --out runs/eval_mine --no-neutral-samples

The data folder is read in either layout the training script reads (see fer_ros.training.data.datasets): the
official CK+ release, or class folders <class>/S<subject>_<sequence>_<frame>.png with the neutral first frames in
neutral/. Every image goes through the node's landmarker (IMAGE mode) and crop (fer_ros.training.data.cache, cached
on disk), then the node's preprocessing (LBP clip of the last T frames, difference image neutral -> newest frame)
and the node's inference engine. A sequence without a neutral frame is scored as the node scores a face without a
neutral reference: geo_valid = 0 (appearance network alone).

Samples:
- sequence: one per labelled sequence: its neutral frame (reference) and its last T frames;
- frame: where a sequence has several labelled frames, each one as the newest frame of a window of the frames up
  to it (the earliest repeated to fill T), as the node sees the expression arrive;
- neutral: every neutral frame as a still face (the frame repeated T times, its own reference), labelled
  "neutral"; scored for models with a neutral class (`--no-neutral-samples` leaves them out: 7-class data).

Outputs in --out: report.json (every figure, the model manifest, the dataset's counts, per-sample predictions),
predictions.csv, confusion_matrix.png (sequences), confusion_matrix_frames.png (frames, when they apply). The last
line printed is `accuracy A on N sequences (M classes)`.

Class sets: a prediction of a class the data lacks (e.g. neutral from an 8-class model on 7-class data) is a
miss; the accuracy with the model restricted to the data's classes is reported too. Data classes the model lacks
are reported (counts and what the model called them) and left out of the accuracy.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fer_ros import metrics
from fer_ros.classes import NEUTRAL

PROG = "fer-eval"
MAX_EXAMPLES = 5  # file names listed per kind of problem


class EvalError(RuntimeError):
    """A user error: the message says what was wrong and what to do (printed as one line, exit status 2)."""


@dataclass
class Sample:
    """One scored input. kind: "sequence", "frame" or "neutral"; key: S<subject>_<sequence> (frame samples add
    the frame file's name); probs: (K,) in the model's class order; has_neutral: a neutral reference was used."""

    kind: str
    key: str
    subject: str
    true_label: str
    newest: str
    has_neutral: bool
    probs: list[float] = field(default_factory=list)
    pred_label: str = ""


@dataclass
class PreparedData:
    """Samples ready for the engine plus what could not be used."""

    samples: list[Sample]
    clips: np.ndarray          # (N, 1, T, S, S) float32
    geos: np.ndarray           # (N, C, G, G) float32
    valid: np.ndarray          # (N,) float32
    counts: dict[str, Any]


# --------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------
def open_model(model: str | Path | None, backend: str = "auto", device: str = "auto", fp16: bool = False,
               engine_cache_dir: str | Path | None = None):
    """(engine, manifest, model directory) through the node's front door (runtime.open_engine) with the node's
    options: backend, device, fp16, engine cache folder; `model` None is the shipped default. Raises EvalError
    with what to do."""
    from fer_ros.runtime import RecognizerSettings, SetupError, open_engine
    settings = RecognizerSettings(model_path=str(model or ""), backend=backend, device=device, fp16=fp16,
                                  engine_cache_dir=str(engine_cache_dir or ""), num_threads=0)
    try:
        engine, model_dir = open_engine(settings)
    except SetupError as exc:
        raise EvalError(str(exc)) from None
    return engine, engine.manifest, model_dir


# --------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------
def open_dataset(root: str | Path, window_length: int, neutral_samples: bool = True, borrow_neutral: bool = True):
    """load_dataset with checks that turn a missing or empty folder into a clear EvalError."""
    from fer_ros.training.data.datasets import IMAGE_SUFFIXES, DatasetError, load_dataset
    root = Path(root).expanduser()
    if not root.exists():
        raise EvalError(f"data folder not found: {root}; pass --data <folder> in the CK+ release layout or as "
                        f"class folders <class>/S<subject>_<sequence>_<frame>.png")
    if not root.is_dir():
        raise EvalError(f"--data {root} is a file; pass the dataset's folder")
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.rglob("*") if p.is_file()):
        raise EvalError(f"data folder {root} holds no images; expected the CK+ release layout "
                        f"(cohn-kanade-images/, Emotion/) or class folders <class>/S<subject>_<sequence>_<frame>.png")
    try:
        return load_dataset(root, frames=window_length, with_neutral_sequences=neutral_samples,
                            borrow_neutral=borrow_neutral)
    except DatasetError as exc:
        raise EvalError(str(exc)) from None
    except OSError as exc:
        raise EvalError(f"cannot read the data folder {root}: {exc}") from None


def _window(frames: list[str], length: int) -> list[str]:
    """The last `length` of `frames`, the earliest repeated in front when there are fewer."""
    w = list(frames[-length:])
    while len(w) < length:
        w.insert(0, w[0])
    return w


@contextlib.contextmanager
def _quiet_opencv():
    """OpenCV's own log lines off (it prints decoder errors for every broken file) for the block."""
    import cv2
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is None:
        yield
        return
    level = logging_api.getLogLevel()
    logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_api.setLogLevel(level)


def _unusable_reason(path: str) -> str:
    """Why an image the cache could not use failed: "unreadable" (no decodable image) or "no_face"."""
    import cv2
    try:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    return "unreadable" if img is None or img.size == 0 else "no_face"


def prepare(ds, manifest, cache_dir: str | Path | None, frame_level: bool = True, progress: bool = True,
            landmarker=None) -> PreparedData:
    """Landmarks + crops for every image (cached), then the clip / difference image of every sample, exactly as
    the node builds them. Sequences whose frames are unusable are counted and left out; an unusable neutral
    frame makes the sequence one without a neutral reference."""
    from fer_ros.crop import CropConfig
    from fer_ros.training.data.cache import build_cache
    from fer_ros.landmarker import LandmarkerError
    from fer_ros.lbp import lbp
    from fer_ros.preprocess import FaceSample, make_clip, make_geo

    crop_cfg = CropConfig.from_spec(manifest.preprocess["crop"])
    t = manifest.window_length
    paths = sorted({str(p) for s in ds.sequences for p in s.peaks} |
                   {str(s.neutral) for s in ds.sequences if s.neutral is not None})
    with _quiet_opencv():  # unreadable files are counted and reported below, not logged by OpenCV
        try:
            cache = build_cache([Path(p) for p in paths], crop_cfg, cache_dir, progress=progress,
                                landmarker=landmarker)
        except LandmarkerError as exc:
            raise EvalError(str(exc)) from None
    index = cache.index()
    problems: dict[str, list[str]] = {"unreadable": [], "no_face": []}
    usable: dict[str, bool] = {}
    with _quiet_opencv():
        for p in paths:
            usable[p] = bool(cache.ok[index[p]])
            if not usable[p]:
                problems[_unusable_reason(p)].append(p)
    samples_cache: dict[str, FaceSample] = {}

    def sample(p: str) -> FaceSample:
        if p not in samples_cache:
            i = index[p]
            gray = cache.gray[i]
            samples_cache[p] = FaceSample(lbp=lbp(gray), gray=gray, points68=cache.points[i])
        return samples_cache[p]

    out: list[Sample] = []
    clips, geos, valid = [], [], []
    skipped_sequences: Counter = Counter()
    neutral_unusable = 0
    missing_neutral = borrowed_neutral = 0
    root = Path(ds.root)

    def rel(p: str) -> str:
        try:
            return str(Path(p).relative_to(root))
        except ValueError:
            return p

    def add(kind: str, key: str, seq, window: list[str], neutral: str | None) -> None:
        ref = sample(neutral).points68 if neutral is not None else None
        geo, ok = make_geo(ref, sample(window[-1]).points68)
        clips.append(make_clip([sample(p) for p in window], manifest.clip_input,
                               sample(neutral).gray if neutral is not None else None))
        geos.append(geo)
        valid.append(ok)
        out.append(Sample(kind=kind, key=key, subject=seq.subject, true_label=seq.label, newest=rel(window[-1]),
                          has_neutral=neutral is not None))

    for seq in ds.sequences:
        peaks = [str(p) for p in seq.peaks]
        bad = [p for p in peaks if not usable[p]]
        if bad:
            skipped_sequences["unreadable" if any(p in problems["unreadable"] for p in bad) else "no_face"] += 1
            continue
        neutral = str(seq.neutral) if seq.neutral is not None else None
        if neutral is not None and not usable[neutral]:
            neutral_unusable += 1
            neutral = None
        is_neutral_sample = seq.label == NEUTRAL and len(set(peaks)) == 1
        if neutral is None and not is_neutral_sample:
            missing_neutral += 1
        borrowed_neutral += int(neutral is not None and seq.neutral_borrowed)
        kind = "neutral" if is_neutral_sample else "sequence"
        add(kind, seq.key, seq, _window(peaks, t), neutral)
        distinct = list(dict.fromkeys(peaks))
        if frame_level and kind == "sequence" and len(distinct) > 1:
            for k in range(len(distinct)):
                add("frame", f"{seq.key}/{Path(distinct[k]).stem}", seq, _window(distinct[:k + 1], t), neutral)

    counts = {
        "images": len(paths),
        "unreadable_images": len(problems["unreadable"]),
        "no_face_images": len(problems["no_face"]),
        "unreadable_examples": [rel(p) for p in problems["unreadable"][:MAX_EXAMPLES]],
        "no_face_examples": [rel(p) for p in problems["no_face"][:MAX_EXAMPLES]],
        "sequences_skipped": dict(skipped_sequences),
        "neutral_frames_unusable": neutral_unusable,
        "sequences_without_neutral": missing_neutral,
        "sequences_neutral_borrowed": borrowed_neutral,
    }
    if out:
        clip_arr = np.stack(clips).astype(np.float32)
        geo_arr = np.stack(geos).astype(np.float32)
    else:
        s = crop_cfg.size
        clip_arr = np.zeros((0, 1, t, s, s), np.float32)
        geo_arr = np.zeros((0, 2, 64, 64), np.float32)
    return PreparedData(out, clip_arr, geo_arr, np.asarray(valid, np.float32), counts)


def predict(engine, data: PreparedData, class_names: Sequence[str], batch_size: int = 64,
            progress: bool = True) -> None:
    """Fill each sample's probs and pred_label with the engine's output, in batches."""
    n = len(data.samples)
    starts = range(0, n, batch_size)
    if progress and n > batch_size:
        from tqdm import tqdm
        starts = tqdm(starts, desc="inference", unit="batch")
    for a in starts:
        b = min(a + batch_size, n)
        probs = np.asarray(engine.predict(data.clips[a:b], data.geos[a:b], data.valid[a:b]), np.float32)
        if probs.shape != (b - a, len(class_names)):
            raise EvalError(f"the model returned scores of shape {probs.shape}, expected {(b - a, len(class_names))}"
                            f"; its manifest does not describe it -- re-export the model")
        for s, p in zip(data.samples[a:b], probs):
            s.probs = [float(v) for v in p]
            s.pred_label = class_names[int(np.argmax(p))]


# --------------------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------------------
def score(samples: Sequence[Sample], model_names: Sequence[str]) -> dict | None:
    """Figures for one set of samples (all of one level): the classification report over the samples whose class
    the model knows (rows: those classes in model order, columns: all model classes), the accuracy with the model
    restricted to the data's classes when it has others, accuracy with and without a neutral reference, and the
    samples of classes the model lacks with what the model called them."""
    if not samples:
        return None
    names = list(model_names)
    known = [s for s in samples if s.true_label in names]
    unknown = [s for s in samples if s.true_label not in names]
    rows = [n for n in names if any(s.true_label == n for s in known)]
    y_true = np.asarray([rows.index(s.true_label) for s in known], np.int64)
    y_pred = np.asarray([names.index(s.pred_label) for s in known], np.int64)
    rep = metrics.classification_report(y_true, y_pred, rows, pred_names=names)
    extra = [n for n in names if n not in rows]
    if extra and known:
        probs = np.asarray([s.probs for s in known], np.float64)
        restricted = metrics.argmax_within(probs, [names.index(n) for n in rows])
        rep["over_data_classes"] = {
            "classes": rows, "left_out": extra,
            **metrics.classification_report(y_true, np.asarray([rows.index(names[i]) for i in restricted]), rows)}
    with_ref = [s.true_label == s.pred_label for s in known if s.has_neutral]
    without = [s.true_label == s.pred_label for s in known if not s.has_neutral]
    rep["with_neutral_reference"] = {"count": len(with_ref),
                                     "accuracy": float(np.mean(with_ref)) if with_ref else None}
    rep["without_neutral_reference"] = {"count": len(without),
                                        "accuracy": float(np.mean(without)) if without else None}
    rep["unknown_classes"] = {
        label: {"count": sum(s.true_label == label for s in unknown),
                "predicted": dict(Counter(s.pred_label for s in unknown if s.true_label == label))}
        for label in sorted({s.true_label for s in unknown})}
    return rep


def emotions_block(samples: Sequence[Sample], model_names: Sequence[str]) -> dict | None:
    """Over the labelled (non-neutral) sequences only, for comparison with 7-class results: plain accuracy
    (a neutral prediction is a miss) and the accuracy with the model restricted to the emotion classes."""
    names = list(model_names)
    if NEUTRAL not in names:
        return None
    emo = [s for s in samples if s.true_label in names and s.true_label != NEUTRAL]
    if not emo:
        return None
    allowed = [i for i, n in enumerate(names) if n != NEUTRAL]
    restricted = metrics.argmax_within(np.asarray([s.probs for s in emo]), allowed)
    return {"count": len(emo),
            "accuracy": float(np.mean([s.pred_label == s.true_label for s in emo])),
            "accuracy_without_neutral_class": float(np.mean([names[i] == s.true_label
                                                              for i, s in zip(restricted, emo)]))}


def build_report(samples: Sequence[Sample], model_names: Sequence[str], ds, counts: dict, manifest,
                 model_dir: Path, backend: str) -> dict:
    """The JSON report: figures per level, neutral frames, class mapping, dataset counts, manifest, samples."""
    names = list(model_names)
    seqs = [s for s in samples if s.kind in ("sequence", "neutral")]
    frames = [s for s in samples if s.kind == "frame"]
    neutral = [s for s in samples if s.kind == "neutral"]
    data_classes = sorted({s.label for s in ds.sequences})
    mapping = metrics.map_classes(data_classes, names)
    by_class = Counter(s.label for s in ds.sequences)
    report: dict[str, Any] = {
        "model": {"dir": str(model_dir), "backend": backend,
                  "manifest": json.loads(manifest.to_json())},
        "data": {"root": str(ds.root), "layout": ds.layout, "subjects": len(ds.subjects()),
                 "labelled_subjects": len({s.subject for s in ds.sequences if s.label != NEUTRAL}),
                 "sequences_by_class": dict(sorted(by_class.items())),
                 "labelled_sequences": sum(v for k, v in by_class.items() if k != NEUTRAL),
                 "neutral_frames": len(ds.neutral_frames),
                 "files_not_in_layout": len(ds.skipped), "files_not_in_layout_examples": ds.skipped[:MAX_EXAMPLES],
                 **counts},
        "class_mapping": {"model_classes": names, "data_classes": data_classes,
                          "unknown_to_model": list(mapping.unknown), "not_in_data": list(mapping.model_only)},
        "sequence_level": score(seqs, names),
        "frame_level": score(frames, names),
        "emotions": emotions_block(seqs, names),
    }
    if NEUTRAL in names:
        called = sum(s.pred_label == NEUTRAL for s in neutral)
        report["neutral"] = {"frames": len(neutral), "called_neutral": called,
                             "share_called_neutral": called / len(neutral) if neutral else None}
    else:
        report["neutral"] = {"frames": len(neutral), "called_neutral": None, "share_called_neutral": None,
                             "note": "the model has no neutral class: neutral frames are not scored"}
    report["samples"] = [asdict(s) for s in samples]
    return report


def summary_line(report: dict) -> str:
    """`accuracy A on N sequences (M classes)`: sequence-level figures over the classes the model knows."""
    seq = report.get("sequence_level") or {}
    acc = seq.get("accuracy")
    n = seq.get("count", 0)
    m = len(seq.get("class_names", []))
    return f"accuracy {acc:.3f} on {n} sequences ({m} classes)" if acc is not None else \
        f"accuracy n/a on {n} sequences ({m} classes)"


def format_report(report: dict) -> list[str]:
    """Human-readable lines (everything but the last summary line)."""
    lines = []
    d = report["data"]
    lines.append(f"data: {d['root']} ({d['layout']}), {d['labelled_sequences']} labelled sequences of "
                 f"{d['labelled_subjects']} subjects, {d['neutral_frames']} neutral frames of {d['subjects']} "
                 f"subjects, {d['images']} images")
    for key, what in (("unreadable_images", "unreadable images skipped"), ("no_face_images", "images without a face "
                      "skipped"), ("files_not_in_layout", "files not named S<subject>_<sequence>_<frame> ignored")):
        if d.get(key):
            ex = d.get(key.replace("_images", "") + "_examples") or d.get(key + "_examples") or []
            lines.append(f"warning: {d[key]} {what}" + (f" (e.g. {', '.join(ex[:3])})" if ex else ""))
    if d.get("sequences_skipped"):
        lines.append("warning: sequences left out: " + ", ".join(f"{v} ({k.replace('_', ' ')})"
                                                                 for k, v in d["sequences_skipped"].items()))
    if d.get("sequences_neutral_borrowed"):
        lines.append(f"{d['sequences_neutral_borrowed']} labelled sequences lack their own neutral first frame: "
                     f"compared with the first frame of the same subject's nearest other sequence")
    if d.get("sequences_without_neutral"):
        lines.append(f"{d['sequences_without_neutral']} labelled sequences have no usable neutral frame: scored "
                     f"without a neutral reference (appearance network only), as the node does")
    cm = report["class_mapping"]
    if cm["unknown_to_model"]:
        unk = (report.get("sequence_level") or {}).get("unknown_classes", {})
        lines.append("warning: data classes unknown to the model, not in the accuracy: " + ", ".join(
            f"{c} ({unk.get(c, {}).get('count', 0)} sequences)" for c in cm["unknown_to_model"]))
    if cm["not_in_data"]:
        lines.append(f"model classes absent from the data (predicting them is a miss): {', '.join(cm['not_in_data'])}")
    for level in ("sequence_level", "frame_level"):
        r = report.get(level)
        if not r or not r["count"]:
            continue
        name = level.replace("_", "-")
        lines.append(f"{name}: accuracy {r['accuracy']:.3f} on {r['count']}, balanced {r['balanced_accuracy']:.3f}")
        if "over_data_classes" in r:
            o = r["over_data_classes"]
            lines.append(f"{name}: accuracy {o['accuracy']:.3f} over the data's {len(o['classes'])} classes "
                         f"(model restricted, without {', '.join(o['left_out'])})")
        if level == "sequence_level":
            for c in r["class_names"]:
                rc, pr = r["recall"][c], r["precision"].get(c)
                lines.append(f"  {c:10s} n={r['support'][c]:4d}  recall {rc:.3f}  precision "
                             + (f"{pr:.3f}" if pr is not None else "n/a"))
            w, wo = r["with_neutral_reference"], r["without_neutral_reference"]
            if wo["count"]:
                lines.append(f"  with neutral reference: {w['count']} "
                             f"({'n/a' if w['accuracy'] is None else format(w['accuracy'], '.3f')}); without: "
                             f"{wo['count']} ({wo['accuracy']:.3f})")
    emo = report.get("emotions")
    if emo:
        lines.append(f"emotion sequences: accuracy {emo['accuracy']:.3f} on {emo['count']} "
                     f"({emo['accuracy_without_neutral_class']:.3f} with the neutral class left out)")
    neu = report["neutral"]
    if neu["frames"] and neu["share_called_neutral"] is not None:
        lines.append(f"neutral frames called neutral: {neu['called_neutral']}/{neu['frames']} "
                     f"({neu['share_called_neutral']:.3f})")
    elif neu["frames"]:
        lines.append(f"{neu['frames']} neutral frames not scored: {neu['note']}")
    return lines


# --------------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------------
def write_predictions_csv(path: Path, samples: Sequence[Sample], class_names: Sequence[str]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "key", "subject", "true_label", "pred_label", "has_neutral", "newest_frame",
                    *[f"p_{n}" for n in class_names]])
        for s in samples:
            w.writerow([s.kind, s.key, s.subject, s.true_label, s.pred_label, int(s.has_neutral), s.newest,
                        *[f"{p:.6f}" for p in s.probs]])
    return path


def write_outputs(report: dict, samples: Sequence[Sample], class_names: Sequence[str], out_dir: Path) -> dict:
    from fer_ros import plots
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {"predictions_csv": str(write_predictions_csv(out_dir / "predictions.csv", samples, class_names))}
    for level, name in (("sequence_level", "confusion_matrix.png"), ("frame_level", "confusion_matrix_frames.png")):
        r = report.get(level)
        if r and r["count"]:
            title = f"{report['model']['manifest']['name']} on {Path(report['data']['root']).name} ({level.replace('_', ' ')})"
            outputs[level + "_png"] = str(plots.plot_confusion_matrix(
                np.asarray(r["confusion_matrix"]), r["class_names"], out_dir / name, title=title,
                pred_names=r["pred_names"]))
    report["outputs"] = dict(outputs, report_json=str(out_dir / "report.json"))
    report["summary"] = summary_line(report)
    with open(out_dir / "report.json", "w") as fh:
        json.dump(report, fh, indent=2)
    return report["outputs"]


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------
def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Score a trained fer_ros model on a labelled face dataset "
                                "(CK+ release layout or class folders): accuracy per sequence and per frame, "
                                "per-class recall and precision, confusion matrix PNG, JSON report.")
    p.add_argument("--model", type=Path, default=None,
                   help="model directory (manifest.json + model.onnx); default: the shipped ckplus8_default")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (CK+ release layout or class folders)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: runs/eval/<model name>-<data folder name>)")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"),
                   help="inference engine backend, as for the node (default: auto)")
    p.add_argument("--device", default="auto", help="device for the engine (auto, cpu, cuda, cuda:0)")
    p.add_argument("--fp16", action="store_true", help="half precision where the backend supports it (GPU)")
    p.add_argument("--engine-cache-dir", type=Path, default=None,
                   help="folder for built engines (TensorRT plans), as for the node")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="landmark/crop cache folder (default: <out>/cache; keep it out of version control)")
    p.add_argument("--no-cache", action="store_true", help="compute landmarks and crops without a disk cache")
    p.add_argument("--no-neutral-samples", action="store_true",
                   help="do not score neutral frames as samples of their own (7-class data); they still serve "
                        "as neutral references")
    p.add_argument("--own-neutral-only", action="store_true",
                   help="score a sequence without its own neutral first frame without a reference, instead of "
                        "with the first frame of the same subject's nearest other sequence")
    p.add_argument("--no-frame-level", action="store_true", help="sequence level only")
    p.add_argument("--batch-size", type=int, default=64, help="samples per engine call (default 64)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args, landmarker=None) -> dict:
    """Evaluate as the CLI does and return the report (written to args.out). Raises EvalError for user errors."""
    if args.batch_size < 1:
        raise EvalError(f"--batch-size must be at least 1, got {args.batch_size}")
    engine, manifest, model_dir = open_model(args.model, args.backend, args.device, args.fp16, args.engine_cache_dir)
    names = list(manifest.class_names)
    ds = open_dataset(args.data, manifest.window_length, neutral_samples=not args.no_neutral_samples,
                      borrow_neutral=not args.own_neutral_only)
    out_dir = Path(args.out) if args.out else Path("runs") / "eval" / f"{manifest.name}-{Path(args.data).resolve().name}"
    cache_dir = None if args.no_cache else (args.cache_dir or out_dir / "cache")
    progress = not args.no_progress
    data = prepare(ds, manifest, cache_dir, frame_level=not args.no_frame_level, progress=progress,
                   landmarker=landmarker)
    if not data.samples:
        c = data.counts
        raise EvalError(f"no usable samples in {args.data}: {c['unreadable_images']} unreadable images, "
                        f"{c['no_face_images']} images without a face out of {c['images']}; check the images")
    predict(engine, data, names, batch_size=args.batch_size, progress=progress)
    backend = getattr(engine, "backend", None) or getattr(engine, "name", None) or args.backend
    report = build_report(data.samples, names, ds, data.counts, manifest, model_dir, str(backend))
    if not (report["sequence_level"] or {}).get("count"):
        unknown = ", ".join(report["class_mapping"]["unknown_to_model"]) or "none"
        write_outputs(report, data.samples, names, out_dir)
        raise EvalError(f"no sequence in {args.data} has a class the model knows (model: {', '.join(names)}; "
                        f"data classes unknown to it: {unknown}); report written to {out_dir / 'report.json'}")
    write_outputs(report, data.samples, names, out_dir)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        report = run(args)
    except EvalError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    for line in format_report(report):
        print(line)
    print(f"report: {report['outputs']['report_json']}, confusion matrix: "
          f"{report['outputs'].get('sequence_level_png', 'n/a')}")
    print(report["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
