"""fer-train on data the tests generate: the dataset layouts, folds by subject within each dataset, several datasets
mixed by weight, the neutral reference of each training draw, two epochs lower the loss, --init, resume from a
checkpoint, the cross-validation report and plots per dataset, export parity (ONNX and TorchScript)."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import NO_LIBEGL
from eval_helpers import CLASSES, SUBJECTS, class_folder_data, official_data
from fer_ros.training import train
from fer_ros.training.args import get_args_parser
from fer_ros.training.data.datasets import DatasetError, detect_layout, load_dataset
from fer_ros.training.data.folds import subject_folds
from fer_ros.training.fit import build_model

TINY = ["--size", "32", "--app-widths", "4,8,8,8", "--geo-width", "4", "--batch-size", "8", "--threads", "2",
        "--no-progress"]


def _train(base: Path, data: Path | list[str], out: Path, *extra: str) -> int:
    sources = [str(data)] if isinstance(data, (str, Path)) else list(data)
    return train.main([a for s in sources for a in ("--data", s)] + ["--cache-dir", str(base / "train_cache"),
                                                                     "--out", str(out), *TINY, *extra])


def _log(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


@pytest.mark.parametrize("layout", ["class_folders", "ckplus_official"])
def test_both_ckplus_layouts_give_the_same_sequences(base, layout):
    root = class_folder_data(base) if layout == "class_folders" else official_data(base)
    assert detect_layout(root) == layout
    ds = load_dataset(root, frames=3)
    labelled = [s for s in ds.sequences if s.label != "neutral"]
    assert len(labelled) == len(CLASSES) * len(SUBJECTS)
    assert {s.label for s in labelled} == set(CLASSES)
    assert all(len(s.peaks) == 3 and s.neutral is not None for s in labelled)
    assert {int(s.subject) for s in ds.sequences} == set(SUBJECTS)
    assert any(s.label == "neutral" for s in ds.sequences)


def test_unusable_dataset_folders_are_named(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="none of the known layouts"):
        load_dataset(tmp_path / "empty")


@pytest.mark.parametrize("k", [2, 3, 10])
def test_a_fold_never_shares_a_subject(k):
    rng = np.random.default_rng(k)
    subjects = [f"S{int(s):03d}" for s in rng.integers(0, 25, size=300)]
    folds = subject_folds(subjects, k, seed=1)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(subjects)))  # every sample tested exactly once
    for train_idx, test_idx in folds:
        assert not {subjects[i] for i in train_idx} & {subjects[i] for i in test_idx}
        assert len(train_idx) + len(test_idx) == len(subjects)
    sizes = [len(t) for _, t in folds]
    assert max(sizes) - min(sizes) <= max(np.unique(subjects, return_counts=True)[1])
    with pytest.raises(ValueError, match="need at least"):
        subject_folds(subjects[:5], 50)


def test_two_epochs_lower_the_loss(base, tmp_path):
    assert _train(base, class_folder_data(base), tmp_path / "run", "--folds", "0", "--final", "--epochs", "2",
                  "--no-augment", "--lr", "3e-3", "--class-set", "ckplus8") == 0
    rows = _log(tmp_path / "run" / "final" / "log.csv")
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[1]["loss"] < rows[0]["loss"]
    assert (tmp_path / "run" / "final" / "curves.png").stat().st_size > 1000


def test_resume_continues_from_the_checkpoint(base, tmp_path, monkeypatch):
    """A run stopped after two of its four epochs and resumed trains as the uninterrupted run did: the same
    losses, epoch for epoch (the draws of each epoch are seeded by the epoch, the schedule is in the checkpoint)."""
    import torch
    data = class_folder_data(base)
    args = ("--folds", "0", "--final", "--epochs", "4", "--class-set", "ckplus7")
    assert _train(base, data, tmp_path / "whole", *args) == 0
    whole = _log(tmp_path / "whole" / "final" / "log.csv")
    real_save, saved = torch.save, []

    def stop_after_two(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        saved.append(path)
        if len(saved) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        _train(base, data, tmp_path / "cut", *args)
    monkeypatch.setattr(torch, "save", real_save)
    assert _train(base, data, tmp_path / "cut", *args, "--resume") == 0
    rows = _log(tmp_path / "cut" / "final" / "log.csv")
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in whole], rel=1e-5)


def test_a_run_stopped_while_saving_keeps_its_last_checkpoint(base, tmp_path, monkeypatch):
    """The checkpoint is written aside and renamed: a stop in the middle of writing leaves the previous epoch's
    checkpoint whole, and --resume goes on from it."""
    import torch
    data, out = class_folder_data(base), tmp_path / "run"
    args = ("--folds", "0", "--final", "--class-set", "ckplus7")
    assert _train(base, data, out, *args, "--epochs", "1") == 0
    real_save = torch.save

    def stopped_mid_write(obj, path, *a, **k):
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", stopped_mid_write)
    with pytest.raises(KeyboardInterrupt):
        _train(base, data, out, *args, "--epochs", "3", "--resume")
    monkeypatch.setattr(torch, "save", real_save)
    ck = torch.load(out / "final" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 0
    assert _train(base, data, out, *args, "--epochs", "3", "--resume") == 0
    assert [r["epoch"] for r in _log(out / "final" / "log.csv")] == [0, 1, 2]


def test_resume_refuses_a_checkpoint_made_for_other_samples(base, tmp_path, capsys):
    """A fold's checkpoint records the samples it trains and is scored on: --resume with another --seed or --folds
    (fold 0 then holds other subjects) is refused before any training, the checkpoint left as it was; the same
    options go on from it."""
    import torch

    from fer_ros.crop import CropConfig
    from fer_ros.training.data.samples import load_samples, mixed_folds, parse_source
    data, out = class_folder_data(base), tmp_path / "run"
    args = ("--folds", "3", "--only-fold", "0", "--epochs", "1", "--geo-epochs", "0", "--class-set", "ckplus7")
    samples, _ = load_samples([parse_source(str(data))], ("anger", "contempt", "disgust", "fear", "happy", "sadness",
                                                          "surprise"), 3, CropConfig(size=32), base / "train_cache",
                              progress=False)
    tested = {seed: {samples.subjects[i] for i in mixed_folds(samples, 3, seed=seed)[0][1]} for seed in (0, 5)}
    assert tested[0] != tested[5]  # fold 0 holds another subject with --seed 5
    assert _train(base, data, out, *args, "--seed", "0") == 0
    capsys.readouterr()
    ckpt = out / "fold00" / "checkpoint.pt"
    written = ckpt.read_bytes()
    assert _train(base, data, out, *args, "--seed", "5", "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-train: --resume: {ckpt} was made for other samples than this run's, with --seed 0 "
                          f"(this run: 5)") and err.count("\n") == 1
    assert _train(base, data, out, *args[2:], "--folds", "2", "--only-fold", "0", "--resume") == 2
    assert "--folds 3 (this run: 2)" in capsys.readouterr().err
    assert ckpt.read_bytes() == written
    assert _train(base, data, out, *args[:-4], "--epochs", "2", "--geo-epochs", "0", "--class-set", "ckplus7",
                  "--seed", "0", "--resume") == 0
    assert [r["epoch"] for r in _log(out / "fold00" / "log.csv")] == [0, 1]
    # a checkpoint that does not record its samples cannot be checked: refused too
    ck = torch.load(ckpt, weights_only=True)
    del ck["split"]
    torch.save(ck, ckpt)
    assert _train(base, data, out, *args, "--seed", "0", "--epochs", "3", "--resume") == 2
    assert "does not record the samples it was made for" in capsys.readouterr().err


def test_resume_refuses_other_options_than_the_checkpoints(base, tmp_path, capsys):
    """--resume goes on with the options a checkpoint was made with: another learning rate, batch size, data weight,
    augmentation or architecture, or fewer --epochs, is refused before any fit starts (one line naming the option
    and both values), the checkpoint left as it was; where the run runs and what it shows may change and --epochs
    may grow, and report.json says where the fit went on from."""
    data, out = class_folder_data(base), tmp_path / "run"
    args = ("--folds", "0", "--final", "--epochs", "2", "--geo-epochs", "0", "--class-set", "ckplus7")
    assert _train(base, data, out, *args) == 0
    capsys.readouterr()
    ckpt = out / "final" / "checkpoint.pt"
    written = ckpt.read_bytes()
    for given, extra, says in [
            (data, ("--lr", "1e-4"), "--lr 0.002 (this run: 0.0001)"),
            (data, ("--batch-size", "4"), "--batch-size 8 (this run: 4)"),
            (f"{data}:2", (), f"--data {data}:1 (this run: {data}:2)"),
            (data, ("--no-augment",), "--no-augment not given (this run: given)"),
            (data, ("--geo-width", "8"), "--geo-width 4 (this run: 8)"),
            (data, ("--epochs", "1"), "--epochs 2 (this run: 1; --epochs may only grow on --resume)")]:
        assert _train(base, given, out, *args, *extra, "--resume") == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fer-train: --resume: {ckpt} was made with other options than this run's, with "
                              f"{says}; ") and err.count("\n") == 1 and "Traceback" not in err
    assert ckpt.read_bytes() == written
    assert _train(base, data, out, *args, "--epochs", "3", "--threads", "1", "--resume") == 0
    assert [r["epoch"] for r in _log(out / "final" / "log.csv")] == [0, 1, 2]
    assert json.loads((out / "report.json").read_text())["resumed"] == {"final": {"from_epoch": 2,
                                                                                   "checkpoint_epochs": 2}}


def test_resume_checks_the_checkpoints_of_fits_it_does_not_run(base, tmp_path, capsys):
    """Every fit of a run in --out was made with the same options: a --resume that starts another fold with another
    learning rate is refused on the checkpoint of the fold already made."""
    data, out = class_folder_data(base), tmp_path / "run"
    args = ("--folds", "3", "--epochs", "1", "--geo-epochs", "0", "--class-set", "ckplus7")
    assert _train(base, data, out, *args, "--only-fold", "0") == 0
    capsys.readouterr()
    assert _train(base, data, out, *args, "--only-fold", "1", "--lr", "1e-4", "--resume") == 2
    assert capsys.readouterr().err.startswith(f"fer-train: --resume: {out / 'fold00' / 'checkpoint.pt'} was made "
                                              f"with other options than this run's, with --lr 0.002 (this run: "
                                              f"0.0001)")
    assert not (out / "fold01").exists()


def test_resume_refuses_checkpoints_made_from_another_init_model(base, model8, tmp_path, capsys):
    """A checkpoint records the sha256 of the --init model's model.pt it started from: a model exported anew into
    the same --init folder between two commands makes --resume refuse (one line naming both digests) before any
    fit starts, where it would train the next folds from other weights and report them all as started from it."""
    import shutil

    import torch
    data, out, init = class_folder_data(base), tmp_path / "run", tmp_path / "init"
    shutil.copytree(model8, init)
    then = json.loads((init / "manifest.json").read_text())["files"]["state_dict"]["sha256"]
    cv = ("--folds", "2", "--epochs", "1", "--geo-epochs", "0", "--class-set", "ckplus8", "--init", str(init))
    assert _train(base, data, out, *cv, "--only-fold", "0") == 0
    assert torch.load(out / "fold00" / "checkpoint.pt", weights_only=True)["init_sha256"] == then
    assert _train(base, data, tmp_path / "other", "--folds", "0", "--epochs", "1", "--geo-epochs", "0",
                  "--class-set", "ckplus8", "--seed", "1", "--int8-samples", "0", "--export", str(init),
                  "--overwrite") == 0
    now = json.loads((init / "manifest.json").read_text())["files"]["state_dict"]["sha256"]
    assert now != then
    capsys.readouterr()
    assert _train(base, data, out, *cv, "--only-fold", "1", "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-train: --resume: {out / 'fold00' / 'checkpoint.pt'} started from an --init "
                          f"model.pt of sha256 {then}, and --init {init} holds one of sha256 {now}") \
        and err.count("\n") == 1
    assert not (out / "fold01").exists()
    # a checkpoint that does not record the weights it started from cannot be checked: refused too
    ck = torch.load(out / "fold00" / "checkpoint.pt", weights_only=True)
    del ck["init_sha256"]
    torch.save(ck, out / "fold00" / "checkpoint.pt")
    assert _train(base, data, out, *cv, "--only-fold", "0", "--resume") == 2
    assert "does not record the sha256 of the --init model it started from" in capsys.readouterr().err


def test_a_fresh_run_leaves_no_checkpoint_of_the_last_one_to_resume(base, tmp_path, monkeypatch):
    """A fresh run into a folder that holds a finished run (--overwrite) removes that run's checkpoint and logs
    before it trains: stopped before its first checkpoint, it leaves nothing for --resume to take for its own, and
    --resume then starts it from its first epoch."""
    import torch
    data, out = class_folder_data(base), tmp_path / "run"
    args = ("--folds", "0", "--final", "--geo-epochs", "0", "--class-set", "ckplus7")
    assert _train(base, data, out, *args, "--epochs", "1") == 0
    real_save = torch.save

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", stopped)
    with pytest.raises(KeyboardInterrupt):
        _train(base, data, out, *args, "--epochs", "2", "--no-augment", "--overwrite")
    monkeypatch.setattr(torch, "save", real_save)
    assert not [name for name in ("checkpoint.pt", "log.csv", "curves.png") if (out / "final" / name).exists()]
    assert _train(base, data, out, *args, "--epochs", "2", "--no-augment", "--resume") == 0
    assert [r["epoch"] for r in _log(out / "final" / "log.csv")] == [0, 1]
    assert "resumed" not in json.loads((out / "report.json").read_text())


def test_a_fit_started_again_keeps_one_set_of_logs(base, tmp_path, monkeypatch):
    """A fit stopped before its first checkpoint (here after the geometric epochs) starts again from its first
    epoch on --resume, without the logs and TensorBoard events of the stopped start beside its own."""
    import torch
    data, out = class_folder_data(base), tmp_path / "run"
    args = ("--folds", "0", "--final", "--epochs", "1", "--geo-epochs", "1", "--class-set", "ckplus7")
    real_save = torch.save

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", stopped)
    with pytest.raises(KeyboardInterrupt):
        _train(base, data, out, *args)
    monkeypatch.setattr(torch, "save", real_save)
    assert (out / "final" / "geo_log.csv").is_file() and not (out / "final" / "checkpoint.pt").exists()
    assert _train(base, data, out, *args, "--resume") == 0
    tb = out / "final" / "tb"
    if tb.is_dir():  # TensorBoard is optional
        assert len(list(tb.iterdir())) == 1


def test_an_out_that_holds_a_run_is_refused_unless_resumed_or_overwritten(base, tmp_path, capsys):
    """A second run into the same --out would mix its outputs with the first's (an earlier cross-validation's plots,
    predictions and folds beside a report without it, a second TensorBoard event file): refused without --resume or
    --overwrite, the folder left as it was; --overwrite removes what the earlier run wrote, and only that."""
    data, out = class_folder_data(base), tmp_path / "run"
    common = ("--epochs", "1", "--geo-epochs", "0", "--class-set", "ckplus7")
    assert _train(base, data, out, "--folds", "2", "--final", *common) == 0
    capsys.readouterr()
    report = (out / "report.json").read_bytes()
    assert _train(base, data, out, "--folds", "0", "--final", *common) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-train: {out} already holds a run (report.json, predictions.csv, confusion_")
    assert err.endswith("; continue it, or add folds to it with --only-fold, with --resume; choose another --out; or "
                        "pass --overwrite to replace it\n")
    assert err.count("\n") == 1 and (out / "report.json").read_bytes() == report
    (out / "notes.txt").write_text("mine")
    assert _train(base, data, out, "--folds", "0", "--final", *common, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["final", "notes.txt", "report.json"]
    assert "cross_validation" not in json.loads((out / "report.json").read_text())
    tb = out / "final" / "tb"
    if tb.is_dir():  # TensorBoard is optional
        assert len(list(tb.iterdir())) == 1


def test_folds_run_one_at_a_time_into_one_out_with_resume(base, tmp_path):
    """The way the published folds are run: one --only-fold per command, each after the first with --resume; every
    fold run so far is kept, none trained again."""
    data, out = class_folder_data(base), tmp_path / "run"
    common = ("--folds", "2", "--epochs", "1", "--geo-epochs", "0", "--class-set", "ckplus7")
    assert _train(base, data, out, *common, "--only-fold", "0") == 0
    first = (out / "fold00" / "checkpoint.pt").read_bytes()
    assert _train(base, data, out, *common, "--only-fold", "1", "--resume") == 0
    assert (out / "fold00" / "checkpoint.pt").read_bytes() == first
    assert (out / "fold01" / "checkpoint.pt").is_file()


def test_the_report_of_folds_run_one_at_a_time_covers_every_finished_fit(base, tmp_path, capsys):
    """Folds run one per command, each after the first with --resume: the report, the predictions and the
    manifest's cross-validation cover every fit of the run finished in --out (those of earlier commands evaluated
    from their checkpoints, as they scored when they were trained, the final fit too) and say which folds were
    scored of how many; a finished fold whose checkpoint records other samples than this run's is refused."""
    import torch

    from fer_ros.manifest import load_manifest
    data, out = class_folder_data(base), tmp_path / "run"
    common = ("--folds", "3", "--epochs", "1", "--geo-epochs", "0", "--class-set", "ckplus7")
    assert _train(base, data, out, *common, "--only-fold", "0", "--final") == 0
    first = json.loads((out / "report.json").read_text())
    assert _train(base, data, out, *common, "--only-fold", "1", "--resume") == 0
    report = json.loads((out / "report.json").read_text())
    cv = report["cross_validation"]
    per_fold = cv["datasets"]["synth_folders"]["per_fold"]
    assert [f["fold"] for f in per_fold] == [0, 1]
    assert (cv["folds"], cv["run_folds"], cv["scored_folds"]) == (3, [1], [0, 1])
    assert per_fold[0] == first["cross_validation"]["datasets"]["synth_folders"]["per_fold"][0]
    assert report["final"]["train_acc_last_epoch"] == first["final"]["train_acc_last_epoch"]
    assert report["evaluated_from_checkpoints"] == ["final", "fold00"]
    with open(out / "predictions.csv") as f:
        assert sorted({int(p["fold"]) for p in csv.DictReader(f)}) == [0, 1]
    assert "2 of 3 folds scored (0, 1)" in capsys.readouterr().out
    assert _train(base, data, out, *common, "--only-fold", "2", "--resume", "--int8-samples", "0", "--export",
                  str(tmp_path / "model")) == 0
    training = load_manifest(tmp_path / "model").training
    assert training["cross_validation"]["folds"] == 3 and training["cross_validation"]["scored_folds"] == [0, 1, 2]
    assert set(training["cross_validation"]["summary"]) == {"synth_folders"}
    with open(out / "predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == json.loads((out / "report.json").read_text())["data"]["samples"]
    ckpt = out / "fold00" / "checkpoint.pt"
    ck = torch.load(ckpt, weights_only=True)
    ck["split"] = json.dumps({**json.loads(ck["split"]), "test_sha256": "0" * 64})
    torch.save(ck, ckpt)
    capsys.readouterr()
    assert _train(base, data, out, *common, "--only-fold", "1", "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-train: --resume: {ckpt} was made for other samples than this run's") \
        and err.count("\n") == 1


def test_a_loss_that_becomes_nan_stops_the_run_before_a_checkpoint_or_an_export(base, tmp_path, capsys):
    """A learning rate far too high makes the loss nan: the run stops there with one line that names the fit, the
    epoch and the step and says to lower --lr (exit 1), no checkpoint takes the weights and nothing is exported;
    in a cross-validation no fold's table, predictions or report is written, in the geometric pre-training as in
    the joint epochs."""
    data = class_folder_data(base)
    out, model = tmp_path / "run", tmp_path / "model"
    assert _train(base, data, out, "--folds", "0", "--epochs", "3", "--geo-epochs", "0", "--lr", "1e12",
                  "--int8-samples", "0", "--export", str(model)) == 1
    err = capsys.readouterr().err
    assert re.match(r"fer-train: the (loss|weights) became (nan|-?inf|nan or inf) in final, epoch [1-3] of 3, step "
                    r"\d+ of \d+ \(learning rate [^)]+\): ", err) and err.count("\n") == 1
    assert err.endswith("train afresh with a lower --lr (this run: 1e+12), with --overwrite or another --out\n")
    assert not (out / "final" / "checkpoint.pt").exists() and not model.exists()
    assert not (out / "report.json").exists()
    cv = tmp_path / "cv"
    assert _train(base, data, cv, "--folds", "2", "--epochs", "1", "--geo-epochs", "2", "--lr", "1e12") == 1
    err = capsys.readouterr().err
    assert re.match(r"fer-train: the loss became (nan|-?inf) in fold00's geometric pre-training, epoch [12] of 2, "
                    r"step \d+ of \d+ \(learning rate [^)]+\): the fit stops there", err) and err.count("\n") == 1
    assert not [p.name for p in cv.rglob("*") if p.name in ("checkpoint.pt", "report.json", "predictions.csv")]


def test_the_log_gives_the_learning_rate_of_each_epochs_first_and_last_step(base, tmp_path):
    """log.csv's lr is the rate of the epoch's first step and lr_end that of its last, as the one-cycle schedule
    gives them step by step: the warm-up shows in the first epoch, and the last epoch's rates are ones its steps
    used; curves.png still plots lr."""
    import math

    import torch
    out = tmp_path / "run"
    epochs, lr, warmup = 3, 1e-2, 0.5
    assert _train(base, class_folder_data(base), out, "--folds", "0", "--final", "--epochs", str(epochs),
                  "--geo-epochs", "0", "--lr", str(lr), "--warmup", str(warmup), "--class-set", "ckplus7") == 0
    per_epoch = math.ceil(json.loads((out / "report.json").read_text())["data"]["samples"] / 8)  # --batch-size 8
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * per_epoch,
                                                   pct_start=warmup)
    rates = []
    for _ in range(epochs * per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    rows = _log(out / "final" / "log.csv")
    assert [r["lr"] for r in rows] == pytest.approx(rates[::per_epoch], rel=1e-9)
    assert [r["lr_end"] for r in rows] == pytest.approx(rates[per_epoch - 1::per_epoch], rel=1e-9)
    assert rows[0]["lr"] == pytest.approx(lr / 25) and rows[0]["lr"] < rows[0]["lr_end"]
    assert (out / "final" / "curves.png").stat().st_size > 1000


def test_data_weights_that_draw_no_sample_per_epoch_are_refused_or_named(base, tmp_path, capsys):
    """A --data weight that rounds a dataset's training samples to none per epoch: alone, the epochs would train on
    nothing, refused before any fit with a line naming the weight; in a mix, a warning names it."""
    data, other = class_folder_data(base), official_data(base)
    out = tmp_path / "run"
    assert _train(base, f"{data}:0.01", out, "--folds", "0", "--final", "--epochs", "1", "--geo-epochs", "0") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-train: --data {data}:0.01 draws no sample per epoch in final (0.01 x ")
    assert err.endswith("draws one): final would train on nothing\n") and err.count("\n") == 1
    assert not out.exists()
    assert _train(base, [str(data), f"{other}:0.01"], out, "--folds", "0", "--final", "--epochs", "1",
                  "--geo-epochs", "0") == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fer-train: warning:")]
    assert len(warned) == 1 and warned[0].startswith(f"fer-train: warning: --data {other}:0.01 draws no sample per "
                                                     f"epoch in final (0.01 x ")


def test_a_dataset_given_twice_is_refused(tmp_path, capsys):
    """The same dataset twice, by whatever spelling of its path, would be drawn twice as often: refused before any
    data is read, saying how to weigh a dataset more."""
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "link").symlink_to(data)
    for again in (f"{data}/", str(data / ".." / "data"), f"{tmp_path / 'link'}:2"):
        assert train.main(["--data", str(data), "--data", again, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fer-train: --data ") and f"the same dataset ({data}) given twice" in err
        assert err.rstrip("\n").endswith("to weigh a dataset more, give it once with :WEIGHT") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, says", [
    (("--folds", "0"), "nothing to train: give --folds 2 or more, --final or --export"),
    (("--folds", "1"), "nothing to train: give --folds 2 or more, --final or --export"),
    (("--folds", "0", "--final", "--torchscript"),
     "--torchscript only says how to export: give --export MODEL_DIR with it, or leave it out"),
    (("--folds", "3", "--torchscript", "--name", "x"),
     "--torchscript and --name only say how to export: give --export MODEL_DIR with them, or leave them out"),
])
def test_a_command_that_trains_or_exports_nothing_is_refused(base, tmp_path, capsys, extra, says):
    out = tmp_path / "run"
    assert _train(base, class_folder_data(base), out, "--epochs", "1", *extra) == 2
    assert capsys.readouterr().err == f"fer-train: {says}\n"
    assert not out.exists()


def test_init_from_a_model_trained_on_the_cross_validated_data_is_named(base, tmp_path, capsys):
    """--init from a model whose manifest says it was trained on a dataset this run cross-validates: its folds score
    subjects the starting weights saw; a warning and report.json say so (the run goes on: the folder may be another
    copy). A model trained on other folders gets no warning."""
    data, model = class_folder_data(base), tmp_path / "ma"
    assert _train(base, data, tmp_path / "a", "--folds", "0", "--epochs", "1", "--geo-epochs", "0", "--int8-samples",
                  "0", "--export", str(model)) == 0
    capsys.readouterr()
    cv = ("--folds", "2", "--only-fold", "0", "--epochs", "1", "--geo-epochs", "0", "--init", str(model))
    assert _train(base, data, tmp_path / "cv", *cv) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fer-train: warning:")]
    assert warned == [f"fer-train: warning: --init {model} was trained on synth_folders (its manifest's data), which "
                      f"this run cross-validates: the folds score subjects its starting weights saw; start from a "
                      f"model trained without them for a subject-independent score"]
    report = json.loads((tmp_path / "cv" / "report.json").read_text())
    assert report["init"]["trained_on_cross_validated_data"] == ["synth_folders"]
    assert _train(base, official_data(base), tmp_path / "other", *cv) == 0
    assert "warning: --init" not in capsys.readouterr().err
    assert "trained_on_cross_validated_data" not in json.loads((tmp_path / "other" / "report.json").read_text())["init"]


def test_a_fold_named_twice_runs_once(base, tmp_path):
    out = tmp_path / "run"
    assert _train(base, class_folder_data(base), out, "--folds", "3", "--only-fold", "1", "--only-fold", "1",
                  "--epochs", "1", "--geo-epochs", "0", "--class-set", "ckplus7") == 0
    cv = json.loads((out / "report.json").read_text())["cross_validation"]
    assert cv["run_folds"] == [1] and [f["fold"] for f in cv["datasets"]["synth_folders"]["per_fold"]] == [1]


@pytest.mark.parametrize("device, gpus, says", [
    ("gpu", 1, "--device must be cpu, cuda or cuda:N, got 'gpu'"),
    ("cuda:5", 1, "--device cuda:5 asked for, but torch sees 1 CUDA GPU (cuda:0); give one of those or --device cuda"),
    ("cuda:2", 2, "--device cuda:2 asked for, but torch sees 2 CUDA GPUs (cuda:0 to cuda:1); give one of those or "
                  "--device cuda"),
])
def test_a_device_torch_cannot_train_on_is_refused_before_the_data_is_read(tmp_path, capsys, monkeypatch, device,
                                                                           gpus, says):
    """Refused before any data is read: --data names nothing here, so going further fails on the data instead."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert train.main(["--data", str(tmp_path / "no_data"), "--out", str(tmp_path / "run"), "--device", device,
                       "--no-progress"]) == 2
    assert capsys.readouterr().err == f"fer-train: {says}\n"


@pytest.mark.parametrize("extra, says", [
    (("--seed", "-1"), "--seed must be a whole number from 0 to 2147483647, got -1"),
    (("--seed", "4294967295"), "--seed must be a whole number from 0 to 2147483647, got 4294967295"),
    (("--model", "agn3d_c3d", "--app-widths", "4,8,8"),
     "--model agn3d_c3d with --app-widths 4,8,8, --size 32 and --frames 3 makes no network that reads its clips "
     "(not enough values to unpack (expected 4, got 3)): give a larger --size, or as many --app-widths as the model "
     "takes (agn3d_c3d: 4; agn3d_res: 2 or more)"),
    (("--app-widths", "8"), "--model agn3d_res with --app-widths 8, --size 32 and --frames 3 makes no network that "
                            "reads its clips (list index out of range): give a larger --size, or as many"),
    (("--size", "9", "--app-widths", "4,8,8,8,8"), "--model agn3d_res with --app-widths 4,8,8,8,8, --size 9 and "
                                                   "--frames 3 makes no network that reads its clips (Given input "),
    (("--size", "4"), "--size 4: crop size must be >= 8 px, got 4"),
    (("--size", "1"), "--size 1: crop size must be >= 8 px, got 1"),
    (("--model", "agn3d_ir", "--app-widths", "4,8"), "--app-widths sizes the appearance network of agn3d_res and "
                                                     "agn3d_c3d, and agn3d_ir has widths of its own: leave "
                                                     "--app-widths out with --model agn3d_ir"),
], ids=["seed-1", "seed2**32-1", "c3d-3-widths", "res-1-width", "res-too-small", "size4", "size1", "ir-widths"])
def test_options_that_make_no_model_are_refused_before_the_data_is_read(tmp_path, capsys, extra, says):
    """A seed numpy cannot take (with the fold offsets), widths in a number the network does not take, a --size its
    crop or pooling cannot make, --app-widths with agn3d_ir: one line, exit 2, before any data is read (--data
    names nothing here, so going further fails on the data instead)."""
    assert train.main(["--data", str(tmp_path / "no_data"), "--out", str(tmp_path / "run"), *TINY, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-train: {says}") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_the_seed_range_leaves_room_for_the_fold_offsets(base, tmp_path, capsys):
    """Fold k's fit is seeded with --seed + k, which numpy takes below 2**32: --seed stops at 2**31 - 1, and a run
    with it trains its later folds."""
    assert train.main(["--data", str(tmp_path / "no_data"), *TINY, "--seed", "2147483648"]) == 2
    assert capsys.readouterr().err == "fer-train: --seed must be a whole number from 0 to 2147483647, got 2147483648\n"
    assert _train(base, class_folder_data(base), tmp_path / "run", "--folds", "2", "--only-fold", "1", "--epochs",
                  "1", "--geo-epochs", "0", "--class-set", "ckplus7", "--seed", "2147483647") == 0


def test_an_export_folder_that_is_a_file_is_refused_before_the_data_is_read(tmp_path, capsys):
    (tmp_path / "file").write_text("not a model folder")
    for export, says in [(tmp_path / "file", f"--export {tmp_path / 'file'} is a file, not a folder"),
                         (tmp_path / "file" / "model", f"--export {tmp_path / 'file' / 'model'} lies under "
                                                       f"{tmp_path / 'file'}, a file, not a folder")]:
        assert train.main(["--data", str(tmp_path / "no_data"), "--out", str(tmp_path / "run"), *TINY, "--export",
                           str(export)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fer-train: {says}") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_cache_dir_that_is_a_file_is_refused_before_the_data_is_read(tmp_path, capsys):
    """Faces are found for every image before the cache is saved: a --cache-dir that cannot be a folder is refused
    first, not after that work."""
    (tmp_path / "file").write_text("not a cache folder")
    for cache, says in [(tmp_path / "file", f"--cache-dir {tmp_path / 'file'} exists and is not a folder"),
                        (tmp_path / "file" / "c", f"--cache-dir {tmp_path / 'file' / 'c'}: {tmp_path / 'file'} "
                                                  "exists and is not a folder")]:
        assert train.main(["--data", str(tmp_path / "no_data"), "--out", str(tmp_path / "run"), *TINY, "--folds", "2",
                           "--cache-dir", str(cache)]) == 2
        err = capsys.readouterr().err
        assert err == f"fer-train: {says}: delete it or choose another --cache-dir\n", err
    assert not (tmp_path / "run").exists()


def test_an_export_that_fails_is_one_line_and_the_report_is_written(base, tmp_path, capsys, monkeypatch):
    """The export step refusing the model (ModelError) ends the run with one line (exit 1) after the fits, whose
    report.json says why; --resume then exports the finished final fit from its checkpoint."""
    from fer_ros.manifest import ModelError

    def refuse(args, *a, **k):
        raise ModelError(f"{args.export}: the export refused")

    data, out, model = class_folder_data(base), tmp_path / "run", tmp_path / "model"
    args = ("--folds", "0", "--epochs", "1", "--geo-epochs", "0", "--class-set", "ckplus7", "--int8-samples", "0",
            "--export", str(model))
    real_export = train.export_final
    monkeypatch.setattr(train, "export_final", refuse)
    assert _train(base, data, out, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"fer-train: the export to {model} failed: {model}: the export refused; the fits are "
                          f"trained") and err.count("\n") == 1 and "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["export_failed"] == f"{model}: the export refused" and report["final"]["epochs"] == 1
    monkeypatch.setattr(train, "export_final", real_export)
    assert _train(base, data, out, *args, "--resume") == 0
    assert (model / "manifest.json").is_file()


def test_the_readme_recipe_runs_as_written():
    """The README's fer-train commands parse, make a run under the rules the command checks before reading data,
    and write into folders of their own (no command's --out holds another's run)."""
    import shlex
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("### Training", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [shlex.split(c) for c in block.replace("\\\n", " ").splitlines() if c.startswith("fer-train ")]
    assert len(commands) >= 2
    outs = []
    for words in commands:
        args = get_args_parser().parse_args(words[1:])
        train.complete_args(args)
        assert train.usage_problem(args) is None, words
        outs.append(args.out)
    assert len(set(outs)) == len(outs)


def test_cross_validation_report_and_plots_per_dataset(base, tmp_path):
    """Two datasets: each gets its folds by subject, its table, its confusion matrices and its lines in the
    predictions; a dataset with its own split (FER+) is tested on its held-out split in every fold."""
    from synth_data import write_ferplus_dataset
    fer = tmp_path / "fer"
    write_ferplus_dataset(fer)
    out = tmp_path / "cv"
    assert _train(base, [str(official_data(base)), f"{fer}:0.5"], out, "--folds", "3", "--epochs", "1",
                  "--class-set", "ckplus8") == 0
    report = json.loads((out / "report.json").read_text())
    cv = report["cross_validation"]
    assert cv["folds"] == 3 and set(cv["datasets"]) == {"synth_official", "fer"}
    ck = cv["datasets"]["synth_official"]["per_fold"]
    assert [f["fold"] for f in ck] == [0, 1, 2]
    labelled = len(CLASSES) * len(SUBJECTS)
    neutral = report["data"]["datasets"]["synth_official"]["per_class"]["neutral"]
    assert sum(f["n"] for f in ck) == labelled + neutral  # every CK+ sample tested once
    assert [f["n"] for f in cv["datasets"]["fer"]["per_fold"]] == [4, 4, 4]  # FER2013Valid, every fold
    for key in ("fused", "appearance", "geometric"):
        accs = [f[key] for f in ck]
        assert cv["datasets"]["synth_official"]["summary"][key]["mean"] == pytest.approx(np.mean(accs))
        assert (out / f"confusion_synth_official_{key}.png").is_file()
        assert (out / f"confusion_fer_{key}.png").is_file()
    for f in ck:  # the top-2 holds the top-1
        assert f["appearance"] <= f["appearance_top2"] <= 1.0
    with open(out / "predictions.csv") as f:
        preds = list(csv.DictReader(f))
    assert len([p for p in preds if p["dataset"] == "synth_official"]) == labelled + neutral
    assert len([p for p in preds if p["dataset"] == "fer"]) == 3 * 4
    assert report["data"]["datasets"]["fer"]["weight"] == 0.5


def test_final_fit_leaves_held_out_splits_out_and_scores_them(base, tmp_path):
    from synth_data import write_ferplus_dataset
    fer = tmp_path / "fer"
    write_ferplus_dataset(fer)
    out = tmp_path / "run"
    assert _train(base, fer, out, "--folds", "0", "--epochs", "1", "--export", str(tmp_path / "model")) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["final"]["held_out"]["fer"]["n"] == 4  # FER2013Valid is not trained on
    from fer_ros.manifest import load_manifest
    assert load_manifest(tmp_path / "model").training["held_out"]["fer"]["n"] == 4


@pytest.mark.parametrize("folder, split, given, extra", [
    ("myfer", "test", "myfer", ("--folds", "0", "--int8-samples", "0")),  # a split folder itself: a copy of one
    ("myfer", "test", "myfer", ("--folds", "0")),
    ("FER2013Valid", "valid", ".", ("--folds", "3")),                       # a FER+ root without FER2013Train
])
def test_ferplus_data_without_its_training_split_is_refused_not_trained_on_nothing(base, tmp_path, capsys, folder,
                                                                                  split, given, extra):
    """A FER+ split folder named other than FER2013Train is held-out data: alone, it leaves nothing to train on;
    fer-train says so, and how to name the folder, and exports nothing."""
    from synth_data import write_ferplus_dataset
    write_ferplus_dataset(tmp_path, {folder: [(c, "clear") for c in ("anger", "happy", "surprise", "neutral")]})
    data = tmp_path / given
    assert _train(base, data, tmp_path / "run", "--epochs", "1", "--export", str(tmp_path / "model"), *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-train: no training samples, nothing would be trained on: {data} holds only held-out "
                          f"FER+ data (split folders {folder}: {split}): FER+ data trains on the folder named "
                          f"FER2013Train") and err.count("\n") == 1
    assert not (tmp_path / "model").exists()


def test_data_without_a_face_is_one_line(base, tmp_path, capsys):
    import cv2
    noise = tmp_path / "noface"
    for i, name in enumerate(["happy/S001_001_00000005.png", "neutral/S001_001_00000001.png"]):
        (noise / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(noise / name), np.random.default_rng(i).integers(0, 256, (96, 96), dtype=np.uint8))
    assert _train(base, noise, tmp_path / "run", "--folds", "0", "--final", "--epochs", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-train: no image with a face in {noise}") and err.count("\n") == 1


def test_only_fold_must_name_a_fold_of_the_cross_validation(base, tmp_path, capsys):
    data = class_folder_data(base)
    assert _train(base, data, tmp_path / "run", "--folds", "3", "--only-fold", "1", "--only-fold", "3") == 2
    assert capsys.readouterr().err == ("fer-train: --only-fold must be below --folds 3 (folds are numbered 0 to 2), "
                                       "got 3\n")
    assert _train(base, data, tmp_path / "run", "--folds", "0", "--only-fold", "0") == 2
    assert capsys.readouterr().err.startswith("fer-train: --only-fold picks folds of a cross-validation, and --folds "
                                              "0 runs none")
    assert not (tmp_path / "run").exists()


def test_export_parity_onnx_and_torchscript(base, tmp_path):
    import torch

    from fer_ros.difference_image import SIZE
    from fer_ros.engine import load_engine
    from fer_ros.manifest import load_manifest
    out = tmp_path / "model"
    assert _train(base, class_folder_data(base), tmp_path / "run", "--folds", "0", "--epochs", "1",
                  "--export", str(out), "--torchscript", "--name", "parity") == 0
    m = load_manifest(out)
    assert set(m.files) == {"onnx", "state_dict", "torchscript", "onnx_int8"}
    assert m.training["export_onnx_max_abs_diff"] < 1e-4
    assert m.preprocess["crop"]["size"] == 32 and m.class_set == "ckplus8" and m.arch == "agn3d_res"
    engine = load_engine(out, backend="onnxruntime", cache_dir=tmp_path / "cache", int8=False)  # the fp32 graph
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13, still asked for
        ts = torch.jit.load(str(out / "model.ts"))
    rng = np.random.default_rng(0)
    assert m.clip_input == "lbp+gray_norm+delta_norm" and engine.input_shapes()["clip"] == (3, 3, 32, 32)
    clip = rng.random((4, 3, 3, 32, 32), np.float32)
    geo = rng.uniform(-1, 1, (4, 2, SIZE, SIZE)).astype(np.float32)
    valid = np.array([1, 0, 1, 1], np.float32)
    with torch.no_grad():
        ref = ts(torch.from_numpy(clip), torch.from_numpy(geo), torch.from_numpy(valid)).numpy()
    assert np.abs(engine.predict(clip, geo, valid) - ref).max() < 1e-4


def test_the_papers_lbp_only_clip_input_and_network_train_and_export(base, tmp_path):
    from fer_ros.engine import load_engine
    from fer_ros.manifest import load_manifest
    assert _train(base, class_folder_data(base), tmp_path / "run", "--folds", "0", "--epochs", "1",
                  "--clip-input", "lbp", "--model", "agn3d_c3d", "--export", str(tmp_path / "model")) == 0
    m = load_manifest(tmp_path / "model")
    assert m.clip_input == "lbp" and m.preprocess["clip"]["channels"] == 1 and m.arch == "agn3d_c3d"
    engine = load_engine(tmp_path / "model", backend="onnxruntime", cache_dir=tmp_path / "cache")
    assert engine.input_shapes()["clip"] == (1, 3, 32, 32)
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--data", "d", "--clip-input", "rgb"])


def test_init_starts_from_a_trained_model_with_the_same_architecture(base, tmp_path, capsys):
    import torch
    data = class_folder_data(base)
    assert _train(base, data, tmp_path / "a", "--folds", "0", "--epochs", "1", "--export", str(tmp_path / "ma")) == 0
    start = torch.load(tmp_path / "ma" / "model.pt", weights_only=True)
    # one step at an imperceptible learning rate: the convolutions are the initial model's
    assert _train(base, data, tmp_path / "b", "--folds", "0", "--epochs", "1", "--lr", "1e-12", "--init",
                  str(tmp_path / "ma"), "--export", str(tmp_path / "mb")) == 0
    after = torch.load(tmp_path / "mb" / "model.pt", weights_only=True)
    convs = [k for k, v in start.items() if k.endswith("weight") and v.dim() >= 4]
    assert convs and all(torch.allclose(start[k], after[k], atol=1e-6) for k in convs)
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["init"]["model"] == "ma" and report["init"]["command"].startswith("fer-train")
    # the dropout has no weights: a run may fine-tune with another
    assert _train(base, data, tmp_path / "e", "--folds", "0", "--final", "--epochs", "1", "--dropout", "0.5",
                  "--init", str(tmp_path / "ma")) == 0
    # another architecture, or a damaged model: one line, exit 2
    assert _train(base, data, tmp_path / "c", "--folds", "0", "--final", "--epochs", "1", "--geo-width", "8",
                  "--init", str(tmp_path / "ma")) == 2
    err = capsys.readouterr().err
    assert "differs from this run in architecture" in err and "Traceback" not in err
    (tmp_path / "ma" / "model.pt").write_bytes(b"not a state dict")
    assert _train(base, data, tmp_path / "d", "--folds", "0", "--final", "--epochs", "1", "--init",
                  str(tmp_path / "ma")) == 2
    assert "sha256" in capsys.readouterr().err


def test_init_weights_are_the_bytes_whose_sha256_was_checked(tmp_path, monkeypatch):
    """A model.pt changed after the manifest's check is refused, not loaded under the checked digest (which the
    --resume check of the run trusts)."""
    import shutil

    import torch

    from fer_ros import manifest as manifest_module
    from fer_ros.training import fit
    from node_model import SHIPPED_MODEL
    model = tmp_path / "m"
    shutil.copytree(SHIPPED_MODEL, model)
    checked = manifest_module.load_manifest(model)
    state, record = fit.load_init(model, checked.arch, checked.arch_cfg, checked.preprocess, checked.class_names)
    assert record["state_dict_sha256"] == checked.files["state_dict"]["sha256"]
    load = manifest_module.load_manifest

    def load_then_change(path, *args, **kwargs):
        m = load(path, *args, **kwargs)
        torch.save({k: torch.zeros_like(v) for k, v in state.items()}, model / "model.pt")
        return m
    monkeypatch.setattr(manifest_module, "load_manifest", load_then_change)
    with pytest.raises(fit.InitError, match="model.pt: sha256 .* does not match the manifest"):
        fit.load_init(model, checked.arch, checked.arch_cfg, checked.preprocess, checked.class_names)


def test_cli_errors(tmp_path, capsys):
    assert train.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert train.main(["--data", f"{tmp_path}:0", "--no-progress"]) == 2
    assert "sampling weight" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--still-prob", "1.5", "--no-progress"]) == 2
    assert "--still-prob must be between 0 and 1, got 1.5" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--still-prob", "0.6", "--other-reference-prob", "0.6",
                       "--no-progress"]) == 2
    assert "must add up to 1 at most" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--app-widths", "8,x", "--no-progress"]) == 2
    assert "--app-widths must be comma-separated channel counts" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--lr", "0", "--no-progress"]) == 2
    assert "--lr must be above 0, got 0.0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        train.main(["--help"])
    assert exc.value.code == 0
    assert "--folds" in capsys.readouterr().out


@pytest.mark.parametrize("option", ["--moment-strength", "--weight-decay", "--lr", "--warmup", "--dropout",
                                    "--small-face-prob"])
def test_an_infinite_value_is_refused(tmp_path, capsys, option):
    """One AdamW step with an infinite weight decay makes every weight -inf: no number option takes infinity."""
    assert train.main(["--data", str(tmp_path), option, "inf", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"fer-train: {option} must be " in err and "got inf" in err


def test_help_gives_every_option_a_meaning_and_its_default(capsys):
    parser = get_args_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{'/'.join(action.option_strings)} has no help"
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 12)", "(default: agn3d_res)", "(default: lbp+gray_norm+delta_norm)",
                    "(default: 0.2)", "(default: 24,48,96,192)", "(default: ckplus8)"):
        assert default in text
    assert "channel widths of the appearance network's stages, for agn3d_res and agn3d_c3d only" in text
    assert "(default: None)" not in text and "cosine decay) (default: 0.002)" in text
    assert "0 for torch's own count (default: 0)" in text


def test_a_landmarker_that_cannot_load_is_one_line(base, tmp_path, capsys, break_mediapipe):
    """mediapipe installed but a system library it loads missing, while the image cache is built: exit 2 and one
    line that names the library and what to run."""
    break_mediapipe(NO_LIBEGL)
    assert train.main(["--data", str(class_folder_data(base)), "--cache-dir", str(tmp_path / "fresh_cache"),
                       "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fer-train: mediapipe could not load a system library it needs (libEGL.so.1")
    assert "make setup" in err and "Traceback" not in err


def test_the_shipped_model_is_the_default_architecture_and_its_commands_parse():
    """The default model options build the shipped architecture and preprocessing, and the commands recorded in
    its manifest (the final fit's, and the --init model's before it) are fer-train commands of this parser that
    build the same architecture again."""
    import shlex

    from fer_ros.crop import CropConfig
    from fer_ros.manifest import load_manifest
    from fer_ros.preprocess import PREPROCESS_SPEC
    from fer_ros.resources import default_model_dir
    manifest = load_manifest(default_model_dir())
    parser = get_args_parser()
    default_args = parser.parse_args(["--data", "d"])
    _, cfg = build_model(default_args, len(manifest.class_names))
    assert (default_args.model, cfg) == (manifest.arch, manifest.arch_cfg)
    assert PREPROCESS_SPEC(CropConfig(size=default_args.size, margin=0.0), default_args.frames,
                           default_args.clip_input) == manifest.preprocess
    commands = [manifest.training["command"]] + ([manifest.training["init"]["command"]]
                                                 if manifest.training.get("init") else [])
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "fer-train"
        args = parser.parse_args(words[1:])
        assert (args.model, build_model(args, len(manifest.class_names))[1]) == (manifest.arch, manifest.arch_cfg)


def test_data_parallel_training_with_torchrun(base, tmp_path):
    """Two CPU processes (gloo; --device cpu, also where a GPU is present) train one model, each on its share of
    the weighted draws; rank 0 writes the log and exports."""
    import os
    import subprocess
    import sys
    data = class_folder_data(base)
    _train(base, data, tmp_path / "warm", "--folds", "0", "--final", "--epochs", "1")  # cache made once
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "fer_ros.training.train", "--data", str(data), "--cache-dir", str(base / "train_cache"),
           "--out", str(tmp_path / "ddp"), *TINY, "--threads", "1", "--folds", "0", "--epochs", "2",
           "--export", str(tmp_path / "ddp_model")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _log(tmp_path / "ddp" / "final" / "log.csv")
    assert [r["epoch"] for r in rows] == [0, 1]
    assert (tmp_path / "ddp_model" / "manifest.json").is_file()


def test_training_on_a_cuda_gpu_exports_a_cpu_model(base, tmp_path, capsys):
    """--device cuda (runs where a CUDA GPU is present): cross-validation, resume and export all work with the
    model on the GPU, and what is exported loads and runs on the CPU alone."""
    import torch

    from fer_ros.engine import hardware, load_engine
    from fer_ros.manifest import load_manifest
    if hardware.torch_cuda_devices() == 0:
        # asked for a GPU that is not there: a clear refusal, no traceback
        assert _train(base, class_folder_data(base), tmp_path / "run", "--device", "cuda") == 2
        assert "torch sees no CUDA GPU; use --device cpu" in capsys.readouterr().err
        pytest.skip("no CUDA GPU on this machine: only the refusal is tested")
    data, out, model = class_folder_data(base), tmp_path / "run", tmp_path / "model"
    assert _train(base, data, out, "--device", "cuda", "--folds", "2", "--epochs", "2", "--no-augment",
                  "--lr", "3e-3", "--class-set", "ckplus7", "--export", str(model)) == 0
    report = json.loads((out / "report.json").read_text())
    assert [f["fold"] for f in report["cross_validation"]["datasets"]["synth_folders"]["per_fold"]] == [0, 1]
    assert _train(base, data, out, "--device", "cuda", "--folds", "2", "--epochs", "3", "--no-augment", "--lr", "3e-3",
                  "--class-set", "ckplus7", "--final", "--resume") == 0
    ck = torch.load(out / "final" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in ck["model"].values())
    assert load_manifest(model).training["export_onnx_max_abs_diff"] < 1e-4
    engine = load_engine(model, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "cache")
    clip = np.random.default_rng(0).random((2, *engine.input_shapes()["clip"]), np.float32)
    geo = np.zeros((2, *engine.input_shapes()["geo"]), np.float32)
    probs = engine.predict(clip, geo, np.ones(2, np.float32))
    assert probs.shape == (2, 7) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_torchrun_refuses_more_gpu_processes_than_gpus(monkeypatch):
    """Under torchrun with --device cuda, a process whose local rank has no GPU gets a one-line error that says
    what to change, before it joins the process group (--device cpu trains CPU processes on any machine)."""
    import argparse

    import torch
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    args = argparse.Namespace(device="cuda")
    with pytest.raises(train.TooFewGPUs, match=r"more processes on this machine than it has GPUs \(1\): "
                       r"use --nproc_per_node 1 or fewer, or --device cpu"):
        train._init_distributed(args)
    assert args.device == "cuda"  # nothing was set up
    monkeypatch.delenv("WORLD_SIZE")
    assert train._init_distributed(args) is None  # not under torchrun


def test_a_sequence_without_its_neutral_frame_trains_with_a_borrowed_one(tmp_path):
    """The data counts say how many references were borrowed from another sequence of the same subject."""
    from fer_ros.crop import CropConfig
    from fer_ros.training.data.samples import load_samples, parse_source
    from synth_data import write_class_folder_dataset
    data = tmp_path / "d"
    write_class_folder_dataset(data, ("anger", "happy"), (10, 11), missing_neutral=[(10, 2)], sequence_length=4)
    samples, info = load_samples([parse_source(str(data))], ("anger", "happy", "neutral"), 3, CropConfig(size=32),
                                 tmp_path / "cache", progress=False)
    d = info["datasets"]["d"]
    assert d["without_neutral"] == 0 and d["per_class"]["neutral"] == 3
    # the sequence without its first frame, and subject 11's two neutral frames (each compared with the other);
    # subject 10's one neutral frame has no other moment to be compared with: itself
    assert d["neutral_borrowed"] == 1 + 2 and d["self_reference"] == 1
    j = samples.keys.index("d/S010_002:happy")
    assert samples.neutral[j] == samples.neutral[samples.keys.index("d/S010_001:anger")]  # the nearest sequence's


def test_the_geometric_network_learns_alone_first_where_samples_have_a_reference(base, tmp_path):
    """--geo-epochs: a model started from another (--init) gets its pair decisions trained alone first, on the
    samples compared with another image; the appearance network comes out of those epochs as it went in; data
    with no such sample (FER+: every photo is its own reference) skips them."""
    import torch

    from fer_ros.crop import CropConfig
    from fer_ros.training.data.samples import load_samples, parse_source
    from fer_ros.training.fit import pretrain_geometric
    from synth_data import write_ferplus_dataset
    data = class_folder_data(base)
    args = get_args_parser().parse_args(["--data", str(data), *TINY, "--geo-epochs", "2", "--no-augment"])
    samples, _ = load_samples(args.data, ("anger", "happy", "surprise", "neutral"), 3, CropConfig(size=32),
                              base / "train_cache", progress=False)
    model, _ = build_model(args, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = pretrain_geometric(model, samples, np.arange(len(samples)), args, 0, torch.device("cpu"), log=print)
    assert [r["geo_epoch"] for r in rows] == [0, 1]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("appearance."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("geometric."))
    fer = tmp_path / "fer"
    write_ferplus_dataset(fer)
    stills, _ = load_samples([parse_source(str(fer))], ("anger", "happy", "surprise", "neutral"), 3,
                             CropConfig(size=32), tmp_path / "cache", progress=False)
    assert pretrain_geometric(model, stills, np.arange(len(stills)), args, 0, torch.device("cpu")) == []
    # in a run, the epochs are logged beside the joint ones
    assert _train(base, data, tmp_path / "run", "--folds", "0", "--final", "--epochs", "1", "--geo-epochs",
                  "2") == 0
    assert [r["geo_epoch"] for r in _log(tmp_path / "run" / "final" / "geo_log.csv")] == [0, 1]


def test_the_confusion_plot_of_data_with_its_own_split_is_titled_as_one_fold_s_model(tmp_path, monkeypatch):
    """Data with its own split (FER+) is tested by every fold's model and its plot holds the first fold's
    predictions: its title names that fold and the held-out split, not a cross-validation."""
    from types import SimpleNamespace

    from fer_ros import plots
    from fer_ros.training import report
    titles = {}
    monkeypatch.setattr(plots, "plot_confusion_matrix",
                        lambda cm, names, path, title="", **kw: titles.setdefault(Path(path).name, (title, cm.sum())))
    samples = SimpleNamespace(dataset=np.array([0, 0, 0, 0, 1, 1]), dataset_names=["ck", "fer"],
                              split=[None] * 4 + ["test", "test"])

    def ev(n, pred):
        return {"y": np.zeros(n, int), "fused": np.full(n, pred), "appearance": np.zeros(n, int),
                "geometric": np.zeros(n, int)}
    evals = [(0, np.array([0, 1, 4, 5]), ev(4, 0)), (1, np.array([2, 3, 4, 5]), ev(4, 1))]
    report.plot_confusions(tmp_path, samples, ("a", "b"), evals, folds=2)
    assert titles["confusion_ck_fused.png"] == ("ck, fused: cross-validated, 4 samples", 4)
    assert titles["confusion_fer_fused.png"] == ("fer, fused: fold 0's model on the held-out split (test), "
                                                 "2 samples", 2)
