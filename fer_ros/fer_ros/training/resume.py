"""What a fit leaves in its folder and when --resume may continue it: a checkpoint records the samples it trains
and is scored on (`split_record`), the command line's options (`recorded_options`) and the sha256 of the --init
model's model.pt it started from (INIT_KEY); --resume refuses one made for other samples (`split_mismatch`), as a
fold whose subjects changed with --folds, --seed or --data, with other options than args.RESUME_MAY_CHANGE allows
(`options_mismatch`) or from another --init model (`init_mismatch`: the folder re-exported in between);
`resume_problem` and `check_resume` apply them all; a fresh fit starts without what another left (`clear_fit`)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from fer_ros.training.args import RESUME_MAY_CHANGE, RESUME_MAY_GROW
from fer_ros.training.data.samples import Samples


class ResumeError(ValueError):
    """--resume finds a checkpoint made for other samples or with other options than this run's; the message says
    what differs and what to do."""


# What a fit writes in its folder: a fresh fit (not continued from a checkpoint) starts without them
FIT_FILES = ("checkpoint.pt", "checkpoint.pt.part", "log.csv", "geo_log.csv", "curves.png", "tb")
AFRESH = "train afresh with --overwrite or another --out"
# The checkpoint's record of the weights it started from: the sha256 of the --init model's model.pt (None without)
INIT_KEY = "init_sha256"


def clear_fit(run_dir: Path) -> None:
    """Remove what a fit wrote in run_dir (FIT_FILES), so that a fresh fit leaves no checkpoint, log or TensorBoard
    events of another one beside its own."""
    for name in FIT_FILES:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def data_text(args) -> list[str]:
    """--data as given: PATH:WEIGHT of each dataset."""
    return [f"{s.root}:{s.weight:g}" for s in args.data]


def _names_sha256(samples: Samples, idx) -> str:
    h = hashlib.sha256()
    for key in sorted(samples.keys[int(i)] for i in (idx if idx is not None else [])):
        h.update(key.encode() + b"\n")
    return h.hexdigest()


def split_record(args, samples: Samples, train_idx, test_idx) -> dict:
    """What decides the samples a fit trains and is scored on: --folds, --seed, --data and --class-set as given,
    the numbers of training and test samples and a sha256 of each set's sample names."""
    return {"folds": args.folds, "seed": args.seed, "data": data_text(args),
            "class_set": args.class_set, "train": len(train_idx), "test": 0 if test_idx is None else len(test_idx),
            "train_sha256": _names_sha256(samples, train_idx), "test_sha256": _names_sha256(samples, test_idx)}


def split_mismatch(checkpoint: dict, record: dict, path: Path) -> str | None:
    """Why --resume must not continue the checkpoint (loaded from path) with the samples of `record`; None when it
    was made for the same training and test samples."""
    todo = ("resuming it would score the model on samples it was trained on, or train it on others: resume with "
            f"the options it was made with, or {AFRESH}")
    if "split" not in checkpoint:
        return (f"--resume: {path} does not record the samples it was made for, so it cannot be checked against "
                f"this run's; {AFRESH}")
    then = json.loads(checkpoint["split"])
    if all(then.get(k) == record[k] for k in ("train_sha256", "test_sha256")):
        return None
    options = {"folds": "--folds", "seed": "--seed", "data": "--data", "class_set": "--class-set"}
    differ = [f"{flag} {_shown(then.get(k))} (this run: {_shown(record[k])})" for k, flag in options.items()
              if then.get(k) != record[k]]
    if differ:
        why = "with " + ", ".join(differ)
    else:
        why = (f"its {then.get('train')} training and {then.get('test')} test samples are not this run's "
               f"{record['train']} and {record['test']} (the data changed)")
    return f"--resume: {path} was made for other samples than this run's, {why}; {todo}"


def _shown(value) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


def recorded_options(args) -> dict:
    """The command line's options as a checkpoint records them (JSON values; --data as PATH:WEIGHT)."""
    return {**json.loads(json.dumps(vars(args), default=str)), "data": data_text(args)}


def _option_shown(value) -> str:
    if isinstance(value, bool) or value is None:
        return "given" if value else "not given"
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def options_mismatch(checkpoint: dict, args, path: Path) -> str | None:
    """Why --resume must not continue the checkpoint (loaded from path) with the options of args; None when every
    option is the checkpoint's but those args.RESUME_MAY_CHANGE allows to change and a grown --epochs."""
    if "args" not in checkpoint:
        return (f"--resume: {path} does not record the options it was made with, so it cannot be checked against "
                f"this run's; {AFRESH}")
    then, now = json.loads(checkpoint["args"]), recorded_options(args)
    if "split" in checkpoint:  # --data as PATH:WEIGHT, as the split record holds it
        then["data"] = json.loads(checkpoint["split"]).get("data", then.get("data"))
    differ = []
    for key, value in now.items():
        if key in RESUME_MAY_CHANGE or (key in then and then[key] == value):
            continue
        if key in RESUME_MAY_GROW and isinstance(then.get(key), int) and value > then[key]:
            continue
        was = _option_shown(then[key]) if key in then else "not recorded"
        grow = f"; --{key.replace('_', '-')} may only grow on --resume" if key in RESUME_MAY_GROW else ""
        differ.append(f"--{key.replace('_', '-')} {was} (this run: {_option_shown(value)}{grow})")
    if not differ:
        return None
    return (f"--resume: {path} was made with other options than this run's, with {', '.join(differ)}; resume with "
            f"the options it was made with, or {AFRESH}")


def init_mismatch(checkpoint: dict, args, init_sha256: str | None, path: Path) -> str | None:
    """Why --resume must not continue the checkpoint (loaded from path) with the --init model whose model.pt has
    the sha256 init_sha256 (None: no --init); None when the checkpoint started from the same weights."""
    if INIT_KEY not in checkpoint:
        if init_sha256 is None:
            return None
        return (f"--resume: {path} does not record the sha256 of the --init model it started from, so it cannot be "
                f"checked against --init {args.init} (model.pt sha256 {init_sha256}); {AFRESH}")
    then = checkpoint[INIT_KEY]
    if then == init_sha256:
        return None
    return (f"--resume: {path} started from an --init model.pt of sha256 {then or 'none (no --init)'}, and --init "
            f"{args.init} holds one of sha256 {init_sha256 or 'none (no --init)'}: the fit would go on from other "
            f"weights than it started with; resume with the model it started from, or {AFRESH}")


def resume_problem(checkpoint: dict, args, path: Path, record: dict | None = None,
                   init_sha256: str | None = None) -> str | None:
    """Why --resume must not continue the checkpoint (loaded from path): made for other samples than record's (when
    given), with other options than args or from another --init model (init_sha256: its model.pt's sha256, None
    without --init); None when it may."""
    return ((split_mismatch(checkpoint, record, path) if record is not None else None)
            or options_mismatch(checkpoint, args, path) or init_mismatch(checkpoint, args, init_sha256, path))


def check_resume(path: Path, args, record: dict | None = None, init_sha256: str | None = None) -> dict | None:
    """Raise ResumeError when the checkpoint at path may not go on (resume_problem); return where it goes on from
    ({"from_epoch", "checkpoint_epochs"}), None when there is no checkpoint."""
    if not path.is_file():
        return None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    why = resume_problem(checkpoint, args, path, record, init_sha256)
    if why:
        raise ResumeError(why)
    return {"from_epoch": int(checkpoint["epoch"]) + 1,
            "checkpoint_epochs": json.loads(checkpoint["args"]).get("epochs")}
