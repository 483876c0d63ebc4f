"""Network inputs of training and validation samples: the clip, the difference image and the targets.

Each training sample's neutral reference is drawn anew every time (`ReferencePlan`), because a live reference is
another moment of the face, not a fixed frame: its own reference as the data gives it, another neutral image of the
same subject and view, the sample's own newest frame (the still path: the node compares a face that kept its
expression since it appeared with itself), or none (the node before it has a reference). Clip and reference then get
independent differences (data/augment.py `moment_jitter`), and the whole sample the usual augmentation.

Validation samples are what the node would see, without randomness: the data's reference, or for a photo without
one (FER+) the photo itself as its reference (the still path).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from fer_ros.training.data.augment import AugmentConfig, MomentConfig, augment, moment_jitter
from fer_ros.training.data.samples import Samples
from fer_ros.preprocess import BASE_CLIP_INPUT, clip_from_gray, make_geo


@dataclass
class ReferencePlan:
    """Shares of the training draws by reference (the rest keep the data's own reference; a sample without one
    is compared with itself), and how different the reference is made from the clip."""
    none: float = 0.1     # no reference: geometric logits off, no change in the clip's change channel
    still: float = 0.2    # the newest frame is its own reference
    other: float = 0.3    # another neutral image of the same subject and view, where the data has one
    moment: MomentConfig = field(default_factory=MomentConfig)
    strength: float = 1.0  # the reference's moment_jitter strength is drawn uniformly in [0, strength]
    live: float = 0.5     # share of clips made of one repeated photo whose frames get a slight jitter of their own
    live_strength: float = 0.2

    def __post_init__(self) -> None:
        if not all(0.0 <= p <= 1.0 for p in (self.none, self.still, self.other, self.live)) or \
                self.none + self.still + self.other > 1.0:
            raise ValueError(f"reference shares must be between 0 and 1 and add up to 1 at most, got none "
                             f"{self.none}, still {self.still}, other {self.other}")


def reference_of(samples: Samples, j: int, rng: np.random.Generator | None, plan: ReferencePlan) -> int | None:
    """The reference image of sample j for one draw (rng None: validation, no randomness); None: no reference."""
    own = int(samples.neutral[j])
    newest = int(samples.peaks[j][-1])
    if rng is None:
        return own if own >= 0 else newest
    r = rng.random()
    if r < plan.none:
        return None
    if own < 0 or r < plan.none + plan.still:
        return newest
    if r < plan.none + plan.still + plan.other:
        others = samples.other_neutrals(j)
        if len(others):
            return int(others[rng.integers(len(others))])
    return own


class SequenceSet(TorchDataset):
    """Items (clip, geo, geo_valid, label, soft target (K,), pair mask) of samples[idx]: training items (train)
    drawn anew each time with augmentation and the reference plan, validation items as the node sees them. The
    pair mask is 1 where the reference is another image of the face (the pair decisions learn from those)."""

    def __init__(self, samples: Samples, idx: np.ndarray, train: bool, seed: int,
                 augment_cfg: AugmentConfig | None = None, plan: ReferencePlan | None = None,
                 clip_input: str = BASE_CLIP_INPUT) -> None:
        self.s, self.idx, self.train = samples, np.asarray(idx, np.int64), train
        self.rng = np.random.default_rng(seed)
        self.aug = augment_cfg
        self.plan = plan or ReferencePlan()
        self.clip_input = clip_input

    def __len__(self) -> int:
        return len(self.idx)

    def reseed(self, seed) -> None:
        self.rng = np.random.default_rng(seed)

    def __getitem__(self, i: int):
        j = int(self.idx[i])
        s = self.s
        rng = self.rng if self.train else None
        ref = reference_of(s, j, rng, self.plan)
        frames = [int(f) for f in s.peaks[j]]
        ids = ([ref] if ref is not None else []) + frames
        gray, pts = s.gray[ids].copy(), s.points[ids].copy()
        if rng is not None:
            if self.aug is not None:
                gray, pts, _ = augment(gray, pts, rng, self.aug)
            if ref is not None:
                gray[0], pts[0] = moment_jitter(gray[0], pts[0], rng, self.plan.moment,
                                                rng.uniform(0.0, self.plan.strength))
            if s.still[j] and rng.random() < self.plan.live:
                for k in range(1 if ref is not None else 0, len(ids)):
                    gray[k], pts[k] = moment_jitter(gray[k], pts[k], rng, self.plan.moment, self.plan.live_strength)
        has_ref = ref is not None
        clip = clip_from_gray(self.clip_input, gray[1:] if has_ref else gray, gray[0] if has_ref else None)
        geo, valid = make_geo(pts[0] if has_ref else None, pts[-1])
        # the pair decisions learn from real change only: a reference that is another image of the face
        pairs = float(has_ref and ref not in frames)
        return (torch.from_numpy(clip), torch.from_numpy(geo), torch.tensor(valid, dtype=torch.float32),
                torch.tensor(int(s.labels[j])), torch.from_numpy(s.targets[j]), torch.tensor(pairs))
