"""fer-train: train and cross-validate a 3DAGN model, and export the final fit.

    fer-train --data ../shared/data/ckplus --class-set ckplus8 --folds 10 --final --export models/my_model

Data: either dataset layout (see fer_ros.training.data.datasets), preprocessed once with the node's landmarker and crop
(cached under --cache-dir). Protocol: subject-independent k-fold cross-validation (one prediction per sequence),
then, with --final, one fit on all data that is exported (ONNX + state dict + manifest). Each fold writes
per-epoch CSV (and TensorBoard when installed) logs and a checkpoint (--resume continues). At the end: a per-fold
table, report.json and confusion-matrix PNGs. Under torchrun, training is data-parallel (DDP): one GPU per process
with --device cuda, CPU processes with --device cpu.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset as TorchDataset

from fer_ros.classes import CLASS_SETS, NEUTRAL, class_names
from fer_ros.crop import CropConfig
from fer_ros.training.data.augment import AugmentConfig, augment_flip
from fer_ros.training.data.datasets import DatasetError, load_dataset
from fer_ros.training.data.folds import subject_folds
from fer_ros.landmark_scheme import blendshape_mirror
from fer_ros.landmarker import LandmarkerError
from fer_ros.nets.agn import agn_loss
from fer_ros.training.experimental.auxiliary import BlendshapeHead
from fer_ros.nets.ensemble import join_members
from fer_ros.nets.geometric import pairs
from fer_ros.nets.registry import create_model, list_models
from fer_ros.preprocess import BASE_CLIP_INPUT, CLIP_INPUTS, PREPROCESS_SPEC, clip_from_gray, make_geo
from fer_ros.training.experimental.ema import WeightEMA
from fer_ros.training.experimental.mixup import mix_batch, mixup_loss
from fer_ros.training.experimental.sam import sam_step


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-train", description=__doc__.split("\n\n")[0], add_help=add_help,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="dataset folder (CK+ release or class-folder layout)")
    g.add_argument("--class-set", default="ckplus8", choices=sorted(CLASS_SETS))
    g.add_argument("--size", type=int, default=48, help="face crop side S in px (network input)")
    g.add_argument("--frames", type=int, default=3, help="clip length T")
    g.add_argument("--cache-dir", default="data_cache", help="preprocessed-image cache (never commit it)")
    g.add_argument("--no-augment", action="store_true", help="train without augmentation")
    g.add_argument("--still-prob", type=float, default=0.2,
                   help="probability that a training expression sample is shown still, as the node sees a face that "
                        "kept its expression since it appeared: the peak frame repeated as the clip and as its own "
                        "neutral reference (teaches that no motion does not mean neutral)")
    g.add_argument("--augment-scale", type=float, default=1.0,
                   help="multiply the ranges of rotation, scale, shift, brightness and contrast "
                        "(training/data/augment.py AugmentConfig) by this factor; 0: flips only")
    g.add_argument("--erase-prob", type=float, default=0.0,
                   help="probability of random erasing: one rectangle (2 - 20%% of the crop) hidden in every frame "
                        "of a training sample, its neutral reference included (training/data/augment.py); 0: off")
    g.add_argument("--own-neutral-only", action="store_true",
                   help="leave a sequence without its own neutral first frame without a reference, instead of "
                        "borrowing the first frame of the same subject's nearest other sequence "
                        "(training/data/datasets.py)")
    g.add_argument("--neutral-swap", type=float, default=0.0, metavar="P",
                   help="probability that a training sample's neutral reference is replaced by another neutral "
                        "frame of the same subject (the first frame of another of its sequences), as a robot's "
                        "reference is taken at another moment than the expression; 0: off")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="agn3d_c3d", choices=list_models())
    g.add_argument("--clip-input", default=RECIPE_CLIP_INPUT, choices=list(CLIP_INPUTS),
                   help="the appearance clip's channels (preprocess.CLIP_INPUTS): lbp+gray_delta (the shipped "
                        "model's: LBP codes plus each frame's change from the neutral reference's crop), lbp (the "
                        "paper's), lbp_bits, lbp+neutral_lbp or lbp+gray")
    g.add_argument("--app-widths", default="16,32,64,64", help="agn3d_c3d conv widths (paper: 32,64,128,128)")
    g.add_argument("--geo-width", type=int, default=16, help="first VGG stage width of the geometric network")
    g.add_argument("--dropout", type=float, default=0.5)
    g.add_argument("--no-flip-tta", action="store_true",
                   help="evaluate and export without averaging over the face and its mirror image")
    g.add_argument("--ensemble", type=int, default=3,
                   help="train this many copies of the model per fold (and for the final fit), each with its own "
                        "seed, and average their networks' logits (nets/ensemble.py); costs that many times the "
                        "training and the inference time (1: a single model)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=80)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine decay)")
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--class-weighting", default="none", choices=CLASS_WEIGHTINGS,
                   help="weigh each sample's loss terms by its class: none, sqrt (inverse square root of the class's "
                        "share of the training sequences) or balanced (inverse share)")
    g.add_argument("--logit-adjust", type=float, default=1.0, metavar="TAU",
                   help="logit-adjusted loss: TAU * log(class share of the training sequences) added to the logits "
                        "in the loss only, so the network's own logits fit a balanced class prior and rare classes "
                        "are called more often (1 is the usual value); 0: off. In a class set with neutral only the "
                        "expressions are balanced among themselves; neutral's share is left as it is")
    g.add_argument("--still-logit-adjust", type=float, default=0.0, metavar="FRACTION",
                   help="the share of --logit-adjust's offsets applied to the samples shown still (--still-prob): "
                        "1: as every other sample; 0: the plain loss, so a face without motion keeps the training "
                        "data's class prior")
    g.add_argument("--label-smoothing", type=float, default=0.0,
                   help="label smoothing of the three cross-entropy terms (0: none)")
    g.add_argument("--aux-blendshapes", type=float, default=0.0, metavar="WEIGHT",
                   help="weight of a training-only auxiliary loss: the appearance trunk also regresses the "
                        "landmarker's face blendshapes of the peak frame and their change from the neutral "
                        "reference (training/experimental/auxiliary.py; mean squared error of standardised scores); "
                        "0: off. The exported model and inference are unchanged")
    g.add_argument("--sam-rho", type=float, default=0.0, metavar="RHO",
                   help="sharpness-aware minimisation: each step takes its gradient at the weights moved RHO "
                        "uphill (training/experimental/sam.py; about 0.05 is usual), at 2 - 2.5 times the training "
                        "time; 0: plain Adam")
    g.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights (training/experimental/ema.py; DECAY "
                        "per step, e.g. 0.995) and evaluate and export it instead of the last weights; the log keeps "
                        "the last weights' test accuracy beside it (test_acc_raw); 0: off")
    g.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="mixup (training/experimental/mixup.py): each training sample blended with another of its "
                        "batch, clip and difference image alike, by lam ~ Beta(ALPHA, ALPHA) (folded to lam >= 0.5), "
                        "the loss blended alike between the two labels; 0.2 - 0.4 is usual; 0: off")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g = p.add_argument_group("protocol and output")
    g.add_argument("--folds", type=int, default=10, help="subject-independent folds (0 or 1: no cross-validation)")
    g.add_argument("--only-fold", type=int, action="append", help="run only these folds (repeatable)")
    g.add_argument("--final", action="store_true", help="after cross-validation, fit on all data")
    g.add_argument("--export", help="model directory to export the final fit to (implies --final)")
    g.add_argument("--name", default=None, help="model name recorded in the manifest")
    g.add_argument("--torchscript", action="store_true", help="also export model.ts (TorchScript) with --export")
    g.add_argument("--out", default="runs/train", help="run folder: logs, checkpoints, report, plots")
    g.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


CLASS_WEIGHTINGS = ("none", "sqrt", "balanced")
# The shipped model's appearance input: the LBP clip plus each frame's change from the neutral reference's crop
# (see preprocess.CLIP_INPUTS and the model card); --clip-input lbp is the paper's input.
RECIPE_CLIP_INPUT = "lbp+gray_delta"


def logit_offsets(labels: np.ndarray, num_classes: int, tau: float, neutral: int | None = None) -> np.ndarray | None:
    """tau * log of each class's share of the training labels (a class without samples counts as one), or None
    for tau == 0: the offsets of the logit-adjusted loss (--logit-adjust).

    With a `neutral` class index only the expressions are balanced among themselves: each expression's offset is
    tau * log(its share of the expression labels * the number of expression classes), zero for an expression at
    the uniform share, and neutral's offset is 0, so the prior between neutral and the expressions stays the
    training data's own."""
    if tau == 0:
        return None
    counts = np.maximum(np.bincount(labels, minlength=num_classes)[:num_classes], 1).astype(np.float64)
    if neutral is None:
        return (tau * np.log(counts / counts.sum())).astype(np.float32)
    expr = np.arange(num_classes) != neutral
    out = np.zeros(num_classes)
    out[expr] = tau * np.log(counts[expr] / counts[expr].sum() * expr.sum())
    return out.astype(np.float32)


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray | None:
    """(K,) loss weights from the training labels, scaled so that the average sample weighs 1; None for mode
    "none". A class without training samples weighs 0."""
    if mode == "none":
        return None
    if mode not in CLASS_WEIGHTINGS:
        raise ValueError(f"unknown class weighting {mode!r}; use one of {', '.join(CLASS_WEIGHTINGS)}")
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)
    share = counts / max(counts.sum(), 1.0)
    power = 0.5 if mode == "sqrt" else 1.0
    w = np.where(counts > 0, 1.0 / np.maximum(share, 1e-12) ** power, 0.0)
    w /= max((w * share).sum(), 1e-12)
    return w.astype(np.float32)


