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
from fer_ros.tools.eval_data import MAX_EXAMPLES, MISS_REASONS, NOT_FOUND, Miss, Sample, loaded_sequences
from fer_ros.strict_json import write_json

# the confusion-matrix PNG of each level; all are removed from the output folder before a run writes its own
# (plots.remove_plots), so one left by another run is never taken for this one's
PLOT_FILES = {"sequence_level": "confusion_matrix.png", "frame_level": "confusion_matrix_frames.png"}
REPORT_JSON, PREDICTIONS_CSV = "report.json", "predictions.csv"
OUT_FILES = (REPORT_JSON, PREDICTIONS_CSV, *PLOT_FILES.values())  # every file a dataset's run writes in its folder


def _right(samples: Sequence[Sample]) -> int:
    return sum(s.pred_label == s.true_label for s in samples)


def _report(y_true: list[int], y_pred: list[int], rows: list[str], pred_names: list[str]) -> dict:
    """metrics.classification_report with a NOT_FOUND column after `pred_names` (a miss is that answer); the
    column has no precision, not being a class."""
    rep = metrics.classification_report(np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64), rows,
                                        pred_names=[*pred_names, NOT_FOUND])
    rep["precision"].pop(NOT_FOUND)
    return rep


def score(samples: Sequence[Sample], model_names: Sequence[str], data_classes: Sequence[str] | None = None,
          misses: Sequence[Miss] = ()) -> dict | None:
    """Figures for one set of samples and misses (all of one level), a miss counting as the answer NOT_FOUND (a
    wrong one) in every figure: the classification report over those whose class the model knows (rows: those
    classes in model order, columns: all model classes, then NOT_FOUND), the accuracy over the samples scored
    alone (`accuracy_on_faces_found`), the accuracy with the model restricted to the data's classes
    (`data_classes`, default: those of the samples and misses) when it has others, accuracy with and without a
    neutral reference, and the samples of classes the model lacks with what the model called them."""
    if not samples and not misses:
        return None
    names = list(model_names)
    known = [s for s in samples if s.true_label in names]
    missed = [m for m in misses if m.true_label in names]
    rows = [n for n in names if any(x.true_label == n for x in [*known, *missed])]
    rep = _report([rows.index(x.true_label) for x in [*known, *missed]],
                  [names.index(s.pred_label) for s in known] + [len(names)] * len(missed), rows, names)
    rep["scored"], rep["missed"] = len(known), len(missed)
    rep["accuracy_on_faces_found"] = _right(known) / len(known) if known else None
    in_data = set(rows) | set(data_classes or ())
    allowed = [n for n in names if n in in_data]
    extra = [n for n in names if n not in in_data]
    if extra and (known or missed):
        restricted = (metrics.argmax_within(np.asarray([s.probs for s in known], np.float64),
                                            [names.index(n) for n in allowed]) if known else [])
        rep["over_data_classes"] = {
            "classes": allowed, "left_out": extra,
            **_report([allowed.index(x.true_label) for x in [*known, *missed]],
                      [allowed.index(names[i]) for i in restricted] + [len(allowed)] * len(missed),
                      allowed, allowed)}
    for key, has in (("with_neutral_reference", True), ("without_neutral_reference", False)):
        right = [s.true_label == s.pred_label for s in known if s.has_neutral == has]
        right += [False for m in missed if m.has_neutral == has]
        rep[key] = {"count": len(right), "accuracy": float(np.mean(right)) if right else None}
    unknown = [s for s in samples if s.true_label not in names]
    unknown_missed = [m for m in misses if m.true_label not in names]
    rep["unknown_classes"] = {
        label: {"count": sum(x.true_label == label for x in [*unknown, *unknown_missed]),
                "predicted": dict(Counter([*(s.pred_label for s in unknown if s.true_label == label),
                                           *(NOT_FOUND for m in unknown_missed if m.true_label == label)]))}
        for label in sorted({x.true_label for x in [*unknown, *unknown_missed]})}
    return rep


