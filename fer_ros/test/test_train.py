"""fer-train on data the tests generate: both dataset layouts, subject-independent folds, two epochs lower the
loss, resume from a checkpoint, the cross-validation report and plots, export parity (ONNX and TorchScript)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import NO_LIBEGL
from eval_helpers import CLASSES, SUBJECTS, class_folder_data, official_data
from fer_ros.training import train
from fer_ros.training.args import get_args_parser
from fer_ros.training.class_balance import class_weights, logit_offsets
from fer_ros.training.data.datasets import DatasetError, detect_layout, load_dataset
from fer_ros.training.data.folds import subject_folds
from fer_ros.training.data.samples import load_data
from fer_ros.training.fit import build_model

TINY = ["--size", "32", "--app-widths", "4,8,8,8", "--geo-width", "4", "--batch-size", "8", "--threads", "2",
        "--ensemble", "1", "--no-progress"]


def _train(base: Path, data: Path, out: Path, *extra: str) -> int:
    return train.main(["--data", str(data), "--cache-dir", str(base / "train_cache"), "--out", str(out), *TINY,
                       *extra])


def _log(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


@pytest.mark.parametrize("layout", ["class_folders", "ckplus_official"])
def test_both_layouts_give_the_same_sequences(base, layout):
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
    with pytest.raises(DatasetError, match="neither the CK\\+ release layout"):
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


def test_sharpness_aware_training_lowers_the_loss_and_keeps_the_model(base, tmp_path):
    """--sam-rho: the same networks (the export is unchanged in shape), trained with sharpness-aware steps."""
    import torch
    assert _train(base, class_folder_data(base), tmp_path / "run", "--folds", "0", "--epochs", "2",
                  "--no-augment", "--lr", "3e-3", "--class-set", "ckplus8", "--sam-rho", "0.05",
                  "--export", str(tmp_path / "model")) == 0
    rows = _log(tmp_path / "run" / "final" / "log.csv")
    assert rows[1]["loss"] < rows[0]["loss"]
    state = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    plain, _ = build_model(get_args_parser().parse_args(["--data", "d", *TINY]), 8)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in plain.state_dict().items()}


def test_mixup_lowers_the_loss_deterministically_and_changes_the_training(base, tmp_path):
    """--mixup: the loss falls over the epochs, two runs end with the same weights (the blends are drawn from the
    seed), and the blends change what is learnt: the same run without them ends elsewhere."""
    import torch
    data = class_folder_data(base)
    common = ("--folds", "0", "--final", "--no-augment", "--lr", "3e-3", "--class-set", "ckplus7", "--epochs", "3")

    def weights(name, *extra):
        assert _train(base, data, tmp_path / name, *common, *extra) == 0
        return torch.load(tmp_path / name / "final" / "checkpoint.pt", weights_only=True)["model"]

    mixed = weights("mixed", "--mixup", "0.4")
    rows = _log(tmp_path / "mixed" / "final" / "log.csv")
    assert rows[-1]["loss"] < rows[0]["loss"]
    again = weights("again", "--mixup", "0.4")
    assert all(torch.equal(mixed[k], again[k]) for k in mixed)
    plain = weights("plain")
    assert any(not torch.equal(mixed[k], plain[k]) for k in mixed if mixed[k].is_floating_point())


def test_weight_average_is_what_is_evaluated_and_exported(base, tmp_path):
    """--ema: the fold's score and the export are the moving average's; the last weights' score stays in the log,
    and the average is in the checkpoint for --resume."""
    import torch
    data, out = class_folder_data(base), tmp_path / "run"
    assert _train(base, data, out, "--folds", "3", "--only-fold", "0", "--epochs", "2", "--lr", "3e-3",
                  "--class-set", "ckplus8", "--ema", "0.9", "--export", str(tmp_path / "model")) == 0
    rows = _log(out / "fold00" / "log.csv")
    assert "test_acc_raw" in rows[-1] and "test_acc" in rows[-1]
    fold = json.loads((out / "report.json").read_text())["cross_validation"]["per_fold"][0]
    assert fold["fused"] == pytest.approx(rows[-1]["test_acc"])
    ck = torch.load(out / "final" / "checkpoint.pt", weights_only=True)
    assert ck["ema"]["updates"] > 0
    exported = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    assert all(torch.equal(exported[k], v) for k, v in ck["ema"]["module"].items())
    assert any(not torch.equal(exported[k], v) for k, v in ck["model"].items() if v.is_floating_point())
    # resuming with the average needs the average in the checkpoint
    plain = tmp_path / "plain"
    assert _train(base, data, plain, "--folds", "0", "--final", "--epochs", "1", "--class-set", "ckplus7") == 0
    with pytest.raises(RuntimeError, match="trained without --ema"):
        _train(base, data, plain, "--folds", "0", "--final", "--epochs", "2", "--class-set", "ckplus7", "--ema",
               "0.9", "--resume")


def test_resume_continues_from_the_checkpoint(base, tmp_path):
    data, out = class_folder_data(base), tmp_path / "run"
    assert _train(base, data, out, "--folds", "0", "--final", "--epochs", "2", "--class-set", "ckplus7") == 0
    first = _log(out / "final" / "log.csv")
    assert _train(base, data, out, "--folds", "0", "--final", "--epochs", "4", "--class-set", "ckplus7",
                  "--resume") == 0
    rows = _log(out / "final" / "log.csv")
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert rows[:2] == first  # the first epochs are the checkpoint's, not retrained


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


def test_cross_validation_report_and_plots(base, tmp_path):
    out = tmp_path / "cv"
    assert _train(base, official_data(base), out, "--folds", "3", "--epochs", "1", "--class-set", "ckplus7") == 0
    report = json.loads((out / "report.json").read_text())
    cv = report["cross_validation"]
    assert cv["folds"] == 3 and [f["fold"] for f in cv["per_fold"]] == [0, 1, 2]
    assert sum(f["n"] for f in cv["per_fold"]) == len(CLASSES) * len(SUBJECTS)
    for key in ("fused", "appearance", "geometric"):
        accs = [f[key] for f in cv["per_fold"]]
        assert cv["summary"][key]["mean"] == pytest.approx(np.mean(accs))
        assert (out / f"confusion_{key}.png").is_file()
    for f in cv["per_fold"]:  # the top-2 holds the top-1
        assert f["appearance"] <= f["appearance_top2"] <= 1.0
    with open(out / "predictions.csv") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == len(CLASSES) * len(SUBJECTS)
    assert {p["label"] for p in preds} == set(CLASSES)


def test_export_parity_onnx_and_torchscript(base, tmp_path):
    import torch

    from fer_ros.engine import load_engine
    from fer_ros.manifest import load_manifest
    out = tmp_path / "model"
    assert _train(base, class_folder_data(base), tmp_path / "run", "--folds", "0", "--epochs", "1",
                  "--export", str(out), "--torchscript", "--name", "parity") == 0
    m = load_manifest(out)
    assert set(m.files) == {"onnx", "state_dict", "torchscript"}
    assert m.training["export_onnx_max_abs_diff"] < 1e-4
    assert m.preprocess["crop"]["size"] == 32 and m.class_set == "ckplus8"
    engine = load_engine(out, backend="onnxruntime", cache_dir=tmp_path / "cache")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13, still asked for
        ts = torch.jit.load(str(out / "model.ts"))
    rng = np.random.default_rng(0)
    assert m.clip_input == "lbp+gray_delta" and engine.input_shapes()["clip"] == (2, 3, 32, 32)
    clip = rng.random((4, 2, 3, 32, 32), np.float32)
    geo = rng.uniform(-1, 1, (4, 2, 64, 64)).astype(np.float32)
    valid = np.array([1, 0, 1, 1], np.float32)
    with torch.no_grad():
        ref = ts(torch.from_numpy(clip), torch.from_numpy(geo), torch.from_numpy(valid)).numpy()
    assert np.abs(engine.predict(clip, geo, valid) - ref).max() < 1e-4


def test_ensemble_members_train_alone_and_export_as_one_model(base, tmp_path):
    """--ensemble 2: each fold and the final fit train two members with their own seeds and folders (member 0 is
    the single model's run, so a single-model run can be extended with --resume); the report has each member's
    accuracy; the export is one ONNX graph of both, matching torch, and records members in its manifest."""
    from fer_ros.engine import load_engine
    from fer_ros.manifest import load_manifest
    data, out = class_folder_data(base), tmp_path / "ens"
    assert _train(base, data, out, "--folds", "2", "--epochs", "1", "--class-set", "ckplus7", "--ensemble", "2",
                  "--export", str(tmp_path / "model")) == 0
    for name in ("fold00", "fold00_m1", "fold01", "fold01_m1", "final", "final_m1"):
        assert (out / name / "checkpoint.pt").is_file(), name
    a = _log(out / "fold00" / "log.csv")[0]
    b = _log(out / "fold00_m1" / "log.csv")[0]
    assert a["loss"] != b["loss"]  # another seed, another model
    report = json.loads((out / "report.json").read_text())
    for f in report["cross_validation"]["per_fold"]:
        assert len(f["member_fused"]) == 2 and "member_fused" not in report["cross_validation"]["summary"]
    assert report["final"]["members"] == 2
    m = load_manifest(tmp_path / "model")
    assert m.arch_cfg["members"] == 2 and m.training["export_onnx_max_abs_diff"] < 1e-4
    engine = load_engine(tmp_path / "model", backend="torch")
    assert engine.predict(np.zeros((1, 2, 3, 32, 32), np.float32), np.zeros((1, 2, 64, 64), np.float32),
                          np.ones(1, np.float32)).shape == (1, 7)
    assert train.main(["--data", str(data), "--ensemble", "0", "--no-progress"]) == 2


def test_the_papers_lbp_only_clip_input_trains_and_exports_a_one_channel_model(base, tmp_path):
    from fer_ros.engine import load_engine
    from fer_ros.manifest import load_manifest
    assert _train(base, class_folder_data(base), tmp_path / "run", "--folds", "0", "--epochs", "1",
                  "--clip-input", "lbp", "--export", str(tmp_path / "model")) == 0
    m = load_manifest(tmp_path / "model")
    assert m.clip_input == "lbp" and m.preprocess["clip"]["channels"] == 1 and m.arch_cfg["clip_input"] == "lbp"
    engine = load_engine(tmp_path / "model", backend="onnxruntime", cache_dir=tmp_path / "cache")
    assert engine.input_shapes()["clip"] == (1, 3, 32, 32)
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--data", "d", "--clip-input", "rgb"])


def test_class_weights_follow_the_training_shares(base, tmp_path):
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    assert class_weights(labels, 4, "none") is None
    for mode, power in (("sqrt", 0.5), ("balanced", 1.0)):
        w = class_weights(labels, 4, mode)
        assert w.shape == (4,) and w[3] == 0.0  # no samples of class 3
        assert (w[labels]).mean() == pytest.approx(1.0, rel=1e-6)  # the average sample weighs 1
        assert w[2] / w[0] == pytest.approx((60 / 10) ** power, rel=1e-6)
    with pytest.raises(ValueError, match="unknown class weighting"):
        class_weights(labels, 4, "inverse")
    assert _train(base, class_folder_data(base), tmp_path / "run", "--folds", "0", "--final", "--epochs", "1",
                  "--class-weighting", "sqrt", "--label-smoothing", "0.1") == 0
    assert len(_log(tmp_path / "run" / "final" / "log.csv")) == 1


def test_logit_offsets_are_tau_times_the_log_training_shares(base, tmp_path):
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    assert logit_offsets(labels, 4, 0.0) is None
    lo = logit_offsets(labels, 4, 1.0)
    assert lo.shape == (4,) and lo.dtype == np.float32
    assert np.exp(lo[:3]) == pytest.approx([60 / 101, 30 / 101, 10 / 101], rel=1e-6)  # class 3 counts as one
    assert logit_offsets(labels, 4, 0.5) == pytest.approx(0.5 * lo, rel=1e-6)
    # with a neutral class (index 0 here) only the other classes are balanced, around their uniform share
    ln = logit_offsets(labels, 4, 1.0, neutral=0)
    assert ln[0] == 0.0
    assert np.exp(ln[1:]) == pytest.approx([30 / 41 * 3, 10 / 41 * 3, 1 / 41 * 3], rel=1e-6)
    assert ln[1] - ln[2] == pytest.approx(lo[1] - lo[2], rel=1e-6)  # the expressions' differences are unchanged
    assert _train(base, class_folder_data(base), tmp_path / "run", "--folds", "0", "--final", "--epochs", "2",
                  "--no-augment", "--lr", "3e-3", "--class-set", "ckplus7", "--logit-adjust", "1") == 0
    rows = _log(tmp_path / "run" / "final" / "log.csv")
    assert rows[1]["loss"] < rows[0]["loss"]
    assert _train(base, class_folder_data(base), tmp_path / "run8", "--folds", "0", "--final", "--epochs", "1",
                  "--no-augment", "--class-set", "ckplus8", "--logit-adjust", "1") == 0


def test_still_samples_can_train_without_the_logit_adjustment(base, tmp_path):
    """--still-logit-adjust 0: the samples shown still take the plain loss. With every sample still (ckplus7,
    --still-prob 1) that is the training without --logit-adjust, epoch for epoch; at 1 it is not."""
    common = ["--folds", "0", "--final", "--epochs", "2", "--no-augment", "--class-set", "ckplus7",
              "--still-prob", "1"]
    data = class_folder_data(base)
    assert _train(base, data, tmp_path / "plain", *common, "--logit-adjust", "0") == 0
    assert _train(base, data, tmp_path / "off", *common, "--logit-adjust", "1", "--still-logit-adjust", "0") == 0
    assert _train(base, data, tmp_path / "on", *common, "--logit-adjust", "1", "--still-logit-adjust", "1") == 0
    plain, off, on = (_log(tmp_path / r / "final" / "log.csv") for r in ("plain", "off", "on"))
    assert [r["loss"] for r in off] == [r["loss"] for r in plain]
    assert on[0]["loss"] != plain[0]["loss"]


def test_cli_errors(tmp_path, capsys):
    assert train.main(["--data", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--label-smoothing", "1", "--no-progress"]) == 2
    assert "--label-smoothing must be at least 0 and below 1, got 1.0" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--erase-prob", "1.5", "--no-progress"]) == 2
    assert "--erase-prob must be between 0 and 1, got 1.5" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--augment-scale", "-1", "--no-progress"]) == 2
    assert "--augment-scale must be 0 or more, got -1.0" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--sam-rho", "-0.05", "--no-progress"]) == 2
    assert "--sam-rho must be 0 (off) or more, got -0.05" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--ema", "1.0", "--no-progress"]) == 2
    assert "--ema must be 0 (off) or a decay above 0 and below 1, got 1.0" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--neutral-swap", "1.5", "--no-progress"]) == 2
    assert "--neutral-swap must be between 0 and 1, got 1.5" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--mixup", "-0.2", "--no-progress"]) == 2
    assert "--mixup must be 0 (off) or an alpha above 0, got -0.2" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--logit-adjust", "-1", "--no-progress"]) == 2
    assert "--logit-adjust must be at least 0 (1 is usual), got -1.0" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--still-logit-adjust", "2", "--no-progress"]) == 2
    assert "--still-logit-adjust must be between 0 and 1, got 2.0" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--mixup", "0.2", "--aux-blendshapes", "0.5", "--no-progress"]) == 2
    assert "--mixup and --aux-blendshapes cannot be combined" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        train.main(["--help"])
    assert exc.value.code == 0
    assert "--folds" in capsys.readouterr().out


def test_a_landmarker_that_cannot_load_is_one_line(base, tmp_path, capsys, break_mediapipe):
    """mediapipe installed but a system library it loads missing, while the image cache is built: exit 2 and one
    line that names the library and what to run."""
    break_mediapipe(NO_LIBEGL)
    assert train.main(["--data", str(class_folder_data(base)), "--cache-dir", str(tmp_path / "fresh_cache"),
                       "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fer-train: mediapipe could not load a system library it needs (libEGL.so.1")
    assert "make setup" in err and "Traceback" not in err


def test_the_defaults_are_the_shipped_models_recipe():
    """`fer-train --data D` trains what ships: every option that shapes the model or its training defaults to the
    value in the shipped model's recorded command, and the default architecture is the shipped one."""
    import shlex

    from fer_ros.manifest import load_manifest
    from fer_ros.resources import default_model_dir
    manifest = load_manifest(default_model_dir())
    command = shlex.split(manifest.training["command"])
    assert command[0] == "fer-train"
    parser = get_args_parser()
    default_args = parser.parse_args(["--data", "d"])
    shipped, default = vars(parser.parse_args(command[1:])), vars(default_args)
    where_and_how = {"data", "cache_dir", "out", "export", "name", "threads", "device", "folds", "only_fold",
                     "final", "resume", "no_progress", "torchscript"}
    differs = {k: (default[k], shipped[k]) for k in shipped if k not in where_and_how and default[k] != shipped[k]}
    assert differs == {}, f"defaults (left) differ from the shipped recipe (right): {differs}"
    _, cfg = build_model(default_args, len(manifest.class_names))
    shipped_cfg = dict(manifest.arch_cfg)
    assert shipped_cfg.pop("members", 1) == default["ensemble"]  # an ensemble's export records its members
    assert (default["model"], cfg) == (manifest.arch, shipped_cfg)


def test_data_parallel_training_with_torchrun(base, tmp_path):
    """Two CPU processes (gloo; --device cpu, also where a GPU is present) train one model; rank 0 writes the log
    and exports."""
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
    """--device cuda (runs where a CUDA GPU is present): cross-validation, the auxiliary head, resume and export
    all work with the model on the GPU, and what is exported loads and runs on the CPU alone."""
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
                  "--lr", "3e-3", "--class-set", "ckplus7", "--aux-blendshapes", "1.0", "--export", str(model)) == 0
    report = json.loads((out / "report.json").read_text())
    assert [f["fold"] for f in report["cross_validation"]["per_fold"]] == [0, 1]
    rows = _log(out / "final" / "log.csv")
    assert rows[1]["loss"] < rows[0]["loss"]
    assert _train(base, data, out, "--device", "cuda", "--folds", "0", "--epochs", "3", "--class-set", "ckplus7",
                  "--aux-blendshapes", "1.0", "--final", "--resume") == 0
    assert [r["epoch"] for r in _log(out / "final" / "log.csv")] == [0, 1, 2]
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


