"""Training samples from several datasets: sources and weights, the joined table, folds by subject within each
dataset, the weighted epochs, and the neutral reference of each training draw with its differences of another
moment."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_ros.crop import CropConfig
from fer_ros.classes import CKPLUS8
from fer_ros.training.data.datasets import DatasetError
from fer_ros.training.data.augment import AugmentConfig, MomentConfig, augment, moment_jitter
from fer_ros.training.data.samples import (Samples, WeightedEpochs, final_train_indices, load_samples, mixed_folds,
                                           parse_source)
from fer_ros.training.data.sequence_set import ReferencePlan, SequenceSet, reference_of
from synth_data import write_class_folder_dataset, write_ferplus_dataset, write_kdef_dataset


def test_a_source_is_a_path_with_an_optional_weight(tmp_path):
    assert parse_source("data/kdef") == parse_source("data/kdef:1")
    assert parse_source("data/kdef:2.5").weight == 2.5 and parse_source("data/kdef:2.5").root == Path("data/kdef")
    assert parse_source("data/kdef:.25").weight == 0.25
    odd = tmp_path / "x:3"
    odd.mkdir()
    assert parse_source(str(odd)) .root == odd and parse_source(str(odd)).weight == 1.0  # an existing path is a path
    for bad in ("d:0", "d:0.0"):
        with pytest.raises(ValueError, match="must be above 0"):
            parse_source(bad)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """CK+ class folders (3 subjects), FER+ (train 8, valid 4) and KDEF (4 actors, 2 sessions, 2 angles), joined."""
    root = tmp_path_factory.mktemp("mixed")
    write_class_folder_dataset(root / "ck", ("anger", "happy"), (10, 11, 12), sequence_length=4)
    write_ferplus_dataset(root / "fer")
    write_kdef_dataset(root / "kdef", actors=(("F", 1), ("M", 2), ("F", 3), ("M", 4)), angles=("S", "HL"),
                       expressions=("happy", "surprise", "neutral"))
    sources = [parse_source(str(root / "ck")), parse_source(f"{root / 'fer'}:0.5"), parse_source(f"{root / 'kdef'}:2")]
    samples, info = load_samples(sources, CKPLUS8, 3, CropConfig(size=32), root / "cache", progress=False)
    return samples, info, sources


def test_the_joined_table_keeps_each_datasets_subjects_splits_and_targets(mixed):
    samples, info, _ = mixed
    assert samples.dataset_names == ["ck", "fer", "kdef"]
    assert info["datasets"]["fer"]["splits"] == ["train", "valid"]
    assert info["datasets"]["kdef"]["samples"] == 4 * 2 * 2 * 3
    for j in range(len(samples)):
        name = samples.dataset_names[samples.dataset[j]]
        assert samples.subjects[j].startswith(name + "/")
        assert samples.targets[j].sum() == pytest.approx(1.0)
        assert samples.targets[j].argmax() == samples.labels[j] or name == "fer"
    fer = [j for j in range(len(samples)) if samples.dataset[j] == 1]
    assert all(samples.still[j] and samples.neutral[j] == samples.peaks[j][-1] for j in fer)  # itself
    clear = samples.targets[fer[0]]
    assert clear.max() == pytest.approx(0.8) and np.count_nonzero(clear) == 2  # FER+'s 8 + 2 votes, soft
    # KDEF references: expressions their own session's neutral photo of the same angle, neutral ones the other's
    kdef = [j for j in range(len(samples)) if samples.dataset[j] == 2]
    for j in kdef:
        assert samples.neutral[j] >= 0 and samples.neutral[j] not in samples.peaks[j]
        alts = samples.other_neutrals(j)
        assert samples.neutral[j] not in alts and not set(alts) & set(samples.peaks[j])
        if samples.labels[j] != CKPLUS8.index("neutral"):
            assert len(alts) == 1  # the other session's neutral photo of the same angle
        else:
            assert len(alts) == 0  # its reference already is that photo


def test_more_folds_than_a_dataset_has_subjects_say_how_many_to_give(mixed):
    samples, _, _ = mixed
    with pytest.raises(DatasetError, match=r"^ck: 10 folds need at least 10 subjects and the data has 3: give "
                                           r"--folds 3 or fewer$"):
        mixed_folds(samples, 10, seed=0)


def test_files_a_reader_leaves_out_are_logged_and_counted(tmp_path):
    """Files that do not follow the layout are left out, and said: a log line with their number and a few names,
    and the count with those names in the info (report.json's data)."""
    root = tmp_path / "ck"
    write_class_folder_dataset(root, ("happy",), (10, 11), sequence_length=2)
    for name in ("happy/photo.png", "happy/S010_copy.png", "neutral/old.jpg"):
        (root / name).write_bytes(b"not read")
    lines = []
    _, info = load_samples([parse_source(str(root))], CKPLUS8, 3, CropConfig(size=32), tmp_path / "cache",
                           progress=False, log=lines.append)
    d = info["datasets"]["ck"]
    assert d["skipped"] == 3
    assert sorted(d["skipped_examples"]) == ["happy/S010_copy.png", "happy/photo.png", "neutral/old.jpg"]
    assert [line for line in lines if "left out" in line] == [
        "note: ck: 3 files, folders or label rows that do not follow the class_folders layout are left out: "
        "happy/S010_copy.png, happy/photo.png, neutral/old.jpg"]


def test_datasets_of_the_same_folder_name_get_names_no_other_dataset_has(tmp_path):
    """--data a/data --data b/data --data c/data2: the second `data` is not named `data2`, the third dataset's own
    name, so the three keep their subjects, neutral references and info apart."""
    roots = [tmp_path / "a" / "data", tmp_path / "b" / "data", tmp_path / "c" / "data2"]
    for root, subjects in zip(roots, [(10, 11), (10,), (10,)]):
        write_class_folder_dataset(root, ("happy",), subjects, sequence_length=2)
    samples, info = load_samples([parse_source(str(r)) for r in roots], CKPLUS8, 3, CropConfig(size=32),
                                 tmp_path / "cache", progress=False, log=lambda _: None)
    assert samples.dataset_names == ["data", "data3", "data2"]
    assert [info["datasets"][n]["root"] for n in samples.dataset_names] == [str(r) for r in roots]
    for d, name in enumerate(samples.dataset_names):
        mine = [j for j in range(len(samples)) if samples.dataset[j] == d]
        assert mine and all(samples.subjects[j].startswith(name + "/") for j in mine)
        own_images = {int(i) for j in mine for i in samples.peaks[j]}
        for j in mine:
            assert set(samples.other_neutrals(j).tolist()) <= own_images  # references of its own dataset alone
    assert len(set(samples.subjects)) == 4  # a: 10, 11; b: 10; c: 10


def test_folds_split_subjects_within_each_dataset_and_keep_ferplus_split(mixed):
    samples, _, _ = mixed
    folds = mixed_folds(samples, 3, seed=0)
    kdef_tested = []
    for train_idx, test_idx in folds:
        assert not {samples.subjects[i] for i in train_idx} & {samples.subjects[i] for i in test_idx}
        fer_train = {i for i in train_idx if samples.dataset[i] == 1}
        fer_test = {i for i in test_idx if samples.dataset[i] == 1}
        assert {samples.split[i] for i in fer_train} == {"train"} and {samples.split[i] for i in fer_test} == {"valid"}
        kdef_tested += [i for i in test_idx if samples.dataset[i] == 2]
        # an actor's two sessions fall in the same fold
        actors = {samples.subjects[i] for i in test_idx if samples.dataset[i] == 2}
        assert all(samples.subjects[i] not in actors for i in train_idx)
    assert sorted(kdef_tested) == [i for i in range(len(samples)) if samples.dataset[i] == 2]  # once each
    final = final_train_indices(samples)
    assert {samples.split[i] for i in final if samples.dataset[i] == 1} == {"train"}
    assert len(final) == len(samples) - 4


def _noise_png(path: Path, seed: int) -> None:
    import cv2
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (96, 96), dtype=np.uint8))