def emotions_block(samples: Sequence[Sample], model_names: Sequence[str], misses: Sequence[Miss] = ()) -> dict | None:
    """Over the labelled (non-neutral) sequences only, for comparison with 7-class results, a miss counting as a
    wrong answer: plain accuracy (a neutral prediction is wrong too) and the accuracy with the model restricted to
    the emotion classes."""
    names = list(model_names)
    if NEUTRAL not in names:
        return None
    emo = [s for s in samples if s.true_label in names and s.true_label != NEUTRAL]
    missed = [m for m in misses if m.true_label in names and m.true_label != NEUTRAL]
    if not emo and not missed:
        return None
    count = len(emo) + len(missed)
    allowed = [i for i, n in enumerate(names) if n != NEUTRAL]
    restricted = metrics.argmax_within(np.asarray([s.probs for s in emo]), allowed) if emo else []
    return {"count": count, "missed": len(missed),
            "accuracy": _right(emo) / count,
            "accuracy_without_neutral_class": sum(names[i] == s.true_label for i, s in zip(restricted, emo)) / count}


def headline(samples: Sequence[Sample], misses: Sequence[Miss], model_names: Sequence[str]) -> dict:
    """The headline figure: right answers over every sample of a class the model knows, a sample that could not be
    scored (no face found, image unreadable, non-finite scores) counting as a wrong one; beside it the accuracy on
    the faces found (the samples scored alone)."""
    names = set(model_names)
    scored = [s for s in samples if s.true_label in names]
    missed = [m for m in misses if m.true_label in names]
    right = _right(scored)
    total = len(scored) + len(missed)
    return {"accuracy": right / total if total else None, "samples": total, "scored": len(scored),
            "missed": len(missed), "missed_by_class": dict(Counter(m.true_label for m in missed)),
            "accuracy_on_faces_found": right / len(scored) if scored else None}


def neutral_block(samples: Sequence[Sample], misses: Sequence[Miss], model_names: Sequence[str]) -> dict:
    """The neutral samples: how many, how many were missed, and the share called neutral, a miss not being
    called neutral (for models with a neutral class)."""
    neutral = [s for s in samples if s.kind == "neutral"]
    missed = [m for m in misses if m.kind != "frame" and m.true_label == NEUTRAL]
    frames = len(neutral) + len(missed)
    if NEUTRAL not in model_names:
        return {"frames": frames, "missed": len(missed), "called_neutral": None, "share_called_neutral": None,
                "note": "the model has no neutral class: neutral frames are not scored"}
    called = sum(s.pred_label == NEUTRAL for s in neutral)
    return {"frames": frames, "missed": len(missed), "called_neutral": called,
            "share_called_neutral": called / frames if frames else None}


def references(samples: Sequence[Sample]) -> dict:
    """How many samples were compared with which reference (own / other / self / none), all and neutral only."""
    return {"all": dict(Counter(s.reference for s in samples)),
            "neutral": dict(Counter(s.reference for s in samples if s.kind == "neutral"))}


def build_report(samples: Sequence[Sample], model_names: Sequence[str], ds, counts: dict, manifest,
                 model_dir: Path, backend: str, misses: Sequence[Miss] = ()) -> dict:
    """The JSON report: the headline, figures per level, neutral samples, references, class mapping, dataset
    counts, manifest, samples; a miss (listed: `misses`, `frame_misses`) counts as a wrong answer in every
    figure."""
    names = list(model_names)
    seqs = [s for s in samples if s.kind in ("sequence", "neutral")]
    frames = [s for s in samples if s.kind == "frame"]
    seq_misses = [m for m in misses if m.kind in ("sequence", "neutral")]
    frame_misses = [m for m in misses if m.kind == "frame"]
    loaded = loaded_sequences(ds)  # with the neutral samples --no-neutral-samples leaves out
    scored_classes = sorted({s.label for s in ds.sequences})
    data_classes = sorted({s.label for s in loaded})
    mapping = metrics.map_classes(scored_classes, names)
    by_class = Counter(s.label for s in ds.sequences)
    report: dict[str, Any] = {
        "model": {"dir": str(model_dir), "backend": backend,
                  "manifest": json.loads(manifest.to_json())},
        "data": {"root": str(ds.root), "layout": ds.layout, "subjects": len({s.subject for s in loaded}),
                 "labelled_subjects": len({s.subject for s in ds.sequences if s.label != NEUTRAL}),
                 "sequences_by_class": dict(sorted(by_class.items())),
                 "labelled_sequences": sum(v for k, v in by_class.items() if k != NEUTRAL),
                 "neutral_frames": len(ds.neutral_frames),  # prepare's count (every neutral image) replaces it
                 "files_not_in_layout": len(ds.skipped), "files_not_in_layout_examples": ds.skipped[:MAX_EXAMPLES],
                 **counts},
        "class_mapping": {"model_classes": names, "data_classes": data_classes,
                          "unknown_to_model": list(mapping.unknown),
                          "not_in_data": [c for c in mapping.model_only if c not in data_classes],
                          "not_scored": [c for c in data_classes if c not in scored_classes]},
        "headline": headline(seqs, seq_misses, names),
        "misses": [asdict(m) for m in seq_misses],
        "frame_misses": [asdict(m) for m in frame_misses],
        "references": references(seqs),
        "sequence_level": score(seqs, names, scored_classes, seq_misses),
        "frame_level": score(frames, names, scored_classes, frame_misses),
        "emotions": emotions_block(seqs, names, seq_misses),
        "neutral": neutral_block(seqs, seq_misses, names),
    }
    report["samples"] = [asdict(s) for s in samples]
    return report