def test_still_samples_show_an_expression_without_motion():
    """--still-prob: an expression sample becomes its peak frame repeated, its own reference (zero displacement,
    reference valid); neutral samples and evaluation are untouched."""
    import torch

    from fer_ros.training.data.samples import Samples, SequenceSet
    rng = np.random.default_rng(0)
    n_img = 8
    gray = rng.integers(0, 256, (n_img, 32, 32), dtype=np.uint8)
    points = rng.uniform(0.2, 0.8, (n_img, 68, 2)).astype(np.float32)
    samples = Samples(neutral=np.array([0, 4]), peaks=np.array([[1, 2, 3], [4, 4, 4]]), labels=np.array([2, 7]),
                      subjects=["S1", "S2"], keys=["a", "b"], gray=gray, points=points)
    still = SequenceSet(samples, [0, 1], True, 0, None, still_prob=1.0, neutral_label=7)
    clip, geo, valid, y = still[0]
    assert y.item() == 2 and valid.item() == 1.0
    assert torch.equal(clip[0, 0], clip[0, 1]) and torch.equal(clip[0, 1], clip[0, 2])
    assert torch.count_nonzero(geo) == 0
    moving = SequenceSet(samples, [0, 1], False, 0, None, still_prob=1.0, neutral_label=7)
    clip, geo, valid, _ = moving[0]
    assert not torch.equal(clip[0, 0], clip[0, 2]) and torch.count_nonzero(geo) > 0
    plain = SequenceSet(samples, [0, 1], True, 0, None, still_prob=0.0, neutral_label=7)
    assert torch.count_nonzero(plain[0][1]) > 0
    assert torch.equal(still[1][0], plain[1][0])  # the neutral sample is as it was
    marked = SequenceSet(samples, [0, 1], True, 0, None, still_prob=1.0, neutral_label=7, mark_still=True)
    assert [marked[i][-1].item() for i in (0, 1)] == [1.0, 0.0] and len(marked[0]) == 5
    assert torch.equal(marked[0][0], still[0][0])