# --------------------------------------------------------------------------------------------------- data
@dataclass
class Samples:
    """Sequences as indices into the image cache: neutral (-1: none), peaks (N, T), labels (N,), subjects."""
    neutral: np.ndarray
    peaks: np.ndarray
    labels: np.ndarray
    subjects: list[str]
    keys: list[str]
    gray: np.ndarray
    points: np.ndarray
    blendshapes: np.ndarray | None = None  # (images, B) scores from the cache; None or B = 0: none
    blendshape_names: tuple[str, ...] = ()
    # subject -> every usable neutral (first) frame of the subject's sequences, labelled or not (--neutral-swap)
    subject_neutrals: dict[str, np.ndarray] = field(default_factory=dict)

    def other_neutrals(self, j: int) -> np.ndarray:
        """The neutral frames of sample j's subject other than its own reference."""
        alts = self.subject_neutrals.get(self.subjects[j], np.empty(0, dtype=int))
        return alts[alts != self.neutral[j]]


@dataclass
class AuxTargets:
    """What SequenceSet needs to give each training sample its auxiliary blendshape target: the scores per
    image, the mirror table, and the standardisation (mean, std per blendshape over the training images)."""
    scores: np.ndarray
    mirror: list[int]
    mean: np.ndarray
    std: np.ndarray

    @property
    def size(self) -> int:
        return 2 * self.scores.shape[1]  # the peak's scores and their change from the neutral reference

    @staticmethod
    def of(samples: "Samples", train_idx: np.ndarray) -> "AuxTargets":
        if samples.blendshapes is None or samples.blendshapes.shape[1] == 0:
            raise DatasetError("--aux-blendshapes needs the landmarker's blendshapes, and the image cache has none; "
                               "use a landmarker model with blendshapes (the shipped face_landmarker.task has them) "
                               "or train without --aux-blendshapes")
        neutral = samples.neutral[np.asarray(train_idx)]
        images = np.unique(np.concatenate([samples.peaks[np.asarray(train_idx)].ravel(), neutral[neutral >= 0]]))
        sc = samples.blendshapes[images]
        return AuxTargets(samples.blendshapes, blendshape_mirror(samples.blendshape_names),
                          sc.mean(axis=0), sc.std(axis=0) + 1e-3)

    def target(self, peak: int, reference: int, flipped: bool) -> np.ndarray:
        pk, ref = self.scores[peak], self.scores[reference]
        if flipped:
            pk, ref = pk[self.mirror], ref[self.mirror]
        return np.concatenate([(pk - self.mean) / self.std, (pk - ref) / self.std]).astype(np.float32)


