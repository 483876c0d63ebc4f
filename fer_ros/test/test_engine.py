"""Inference engines: backends agree, the engine cache is reused and invalidated, bad model files give their
messages, GPU backends asked for on a machine without one fail clearly (or fall back under auto), TensorRT's cache
keys, CUDA graphs in the torch backend."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bag_helpers import tiny_model_dir  # noqa: E402

import fer_ros  # noqa: E402
from fer_ros.engine import BackendUnavailable, ModelError, hardware, load_engine, torch_backend  # noqa: E402
from fer_ros.engine.cuda_graphs import BATCH_PROFILE, GraphedModel, bucket  # noqa: E402
from fer_ros.manifest import load_manifest, sha256_file  # noqa: E402

HAS_CUDA = hardware.torch_cuda_devices() > 0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.getbasetemp())


@pytest.fixture
def model_copy(model_dir, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst)
    return dst


def _inputs(engine, batch, seed=0):
    rng = np.random.default_rng(seed)
    shapes = engine.input_shapes()
    clip = rng.random((batch, *shapes["clip"]), np.float32)
    geo = rng.uniform(-1, 1, (batch, *shapes["geo"])).astype(np.float32)
    valid = (rng.random(batch) > 0.4).astype(np.float32)
    return clip, geo, valid


def _rewrite_manifest(model: Path, **changes) -> None:
    path = model / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _resign(model: Path, role: str) -> None:
    """Record the current sha256 of a changed file, as if the manifest had been made for it."""
    data = json.loads((model / "manifest.json").read_text())
    data["files"][role]["sha256"] = sha256_file(model / data["files"][role]["path"])
    (model / "manifest.json").write_text(json.dumps(data))


# --- backends agree -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_onnxruntime_and_torch_give_the_same_probabilities(model_dir, tmp_path, batch):
    ort_engine = load_engine(model_dir, backend="onnxruntime", device="cpu", cache_dir=tmp_path)
    torch_engine = load_engine(model_dir, backend="torch", device="cpu")
    clip, geo, valid = _inputs(ort_engine, batch, seed=batch)
    a = ort_engine.predict(clip, geo, valid)
    b = torch_engine.predict(clip, geo, valid)
    assert a.shape == b.shape == (batch, 8) and a.dtype == np.float32
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(a - b).max() < 1e-4


def test_engine_carries_what_the_pipeline_needs(model_dir, tmp_path):
    engine = load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    manifest = load_manifest(model_dir)
    assert engine.class_names == tuple(manifest.class_names)
    assert engine.window_length == 3 and engine.preprocess_spec == manifest.preprocess
    assert engine.backend == "onnxruntime:cpu"


def test_large_batches_are_split_and_give_the_same_result(model_dir, tmp_path):
    engine = load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    clip, geo, valid = _inputs(engine, 7)
    whole = engine.predict(clip, geo, valid)
    engine.max_batch = 2
    np.testing.assert_allclose(engine.predict(clip, geo, valid), whole, atol=1e-6)
    assert engine.predict(clip[:0], geo[:0], valid[:0]).shape == (0, 8)


def test_wrong_input_shapes_are_named(model_dir, tmp_path):
    engine = load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    clip, geo, valid = _inputs(engine, 2)
    with pytest.raises(ValueError, match="clip has shape"):
        engine.predict(clip[:, :, :2], geo, valid)
    with pytest.raises(ValueError, match="batch sizes differ"):
        engine.predict(clip, geo[:1], valid)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize("name", ["clip", "geo", "geo_valid"])
def test_inputs_that_are_not_finite_are_named(model_dir, tmp_path, backend, name):
    engine = load_engine(model_dir, backend=backend, device="cpu", cache_dir=tmp_path)
    inputs = dict(zip(("clip", "geo", "geo_valid"), _inputs(engine, 3)))
    inputs[name] = inputs[name].copy()
    inputs[name].reshape(-1)[1] = np.nan if name != "geo" else np.inf
    with pytest.raises(ValueError, match=f"^{name} holds values that are not finite"):
        engine.predict(inputs["clip"], inputs["geo"], inputs["geo_valid"])


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_predict_after_close_says_the_engine_is_closed(model_dir, tmp_path, backend):
    from fer_ros.engine import EngineClosed
    engine = load_engine(model_dir, backend=backend, device="cpu", cache_dir=tmp_path)
    clip, geo, valid = _inputs(engine, 2)
    engine.predict(clip, geo, valid)
    engine.close()
    with pytest.raises(EngineClosed, match=f"engine closed: model 'tiny_test_model' on {backend}:cpu"):
        engine.predict(clip, geo, valid)
    assert issubclass(EngineClosed, RuntimeError)


@pytest.mark.parametrize("num_threads", [-1, "2", 2.5, True, None])
def test_num_threads_must_be_an_integer_of_zero_or_more(model_dir, tmp_path, num_threads):
    for backend in ("onnxruntime", "torch", "auto"):
        with pytest.raises(ValueError, match=rf"num_threads must be an integer >= 0 \(0 = the backend's own "
                                             rf"choice\), got {re.escape(repr(num_threads))}"):
            load_engine(model_dir, backend=backend, device="cpu", cache_dir=tmp_path, num_threads=num_threads)
    engine = load_engine(model_dir, backend="onnxruntime", device="cpu", cache_dir=tmp_path, num_threads=np.int64(1))
    assert engine.session.get_session_options().intra_op_num_threads == 1


# --- engine cache ---------------------------------------------------------------------------------------------
def test_second_load_reuses_the_cached_engine(model_dir, tmp_path):
    first = load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    second = load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    assert first.cache_hit is False and second.cache_hit is True
    entries = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "entry.json").is_file()
    clip, geo, valid = _inputs(first, 4)
    np.testing.assert_allclose(first.predict(clip, geo, valid), second.predict(clip, geo, valid), atol=1e-6)


def test_the_first_load_runs_as_fast_a_graph_as_a_cached_one(model_dir, tmp_path):
    """The load that fills the cache saves the portable graph but runs, like every later load, with every
    optimisation (the processor's layouts too), not the saving session's reduced level."""
    import onnxruntime as ort
    first = load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    second = load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    assert first.cache_hit is False and second.cache_hit is True
    for engine in (first, second):
        options = engine.session.get_session_options()
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # its threads sleep between runs instead of spinning on the cores the landmarker needs
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_a_changed_model_invalidates_the_cache(model_copy, tmp_path):
    import torch

    from fer_ros.export import export_model, load_torch_model
    cache = tmp_path / "cache"
    old = load_engine(model_copy, backend="onnxruntime", cache_dir=cache)
    old_entry = {p.name for p in cache.iterdir()}
    model, manifest = load_torch_model(model_copy)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    export_model(model, manifest, model_copy)  # same name, new weights
    new = load_engine(model_copy, backend="onnxruntime", cache_dir=cache)
    assert new.cache_hit is False
    entries = {p.name for p in cache.iterdir()}
    assert len(entries) == 1 and entries != old_entry  # the stale entry is gone
    clip, geo, valid = _inputs(new, 3)
    assert np.abs(new.predict(clip, geo, valid) - old.predict(clip, geo, valid)).max() > 1e-4
    assert load_engine(model_copy, backend="onnxruntime", cache_dir=cache).cache_hit is True


def test_a_damaged_cache_entry_is_rebuilt_not_loaded(model_dir, tmp_path):
    load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    entry = next(p for p in tmp_path.iterdir() if p.is_dir())
    built = next(p for p in entry.iterdir() if p.suffix == ".onnx")
    built.write_bytes(b"not an onnx graph")
    engine = load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    assert engine.cache_hit is False
    clip, geo, valid = _inputs(engine, 2)
    assert np.isfinite(engine.predict(clip, geo, valid)).all()


def _entry(cache: Path) -> Path:
    (entry,) = [p for p in cache.iterdir() if p.is_dir() or p.is_symlink()]
    return entry


@pytest.mark.parametrize("opening", ["group-writable file", "world-writable folder", "other owner", "symlink"])
def test_a_cache_entry_others_could_have_written_is_built_again_not_loaded(model_dir, tmp_path, opening):
    cache = tmp_path / "cache"
    load_engine(model_dir, backend="onnxruntime", cache_dir=cache)
    entry = _entry(cache)
    if opening == "group-writable file":
        built = next(p for p in entry.iterdir() if p.suffix == ".onnx")
        built.chmod(0o664)
    elif opening == "world-writable folder":
        entry.chmod(0o777)
    elif opening == "other owner":
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        os.chown(entry, 4242, -1)
    else:
        elsewhere = tmp_path / "elsewhere"
        shutil.copytree(entry, elsewhere)
        shutil.rmtree(entry)
        entry.symlink_to(elsewhere, target_is_directory=True)
    engine = load_engine(model_dir, backend="onnxruntime", cache_dir=cache)
    assert engine.cache_hit is False
    assert any("engine cache entry not trusted" in n for n in engine.notes), engine.notes
    rebuilt = _entry(cache)
    assert not rebuilt.is_symlink() and rebuilt.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in rebuilt.iterdir())
    assert load_engine(model_dir, backend="onnxruntime", cache_dir=cache).cache_hit is True


def test_an_entry_built_under_a_group_writable_umask_is_reused(model_dir, tmp_path):
    old = os.umask(0o002)
    try:
        load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    finally:
        os.umask(old)
    assert load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path).cache_hit is True


def test_an_unwritable_cache_folder_loads_without_cache(model_dir, tmp_path):
    blocker = tmp_path / "file_not_folder"
    blocker.write_text("x")
    engine = load_engine(model_dir, backend="onnxruntime", cache_dir=blocker / "cache")
    assert engine.cache_hit is None and any("cache unusable" in n for n in engine.notes)


def test_a_cache_entry_that_vanishes_while_it_is_built_loads_the_model_without_it(model_dir, tmp_path,
                                                                                 monkeypatch):
    """The optimised graph cannot be written (its folder removed, a full disk): a cache fault, not the model's."""
    from fer_ros.engine.cache import CacheEntry
    prepare = CacheEntry.prepare

    def prepare_then_vanish(self):
        path = prepare(self)
        shutil.rmtree(path)
        return path
    monkeypatch.setattr(CacheEntry, "prepare", prepare_then_vanish)
    engine = load_engine(model_dir, backend="onnxruntime", cache_dir=tmp_path)
    assert engine.cache_hit is None
    assert any("engine cache unusable" in n for n in engine.notes), engine.notes
    clip, geo, valid = _inputs(engine, 2)
    assert np.isfinite(engine.predict(clip, geo, valid)).all()


def test_a_cache_entry_with_nothing_built_is_not_recorded(tmp_path):
    from fer_ros.engine.cache import ENTRY_FILE, CacheEntry
    entry = CacheEntry(tmp_path, "m", "tensorrt-ort", {"onnx_sha256": "a", "fp16": True})
    entry.prepare()
    with pytest.raises(FileNotFoundError, match="nothing was built; not recorded"):
        entry.commit()
    with pytest.raises(FileNotFoundError, match="built file model.plan missing"):
        entry.commit(["model.plan"])
    assert not (entry.path / ENTRY_FILE).exists() and not entry.is_valid()


def _built(root: Path, name: str = "m", **context):
    from fer_ros.engine.cache import CacheEntry
    entry = CacheEntry(root, name, "tensorrt-ort", {"onnx_sha256": "a", "tensorrt": "10.3.0", "gpu": "NVIDIA Orin",
                                                  "fp16": False, **context})
    entry.prepare()
    entry.file("model.engine").write_bytes(repr(sorted(context.items())).encode())
    entry.commit()
    return entry


def test_entries_for_other_settings_stay_and_only_stale_ones_are_removed(tmp_path):
    """Two nodes running the model with other settings (fp16 and fp32, two GPUs) keep an entry each; a rebuild for
    a new model file or runtime version replaces the entry of its own settings only."""
    fp32 = _built(tmp_path)
    fp16 = _built(tmp_path, fp16=True)
    other_gpu = _built(tmp_path, gpu="NVIDIA GeForce RTX 4090")
    assert fp32.is_valid() and fp16.is_valid() and other_gpu.is_valid()
    retrained = _built(tmp_path, fp16=True, onnx_sha256="b")
    upgraded = _built(tmp_path, tensorrt="10.4.0")
    assert not fp16.path.exists() and not fp32.path.exists()
    assert retrained.is_valid() and upgraded.is_valid() and other_gpu.is_valid()
    in_progress = tmp_path / (other_gpu.prefix + "0" * 16)  # another process's build: no entry.json yet
    in_progress.mkdir()
    _built(tmp_path, gpu="NVIDIA GeForce RTX 4090", onnx_sha256="b")
    assert in_progress.is_dir() and not other_gpu.path.exists()


def test_models_whose_names_read_the_same_in_a_folder_name_keep_an_entry_each(tmp_path):
    """Folder names replace what a file name cannot hold and cut long names: "fer-a" and "fer_a", or two names
    alike in their first 60 characters, read the same there, yet a build of one never removes the other's entry."""
    long_name = "fer_" + "x" * 60
    names = ["fer-a", "fer_a", "fer a", long_name + "1", long_name + "2"]
    entries = []
    for i, name in enumerate(names):
        entries.append(_built(tmp_path, onnx_sha256=str(i), name=name))
        assert all(e.is_valid() for e in entries), [e.path.name for e in entries if not e.path.exists()]
    assert len({e.path for e in entries}) == len(names)
    retrained = _built(tmp_path, onnx_sha256="new", name="fer_a")
    assert not entries[1].path.exists() and retrained.is_valid()
    assert all(e.is_valid() for i, e in enumerate(entries) if i != 1)


def test_two_models_whose_names_differ_in_a_dash_reuse_their_cached_engines(model_copy, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(model_copy, other)
    _rewrite_manifest(model_copy, name="fer-a")
    _rewrite_manifest(other, name="fer_a")
    _rewrite_graph(other, lambda graph: setattr(graph, "doc_string", "another export"))
    cache = tmp_path / "cache"
    models = (model_copy, other)
    first = [load_engine(m, backend="onnxruntime", device="cpu", cache_dir=cache).cache_hit for m in models]
    again = [load_engine(m, backend="onnxruntime", device="cpu", cache_dir=cache).cache_hit for m in models]
    assert first == [False, False] and again == [True, True]
    assert len(list(cache.glob("*/entry.json"))) == 2


def test_default_cache_root_follows_the_environment(monkeypatch, tmp_path):
    from fer_ros.engine.cache import default_root
    monkeypatch.setenv("FER_ROS_ENGINE_CACHE", str(tmp_path / "x"))
    assert default_root() == tmp_path / "x"
    monkeypatch.delenv("FER_ROS_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "fer_ros" / "engines"


# --- bad model files ------------------------------------------------------------------------------------------
def test_missing_model_directory(tmp_path):
    with pytest.raises(ModelError, match=r"model not found: .*nowhere.*fer-train"):
        load_engine(tmp_path / "nowhere", backend="onnxruntime")


def test_folder_without_manifest(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelError, match="no manifest.json"):
        load_engine(tmp_path / "m", backend="onnxruntime")


def test_corrupt_manifest(model_copy):
    (model_copy / "manifest.json").write_text("{ not json")
    with pytest.raises(ModelError, match=r"manifest.json: not a readable JSON manifest"):
        load_engine(model_copy, backend="onnxruntime")


@pytest.mark.parametrize("backend,role,name", [("onnxruntime", "onnx", "model.onnx"),
                                               ("torch", "state_dict", "model.pt")])
def test_missing_model_file(model_copy, backend, role, name):
    (model_copy / name).unlink()
    with pytest.raises(ModelError, match=rf"{name}: the {role} file of model .* is missing"):
        load_engine(model_copy, backend=backend)


def test_altered_model_file_fails_its_sha256(model_copy):
    data = bytearray((model_copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"model.onnx: sha256 .* does not match the manifest"):
        load_engine(model_copy, backend="onnxruntime")


def test_corrupt_onnx_graph_with_matching_sha(model_copy):
    (model_copy / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
    _resign(model_copy, "onnx")
    with pytest.raises(ModelError, match="onnxruntime cannot load this graph"):
        load_engine(model_copy, backend="onnxruntime")


def test_corrupt_state_dict_with_matching_sha(model_copy):
    (model_copy / "model.pt").write_bytes(b"garbage")
    _resign(model_copy, "state_dict")
    with pytest.raises(ModelError, match="cannot load the torch state dict"):
        load_engine(model_copy, backend="torch")


def test_a_state_dict_carrying_code_is_refused_and_never_run(model_copy, tmp_path):
    import pickle
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(model_copy / "model.pt", "wb") as f:
        pickle.dump({"weight": Evil()}, f, protocol=2)
    _resign(model_copy, "state_dict")
    with pytest.raises(ModelError, match="cannot load the torch state dict"):
        load_engine(model_copy, backend="torch")
    assert not marker.exists()


def _edit_manifest(model: Path, edit) -> None:
    path = model / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("what,edit", [
    ("files.onnx", lambda d: d["files"]["onnx"].pop("sha256")),
    ("files.onnx", lambda d: d["files"]["onnx"].pop("path")),
    ("files.onnx", lambda d: d["files"].__setitem__("onnx", "model.onnx")),
    ("files is not an object", lambda d: d.__setitem__("files", ["model.onnx"])),
    ("preprocess is not an object", lambda d: d.__setitem__("preprocess", [])),
    ("arch_cfg is not an object", lambda d: d.__setitem__("arch_cfg", [])),
    ("preprocess.clip is not an object", lambda d: d["preprocess"].__setitem__("clip", "lbp")),
    ("preprocess.clip.frames", lambda d: d["preprocess"]["clip"].__setitem__("frames", "3")),
    ("class_names is not a list", lambda d: d.__setitem__("class_names", "anger")),
    ("files.onnx.path holds a NUL character", lambda d: d["files"]["onnx"].__setitem__("path", "model\0.onnx")),
    (r"arch_cfg.app.widths is not a list of 4 positive integers \(as agn3d_c3d takes\)",
     lambda d: d["arch_cfg"]["app"].__setitem__("widths", [4, 8, 8])),
    (r"arch_cfg.app.widths is not a list of 4 positive integers",
     lambda d: d["arch_cfg"]["app"].__setitem__("widths", [4, 8, 0, 8])),
    (r"arch_cfg.app.widths is not a list of 2 or more positive integers \(as agn3d_res takes\)",
     lambda d: (d.__setitem__("arch", "agn3d_res"), d["arch_cfg"]["app"].__setitem__("widths", [24]))),
    (r"arch_cfg.app.widths is not a list of 2 or more positive integers",
     lambda d: (d.__setitem__("arch", "agn3d_res"), d["arch_cfg"]["app"].__setitem__("widths", []))),
    (r"arch_cfg.app.widths is not a list of 2 or more positive integers",
     lambda d: (d.__setitem__("arch", "agn3d_res"), d["arch_cfg"]["app"].__setitem__("widths", [24, "48"]))),
])
def test_a_malformed_manifest_is_a_model_error_naming_the_field(model_copy, what, edit):
    _edit_manifest(model_copy, edit)
    with pytest.raises(ModelError, match=rf"manifest.json: malformed manifest \(.*{what}"):
        load_engine(model_copy, backend="auto", device="cpu")


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_app_widths_the_network_cannot_take_are_refused_on_every_backend(model_copy, backend):
    """agn3d_res reads two widths at least: fewer is refused by the manifest check, not an IndexError."""
    _edit_manifest(model_copy, lambda d: (d.__setitem__("arch", "agn3d_res"),
                                          d["arch_cfg"]["app"].__setitem__("widths", [24])))
    with pytest.raises(ModelError, match=r"manifest.json: malformed manifest \(arch_cfg.app.widths"):
        load_engine(model_copy, backend=backend, device="cpu")


@pytest.mark.parametrize("app,error", [({"widths": [24]}, "IndexError"), ({"hidden": -1}, "RuntimeError")])
def test_an_arch_cfg_that_builds_no_network_is_a_model_error(model_copy, app, error):
    """What the manifest check lets through and the network's constructor then refuses (torch's own errors too)
    is a ModelError naming the manifest, for every caller of the torch network."""
    from fer_ros.export import build_network, load_torch_model
    manifest = load_manifest(model_copy)
    manifest.arch = "agn3d_res"
    manifest.arch_cfg = dict(manifest.arch_cfg, app=app)
    for load in (build_network, lambda m: load_torch_model(m.directory, m)):
        with pytest.raises(ModelError, match=rf"manifest.json: arch 'agn3d_res' with its arch_cfg does not build a "
                                             rf"network \({error}"):
            load(manifest)


def test_a_manifest_nested_too_deep_for_the_json_reader_is_a_model_error(model_copy):
    (model_copy / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelError, match=r"manifest.json: not a readable JSON manifest \(maximum recursion depth"):
        load_engine(model_copy, backend="onnxruntime")


def test_a_model_file_that_is_a_link_loop_is_a_model_error(model_copy):
    (model_copy / "model.onnx").unlink()
    (model_copy / "model.onnx").symlink_to("model.onnx")
    with pytest.raises(ModelError, match=r"model.onnx.* (cannot be followed to a file|is missing)"):
        load_engine(model_copy, backend="onnxruntime")


@pytest.mark.parametrize("path", ["../model.onnx", "/etc/hostname", "sub/../../model.onnx"])
def test_a_model_file_outside_the_model_directory_is_refused(model_copy, path):
    (model_copy.parent / "model.onnx").write_bytes((model_copy / "model.onnx").read_bytes())
    _edit_manifest(model_copy, lambda d: d["files"]["onnx"].__setitem__("path", path))
    with pytest.raises(ModelError, match="lies outside the model directory"):
        load_engine(model_copy, backend="onnxruntime")


@pytest.mark.parametrize("key,value,what", [("frames", 4, "frames per clip"), ("size", 64, "crop size")])
def test_a_network_built_for_other_clips_than_the_preprocessing_makes_is_refused(model_copy, key, value, what):
    _edit_manifest(model_copy, lambda d: d["arch_cfg"].__setitem__(key, value))
    with pytest.raises(ModelError, match=f"the network takes {value} {what} but the preprocessing spec makes"):
        load_engine(model_copy, backend="onnxruntime")


@pytest.mark.parametrize("backend,what,edit", [
    ("onnxruntime", r"clip.channels says \[3\]", lambda d: d["preprocess"]["clip"].__setitem__("channels", [3])),
    ("torch", "arch_cfg.app is not an object", lambda d: d["arch_cfg"].__setitem__("app", "x")),
    ("torch", "arch_cfg.geo is not an object", lambda d: d["arch_cfg"].__setitem__("geo", [4])),
    ("onnxruntime", "arch_cfg.geo_channels is not a positive integer",
     lambda d: d["arch_cfg"].__setitem__("geo_channels", "two")),
    ("onnxruntime", "arch_cfg.size is not a positive integer", lambda d: d["arch_cfg"].__setitem__("size", 32.5)),
    ("torch", "arch_cfg does not build a network .*unexpected keyword argument 'bogus'",
     lambda d: d["arch_cfg"].__setitem__("bogus", 1)),
    ("torch", "arch_cfg does not build a network .*unexpected keyword argument 'depth'",
     lambda d: d["arch_cfg"]["app"].__setitem__("depth", 2)),
])
def test_a_manifest_field_the_code_cannot_use_is_a_model_error_naming_it(model_copy, backend, what, edit):
    _edit_manifest(model_copy, edit)
    with pytest.raises(ModelError, match=rf"manifest.json: .*{what}"):
        load_engine(model_copy, backend=backend, device="cpu")


@pytest.mark.parametrize("key,value,what", [("geo_size", 16, "px difference images"),
                                            ("geo_channels", 3, "difference image channels")])
def test_a_network_built_for_other_difference_images_than_the_preprocessing_makes_is_refused(model_copy, key, value,
                                                                                              what):
    _edit_manifest(model_copy, lambda d: d["arch_cfg"].__setitem__(key, value))
    for backend in ("onnxruntime", "torch"):
        with pytest.raises(ModelError, match=rf"the network takes {value} {what} but the preprocessing spec makes "
                                             rf"\d+ \(arch_cfg.{key}\)"):
            load_engine(model_copy, backend=backend, device="cpu")


def _rewrite_graph(model: Path, edit) -> None:
    """Edit model.onnx (`edit(graph)` on its GraphProto) and record its new sha256."""
    import onnx
    proto = onnx.load(str(model / "model.onnx"))
    edit(proto.graph)
    onnx.save(proto, str(model / "model.onnx"))
    _resign(model, "onnx")


def _seven_classes(graph) -> None:
    """probs keeps the first 7 of the 8 classes."""
    from onnx import TensorProto, helper
    for node in graph.node:
        node.output[:] = ["probs_all" if o == "probs" else o for o in node.output]
    graph.initializer.extend([helper.make_tensor("first", TensorProto.INT64, [1], [0]),
                              helper.make_tensor("last", TensorProto.INT64, [1], [7]),
                              helper.make_tensor("axis", TensorProto.INT64, [1], [1])])
    graph.node.append(helper.make_node("Slice", ["probs_all", "first", "last", "axis"], ["probs"]))
    graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7


def _valid_renamed(graph) -> None:
    """The input geo_valid is called valid."""
    for node in graph.node:
        node.input[:] = ["valid" if i == "geo_valid" else i for i in node.input]
    next(i for i in graph.input if i.name == "geo_valid").name = "valid"


@pytest.mark.parametrize("edit,what", [
    (_seven_classes, r"output 'probs' is \(batch, 7\), one probability per class of the manifest's 8 is \(B, 8\)"),
    (_valid_renamed, "input 'valid' is not one the network takes; no input 'geo_valid'"),
])
@pytest.mark.parametrize("cached", [False, True])
def test_a_graph_whose_inputs_or_outputs_differ_from_the_manifest_is_refused_at_load(model_copy, tmp_path, edit, what,
                                                                                    cached):
    _rewrite_graph(model_copy, edit)
    with pytest.raises(ModelError, match=rf"model.onnx: the graph does not fit its manifest \({what}.*re-export"):
        load_engine(model_copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path if cached else None)


def _fixed_batch(graph) -> None:
    """Every input and output takes batches of exactly 1 face."""
    for value in [*graph.input, *graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1


@pytest.mark.parametrize("cached", [False, True])
def test_a_graph_with_a_fixed_batch_is_refused_at_load(model_copy, tmp_path, cached):
    """It would load, then fail on every frame with two faces."""
    _rewrite_graph(model_copy, _fixed_batch)
    with pytest.raises(ModelError, match=r"model.onnx: the graph does not fit its manifest \(input 'clip' has a fixed "
                                         r"batch of 1; the graph must take any number of faces.*re-export the model"):
        load_engine(model_copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path if cached else None)


def _other_weights(model: Path, name: str) -> bytes:
    """The bytes of the model's file `name` with other weights (a graph or state dict that loads and runs)."""
    if name == "model.pt":
        import io

        import torch
        state = torch.load(model / name, weights_only=True)
        buffer = io.BytesIO()
        torch.save({k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}, buffer)
        return buffer.getvalue()
    import onnx
    from onnx import numpy_helper
    proto = onnx.load(str(model / name))
    for t in proto.graph.initializer:
        values = numpy_helper.to_array(t)
        if values.dtype == np.float32 and values.size > 1:
            t.CopyFrom(numpy_helper.from_array(values + 0.5, t.name))
    return proto.SerializeToString()


@pytest.mark.parametrize("backend,name", [("onnxruntime", "model.onnx"), ("torch", "model.pt")])
def test_a_model_file_changed_after_its_check_is_neither_run_nor_cached(model_copy, tmp_path, monkeypatch, backend,
                                                                        name):
    """The file changes between the manifest's sha256 check and the runtime's load: the runtime loads the bytes
    it checked, so the change is refused, and the engine cache holds nothing under the checked digest."""
    import fer_ros.engine
    swapped, check = _other_weights(model_copy, name), fer_ros.engine.load_manifest

    def check_then_swap(model):
        manifest = check(model)
        (model_copy / name).write_bytes(swapped)
        return manifest
    monkeypatch.setattr(fer_ros.engine, "load_manifest", check_then_swap)
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match=rf"{name}: sha256 .* does not match the manifest"):
        load_engine(model_copy, backend=backend, device="cpu", cache_dir=cache)
    assert not cache.exists() or not list(cache.glob("*/entry.json"))


def test_a_graph_changed_after_it_was_read_is_not_what_runs(model_dir, model_copy, tmp_path, monkeypatch):
    """The change comes after the runtime read the checked bytes: the engine and its cache entry run the checked
    graph."""
    from fer_ros.engine import onnxruntime_backend
    swapped, read = _other_weights(model_copy, "model.onnx"), onnxruntime_backend.read_model_file

    def read_then_swap(manifest, role):
        data = read(manifest, role)
        (model_copy / "model.onnx").write_bytes(swapped)
        return data
    monkeypatch.setattr(onnxruntime_backend, "read_model_file", read_then_swap)
    engine = load_engine(model_copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "cache")
    monkeypatch.undo()
    (model_copy / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    cached = load_engine(model_copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "cache")
    original = load_engine(model_dir, backend="onnxruntime", device="cpu", cache_dir=None)
    assert engine.cache_hit is False and cached.cache_hit is True
    clip, geo, valid = _inputs(original, 4)
    for e in (engine, cached):
        np.testing.assert_allclose(e.predict(clip, geo, valid), original.predict(clip, geo, valid), atol=1e-6)


def test_a_graph_for_another_crop_than_the_manifest_says_is_refused_at_load(model_copy, tmp_path):
    """A manifest consistent in itself (network and preprocessing at 40 px) beside a graph that takes 32 px crops."""
    def crop_40(d):
        d["arch_cfg"]["size"] = 40
        d["preprocess"]["crop"]["size"] = 40
    _edit_manifest(model_copy, crop_40)
    with pytest.raises(ModelError, match=r"the graph does not fit its manifest \(input 'clip' is "
                                         r"\(batch, 1, 3, 32, 32\), the manifest's network takes \(B, 1, 3, 40, 40\)"):
        load_engine(model_copy, backend="onnxruntime", device="cpu", cache_dir=tmp_path)


def _weights_beside(model: Path) -> None:
    """model.onnx with its weights moved to weights.bin beside it (ONNX external data), its sha256 recorded."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data
    proto = onnx.load(str(model / "model.onnx"))
    convert_model_to_external_data(proto, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.save(proto, str(model / "model.onnx"))
    _resign(model, "onnx")


def _branch_weights_beside(model: Path) -> None:
    """model.onnx with an If node whose branches hold a tensor in weights.bin beside it, its sha256 recorded."""
    import onnx
    from onnx import TensorProto, helper
    from onnx.external_data_helper import set_external_data
    weight = helper.make_tensor("branch_w", TensorProto.FLOAT, [4], np.ones(4, np.float32).tobytes(), raw=True)
    set_external_data(weight, location="weights.bin")
    out = helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, [4])
    branch = helper.make_graph([helper.make_node("Identity", ["branch_w"], ["branch_out"])], "branch", [], [out],
                               initializer=[weight])

    def add_branch(graph):
        graph.initializer.append(helper.make_tensor("branch_cond", TensorProto.BOOL, [], [True]))
        graph.node.append(helper.make_node("If", ["branch_cond"], ["branch_result"], then_branch=branch,
                                           else_branch=branch))
    _rewrite_graph(model, add_branch)


@pytest.mark.parametrize("move", [_weights_beside, _branch_weights_beside])
def test_a_graph_that_reads_its_weights_from_another_file_is_refused(model_copy, tmp_path, move):
    """No sha256 covers weights.bin: a graph must hold its weights itself, whichever backend runs the model."""
    move(model_copy)
    assert (model_copy / "weights.bin").is_file()
    for backend in ("onnxruntime", "torch"):
        with pytest.raises(ModelError, match=r"model.onnx: the onnx graph reads \d+ weight tensor\(s\) .* from "
                                             r"another file.*must hold its weights in the one file"):
            load_engine(model_copy, backend=backend, device="cpu", cache_dir=tmp_path)


def test_a_model_file_reached_through_a_link_out_of_the_model_directory_is_refused(model_copy, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (model_copy / "model.pt").rename(elsewhere / "model.pt")
    (model_copy / "model.pt").symlink_to(elsewhere / "model.pt")
    with pytest.raises(ModelError, match=r"the state_dict file 'model.pt' leads through a link to .*elsewhere/model.pt, "
                                         r"outside the model directory"):
        load_engine(model_copy, backend="torch", device="cpu")
    (model_copy / "model.onnx").rename(elsewhere / "model.onnx")
    (model_copy / "sub").symlink_to(elsewhere)
    _edit_manifest(model_copy, lambda d: d["files"]["onnx"].__setitem__("path", "sub/model.onnx"))
    with pytest.raises(ModelError, match=r"the onnx file 'sub/model.onnx' leads through a link"):
        load_manifest(model_copy, verify_files=False)


def test_a_model_folder_of_links_to_a_model_is_that_model(model_dir, tmp_path):
    """As a colcon --symlink-install share folder: each file a link into the model's own folder."""
    linked = tmp_path / "share" / "model"
    linked.mkdir(parents=True)
    for f in model_dir.iterdir():
        (linked / f.name).symlink_to(f)
    assert load_manifest(linked).directory == model_dir.resolve()
    for backend in ("onnxruntime", "torch"):
        assert load_engine(linked, backend=backend, device="cpu", cache_dir=tmp_path / "cache").class_names


def test_auto_runs_a_model_without_an_onnx_graph_on_torch(model_copy):
    _edit_manifest(model_copy, lambda d: d["files"].pop("onnx"))
    engine = load_engine(model_copy, backend="auto", device="cpu")
    assert engine.backend.startswith("torch")
    assert any("onnxruntime" in n and "no ONNX graph" in n for n in engine.notes)


def test_class_list_that_differs_from_the_code(model_copy):
    names = json.loads((model_copy / "manifest.json").read_text())["class_names"]
    _rewrite_manifest(model_copy, class_names=names[::-1])
    with pytest.raises(ModelError, match="class names .* do not match"):
        load_engine(model_copy, backend="onnxruntime")


def test_preprocessing_that_differs_from_the_code(model_copy):
    pre = json.loads((model_copy / "manifest.json").read_text())["preprocess"]
    pre["lbp"] = dict(pre["lbp"], radius=2) if isinstance(pre.get("lbp"), dict) else {"radius": 2}
    _rewrite_manifest(model_copy, preprocess=pre)
    with pytest.raises(ModelError, match="manifest.json"):
        load_engine(model_copy, backend="onnxruntime")


@pytest.mark.parametrize("key,value", [("face_scale", float("inf")), ("margin", float("nan")),
                                       ("eye_y_frac", float("-inf"))])
def test_a_crop_with_a_value_that_is_not_finite_is_refused(model_copy, key, value):
    """JSON's Infinity and NaN load as floats: the crop of such a manifest is refused before any face is cut."""
    _edit_manifest(model_copy, lambda d: d["preprocess"]["crop"].__setitem__(key, value))
    with pytest.raises(ModelError, match=rf"manifest.json: .*crop unusable: crop {key} must be a finite number"):
        load_engine(model_copy, backend="onnxruntime")


def test_a_clip_input_that_differs_from_the_networks_is_refused(model_copy):
    pre = json.loads((model_copy / "manifest.json").read_text())["preprocess"]
    shipped = dict(pre["clip"], input="lbp+gray_norm+delta_norm", channels=3, kinds=["lbp", "gray_norm", "delta_norm"])
    _rewrite_manifest(model_copy, preprocess=dict(pre, clip=shipped))
    with pytest.raises(ModelError, match="the network takes clip input 'lbp' but the preprocessing spec makes "
                                         "'lbp\\+gray_norm\\+delta_norm'"):
        load_engine(model_copy, backend="onnxruntime")


def test_unknown_backend_and_device():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        load_engine("x", backend="tensorflow")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        load_engine("x", backend="onnxruntime", device="gpu0")


# --- GPU backends on a machine without a GPU ------------------------------------------------------------------
@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_gpu_backends_without_a_gpu_fail_clearly(model_dir):
    with pytest.raises(BackendUnavailable, match="sees no CUDA GPU"):
        load_engine(model_dir, backend="torch", device="cuda")
    with pytest.raises(BackendUnavailable, match="backend tensorrt is not available here"):
        load_engine(model_dir, backend="tensorrt")
    with pytest.raises(BackendUnavailable, match="no backend can run on cuda"):
        load_engine(model_dir, backend="auto", device="cuda")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_auto_falls_back_to_the_cpu_and_says_why(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "nvidia_driver_visible", lambda: True)  # a driver, but no usable GPU backend
    engine = load_engine(model_dir, backend="auto", cache_dir=tmp_path)
    assert engine.backend == "onnxruntime:cpu"
    assert engine.notes[0] == "auto picked onnxruntime:cpu (no GPU backend loaded)"
    assert any("tensorrt" in n for n in engine.notes) and any("torch on cuda:0" in n for n in engine.notes)
    cpu_only = load_engine(model_dir, backend="auto", device="cpu", cache_dir=tmp_path)
    assert "device cpu requested" in cpu_only.notes[0]


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_auto_on_cuda_names_every_gpu_step_and_what_it_lacks(model_dir, tmp_path, monkeypatch):
    """onnxruntime on the GPU is a step of auto too: without its CUDA provider the message says onnxruntime-gpu
    would bring it; backend auto, which is choosing, is not what it suggests."""
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("CPUExecutionProvider",))
    with pytest.raises(BackendUnavailable) as exc:
        load_engine(model_dir, backend="auto", device="cuda", cache_dir=tmp_path)
    message = str(exc.value)
    steps = message.split(" | ")
    assert len(steps) == 3 and steps[0].startswith("no backend can run on cuda: tensorrt on cuda:0: ")
    assert steps[1].startswith("onnxruntime on cuda:0: this onnxruntime has no CUDA execution provider")
    assert "onnxruntime-gpu" in steps[1] and steps[2].startswith("torch on cuda:0: ")
    assert "backend auto" not in message and message.endswith("; use device cpu (or device auto, which falls back to "
                                                              "the CPU)")
    monkeypatch.setattr(hardware, "nvidia_driver_visible", lambda: True)
    engine = load_engine(model_dir, backend="auto", cache_dir=tmp_path)
    assert engine.backend == "onnxruntime:cpu"
    assert any(n.startswith("not onnxruntime on cuda:0") and "onnxruntime-gpu" in n for n in engine.notes)
    assert not any("backend auto" in n for n in engine.notes), engine.notes


# --- TensorRT's cache keys and fallbacks, without TensorRT ---------------------------------------------------------
def _trt_machine(monkeypatch, gpu="NVIDIA Orin", capability="8.7", trt="10.3.0", runtime="1.20.0"):
    """Make tensorrt_backend see a GPU and TensorRT versions (nothing is imported or built)."""
    from fer_ros.engine import tensorrt_backend
    monkeypatch.setattr(hardware, "gpu_info", lambda index=0: {"name": gpu, "capability": capability})
    versions = {"tensorrt": trt, "onnxruntime": runtime, "torch_tensorrt": runtime}
    monkeypatch.setattr(hardware, "module_version", lambda name: versions.get(name))
    return tensorrt_backend


def test_a_tensorrt_plan_is_keyed_by_everything_it_depends_on(model_dir, monkeypatch):
    from fer_ros.engine.cache import CacheEntry
    manifest = load_manifest(model_dir)

    def key(fp16=True, runtime="onnxruntime", **machine):
        trt = _trt_machine(monkeypatch, **machine)
        return CacheEntry(Path("/c"), manifest.name, "tensorrt-ort", trt._context(manifest, runtime, 0, fp16)).key

    base = key()
    assert key() == base  # the same machine and model find the same plan
    changed = [key(fp16=False), key(gpu="NVIDIA GeForce RTX 4090"), key(capability="8.9"), key(trt="10.4.0"),
               key(runtime="1.21.0"), key(runtime="torch_tensorrt")]
    assert len({base, *changed}) == 1 + len(changed)
    other = _trt_machine(monkeypatch)
    retrained = replace(manifest, files={**manifest.files, "onnx": {**manifest.files["onnx"], "sha256": "0" * 64}})
    assert CacheEntry(Path("/c"), manifest.name, "tensorrt-ort",
                      other._context(retrained, "onnxruntime", 0, True)).key != base
    context = other._context(manifest, "onnxruntime", 0, True)
    assert context["onnx_sha256"] == manifest.files["onnx"]["sha256"]
    assert context["batch"] == [1, other.OPT_FACES, other.MAX_FACES]


@pytest.mark.parametrize("change", ["state_dict", "arch_cfg"])
def test_a_torch_tensorrt_engine_is_keyed_by_the_weights_and_network_it_is_compiled_from(model_dir, tmp_path,
                                                                                        monkeypatch, change):
    """torch-tensorrt compiles model.pt into the network the manifest describes, not model.onnx: new weights or a
    new arch_cfg beside the same model.onnx is another engine, whose build replaces the old one's entry."""
    from fer_ros.engine.cache import CacheEntry
    trt = _trt_machine(monkeypatch)
    manifest = load_manifest(model_dir)
    if change == "state_dict":
        changed = replace(manifest, files={**manifest.files,
                                           "state_dict": {**manifest.files["state_dict"], "sha256": "0" * 64}})
    else:
        changed = replace(manifest, arch_cfg={**manifest.arch_cfg, "app": {**manifest.arch_cfg["app"], "hidden": 32}})
    assert changed.files["onnx"] == manifest.files["onnx"]

    def built(m):
        entry = CacheEntry(tmp_path, m.name, "tensorrt-torch", trt._context(m, "torch_tensorrt", 0, True))
        entry.prepare()
        entry.file(trt.TS_FILE).write_bytes(m.to_json().encode())
        entry.commit([trt.TS_FILE])
        return entry
    old = built(manifest)
    new = built(changed)
    assert new.key != old.key and new.is_valid() and not old.path.exists()
    context = trt._context(manifest, "torch_tensorrt", 0, True)
    assert context["state_dict_sha256"] == manifest.files["state_dict"]["sha256"]


def test_tensorrt_on_the_cpu_is_refused_with_what_to_use(model_dir):
    with pytest.raises(BackendUnavailable, match="not on device cpu; use device cuda, or backend onnxruntime"):
        load_engine(model_dir, backend="tensorrt", device="cpu")


def test_tensorrt_goes_through_onnxruntime_where_its_provider_exists(model_dir, tmp_path, monkeypatch):
    trt = _trt_machine(monkeypatch)
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("TensorrtExecutionProvider", "CPUExecutionProvider"))
    seen = {}
    monkeypatch.setattr(trt, "_load_ort", lambda manifest, index, fp16, entry, notes, num_threads=0:
                        seen.setdefault("ort", entry))
    monkeypatch.setattr(trt, "_load_torch_trt", lambda *a: seen.setdefault("torch", a))
    entry = trt.load(load_manifest(model_dir), "cuda:0", True, tmp_path)
    assert set(seen) == {"ort"} and entry.path.parent == tmp_path and "-tensorrt_ort-" in entry.path.name
    assert entry.context["backend"] == "tensorrt:onnxruntime" and entry.context["fp16"] is True


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_a_tensorrt_build_that_fails_under_auto_falls_back_and_says_why(model_dir, tmp_path, monkeypatch):
    from fer_ros.engine import tensorrt_backend

    def build_fails(manifest, device, fp16, cache_dir, num_threads=0):
        raise ModelError("TensorRT could not parse model.onnx: unsupported operator")
    monkeypatch.setattr(hardware, "nvidia_driver_visible", lambda: True)
    monkeypatch.setattr(tensorrt_backend, "load", build_fails)
    engine = load_engine(model_dir, backend="auto", cache_dir=tmp_path)
    assert engine.backend == "onnxruntime:cpu"
    assert any("tensorrt on cuda:0 failed" in n and "unsupported operator" in n for n in engine.notes)


@pytest.mark.parametrize("gap", ["gpu", "tensorrt", "tensorrt unknown"])
def test_a_tensorrt_plan_whose_key_lacks_the_gpu_or_version_is_not_cached(model_dir, tmp_path, monkeypatch, gap):
    trt = _trt_machine(monkeypatch, trt={"tensorrt": None, "tensorrt unknown": "unknown"}.get(gap, "10.3.0"))
    if gap == "gpu":
        monkeypatch.setattr(hardware, "gpu_info", lambda index=0: None)
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("TensorrtExecutionProvider", "CPUExecutionProvider"))
    seen = {}
    monkeypatch.setattr(trt, "_load_ort", lambda manifest, index, fp16, entry, notes, num_threads=0:
                        seen.update(entry=entry, notes=list(notes)))
    trt.load(load_manifest(model_dir), "cuda:0", False, tmp_path)
    assert seen["entry"] is None and not list(tmp_path.iterdir())
    what = "the GPU name" if gap == "gpu" else "the TensorRT version"
    assert any("engine not cached" in n and what in n for n in seen["notes"]), seen["notes"]


def _ort_session_reporting(monkeypatch, providers=None, run_error=None):
    """onnxruntime sessions asked for TensorRT or CUDA are made on the CPU (as onnxruntime does where that
    provider's libraries are missing) and report `providers` (default: what they run on)."""
    import onnxruntime as ort
    real = ort.InferenceSession

    class Session:
        def __init__(self, path, sess_options=None):
            self.inner = real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return list(providers) if providers is not None else self.inner.get_providers()

        def get_inputs(self):
            return self.inner.get_inputs()

        def get_outputs(self):
            return self.inner.get_outputs()

        def run(self, *args, **kwargs):
            if run_error is not None:
                raise run_error
            return self.inner.run(*args, **kwargs)

    def session(path, sess_options=None, providers=None, **kwargs):
        names = [p[0] if isinstance(p, tuple) else p for p in providers or []]
        if names and names[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
            return Session(path, sess_options)
        return real(path, sess_options=sess_options, providers=providers, **kwargs)
    monkeypatch.setattr(ort, "InferenceSession", session)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_a_tensorrt_provider_that_does_not_start_is_refused_not_run_as_tensorrt(model_dir, tmp_path, monkeypatch):
    _trt_machine(monkeypatch, runtime=hardware.module_version("onnxruntime"))
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                            "CPUExecutionProvider"))
    monkeypatch.setattr(hardware, "nvidia_driver_visible", lambda: True)
    _ort_session_reporting(monkeypatch)
    with pytest.raises(BackendUnavailable, match=r"could not start its TensorrtExecutionProvider on cuda:0 \(the "
                                                 r"session would run on CPUExecutionProvider\): the TensorRT "
                                                 r"libraries"):
        load_engine(model_dir, backend="tensorrt", cache_dir=tmp_path)
    assert not list(tmp_path.glob("*/entry.json"))  # no entry recorded for an engine never built
    with pytest.raises(BackendUnavailable, match="could not start its CUDAExecutionProvider on cuda:0"):
        load_engine(model_dir, backend="onnxruntime", device="cuda", cache_dir=tmp_path)
    engine = load_engine(model_dir, backend="auto", cache_dir=tmp_path)
    assert engine.backend == "onnxruntime:cpu"
    assert any("not tensorrt on cuda:0" in n and "TensorrtExecutionProvider" in n for n in engine.notes)
    assert any("not onnxruntime on cuda:0" in n and "CUDAExecutionProvider" in n for n in engine.notes)


def test_the_tensorrt_providers_session_runs_the_cpu_threads_asked_for(model_dir, tmp_path, monkeypatch):
    _trt_machine(monkeypatch, runtime=hardware.module_version("onnxruntime"))
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("TensorrtExecutionProvider", "CPUExecutionProvider"))
    _ort_session_reporting(monkeypatch, providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])
    engine = load_engine(model_dir, backend="tensorrt", cache_dir=tmp_path, num_threads=3)
    assert engine.backend == "tensorrt:onnxruntime"
    assert engine.session.inner.get_session_options().intra_op_num_threads == 3


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
def test_a_graph_onnxruntime_cannot_parse_is_a_model_error_on_its_cuda_provider_too(model_dir, model_copy, tmp_path,
                                                                                   monkeypatch):
    """A graph that does not load on the CPU either is the model's fault; CUDA failing on one that does is the
    backend's."""
    import onnxruntime as ort

    from fer_ros.engine.onnxruntime_backend import provider_name
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("CUDAExecutionProvider", "CPUExecutionProvider"))
    (model_copy / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
    _resign(model_copy, "onnx")
    with pytest.raises(ModelError, match="model.onnx: onnxruntime cannot load this graph .*InvalidProtobuf"):
        load_engine(model_copy, backend="onnxruntime", device="cuda", cache_dir=tmp_path)
    real = ort.InferenceSession

    def session(path, sess_options=None, providers=None, **kwargs):
        if provider_name(providers[0]) == "CUDAExecutionProvider":
            raise RuntimeError("CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version")
        return real(path, sess_options=sess_options, providers=providers, **kwargs)
    monkeypatch.setattr(ort, "InferenceSession", session)
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider could not run this graph on cuda:0 .*driver "
                                                 "version is insufficient.*check the CUDA libraries"):
        load_engine(model_dir, backend="onnxruntime", device="cuda", cache_dir=tmp_path)


