"""fer-train's samples: every labelled sequence of a dataset as indices into the image cache (`load_data`), and
the network inputs of a subset of them (`SequenceSet`), made by the node's preprocessing with the training-only
variations: augmentation, still samples, swapped neutral references and the auxiliary targets."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from fer_ros.classes import class_names
from fer_ros.crop import CropConfig
from fer_ros.preprocess import BASE_CLIP_INPUT, clip_from_gray, make_geo
from fer_ros.training.data.augment import augment_flip
from fer_ros.training.data.datasets import load_dataset

if TYPE_CHECKING:
    from fer_ros.training.experimental.auxiliary import AuxTargets


@dataclass
class Samples:
    """Sequences as indices into the image cache: neutral (-1: none), peaks (N, T), labels (N,), subjects."""
    neutral: np.ndarray
    peaks: np.ndarray
    labels: np.ndarray
    subjects: list[str]
    keys: list[str]
    gray: np.ndarray
    points: np.ndarray
    blendshapes: np.ndarray | None = None  # (images, B) scores from the cache; None or B = 0: none
    blendshape_names: tuple[str, ...] = ()
    # subject -> every usable neutral (first) frame of the subject's sequences, labelled or not (--neutral-swap)
    subject_neutrals: dict[str, np.ndarray] = field(default_factory=dict)

    def other_neutrals(self, j: int) -> np.ndarray:
        """The neutral frames of sample j's subject other than its own reference."""
        alts = self.subject_neutrals.get(self.subjects[j], np.empty(0, dtype=int))
        return alts[alts != self.neutral[j]]


def load_data(args) -> tuple[Samples, dict]:
    names = class_names(args.class_set)
    ds = load_dataset(args.data, frames=args.frames, with_neutral_sequences=True,
                      borrow_neutral=not getattr(args, "own_neutral_only", False))
    unknown = sorted({s.label for s in ds.sequences} - set(names))
    if unknown:
        print(f"[fer-train] note: classes not in {args.class_set} are left out: {', '.join(unknown)}")
    seqs = [s for s in ds.sequences if s.label in names]
    # one cache for every image of the dataset, whichever class set is trained
    paths = sorted({str(p) for s in ds.sequences for p in s.peaks} |
                   {str(s.neutral) for s in ds.sequences if s.neutral})
    from fer_ros.training.data.cache import build_cache
    cache = build_cache([Path(p) for p in paths], CropConfig(size=args.size, margin=0.0), args.cache_dir,
                        progress=not args.no_progress)
    index = cache.index()
    neutral, peaks, labels, subjects, keys = [], [], [], [], []
    dropped = borrowed = 0
    for s in seqs:
        pk = [index[str(p)] for p in s.peaks]
        if not all(cache.ok[i] for i in pk):
            dropped += 1
            continue
        n = index[str(s.neutral)] if s.neutral is not None else -1
        if n >= 0 and not cache.ok[n]:
            n = -1
        borrowed += int(n >= 0 and s.neutral_borrowed)
        neutral.append(n), peaks.append(pk), labels.append(names.index(s.label))
        subjects.append(s.subject), keys.append(f"{s.key}:{s.label}")
    by_subject: dict[str, list[int]] = {}
    for (subject, _), p in sorted(ds.neutral_frames.items()):
        if cache.ok[index[str(p)]]:
            by_subject.setdefault(subject, []).append(index[str(p)])
    samples = Samples(np.array(neutral), np.array(peaks), np.array(labels), subjects, keys, cache.gray,
                      cache.points, cache.blendshapes, cache.blendshape_names,
                      {k: np.array(v) for k, v in by_subject.items()})
    info = {"root": str(ds.root), "layout": ds.layout, "sequences": len(labels), "subjects": len(set(subjects)),
            "dropped_no_face": dropped, "without_neutral": int((samples.neutral < 0).sum()),
            "neutral_borrowed": borrowed,
            "images": len(cache.paths), "images_no_face": int((~cache.ok).sum()),
            "per_class": {c: int((samples.labels == i).sum()) for i, c in enumerate(names)}}
    return samples, info


class SequenceSet(TorchDataset):
    """Network inputs for a subset of samples; augmentation (train) applies to neutral and clip together. With
    `aux`, each item also carries its auxiliary blendshape target (training sets only). With `neutral_swap`, a
    training sample's reference is, with that probability, another neutral frame of the same subject (taken at the
    start of another of its sequences), as a robot's reference is taken at another moment than the expression.
    With `mark_still`, each item ends with a float flag: 1 for a sample shown still (see `still_prob`), else 0."""

    def __init__(self, samples: Samples, idx: np.ndarray, train: bool, seed: int, augment_cfg=None,
                 still_prob: float = 0.0, neutral_label: int | None = None, clip_input: str = BASE_CLIP_INPUT,
                 aux: AuxTargets | None = None, neutral_swap: float = 0.0, mark_still: bool = False) -> None:
        self.clip_input = clip_input
        self.aux = aux
        self.s, self.idx, self.train = samples, np.asarray(idx), train
        self.rng = np.random.default_rng(seed)
        self.aug = augment_cfg
        self.still_prob = still_prob
        self.neutral_label = neutral_label
        self.neutral_swap = neutral_swap
        self.mark_still = mark_still

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int):
        j = self.idx[i]
        s = self.s
        frames = list(s.peaks[j])
        has_neutral = s.neutral[j] >= 0
        ids = ([s.neutral[j]] if has_neutral else []) + frames
        still = False
        if (self.train and self.still_prob > 0 and int(s.labels[j]) != self.neutral_label
                and self.rng.random() < self.still_prob):
            has_neutral = still = True
            ids = [frames[-1]] * (len(frames) + 1)  # a still face: its own reference, a clip without motion
        elif self.train and self.neutral_swap > 0:
            others = s.other_neutrals(j)  # none: no numbers drawn, the sample keeps its reference
            if len(others) and self.rng.random() < self.neutral_swap:
                has_neutral = True
                ids = [int(others[self.rng.integers(len(others))])] + frames
        gray, pts = s.gray[ids], s.points[ids]
        flipped = False
        if self.train and self.aug is not None:
            gray, pts, flipped = augment_flip(gray, pts, self.rng, self.aug)
        clip_gray = gray[1:] if has_neutral else gray
        clip_pts = pts[1:] if has_neutral else pts
        clip = clip_from_gray(self.clip_input, clip_gray, gray[0] if has_neutral else None)
        geo, valid = make_geo(pts[0] if has_neutral else None, clip_pts[-1])
        item = (torch.from_numpy(clip), torch.from_numpy(geo), torch.tensor(valid, dtype=torch.float32),
                torch.tensor(int(s.labels[j])))
        if self.aux is not None:
            # no neutral reference: the peak is its own (no change), as the clip's gray change sees it
            item = (*item, torch.from_numpy(self.aux.target(ids[-1], ids[0] if has_neutral else ids[-1], flipped)))
        if self.mark_still:
            item = (*item, torch.tensor(float(still)))
        return item
