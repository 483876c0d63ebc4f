"""fer-eval's samples: the dataset opened with clear errors, every image through the node's landmarker and crop
(cached), each sequence's clip and difference image made as the node makes them (`prepare`), and the engine's
scores for them (`predict`)."""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fer_ros.classes import NEUTRAL

MAX_EXAMPLES = 5  # file names listed per kind of problem


class EvalError(RuntimeError):
    """A user error: the message says what was wrong and what to do (printed as one line, exit status 2)."""


@dataclass
class Sample:
    """One scored input. kind: "sequence", "frame" or "neutral"; key: S<subject>_<sequence> (frame samples add
    the frame file's name); probs: (K,) in the model's class order; has_neutral: a neutral reference was used."""

    kind: str
    key: str
    subject: str
    true_label: str
    newest: str
    has_neutral: bool
    probs: list[float] = field(default_factory=list)
    pred_label: str = ""
    # which reference it was compared with: "own" (its sequence's or session's neutral frame), "other" (a neutral
    # frame of the same subject from another sequence or session), "self" (its own frame: the data has no other
    # moment of the face) or "none"
    reference: str = "own"


NOT_FOUND = "not found"  # the answer a miss counts as: a column of its own in the confusion matrices
MISS_REASONS = {"no_face": "no face found", "unreadable": "unreadable image", "non_finite_scores": "non-finite scores"}


@dataclass
class Miss:
    """A sample that could not be scored: no face was found in (or no image read from) its frames, or the model
    gave it non-finite scores. It counts as a wrong answer in every figure of its level (as the answer NOT_FOUND)."""

    key: str
    true_label: str
    file: str
    reason: str  # a key of MISS_REASONS
    kind: str = "sequence"  # as Sample.kind
    subject: str = ""
    has_neutral: bool = False  # the reference it would have been compared with was usable
    reference: str = "none"    # as Sample.reference


@dataclass
class PreparedData:
    """Samples ready for the engine plus what could not be used."""

    samples: list[Sample]
    clips: np.ndarray          # (N, C, T, S, S) float32
    geos: np.ndarray           # (N, C, G, G) float32
    valid: np.ndarray          # (N,) float32
    counts: dict[str, Any]
    misses: list[Miss] = field(default_factory=list)


LAYOUTS_HELP = ("the CK+ release layout (cohn-kanade-images/, Emotion/), class folders "
                "<class>/S<subject>_<sequence>_<frame>.png, FER+ split folders with label.csv, or KDEF photos "
                "(e.g. AF01HAS.jpg)")


def open_dataset(root: str | Path, window_length: int, neutral_samples: bool = True, borrow_neutral: bool = True,
                 angles: tuple[str, ...] | None = None):
    """load_dataset with checks that turn a missing or empty folder into a clear EvalError. A FER+ folder that
    holds its training split and others is scored on the others (the held-out splits); a split folder is scored
    as it is. neutral_samples False leaves out every neutral sample (neutral frames, KDEF's and FER+'s neutral
    photos), kept in `left_out` (loaded_sequences); angles: the KDEF angles to read (None: all)."""
    from fer_ros.training.data import ferplus
    from fer_ros.training.data.datasets import IMAGE_SUFFIXES, DatasetError, load_dataset
    root = Path(root).expanduser()
    if not root.exists():
        raise EvalError(f"data folder not found: {root}; pass --data <folder> in {LAYOUTS_HELP}")
    if not root.is_dir():
        raise EvalError(f"--data {root} is a file; pass the dataset's folder")
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.rglob("*") if p.is_file()):
        raise EvalError(f"data folder {root} holds no images; expected {LAYOUTS_HELP}")
    splits = None
    folders = ferplus.split_folders(root)
    held_out = [f for f in folders if ferplus.split_of(f) != "train"]
    if len(folders) > 1 and held_out:
        splits = tuple(sorted({ferplus.split_of(f) for f in held_out}))
    try:
        ds = load_dataset(root, frames=window_length, with_neutral_sequences=True,
                          borrow_neutral=borrow_neutral, splits=splits, angles=angles)
    except DatasetError as exc:
        raise EvalError(str(exc)) from None
    except OSError as exc:
        raise EvalError(f"cannot read the data folder {root}: {exc}") from None
    if not neutral_samples:
        ds.left_out = [s for s in ds.sequences if s.label == NEUTRAL]
        ds.sequences = [s for s in ds.sequences if s.label != NEUTRAL]
        if not ds.sequences:
            raise EvalError(f"{root}: every sample is neutral; leave out --no-neutral-samples to score them")
    return ds


