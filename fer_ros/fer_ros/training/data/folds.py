"""Subject-independent k-fold splits: every subject's sequences fall in exactly one test fold."""
from __future__ import annotations

import numpy as np


def subject_folds(subjects: list[str], k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) for each of k folds over samples whose subject is subjects[i].

    Subjects are shuffled with `seed`, then assigned greedily (largest first) to the fold with fewest samples,
    so folds are balanced in samples while no subject is split."""
    subjects = list(subjects)
    unique = sorted(set(subjects))
    if k < 2:
        raise ValueError("need at least 2 folds")
    if k > len(unique):
        fewer = f"--folds {len(unique)} or fewer" if len(unique) >= 2 else "--folds 0 (no cross-validation)"
        raise ValueError(f"{k} folds need at least {k} subjects and the data has {len(unique)}: give {fewer}")
    rng = np.random.default_rng(seed)
    order = [unique[i] for i in rng.permutation(len(unique))]
    counts = {s: subjects.count(s) for s in unique}
    order.sort(key=lambda s: -counts[s])  # stable: ties keep the shuffled order
    load = np.zeros(k, int)
    fold_of = {}
    for s in order:
        f = int(np.argmin(load))
        fold_of[s] = f
        load[f] += counts[s]
    idx = np.arange(len(subjects))
    assign = np.array([fold_of[s] for s in subjects])
    return [(idx[assign != f], idx[assign == f]) for f in range(k)]