def load_data(args) -> tuple[Samples, dict]:
    names = class_names(args.class_set)
    ds = load_dataset(args.data, frames=args.frames, with_neutral_sequences=True,
                      borrow_neutral=not getattr(args, "own_neutral_only", False))
    unknown = sorted({s.label for s in ds.sequences} - set(names))
    if unknown:
        print(f"[fer-train] note: classes not in {args.class_set} are left out: {', '.join(unknown)}")
    seqs = [s for s in ds.sequences if s.label in names]
    # one cache for every image of the dataset, whichever class set is trained
    paths = sorted({str(p) for s in ds.sequences for p in s.peaks} |
                   {str(s.neutral) for s in ds.sequences if s.neutral})
    from fer_ros.training.data.cache import build_cache
    cache = build_cache([Path(p) for p in paths], CropConfig(size=args.size, margin=0.0), args.cache_dir,
                        progress=not args.no_progress)
    index = cache.index()
    neutral, peaks, labels, subjects, keys = [], [], [], [], []
    dropped = borrowed = 0
    for s in seqs:
        pk = [index[str(p)] for p in s.peaks]
        if not all(cache.ok[i] for i in pk):
            dropped += 1
            continue
        n = index[str(s.neutral)] if s.neutral is not None else -1
        if n >= 0 and not cache.ok[n]:
            n = -1
        borrowed += int(n >= 0 and s.neutral_borrowed)
        neutral.append(n), peaks.append(pk), labels.append(names.index(s.label))
        subjects.append(s.subject), keys.append(f"{s.key}:{s.label}")
    by_subject: dict[str, list[int]] = {}
    for (subject, _), p in sorted(ds.neutral_frames.items()):
        if cache.ok[index[str(p)]]:
            by_subject.setdefault(subject, []).append(index[str(p)])
    samples = Samples(np.array(neutral), np.array(peaks), np.array(labels), subjects, keys, cache.gray,
                      cache.points, cache.blendshapes, cache.blendshape_names,
                      {k: np.array(v) for k, v in by_subject.items()})
    info = {"root": str(ds.root), "layout": ds.layout, "sequences": len(labels), "subjects": len(set(subjects)),
            "dropped_no_face": dropped, "without_neutral": int((samples.neutral < 0).sum()),
            "neutral_borrowed": borrowed,
            "images": len(cache.paths), "images_no_face": int((~cache.ok).sum()),
            "per_class": {c: int((samples.labels == i).sum()) for i, c in enumerate(names)}}
    return samples, info


