"""Class imbalance in fer-train's loss: per-class loss weights (--class-weighting) and the offsets of the
logit-adjusted loss (--logit-adjust), both from the training labels' class shares."""
from __future__ import annotations

import numpy as np

CLASS_WEIGHTINGS = ("none", "sqrt", "balanced")


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
