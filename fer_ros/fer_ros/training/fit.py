"""fer-train's fit loop: the model a command line asks for (`build_model`), one epoch of training
(`train_one_epoch`), the per-sample evaluation (`evaluate`) and one complete fit with its log, checkpoint and
--resume (`fit`). Ensemble members are fits of their own, with seeds and run folders from `member_seed` and
`member_dir`."""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fer_ros.classes import NEUTRAL, class_names
from fer_ros.nets.agn import agn_loss
from fer_ros.nets.geometric import pairs
from fer_ros.nets.registry import create_model
from fer_ros.preprocess import BASE_CLIP_INPUT
from fer_ros.training.class_balance import class_weights, logit_offsets
from fer_ros.training.data.augment import AugmentConfig
from fer_ros.training.data.samples import Samples, SequenceSet
from fer_ros.training.experimental.auxiliary import AuxTargets, BlendshapeHead
from fer_ros.training.experimental.ema import WeightEMA
from fer_ros.training.experimental.mixup import mix_batch, mixup_loss
from fer_ros.training.experimental.sam import sam_step


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


def make_loader(ds, batch_size, shuffle, seed, distributed=False):
    """A DataLoader over `ds` in the main process, shuffled by its own seeded generator (a DistributedSampler
    under torchrun)."""
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
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
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
    train_loader = make_loader(train_ds, args.batch_size, True, seed, dist_ctx is not None)
    test_loader = (make_loader(SequenceSet(samples, test_idx, False, seed, clip_input=clip_input), 64, False, seed)
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
