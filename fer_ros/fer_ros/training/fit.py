"""fer-train's fit loop: the model a command line asks for (`build_model`, `load_init`), one epoch of training
(`train_one_epoch`), the per-sample evaluation (`evaluate`) and one complete fit with its log, checkpoint and
--resume (`fit`; what a checkpoint records and when --resume may continue it: resume.py). A loss or weights that
become nan or inf stop the fit (`DivergedError`)."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from fer_ros.difference_image import GEO_SPEC
from fer_ros.manifest import APP_WIDTHS
from fer_ros.nets.agn import agn_loss
from fer_ros.nets.geometric import pairs
from fer_ros.nets.registry import create_model
from fer_ros.preprocess import clip_channels
from fer_ros.training.args import RECIPE_APP_WIDTHS, widths
from fer_ros.training.data.augment import AugmentConfig
from fer_ros.training.data.samples import Samples, WeightedEpochs
from fer_ros.training.data.sequence_set import ReferencePlan, SequenceSet
from fer_ros.training.resume import (INIT_KEY, ResumeError, clear_fit, data_text, recorded_options, resume_problem,
                                    split_record)


class InitError(ValueError):
    """--init names a model that cannot start this run; the message says why and what to do."""


class DivergedError(RuntimeError):
    """The training loss or the weights became nan or inf: the fit stops before a step, a checkpoint or an export
    takes them; the message says where and what to do."""


def augment_config(args) -> AugmentConfig | None:
    """The sample augmentation fer-train's options ask for; None with --no-augment."""
    return None if args.no_augment else AugmentConfig(small_face=args.small_face_prob)


def diverged_todo(args) -> str:
    """What to do about a fit whose loss became nan or inf (DivergedError)."""
    return (f"the fit stops there, no checkpoint takes its weights and nothing is exported; train afresh with a "
            f"lower --lr (this run: {args.lr:g}), with --overwrite or another --out")


def _finite(value: torch.Tensor, distributed: bool = False) -> bool:
    """Whether value holds finite numbers only, in every process under torchrun (so that they all stop at the same
    step)."""
    ok = torch.isfinite(value.detach()).all().float()
    if distributed:
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    return bool(ok.item())


def _shown_loss(loss: torch.Tensor) -> str:
    value = float(loss.detach())
    return str(value) if not math.isfinite(value) else "nan or inf in another process"


def finite_weights(model) -> bool:
    """Whether every floating-point weight and buffer of model is finite."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def undrawn_data(args, samples: Samples, train_idx) -> dict[int, int]:
    """The --data (by position) that have training samples in train_idx but draw none of them per epoch (WEIGHT
    times their number rounds to 0): {position: number of its training samples}."""
    epochs = WeightedEpochs(samples, np.asarray(train_idx), [s.weight for s in args.data], 0)
    return {d: len(group) for d, (group, n) in enumerate(zip(epochs.groups, epochs.draws())) if len(group) and n == 0}


def undrawn_text(args, d: int, n: int, where: str) -> str:
    """`--data PATH:WEIGHT draws no sample per epoch <where> (...)` of the d-th --data, of n training samples."""
    return (f"--data {data_text(args)[d]} draws no sample per epoch {where} ({args.data[d].weight:g} x {n} training "
            f"samples rounds to 0; a weight of at least {1 / n:.3g} draws one)")


def build_model(args, num_classes: int):
    """(AGN3D, its config as the manifest records it) for the command line's model options."""
    cfg = {"size": args.size, "frames": args.frames, "geo_channels": len(GEO_SPEC["channels"]),
           "geo_size": int(GEO_SPEC["size"]), "geo": {"width": args.geo_width, "dropout": args.dropout},
           "app": {"widths": list(args.app_widths), "dropout": args.dropout},
           "flip_tta": not args.no_flip_tta, "clip_input": args.clip_input}
    if args.model == "agn3d_ir":
        cfg["app"] = {"dropout": args.dropout}
    return create_model(args.model, num_classes, **cfg), cfg


