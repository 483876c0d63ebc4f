"""fer-eval's figures and files: accuracy, per-class recall and precision and the confusion matrix per level
(sequences, frames), the neutral frames, the class mapping between model and data, the terminal lines, and
report.json, predictions.csv and the confusion-matrix PNGs."""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fer_ros import metrics
from fer_ros.classes import NEUTRAL
from fer_ros.tools.eval_data import MAX_EXAMPLES, Miss, Sample
from fer_ros.strict_json import write_json

# the confusion-matrix PNG of each level; all are removed from the output folder before a run writes its own
# (plots.remove_plots), so one left by another run is never taken for this one's
PLOT_FILES = {"sequence_level": "confusion_matrix.png", "frame_level": "confusion_matrix_frames.png"}


def score(samples: Sequence[Sample], model_names: Sequence[str],
          data_classes: Sequence[str] | None = None) -> dict | None:
    """Figures for one set of samples (all of one level): the classification report over the samples whose class
    the model knows (rows: those classes in model order, columns: all model classes), the accuracy with the model
    restricted to the data's classes (`data_classes`, default: those of the samples; a class whose every face was
    missed is still one of the data's) when it has others, accuracy with and without a neutral reference, and the
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
    in_data = set(rows) | set(data_classes or ())
    allowed = [n for n in names if n in in_data]
    extra = [n for n in names if n not in in_data]
    if extra and known:
        probs = np.asarray([s.probs for s in known], np.float64)
        restricted = metrics.argmax_within(probs, [names.index(n) for n in allowed])
        rep["over_data_classes"] = {
            "classes": allowed, "left_out": extra,
            **metrics.classification_report(np.asarray([allowed.index(s.true_label) for s in known], np.int64),
                                            np.asarray([allowed.index(names[i]) for i in restricted]), allowed)}
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


def headline(samples: Sequence[Sample], misses: Sequence[Miss], model_names: Sequence[str]) -> dict:
    """The headline figure: right answers over every sample of a class the model knows, a sample whose face was
    not found (or whose image could not be read) counting as a wrong one."""
    names = set(model_names)
    scored = [s for s in samples if s.true_label in names]
    missed = [m for m in misses if m.true_label in names]
    right = sum(s.pred_label == s.true_label for s in scored)
    total = len(scored) + len(missed)
    return {"accuracy": right / total if total else None, "samples": total, "scored": len(scored),
            "missed": len(missed), "missed_by_class": dict(Counter(m.true_label for m in missed))}


def references(samples: Sequence[Sample]) -> dict:
    """How many samples were compared with which reference (own / other / self / none), all and neutral only."""
    return {"all": dict(Counter(s.reference for s in samples)),
            "neutral": dict(Counter(s.reference for s in samples if s.kind == "neutral"))}


def build_report(samples: Sequence[Sample], model_names: Sequence[str], ds, counts: dict, manifest,
                 model_dir: Path, backend: str, misses: Sequence[Miss] = ()) -> dict:
    """The JSON report: the headline (faces not found count as misses, and are listed), figures per level,
    neutral frames, references, class mapping, dataset counts, manifest, samples."""
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
        "headline": headline(seqs, misses, names),
        "misses": [asdict(m) for m in misses],
        "references": references(seqs),
        "sequence_level": score(seqs, names, data_classes),
        "frame_level": score(frames, names, data_classes),
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
    """`accuracy A on N sequences (M classes)` over the classes the model knows, with `; K faces not found, counted
    as misses` when some samples could not be scored (they are in A and N)."""
    seq = report.get("sequence_level") or {}
    head = report.get("headline") or {}
    acc = head.get("accuracy", seq.get("accuracy"))
    n = head.get("samples", seq.get("count", 0))
    mapping = report.get("class_mapping") or {}
    m = (len(set(mapping["data_classes"]) & set(mapping["model_classes"])) if "data_classes" in mapping
         else len(seq.get("class_names", [])))
    missed = head.get("missed", 0)
    tail = f"; {missed} face{'s' if missed != 1 else ''} not found, counted as misses" if missed else ""
    return (f"accuracy {acc:.3f} on {n} sequences ({m} classes{tail})" if acc is not None else
            f"accuracy n/a on {n} sequences ({m} classes{tail})")


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
    misses = report.get("misses") or []
    if misses:
        lines.append(f"{len(misses)} samples without a face (counted as misses): "
                     + ", ".join(m["file"] for m in misses[:MAX_EXAMPLES]) + (", ..." if len(misses) > MAX_EXAMPLES
                                                                              else "") + " (all in report.json)")
    neutral_refs = (report.get("references") or {}).get("neutral") or {}
    if neutral_refs:
        lines.append(f"neutral samples: {neutral_refs.get('other', 0)} compared with another neutral image of the "
                     f"same subject, {neutral_refs.get('self', 0)} only with themselves (no other one in the data)"
                     + (f", {neutral_refs['none']} without a reference" if neutral_refs.get("none") else ""))
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


def write_predictions_csv(path: Path, samples: Sequence[Sample], class_names: Sequence[str]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "key", "subject", "true_label", "pred_label", "has_neutral", "reference", "newest_frame",
                    *[f"p_{n}" for n in class_names]])
        for s in samples:
            w.writerow([s.kind, s.key, s.subject, s.true_label, s.pred_label, int(s.has_neutral), s.reference,
                        s.newest, *[f"{p:.6f}" for p in s.probs]])
    return path


def write_outputs(report: dict, samples: Sequence[Sample], class_names: Sequence[str], out_dir: Path) -> dict:
    """Write report.json (non-finite numbers as null), predictions.csv and the confusion-matrix PNGs into `out_dir`
    (the PNGs of PLOT_FILES already there removed first); returns {output: path}."""
    from fer_ros import plots
    out_dir.mkdir(parents=True, exist_ok=True)
    plots.remove_plots(out_dir, PLOT_FILES.values())
    outputs = {"predictions_csv": str(write_predictions_csv(out_dir / "predictions.csv", samples, class_names))}
    for level, name in PLOT_FILES.items():
        r = report.get(level)
        if r and r["count"]:
            title = (f"{report['model']['manifest']['name']} on {Path(report['data']['root']).name} "
                     f"({level.replace('_', ' ')})")
            outputs[level + "_png"] = str(plots.plot_confusion_matrix(
                np.asarray(r["confusion_matrix"]), r["class_names"], out_dir / name, title=title,
                pred_names=r["pred_names"]))
    report["outputs"] = dict(outputs, report_json=str(out_dir / "report.json"))
    report["summary"] = summary_line(report)
    write_json(out_dir / "report.json", report, indent=2)
    return report["outputs"]