def test_data_without_a_face_is_a_data_error_that_says_what_to_check(tmp_path):
    """No face in any image, or none in some image of every sample: a DatasetError that names the data and what to
    check (fer-train and fer-quantize print it as one line)."""
    noise = tmp_path / "noface"
    for i, name in enumerate(["happy/S001_001_00000005.png", "happy/S002_001_00000005.png",
                              "neutral/S001_001_00000001.png", "neutral/S002_001_00000001.png"]):
        _noise_png(noise / name, i)
    with pytest.raises(DatasetError, match=f"no image with a face in {noise}: .* any of its 4 images; check that"):
        load_samples([parse_source(str(noise))], CKPLUS8, 3, CropConfig(size=32), tmp_path / "cache", progress=False)
    half = tmp_path / "half"
    write_class_folder_dataset(half, ("anger",), (10, 11), sequence_length=4)
    for i, path in enumerate(sorted((half / "anger").glob("*.png"))):
        _noise_png(path, 10 + i)
    with pytest.raises(DatasetError, match=f"no sample with a face in every image in {half}: .* 2 of its 8 images"):
        load_samples([parse_source(str(half))], ("anger", "happy"), 3, CropConfig(size=32), tmp_path / "cache",
                     progress=False)


@pytest.mark.parametrize("damage", ["cut", "not a zip", "an array missing"])
def test_a_damaged_cache_file_is_a_data_error_naming_it(tmp_path, damage):
    """An image cache file that cannot be read (cut short, overwritten, made by other code) is a DatasetError that
    names the file and says to delete it: fer-train, fer-quantize and fer-eval print it as one line."""
    data = tmp_path / "ck"
    write_class_folder_dataset(data, ("anger",), (10, 11), sequence_length=4)
    cache = tmp_path / "cache"
    load_samples([parse_source(str(data))], ("anger", "neutral"), 3, CropConfig(size=32), cache, progress=False)
    (file,) = cache.glob("images-*.npz")
    if damage == "cut":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif damage == "not a zip":
        file.write_bytes(b"not a cache")
    else:
        np.savez(file.with_suffix(""), gray=np.zeros((1, 32, 32), np.uint8))  # numpy adds .npz
    with pytest.raises(DatasetError, match=f"^{file}: a damaged image cache file .*; delete it"):
        load_samples([parse_source(str(data))], ("anger", "neutral"), 3, CropConfig(size=32), cache, progress=False)