def test_a_tensorrt_load_that_writes_no_plan_is_not_called_cached(model_dir, tmp_path, monkeypatch):
    _trt_machine(monkeypatch, runtime=hardware.module_version("onnxruntime"))
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("TensorrtExecutionProvider", "CPUExecutionProvider"))
    _ort_session_reporting(monkeypatch, providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])
    engine = load_engine(model_dir, backend="tensorrt", cache_dir=tmp_path)
    assert engine.backend == "tensorrt:onnxruntime" and engine.cache_hit is None
    assert "cached" not in engine.describe().split(" (")[0]
    assert any("TensorRT wrote no engine file" in n for n in engine.notes), engine.notes
    assert not list(tmp_path.glob("*/entry.json"))


def test_a_tensorrt_plan_is_not_cached_when_the_graph_changed_after_its_check(model_copy, tmp_path, monkeypatch):
    """onnxruntime's TensorRT provider reads model.onnx from its file: a file changed after the manifest's check
    is refused, and no plan is recorded under the checked digest."""
    trt = _trt_machine(monkeypatch, runtime=hardware.module_version("onnxruntime"))
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("TensorrtExecutionProvider", "CPUExecutionProvider"))
    _ort_session_reporting(monkeypatch, providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])
    cache = tmp_path / "cache"

    def build_then_change(engine, batch):  # the plan is written, and the file changes under it
        for folder in cache.iterdir():
            (folder / "plan.engine").write_bytes(b"plan")
        (model_copy / "model.onnx").write_bytes((model_copy / "model.onnx").read_bytes() + b"\0")
    monkeypatch.setattr(trt, "_warm", build_then_change)
    with pytest.raises(ModelError, match="model.onnx: sha256 .* does not match the manifest"):
        load_engine(model_copy, backend="tensorrt", cache_dir=cache)
    assert not list(cache.glob("*/entry.json"))