def model_problem(args, num_classes: int) -> str | None:
    """Why the model options make no network for this run's clips (a one-line message), None when they do:
    --app-widths with agn3d_ir (whose widths are its own), widths in a number the model does not take, a --size or
    --frames its pooling cannot shrink. The model is built and runs once on one empty clip of the run's size, on the
    CPU."""
    if args.model == "agn3d_ir" and list(args.app_widths) != widths(RECIPE_APP_WIDTHS):
        return ("--app-widths sizes the appearance network of agn3d_res and agn3d_c3d, and agn3d_ir has widths of "
                "its own: leave --app-widths out with --model agn3d_ir")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Initializing zero-element tensors is a no-op" of a too small --size
            model, _ = build_model(args, num_classes)
            model.flip_tta = False  # the mirror image has the clip's shape
            clip = torch.zeros(1, clip_channels(args.clip_input), args.frames, args.size, args.size)
            geo = torch.zeros(1, len(GEO_SPEC["channels"]), int(GEO_SPEC["size"]), int(GEO_SPEC["size"]))
            model.eval()(clip, geo, torch.ones(1))
    except (ValueError, IndexError, RuntimeError) as exc:
        shown = " ".join(str(exc).split()) or type(exc).__name__
        takes = "; ".join(f"{arch}: {least}" + ("" if most == least else " or more")
                          for arch, (least, most) in APP_WIDTHS.items())
        given, todo = f" --app-widths {','.join(map(str, args.app_widths))},", (
            f", or as many --app-widths as the model takes ({takes})")
        if args.model == "agn3d_ir":
            given, todo = "", ""
        return (f"--model {args.model} with{given} --size {args.size} and --frames {args.frames} makes no network "
                f"that reads its clips ({shown}): give a larger --size{todo}")
    return None


def load_init(init_dir: str | Path, arch: str, cfg: dict, preprocess: dict, class_names) -> tuple[dict, dict]:
    """(state dict, record) of the model in init_dir (--init): its weights (sha256-checked, loaded with
    weights_only) after checking that it has this run's architecture (the dropout may differ: it has no weights),
    preprocessing and classes, and what its manifest says of its training. Raises InitError naming what differs."""
    from fer_ros.manifest import ModelError, load_manifest, read_model_file
    try:
        m = load_manifest(init_dir)
    except ModelError as exc:
        raise InitError(f"--init {init_dir}: {exc}") from None
    problems = []
    if list(m.class_names) != list(class_names):
        problems.append(f"classes {', '.join(m.class_names)} (this run: {', '.join(class_names)})")
    def shape(c: dict) -> str:  # the options that make the weights: not the mirror average, not the dropout
        c = json.loads(json.dumps({k: v for k, v in c.items() if k != "flip_tta"}))
        for net in ("app", "geo"):
            if isinstance(c.get(net), dict):
                c[net].pop("dropout", None)
        return json.dumps(c, sort_keys=True)
    mine, theirs = shape(cfg), shape(m.arch_cfg)
    if m.arch != arch or mine != theirs:
        problems.append(f"architecture {m.arch} {theirs} (this run: {arch} {mine})")
    if json.dumps(m.preprocess, sort_keys=True) != json.dumps(preprocess, sort_keys=True):
        problems.append("preprocessing (crop, clip input or clip length)")
    if problems:
        raise InitError(f"--init {init_dir} differs from this run in " + "; ".join(problems)
                        + ": give the model options that model was trained with, or train without --init")
    # the bytes whose sha256 was checked, which the --resume check of the run trusts
    try:
        data = read_model_file(m, "state_dict")
    except ModelError as exc:
        raise InitError(f"--init {init_dir}: {exc}") from None
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return state, {"model": m.name, "state_dict_sha256": m.files["state_dict"]["sha256"],
                   "command": (m.training or {}).get("command"), "seconds": (m.training or {}).get("final_fit_seconds"),
                   "data": trained_on(m.training)}