# how the summary line names each reason for a miss; any other reason is "not scored"
SUMMARY_REASONS = {"no_face": ("face not found", "faces not found"),
                   "unreadable": ("unreadable image", "unreadable images"),
                   "non_finite_scores": ("with non-finite scores", "with non-finite scores")}


def _unscored(report: dict) -> Counter:
    """The headline's misses by reason (a key of MISS_REASONS)."""
    known = set((report.get("class_mapping") or {}).get("model_classes", []))
    return Counter(m["reason"] for m in report.get("misses") or [] if m["true_label"] in known)


def summary_line(report: dict) -> str:
    """`accuracy A on N sequences (M classes)` over the classes the model knows, with `; K faces not found, U
    unreadable images, J with non-finite scores, counted as misses` (the parts that apply; `counted as a miss` for
    one) when some samples could not be scored (they are in A and N)."""
    seq = report.get("sequence_level") or {}
    head = report.get("headline") or {}
    acc = head.get("accuracy", seq.get("accuracy"))
    n = head.get("samples", seq.get("count", 0))
    mapping = report.get("class_mapping") or {}
    m = (len((set(mapping["data_classes"]) - set(mapping.get("not_scored", []))) & set(mapping["model_classes"]))
         if "data_classes" in mapping else len(seq.get("class_names", [])))
    unscored = _unscored(report)
    order = [*SUMMARY_REASONS, *sorted(set(unscored) - set(SUMMARY_REASONS))]
    parts = [f"{unscored[r]} {SUMMARY_REASONS.get(r, ('not scored', 'not scored'))[unscored[r] != 1]}"
             for r in order if unscored[r]]
    total = sum(unscored.values())
    tail = f"; {', '.join(parts)}, counted as {'a miss' if total == 1 else 'misses'}" if parts else ""
    return (f"accuracy {acc:.3f} on {n} sequences ({m} classes{tail})" if acc is not None else
            f"accuracy n/a on {n} sequences ({m} classes{tail})")


