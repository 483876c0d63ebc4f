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
shipped recipe's first step). Each fit writes per-epoch CSV (and TensorBoard when installed) logs and a checkpoint
(--resume continues). At the end: report.json, predictions.csv and confusion-matrix PNGs per dataset. Under
torchrun, training is data-parallel (DDP): one GPU per process with --device cuda, CPU processes with --device cpu.

This file is the command (`main`); its options are in args.py, the samples in data/samples.py and
data/sequence_set.py, the fit loop in fit.py and what a run writes in report.py.
"""
from __future__ import annotations

import json
import os
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
from fer_ros.preprocess import PREPROCESS_SPEC
from fer_ros.training.args import get_args_parser
from fer_ros.training.data.datasets import DatasetError
from fer_ros.training.data.samples import final_train_indices, load_samples, mixed_folds, require_training_samples
from fer_ros.training.fit import InitError, ResumeError, build_model, check_resume, fit, load_init, split_record
from fer_ros.training.report import (dataset_scores, export_final, export_int8, jsonable, plot_confusions,
                                     print_fold_table, summarize_folds, write_predictions)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(get_args_parser(), argv, "fer-train")
    if args is None:
        return 2
    if args.export:
        args.final = True
    if args.export and (Path(args.export) / "manifest.json").exists() and not args.overwrite:
        print(f"fer-train: {args.export} already holds a model (manifest.json); choose another --export folder or "
              f"pass --overwrite to replace it", file=sys.stderr)
        return 2
    if args.no_reference_prob + args.still_prob + args.other_reference_prob > 1.0:
        print("fer-train: --no-reference-prob, --still-prob and --other-reference-prob are shares of the same draws "
              "and must add up to 1 at most", file=sys.stderr)
        return 2
    if args.only_fold and args.folds < 2:
        print(f"fer-train: --only-fold picks folds of a cross-validation, and --folds {args.folds} runs none: give "
              f"--folds 2 or more with it", file=sys.stderr)
        return 2
    if args.only_fold and max(args.only_fold) >= args.folds:
        print(f"fer-train: --only-fold must be below --folds {args.folds} (folds are numbered 0 to "
              f"{args.folds - 1}), got {max(args.only_fold)}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"fer-train: --device {args.device} asked for, but torch sees no CUDA GPU; use --device cpu",
              file=sys.stderr)
        return 2
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
    if args.resume:
        # every checkpoint is checked before any fit starts: a run refused at its third fold would have spent the
        # first two for nothing
        runs = [(out / f"fold{k:02d}", *folds[k]) for k in wanted]
        runs += [(out / "final", final_idx, held if len(held) else None)] if args.final else []
        try:
            for run_dir, train_idx, test_idx in runs:
                check_resume(run_dir / "checkpoint.pt", split_record(args, samples, train_idx, test_idx))
        except ResumeError as exc:
            print(f"fer-train: {exc}", file=sys.stderr)
            return 2
    command = "fer-train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report: dict = {"args": vars(args), "data": info, "class_names": list(names), "command": command}
    init_state = None
    if args.init:
        model, cfg = build_model(args, len(names))
        preprocess = PREPROCESS_SPEC(CropConfig(size=args.size, margin=0.0), args.frames, args.clip_input)
        try:
            init_state, report["init"] = load_init(args.init, args.model, cfg, preprocess, names)
        except InitError as exc:
            print(f"fer-train: {exc}", file=sys.stderr)
            return 2
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        for name, d in info["datasets"].items():
            log(f"[fer-train] {name} ({d['layout']}, weight {d['weight']:g}): {d['samples']} samples of "
                f"{d['subjects']} subjects" + (f", splits {'/'.join(d['splits'])}" if d["splits"] else "") + ": "
                + ", ".join(f"{c} {n}" for c, n in d["per_class"].items() if n)
                + (f"; {d['dropped_no_face']} without a face left out" if d["dropped_no_face"] else ""))
    if folds:
        per_fold: dict[str, list[dict]] = {}
        evals = []
        t_cv = time.time()
        for k in wanted:
            train_idx, test_idx = folds[k]
            t_fold = time.time()
            core, _, rows, ev = fit(args, samples, train_idx, test_idx, len(names), out / f"fold{k:02d}",
                                    args.seed + k, dist_ctx, init_state)
            if not is_main:
                continue
            seconds = time.time() - t_fold
            for name, scores in dataset_scores(ev, test_idx, samples, names).items():
                per_fold.setdefault(name, []).append({"fold": k, **scores})
                log(f"[fer-train] fold {k} {name}: fused {scores['fused']:.4f}  appearance {scores['appearance']:.4f}"
                    f"  geometric {scores['geometric']:.4f}  ({scores['n']} samples)")
            log(f"[fer-train] fold {k}: {seconds:.0f} s")
            evals.append((k, test_idx, ev))
        if is_main and per_fold:
            datasets = {}
            for name, rows in per_fold.items():
                summary = summarize_folds(rows)
                print_fold_table(rows, summary, title=f"[fer-train] {name}")
                datasets[name] = {"per_fold": rows, "summary": summary}
            report["cross_validation"] = {"folds": args.folds, "run_folds": wanted, "datasets": datasets,
                                          "summary": {n: d["summary"] for n, d in datasets.items()},
                                          "seconds": time.time() - t_cv}
            write_predictions(out, samples, names, evals)
            plot_confusions(out, samples, names, evals)
    if args.final:
        t_fit = time.time()
        core, cfg, rows, ev = fit(args, samples, final_idx, held if len(held) else None, len(names), out / "final",
                                  args.seed, dist_ctx, init_state)
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
    report["seconds_total"] = time.time() - t_start
    if is_main:
        (out / "report.json").write_text(json.dumps(report, indent=2, default=jsonable) + "\n")
        print(f"[fer-train] report: {out / 'report.json'} ({report['seconds_total']:.0f} s in all)")
    if dist_ctx is not None:
        # every rank waits for rank 0's export and report, then leaves the group: a rank that exits with the
        # group still open can abort in its communication threads
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