def test_a_reference_without_a_face_gives_way_to_another_neutral_of_the_subject(tmp_path):
    """KDEF: session A's neutral photo holds no face; A's expression photo is compared with session B's neutral
    photo (same angle), not with itself."""
    root = tmp_path / "kdef"
    write_kdef_dataset(root, actors=(("F", 1), ("M", 2)), angles=("S",), expressions=("happy", "neutral"))
    _noise_png(next(root.rglob("AF01NES.jpg")), 3)
    samples, info = load_samples([parse_source(str(root))], CKPLUS8, 3, CropConfig(size=32), tmp_path / "cache",
                                 progress=False)
    j = next(i for i, k in enumerate(samples.keys) if "AF01HAS" in k)
    other = next(i for i, k in enumerate(samples.keys) if "BF01NES" in k)
    assert samples.neutral[j] == samples.peaks[other][-1]  # B's neutral photo
    assert info["datasets"]["kdef"]["reference_without_face_replaced"] >= 1
    assert all(samples.neutral[i] >= 0 for i, k in enumerate(samples.keys) if "M02" in k)


def test_each_epoch_draws_every_dataset_by_its_weight(mixed):
    samples, _, sources = mixed
    train_idx = final_train_indices(samples)
    epochs = WeightedEpochs(samples, train_idx, [s.weight for s in sources], seed=0)
    counts = {d: int(((samples.dataset[train_idx]) == d).sum()) for d in range(3)}
    assert len(epochs) == counts[0] + round(0.5 * counts[1]) + 2 * counts[2]
    seen = []
    for e in range(4):
        epochs.set_epoch(e)
        order = epochs.indices()
        assert len(order) == len(epochs) and set(order) <= set(train_idx)
        drawn = np.bincount(samples.dataset[order], minlength=3)
        assert drawn.tolist() == [counts[0], round(0.5 * counts[1]), 2 * counts[2]]
        per_sample = np.bincount(order, minlength=len(samples))
        assert set(per_sample[samples.dataset == 2][np.isin(np.flatnonzero(samples.dataset == 2), train_idx)]) == {2}
        assert per_sample[samples.dataset == 1].max() == 1  # half of FER+ without replacement
        seen.append(order)
    assert not np.array_equal(seen[0], seen[1])  # another order, another half of FER+ every epoch
    epochs.set_epoch(0)
    assert np.array_equal(epochs.indices(), seen[0])  # the same epoch draws the same


