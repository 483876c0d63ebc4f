"""Calibration faces for a model's int8 graph (fer_ros/quantize.py): network inputs drawn from the training data.

`calibration_set` takes the same number of samples from each dataset (so a few hundred posed sequences count
as much as tens of thousands of photos), makes them as validation makes them (the data's own reference; a photo
without one is its own, the still path) and returns them in batches of the graph's inputs, with what was drawn
(for the manifest).
"""
from __future__ import annotations

import numpy as np

from fer_ros.preprocess import BASE_CLIP_INPUT
from fer_ros.training.data.samples import Samples
from fer_ros.training.data.sequence_set import SequenceSet
from fer_ros.training.fit import make_loader

DEFAULT_SAMPLES = 512
BATCH = 32


def calibration_indices(samples: Samples, idx: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to n of the indices `idx`, the same number from each dataset (all of a dataset that has fewer; one from
    each of n datasets drawn at random when there are more datasets than n), drawn without replacement."""
    if n <= 0:
        raise ValueError(f"the number of calibration samples must be positive, got {n}")
    idx = np.asarray(idx, np.int64)
    rng = np.random.default_rng(seed)
    groups = [idx[samples.dataset[idx] == d] for d in range(len(samples.dataset_names))]
    groups = [g for g in groups if len(g)]
    if not groups:
        raise ValueError("no samples to calibrate on")
    if n < len(groups):
        groups = [groups[i] for i in sorted(rng.choice(len(groups), n, replace=False))]
    share = n // len(groups)
    picked = [rng.choice(g, min(share, len(g)), replace=False) for g in groups]
    return np.sort(np.concatenate(picked))


def calibration_set(samples: Samples, idx: np.ndarray, n: int = DEFAULT_SAMPLES, seed: int = 0,
                    clip_input: str = BASE_CLIP_INPUT, batch: int = BATCH) -> tuple[list[dict], dict]:
    """The network inputs of calibration_indices(samples, idx, n, seed), as dicts of float32 arrays of at most
    `batch` faces (fit.make_loader's batches), and what was drawn (for the manifest): samples per dataset."""
    chosen = calibration_indices(samples, idx, n, seed)
    loader = make_loader(SequenceSet(samples, chosen, False, seed, clip_input=clip_input), batch)
    batches = [{"clip": clip.numpy(), "geo": geo.numpy(), "geo_valid": valid.numpy()}
               for clip, geo, valid, *_ in loader]
    per = {name: int((samples.dataset[chosen] == d).sum()) for d, name in enumerate(samples.dataset_names)}
    drawn = {"samples": int(len(chosen)), "per_dataset": {k: v for k, v in per.items() if v}, "seed": seed}
    return batches, drawn