def trained_on(training) -> dict[str, dict]:
    """The datasets a manifest's training record names: {name: {"root", "splits"}} (roots as that run gave them)."""
    data = training.get("data") if isinstance(training, dict) else None
    datasets = data.get("datasets") if isinstance(data, dict) else None
    if not isinstance(datasets, dict):
        return {}
    return {name: {"root": d.get("root"), "splits": d.get("splits") or []} for name, d in datasets.items()
            if isinstance(d, dict) and isinstance(d.get("root"), str)}


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


def train_one_epoch(model, loader, optimizer, scheduler, device, progress=None, where: str = "an epoch") -> dict:
    """One pass over the training loader (items of SequenceSet), the learning rate stepped after every batch: the
    mean losses, the training accuracy and the learning rate of the epoch's first step (lr) and of its last (lr_end).
    A loss that is not finite raises DivergedError (naming `where`, the step and its learning rate) before its step
    changes the weights."""
    model.train()
    distributed = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    totals = {"loss": 0.0, "l1": 0.0, "l2": 0.0, "l3": 0.0, "correct": 0, "n": 0}
    rates = []
    for step, (clip, geo, valid, y, soft, pair_mask) in enumerate(loader, 1):
        clip, geo, valid, y = clip.to(device), geo.to(device), valid.to(device), y.to(device)
        rates.append(optimizer.param_groups[0]["lr"])  # the rate this step's optimizer.step() uses
        out = model(clip, geo, valid, target=y)
        loss, parts = agn_loss(out, y, valid, soft_target=soft.to(device), pair_mask=pair_mask.to(device))
        if not _finite(loss, distributed):
            raise DivergedError(f"the loss became {_shown_loss(loss)} in {where}, step {step} of {len(loader)} "
                                f"(learning rate {rates[-1]:.3g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        b = len(y)
        totals["loss"] += loss.item() * b
        for k in parts:
            totals[k] += parts[k] * b
        totals["correct"] += int((out.l3.argmax(1) == y).sum())
        totals["n"] += b
        if progress is not None:
            progress.update(1)
    n = max(totals["n"], 1)
    first_last = {"lr": rates[0], "lr_end": rates[-1]} if rates else {}
    return {**{k: v / n for k, v in totals.items() if k not in ("correct", "n")}, "train_acc": totals["correct"] / n,
            **first_last}


@torch.no_grad()
def evaluate(model, loader, device, num_classes: int) -> dict:
    """Per-sample labels and predictions: fused (the model's output), appearance only, geometric only, and the
    appearance network's top-2 pair."""
    model.eval()
    ys, fused, app, geo_only, probs, top2 = [], [], [], [], [], []
    for clip, geo, valid, y, _, _ in loader:
        out = model(clip.to(device), geo.to(device), valid.to(device))
        ys.append(y.numpy())
        fused.append(out.probs.argmax(1).cpu().numpy())
        app.append(out.l1.argmax(1).cpu().numpy())
        top2.append(out.pair_classes.cpu().numpy())
        geo_only.append(geometric_vote(out.all_pairs, num_classes).cpu().numpy())
        probs.append(out.probs.cpu().numpy())
    cat = np.concatenate
    return {"y": cat(ys), "fused": cat(fused), "appearance": cat(app), "geometric": cat(geo_only),
            "probs": cat(probs), "top2": cat(top2)}


def draw_seed(seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """The seed of one epoch's reference draws, augmentation and dropout in one process: (seed, epoch), and under
    torchrun (world above 1) the process's rank too, so that the processes draw differently."""
    return [seed, epoch] if world <= 1 else [seed, epoch, rank]


def seed_epoch(ds: SequenceSet, entropy: list[int]) -> None:
    """Seed the dataset's draws and torch's (dropout) for one epoch from `entropy` (draw_seed)."""
    ds.reseed(entropy)
    torch.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))


