"""Classification figures from per-sample class indices (pure numpy), and class-set mapping.

Conventions: the confusion matrix has rows = true class, columns = predicted class, counts as int64. Figures that
are undefined (a class with no true samples has no recall, one never predicted has no precision, an empty set has
no accuracy) are `nan` in arrays and `None` in the JSON-ready report, never 0, so they cannot be mistaken for a
measured zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from fer_ros.classes import NEUTRAL


def _indices(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices")
    return arr.astype(np.int64)


def confusion_matrix(y_true, y_pred, k: int, k_pred: int | None = None) -> np.ndarray:
    """(k, k_pred) int64 counts: entry [i, j] = samples of true class i predicted as class j.
    `k_pred` defaults to `k` (pass it when predictions come from a different class set than the truth).
    Raises ValueError for mismatched lengths or indices outside [0, k) / [0, k_pred)."""
    t = _indices(y_true, "y_true")
    p = _indices(y_pred, "y_pred")
    k_pred = k if k_pred is None else int(k_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({t.size} vs {p.size})")
    if k < 0 or k_pred < 0:
        raise ValueError("the number of classes cannot be negative")
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"y_true holds an index outside [0, {k})")
    if p.size and (p.min() < 0 or p.max() >= k_pred):
        raise ValueError(f"y_pred holds an index outside [0, {k_pred})")
    cm = np.zeros((k, k_pred), np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def accuracy(y_true, y_pred) -> float:
    """Share of samples whose prediction equals the truth; nan for no samples."""
    t = _indices(y_true, "y_true")
    p = _indices(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({t.size} vs {p.size})")
    return float(np.mean(t == p)) if t.size else float("nan")


def recall_per_class(cm: np.ndarray) -> np.ndarray:
    """(k,) float64: diagonal / row sums; nan for classes with no true samples."""
    cm = np.asarray(cm, np.float64)
    rows = cm.sum(axis=1)
    diag = np.zeros(cm.shape[0])
    n = min(cm.shape)
    diag[:n] = np.diagonal(cm)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, diag / np.where(rows > 0, rows, 1), np.nan)


def precision_per_class(cm: np.ndarray) -> np.ndarray:
    """(k_pred,) float64: diagonal / column sums; nan for classes never predicted."""
    cm = np.asarray(cm, np.float64)
    cols = cm.sum(axis=0)
    diag = np.zeros(cm.shape[1])
    n = min(cm.shape)
    diag[:n] = np.diagonal(cm)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cols > 0, diag / np.where(cols > 0, cols, 1), np.nan)


def _json_float(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def classification_report(y_true, y_pred, class_names: Sequence[str],
                          pred_names: Sequence[str] | None = None) -> dict:
    """A JSON-ready dict of every figure for one set of samples.

    `y_true` indexes `class_names`; `y_pred` indexes `pred_names` (default: the same names). When the two name
    lists differ, a prediction counts as correct when its name equals the true name. Keys: count, accuracy,
    balanced_accuracy (mean recall over classes with samples), class_names, pred_names, confusion_matrix (rows:
    true in class_names order, columns: predicted in pred_names order), support and predicted (counts per name),
    recall and precision ({name: float or None}), correct."""
    names = [str(n) for n in class_names]
    pnames = names if pred_names is None else [str(n) for n in pred_names]
    t = _indices(y_true, "y_true")
    p = _indices(y_pred, "y_pred")
    cm = confusion_matrix(t, p, len(names), len(pnames))
    # Correctness by name, so rectangular matrices (different class sets) are scored right.
    to_pred = np.asarray([pnames.index(n) if n in pnames else -1 for n in names], np.int64)
    correct_per_true = np.asarray([cm[i, to_pred[i]] if to_pred[i] >= 0 else 0 for i in range(len(names))])
    rows = cm.sum(axis=1)
    cols = cm.sum(axis=0)
    recall = np.where(rows > 0, correct_per_true / np.maximum(rows, 1), np.nan)
    to_true = {n: i for i, n in enumerate(names)}
    correct_per_pred = np.asarray([cm[to_true[n], j] if n in to_true else 0 for j, n in enumerate(pnames)])
    precision = np.where(cols > 0, correct_per_pred / np.maximum(cols, 1), np.nan)
    count = int(t.size)
    correct = int(correct_per_true.sum())
    with_support = recall[rows > 0]
    report = {
        "count": count,
        "correct": correct,
        "accuracy": _json_float(correct / count) if count else None,
        "balanced_accuracy": _json_float(float(np.mean(with_support))) if with_support.size else None,
        "class_names": names,
        "pred_names": pnames,
        "confusion_matrix": cm.tolist(),
        "support": {n: int(rows[i]) for i, n in enumerate(names)},
        "predicted": {n: int(cols[j]) for j, n in enumerate(pnames)},
        "recall": {n: _json_float(recall[i]) for i, n in enumerate(names)},
        "precision": {n: _json_float(precision[j]) for j, n in enumerate(pnames)},
    }
    return report


# ----------------------------------------------------------------------------------------------------------------
# Class-set mapping
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassMapping:
    """How a dataset's class names relate to a model's.

    data_to_model: (len(data_names),) int64, the model index of each dataset class or -1 when the model lacks it.
    unknown: dataset classes the model does not have (their samples cannot be scored as correct).
    model_only: model classes absent from the dataset (e.g. `neutral` for an 8-class model on 7-class data:
    predicting one of them is always a miss)."""

    data_names: tuple[str, ...]
    model_names: tuple[str, ...]
    data_to_model: np.ndarray = field(repr=False)
    unknown: tuple[str, ...]
    model_only: tuple[str, ...]

    @property
    def shared(self) -> tuple[str, ...]:
        """Dataset classes the model knows, in dataset order."""
        return tuple(n for n in self.data_names if n in self.model_names)


def class_key(name: str) -> str:
    """The one rule by which class names match: surrounding spaces off, lower case ("Happy " is "happy"). The
    dataset readers give every label in this form, so a figure that compares names compares these."""
    return str(name).strip().lower()


def map_classes(data_names: Sequence[str], model_names: Sequence[str]) -> ClassMapping:
    """Match class names by class_key (case-insensitive, surrounding spaces ignored) between a dataset and a
    model."""
    norm = [class_key(n) for n in model_names]
    data = tuple(class_key(n) for n in data_names)
    idx = np.asarray([norm.index(n) if n in norm else -1 for n in data], np.int64)
    return ClassMapping(data_names=data, model_names=tuple(norm), data_to_model=idx,
                        unknown=tuple(n for n, i in zip(data, idx) if i < 0),
                        model_only=tuple(n for n in norm if n not in data))


def argmax_within(probs: np.ndarray, allowed: Sequence[int]) -> np.ndarray:
    """(N,) int64 argmax of (N, K) probabilities over the `allowed` columns only, as indices into all K columns.
    Used to score a model on a subset of its classes (e.g. an 8-class model as a 7-class one: drop neutral)."""
    probs = np.asarray(probs, np.float64)
    allowed = np.asarray(sorted(set(int(a) for a in allowed)), np.int64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, K), got shape {probs.shape}")
    if allowed.size == 0 or allowed.min() < 0 or allowed.max() >= probs.shape[1]:
        raise ValueError(f"allowed columns must be a non-empty subset of [0, {probs.shape[1]})")
    if probs.shape[0] == 0:
        return np.zeros(0, np.int64)
    return allowed[np.argmax(probs[:, allowed], axis=1)]


def neutral_index(names: Sequence[str]) -> int | None:
    """Index of the neutral class in `names`, or None when the set has none."""
    names = [str(n).lower() for n in names]
    return names.index(NEUTRAL) if NEUTRAL in names else None