def test_neutral_swap_takes_another_reference_of_the_same_subject():
    """--neutral-swap: a training sample's reference becomes another neutral frame of its subject (never another
    subject's), a sample without a reference gets one, a subject with one neutral frame keeps it; evaluation and a
    probability of 0 are untouched, and 0 draws no random numbers."""
    import torch

    from fer_ros.training.data.samples import Samples, SequenceSet
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (10, 32, 32), dtype=np.uint8)
    points = rng.uniform(0.2, 0.8, (10, 68, 2)).astype(np.float32)
    neutrals = {"1": np.array([0, 5]), "2": np.array([6])}

    def samples(neutral):
        return Samples(neutral=np.array(neutral), peaks=np.array([[1, 2, 3], [7, 8, 9], [4, 4, 4]]),
                       labels=np.array([2, 3, 1]), subjects=["1", "1", "2"], keys=["a", "b", "c"], gray=gray,
                       points=points, subject_neutrals=neutrals)

    def items(neutral, train, swap):
        ds = SequenceSet(samples(neutral), [0, 1, 2], train, 0, None, clip_input="lbp+gray_delta",
                         neutral_swap=swap)
        return [ds[i] for i in range(3)], ds.rng

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b))

    assert samples([0, -1, 6]).other_neutrals(0).tolist() == [5]
    assert samples([0, -1, 6]).other_neutrals(1).tolist() == [0, 5]
    assert samples([0, -1, 6]).other_neutrals(2).tolist() == []
    swapped, _ = items([0, -1, 6], True, 1.0)
    plain, plain_rng = items([0, -1, 6], True, 0.0)
    assert not same(swapped[0], plain[0])
    assert same(swapped[0], items([5, -1, 6], False, 0.0)[0][0])  # sample 0 now has the subject's other neutral
    assert plain[1][2].item() == 0.0 and swapped[1][2].item() == 1.0  # sample 1 got a reference
    assert any(same(swapped[1], items([0, n, 6], False, 0.0)[0][1]) for n in (0, 5))
    assert same(swapped[2], plain[2])  # subject 2 has no other neutral frame
    evaluated, _ = items([0, -1, 6], False, 1.0)
    assert all(same(a, b) for a, b in zip(evaluated, plain))
    assert plain_rng.random() == np.random.default_rng(0).random()  # off: not one number drawn


