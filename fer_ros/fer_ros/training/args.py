"""fer-train's command line: `get_args_parser()`, its defaults (the shipped model's recipe) and the range of every
value, checked by argparse (fer_ros.argtypes)."""
from __future__ import annotations

import argparse

from fer_ros.argtypes import HelpFormatter, number
from fer_ros.classes import CLASS_SETS
from fer_ros.nets.registry import list_models
from fer_ros.preprocess import CLIP_INPUTS
from fer_ros.training.data.samples import parse_source

DESCRIPTION = "fer-train: train and cross-validate a 3DAGN model on one or more datasets, and export the final fit."
# The shipped model's appearance input (preprocess.CLIP_INPUTS): LBP codes, the gray level and its change from the
# neutral reference, both standardised per crop; --clip-input lbp is the paper's input.
RECIPE_CLIP_INPUT = "lbp+gray_norm+delta_norm"
# The shipped model's --app-widths (agn3d_res)
RECIPE_APP_WIDTHS = "24,48,96,192"

FRACTION = number(low=0.0, high=1.0, says="between 0 and 1")
POSITIVE = number(low=0.0, low_open=True, says="above 0")
COUNT = number(int, low=1, says="at least 1")
# --seed: fold k's fit is seeded with --seed + k and numpy takes seeds below 2**32, so --seed stops at 2**31 - 1,
# leaving room for far more folds than any data has subjects
SEED = number(int, low=0, high=2**31 - 1, says=f"a whole number from 0 to {2**31 - 1}")


# What --resume may change from the checkpoint's command line: options that decide neither the weights a fit trains
# nor what the run reports of it. Where it runs (--threads, --device), what it shows (--no-progress), where it reads
# its cache and writes (--cache-dir: the cache is keyed by the images and the way faces are found; --out), which of
# the run's fits this command runs (--only-fold, --final: each fit keeps its own checkpoint) and what is exported from
# the final fit (--export, --overwrite, --name, --torchscript, --int8-samples). Every other option must be the same.
RESUME_MAY_CHANGE = ("threads", "device", "no_progress", "cache_dir", "out", "resume", "only_fold", "final", "export",
                     "overwrite", "name", "torchscript", "int8_samples")
# --epochs may grow on --resume (a fit goes on past the end of its schedule, stretched to the new count); a smaller
# count would report a model trained longer than it says.
RESUME_MAY_GROW = ("epochs",)