def loaded_sequences(ds) -> list:
    """Every sample of the data as loaded: the ones scored (ds.sequences) and the neutral ones open_dataset left
    out (--no-neutral-samples)."""
    return [*ds.sequences, *getattr(ds, "left_out", [])]


def neutral_images(ds) -> list[str]:
    """Every neutral image of the data, scored or not: the neutral frames (references) and the photos labelled
    neutral (FER+)."""
    photos = [str(s.peaks[-1]) for s in loaded_sequences(ds) if s.label == NEUTRAL and s.still]
    return sorted({str(p) for p in ds.neutral_frames.values()} | set(photos))


def labelled_frames(ds, seq) -> list[str]:
    """The frames of a sequence that carry its label, oldest first: the CK+ release labels the last frame alone
    (its Emotion/ file names it); class folders hold only labelled frames, every one of them
    (Sequence.labelled_frames), not only the last T its clip reads."""
    distinct = list(dict.fromkeys(str(p) for p in (seq.labelled_frames or seq.peaks)))
    return distinct[-1:] if ds.layout == "ckplus_official" else distinct


def _distance(a: str, b: str) -> tuple:
    """How far sequence b is from sequence a, for ordering references nearest first: by number where both are
    numbers (the earlier on a tie), else the same name first, then by name (KDEF: the other session)."""
    if a.isdigit() and b.isdigit():
        return (abs(int(a) - int(b)), int(b), b)
    return (int(a != b), 0, b)


def _view(ds, path: str, view_of: dict[str, str]) -> str:
    """The camera angle of a neutral frame: its samples' view, or (a KDEF photo no sample uses, as with
    --no-neutral-samples) the angle its name gives; "" for data with one view."""
    if path in view_of:
        return view_of[path]
    if ds.layout == "kdef":
        from fer_ros.training.data import kdef
        parsed = kdef.parse(Path(path))
        return parsed[4] if parsed is not None else ""
    return ""