def test_a_graph_whose_output_differs_from_the_manifest_is_refused_by_the_tensorrt_provider_too(model_copy, tmp_path,
                                                                                              monkeypatch):
    _rewrite_graph(model_copy, _seven_classes)
    _trt_machine(monkeypatch, runtime=hardware.module_version("onnxruntime"))
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("TensorrtExecutionProvider", "CPUExecutionProvider"))
    _ort_session_reporting(monkeypatch, providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(ModelError, match=r"model.onnx: the graph does not fit its manifest \(output 'probs' is "
                                         r"\(batch, 7\)"):
        load_engine(model_copy, backend="tensorrt", cache_dir=tmp_path)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory"), AssertionError("unsupported shape")])
def test_a_tensorrt_compile_that_raises_falls_back_under_auto_and_is_a_clean_error_asked_for(
        model_dir, tmp_path, monkeypatch, error):
    trt = _trt_machine(monkeypatch, runtime="2.5.0")
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("CPUExecutionProvider",))
    monkeypatch.setattr(hardware, "torch_cuda_devices", lambda: 1)  # torch-tensorrt and a GPU, as far as it asks
    monkeypatch.setattr(hardware, "nvidia_driver_visible", lambda: True)

    def compile_fails(*args):
        raise error
    monkeypatch.setattr(trt, "_load_torch_trt", compile_fails)
    engine = load_engine(model_dir, backend="auto", cache_dir=tmp_path)
    assert engine.backend == "onnxruntime:cpu"
    assert any("tensorrt on cuda:0 failed" in n and str(error) in n for n in engine.notes), engine.notes
    with pytest.raises(ModelError, match=f"could not build or load an engine .*{type(error).__name__}: {error}"):
        load_engine(model_dir, backend="tensorrt", cache_dir=tmp_path)