def source(text: str):
    """argparse type of --data: PATH or PATH:WEIGHT (training/data/samples.py parse_source)."""
    try:
        return parse_source(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def widths(text: str) -> list[int]:
    """argparse type of --app-widths: comma-separated channel counts."""
    try:
        values = [int(w) for w in text.split(",")]
    except ValueError:
        values = []
    if not values or any(w < 1 for w in values):
        raise argparse.ArgumentTypeError(f"must be comma-separated channel counts such as 24,48,96,192, got {text!r}")
    return values


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-train", description=DESCRIPTION, add_help=add_help,
                                formatter_class=HelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, action="append", type=source, metavar="PATH[:WEIGHT]",
                   help="dataset folder in any layout (CK+ release, class folders, FER+, KDEF; detected), repeat to "
                        "mix datasets (each once); WEIGHT: how many times per epoch each of its training samples is "
                        "drawn on average (0.25: a quarter of them, other ones every epoch)")
    g.add_argument("--class-set", default="ckplus8", choices=sorted(CLASS_SETS),
                   help="the classes to learn; samples of other classes are left out")
    g.add_argument("--size", type=COUNT, default=48, help="face crop side S in px (network input)")
    g.add_argument("--frames", type=COUNT, default=3, help="clip length T")
    g.add_argument("--cache-dir", default="data_cache", help="preprocessed-image cache (never commit it)")
    g.add_argument("--no-augment", action="store_true", help="train without the flip, warp and light augmentation")
    g = p.add_argument_group("neutral references (each training draw picks one; the rest keep the data's own)")
    g.add_argument("--still-prob", type=FRACTION, default=0.2,
                   help="share of draws compared with their own newest frame, as the node compares a face that kept "
                        "its expression since it appeared")
    g.add_argument("--other-reference-prob", type=FRACTION, default=0.3,
                   help="share of draws compared with another neutral image of the same subject and view (another "
                        "sequence's first frame, the other session's photo), where the data has one")
    g.add_argument("--no-reference-prob", type=FRACTION, default=0.1,
                   help="share of draws without a reference (geometric logits off), as before the node has one")
    g.add_argument("--moment-strength", type=number(low=0.0, says="0 or more"), default=1.0,
                   help="the reference differs from the clip as another moment would (a little head turn, scale, "
                        "shift, light, blur, noise: training/data/augment.py MomentConfig) by a strength drawn up to "
                        "this; 0: no difference")
    g.add_argument("--small-face-prob", type=FRACTION, default=0.0,
                   help="share of draws whose face (clip and reference alike) is scaled down to 42-92%% of the crop's "
                        "side and back up, as a face further from the camera; 0: none")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="agn3d_res", choices=list_models(), help="appearance network")
    g.add_argument("--clip-input", default=RECIPE_CLIP_INPUT, choices=list(CLIP_INPUTS),
                   help="the appearance clip's channels (preprocess.CLIP_INPUTS); lbp is the paper's input")
    g.add_argument("--app-widths", type=widths, default=RECIPE_APP_WIDTHS,
                   help="channel widths of the appearance network's stages, for agn3d_res and agn3d_c3d only "
                        "(agn3d_c3d takes four: paper 32,64,128,128; agn3d_res: two or more, its 3D stem and one "
                        "residual stage per further width; agn3d_ir has widths of its own)")
    g.add_argument("--geo-width", type=COUNT, default=16, help="first VGG stage width of the geometric network")
    g.add_argument("--dropout", type=FRACTION, default=0.3, help="dropout of both networks' FC layers")
    g.add_argument("--no-flip-tta", action="store_true",
                   help="evaluate and export without averaging over the face and its mirror image")
    g.add_argument("--init", default=None, metavar="MODEL_DIR",
                   help="start from a trained model's weights (its model.pt, checked against its manifest); the "
                        "architecture and preprocessing options must be the same as that model's (--dropout may "
                        "differ); a model trained on a dataset this run cross-validates is named in a warning and "
                        "in report.json: its folds score subjects the starting weights saw; default: random weights")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=COUNT, default=12, help="passes over the weighted training draws")
    g.add_argument("--geo-epochs", type=number(int, low=0, says="0 or more"), default=15,
                   help="before them, passes of the geometric network alone over the samples compared with another "
                        "image of the face (data without such samples, FER+, skips them)")
    g.add_argument("--batch-size", type=COUNT, default=64, help="samples per step")
    g.add_argument("--lr", type=POSITIVE, default=2e-3, help="AdamW peak learning rate (one cycle: warm-up, then "
                                                             "cosine decay)")
    g.add_argument("--warmup", type=number(low=0.0, high=1.0, high_open=True, says="at least 0 and below 1"),
                   default=0.15, help="share of the steps that warm the learning rate up")
    g.add_argument("--weight-decay", type=number(low=0.0, says="0 or more"), default=5e-4,
                   help="AdamW's decoupled weight decay")
    g.add_argument("--seed", type=SEED, default=0, help="seed of the weights, the draws and the folds")
    g.add_argument("--threads", type=number(int, low=0, says="0 or more"), default=0,
                   help="torch CPU threads, 0 for torch's own count (default: 0)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (N: a GPU torch sees)")
    g = p.add_argument_group("protocol and output")
    g.add_argument("--folds", type=number(int, low=0, says="0 or more"), default=10,
                   help="cross-validation folds, by subject within each dataset; data with its own split (FER+) "
                        "keeps it in every fold (0 or 1: no cross-validation, then --final or --export)")
    g.add_argument("--only-fold", type=number(int, low=0, says="0 or more"), action="append",
                   help="run only these folds, numbered 0 to --folds - 1 (repeatable; each runs once); default: every "
                        "fold")
    g.add_argument("--final", action="store_true",
                   help="after cross-validation, fit on all data but the held-out splits of data that has its own")
    g.add_argument("--export", help="model directory to export the final fit to (implies --final); default: no "
                                    "export")
    g.add_argument("--overwrite", action="store_true",
                   help="replace what an earlier run left: the run in --out (its report, plots, logs and "
                        "checkpoints; --resume continues it instead) and the model in the --export folder (one with "
                        "a manifest.json)")
    g.add_argument("--name", default=None, help="model name recorded in the manifest (default: the --export "
                                                "folder's name); only with --export")
    g.add_argument("--torchscript", action="store_true", help="also export model.ts (TorchScript); only with "
                                                              "--export")
    g.add_argument("--int8-samples", type=number(int, low=0, says="0 or more"), default=512,
                   help="with --export, also write model.int8.onnx (what onnxruntime runs on a CPU), calibrated on "
                        "this many training faces shared equally between the datasets (fer-quantize); 0 = no int8 "
                        "graph")
    g.add_argument("--out", default="runs/train",
                   help="run folder: logs, checkpoints, report, plots; one that holds a run is refused unless "
                        "--resume or --overwrite is given")
    g.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --out, with the options they were made with (--epochs may "
                        "grow; where the run runs, shows and writes, and which fits run, may change)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p