def usable_neutrals(ds, usable: dict[str, bool]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(subject, view) -> [(sequence, neutral frame)] for every neutral frame of the data in which a face was
    found (`usable`: image -> face found; frames not in it are not used)."""
    view_of = {str(p): s.view for s in ds.sequences for p in [*s.peaks, s.neutral] if p is not None}
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for (subject, number), p in sorted(ds.neutral_frames.items()):
        if usable.get(str(p), False):
            out.setdefault((subject, _view(ds, str(p), view_of)), []).append((number, str(p)))
    return out


def other_neutrals(seq, neutrals: dict[tuple[str, str], list[tuple[str, str]]]) -> list[str]:
    """The usable neutral frames (usable_neutrals) of the sequence's subject and view other than its own frames
    and its own reference, nearest first (_distance)."""
    own = {str(p) for p in seq.peaks} | ({str(seq.neutral)} if seq.neutral is not None else set())
    found = [(_distance(seq.sequence, number), p) for number, p in neutrals.get((seq.subject, seq.view), [])
             if p not in own]
    return [p for _, p in sorted(found)]


def _window(frames: list[str], length: int) -> list[str]:
    """The last `length` of `frames`, the earliest repeated in front when there are fewer."""
    w = list(frames[-length:])
    while len(w) < length:
        w.insert(0, w[0])
    return w


@contextlib.contextmanager
def _quiet_opencv():
    """OpenCV's own log lines off (it prints decoder errors for every broken file) for the block."""
    import cv2
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is None:
        yield
        return
    level = logging_api.getLogLevel()
    logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_api.setLogLevel(level)


def _unusable_reason(path: str) -> str:
    """Why an image the cache could not use failed: "unreadable" (no decodable image) or "no_face"."""
    import cv2

    from fer_ros.image_codec import read_image
    return "unreadable" if read_image(path, cv2.IMREAD_UNCHANGED) is None else "no_face"


def _miss(bad: list[str], unreadable: set[str]) -> str:
    """The reason (a key of MISS_REASONS) a sample with these unusable frames is a miss."""
    return "unreadable" if any(p in unreadable for p in bad) else "no_face"


def reference(seq, usable: dict[str, bool], neutrals: dict, is_neutral_sample: bool,
              borrow_neutral: bool = True) -> tuple[str | None, str, str | None]:
    """(reference frame or None, its kind as Sample.reference, what replaced a reference without a face: "other",
    "self" or None). A reference in which no face was found gives way to the same subject's other usable neutral
    frames of the same view, nearest first (other_neutrals; a labelled sequence only with borrow_neutral), then,
    for a neutral sample, to itself; a labelled sequence left without one has none."""
    peaks = [str(p) for p in seq.peaks]
    own = str(seq.neutral) if seq.neutral is not None else None
    if own is not None and own in peaks:  # the data has no other moment of the face (FER+)
        return own, "self", None
    if own is not None and usable[own]:
        return own, ("other" if seq.neutral_borrowed else "own"), None
    if own is not None and (borrow_neutral or is_neutral_sample):
        alts = other_neutrals(seq, neutrals)
        if alts:
            return alts[0], "other", "other"
        if is_neutral_sample:
            return peaks[-1], "self", "self"
    return None, "none", None


def prepare(ds, manifest, cache_dir: str | Path | None, frame_level: bool = True, progress: bool = True,
            landmarker=None, borrow_neutral: bool = True) -> PreparedData:
    """Landmarks + crops for every image (cached), then the clip / difference image of every sample, exactly as
    the node builds them. A sample with an unusable frame among its own (a frame sample: in its window) is a Miss;
    a reference without a face is replaced as `reference` says. Every neutral frame of the data is checked, as a
    reference it may serve, whether or not it is a sample. Frame samples: one per labelled frame (labelled_frames)
    of a sequence that has several, the newest of a window of the labelled frames up to it (_window)."""
    from fer_ros.crop import CropConfig
    from fer_ros.training.data.cache import CacheError, build_cache
    from fer_ros.landmarker import LandmarkerError
    from fer_ros.lbp import lbp
    from fer_ros.preprocess import FaceSample, make_clip, make_geo

    crop_cfg = CropConfig.from_spec(manifest.preprocess["crop"])
    t = manifest.window_length
    paths = sorted({str(p) for s in ds.sequences for p in s.peaks} |
                   {str(s.neutral) for s in ds.sequences if s.neutral is not None} |
                   {str(p) for p in ds.neutral_frames.values()} |
                   {p for s in ds.sequences for p in (labelled_frames(ds, s) if frame_level else [])})
    with _quiet_opencv():  # unreadable files are counted and reported below, not logged by OpenCV
        try:
            cache = build_cache([Path(p) for p in paths], crop_cfg, cache_dir, progress=progress,
                                landmarker=landmarker)
        except (LandmarkerError, CacheError) as exc:
            raise EvalError(str(exc)) from None
    index = cache.index()
    problems: dict[str, list[str]] = {"unreadable": [], "no_face": []}
    usable: dict[str, bool] = {}
    with _quiet_opencv():
        for p in paths:
            usable[p] = bool(cache.ok[index[p]])
            if not usable[p]:
                problems[_unusable_reason(p)].append(p)
    neutrals = usable_neutrals(ds, usable)
    unreadable = set(problems["unreadable"])
    samples_cache: dict[str, FaceSample] = {}

    def sample(p: str) -> FaceSample:
        if p not in samples_cache:
            i = index[p]
            gray = cache.gray[i]
            samples_cache[p] = FaceSample(lbp=lbp(gray), gray=gray, points68=cache.points[i])
        return samples_cache[p]

    out: list[Sample] = []
    misses: list[Miss] = []
    clips, geos, valid = [], [], []
    skipped_sequences: Counter = Counter()
    replaced: Counter = Counter()
    neutral_unusable = 0
    missing_neutral = borrowed_neutral = 0
    root = Path(ds.root)

    def rel(p: str) -> str:
        try:
            return str(Path(p).relative_to(root))
        except ValueError:
            return p

    def add(kind: str, key: str, seq, window: list[str], neutral: str | None, ref_kind: str) -> None:
        ref = sample(neutral).points68 if neutral is not None else None
        geo, ok = make_geo(ref, sample(window[-1]).points68)
        clips.append(make_clip([sample(p) for p in window], manifest.clip_input,
                               sample(neutral).gray if neutral is not None else None))
        geos.append(geo)
        valid.append(ok)
        out.append(Sample(kind=kind, key=key, subject=seq.subject, true_label=seq.label, newest=rel(window[-1]),
                          has_neutral=neutral is not None, reference=ref_kind))

    for seq in ds.sequences:
        peaks = [str(p) for p in seq.peaks]
        is_neutral_sample = seq.label == NEUTRAL and len(set(peaks)) == 1
        kind = "neutral" if is_neutral_sample else "sequence"
        neutral, ref_kind, replacement = reference(seq, usable, neutrals, is_neutral_sample, borrow_neutral)
        neutral_unusable += int(seq.neutral is not None and not usable[str(seq.neutral)]
                                and str(seq.neutral) not in peaks)
        replaced[replacement] += int(replacement is not None)
        if not is_neutral_sample:
            missing_neutral += int(neutral is None)
            borrowed_neutral += int(ref_kind == "other" and replacement is None and seq.neutral_borrowed)
        frames = labelled_frames(ds, seq) if frame_level and kind == "sequence" else []
        frames = frames if len(frames) > 1 else []
        windows = [(kind, seq.key, _window(peaks, t))]
        windows += [("frame", f"{seq.key}/{Path(f).stem}", _window(frames[:k + 1], t)) for k, f in enumerate(frames)]
        for sample_kind, key, window in windows:
            bad = [p for p in window if not usable[p]]
            if not bad:
                add(sample_kind, key, seq, window, neutral, ref_kind)
                continue
            reason = _miss(bad, unreadable)
            skipped_sequences[reason] += int(sample_kind != "frame")
            misses.append(Miss(key, seq.label, rel(bad[-1]), reason, sample_kind, seq.subject, neutral is not None,
                               ref_kind))

    counts = {
        "images": len(paths),
        "neutral_frames": len(neutral_images(ds)),
        "unreadable_images": len(problems["unreadable"]),
        "no_face_images": len(problems["no_face"]),
        "unreadable_examples": [rel(p) for p in problems["unreadable"][:MAX_EXAMPLES]],
        "no_face_examples": [rel(p) for p in problems["no_face"][:MAX_EXAMPLES]],
        "sequences_skipped": dict(skipped_sequences),
        "neutral_frames_unusable": neutral_unusable,
        "references_replaced": {"other": replaced["other"], "self": replaced["self"]},
        "sequences_without_neutral": missing_neutral,
        "sequences_neutral_borrowed": borrowed_neutral,
    }
    if out:
        clip_arr = np.stack(clips).astype(np.float32)
        geo_arr = np.stack(geos).astype(np.float32)
    else:
        from fer_ros.difference_image import empty
        s = crop_cfg.size
        clip_arr = np.zeros((0, manifest.clip_channels, t, s, s), np.float32)
        geo_arr = np.zeros((0, *empty().shape), np.float32)
    return PreparedData(out, clip_arr, geo_arr, np.asarray(valid, np.float32), counts, misses)


def predict(engine, data: PreparedData, class_names: Sequence[str], batch_size: int = 64,
            progress: bool = True) -> None:
    """Fill each sample's probs and pred_label with the engine's output, in batches. A sample whose scores are not
    all finite is moved to the misses (reason "non_finite_scores") and counted in data.counts."""
    n = len(data.samples)
    starts = range(0, n, batch_size)
    if progress and n > batch_size:
        from tqdm import tqdm
        starts = tqdm(starts, desc="inference", unit="batch")
    for a in starts:
        b = min(a + batch_size, n)
        probs = np.asarray(engine.predict(data.clips[a:b], data.geos[a:b], data.valid[a:b]), np.float32)
        if probs.shape != (b - a, len(class_names)):
            raise EvalError(f"the model returned scores of shape {probs.shape}, expected {(b - a, len(class_names))}"
                            f"; its manifest does not describe it -- re-export the model")
        for s, p in zip(data.samples[a:b], probs):
            s.probs = [float(v) for v in p]
            s.pred_label = class_names[int(np.argmax(p))]
    bad = [s for s in data.samples if not np.all(np.isfinite(s.probs))]
    data.counts["non_finite_scores"] = len(bad)
    data.counts["non_finite_examples"] = [s.key for s in bad[:MAX_EXAMPLES]]
    if bad:
        data.misses.extend(Miss(s.key, s.true_label, s.newest, "non_finite_scores", s.kind, s.subject, s.has_neutral,
                                s.reference) for s in bad)
        data.samples[:] = [s for s in data.samples if np.all(np.isfinite(s.probs))]
