"""The int8 graph: quantize.py writes and records it, the onnxruntime CPU engine runs it (or says why not), a
changed or strayed graph is refused, the calibration draw shares faces between datasets, and fer-quantize and
fer-train --export make it."""
from __future__ import annotations

import errno
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bag_helpers import tiny_model_dir  # noqa: E402

from fer_ros import quantize  # noqa: E402
from fer_ros.engine import ModelError, load_engine  # noqa: E402
from fer_ros.manifest import load_manifest, read_model_file, sha256_file  # noqa: E402
from fer_ros.training.calibration import calibration_indices  # noqa: E402


def _batches(model_dir: Path, count: int = 3, batch: int = 8, seed: int = 0) -> list[dict]:
    engine = load_engine(model_dir, backend="onnxruntime", device="cpu", int8=False)
    shapes = engine.input_shapes()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        valid = np.ones(batch, np.float32)
        valid[::3] = 0.0
        out.append({"clip": rng.random((batch, *shapes["clip"]), np.float32),
                    "geo": rng.uniform(-1, 1, (batch, *shapes["geo"])).astype(np.float32), "geo_valid": valid})
    return out


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def int8_dir(fp32_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "model"
    shutil.copytree(fp32_dir, out)
    quantize.add_int8(out, _batches(out), {"calibration_faces": {"samples": 24}})
    return out


def test_the_int8_graph_is_recorded_with_its_sha256_and_how_it_was_made(int8_dir):
    manifest = load_manifest(int8_dir)
    entry = manifest.files[quantize.INT8_ROLE]
    assert entry["path"] == quantize.INT8_FILE
    assert entry["sha256"] == sha256_file(int8_dir / quantize.INT8_FILE)
    record = manifest.training["int8"]
    assert record["calibration_faces"] == {"samples": 24} and record["format"] == "QDQ"
    assert record["against_fp32"]["faces"] == 24 and record["against_fp32"]["top_class_agreement"] >= 0.95


def test_the_int8_graph_quantizes_the_convolutions_and_layers_only(int8_dir):
    import onnx
    graph = onnx.load(str(int8_dir / quantize.INT8_FILE)).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    int8_weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    convs = sum(op in ("Conv", "Gemm", "MatMul") for op in ops)
    assert len(int8_weights) >= convs > 0  # every weight stored as int8
    assert "Softmax" in ops  # the pair choice, the sum and the softmax stay float
    fp32_ops = [n.op_type for n in onnx.load(str(int8_dir / "model.onnx")).graph.node]
    assert "QuantizeLinear" not in fp32_ops  # model.onnx itself is untouched


def test_a_relu_after_a_convolution_is_folded_into_its_quantized_output(int8_dir):
    # the ReLU's range becomes the convolution's output range, so no float ReLU (and no requantisation between
    # a convolution and the next) is left in the int8 graph
    import onnx
    fp32_ops = [n.op_type for n in onnx.load(str(int8_dir / "model.onnx")).graph.node]
    int8_ops = [n.op_type for n in onnx.load(str(int8_dir / quantize.INT8_FILE)).graph.node]
    assert fp32_ops.count("Relu") > 0
    assert "Relu" not in int8_ops
    assert "Relu" in load_manifest(int8_dir).training["int8"]["ops"]


def test_the_cpu_engine_runs_int8_by_default_and_fp32_when_asked(int8_dir):
    feed = _batches(int8_dir, count=1, seed=5)[0]
    eight = load_engine(int8_dir, backend="onnxruntime", device="cpu", cache_dir=int8_dir / "cache")
    full = load_engine(int8_dir, backend="onnxruntime", device="cpu", cache_dir=int8_dir / "cache", int8=False)
    assert eight.int8 and eight.precision == "int8" and "int8" in eight.describe()
    assert not full.int8 and full.precision == "fp32"
    assert eight.label == "onnxruntime:cpu int8" and full.label == "onnxruntime:cpu"
    p8 = eight.predict(feed["clip"], feed["geo"], feed["geo_valid"])
    p32 = full.predict(feed["clip"], feed["geo"], feed["geo_valid"])
    assert p8.shape == p32.shape and np.allclose(p8.sum(axis=1), 1.0, atol=1e-4)
    assert np.abs(p8 - p32).max() < 0.05
    # each precision has its own cached graph: the fp32 load did not reuse the int8 one
    assert eight.cache_hit is False and full.cache_hit is False
    again = load_engine(int8_dir, backend="onnxruntime", device="cpu", cache_dir=int8_dir / "cache")
    assert again.cache_hit is True and again.int8
    assert np.array_equal(again.predict(feed["clip"], feed["geo"], feed["geo_valid"]), p8)


def test_auto_on_the_cpu_picks_the_int8_graph(int8_dir):
    engine = load_engine(int8_dir, backend="auto", device="cpu")
    assert engine.backend == "onnxruntime:cpu" and engine.int8


def test_a_model_without_an_int8_graph_runs_fp32_and_says_so(fp32_dir):
    engine = load_engine(fp32_dir, backend="onnxruntime", device="cpu")
    assert not engine.int8 and any("no int8 graph" in n and "fer-quantize" in n for n in engine.notes)
    quiet = load_engine(fp32_dir, backend="onnxruntime", device="cpu", int8=False)
    assert not any("int8" in n for n in quiet.notes)


def test_torch_ignores_the_int8_graph(int8_dir):
    engine = load_engine(int8_dir, backend="torch", device="cpu")
    assert engine.precision == "fp32"


def test_a_changed_int8_file_is_refused(int8_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(int8_dir, copy)
    data = bytearray((copy / quantize.INT8_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / quantize.INT8_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="model.int8.onnx.*sha256"):
        load_engine(copy, backend="onnxruntime", device="cpu")
    (copy / quantize.INT8_FILE).unlink()
    with pytest.raises(ModelError, match="onnx_int8 file .* is missing"):
        load_engine(copy, backend="onnxruntime", device="cpu")


def _damaged_int8_copy(model_dir: Path, copy: Path, damage: str) -> Path:
    """A copy of the model folder whose int8 graph is "missing" or "changed" (a byte appended)."""
    shutil.copytree(model_dir, copy)
    if damage == "missing":
        (copy / quantize.INT8_FILE).unlink()
    else:
        with open(copy / quantize.INT8_FILE, "ab") as f:
            f.write(b"\0")
    return copy


@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_a_missing_or_changed_int8_graph_is_refused_naming_fer_quantize_to_rebuild_it(int8_dir, tmp_path, damage):
    copy = _damaged_int8_copy(int8_dir, tmp_path / "model", damage)
    with pytest.raises(ModelError, match=rf"model.int8.onnx: .*rebuild it with `fer-quantize {copy} --data PATH"):
        load_engine(copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "cache")
    manifest = load_manifest(copy, verify_files=False)
    (copy / "model.pt").unlink()
    with pytest.raises(ModelError, match="state_dict file .* is missing") as refused:  # only an export makes it
        read_model_file(manifest, "state_dict")
    assert "fer-quantize" not in str(refused.value)


@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_add_int8_rebuilds_a_missing_or_changed_int8_graph(int8_dir, tmp_path, damage):
    """The int8 graph add_int8 replaces is not checked (it is what is rebuilt); the fp32 graph it reads is."""
    copy = tmp_path / "model"
    shutil.copytree(int8_dir, copy)
    batches = _batches(copy, count=1)
    if damage == "missing":
        (copy / quantize.INT8_FILE).unlink()
    else:
        with open(copy / quantize.INT8_FILE, "ab") as f:
            f.write(b"\0")
    manifest = quantize.add_int8(copy, batches)
    assert manifest.files[quantize.INT8_ROLE]["sha256"] == sha256_file(copy / quantize.INT8_FILE)
    assert load_engine(copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "cache").int8
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    with pytest.raises(ModelError, match=r"model.onnx: sha256 .* does not match"):
        quantize.add_int8(copy, [])
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


def test_an_int8_graph_that_reads_its_weights_from_another_file_is_refused(int8_dir, tmp_path):
    """No sha256 covers weights.bin beside model.int8.onnx: the int8 graph must hold its weights itself."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data
    copy = tmp_path / "model"
    shutil.copytree(int8_dir, copy)
    graph = onnx.load(str(copy / quantize.INT8_FILE))
    convert_model_to_external_data(graph, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.save(graph, str(copy / quantize.INT8_FILE))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][quantize.INT8_ROLE]["sha256"] = sha256_file(copy / quantize.INT8_FILE)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert (copy / "weights.bin").is_file()
    with pytest.raises(ModelError, match=r"model.int8.onnx: the onnx_int8 graph reads \d+ weight tensor\(s\) .* "
                                         r"must hold its weights in the one file"):
        load_engine(copy, backend="onnxruntime", device="cpu", int8=True, cache_dir=tmp_path / "cache")


def test_a_graph_that_strays_from_fp32_is_refused_and_nothing_recorded(fp32_dir, tmp_path, monkeypatch):
    copy = tmp_path / "model"
    shutil.copytree(fp32_dir, copy)
    before = (copy / "manifest.json").read_text()
    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # no graph can keep more than every top class
    with pytest.raises(ModelError, match="keeps the fp32 graph's top class on only"):
        quantize.add_int8(copy, _batches(copy, count=1))
    assert not (copy / quantize.INT8_FILE).exists()
    assert (copy / "manifest.json").read_text() == before


def _probs_graph(path: Path, shift) -> Path:
    """An ONNX graph whose "probs" output is its input "x" (N, 3) plus `shift`."""
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "shift"], ["probs"])], "probs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor("shift", TensorProto.FLOAT, [3], list(shift))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_an_int8_pick_within_a_tie_of_the_fp32_top_class_counts_as_kept(tmp_path):
    """A face the fp32 graph calls a tie (its two best classes within quantize.TIE) keeps its decision whichever of
    the two the int8 graph picks; a face decided in fp32 does not."""
    fp32 = _probs_graph(tmp_path / "fp32.onnx", [0.0, 0.0, 0.0])
    other = _probs_graph(tmp_path / "other.onnx", [0.0, 2 * quantize.TIE, 0.0])
    x = np.array([[0.500, 0.500 - quantize.TIE / 2, 0.0],   # a tie: int8 picks class 1, within TIE of the top
                  [0.500, 0.500 - 3 * quantize.TIE / 2, 0.0],  # decided by 1.5 TIE: int8 picks class 1, a change
                  [0.900, 0.050, 0.050],                   # decided
                  [0.100, 0.100, 0.800]], np.float32)      # decided
    check = quantize.compare_graphs(fp32, other, [{"x": x}])
    assert check["faces"] == 4
    assert check["top_class_agreement"] == pytest.approx(2 / 4)
    assert check["agreement_beyond_ties"] == pytest.approx(3 / 4)


def test_a_graph_that_differs_from_fp32_only_on_ties_is_kept(fp32_dir, tmp_path, monkeypatch):
    """add_int8 checks the share kept with ties counted as kept, not the strict top-class share: a briefly
    trained model whose int8 graph flips only near-even faces still gets its int8 graph."""
    copy = tmp_path / "model"
    shutil.copytree(fp32_dir, copy)
    real = quantize.compare_graphs

    def ties_flipped(fp32, int8, batches):  # the real comparison, with a tenth of the faces flipped on ties
        return dict(real(fp32, int8, batches), top_class_agreement=0.9, agreement_beyond_ties=1.0)
    monkeypatch.setattr(quantize, "compare_graphs", ties_flipped)
    manifest = quantize.add_int8(copy, _batches(copy, count=1))
    assert quantize.INT8_ROLE in manifest.files and (copy / quantize.INT8_FILE).is_file()
    assert manifest.training["int8"]["against_fp32"]["top_class_agreement"] == 0.9


@pytest.mark.parametrize("failure", ["strays", "interrupted"])
def test_a_failed_requantization_leaves_the_model_and_its_int8_graph_as_they_were(int8_dir, tmp_path, monkeypatch,
                                                                                   failure):
    copy = tmp_path / "model"
    shutil.copytree(int8_dir, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    if failure == "strays":
        monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)
        expected = "keeps the fp32 graph's top class on only .*its int8 graph is left as it was"
    else:
        real = quantize.quantize_graph

        def half_written(src, dst, batches):
            real(src, dst, batches)
            Path(dst).write_bytes(Path(dst).read_bytes()[:1000])
            raise KeyboardInterrupt
        monkeypatch.setattr(quantize, "quantize_graph", half_written)
        expected = None
    with pytest.raises(KeyboardInterrupt if expected is None else ModelError, match=expected):
        quantize.add_int8(copy, _batches(copy, count=1))
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before  # nothing left beside it
    assert load_engine(copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "cache").int8


@pytest.mark.parametrize("failure", ["disk full", "interrupted after the write"])
def test_a_requantization_whose_manifest_is_not_written_leaves_the_old_int8_graph_in_place(int8_dir, tmp_path,
                                                                                          monkeypatch, failure):
    """The new int8 graph replaces the old one together with the manifest that records it: a manifest write that
    fails (a full disk) or an interrupt once it is written puts the old graph and manifest back, and the model
    loads with its old int8 graph."""
    from fer_ros.manifest import Manifest
    copy = tmp_path / "model"
    shutil.copytree(int8_dir, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    old_sha = load_manifest(copy).files[quantize.INT8_ROLE]["sha256"]
    real = Manifest.save

    def save(self, directory):
        if failure == "disk full":
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(directory) / "manifest.json"))
        real(self, directory)
        raise KeyboardInterrupt
    monkeypatch.setattr(Manifest, "save", save)
    with pytest.raises(OSError if failure == "disk full" else KeyboardInterrupt):
        quantize.add_int8(copy, _batches(copy, count=1, seed=1))  # other faces: another int8 graph
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before  # nothing left beside it
    manifest = load_manifest(copy)
    assert manifest.files[quantize.INT8_ROLE]["sha256"] == old_sha == sha256_file(copy / quantize.INT8_FILE)
    assert load_engine(copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "cache").int8


def test_a_manifest_write_that_fails_part_way_leaves_the_manifest_that_was_there(fp32_dir, tmp_path, monkeypatch):
    from fer_ros.manifest import Manifest
    copy = tmp_path / "model"
    shutil.copytree(fp32_dir, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    manifest = load_manifest(copy)
    monkeypatch.setattr(Manifest, "to_json", lambda self: '{"name": "tiny", "note": "\ud800"}\n')  # no UTF-8 form
    with pytest.raises(UnicodeEncodeError):
        manifest.save(copy)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before  # the old manifest whole, no temporary file
    assert load_manifest(copy).name == "tiny_test_model"


def test_a_model_exported_onto_another_keeps_none_of_the_old_models_files(int8_dir, tmp_path):
    """Exporting other weights onto a model folder without an int8 graph removes the old model's model.int8.onnx
    (a file the old manifest lists and the new one does not); a file no manifest lists stays."""
    import torch

    from fer_ros.export import export_model, load_torch_model
    copy = tmp_path / "model"
    shutil.copytree(int8_dir, copy)
    (copy / "notes.txt").write_text("not part of the model\n")
    model, manifest = load_torch_model(copy)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    manifest.files, manifest.training = {}, {"note": "other weights"}
    export_model(model, manifest, copy)
    made = load_manifest(copy)
    assert sorted(made.files) == ["onnx", "state_dict"]
    assert sorted(p.name for p in copy.iterdir() if p.is_file()) == ["manifest.json", "model.onnx", "model.pt",
                                                                     "notes.txt"]
    assert not load_engine(copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "cache").int8


def test_the_calibration_draw_takes_the_same_number_from_each_dataset():
    dataset = np.array([0] * 1000 + [1] * 40 + [2] * 300)
    samples = SimpleNamespace(dataset=dataset, dataset_names=["ferplus", "kdef", "ckplus"])
    idx = np.arange(0, len(dataset), 1)
    chosen = calibration_indices(samples, idx, 90, seed=1)
    counts = np.bincount(dataset[chosen], minlength=3)
    assert counts.tolist() == [30, 30, 30] and len(np.unique(chosen)) == len(chosen)
    few = calibration_indices(samples, idx, 120, seed=1)
    assert np.bincount(dataset[few]).tolist() == [40, 40, 40]
    small = calibration_indices(samples, np.arange(1000, 1040), 90, seed=1)  # only what idx holds
    assert set(small.tolist()) == set(range(1000, 1040))
    assert np.array_equal(calibration_indices(samples, idx, 90, seed=1), chosen)  # the seed decides
    two = calibration_indices(samples, idx, 2, seed=1)  # fewer than the datasets: never more than asked for
    assert len(two) == 2 and len(set(dataset[two].tolist())) == 2
    with pytest.raises(ValueError):
        calibration_indices(samples, idx, 0)


def test_fer_train_exports_an_int8_graph_beside_the_fp32_one(model8):
    manifest = load_manifest(model8)
    assert quantize.INT8_ROLE in manifest.files
    record = manifest.training["int8"]
    assert record["calibration_faces"]["samples"] > 0 and record["command"].startswith("fer-train ")


def test_fer_quantize_adds_the_graph_to_a_model(model8, base, tmp_path, capsys):
    from eval_helpers import class_folder_data

    from fer_ros.training import quantize as tool
    copy = tmp_path / "model"
    shutil.copytree(model8, copy)
    (copy / quantize.INT8_FILE).unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"][quantize.INT8_ROLE]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    rc = tool.main([str(copy), "--data", str(class_folder_data(base)), "--samples", "16",
                    "--cache-dir", str(base / "train_cache"), "--no-progress"])
    assert rc == 0
    assert "keeps the fp32 graph's top class" in capsys.readouterr().out
    made = load_manifest(copy)
    assert made.training["int8"]["calibration_faces"]["samples"] == 16
    assert made.training["int8"]["command"].startswith("fer-quantize ")
    assert load_engine(copy, backend="onnxruntime", device="cpu").int8


@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_fer_quantize_rebuilds_a_missing_or_changed_int8_graph(model8, base, tmp_path, capsys, damage):
    from eval_helpers import class_folder_data

    from fer_ros.training import quantize as tool
    copy = _damaged_int8_copy(model8, tmp_path / "model", damage)
    rc = tool.main([str(copy), "--data", str(class_folder_data(base)), "--samples", "16",
                    "--cache-dir", str(base / "train_cache"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert load_manifest(copy).training["int8"]["command"].startswith("fer-quantize ")
    assert load_engine(copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "cache").int8


@pytest.mark.parametrize("cache", ["a plain file", "under a plain file", "a damaged cache file", "not writable"])
def test_fer_quantize_refuses_a_cache_dir_it_cannot_use_in_one_line(model8, base, tmp_path, capsys, monkeypatch,
                                                                    cache):
    from eval_helpers import class_folder_data

    from fer_ros.training import quantize as tool
    from fer_ros.training.data import cache as image_cache
    cache_dir = tmp_path / "cache"
    if cache == "a damaged cache file":
        shutil.copytree(base / "train_cache", cache_dir)
        damaged = sorted(cache_dir.glob("images-*.npz"))
        assert damaged
        for file in damaged:
            file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        named, todo = "a damaged image cache file", "delete it (the next run makes it again) or choose another --cache-dir"
    elif cache == "not writable":
        def disk_full(cache, file):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        monkeypatch.setattr(image_cache, "save_cache", disk_full)
        named, todo = "No space left on device", "choose another --cache-dir"
    else:
        (tmp_path / "file").write_text("not a folder\n")
        cache_dir = tmp_path / "file" if cache == "a plain file" else tmp_path / "file" / "cache"
        named, todo = f"{tmp_path / 'file'} exists and is not a folder", "delete it or choose another --cache-dir"
    copy = tmp_path / "model"
    shutil.copytree(model8, copy)
    rc = tool.main([str(copy), "--data", str(class_folder_data(base)), "--samples", "16",
                    "--cache-dir", str(cache_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("fer-quantize: ") and err.count("\n") == 1, err
    assert named in err and err.rstrip().endswith(todo)
    if cache == "a damaged cache file":
        assert any(f"fer-quantize: {file}: " in err for file in damaged), err
    assert (copy / "manifest.json").read_bytes() == (model8 / "manifest.json").read_bytes()


def test_fer_quantize_says_what_is_wrong(tmp_path, capsys):
    from fer_ros.training import quantize as tool
    assert tool.main([str(tmp_path / "nowhere"), "--data", str(tmp_path)]) == 2
    assert "model not found" in capsys.readouterr().err
    assert tool.main([str(tmp_path), "--data", str(tmp_path), "--samples", "0"]) == 2
    assert "--samples must be at least 1" in capsys.readouterr().err


def test_fer_quantize_calibrates_on_the_crop_the_manifest_describes(fp32_dir, tmp_path, monkeypatch, capsys):
    """Every crop parameter of the manifest (as the node crops), not only its size and margin."""
    from fer_ros.crop import CropConfig
    from fer_ros.training import quantize as tool
    from fer_ros.training.data import samples
    from fer_ros.training.data.datasets import DatasetError
    copy = tmp_path / "model"
    shutil.copytree(fp32_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["preprocess"]["crop"].update(face_scale=2.0, eye_y_frac=0.35, border="reflect", margin=0.1)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    seen = []

    def load_samples(sources, names, frames, crop, *args, **kwargs):
        seen.append(crop)
        raise DatasetError("stop here")
    monkeypatch.setattr(samples, "load_samples", load_samples)
    assert tool.main([str(copy), "--data", str(tmp_path), "--no-progress"]) == 2
    assert "stop here" in capsys.readouterr().err
    assert seen == [CropConfig(size=32, face_scale=2.0, margin=0.1, eye_y_frac=0.35, border="reflect")]


def test_fer_quantize_refuses_a_dataset_weight(fp32_dir, tmp_path, capsys):
    """Each dataset gives the same number of calibration faces: a PATH:WEIGHT is refused, not ignored."""
    from fer_ros.training import quantize as tool
    for weight in ("2", "0.5", "0"):
        given = f"{tmp_path}:{weight}"
        assert tool.main([str(fp32_dir), "--data", given, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err == (f"fer-quantize: --data takes no weight, got {given!r}: each dataset gives the same number of "
                       f"calibration faces, so a weight does not apply; give the dataset's PATH\n")


def test_fer_quantize_refuses_a_dataset_given_twice(fp32_dir, tmp_path, capsys):
    """A dataset given twice, by whatever spelling of its path, is named and refused (it would give twice the faces
    of the others, each face twice)."""
    from fer_ros.training import quantize as tool
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "link").symlink_to(data)
    for again in (f"{data}/", str(data / ".." / "data"), str(tmp_path / "link")):
        assert tool.main([str(fp32_dir), "--data", str(data), "--data", again, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fer-quantize: --data ") and f"the same dataset ({data}) given twice" in err
        assert err.count("\n") == 1


def test_fer_quantize_refuses_a_negative_seed(tmp_path, capsys):
    from fer_ros.training import quantize as tool
    assert tool.main([str(tmp_path), "--data", str(tmp_path), "--seed", "-1"]) == 2
    assert capsys.readouterr().err == "fer-quantize: --seed must be a whole number of at least 0, got -1\n"


def test_fer_quantize_on_held_out_data_only_says_how_to_name_the_training_folder(fp32_dir, tmp_path, capsys):
    """A FER+ folder holding only FER2013Valid has no training faces to calibrate on: fer-quantize says so as
    fer-train does, with the folder name that holds training data."""
    from synth_data import write_ferplus_dataset

    from fer_ros.training import quantize as tool
    data = tmp_path / "fer"
    write_ferplus_dataset(data, {"FER2013Valid": [(c, "clear") for c in ("anger", "happy", "surprise", "neutral")]})
    assert tool.main([str(fp32_dir), "--data", str(data), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-quantize: no training samples, nothing would be trained on: {data} holds only held-out "
                          f"FER+ data (split folders FER2013Valid: valid): FER+ data trains on the folder named "
                          f"FER2013Train") and err.count("\n") == 1
