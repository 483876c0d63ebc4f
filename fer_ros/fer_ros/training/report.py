"""What a fer-train run reports: each fold's accuracies and their summary over the folds (a table on the
terminal), the cross-validated predictions (predictions.csv) and confusion matrices (PNG), the JSON values of
report.json, and the export of the final fit with its manifest."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fer_ros.classes import NEUTRAL
from fer_ros.crop import CropConfig
from fer_ros.preprocess import PREPROCESS_SPEC
from fer_ros.training.data.samples import Samples


def fold_scores(ev: dict, names: tuple[str, ...]) -> dict:
    """Accuracies of one fold: fused, appearance-only, geometric-only; for 8-class sets also the 7 emotion
    classes alone and the share of neutral samples called neutral."""
    y = ev["y"]
    out = {k: float((ev[k] == y).mean()) for k in ("fused", "appearance", "geometric")}
    # how often the true class is among the appearance network's top-2, the pair the geometric network decides
    out["appearance_top2"] = float((ev["top2"] == y[:, None]).any(axis=1).mean())
    out["n"] = int(len(y))
    if NEUTRAL in names:
        ni = names.index(NEUTRAL)
        emo = y != ni
        if emo.any():
            out["fused_7class_samples"] = float((ev["fused"][emo] == y[emo]).mean())
            # 7-class decision: the best non-neutral class
            p = ev["probs"][emo].copy()
            p[:, ni] = -1
            out["fused_7class_forced"] = float((p.argmax(1) == y[emo]).mean())
        if (~emo).any():
            out["neutral_called_neutral"] = float((ev["fused"][~emo] == ni).mean())
    return out


def subset(ev: dict, mask: np.ndarray) -> dict:
    """The evaluation of the samples where mask is true."""
    return {k: v[mask] for k, v in ev.items()}


def dataset_scores(ev: dict, test_idx: np.ndarray, samples: Samples, names: tuple[str, ...]) -> dict[str, dict]:
    """fold_scores of each dataset's samples in an evaluation of samples[test_idx]."""
    which = samples.dataset[np.asarray(test_idx)]
    return {name: fold_scores(subset(ev, which == d), names) for d, name in enumerate(samples.dataset_names)
            if (which == d).any()}


def summarize_folds(per_fold: list[dict]) -> dict:
    keys = sorted({k for f in per_fold for k, v in f.items() if k not in ("n", "fold") and np.isscalar(v)})
    return {k: {"mean": float(np.mean([f[k] for f in per_fold if k in f])),
                "std": float(np.std([f[k] for f in per_fold if k in f])),
                "min": float(np.min([f[k] for f in per_fold if k in f])),
                "max": float(np.max([f[k] for f in per_fold if k in f]))} for k in keys}


TABLE_COLUMNS = ("fused", "appearance", "appearance_top2", "geometric", "fused_7class_forced",
                 "neutral_called_neutral")


def print_fold_table(per_fold: list[dict], summary: dict, title: str = "") -> None:
    cols = [k for k in TABLE_COLUMNS if k in summary]
    if title:
        print(title)
    print("fold  n     " + "  ".join(f"{c:>22s}" for c in cols))
    for f in per_fold:
        print(f"{f['fold']:>4d}  {f['n']:<5d} " + "  ".join(f"{f.get(c, float('nan')):22.4f}" for c in cols))
    print("mean        " + "  ".join(f"{summary[c]['mean']:15.4f} ±{summary[c]['std']:.4f}" for c in cols))


def jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_predictions(out: Path, samples: Samples, names, evals) -> None:
    with open(out / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fold", "dataset", "sequence", "subject", "label", "fused", "appearance", "geometric"])
        for fold, idx, ev in evals:
            for j, i in enumerate(idx):
                w.writerow([fold, samples.dataset_names[samples.dataset[i]], samples.keys[i], samples.subjects[i],
                            names[ev["y"][j]], names[ev["fused"][j]], names[ev["appearance"][j]],
                            names[ev["geometric"][j]]])


def plot_confusions(out: Path, samples: Samples, names, evals, folds: int | None = None) -> None:
    """confusion_<dataset>_<kind>.png of the cross-validated predictions (fused, appearance, geometric). Data with
    its own split is tested in every fold: the first fold's predictions of it are plotted, and the title says so.
    With `folds` (the cross-validation's number of folds), a title of fewer folds' predictions says how many of
    them it holds."""
    try:
        from fer_ros.metrics import confusion_matrix
        from fer_ros.plots import plot_confusion_matrix
    except ImportError as exc:
        print(f"[fer-train] note: no confusion-matrix plot ({exc})")
        return
    for d, name in enumerate(samples.dataset_names):
        seen: set[int] = set()
        parts, plotted, splits = [], [], set()
        for fold, idx, ev in evals:
            keep = np.array([samples.dataset[i] == d and int(i) not in seen for i in idx], bool)
            seen.update(int(i) for i in np.asarray(idx)[keep])
            splits.update(samples.split[int(i)] for i in np.asarray(idx)[keep])
            if keep.any():
                parts.append(subset(ev, keep))
                plotted.append(fold)
        if not parts:
            continue
        y = np.concatenate([p["y"] for p in parts])
        some = f", {len(evals)} of {folds} folds" if folds and len(evals) < folds else ""
        held_out = sorted(s for s in splits if s is not None)
        what = (f"fold {plotted[0]}'s model on the held-out split{'s' if len(held_out) > 1 else ''} "
                f"({', '.join(held_out)}), {len(y)} samples" if held_out and len(plotted) == 1
                else f"cross-validated, {len(y)} samples{some}")
        for kind in ("fused", "appearance", "geometric"):
            cm = confusion_matrix(y, np.concatenate([p[kind] for p in parts]), len(names))
            plot_confusion_matrix(cm, list(names), out / f"confusion_{name}_{kind}.png",
                                  title=f"{name}, {kind}: {what}")


def export_final(args, model, cfg, names, report) -> None:
    """Export the final fit to args.export with its manifest: the training command, data, --init, the
    cross-validation (its number of folds, the folds scored and their summary per dataset; None without one) and
    the final fit's time and held-out scores."""
    from fer_ros.export import export_model
    from fer_ros.manifest import Manifest
    cv = report.get("cross_validation")
    manifest = Manifest(
        name=args.name or Path(args.export).name, class_set=args.class_set, class_names=list(names),
        arch=args.model, arch_cfg=cfg,
        preprocess=PREPROCESS_SPEC(CropConfig(size=args.size, margin=0.0), args.frames, args.clip_input),
        training={"command": report["command"], "seed": args.seed, "data": report["data"],
                  "init": report.get("init"),
                  "cross_validation": {k: cv[k] for k in ("folds", "scored_folds", "summary")} if cv else None,
                  "final_fit_seconds": report["final"]["seconds"],
                  "held_out": report["final"].get("held_out")})
    export_model(model.cpu(), manifest, args.export, torchscript=args.torchscript)
    print(f"[fer-train] exported {args.export} (model.onnx, model.pt{', model.ts' if args.torchscript else ''}, "
          f"manifest.json)")


def export_int8(args, samples: Samples, idx: np.ndarray, report: dict) -> None:
    """model.int8.onnx beside the exported model (fer_ros/quantize.py), calibrated on args.int8_samples of the final
    fit's training samples; a graph that strays from the fp32 one is left out with a message, not an error."""
    from fer_ros.manifest import ModelError
    from fer_ros.quantize import add_int8
    from fer_ros.training.calibration import calibration_set
    batches, drawn = calibration_set(samples, idx, args.int8_samples, args.seed, args.clip_input)
    try:
        manifest = add_int8(args.export, batches, {"calibration_faces": drawn, "command": report["command"]})
    except ModelError as exc:
        print(f"[fer-train] {exc}")
        return
    check = manifest.training["int8"]["against_fp32"]
    report["int8"] = check
    print(f"[fer-train] exported model.int8.onnx: keeps the fp32 top class on {check['top_class_agreement']:.3f} of "
          f"{check['faces']} calibration faces")