def test_a_tensorrt_warm_up_that_fails_in_onnxruntime_is_a_setup_error(model_dir, tmp_path, monkeypatch):
    """onnxruntime's Fail derives from Exception only: it must not pass open_engine as a raw traceback."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    from fer_ros.runtime import RecognizerSettings, SetupError, open_engine
    _trt_machine(monkeypatch, runtime=hardware.module_version("onnxruntime"))
    monkeypatch.setattr(hardware, "ort_providers", lambda: ("TensorrtExecutionProvider", "CPUExecutionProvider"))
    _ort_session_reporting(monkeypatch, providers=["TensorrtExecutionProvider", "CPUExecutionProvider"],
                           run_error=Fail("TensorRT EP failed to create engine from network"))
    settings = RecognizerSettings(model_path=str(model_dir), backend="tensorrt", device="cuda",
                                  engine_cache_dir=str(tmp_path))
    with pytest.raises(SetupError, match="TensorRT could not build or run an engine on cuda:0 .*Fail: TensorRT EP"):
        open_engine(settings)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_a_gpu_out_of_memory_for_torch_under_auto_falls_back_to_the_cpu(model_dir, tmp_path, monkeypatch):
    import torch
    to = torch.nn.Module.to

    def out_of_memory(self, *args, **kwargs):
        if any("cuda" in str(a) for a in (*args, *kwargs.values())):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return to(self, *args, **kwargs)
    monkeypatch.setattr(torch.nn.Module, "to", out_of_memory)
    monkeypatch.setattr(hardware, "torch_cuda_devices", lambda: 1)
    monkeypatch.setattr(hardware, "nvidia_driver_visible", lambda: True)
    engine = load_engine(model_dir, backend="auto", cache_dir=tmp_path)
    assert engine.backend == "onnxruntime:cpu"
    assert any("torch on cuda:0" in n and "CUDA out of memory" in n for n in engine.notes), engine.notes
    with pytest.raises(BackendUnavailable, match="the model cannot be put on the device .*out of memory"):
        load_engine(model_dir, backend="torch", device="cuda")


def test_auto_without_an_nvidia_driver_goes_to_the_cpu_without_importing_torch(model_dir, tmp_path):
    """No GPU probe (they import torch, ~1.7 s of start-up) where no NVIDIA driver is visible."""
    code = ("import sys; from fer_ros.engine import hardware, load_engine; "
            "hardware.nvidia_driver_visible = lambda: False; "
            f"e = load_engine({str(model_dir)!r}, backend='auto', cache_dir={str(tmp_path)!r}); "
            "print(e.backend, '|', e.notes[0], '|', 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(fer_ros.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "onnxruntime:cpu | auto picked onnxruntime:cpu (no NVIDIA driver) | False"


def test_nvidia_driver_signs(monkeypatch):
    import ctypes.util
    probe = hardware.nvidia_driver_visible.__wrapped__
    monkeypatch.setattr(hardware.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(hardware.os.path, "isdir", lambda path: False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert probe() is False
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libcuda.so.1" if name == "cuda" else None)
    assert probe() is True
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(hardware.glob, "glob", lambda pattern: ["/dev/nvhost-ctrl-gpu"] if "nvhost" in pattern else [])
    assert probe() is True


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine")
def test_a_cuda_gpu_shows_its_driver():
    assert hardware.nvidia_driver_visible()


def test_fp16_on_the_cpu_is_ignored_and_said(model_dir, tmp_path):
    engine = load_engine(model_dir, backend="torch", device="cpu", fp16=True)
    assert engine.fp16 is False and any("fp16 ignored" in n for n in engine.notes)


# --- GPU (runs where a CUDA GPU is present) -------------------------------------------------------------------
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine")
def test_torch_cuda_matches_the_cpu(model_dir, tmp_path):
    cpu = load_engine(model_dir, backend="onnxruntime", device="cpu", cache_dir=tmp_path)
    gpu = load_engine(model_dir, backend="torch", device="cuda")
    half = load_engine(model_dir, backend="torch", device="cuda", fp16=True)
    clip, geo, valid = _inputs(cpu, 8)
    ref = cpu.predict(clip, geo, valid)
    assert gpu.backend.startswith("torch:cuda")
    assert np.abs(gpu.predict(clip, geo, valid) - ref).max() < 1e-4
    assert np.abs(half.predict(clip, geo, valid) - ref).max() < 2e-2


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine")
def test_auto_uses_the_gpu(model_dir, tmp_path):
    engine = load_engine(model_dir, backend="auto", cache_dir=tmp_path)
    assert "cuda" in engine.backend or engine.backend.startswith("tensorrt")


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine")
def test_tensorrt_engine_is_cached_where_tensorrt_exists(model_dir, tmp_path):
    from fer_ros.engine import tensorrt_backend
    ok, why = tensorrt_backend.available()
    if not ok:
        pytest.skip(f"TensorRT not installed: {why}")
    first = load_engine(model_dir, backend="tensorrt", fp16=True, cache_dir=tmp_path)
    second = load_engine(model_dir, backend="tensorrt", fp16=True, cache_dir=tmp_path)
    assert first.cache_hit is False and second.cache_hit is True
    cpu = load_engine(model_dir, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "cpu")
    clip, geo, valid = _inputs(cpu, 8)
    assert np.abs(second.predict(clip, geo, valid) - cpu.predict(clip, geo, valid)).max() < 2e-2


# --- CUDA graphs in the torch backend ---------------------------------------------------------------------------
# Without a GPU the recorded graph is stood in for by a replay that runs the model on the same static buffers
# (what a recorded graph does); the GPU tests at the end record real graphs.
def _stand_in_record(self, model, static):
    """A recorded graph's behaviour on the CPU: replay reads the static inputs as they are at that moment and
    writes the one static output tensor."""
    import torch
    with torch.no_grad():
        out = model(*static).probs.clone()

    def replay():
        with torch.no_grad():
            out.copy_(model(*static).probs)
    self._graphs.append(replay)
    return replay, out


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(GraphedModel, "_record", _stand_in_record)


def test_bucket_is_the_smallest_size_that_holds_the_faces():
    assert [bucket(n, BATCH_PROFILE) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    with pytest.raises(ValueError, match="larger than the largest"):
        bucket(9, BATCH_PROFILE)


def test_the_profile_covers_the_node_default_and_the_bench_batches():
    from fer_ros.runtime import RecognizerSettings
    from fer_ros.tools.bench import BATCHES
    assert RecognizerSettings().max_faces <= max(BATCH_PROFILE)
    assert set(BATCHES) <= set(BATCH_PROFILE)


def test_graphed_engine_gives_the_eager_probabilities(model_dir, stand_in):
    eager = load_engine(model_dir, backend="torch", device="cpu")
    graphed = load_engine(model_dir, backend="torch", device="cpu")
    assert torch_backend.use_cuda_graphs(graphed)
    assert graphed.max_batch == max(BATCH_PROFILE)
    assert any("CUDA graphs for batches of 1, 2, 4, 8" in n for n in graphed.notes)
    # 11 faces: one replay of 8 and one of 4 padded from 3; the sizes in between are padded too
    for batch in (1, 3, 8, 11, 2, 5):
        clip, geo, valid = _inputs(eager, batch, seed=batch)
        np.testing.assert_allclose(graphed.predict(clip, geo, valid), eager.predict(clip, geo, valid), atol=1e-6)


def test_a_smaller_batch_after_a_larger_one_sees_nothing_of_it(model_dir, stand_in):
    engine = load_engine(model_dir, backend="torch", device="cpu")
    torch_backend.use_cuda_graphs(engine, sizes=(4,))
    clip, geo, valid = _inputs(engine, 4, seed=1)
    alone = engine.predict(clip[:1], geo[:1], valid[:1])
    engine.predict(clip * 0 + 1, geo * 0 + 1, valid * 0 + 1)  # fills every row of the static inputs
    again = engine.predict(clip[:1], geo[:1], valid[:1])
    np.testing.assert_array_equal(again, alone)
    static = engine.graphed._static[4]
    assert float(static[2][1:].abs().sum()) == 0.0  # padded rows have no neutral reference


def test_results_of_one_call_survive_the_next(model_dir, stand_in):
    engine = load_engine(model_dir, backend="torch", device="cpu")
    torch_backend.use_cuda_graphs(engine)
    a_in, b_in = _inputs(engine, 2, seed=2), _inputs(engine, 2, seed=3)
    a = engine.predict(*a_in)
    kept = a.copy()
    engine.predict(*b_in)
    np.testing.assert_array_equal(a, kept)


def test_a_graph_that_cannot_be_recorded_leaves_the_engine_eager(model_dir, monkeypatch):
    def fails(self, model, static):
        raise RuntimeError("operation not permitted when stream is capturing")
    monkeypatch.setattr(GraphedModel, "_record", fails)
    engine = load_engine(model_dir, backend="torch", device="cpu")
    assert torch_backend.use_cuda_graphs(engine) is False
    assert engine.graphed is None
    assert any("CUDA graphs not recorded, eager instead" in n and "stream is capturing" in n for n in engine.notes)
    clip, geo, valid = _inputs(engine, 3)
    assert engine.predict(clip, geo, valid).shape == (3, len(engine.class_names))


def test_the_cpu_engine_records_no_graphs(model_dir, monkeypatch):
    def must_not_run(self, *args, **kwargs):
        raise AssertionError("graphs recorded on the CPU")
    monkeypatch.setattr(GraphedModel, "__init__", must_not_run)
    engine = load_engine(model_dir, backend="torch", device="cpu")
    assert engine.graphed is None and not any("CUDA graphs" in n for n in engine.notes)


def test_closing_releases_the_graphs(model_dir, stand_in):
    engine = load_engine(model_dir, backend="torch", device="cpu")
    torch_backend.use_cuda_graphs(engine)
    graphed = engine.graphed
    engine.close()
    assert engine.graphed is None and not graphed._graphs and not graphed._static


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine")
@pytest.mark.parametrize("fp16", [False, True])
def test_recorded_graphs_match_the_cpu(model_dir, tmp_path, fp16):
    cpu = load_engine(model_dir, backend="onnxruntime", device="cpu", cache_dir=tmp_path)
    gpu = load_engine(model_dir, backend="torch", device="cuda", fp16=fp16)
    eager = load_engine(model_dir, backend="torch", device="cuda", fp16=fp16, cuda_graphs=False)
    assert gpu.graphed is not None and eager.graphed is None, gpu.notes
    for batch in (1, 3, 8, 11):
        clip, geo, valid = _inputs(cpu, batch, seed=batch)
        ref = cpu.predict(clip, geo, valid)
        tol = 2e-2 if fp16 else 1e-4
        assert np.abs(gpu.predict(clip, geo, valid) - ref).max() < tol
        assert np.abs(eager.predict(clip, geo, valid) - ref).max() < tol


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine")
def test_auto_on_a_gpu_names_what_runs(model_dir, tmp_path):
    engine = load_engine(model_dir, backend="auto", cache_dir=tmp_path)
    if engine.backend.startswith("torch:cuda"):
        assert any("CUDA graphs" in n for n in engine.notes)


def test_a_saved_torch_tensorrt_program_must_run_every_batch_size_to_be_cached(tmp_path):
    """A program saved with its example batch only (as some torch-tensorrt versions save one compiled for a range)
    fails the next start on a frame with another number of faces: it is refused; one that keeps the range passes."""
    import torch
    from torch.export import Dim, export, save

    class SumOfFaces(torch.nn.Module):  # a stand-in for the networks: one output row per face
        def forward(self, clip, geo):
            return clip.flatten(1).sum(1, keepdim=True) + geo.flatten(1).sum(1, keepdim=True)

    from fer_ros.engine.tensorrt_backend import MAX_FACES, OPT_FACES, saved_program_problem
    shapes = [(2, 3, 4), (5,)]
    examples = tuple(torch.rand(OPT_FACES, *s) for s in shapes)
    save(export(SumOfFaces(), examples), tmp_path / "static.ep")
    problem = saved_program_problem(tmp_path / "static.ep", shapes, "cpu")
    assert problem is not None and "does not run 1 faces" in problem
    faces = Dim("faces", min=1, max=MAX_FACES)
    save(export(SumOfFaces(), examples, dynamic_shapes=({0: faces}, {0: faces})), tmp_path / "dynamic.ep")
    assert saved_program_problem(tmp_path / "dynamic.ep", shapes, "cpu") is None
    (tmp_path / "broken.ep").write_bytes(b"not a program")
    assert "does not load" in saved_program_problem(tmp_path / "broken.ep", shapes, "cpu")