def _misses_line(misses: list[dict], what: str) -> str:
    """`N <what> (reasons): files` for these sequence-level misses."""
    reasons = Counter(m["reason"] for m in misses)
    return (f"{len(misses)} {what} ("
            + ", ".join(f"{v} {MISS_REASONS.get(k, k)}" for k, v in reasons.items()) + "): "
            + ", ".join(m["file"] for m in misses[:MAX_EXAMPLES])
            + (", ..." if len(misses) > MAX_EXAMPLES else "") + " (all in report.json)")


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
    if d.get("non_finite_scores"):
        examples = ", ".join(d.get("non_finite_examples", [])[:3])
        lines.append(f"warning: the model gave non-finite scores for {d['non_finite_scores']} samples, counted as "
                     f"misses (e.g. {examples}); check the model or re-export it")
    known = set(report["class_mapping"]["model_classes"])
    misses = report.get("misses") or []
    for of_model, what in ((True, "samples not scored, counted as misses"),
                           (False, "samples of classes the model lacks not scored, left out of the accuracy")):
        listed = [m for m in misses if (m["true_label"] in known) == of_model]
        if listed:
            lines.append(_misses_line(listed, what))
    replaced = d.get("references_replaced") or {}
    if any(replaced.values()):
        lines.append(f"{sum(replaced.values())} references without a face replaced: {replaced.get('other', 0)} "
                     f"with another neutral frame of the same subject, {replaced.get('self', 0)} (neutral samples) "
                     f"with the sample itself")
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
        lines.append(f"model classes absent from the data (predicting them is wrong): {', '.join(cm['not_in_data'])}")
    if cm.get("not_scored"):
        wrong = "; predicting them is wrong" if set(cm["not_scored"]) & known else ""
        lines.append(f"data classes not scored (--no-neutral-samples{wrong}): {', '.join(cm['not_scored'])}")
    for level in ("sequence_level", "frame_level"):
        r = report.get(level)
        if not r or not r["count"]:
            continue
        name = level.replace("_", "-")
        missed = r.get("missed", 0)
        lines.append(f"{name}: accuracy {r['accuracy']:.3f} on {r['count']}"
                     + (f" ({missed} not found, counted as wrong)" if missed else "")
                     + f", balanced {r['balanced_accuracy']:.3f}")
        if missed and r.get("accuracy_on_faces_found") is not None:
            lines.append(f"{name}: accuracy {r['accuracy_on_faces_found']:.3f} on the {r['scored']} faces found")
        if "over_data_classes" in r:
            o = r["over_data_classes"]
            lines.append(f"{name}: accuracy {o['accuracy']:.3f} over the data's {len(o['classes'])} classes "
                         f"(model restricted, without {', '.join(o['left_out'])})")
        if level == "sequence_level":
            for i, c in enumerate(r["class_names"]):
                rc, pr = r["recall"][c], r["precision"].get(c)
                lines.append(f"  {c:10s} n={r['support'][c]:4d}  recall {rc:.3f}  precision "
                             + (f"{pr:.3f}" if pr is not None else "n/a")
                             + (f"  not found {r['confusion_matrix'][i][-1]}" if missed else ""))
            w, wo = r["with_neutral_reference"], r["without_neutral_reference"]
            if wo["count"]:
                lines.append(f"  with neutral reference: {w['count']} "
                             f"({'n/a' if w['accuracy'] is None else format(w['accuracy'], '.3f')}); without: "
                             f"{wo['count']} ({wo['accuracy']:.3f})")
    emo = report.get("emotions")
    if emo:
        lines.append(f"emotion sequences: accuracy {emo['accuracy']:.3f} on {emo['count']} "
                     f"({emo['accuracy_without_neutral_class']:.3f} with the neutral class left out"
                     + (f"; {emo['missed']} not found, counted as wrong)" if emo.get("missed") else ")"))
    neu = report["neutral"]
    if neu["frames"] and neu["share_called_neutral"] is not None:
        lines.append(f"neutral frames called neutral: {neu['called_neutral']}/{neu['frames']} "
                     f"({neu['share_called_neutral']:.3f}"
                     + (f"; {neu['missed']} not found, not called neutral)" if neu.get("missed") else ")"))
    elif neu["frames"]:
        lines.append(f"{neu['frames']} neutral frames not scored: {neu['note']}")
    return lines


def write_predictions_csv(path: Path, samples: Sequence[Sample], class_names: Sequence[str]) -> Path:
    """One row per sample, in UTF-8: a byte of a file or folder name that is not UTF-8 is written as `\\udcXX`,
    as report.json writes it."""
    with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
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
    outputs = {"predictions_csv": str(write_predictions_csv(out_dir / PREDICTIONS_CSV, samples, class_names))}
    for level, name in PLOT_FILES.items():
        r = report.get(level)
        if r and r["count"]:
            title = (f"{report['model']['manifest']['name']} on {Path(report['data']['root']).name} "
                     f"({level.replace('_', ' ')})")
            outputs[level + "_png"] = str(plots.plot_confusion_matrix(
                np.asarray(r["confusion_matrix"]), r["class_names"], out_dir / name, title=title,
                pred_names=r["pred_names"], not_found=NOT_FOUND))
    report["outputs"] = dict(outputs, report_json=str(out_dir / REPORT_JSON))
    report["summary"] = summary_line(report)
    write_json(out_dir / REPORT_JSON, report, indent=2)
    return report["outputs"]
