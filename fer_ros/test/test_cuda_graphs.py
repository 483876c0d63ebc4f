"""CUDA graphs in the torch backend: the batch profile, padding and splitting give the eager model's probabilities,
a graph that cannot be recorded leaves the engine eager and says why. Without a GPU the graph itself is stood in
for by a replay that runs the model on the same static buffers (what a recorded graph does); the tests at the end
record real graphs where a CUDA GPU is present."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bag_helpers import tiny_model_dir  # noqa: E402

from fer_ros.engine import hardware, load_engine, torch_backend  # noqa: E402
from fer_ros.engine.cuda_graphs import BATCH_PROFILE, GraphedModel, bucket  # noqa: E402

HAS_CUDA = hardware.torch_cuda_devices() > 0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.getbasetemp())


def _inputs(engine, batch, seed=0):
    rng = np.random.default_rng(seed)
    shapes = engine.input_shapes()
    clip = rng.random((batch, *shapes["clip"]), np.float32)
    geo = rng.uniform(-1, 1, (batch, *shapes["geo"])).astype(np.float32)
    valid = (rng.random(batch) > 0.4).astype(np.float32)
    return clip, geo, valid


def _stand_in_record(self, model, static):
    """A recorded graph's behaviour on the CPU: replay reads the static inputs as they are at that moment and
    writes the one static output tensor."""
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


# --- GPU (runs where a CUDA GPU is present) -------------------------------------------------------------------
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
