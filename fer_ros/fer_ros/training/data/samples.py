"""Training samples from several datasets at once: each `--data` source read in its own layout, preprocessed
through the image cache, and joined into one `Samples` table; folds by subject within each dataset; an epoch
sampler that draws each dataset by its weight.

A source is `PATH` or `PATH:WEIGHT`: WEIGHT (default 1) is how many times per epoch each of the dataset's training
samples is drawn on average (0.25: a quarter of them, different ones every epoch; 3: each about three times). A
dataset is given once (`distinct_sources`): its weight, not its repetition, says how often it is drawn.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import numpy as np

from fer_ros.classes import NEUTRAL
from fer_ros.crop import CropConfig
from fer_ros.training.data.datasets import DatasetError, load_dataset
from fer_ros.training.data.folds import subject_folds

_WEIGHT = re.compile(r"^(.*):([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")
# How long the other processes of a torchrun wait while rank 0 makes an image cache: a large dataset's takes tens of
# minutes on a few cores, longer than the default process group's timeout (NCCL's: 10 minutes).
CACHE_WAIT = timedelta(hours=12)
# How many of the files a dataset's reader left out are named in the log and in the info
SKIPPED_EXAMPLES = 5


@dataclass(frozen=True)
class Source:
    root: Path
    weight: float = 1.0

    @property
    def name(self) -> str:
        return self.root.name


def distinct_sources(sources: list[Source], why: str) -> None:
    """ValueError naming a dataset given more than once (by any spelling of its path, links followed), then `why`
    (what the command says of it and what to do)."""
    seen: dict[Path, Path] = {}
    for src in sources:
        real = Path(src.root).expanduser().resolve()
        if real in seen:
            same = f"{seen[real]} and {src.root} are" if Path(src.root) != seen[real] else f"{src.root} is"
            raise ValueError(f"--data {same} the same dataset ({real}) given twice: {why}")
        seen[real] = Path(src.root)


def parse_source(text: str) -> Source:
    """`PATH` or `PATH:WEIGHT` -> Source (an existing path that ends in `:<number>` is taken as a path).
    ValueError for a weight that is not a positive number."""
    m = _WEIGHT.match(text)
    if m and not Path(text).expanduser().exists():
        weight = float(m.group(2))
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"the sampling weight of {m.group(1)} must be above 0, got {m.group(2)}")
        return Source(Path(m.group(1)).expanduser(), weight)
    return Source(Path(text).expanduser(), 1.0)


@dataclass
class Samples:
    """Samples as indices into the joined image arrays. neutral (N,): the reference image (-1: none); peaks (N, T);
    labels (N,) hard labels; targets (N, K) soft targets (the vote shares where the data has them, else one-hot);
    dataset (N,) index into dataset_names; split: the data's own split or None; still (N,): the clip is one
    photo repeated; subjects are "<dataset>/<subject>" (so two datasets' subjects never mix); views the camera
    angle (references are of the same angle)."""

    neutral: np.ndarray
    peaks: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    dataset: np.ndarray
    dataset_names: list[str]
    split: list[str | None]
    still: np.ndarray
    subjects: list[str]
    views: list[str]
    keys: list[str]
    gray: np.ndarray
    points: np.ndarray
    # (subject, view) -> every usable neutral image of that subject and view (references taken at another moment)
    neutral_images: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def other_neutrals(self, j: int) -> np.ndarray:
        """Neutral images of sample j's subject and view other than its own reference and its own frames."""
        alts = self.neutral_images.get((self.subjects[j], self.views[j]), np.empty(0, dtype=np.int64))
        own = set(self.peaks[j].tolist()) | {int(self.neutral[j])}
        return alts[[int(a) not in own for a in alts]] if len(alts) else alts


def load_samples(sources: list[Source], names: tuple[str, ...], frames: int, crop_cfg: CropConfig,
                 cache_dir: str | Path | None, progress: bool = True, borrow_neutral: bool = True,
                 log=print) -> tuple[Samples, dict]:
    """Read, preprocess (cached) and join the sources. Classes outside `names` and files that do not follow a
    dataset's layout are left out (said through log). Under torchrun, rank 0 makes each image cache while the others
    wait, and they load it (`shared_cache`). Returns (samples, info: per dataset layout, counts, files left out,
    faces not found)."""
    group = cache_group(cache_dir)
    try:
        return _load_samples(sources, names, frames, crop_cfg, cache_dir, progress, borrow_neutral, log, group)
    finally:
        if group is not None:
            import torch.distributed as dist
            dist.destroy_process_group(group)


def unique_names(names: Sequence[str]) -> list[str]:
    """The names made all different, in order: each kept, or where an earlier one has it, the name with the first
    number from 2 up that gives a name none of them has (data, data, data2: data, data3, data2). fer-train's dataset
    names and fer-eval's output folders follow this one rule."""
    own = set(names)
    used: list[str] = []
    for base in names:
        name, n = base, 1
        while name in used or (n > 1 and name in own):
            n += 1
            name = f"{base}{n}"
        used.append(name)
    return used


def dataset_names(sources: list[Source]) -> list[str]:
    """Each source's name in the joined table, all different (unique_names of the folders' names)."""
    return unique_names([src.name for src in sources])


def _load_samples(sources, names, frames, crop_cfg, cache_dir, progress, borrow_neutral, log, group):
    parts, info = [], {"datasets": {}}
    offset = 0
    for src, name in zip(sources, dataset_names(sources)):
        ds = load_dataset(src.root, frames=frames, with_neutral_sequences=NEUTRAL in names,
                          borrow_neutral=borrow_neutral)
        if ds.skipped:
            log(skipped_note(name, ds))
        unknown = sorted({s.label for s in ds.sequences} - set(names))
        if unknown:
            log(f"note: {name}: classes not in the class set are left out: {', '.join(unknown)}")
        seqs = [s for s in ds.sequences if s.label in names]
        paths = sorted({str(p) for s in seqs for p in s.peaks} | {str(s.neutral) for s in seqs if s.neutral})
        if not paths:
            raise DatasetError(f"{src.root}: no samples of the classes {', '.join(names)}")
        cache = shared_cache([Path(p) for p in paths], crop_cfg, cache_dir, progress, group)
        index = cache.index()
        rows, dropped, faceless_reference = [], 0, []
        for s in seqs:
            pk = [index[str(p)] for p in s.peaks]
            if not all(cache.ok[i] for i in pk):
                dropped += 1
                continue
            n = index[str(s.neutral)] if s.neutral is not None else -1
            if n >= 0 and not cache.ok[n]:
                n = -1
                faceless_reference.append(len(rows))
            rows.append((s, pk, n))
        if not rows:
            raise DatasetError(_no_face_message(src.root, cache, len(seqs)))
        view_of = {str(p): s.view for s in ds.sequences for p in [*s.peaks, s.neutral] if p is not None}
        neutral_images: dict[tuple[str, str], list[int]] = {}
        for (subject, _), p in sorted(ds.neutral_frames.items()):
            i = index.get(str(p))
            if i is not None and cache.ok[i]:
                neutral_images.setdefault((f"{name}/{subject}", view_of.get(str(p), "")), []).append(i + offset)
        # A reference in which no face was found gives way to another neutral image of the subject and view (KDEF:
        # the other session's photo), so the sample is not compared with itself when the data has another one.
        replaced = 0
        for r in faceless_reference:
            s, pk, _ = rows[r]
            alts = [i - offset for i in neutral_images.get((f"{name}/{s.subject}", s.view), []) if i - offset not in pk]
            if alts:
                rows[r] = (s, pk, alts[0])
                replaced += 1
        parts.append((name, rows, cache, neutral_images, offset))
        info["datasets"][name] = {
            "root": str(ds.root), "layout": ds.layout, "weight": src.weight, "samples": len(rows),
            "subjects": len({s.subject for s, _, _ in rows}), "dropped_no_face": dropped,
            "images": len(cache.paths), "images_no_face": int((~cache.ok).sum()),
            "without_neutral": sum(n < 0 for _, _, n in rows),
            "reference_without_face_replaced": replaced,
            "neutral_borrowed": sum(s.neutral_borrowed and n >= 0 for s, _, n in rows),
            "self_reference": sum(s.self_reference and n >= 0 for s, _, n in rows),
            "per_class": {c: sum(s.label == c for s, _, _ in rows) for c in names},
            "splits": sorted({s.split for s, _, _ in rows if s.split is not None}),
            "skipped": len(ds.skipped), "skipped_examples": ds.skipped[:SKIPPED_EXAMPLES],
            **({"counts": ds.counts} if ds.counts else {})}
        offset += len(cache.paths)
    k = len(names)
    neutral, peaks, labels, targets, dataset, split, still, subjects, views, keys = ([] for _ in range(10))
    images: dict[tuple[str, str], list[int]] = {}
    for d, (name, rows, cache, neutral_imgs, off) in enumerate(parts):
        for (subject_view, idx) in neutral_imgs.items():
            images.setdefault(subject_view, []).extend(idx)
        for s, pk, n in rows:
            neutral.append(n + off if n >= 0 else -1)
            peaks.append([i + off for i in pk])
            labels.append(names.index(s.label))
            t = np.zeros(k, np.float32)
            if s.votes:
                for c, share in s.votes.items():
                    if c in names:
                        t[names.index(c)] = share
            if t.sum() <= 0:
                t[names.index(s.label)] = 1.0
            targets.append(t / t.sum())
            dataset.append(d)
            split.append(s.split)
            still.append(bool(s.still))
            subjects.append(f"{name}/{s.subject}")
            views.append(s.view)
            keys.append(f"{name}/{s.key}:{s.label}")
    gray = np.concatenate([c.gray for _, _, c, _, _ in parts])
    points = np.concatenate([c.points for _, _, c, _, _ in parts])
    samples = Samples(np.asarray(neutral, np.int64), np.asarray(peaks, np.int64), np.asarray(labels, np.int64),
                      np.stack(targets), np.asarray(dataset, np.int64), [p[0] for p in parts], split,
                      np.asarray(still, bool), subjects, views, keys, gray, points,
                      {key: np.asarray(sorted(set(v)), np.int64) for key, v in images.items()})
    info["samples"] = len(samples)
    info["per_class"] = {c: int((samples.labels == i).sum()) for i, c in enumerate(names)}
    return samples, info


def skipped_note(name: str, ds) -> str:
    """The log line of the files (and folders or label rows) a dataset's reader left out, with a few of them."""
    shown = ", ".join(ds.skipped[:SKIPPED_EXAMPLES]) + (", ..." if len(ds.skipped) > SKIPPED_EXAMPLES else "")
    return (f"note: {name}: {len(ds.skipped)} files, folders or label rows that do not follow the {ds.layout} "
            f"layout are left out: {shown}")


def cache_group(cache_dir: str | Path | None):
    """A gloo group of every torchrun process, to wait in while rank 0 makes an image cache (a long wait: CACHE_WAIT);
    None outside torchrun (torch.distributed not initialised, or one process) or without a cache folder to share."""
    if cache_dir is None:
        return None
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return dist.new_group(backend="gloo", timeout=CACHE_WAIT)


def shared_cache(paths: list[Path], crop_cfg: CropConfig, cache_dir: str | Path | None, progress: bool = True,
                 group=None):
    """The image cache of these images (build_cache). With a `group` (cache_group: under torchrun), rank 0 loads or
    makes and saves it while the other processes wait, then they load the file it saved; what rank 0 raises (no
    landmarker, say) is raised on every process."""
    from fer_ros.training.data.cache import build_cache
    if group is None:
        return build_cache(paths, crop_cfg, cache_dir, progress=progress)
    import torch.distributed as dist
    cache, failure = None, None
    if dist.get_rank() == 0:
        try:
            cache = build_cache(paths, crop_cfg, cache_dir, progress=progress)
        except Exception as exc:  # noqa: BLE001 -- raised below, on every process
            failure = exc
    outcome = [None if failure is None else _picklable(failure)]
    dist.broadcast_object_list(outcome, src=0, group=group)
    if outcome[0] is not None:
        raise failure if failure is not None else outcome[0]
    return cache if cache is not None else build_cache(paths, crop_cfg, cache_dir, progress=False)


def _picklable(exc: Exception) -> Exception:
    """exc, or where it cannot be sent to the other processes, a RuntimeError that says the same."""
    import pickle
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 -- any failure to pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _no_face_message(root: Path, cache, sequences: int) -> str:
    """Why none of a dataset's samples has a face in every one of its images, and what to check."""
    found = int(cache.ok.sum())
    if found == 0:
        return (f"no image with a face in {root}: the landmarker found no face in any of its {len(cache.paths)} "
                f"images; check that they are readable photos of faces (upright, frontal, not too small or dark)")
    return (f"no sample with a face in every image in {root}: a face was found in {found} of its "
            f"{len(cache.paths)} images, but each of its {sequences} samples has an image without one; check that "
            f"the images are readable photos of faces (upright, frontal, not too small or dark)")


def mixed_folds(samples: Samples, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) indices for k folds. Within each dataset: data with its own split keeps it in every fold
    (its train split trains, the rest tests); other data is split by subject (subject_folds)."""
    idx = np.arange(len(samples))
    train = [[] for _ in range(k)]
    test = [[] for _ in range(k)]
    for d, name in enumerate(samples.dataset_names):
        mine = idx[samples.dataset == d]
        if any(samples.split[i] is not None for i in mine):
            is_train = np.array([samples.split[i] == "train" for i in mine], bool)
            for f in range(k):
                train[f].append(mine[is_train])
                test[f].append(mine[~is_train])
            continue
        try:
            folds = subject_folds([samples.subjects[i] for i in mine], k, seed=seed)
        except ValueError as exc:
            raise DatasetError(f"{name}: {exc}") from None
        for f, (tr, te) in enumerate(folds):
            train[f].append(mine[tr])
            test[f].append(mine[te])
    return [(np.concatenate(tr), np.concatenate(te)) for tr, te in zip(train, test)]


def final_train_indices(samples: Samples) -> np.ndarray:
    """What a final fit trains on: everything, except the held-out splits of data that has its own split."""
    return np.array([i for i in range(len(samples)) if samples.split[i] in (None, "train")], np.int64)


def require_training_samples(samples: Samples, info: dict) -> None:
    """Raise DatasetError when no sample would be trained on (in a final fit or in any fold): every dataset is data
    with its own split and holds none of its training split. The message names each dataset and why."""
    if len(final_train_indices(samples)):
        return
    from fer_ros.training.data import ferplus
    reasons = []
    for name in samples.dataset_names:
        d = info["datasets"][name]
        root = Path(d["root"])
        if d["layout"] == "ferplus":
            folders = ", ".join(f"{f.name}: {ferplus.split_of(f)}" for f in ferplus.split_folders(root))
            reasons.append(f"{root} holds only held-out FER+ data (split folders {folders}): FER+ data trains on "
                           f"the folder named FER2013Train and is scored on FER2013Valid and FER2013Test (a folder "
                           f"of any other name is test data); name the folder of the images to train on "
                           f"FER2013Train")
        else:
            reasons.append(f"{root} holds only its held-out splits ({', '.join(d['splits'])})")
    raise DatasetError("no training samples, nothing would be trained on: " + "; ".join(reasons))


class WeightedEpochs:
    """The training indices of one epoch: each dataset's samples drawn weight times on average, without
    replacement within a pass (a weight of 2.5 gives two full passes and half of a third), in shuffled order."""

    def __init__(self, samples: Samples, train_idx: np.ndarray, weights: list[float], seed: int) -> None:
        self.groups = [train_idx[samples.dataset[train_idx] == d] for d in range(len(samples.dataset_names))]
        self.weights = [float(w) for w in weights]
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return sum(self.draws())

    def draws(self) -> list[int]:
        """How many samples each dataset gives an epoch: its weight times its training samples, rounded."""
        return [int(round(w * len(g))) for g, w in zip(self.groups, self.weights)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        out = []
        for g, n in zip(self.groups, self.draws()):
            if n == 0 or len(g) == 0:
                continue
            passes = [rng.permutation(g) for _ in range(math.ceil(n / len(g)))]
            out.append(np.concatenate(passes)[:n])
        allidx = np.concatenate(out) if out else np.empty(0, np.int64)
        return allidx[rng.permutation(len(allidx))]