class SequenceSet(TorchDataset):
    """Network inputs for a subset of samples; augmentation (train) applies to neutral and clip together. With
    `aux`, each item also carries its auxiliary blendshape target (training sets only). With `neutral_swap`, a
    training sample's reference is, with that probability, another neutral frame of the same subject (taken at the
    start of another of its sequences), as a robot's reference is taken at another moment than the expression.
    With `mark_still`, each item ends with a float flag: 1 for a sample shown still (see `still_prob`), else 0."""

    def __init__(self, samples: Samples, idx: np.ndarray, train: bool, seed: int, augment_cfg=None,
                 still_prob: float = 0.0, neutral_label: int | None = None, clip_input: str = BASE_CLIP_INPUT,
                 aux: AuxTargets | None = None, neutral_swap: float = 0.0, mark_still: bool = False) -> None:
        self.clip_input = clip_input
        self.aux = aux
        self.s, self.idx, self.train = samples, np.asarray(idx), train
        self.rng = np.random.default_rng(seed)
        self.aug = augment_cfg
        self.still_prob = still_prob
        self.neutral_label = neutral_label
        self.neutral_swap = neutral_swap
        self.mark_still = mark_still

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int):
        j = self.idx[i]
        s = self.s
        frames = list(s.peaks[j])
        has_neutral = s.neutral[j] >= 0
        ids = ([s.neutral[j]] if has_neutral else []) + frames
        still = False
        if (self.train and self.still_prob > 0 and int(s.labels[j]) != self.neutral_label
                and self.rng.random() < self.still_prob):
            has_neutral = still = True
            ids = [frames[-1]] * (len(frames) + 1)  # a still face: its own reference, a clip without motion
        elif self.train and self.neutral_swap > 0:
            others = s.other_neutrals(j)  # none: no numbers drawn, the sample keeps its reference
            if len(others) and self.rng.random() < self.neutral_swap:
                has_neutral = True
                ids = [int(others[self.rng.integers(len(others))])] + frames
        gray, pts = s.gray[ids], s.points[ids]
        flipped = False
        if self.train and self.aug is not None:
            gray, pts, flipped = augment_flip(gray, pts, self.rng, self.aug)
        clip_gray = gray[1:] if has_neutral else gray
        clip_pts = pts[1:] if has_neutral else pts
        clip = clip_from_gray(self.clip_input, clip_gray, gray[0] if has_neutral else None)
        geo, valid = make_geo(pts[0] if has_neutral else None, clip_pts[-1])
        item = (torch.from_numpy(clip), torch.from_numpy(geo), torch.tensor(valid, dtype=torch.float32),
                torch.tensor(int(s.labels[j])))
        if self.aux is not None:
            # no neutral reference: the peak is its own (no change), as the clip's gray change sees it
            item = (*item, torch.from_numpy(self.aux.target(ids[-1], ids[0] if has_neutral else ids[-1], flipped)))
        if self.mark_still:
            item = (*item, torch.tensor(float(still)))
        return item


# --------------------------------------------------------------------------------------------------- model
def build_model(args, num_classes: int):
    cfg = {"size": args.size, "frames": args.frames, "geo_channels": 2, "geo_size": 64,
           "geo": {"width": args.geo_width, "dropout": args.dropout},
           "flip_tta": not getattr(args, "no_flip_tta", False),
           "clip_input": getattr(args, "clip_input", BASE_CLIP_INPUT)}
    if args.model == "agn3d_c3d":
        cfg["app"] = {"widths": [int(w) for w in args.app_widths.split(",")], "dropout": args.dropout}
    else:
        cfg["app"] = {"dropout": args.dropout}
    from fer_ros.difference_image import GEO_SPEC
    cfg["geo_channels"] = len(GEO_SPEC["channels"])
    cfg["geo_size"] = int(GEO_SPEC["size"])
    return create_model(args.model, num_classes, **cfg), cfg


def member_seed(seed: int, member: int) -> int:
    """Seed of ensemble member `member` (member 0 keeps the single model's seed)."""
    return seed + 1000 * member


def member_dir(name: str, member: int) -> str:
    """Run sub-folder of ensemble member `member` (member 0 keeps the single model's folder)."""
    return name if member == 0 else f"{name}_m{member}"