def test_load_data_lists_every_neutral_frame_of_each_subject(base, tmp_path):
    """The references --neutral-swap draws from: each subject's neutral first frames, unlabelled sequences' too."""
    args = get_args_parser().parse_args(["--data", str(official_data(base)), "--class-set", "ckplus7",
                                               "--size", "32", "--cache-dir", str(base / "train_cache"),
                                               "--no-progress"])
    samples, _ = load_data(args)
    assert set(samples.subject_neutrals) == set(samples.subjects)
    for j, subject in enumerate(samples.subjects):
        mine = samples.subject_neutrals[subject]
        assert samples.neutral[j] in mine
        assert len(mine) == len(CLASSES) + 1  # one per labelled sequence and the unlabelled one
        others = {samples.subjects[k] for k in range(len(samples.subjects)) if k != j}
        assert not any(set(mine) & set(samples.subject_neutrals[o]) for o in others - {subject})


def _aux_samples(blend_names=("browDownLeft", "browDownRight", "jawOpen")):
    from fer_ros.training.data.samples import Samples
    rng = np.random.default_rng(1)
    n_img = 8
    return Samples(neutral=np.array([0, -1]), peaks=np.array([[1, 2, 3], [4, 5, 6]]), labels=np.array([2, 3]),
                   subjects=["S1", "S2"], keys=["a", "b"], gray=rng.integers(0, 256, (n_img, 32, 32), dtype=np.uint8),
                   points=rng.uniform(0.2, 0.8, (n_img, 68, 2)).astype(np.float32),
                   blendshapes=rng.uniform(0, 1, (n_img, len(blend_names))).astype(np.float32),
                   blendshape_names=tuple(blend_names))