def rank_and_world(distributed: bool) -> tuple[int, int]:
    """(rank, number of processes) of this process: (0, 1) outside torchrun."""
    if not distributed:
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def pretrain_geometric(model, samples: Samples, train_idx, args, seed: int, device, distributed: bool = False,
                       log=print, name: str = "the fit") -> list[dict]:
    """--geo-epochs: train the geometric network alone, before the joint epochs, on the training samples whose
    reference is another image of the face (its own or, as the plan draws it, another moment of the subject): the
    K - 1 pair decisions that hold each sample's class (L2), with their own one-cycle schedule at --lr. The
    appearance network is left as it is. A model started from one trained on faces without references (--init)
    has pair decisions that never saw a change: they learn here, at about a tenth of a joint epoch's cost. Under
    torchrun each process trains on its own share of those samples (a new share every epoch) and draws its own
    augmentation. A loss or weights that are not finite raise DivergedError (naming `name`, the fit)."""
    core = model.module if distributed else model
    real = np.array([j for j in train_idx if samples.neutral[j] >= 0 and samples.neutral[j] not in samples.peaks[j]],
                    np.int64)
    if args.geo_epochs == 0 or len(real) == 0:
        return []
    plan = ReferencePlan(none=0.0, still=0.0, other=args.other_reference_prob, strength=args.moment_strength)
    ds = SequenceSet(samples, real, True, seed, augment_config(args), plan, args.clip_input)
    rank, world = rank_and_world(distributed)
    loader, shares = geometric_loader(ds, args.batch_size, seed, rank, world)
    params = list(core.geometric.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.geo_epochs * len(loader),
                                                    pct_start=args.warmup if args.warmup > 0 else 1e-6)
    rows = []
    core.train()
    for epoch in range(args.geo_epochs):
        if shares is not None:
            shares.set_epoch(epoch)
        seed_epoch(ds, draw_seed(seed, 1000 + epoch, rank, world))
        t0, total, n = time.perf_counter(), 0.0, 0
        for step, (_, geo, _, y, _, _) in enumerate(loader, 1):
            geo, y = geo.to(device), y.to(device)
            logits, target = core.true_class_pairs(core.geometric(geo), y)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), target.reshape(-1))
            if not _finite(loss, distributed):
                raise DivergedError(
                    f"the loss became {_shown_loss(loss)} in {name}'s geometric pre-training, epoch {epoch + 1} of "
                    f"{args.geo_epochs}, step {step} of {len(loader)} (learning rate "
                    f"{optimizer.param_groups[0]['lr']:.3g}): {diverged_todo(args)}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if distributed:
                for p in params:
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad)
                        p.grad /= torch.distributed.get_world_size()
            optimizer.step()
            scheduler.step()
            total, n = total + loss.item() * len(y), n + len(y)
        rows.append({"geo_epoch": epoch, "l2": total / max(n, 1), "epoch_s": time.perf_counter() - t0})
    if not finite_weights(core.geometric):
        raise DivergedError(f"the weights of the geometric network became nan or inf in {name}'s geometric "
                            f"pre-training, at its last step: {diverged_todo(args)}")
    log(f"[fer-train] geometric network alone: {args.geo_epochs} epochs on {len(real)} samples with a reference, "
        f"pair loss {rows[0]['l2']:.3f} -> {rows[-1]['l2']:.3f} ({sum(r['epoch_s'] for r in rows):.0f} s)")
    return rows


def geometric_loader(ds: SequenceSet, batch_size: int, seed: int, rank: int = 0, world: int = 1):
    """(loader, sampler) of the geometric pre-training: every sample in a shuffled order in one process; under
    torchrun (world above 1) this process's share of each epoch's order, padded so that every process makes the
    same number of steps (the sampler: set_epoch before each epoch; None in one process)."""
    if world <= 1:
        g = torch.Generator().manual_seed(seed)
        return DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g, num_workers=0, drop_last=False), None
    shares = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
    return DataLoader(ds, batch_size=batch_size, sampler=shares, num_workers=0, drop_last=False), shares