def geometric_vote(pair_logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Geometric-only prediction: one-vs-one voting of every pair's 2-way decision (ties: summed margins)."""
    pl = pair_logits.float()
    votes = torch.zeros(pl.shape[0], num_classes, device=pl.device)
    margin = torch.zeros_like(votes)
    for p, (i, j) in enumerate(pairs(num_classes)):
        d = pl[:, p, 1] - pl[:, p, 0]  # > 0: j wins
        votes[:, j] += (d > 0).float()
        votes[:, i] += (d <= 0).float()
        margin[:, j] += d
        margin[:, i] -= d
    return (votes + 1e-3 * torch.tanh(margin)).argmax(dim=1)


def train_one_epoch(model, loader, optimizer, device, progress=None, class_weight=None,
                    label_smoothing: float = 0.0, aux_head: BlendshapeHead | None = None,
                    aux_weight: float = 0.0, sam_rho: float = 0.0, ema: WeightEMA | None = None,
                    mixup_alpha: float = 0.0, mixup_rng: np.random.Generator | None = None,
                    logit_offset: torch.Tensor | None = None, still_offset_scale: float | None = None) -> dict:
    """One pass over the training loader; with aux_head, batches carry a fifth element (the auxiliary targets)
    and the loss adds aux_weight times their mean squared error. sam_rho > 0: sharpness-aware steps
    (training.experimental.sam). With ema, the moving average follows the model after every step. mixup_alpha > 0:
    every batch is blended (training.experimental.mixup) with draws from mixup_rng; the training accuracy then
    counts the dominant sample's class.
    still_offset_scale: the batches end with the still flag (SequenceSet's mark_still), and a still sample's
    logit_offset is multiplied by it (a blended sample takes the flag of the sample it is read as first)."""
    if mixup_alpha > 0 and aux_head is not None:
        raise ValueError("mixup and the auxiliary blendshape loss cannot be combined")
    core = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    model.train()
    totals = {"loss": 0.0, "l1": 0.0, "l2": 0.0, "l3": 0.0, "correct": 0, "n": 0}
    if aux_head is not None:
        totals["aux"] = 0.0
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    after_backward = (lambda: _all_reduce_grads(aux_head)) if aux_head is not None and distributed else None
    for batch in loader:
        clip, geo, valid, y = (t.to(device) for t in batch[:4])
        offset = logit_offset
        if logit_offset is not None and still_offset_scale is not None:
            still = batch[-1].to(device)[:, None]
            offset = logit_offset * (1.0 - still + still * still_offset_scale)
        first: dict = {}
        mixed = mix_batch(clip, geo, valid, y, mixup_alpha, mixup_rng) if mixup_alpha > 0 else None

        def base_loss(out, target, geo_valid):
            return agn_loss(out, target, geo_valid, class_weight=class_weight, label_smoothing=label_smoothing,
                            logit_offset=offset)

        def compute_loss():
            if mixed is not None:
                out = model(mixed.clip, mixed.geo, mixed.valid, target=mixed.y_a)
                loss, parts = mixup_loss(core, out, mixed, base_loss)
            else:
                out = model(clip, geo, valid, target=y)
                loss, parts = base_loss(out, y, valid)
            if aux_head is not None:
                aux = torch.nn.functional.mse_loss(aux_head(), batch[4].to(device))
                loss = loss + aux_weight * aux
                parts["aux"] = aux.item()
            if not first:  # what the batch is reported with: the pass at the unmoved weights
                first.update(out=out, parts=parts)
            return loss

        # the auxiliary head is outside DDP's module: its gradients are averaged by hand
        loss = sam_step(optimizer, compute_loss, sam_rho, [model] + ([aux_head] if aux_head is not None else []),
                        after_backward)
        if ema is not None:
            ema.update(core)
        out, parts = first["out"], first["parts"]
        b = len(y)
        totals["loss"] += loss.item() * b
        for k in parts:
            totals[k] += parts[k] * b
        totals["correct"] += int((out.l3.argmax(1) == y).sum())
        totals["n"] += b
        if progress is not None:
            progress.update(1)
    n = max(totals["n"], 1)
    return {**{k: v / n for k, v in totals.items() if k not in ("correct", "n")}, "train_acc": totals["correct"] / n}


def _all_reduce_grads(module: torch.nn.Module) -> None:
    import torch.distributed as dist
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


@torch.no_grad()
def evaluate(model, loader, device, num_classes: int) -> dict:
    """Per-sample labels and predictions: fused (the model's output), appearance only, geometric only, and the
    appearance network's top-2 pair."""
    model.eval()
    ys, fused, app, geo_only, probs, top2 = [], [], [], [], [], []
    for clip, geo, valid, y in loader:
        clip, geo, valid = clip.to(device), geo.to(device), valid.to(device)
        out = model(clip, geo, valid)
        ys.append(y.numpy())
        fused.append(out.probs.argmax(1).cpu().numpy())
        app.append(out.l1.argmax(1).cpu().numpy())
        top2.append(out.pair_classes.cpu().numpy())
        geo_only.append(geometric_vote(out.all_pairs, num_classes).cpu().numpy())
        probs.append(out.probs.cpu().numpy())
    cat = np.concatenate
    return {"y": cat(ys), "fused": cat(fused), "appearance": cat(app), "geometric": cat(geo_only),
            "probs": cat(probs), "top2": cat(top2)}


# --------------------------------------------------------------------------------------------------- runs
def _loader(ds, batch_size, shuffle, seed, distributed=False):
    sampler = None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler
        sampler = DistributedSampler(ds, shuffle=shuffle, seed=seed)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=g, num_workers=0, drop_last=False)