def test_aux_blendshape_targets_follow_the_flip_and_the_reference():
    """The auxiliary target of a training sample: the peak's standardised scores and their change from the
    neutral reference; left and right swap when augmentation mirrors the face; no reference = no change."""
    from fer_ros.training.data.augment import AugmentConfig
    from fer_ros.training.data.samples import SequenceSet
    from fer_ros.training.experimental.auxiliary import AuxTargets
    samples = _aux_samples()
    aux = AuxTargets.of(samples, np.array([0, 1]))
    used = [0, 1, 2, 3, 4, 5, 6]  # image 7 belongs to no training sample: not in the statistics
    assert np.allclose(aux.mean, samples.blendshapes[used].mean(axis=0))
    bs = samples.blendshapes
    plain = SequenceSet(samples, [0, 1], True, 0, AugmentConfig(flip=0.0), aux=aux)
    *_, target = plain[0]
    assert target.shape == (aux.size,) == (6,)
    np.testing.assert_allclose(target[:3], (bs[3] - aux.mean) / aux.std, rtol=1e-5)
    np.testing.assert_allclose(target[3:], (bs[3] - bs[0]) / aux.std, rtol=1e-5)
    *_, target = SequenceSet(samples, [0, 1], True, 0, AugmentConfig(flip=1.0), aux=aux)[0]
    np.testing.assert_allclose(target[:3], (bs[3][[1, 0, 2]] - aux.mean) / aux.std, rtol=1e-5)
    *_, target = plain[1]  # no neutral reference
    np.testing.assert_allclose(target[3:], 0.0)
    assert len(SequenceSet(samples, [0, 1], False, 0, aux=None)[0]) == 4  # evaluation items carry no target


