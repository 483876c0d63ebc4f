"""fer-train: train and cross-validate a 3DAGN model on one or more datasets, and export the final fit.

    fer-train --data ../shared/data/ferplus --folds 0 --export runs/base/model
    fer-train --init runs/base/model --data ../shared/data/ferplus:0.15 --data ../shared/data/kdef:2 \
              --data ../shared/data/ckplus:3 --folds 5 --final --export models/my_model

Data: every --data folder in any layout of fer_ros.training.data.datasets (CK+ release, class folders, FER+,
KDEF; detected), preprocessed once with the node's landmarker and crop (cached under --cache-dir), joined into one
set of samples; each epoch draws every dataset by its weight. Protocol: k-fold cross-validation by subject within
each dataset (data with its own split, FER+, trains on its training split and is tested on the rest in every
fold), a table per dataset, then with --final one fit on everything but the held-out splits, exported (ONNX +
state dict + manifest). --init starts from a trained model's weights (a model trained on FER+ alone is the
shipped recipe's first step; one trained on a dataset this run cross-validates is named in a warning and in
report.json). Each fit writes per-epoch CSV (and TensorBoard when installed) logs and a checkpoint (--resume
continues, with the same options). At the end: report.json, predictions.csv and confusion-matrix PNGs per dataset,
of every fit of the run finished in --out (with --resume, those of earlier commands too, evaluated from their
checkpoints). A loss that becomes nan or inf stops the run (exit 1) before a checkpoint or an export takes the
weights; an export that fails ends it (exit 1) with report.json written. An --out that holds a run is refused unless --resume continues it or --overwrite replaces it. Under
torchrun, training is data-parallel (DDP): one GPU per process with --device cuda, CPU processes with --device cpu.

This file is the command (`main`); its options are in args.py, the samples in data/samples.py and
data/sequence_set.py, the fit loop in fit.py and what a run writes in report.py.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fer_ros.argtypes import parse_args
from fer_ros.classes import class_names
from fer_ros.crop import CropConfig
from fer_ros.landmarker import LandmarkerError
from fer_ros.manifest import ModelError
from fer_ros.preprocess import PREPROCESS_SPEC
from fer_ros.training.args import get_args_parser
from fer_ros.training.data.cache import cache_dir_problem
from fer_ros.training.data.datasets import DatasetError
from fer_ros.training.data.samples import (WeightedEpochs, distinct_sources, final_train_indices, load_samples,
                                           mixed_folds, require_training_samples)
from fer_ros.training.fit import (DivergedError, InitError, build_model, fit, load_init, model_problem, undrawn_data,
                                  undrawn_text)
from fer_ros.training.report import (dataset_scores, export_final, export_int8, jsonable, plot_confusions,
                                     print_fold_table, summarize_folds, write_predictions)
from fer_ros.training.resume import FIT_FILES, ResumeError, check_resume, clear_fit, split_record


# What a run writes at the top of --out, beside confusion_*.png and its fit folders (foldNN/, final/)
RUN_FILES = ("report.json", "predictions.csv")


class TooFewGPUs(RuntimeError):
    """torchrun started more --device cuda processes on this machine than it has GPUs."""


def _init_distributed(args):
    """Under torchrun: join the process group. --device cuda gives each process the GPU of its local rank (NCCL);
    --device cpu trains on CPU processes (gloo), also on a machine that has GPUs. Returns None outside torchrun;
    raises TooFewGPUs (a one-line message) when the processes on this machine outnumber its GPUs."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist
    local = int(os.environ.get("LOCAL_RANK", "0"))
    on_gpus = args.device.startswith("cuda")
    if on_gpus:
        gpus = torch.cuda.device_count()
        if local >= gpus:
            raise TooFewGPUs(f"torchrun started more processes on this machine than it has GPUs ({gpus}): "
                             f"use --nproc_per_node {gpus} or fewer, or --device cpu")
        torch.cuda.set_device(local)
        args.device = f"cuda:{local}"
    dist.init_process_group("nccl" if on_gpus else "gloo", init_method="env://")
    return {"rank": dist.get_rank(), "world": dist.get_world_size()}