def _toy_samples() -> Samples:
    """Two subjects; subject A: neutral images 0 and 1, expression 2 (reference 0), neutral sample of image 1
    (reference 0, another moment); subject B: one neutral image 3 and its neutral sample (itself)."""
    rng = np.random.default_rng(0)
    gray = rng.integers(40, 200, (5, 32, 32), dtype=np.uint8)
    points = rng.uniform(0.2, 0.8, (5, 68, 2)).astype(np.float32)
    k = len(CKPLUS8)
    targets = np.eye(k, dtype=np.float32)[[4, 7, 7]]
    return Samples(neutral=np.array([0, 0, 3]), peaks=np.array([[2, 2, 2], [1, 1, 1], [3, 3, 3]]),
                   labels=np.array([4, 7, 7]), targets=targets, dataset=np.zeros(3, np.int64), dataset_names=["d"],
                   split=[None] * 3, still=np.ones(3, bool), subjects=["d/A", "d/A", "d/B"], views=["", "", ""],
                   keys=["a", "b", "c"], gray=gray, points=points,
                   neutral_images={("d/A", ""): np.array([0, 1]), ("d/B", ""): np.array([3])})


def test_each_draw_picks_its_reference_by_the_plan():
    s = _toy_samples()
    rng = np.random.default_rng(1)
    draws = [reference_of(s, 0, rng, ReferencePlan(none=0.2, still=0.3, other=0.3)) for _ in range(4000)]
    share = {r: draws.count(r) / len(draws) for r in set(draws)}
    assert share[None] == pytest.approx(0.2, abs=0.03)
    assert share[2] == pytest.approx(0.3, abs=0.03)       # itself: the still path
    assert share[1] == pytest.approx(0.3, abs=0.03)       # the subject's other neutral image
    assert share[0] == pytest.approx(0.2, abs=0.03)       # its own reference
    # a neutral sample is never its own reference unless it is the still path or the subject has no other image
    draws = [reference_of(s, 1, rng, ReferencePlan(none=0.0, still=0.0, other=0.5)) for _ in range(500)]
    assert set(draws) == {0}  # its reference, or another neutral image that is not itself: image 0 again
    draws = [reference_of(s, 2, rng, ReferencePlan(none=0.0, still=0.0, other=1.0)) for _ in range(50)]
    assert set(draws) == {3}  # subject B has nothing else
    # validation: the data's reference, and a photo without one is compared with itself
    assert reference_of(s, 0, None, ReferencePlan()) == 0
    s.neutral[0] = -1
    assert reference_of(s, 0, None, ReferencePlan()) == 2


def test_the_still_draws_treat_a_neutral_sample_as_any_other():
    """--still-prob compares a sample of any class with itself, a neutral one too; its other draws never do where
    the subject has another neutral image (README 'Training')."""
    s = _toy_samples()
    rng = np.random.default_rng(2)
    still = ReferencePlan(none=0.0, still=1.0, other=0.0)
    assert {reference_of(s, j, rng, still) for j in (0, 1) for _ in range(20)} == {2, 1}  # each its own frame
    rest = ReferencePlan(none=0.0, still=0.0, other=0.5)
    assert 1 not in {reference_of(s, 1, rng, rest) for _ in range(200)}


