"""fer-train: train and cross-validate a 3DAGN model, and export the final fit.

    fer-train --data ../shared/data/ckplus --class-set ckplus8 --folds 10 --final --export models/my_model

Data: either dataset layout (see fer_ros.training.data.datasets), preprocessed once with the node's landmarker and
crop (cached under --cache-dir). Protocol: subject-independent k-fold cross-validation (one prediction per
sequence), then, with --final, one fit on all data that is exported (ONNX + state dict + manifest). Each fold
writes per-epoch CSV (and TensorBoard when installed) logs and a checkpoint (--resume continues). At the end: a
per-fold table, report.json and confusion-matrix PNGs. Under torchrun, training is data-parallel (DDP): one GPU per
process with --device cuda, CPU processes with --device cpu.

This file is the command (`main`); its options are in args.py, the samples in data/samples.py, the fit loop in
fit.py and what a run writes in report.py.
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
from fer_ros.landmarker import LandmarkerError
from fer_ros.nets.ensemble import join_members
from fer_ros.training.args import get_args_parser
from fer_ros.training.data.datasets import DatasetError
from fer_ros.training.data.folds import subject_folds
from fer_ros.training.data.samples import SequenceSet, load_data
from fer_ros.training.experimental import options as experimental
from fer_ros.training.experimental.auxiliary import AuxTargets
from fer_ros.training.fit import evaluate, fit, make_loader, member_dir, member_seed
from fer_ros.training.report import (export_final, fold_scores, jsonable, plot_confusions, print_fold_table,
                                     summarize_folds, write_predictions)


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
    conflict = experimental.conflict(args)
    if conflict:
        print(f"fer-train: {conflict}", file=sys.stderr)
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
    try:
        samples, info = load_data(args)
        if args.aux_blendshapes > 0:
            AuxTargets.of(samples, np.arange(len(samples.labels)))  # refuses a cache without blendshapes now
    except (DatasetError, LandmarkerError) as exc:
        print(f"fer-train: {exc}", file=sys.stderr)
        return 2
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        print(f"[fer-train] {info['sequences']} sequences of {info['subjects']} subjects "
              f"({info['layout']}): " + ", ".join(f"{c} {n}" for c, n in info["per_class"].items()))
        if info["neutral_borrowed"] or info["without_neutral"]:
            print(f"[fer-train] neutral references: {info['neutral_borrowed']} borrowed from another sequence of the "
                  f"same subject, {info['without_neutral']} sequences without one")
    command = "fer-train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report: dict = {"args": vars(args), "data": info, "class_names": list(names), "command": command}
    cv_time = 0.0
    if args.folds and args.folds > 1:
        folds = subject_folds(samples.subjects, args.folds, seed=args.seed)
        wanted = args.only_fold if args.only_fold else list(range(args.folds))
        per_fold, evals = [], []
        t_cv = time.time()
        for k in wanted:
            train_idx, test_idx = folds[k]
            assert not set(samples.subjects[i] for i in train_idx) & set(samples.subjects[i] for i in test_idx)
            members, seconds, member_fused = [], 0.0, []
            for m in range(args.ensemble):
                core, _, rows, ev = fit(args, samples, train_idx, test_idx, len(names),
                                        out / member_dir(f"fold{k:02d}", m), member_seed(args.seed + k, m), dist_ctx)
                members.append(core)
                seconds += sum(r["epoch_s"] for r in rows)
                if is_main:
                    member_fused.append(float((ev["fused"] == ev["y"]).mean()))
            if not is_main:
                continue
            if len(members) > 1:
                test_set = SequenceSet(samples, test_idx, False, args.seed, clip_input=args.clip_input)
                ev = evaluate(join_members(members), make_loader(test_set, 64, False, args.seed),
                              torch.device(args.device), len(names))
            scores = {"fold": k, **fold_scores(ev, names)}
            if len(members) > 1:
                scores["member_fused"] = member_fused
            per_fold.append(scores)
            evals.append((test_idx, ev))
            print(f"[fer-train] fold {k}: fused {scores['fused']:.4f}  appearance {scores['appearance']:.4f}  "
                  f"geometric {scores['geometric']:.4f}  ({scores['n']} sequences, {seconds:.0f} s"
                  + (f"; members alone: {', '.join(f'{a:.4f}' for a in member_fused)}" if len(members) > 1 else "")
                  + ")")
        cv_time = time.time() - t_cv
        if is_main and per_fold:
            summary = summarize_folds(per_fold)
            print_fold_table(per_fold, summary)
            report["cross_validation"] = {"folds": args.folds, "run_folds": wanted, "per_fold": per_fold,
                                          "summary": summary, "seconds": cv_time}
            write_predictions(out, samples, names, evals)
            plot_confusions(out, names, evals)
    if args.final:
        idx = np.arange(len(samples.labels))
        members, seconds, train_acc = [], 0.0, []
        for m in range(args.ensemble):
            core, cfg, rows, _ = fit(args, samples, idx, None, len(names), out / member_dir("final", m),
                                     member_seed(args.seed, m), dist_ctx)
            members.append(core)
            seconds += float(sum(r["epoch_s"] for r in rows))
            train_acc.append(rows[-1]["train_acc"] if rows else None)
        model = join_members(members)
        if len(members) > 1:
            cfg = {**cfg, "members": len(members)}
        if is_main:
            report["final"] = {"epochs": args.epochs, "members": len(members), "seconds": seconds,
                               "train_acc_last_epoch": train_acc[0] if len(train_acc) == 1 else train_acc}
            if args.export:
                export_final(args, model, cfg, names, report)
    report["seconds_total"] = time.time() - t_start
    if is_main:
        (out / "report.json").write_text(json.dumps(report, indent=2, default=jsonable) + "\n")
        print(f"[fer-train] report: {out / 'report.json'} ({report['seconds_total']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