def test_blendshape_mirror_swaps_sides_only():
    from fer_ros.landmark_scheme import blendshape_mirror
    names = ["_neutral", "browDownLeft", "browDownRight", "browInnerUp", "mouthSmileRight", "mouthSmileLeft"]
    m = blendshape_mirror(names)
    assert m == [0, 2, 1, 3, 5, 4]
    assert [m[i] for i in m] == list(range(len(names)))
    with pytest.raises(ValueError, match="no mirror partner"):
        blendshape_mirror(["eyeBlinkLeft"])


def test_augment_reports_its_flip_and_draws_as_before():
    from fer_ros.training.data.augment import AugmentConfig, augment, augment_flip
    rng_img = np.random.default_rng(3)
    gray = rng_img.integers(0, 256, (2, 32, 32), dtype=np.uint8)
    pts = rng_img.uniform(0.2, 0.8, (2, 68, 2)).astype(np.float32)
    for flip, expected in ((1.0, True), (0.0, False)):
        g1, p1, flipped = augment_flip(gray, pts, np.random.default_rng(5), AugmentConfig(flip=flip))
        g2, p2 = augment(gray, pts, np.random.default_rng(5), AugmentConfig(flip=flip))
        assert flipped is expected and np.array_equal(g1, g2) and np.array_equal(p1, p2)