def test_training_items_follow_their_reference():
    s = _toy_samples()
    clip_input = "lbp+gray_norm+delta_norm"
    still = SequenceSet(s, [0], True, 0, None, ReferencePlan(none=0.0, still=1.0, other=0.0, strength=0.0, live=0.0),
                        clip_input)
    clip, geo, valid, y, soft, pairs = still[0]
    assert valid.item() == 1.0 and torch.count_nonzero(geo) == 0 and pairs.item() == 0.0  # itself: no change
    assert clip.shape[0] == 3 and torch.count_nonzero(clip[2]) == 0  # the change channel is zero
    assert y.item() == 4 and torch.equal(soft, torch.from_numpy(s.targets[0]))
    none = SequenceSet(s, [0], True, 0, None, ReferencePlan(none=1.0, still=0.0, other=0.0), clip_input)
    _, geo, valid, _, _, pairs = none[0]
    assert valid.item() == 0.0 and torch.count_nonzero(geo) == 0 and pairs.item() == 0.0
    own = SequenceSet(s, [0], True, 0, None, ReferencePlan(none=0.0, still=0.0, other=0.0, strength=0.0, live=0.0),
                      clip_input)
    clip, geo, valid, _, _, pairs = own[0]
    assert valid.item() == 1.0 and torch.count_nonzero(geo) > 0 and pairs.item() == 1.0
    evaluation = SequenceSet(s, [0], False, 0, clip_input=clip_input)
    assert torch.equal(evaluation[0][0], clip) and torch.equal(evaluation[0][1], geo)


def test_another_moment_moves_the_frame_and_its_points_together():
    rng = np.random.default_rng(0)
    gray = np.zeros((48, 48), np.uint8)
    points = rng.uniform(0.3, 0.7, (68, 2)).astype(np.float32)
    px = np.round(points[10] * 48 - 0.5).astype(int)
    gray[px[1] - 1:px[1] + 2, px[0] - 1:px[0] + 2] = 255  # a bright dot under point 10
    same, same_pts = moment_jitter(gray, points, np.random.default_rng(3), MomentConfig(), strength=0.0)
    assert np.array_equal(same, gray) and np.allclose(same_pts, points)
    quiet = MomentConfig(brightness=0, contrast=0, gamma=0, blur_prob=0, noise=0)
    for seed in range(5):
        moved, moved_pts = moment_jitter(gray, points, np.random.default_rng(seed), quiet, strength=1.0)
        assert not np.allclose(moved_pts, points)
        y, x = np.unravel_index(np.argmax(moved), moved.shape)
        assert np.hypot(x + 0.5 - moved_pts[10, 0] * 48, y + 0.5 - moved_pts[10, 1] * 48) < 2.0  # it followed
        shift = np.abs(moved_pts - points).max()
        assert shift < 0.1  # a few degrees, percent and pixels: another moment, not another pose


# ------------------------------------------------------------------------------------------------ under torchrun
def _on_two_ranks(folder: Path, worker, *args) -> list:
    """worker(rank, *args) in each of two processes joined in a gloo group, as torchrun starts them on CPU; what
    each returns (JSON), by rank."""
    import torch.multiprocessing as mp
    mp.spawn(_rank_main, args=(str(folder), worker, args), nprocs=2, join=True)
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]


