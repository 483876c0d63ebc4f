"""fer-train's options for the experimental corner, each off (0) by default and in the shipped recipe: the
auxiliary blendshape loss, sharpness-aware steps, the weights' moving average and mixup."""
from __future__ import annotations

import argparse

from fer_ros.argtypes import number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("experimental (off in the shipped recipe)")
    g.add_argument("--aux-blendshapes", type=number(low=0.0, says="0 (off) or a positive weight"), default=0.0,
                   metavar="WEIGHT",
                   help="weight of a training-only auxiliary loss: the appearance trunk also regresses the "
                        "landmarker's face blendshapes of the peak frame and their change from the neutral "
                        "reference (training/experimental/auxiliary.py; mean squared error of standardised scores); "
                        "0: off. The exported model and inference are unchanged")
    g.add_argument("--sam-rho", type=number(low=0.0, says="0 (off) or more"), default=0.0, metavar="RHO",
                   help="sharpness-aware minimisation: each step takes its gradient at the weights moved RHO "
                        "uphill (training/experimental/sam.py; about 0.05 is usual), at 2 - 2.5 times the training "
                        "time; 0: plain Adam")
    g.add_argument("--ema", type=number(low=0.0, high=1.0, high_open=True,
                                        says="0 (off) or a decay above 0 and below 1"), default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights (training/experimental/ema.py; DECAY "
                        "per step, e.g. 0.995) and evaluate and export it instead of the last weights; the log keeps "
                        "the last weights' test accuracy beside it (test_acc_raw); 0: off")
    g.add_argument("--mixup", type=number(low=0.0, says="0 (off) or an alpha above 0"), default=0.0,
                   metavar="ALPHA",
                   help="mixup (training/experimental/mixup.py): each training sample blended with another of its "
                        "batch, clip and difference image alike, by lam ~ Beta(ALPHA, ALPHA) (folded to lam >= 0.5), "
                        "the loss blended alike between the two labels; 0.2 - 0.4 is usual; 0: off")


def conflict(args: argparse.Namespace) -> str | None:
    """Why these options cannot be combined, or None."""
    if args.mixup > 0 and args.aux_blendshapes > 0:
        return ("--mixup and --aux-blendshapes cannot be combined (the blendshape targets of a blend are not "
                "defined); drop one of them")
    return None