def test_augment_scale_shrinks_the_warp_and_zero_keeps_only_flips():
    from fer_ros.training.data.augment import AugmentConfig, augment_flip
    cfg = AugmentConfig(erase=0.3)
    half = cfg.scaled(0.5)
    assert half.rotate_deg == cfg.rotate_deg / 2 and half.contrast == cfg.contrast / 2
    assert half.flip == cfg.flip and half.erase == cfg.erase
    rng_img = np.random.default_rng(2)
    gray = rng_img.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    pts = rng_img.uniform(0.2, 0.8, (3, 68, 2)).astype(np.float32)
    still = AugmentConfig(flip=0.0).scaled(0.0)
    for seed in range(5):
        g, p, flipped = augment_flip(gray, pts, np.random.default_rng(seed), still)
        assert not flipped and np.array_equal(g, gray) and np.allclose(p, pts, atol=1e-6)
    moved = [np.abs(augment_flip(gray, pts, np.random.default_rng(s), AugmentConfig(flip=0.0).scaled(f))[1] - pts).max()
             for f in (0.25, 1.0) for s in range(20)]
    assert np.mean(moved[:20]) < np.mean(moved[20:])


def test_random_erasing_hides_one_box_of_every_frame_and_leaves_the_landmarks():
    """erase=1: the same rectangle of every frame (the neutral reference too) holds one gray level, nothing else
    differs from the same draw without erasing, and the landmarks are untouched; erase=0 draws no extra numbers."""
    from fer_ros.training.data.augment import AugmentConfig, augment_flip
    rng_img = np.random.default_rng(4)
    gray = rng_img.integers(0, 256, (4, 48, 48), dtype=np.uint8)
    pts = rng_img.uniform(0.2, 0.8, (4, 68, 2)).astype(np.float32)
    for seed in range(20):
        g0, p0, _ = augment_flip(gray, pts, np.random.default_rng(seed), AugmentConfig())
        g1, p1, _ = augment_flip(gray, pts, np.random.default_rng(seed), AugmentConfig(erase=1.0))
        assert np.array_equal(p0, p1)
        changed = np.any(g0 != g1, axis=0)
        rows, cols = np.nonzero(changed)
        assert changed.any()
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        assert np.unique(g1[(slice(None), *box)]).size == 1  # one fill, same in every frame
        outside = np.ones_like(changed)
        outside[box] = False
        assert np.array_equal(g0[:, outside], g1[:, outside])
        area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) / 48 ** 2
        assert area <= 0.2 + 0.05
    # erase 0 draws exactly what augmentation drew before erasing existed (flip, angle, scale, shift x and y,
    # contrast, brightness); any erase probability above 0 draws at least one number more
    def next_draw(erase):
        rng = np.random.default_rng(9)
        augment_flip(gray, pts, rng, AugmentConfig(erase=erase))
        return rng.random()
    before = np.random.default_rng(9)
    before.random(), before.uniform(), before.uniform(), before.uniform(size=2), before.uniform(), before.uniform()
    assert next_draw(0.0) == before.random()
    assert next_draw(1e-12) != next_draw(0.0)