def device_problem(text: str) -> str | None:
    """Why --device cannot train here (a one-line message), None when it can: a device of another kind than cpu and
    cuda, a GPU where torch sees none, a GPU index torch does not see."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        return f"--device must be cpu, cuda or cuda:N, got {text!r}"
    if device.type == "cpu":
        return None
    if not torch.cuda.is_available():
        return f"--device {text} asked for, but torch sees no CUDA GPU; use --device cpu"
    gpus = torch.cuda.device_count()
    if device.index is not None and device.index >= gpus:
        seen = "cuda:0" if gpus == 1 else f"cuda:0 to cuda:{gpus - 1}"
        return (f"--device {text} asked for, but torch sees {gpus} CUDA GPU{'s' if gpus > 1 else ''} ({seen}); "
                f"give one of those or --device cuda")
    return None


def run_dirs(out: Path) -> list[Path]:
    """The fit folders of a run in out: foldNN/ and final/."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.is_dir() and re.fullmatch(r"fold\d{2,}|final", p.name))


def earlier_run(out: Path) -> list[Path]:
    """What a fer-train run wrote in out (RUN_FILES, confusion_*.png, each fit folder's FIT_FILES); [] for a folder
    that holds no run."""
    if not out.is_dir():
        return []
    found = [out / name for name in RUN_FILES if (out / name).exists()] + sorted(out.glob("confusion_*.png"))
    return found + [d / name for d in run_dirs(out) for name in FIT_FILES if (d / name).exists()]


def clear_run(out: Path) -> None:
    """Remove what a fer-train run wrote in out (earlier_run), and the fit folders left empty; other files stay."""
    for path in earlier_run(out):
        if path.parent == out:
            path.unlink()
    for d in run_dirs(out):
        clear_fit(d)
        if not any(d.iterdir()):
            d.rmdir()


def init_saw(init_data: dict, info: dict) -> list[str]:
    """The datasets this run cross-validates by subject (those without a split of their own) that the --init
    model's manifest records it was trained on: the same folder, one inside it or one holding it (roots as given,
    a relative one taken from the current folder; a copy elsewhere is not recognised)."""
    theirs = [Path(d["root"]).expanduser().resolve() for d in init_data.values()]
    saw = []
    for name, d in info["datasets"].items():
        mine = Path(d["root"]).expanduser().resolve()
        if not d["splits"] and any(mine == t or t in mine.parents or mine in t.parents for t in theirs):
            saw.append(name)
    return saw


def complete_args(args) -> None:
    """What the options imply: --export a final fit; each --only-fold runs once, in order."""
    if args.export:
        args.final = True
    if args.only_fold:
        args.only_fold = sorted(set(args.only_fold))


def usage_problem(args) -> str | None:
    """Why the options cannot make a run (a one-line message), None when they can: among others a crop, a model
    (fit.model_problem), an --export folder (export_problem) or a --cache-dir (cache.cache_dir_problem) they cannot
    make; checked before any data is read."""
    try:
        distinct_sources(args.data, "give each dataset once (twice, it would be drawn twice as often, its samples "
                                    "twice over); to weigh a dataset more, give it once with :WEIGHT")
    except ValueError as exc:
        return str(exc)
    if args.no_reference_prob + args.still_prob + args.other_reference_prob > 1.0:
        return ("--no-reference-prob, --still-prob and --other-reference-prob are shares of the same draws and must "
                "add up to 1 at most")
    if args.only_fold and args.folds < 2:
        return (f"--only-fold picks folds of a cross-validation, and --folds {args.folds} runs none: give --folds 2 "
                f"or more with it")
    if args.only_fold and max(args.only_fold) >= args.folds:
        return (f"--only-fold must be below --folds {args.folds} (folds are numbered 0 to {args.folds - 1}), got "
                f"{max(args.only_fold)}")
    if args.folds < 2 and not args.final:
        return "nothing to train: give --folds 2 or more, --final or --export"
    export_only = [flag for flag, given in (("--torchscript", args.torchscript), ("--name", args.name is not None))
                   if given]
    if export_only and not args.export:
        say, them = ("say", "them") if len(export_only) > 1 else ("says", "it")
        return (f"{' and '.join(export_only)} only {say} how to export: give --export MODEL_DIR with {them}, or leave "
                f"{them} out")
    try:
        CropConfig(size=args.size, margin=0.0)
    except ValueError as exc:
        return f"--size {args.size}: {exc}"
    return (export_problem(args.export) or cache_dir_problem(args.cache_dir) or device_problem(args.device)
            or model_problem(args, len(class_names(args.class_set))))


