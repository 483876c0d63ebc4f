"""fer-train's command line: `get_args_parser()`, its defaults (the shipped model's recipe) and the range of every
value, checked by argparse (fer_ros.argtypes). The options of the experimental corner are added by
training/experimental/options.py."""
from __future__ import annotations

import argparse

from fer_ros.argtypes import number
from fer_ros.classes import CLASS_SETS
from fer_ros.nets.registry import list_models
from fer_ros.preprocess import CLIP_INPUTS
from fer_ros.training.class_balance import CLASS_WEIGHTINGS
from fer_ros.training.experimental import options as experimental

DESCRIPTION = "fer-train: train and cross-validate a 3DAGN model, and export the final fit."
# The shipped model's appearance input: the LBP clip plus each frame's change from the neutral reference's crop
# (see preprocess.CLIP_INPUTS and the model card); --clip-input lbp is the paper's input.
RECIPE_CLIP_INPUT = "lbp+gray_delta"

FRACTION = number(low=0.0, high=1.0, says="between 0 and 1")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-train", description=DESCRIPTION, add_help=add_help,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="dataset folder (CK+ release or class-folder layout)")
    g.add_argument("--class-set", default="ckplus8", choices=sorted(CLASS_SETS))
    g.add_argument("--size", type=int, default=48, help="face crop side S in px (network input)")
    g.add_argument("--frames", type=int, default=3, help="clip length T")
    g.add_argument("--cache-dir", default="data_cache", help="preprocessed-image cache (never commit it)")
    g.add_argument("--no-augment", action="store_true", help="train without augmentation")
    g.add_argument("--still-prob", type=FRACTION, default=0.2,
                   help="probability that a training expression sample is shown still, as the node sees a face that "
                        "kept its expression since it appeared: the peak frame repeated as the clip and as its own "
                        "neutral reference (teaches that no motion does not mean neutral)")
    g.add_argument("--augment-scale", type=number(low=0.0, says="0 or more"), default=1.0,
                   help="multiply the ranges of rotation, scale, shift, brightness and contrast "
                        "(training/data/augment.py AugmentConfig) by this factor; 0: flips only")
    g.add_argument("--erase-prob", type=FRACTION, default=0.0,
                   help="probability of random erasing: one rectangle (2 - 20%% of the crop) hidden in every frame "
                        "of a training sample, its neutral reference included (training/data/augment.py); 0: off")
    g.add_argument("--own-neutral-only", action="store_true",
                   help="leave a sequence without its own neutral first frame without a reference, instead of "
                        "borrowing the first frame of the same subject's nearest other sequence "
                        "(training/data/datasets.py)")
    g.add_argument("--neutral-swap", type=FRACTION, default=0.0, metavar="P",
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
    g.add_argument("--ensemble", type=number(int, low=1, says="at least 1"), default=3,
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
    g.add_argument("--logit-adjust", type=number(low=0.0, says="at least 0 (1 is usual)"), default=1.0,
                   metavar="TAU",
                   help="logit-adjusted loss: TAU * log(class share of the training sequences) added to the logits "
                        "in the loss only, so the network's own logits fit a balanced class prior and rare classes "
                        "are called more often (1 is the usual value); 0: off. In a class set with neutral only the "
                        "expressions are balanced among themselves; neutral's share is left as it is")
    g.add_argument("--still-logit-adjust", type=FRACTION, default=0.0, metavar="FRACTION",
                   help="the share of --logit-adjust's offsets applied to the samples shown still (--still-prob): "
                        "1: as every other sample; 0: the plain loss, so a face without motion keeps the training "
                        "data's class prior")
    g.add_argument("--label-smoothing", type=number(low=0.0, high=1.0, high_open=True, says="at least 0 and below 1"),
                   default=0.0, help="label smoothing of the three cross-entropy terms (0: none)")
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
    experimental.add_arguments(p)
    return p