def test_aux_blendshapes_train_and_leave_the_exported_model_alone(base, tmp_path):
    """--aux-blendshapes: the log shows the auxiliary loss falling, the checkpoint keeps the head for resuming,
    and the exported model has exactly the networks' parameters (inference unchanged)."""
    import torch

    from fer_ros.crop import CropConfig
    from fer_ros.manifest import load_manifest
    from fer_ros.training.data.cache import build_cache
    data, out = class_folder_data(base), tmp_path / "run"
    assert _train(base, data, out, "--folds", "0", "--epochs", "3", "--no-augment", "--lr", "3e-3",
                  "--class-set", "ckplus7", "--aux-blendshapes", "1.0", "--export", str(tmp_path / "model")) == 0
    rows = _log(out / "final" / "log.csv")
    assert rows[-1]["aux"] < rows[0]["aux"]
    ck = torch.load(out / "final" / "checkpoint.pt", weights_only=True)
    assert ck["aux"]["linear.weight"].shape[0] == 2 * 52
    manifest = load_manifest(tmp_path / "model")
    state = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    plain, _ = build_model(get_args_parser().parse_args(["--data", "d", *TINY]), len(manifest.class_names))
    assert set(state) == set(plain.state_dict())
    assert _train(base, data, out, "--folds", "0", "--epochs", "4", "--class-set", "ckplus7",
                  "--aux-blendshapes", "1.0", "--final", "--resume") == 0
    assert [r["epoch"] for r in _log(out / "final" / "log.csv")] == [0, 1, 2, 3]
    # the cache keeps the blendshapes beside crops and points
    cache = build_cache(sorted(data.rglob("*.png")), CropConfig(size=32, margin=0.0), base / "train_cache",
                        progress=False)
    assert cache.blendshapes.shape == (len(cache.paths), 52) and len(cache.blendshape_names) == 52
    assert np.all(cache.blendshapes[cache.ok].max(axis=1) > 0)


def test_aux_blendshapes_refuses_a_negative_weight_and_a_cache_without_blendshapes(base, tmp_path, capsys):
    assert _train(base, class_folder_data(base), tmp_path / "run", "--aux-blendshapes", "-1") == 2
    assert "--aux-blendshapes must be 0 (off) or a positive weight" in capsys.readouterr().err
    from fer_ros.training.data.datasets import DatasetError
    from fer_ros.training.experimental.auxiliary import AuxTargets
    samples = _aux_samples(())
    samples.blendshapes = np.zeros((8, 0), np.float32)
    with pytest.raises(DatasetError, match="needs the landmarker's blendshapes"):
        AuxTargets.of(samples, np.array([0, 1]))


def test_a_sequence_without_its_neutral_frame_trains_with_a_borrowed_one(tmp_path):
    """The report's data counts say how many references were borrowed; --own-neutral-only leaves them out."""
    from synth_data import write_class_folder_dataset
    data = tmp_path / "d"
    write_class_folder_dataset(data, ("anger", "happy"), (10, 11), missing_neutral=[(10, 2)], sequence_length=4)

    def info(*extra):
        args = get_args_parser().parse_args(["--data", str(data), "--cache-dir", str(tmp_path / "cache"),
                                                   "--class-set", "ckplus7", *TINY, *extra])
        samples, info = load_data(args)
        return samples, info

    samples, borrowed = info()
    assert borrowed["neutral_borrowed"] == 1 and borrowed["without_neutral"] == 0
    j = samples.keys.index("S010_002:happy")
    assert samples.neutral[j] == samples.neutral[samples.keys.index("S010_001:anger")]  # the nearest sequence's
    samples, own = info("--own-neutral-only")
    assert own["neutral_borrowed"] == 0 and own["without_neutral"] == 1
    assert samples.neutral[samples.keys.index("S010_002:happy")] == -1