def export_problem(export: str | None) -> str | None:
    """Why --export cannot take a model (a one-line message), None when it can: it, or a folder it would be made
    in, is a file."""
    if not export:
        return None
    path = Path(export).resolve()
    if path.exists() and not path.is_dir():
        return f"--export {export} is a file, not a folder: give a folder for the model (new or holding one)"
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        return f"--export {export} lies under {above}, a file, not a folder: give a folder for the model"
    return None


def out_problem(args) -> str | None:
    """Why --out cannot take this run (a one-line message): it holds a run and neither --resume nor --overwrite is
    given."""
    found = earlier_run(Path(args.out))
    if not found or args.resume or args.overwrite:
        return None
    names = [p.relative_to(args.out).as_posix() for p in found]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{args.out} already holds a run ({shown}); continue it, or add folds to it with --only-fold, with "
            f"--resume; choose another --out; or pass --overwrite to replace it")


def draw_problem(args, samples, fits: dict[str, np.ndarray]) -> tuple[str | None, list[str]]:
    """(Why the run cannot train, or None; warnings) of the training samples of each fit this command trains
    ({name: indices}): a fit whose epochs draw no sample (the --data weight of each of its datasets times its
    training samples rounds to 0) cannot train; a dataset that draws none in some fit while others draw is named."""
    idle: dict[int, dict[str, int]] = {}
    for name, train_idx in fits.items():
        undrawn = undrawn_data(args, samples, train_idx)
        if len(WeightedEpochs(samples, np.asarray(train_idx), [s.weight for s in args.data], 0)) == 0:
            why = "; ".join(undrawn_text(args, d, n, f"in {name}") for d, n in undrawn.items())
            return f"{why or 'no training samples'}: {name} would train on nothing", []
        for d, n in undrawn.items():
            idle.setdefault(d, {})[name] = n
    warnings = []
    for d, where in idle.items():
        names = list(where)
        shown = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        warnings.append(f"{undrawn_text(args, d, min(where.values()), f'in {shown}')}: it is scored there but "
                        f"not trained on")
    return None, warnings