class EpochSampler(Sampler):
    """Positions in a SequenceSet for one epoch of WeightedEpochs draws; under torchrun each process takes its
    own share (the draws padded to a multiple of the processes, so every process makes the same number of steps)."""

    def __init__(self, epochs: WeightedEpochs, train_idx: np.ndarray, rank: int = 0, world: int = 1) -> None:
        self.epochs, self.rank, self.world = epochs, rank, world
        self.position = {int(j): k for k, j in enumerate(train_idx)}

    def set_epoch(self, epoch: int) -> None:
        self.epochs.set_epoch(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.epochs) / self.world)

    def __iter__(self):
        order = self.epochs.indices()
        if self.world > 1 and len(order):
            order = np.resize(order, len(self) * self.world)[self.rank::self.world]
        return iter(self.position[int(j)] for j in order)


def make_loader(ds, batch_size: int, sampler=None) -> DataLoader:
    """A DataLoader in the main process: in the sampler's order (training) or in order (evaluation)."""
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=0, drop_last=False)


def fit(args, samples: Samples, train_idx, test_idx, num_classes: int, run_dir: Path, seed: int, dist_ctx=None,
        init_state: dict | None = None, init_sha256: str | None = None):
    """Train one model on train_idx, drawing each dataset by its --data weight (evaluating on test_idx every fifth
    epoch and the last, when given); returns (model, cfg, rows, last evaluation or None). init_state: weights to
    start from (--init), init_sha256: the sha256 of their model.pt. A fit that starts at its first epoch removes what
    another left in run_dir (FIT_FILES); checkpoints to run_dir/checkpoint.pt every epoch, with the split_record of
    its samples, the options and init_sha256; --resume continues one made for the same samples with the same options
    from the same --init weights and raises ResumeError for another (one finished, at args.epochs, is evaluated as
    it is). A loss or weights that are not finite raise DivergedError before a checkpoint takes them. ValueError for
    training samples of which the --data weights draw none per epoch (undrawn_data)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    device = torch.device(args.device)
    model, cfg = build_model(args, num_classes)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device)
    if dist_ctx is not None:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    core = model.module if dist_ctx is not None else model
    plan = ReferencePlan(none=args.no_reference_prob, still=args.still_prob, other=args.other_reference_prob,
                         strength=args.moment_strength)
    train_ds = SequenceSet(samples, train_idx, True, seed, augment_config(args), plan,
                           args.clip_input)
    epochs = WeightedEpochs(samples, np.asarray(train_idx), [s.weight for s in args.data], seed)
    if len(epochs) == 0:
        why = [undrawn_text(args, d, n, f"in {run_dir.name}")
               for d, n in undrawn_data(args, samples, train_idx).items()]
        raise ValueError(f"{'; '.join(why) or 'no training samples'}: {run_dir.name} would train on nothing")
    rank, world = (dist_ctx["rank"], dist_ctx["world"]) if dist_ctx else (0, 1)
    sampler = EpochSampler(epochs, train_idx, rank, world)
    train_loader = make_loader(train_ds, args.batch_size, sampler)
    test_loader = (make_loader(SequenceSet(samples, test_idx, False, seed, clip_input=args.clip_input), 64)
                   if test_idx is not None and len(test_idx) else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps,
                                                    pct_start=args.warmup if args.warmup > 0 else 1e-6)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    rows, start = [], 0
    split = split_record(args, samples, train_idx, test_idx)
    if args.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        why = resume_problem(ck, args, ckpt_path, split, init_sha256)
        if why:
            raise ResumeError(why)
        core.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        # the schedule's position from the checkpoint, its length from this run (--epochs may have grown)
        position = {k: v for k, v in ck["scheduler"].items() if k in ("last_epoch", "_step_count", "_last_lr")}
        scheduler.load_state_dict({**scheduler.state_dict(), **position})
        start, rows = int(ck["epoch"]) + 1, json.loads(ck["rows"])
    is_main = dist_ctx is None or dist_ctx["rank"] == 0
    if is_main and start == 0:
        clear_fit(run_dir)
    writer = None
    if is_main and start < args.epochs:  # a finished fit (evaluated again) adds no events
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(run_dir / "tb"))
        except Exception:  # noqa: BLE001 -- TensorBoard is optional
            writer = None
    progress = None
    if is_main and not args.no_progress and start < args.epochs:
        from tqdm import tqdm
        progress = tqdm(total=(args.epochs - start) * len(train_loader), desc=run_dir.name, unit="batch",
                        leave=False)
    last = None
    if start == 0:  # a resumed run has its geometric network in the checkpoint
        geo_rows = pretrain_geometric(model, samples, train_idx, args, seed, device, dist_ctx is not None,
                                      log=print if is_main else (lambda *a, **k: None), name=run_dir.name)
        if is_main and geo_rows:
            _write_csv(run_dir / "geo_log.csv", geo_rows)
    for epoch in range(start, args.epochs):
        # the epoch's draws, augmentation and dropout depend on (seed, epoch) alone, and the process's rank under
        # torchrun: a resumed run trains as the uninterrupted one would
        sampler.set_epoch(epoch)
        seed_epoch(train_ds, draw_seed(seed, epoch, rank, world))
        t0 = time.perf_counter()
        where = f"{run_dir.name}, epoch {epoch + 1} of {args.epochs}"
        try:
            stats = train_one_epoch(model, train_loader, optimizer, scheduler, device, progress, where)
            if not finite_weights(core):  # made by the epoch's last step, whose weights no loss has checked
                raise DivergedError(f"the weights became nan or inf in {where}, step {len(train_loader)} of "
                                    f"{len(train_loader)} (learning rate {stats['lr_end']:.3g})")
        except DivergedError as exc:
            for handle in (progress, writer):
                if handle is not None:
                    handle.close()
            raise DivergedError(f"{exc}: {diverged_todo(args)}") from None
        # lr and lr_end: the learning rates of the epoch's first and last steps
        row = {"epoch": epoch, **stats, "epoch_s": time.perf_counter() - t0}
        if test_loader is not None and is_main and (epoch == args.epochs - 1 or epoch % 5 == 4):
            last = evaluate(core, test_loader, device, num_classes)
            row["test_acc"] = float((last["fused"] == last["y"]).mean())
        rows.append(row)
        if is_main:
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch":
                        writer.add_scalar(k, v, epoch)
            state = {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch, "rows": json.dumps(rows),
                     "args": json.dumps(recorded_options(args)), "split": json.dumps(split), INIT_KEY: init_sha256}
            # written aside, then renamed: a run stopped mid-write keeps its last whole checkpoint for --resume
            part = ckpt_path.with_name(ckpt_path.name + ".part")
            torch.save(state, part)
            os.replace(part, ckpt_path)
            _write_csv(run_dir / "log.csv", rows)
    if progress is not None:
        progress.close()
    if writer is not None:
        writer.close()
    if is_main and rows:
        try:
            from fer_ros.plots import plot_training_curves
            plot_training_curves(rows, run_dir / "curves.png", title=run_dir.name)
        except Exception as exc:  # noqa: BLE001 -- a plot must never cost a training run
            print(f"[fer-train] note: no training-curve plot for {run_dir.name} ({exc})")
    if test_loader is not None and last is None and is_main:
        last = evaluate(core, test_loader, device, num_classes)
    return core, cfg, rows, last


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "epoch", k))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