def _rank_main(rank: int, folder: str, worker, args) -> None:
    import os

    import torch.distributed as dist
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        result = worker(rank, *args)
        Path(folder, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


_SHOWN: list[int] = []  # images the landmarker below was shown, in this process


class _SlowFaceFinder:
    """Finds one face in every image, at fixed points; slow on rank 0 (a real cache takes minutes to make)."""

    def __init__(self, **kwargs) -> None:
        import torch.distributed as dist
        self.rank = dist.get_rank()

    def detect(self, rgb, stamp_s=None):
        import time

        from fer_ros.landmarker import FaceLandmarks
        _SHOWN.append(1)
        if self.rank == 0:
            time.sleep(0.2)
        h, w = rgb.shape[:2]
        rng = np.random.default_rng(0)
        pts = np.c_[rng.uniform(0.3 * w, 0.7 * w, 478), rng.uniform(0.3 * h, 0.7 * h, 478), np.zeros(478)]
        return [FaceLandmarks.from_points478(pts.astype(np.float32))]

    def close(self) -> None:
        pass


def _load_on_rank(rank: int, data: str, cache_dir: str) -> dict:
    import fer_ros.landmarker
    fer_ros.landmarker.MediaPipeLandmarker = _SlowFaceFinder
    samples, _ = load_samples([parse_source(data)], CKPLUS8, 3, CropConfig(size=32), cache_dir, progress=False,
                              log=lambda line: None)
    return {"shown": len(_SHOWN), "samples": len(samples), "files": sorted(p.name for p in Path(cache_dir).iterdir())}


def test_under_torchrun_rank_0_makes_the_image_cache_and_the_others_load_it(tmp_path):
    """Two processes of one run load the same data: the first makes and saves the cache while the second waits,
    then the second loads the saved file (it finds no face itself) and has the same samples."""
    write_class_folder_dataset(tmp_path / "ck", ("happy",), (10, 11), sequence_length=2)
    ranks = _on_two_ranks(tmp_path, _load_on_rank, str(tmp_path / "ck"), str(tmp_path / "cache"))
    assert ranks[0]["shown"] > 0 and ranks[1]["shown"] == 0
    assert ranks[0]["samples"] == ranks[1]["samples"] > 0
    assert len(ranks[1]["files"]) == 1 and ranks[1]["files"][0].startswith("images-")


def _tiny_args(*extra: str):
    from fer_ros.training.args import get_args_parser
    return get_args_parser().parse_args(["--data", "d", "--size", "32", "--app-widths", "4,8,8,8", "--geo-width", "4",
                                         "--batch-size", "8", "--threads", "1", "--no-progress", "--epochs", "2",
                                         "--geo-epochs", "2", *extra])


def _recording_set(draws: list) -> type:
    """A SequenceSet for fit that records in `draws`, for every epoch, the first number of its random stream and
    the samples it gives with torch's seed (dropout); fit makes the joint epochs' set first, then the geometric one."""
    import copy
    made = []

    class Recording(SequenceSet):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.stage = ("joint", "geometric")[len(made)]
            made.append(self)

        def reseed(self, seed) -> None:
            super().reseed(seed)
            draws.append({"stage": self.stage, "stream": float(copy.deepcopy(self.rng).random()), "items": []})

        def __getitem__(self, i):
            mine = [d for d in draws if d["stage"] == self.stage][-1]
            mine["items"].append([int(self.idx[i]), int(torch.initial_seed())])
            return super().__getitem__(i)
    return Recording


def _fit_on_rank(rank: int, run_dir: str) -> list:
    from fer_ros.training import fit
    draws: list = []
    fit.SequenceSet = _recording_set(draws)
    fit.fit(_tiny_args(), _toy_samples(), np.arange(3), None, len(CKPLUS8), Path(run_dir) / f"rank{rank}", 0,
            {"rank": rank, "world": 2})
    return draws


@pytest.fixture(scope="module")
def two_rank_fit(tmp_path_factory):
    """What each of two processes training one model drew, epoch by epoch (_recording_set)."""
    folder = tmp_path_factory.mktemp("ddp")
    return _on_two_ranks(folder, _fit_on_rank, str(folder))


def test_under_torchrun_each_rank_draws_its_own_augmentation_and_dropout(two_rank_fit):
    """In every epoch (geometric pre-training and joint) each process draws its own references, augmentation and
    dropout."""
    ranks = two_rank_fit
    assert [d["stage"] for d in ranks[0]] == [d["stage"] for d in ranks[1]] == ["geometric"] * 2 + ["joint"] * 2
    for a, b in zip(*ranks):
        assert a["stream"] != b["stream"]
        assert {seed for _, seed in a["items"]}.isdisjoint({seed for _, seed in b["items"]})


def test_under_torchrun_the_geometric_pre_training_gives_each_rank_its_share(two_rank_fit):
    """Samples 0 and 1 have another image as reference: each epoch of the geometric pre-training gives one to each
    process, not both to both."""
    for a, b in zip(*two_rank_fit):
        if a["stage"] == "geometric":
            assert len(a["items"]) == len(b["items"]) == 1
            assert sorted(j for j, _ in a["items"] + b["items"]) == [0, 1]


def test_one_process_draws_by_seed_and_epoch_alone(tmp_path, monkeypatch):
    """Outside torchrun the streams are those of (seed, epoch): the shipped recipe's draws."""
    from fer_ros.training import fit
    draws: list = []
    monkeypatch.setattr(fit, "SequenceSet", _recording_set(draws))
    fit.fit(_tiny_args(), _toy_samples(), np.arange(3), None, len(CKPLUS8), tmp_path / "run", 0)
    geo, joint = draws[:2], draws[2:]
    for epoch, d in enumerate(geo):
        assert d["stream"] == np.random.default_rng([0, 1000 + epoch]).random()
        torch_seed = int(np.random.SeedSequence([0, 1000 + epoch]).generate_state(1)[0])
        assert {seed for _, seed in d["items"]} == {torch_seed}
    shuffled = torch.utils.data.DataLoader(range(2), batch_size=8, shuffle=True,
                                           generator=torch.Generator().manual_seed(0))
    assert [j for j, _ in geo[0]["items"]] == next(iter(shuffled)).tolist()  # in the order seed gives
    for epoch, d in enumerate(joint):
        assert d["stream"] == np.random.default_rng([0, epoch]).random()
        assert {seed for _, seed in d["items"]} == {int(np.random.SeedSequence([0, epoch]).generate_state(1)[0])}


def test_a_smaller_face_is_the_whole_sample_with_fewer_pixels_and_costs_no_draw_when_off():
    """--small-face-prob: the sample's frames (clip and reference alike) lose their finest detail, as a face further
    away does, the landmarks stay where they are; at 0 the draws are those of the augmentation without the option."""
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(4, 48, 48)).astype(np.uint8)  # detail at the pixel scale
    points = rng.uniform(0.2, 0.8, size=(4, 68, 2)).astype(np.float32)
    plain = AugmentConfig(flip=0.0, rotate_deg=0.0, scale=0.0, shift=0.0, brightness=0.0, contrast=0.0)
    small = AugmentConfig(**{**plain.__dict__, "small_face": 1.0})
    out, pts, _ = augment(frames, points, np.random.default_rng(0), small)
    same, _, _ = augment(frames, points, np.random.default_rng(0), plain)
    np.testing.assert_array_equal(same, frames)
    np.testing.assert_allclose(pts, points, atol=1e-6)
    detail = lambda g: float(np.abs(np.diff(g.astype(np.float32), axis=-1)).mean())  # noqa: E731
    assert detail(out) < 0.6 * detail(frames)
    diffs = [float(np.abs(out[i].astype(np.float32) - out[0]).mean()) for i in range(1, 4)]
    assert all(d > 0 for d in diffs)  # each frame keeps its own content ...
    big = rng.integers(0, 256, size=(1, 48, 48)).astype(np.uint8)
    sides = set()
    for seed in range(40):  # ... at one side per sample, between 42% and 92% of the crop's
        g, _, _ = augment(np.repeat(big, 2, 0), points[:2], np.random.default_rng(seed), small)
        np.testing.assert_array_equal(g[0], g[1])
        sides.add(detail(g))
    assert len(sides) > 5
    r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
    augment(frames, points, r1, AugmentConfig())
    augment(frames, points, r2, AugmentConfig(small_face=0.0))
    assert r1.random() == r2.random()