def _leave_group(dist_ctx) -> None:
    """Under torchrun: wait for every process, then leave the group (a rank that exits with the group still open can
    abort in its communication threads)."""
    if dist_ctx is not None:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(get_args_parser(), argv, "fer-train")
    if args is None:
        return 2
    complete_args(args)
    if args.export and (Path(args.export) / "manifest.json").exists() and not args.overwrite:
        print(f"fer-train: {args.export} already holds a model (manifest.json); choose another --export folder or "
              f"pass --overwrite to replace it", file=sys.stderr)
        return 2
    problem = usage_problem(args) or out_problem(args)
    if problem:
        print(f"fer-train: {problem}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        dist_ctx = _init_distributed(args)
    except TooFewGPUs as exc:
        print(f"fer-train: {exc}", file=sys.stderr)
        return 2
    is_main = dist_ctx is None or dist_ctx["rank"] == 0
    names = class_names(args.class_set)
    out = Path(args.out)
    t_start = time.time()
    log = print if is_main else (lambda *a, **k: None)
    try:
        samples, info = load_samples(args.data, names, args.frames, CropConfig(size=args.size, margin=0.0),
                                     args.cache_dir, progress=is_main and not args.no_progress,
                                     log=lambda m: log(f"[fer-train] {m}"))
        require_training_samples(samples, info)
        folds = mixed_folds(samples, args.folds, seed=args.seed) if args.folds > 1 else []
    except (DatasetError, LandmarkerError) as exc:
        print(f"fer-train: {exc}", file=sys.stderr)
        return 2
    wanted = (args.only_fold if args.only_fold else list(range(args.folds))) if folds else []
    final_idx = final_train_indices(samples)
    held = np.setdiff1d(np.arange(len(samples)), final_idx)
    # the fits of this run, their (training, test) samples by name: every fold of the cross-validation, the final fit
    ours = {f"fold{k:02d}": folds[k] for k in range(len(folds))}
    ours["final"] = (final_idx, held if len(held) else None)
    runs = [f"fold{k:02d}" for k in wanted] + (["final"] if args.final else [])
    problem, warnings = draw_problem(args, samples, {name: ours[name][0] for name in runs})
    if problem:
        print(f"fer-train: {problem}", file=sys.stderr)
        return 2
    for warning in warnings if is_main else []:
        print(f"fer-train: warning: {warning}", file=sys.stderr)
    init_state, init = None, None
    if args.init:
        _, cfg = build_model(args, len(names))
        preprocess = PREPROCESS_SPEC(CropConfig(size=args.size, margin=0.0), args.frames, args.clip_input)
        try:
            init_state, init = load_init(args.init, args.model, cfg, preprocess, names)
        except InitError as exc:
            print(f"fer-train: {exc}", file=sys.stderr)
            return 2
    init_sha256 = init["state_dict_sha256"] if init is not None else None
    resumed: dict[str, dict] = {}
    finished: list[str] = []  # fits of this run that this command does not run, finished in --out by earlier ones
    if args.resume:
        # every checkpoint is checked before any fit starts: a run refused at its third fold would have spent the
        # first two for nothing; those of fits this command leaves alone are checked for their options, and those
        # of this run's fits for their samples too (the report takes the finished ones), and all of them for the
        # --init weights they started from
        others = sorted(set(run_dirs(out)) - {out / name for name in runs})
        try:
            for run_dir in [out / name for name in runs] + others:
                name = run_dir.name
                record = split_record(args, samples, *ours[name]) if name in ours else None
                goes_on = check_resume(run_dir / "checkpoint.pt", args, record, init_sha256)
                if goes_on and name in runs:
                    resumed[name] = goes_on
                elif goes_on and record is not None and goes_on["from_epoch"] == args.epochs:
                    finished.append(name)
                elif goes_on and record is not None:
                    again = f"--only-fold {int(name[4:])}" if name != "final" else "--final"
                    log(f"[fer-train] {name} has trained {goes_on['from_epoch']} of {args.epochs} epochs: left out "
                        f"of the report (--resume {again} finishes it)")
        except ResumeError as exc:
            print(f"fer-train: {exc}", file=sys.stderr)
            return 2
    command = "fer-train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report: dict = {"args": vars(args), "data": info, "class_names": list(names), "command": command}
    if resumed:
        report["resumed"] = resumed
    if finished:
        report["evaluated_from_checkpoints"] = finished
    if init is not None:
        report["init"] = init
        saw = init_saw(init["data"], info) if folds else []
        if saw:
            init["trained_on_cross_validated_data"] = saw
            if is_main:
                print(f"fer-train: warning: --init {args.init} was trained on {', '.join(saw)} (its manifest's "
                      f"data), which this run cross-validates: the folds score subjects its starting weights saw; "
                      f"start from a model trained without them for a subject-independent score", file=sys.stderr)
    if is_main:
        if not args.resume:
            clear_run(out)
        out.mkdir(parents=True, exist_ok=True)
        for name, d in info["datasets"].items():
            log(f"[fer-train] {name} ({d['layout']}, weight {d['weight']:g}): {d['samples']} samples of "
                f"{d['subjects']} subjects" + (f", splits {'/'.join(d['splits'])}" if d["splits"] else "") + ": "
                + ", ".join(f"{c} {n}" for c, n in d["per_class"].items() if n)
                + (f"; {d['dropped_no_face']} without a face left out" if d["dropped_no_face"] else ""))
    failed = None
    try:
        run_fits(args, samples, names, folds, wanted, finished, final_idx, held, out, dist_ctx,
                 (init_state, init_sha256), report, log)
    except DivergedError as exc:
        if is_main:
            print(f"fer-train: {exc}", file=sys.stderr)
        _leave_group(dist_ctx)
        return 1
    except ModelError as exc:  # the export (rank 0's): the fits and their report stay
        report["export_failed"] = str(exc)
        failed = (f"fer-train: the export to {args.export} failed: {exc}; the fits are trained (report.json and "
                  f"their checkpoints in {out}): --resume with the same options (--export may change) exports the "
                  f"final fit from its checkpoint")
    report["seconds_total"] = time.time() - t_start
    if is_main:
        (out / "report.json").write_text(json.dumps(report, indent=2, default=jsonable) + "\n")
        print(f"[fer-train] report: {out / 'report.json'} ({report['seconds_total']:.0f} s in all)")
        if failed:
            print(failed, file=sys.stderr)
    _leave_group(dist_ctx)  # every rank waits for rank 0's export and report
    return 1 if failed else 0


def run_fits(args, samples, names, folds, wanted, finished, final_idx, held, out: Path, dist_ctx, init: tuple,
             report: dict, log) -> None:
    """The folds (`wanted`: this command's; those in `finished`: evaluated from their checkpoints), their tables,
    predictions and confusion matrices; then the final fit (with --final, or from its checkpoint when it is in
    `finished`), its held-out scores and the export. init: (--init weights, sha256 of their model.pt), (None,
    None) without --init. Fills report; DivergedError stops it, ModelError stops the export."""
    is_main = dist_ctx is None or dist_ctx["rank"] == 0
    if folds:
        per_fold: dict[str, list[dict]] = {}
        evals = []
        t_cv = time.time()
        scored = sorted(set(wanted) | {int(name[4:]) for name in finished if name != "final"})
        for k in scored:
            train_idx, test_idx = folds[k]
            t_fold = time.time()
            core, _, rows, ev = fit(args, samples, train_idx, test_idx, len(names), out / f"fold{k:02d}",
                                    args.seed + k, dist_ctx, *init)
            if not is_main:
                continue
            seconds = time.time() - t_fold
            for name, scores in dataset_scores(ev, test_idx, samples, names).items():
                per_fold.setdefault(name, []).append({"fold": k, **scores})
                log(f"[fer-train] fold {k} {name}: fused {scores['fused']:.4f}  appearance {scores['appearance']:.4f}"
                    f"  geometric {scores['geometric']:.4f}  ({scores['n']} samples)")
            log(f"[fer-train] fold {k}: {seconds:.0f} s"
                + ("" if k in wanted else " (trained by an earlier command, evaluated from its checkpoint)"))
            evals.append((k, test_idx, ev))
        if is_main and per_fold:
            datasets = {}
            for name, rows in per_fold.items():
                summary = summarize_folds(rows)
                print_fold_table(rows, summary, title=f"[fer-train] {name}")
                datasets[name] = {"per_fold": rows, "summary": summary}
            if len(scored) < args.folds:
                log(f"[fer-train] cross-validation: {len(scored)} of {args.folds} folds scored "
                    f"({', '.join(map(str, scored))}), not the whole {args.folds}-fold cross-validation")
            report["cross_validation"] = {"folds": args.folds, "run_folds": wanted, "scored_folds": scored,
                                          "datasets": datasets,
                                          "summary": {n: d["summary"] for n, d in datasets.items()},
                                          "seconds": time.time() - t_cv}
            write_predictions(out, samples, names, evals)
            plot_confusions(out, samples, names, evals, args.folds)
    if args.final or "final" in finished:
        t_fit = time.time()
        core, cfg, rows, ev = fit(args, samples, final_idx, held if len(held) else None, len(names), out / "final",
                                  args.seed, dist_ctx, *init)
        if is_main:
            report["final"] = {"epochs": args.epochs, "seconds": time.time() - t_fit,
                               "train_acc_last_epoch": rows[-1]["train_acc"] if rows else None}
            if ev is not None:
                report["final"]["held_out"] = dataset_scores(ev, held, samples, names)
                for name, scores in report["final"]["held_out"].items():
                    log(f"[fer-train] final fit on {name}'s held-out split: fused {scores['fused']:.4f} "
                        f"({scores['n']} samples)")
            if args.export:
                export_final(args, core, cfg, names, report)
                if args.int8_samples:
                    export_int8(args, samples, final_idx, report)


if __name__ == "__main__":
    sys.exit(main())