def fit(args, samples: Samples, train_idx, test_idx, num_classes: int, run_dir: Path, seed: int,
        dist_ctx=None):
    """Train one model on train_idx (evaluating on test_idx every fifth epoch and the last, when given); returns
    (model, cfg, rows, last evaluation or None), the model being the weights' moving average with --ema.
    Checkpoints to run_dir/checkpoint.pt every epoch."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    device = torch.device(args.device)
    model, cfg = build_model(args, num_classes)
    model.to(device)
    if dist_ctx is not None:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    core = model.module if dist_ctx is not None else model
    ema_decay = float(getattr(args, "ema", 0.0))
    ema = WeightEMA(core, ema_decay) if ema_decay > 0 else None  # before the auxiliary head taps the model
    aux_weight = float(getattr(args, "aux_blendshapes", 0.0))
    mixup_alpha = float(getattr(args, "mixup", 0.0))
    aux = AuxTargets.of(samples, train_idx) if aux_weight > 0 else None
    aux_head = BlendshapeHead(core.appearance, aux.size).to(device) if aux is not None else None
    params = list(model.parameters()) + (list(aux_head.parameters()) if aux_head is not None else [])
    optimizer = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(args.epochs, 1))
    aug = None if args.no_augment else AugmentConfig(erase=float(getattr(args, "erase_prob", 0.0))).scaled(
        float(getattr(args, "augment_scale", 1.0)))
    names = class_names(args.class_set)
    cw = class_weights(samples.labels[train_idx], num_classes, getattr(args, "class_weighting", "none"))
    cw = None if cw is None else torch.from_numpy(cw).to(device)
    clip_input = getattr(args, "clip_input", BASE_CLIP_INPUT)
    neutral = names.index(NEUTRAL) if NEUTRAL in names else None
    lo = logit_offsets(samples.labels[train_idx], num_classes, float(getattr(args, "logit_adjust", 0.0)), neutral)
    lo = None if lo is None else torch.from_numpy(lo).to(device)
    still_scale = float(getattr(args, "still_logit_adjust", 1.0))
    still_scale = None if lo is None or still_scale == 1.0 else still_scale  # 1: every sample alike
    train_ds = SequenceSet(samples, train_idx, True, seed, aug, still_prob=args.still_prob, neutral_label=neutral,
                           clip_input=clip_input, aux=aux, neutral_swap=float(getattr(args, "neutral_swap", 0.0)),
                           mark_still=still_scale is not None)
    train_loader = _loader(train_ds, args.batch_size, True, seed, dist_ctx is not None)
    test_loader = (_loader(SequenceSet(samples, test_idx, False, seed, clip_input=clip_input), 64, False, seed)
                   if test_idx is not None and len(test_idx) else None)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    rows, start = [], 0
    if args.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        core.load_state_dict(ck["model"])
        if aux_head is not None:
            if "aux" not in ck:
                raise RuntimeError(f"{ckpt_path} was trained without --aux-blendshapes; resume without it, or start "
                                   f"a new --out folder")
            aux_head.load_state_dict(ck["aux"])
        if ema is not None:
            if "ema" not in ck:
                raise RuntimeError(f"{ckpt_path} was trained without --ema; resume without it, or start a new --out "
                                   f"folder")
            ema.load_state_dict(ck["ema"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        start, rows = int(ck["epoch"]) + 1, json.loads(ck["rows"])
        train_ds.rng = np.random.default_rng([seed, start])
    writer = None
    is_main = dist_ctx is None or dist_ctx["rank"] == 0
    if is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(run_dir / "tb"))
        except Exception:  # noqa: BLE001 -- TensorBoard is optional
            writer = None
    progress = None
    if is_main and not args.no_progress:
        from tqdm import tqdm
        progress = tqdm(total=(args.epochs - start) * len(train_loader), desc=run_dir.name, unit="batch",
                        leave=False)
    last = None
    for epoch in range(start, args.epochs):
        if dist_ctx is not None:
            train_loader.sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        stats = train_one_epoch(model, train_loader, optimizer, device, progress, cw,
                                getattr(args, "label_smoothing", 0.0), aux_head, aux_weight,
                                float(getattr(args, "sam_rho", 0.0)), ema, mixup_alpha,
                                # seeded per epoch, as the augmentation
                                np.random.default_rng([seed, epoch, 7]) if mixup_alpha > 0 else None, lo,
                                still_scale)
        row = {"epoch": epoch, **stats, "lr": scheduler.get_last_lr()[0]}
        scheduler.step()
        row["epoch_s"] = time.perf_counter() - t0
        if test_loader is not None and is_main and (epoch == args.epochs - 1 or epoch % 5 == 4):
            last = evaluate(core, test_loader, device, num_classes)
            row["test_acc"] = float((last["fused"] == last["y"]).mean())
            if ema is not None:  # the average is what is kept; the last weights' score stays in the log
                row["test_acc_raw"] = row["test_acc"]
                last = evaluate(ema.module, test_loader, device, num_classes)
                row["test_acc"] = float((last["fused"] == last["y"]).mean())
        rows.append(row)
        if is_main:
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch":
                        writer.add_scalar(k, v, epoch)
            state = {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch, "rows": json.dumps(rows),
                     "args": json.dumps(vars(args))}
            if aux_head is not None:
                state["aux"] = aux_head.state_dict()
            if ema is not None:
                state["ema"] = ema.state_dict()
            # written aside, then renamed: a run stopped mid-write keeps its last whole checkpoint for --resume
            part = ckpt_path.with_name(ckpt_path.name + ".part")
            torch.save(state, part)
            os.replace(part, ckpt_path)
            _write_csv(run_dir / "log.csv", rows)
    if progress is not None:
        progress.close()
    if writer is not None:
        writer.close()
    if aux_head is not None:
        aux_head.detach()  # the model leaves without the tap: evaluation and export see the networks alone
    if is_main and rows:
        try:
            from fer_ros.plots import plot_training_curves
            plot_training_curves(rows, run_dir / "curves.png", title=run_dir.name)
        except Exception as exc:  # noqa: BLE001 -- a plot must never cost a training run
            print(f"[fer-train] note: no training-curve plot for {run_dir.name} ({exc})")
    if ema is not None:
        core = ema.module
    if test_loader is not None and last is None and is_main:
        last = evaluate(core, test_loader, device, num_classes)
    return core, cfg, rows, last


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "epoch", k))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _fold_scores(ev: dict, names: tuple[str, ...]) -> dict:
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


def _summary(per_fold: list[dict]) -> dict:
    keys = sorted({k for f in per_fold for k, v in f.items() if k not in ("n", "fold") and np.isscalar(v)})
    return {k: {"mean": float(np.mean([f[k] for f in per_fold if k in f])),
                "std": float(np.std([f[k] for f in per_fold if k in f])),
                "min": float(np.min([f[k] for f in per_fold if k in f])),
                "max": float(np.max([f[k] for f in per_fold if k in f]))} for k in keys}


def _print_table(per_fold: list[dict], summary: dict) -> None:
    cols = [k for k in ("fused", "appearance", "appearance_top2", "geometric", "fused_7class_forced", "neutral_called_neutral")
            if k in summary]
    print("fold  n    " + "  ".join(f"{c:>22s}" for c in cols))
    for f in per_fold:
        print(f"{f['fold']:>4d}  {f['n']:<4d} " + "  ".join(f"{f.get(c, float('nan')):22.4f}" for c in cols))
    print("mean       " + "  ".join(f"{summary[c]['mean']:15.4f} ±{summary[c]['std']:.4f}" for c in cols))


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
    args = get_args_parser().parse_args(argv)
    if args.export:
        args.final = True
    if args.ensemble < 1:
        print(f"fer-train: --ensemble must be at least 1, got {args.ensemble}", file=sys.stderr)
        return 2
    if not args.augment_scale >= 0.0:
        print(f"fer-train: --augment-scale must be 0 or more, got {args.augment_scale}", file=sys.stderr)
        return 2
    if not 0.0 <= args.erase_prob <= 1.0:
        print(f"fer-train: --erase-prob must be between 0 and 1, got {args.erase_prob}", file=sys.stderr)
        return 2
    if not args.sam_rho >= 0.0:
        print(f"fer-train: --sam-rho must be 0 (off) or more, got {args.sam_rho}", file=sys.stderr)
        return 2
    if not (args.ema == 0.0 or 0.0 < args.ema < 1.0):
        print(f"fer-train: --ema must be 0 (off) or a decay above 0 and below 1, got {args.ema}", file=sys.stderr)
        return 2
    if not 0.0 <= args.neutral_swap <= 1.0:
        print(f"fer-train: --neutral-swap must be between 0 and 1, got {args.neutral_swap}", file=sys.stderr)
        return 2
    if not args.mixup >= 0.0:
        print(f"fer-train: --mixup must be 0 (off) or an alpha above 0, got {args.mixup}", file=sys.stderr)
        return 2
    if args.mixup > 0 and args.aux_blendshapes > 0:
        print("fer-train: --mixup and --aux-blendshapes cannot be combined (the blendshape targets of a blend are "
              "not defined); drop one of them", file=sys.stderr)
        return 2
    if not 0.0 <= args.still_prob <= 1.0:
        print(f"fer-train: --still-prob must be between 0 and 1, got {args.still_prob}", file=sys.stderr)
        return 2
    if not args.aux_blendshapes >= 0.0:
        print(f"fer-train: --aux-blendshapes must be 0 (off) or a positive weight, got {args.aux_blendshapes}",
              file=sys.stderr)
        return 2
    if not 0.0 <= args.still_logit_adjust <= 1.0:
        print(f"fer-train: --still-logit-adjust must be between 0 and 1, got {args.still_logit_adjust}",
              file=sys.stderr)
        return 2
    if args.logit_adjust < 0:
        print(f"fer-train: --logit-adjust must be at least 0 (1 is usual), got {args.logit_adjust}", file=sys.stderr)
        return 2
    if not 0.0 <= args.label_smoothing < 1.0:
        print(f"fer-train: --label-smoothing must be at least 0 and below 1, got {args.label_smoothing}",
              file=sys.stderr)
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
    report: dict = {"args": vars(args), "data": info, "class_names": list(names),
                    "command": "fer-train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))}
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
                core, _, rows, ev = fit(args, samples, train_idx, test_idx, len(names), out / member_dir(f"fold{k:02d}", m),
                                        member_seed(args.seed + k, m), dist_ctx)
                members.append(core)
                seconds += sum(r["epoch_s"] for r in rows)
                if is_main:
                    member_fused.append(float((ev["fused"] == ev["y"]).mean()))
            if not is_main:
                continue
            if len(members) > 1:
                test_set = SequenceSet(samples, test_idx, False, args.seed, clip_input=args.clip_input)
                ev = evaluate(join_members(members), _loader(test_set, 64, False, args.seed),
                              torch.device(args.device), len(names))
            scores = {"fold": k, **_fold_scores(ev, names)}
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
            summary = _summary(per_fold)
            _print_table(per_fold, summary)
            report["cross_validation"] = {"folds": args.folds, "run_folds": wanted, "per_fold": per_fold,
                                          "summary": summary, "seconds": cv_time}
            _write_predictions(out, samples, names, evals)
            _plots(out, names, evals)
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
                _export(args, model, cfg, names, report)
    report["seconds_total"] = time.time() - t_start
    if is_main:
        (out / "report.json").write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
        print(f"[fer-train] report: {out / 'report.json'} ({report['seconds_total']:.0f} s in all)")
    return 0


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _write_predictions(out: Path, samples: Samples, names, evals) -> None:
    with open(out / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sequence", "subject", "label", "fused", "appearance", "geometric"])
        for idx, ev in evals:
            for j, i in enumerate(idx):
                w.writerow([samples.keys[i], samples.subjects[i], names[ev["y"][j]], names[ev["fused"][j]],
                            names[ev["appearance"][j]], names[ev["geometric"][j]]])


def _plots(out: Path, names, evals) -> None:
    try:
        from fer_ros.metrics import confusion_matrix
        from fer_ros.plots import plot_confusion_matrix
    except ImportError as exc:
        print(f"[fer-train] note: no confusion-matrix plot ({exc})")
        return
    y = np.concatenate([ev["y"] for _, ev in evals])
    for kind in ("fused", "appearance", "geometric"):
        pred = np.concatenate([ev[kind] for _, ev in evals])
        cm = confusion_matrix(y, pred, len(names))
        plot_confusion_matrix(cm, list(names), out / f"confusion_{kind}.png",
                              title=f"{kind}: cross-validated, {len(y)} sequences")


def _export(args, model, cfg, names, report) -> None:
    from fer_ros.export import export_model
    from fer_ros.manifest import Manifest
    manifest = Manifest(
        name=args.name or Path(args.export).name, class_set=args.class_set, class_names=list(names),
        arch=args.model, arch_cfg=cfg,
        preprocess=PREPROCESS_SPEC(CropConfig(size=args.size, margin=0.0), args.frames, args.clip_input),
        training={"command": report["command"], "seed": args.seed, "data": report["data"],
                  "cross_validation": report.get("cross_validation", {}).get("summary"),
                  "final_fit_seconds": report["final"]["seconds"]})
    export_model(model.cpu(), manifest, args.export, torchscript=args.torchscript)
    print(f"[fer-train] exported {args.export} (model.onnx, model.pt{', model.ts' if args.torchscript else ''}, "
          f"manifest.json)")


if __name__ == "__main__":
    sys.exit(main())
