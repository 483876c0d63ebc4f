"""fer-bench runs end to end and writes the JSON it promises (figures are measured, not checked against targets:
speed targets live in the benchmark, not in tests)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bag_helpers import tiny_model_dir  # noqa: E402

from fer_ros.engine import hardware  # noqa: E402
from fer_ros.tools import bench  # noqa: E402


def test_bench_writes_every_section(tmp_path_factory, tmp_path, capsys):
    model = tiny_model_dir(tmp_path_factory.getbasetemp())
    out = tmp_path / "bench.json"
    rc = bench.main(["--model", str(model), "--repeats", "2", "--warmup", "3", "--threads", "1",
                     "--backends", "onnxruntime:cpu,torch:cpu,tensorrt:cuda,torch:cuda", "--out", str(out),
                     "--no-progress",
                     "--no-node", "--landmark-threads", "1"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert set(r["perception"]["cases"]) == {"1_face", "3_faces", "5_faces"}
    assert r["landmark_threads"] == 1  # one after another: no worker threads, the floor is one mesh per face
    for case in r["perception"]["cases"].values():
        assert case["landmark_workers"] == 0
        mesh = r["perception"]["mesh_ms"]["median"]
        assert case["landmark_floor_ms"] == pytest.approx(case["faces_in_frame"] * mesh)
    nets = r["networks"]
    cpu = {name: b for name, b in nets["backends"].items() if b["device"] == "cpu"}
    assert set(cpu) == {"onnxruntime:cpu", "torch:cpu"}
    if hardware.torch_cuda_devices():  # torch on the GPU with its CUDA graphs and eagerly, judged by its target
        gpu = {name: b for name, b in nets["backends"].items() if b["device"] != "cpu"}
        assert {name.endswith(" eager") for name in gpu} == {True, False}
        assert all("target" in b and "floor_ratio" not in b for b in gpu.values())
    else:  # both torch:cuda cases are named as not run, with the reason
        assert {"torch:cuda", "torch:cuda eager"} <= set(nets["skipped"])
        assert "no CUDA GPU" in nets["skipped"]["torch:cuda eager"]
    for b in cpu.values():
        assert list(b["batch_ms"]) == ["1", "2", "4", "8"]
        assert all(s["median"] > 0 and s["p95"] >= s["median"] for s in b["batch_ms"].values())
        assert list(b["floor_ratio"]) == ["1", "2", "4", "8"] and all(v > 0 for v in b["floor_ratio"].values())
    ran_tensorrt = [name for name in nets["backends"] if name.startswith("tensorrt:")]
    if "tensorrt:cuda" in nets["skipped"]:  # not run, with the reason
        assert "tensorrt" in nets["skipped"]["tensorrt:cuda"] and not ran_tensorrt
    else:  # run, and timed at every batch size
        assert len(ran_tensorrt) == 1, nets
        assert list(nets["backends"][ran_tensorrt[0]]["batch_ms"]) == ["1", "2", "4", "8"]
    assert r["floor"]["mflops_per_face"] > 0 and r["floor"]["matmul_gflops"] > 0
    assert r["floor"]["floor_ms_per_face"] > 0
    for name, case in r["pipeline"]["cases"].items():
        assert case["faces_found_median"] == int(name.split("_")[0])
        assert case["fps_median"] > 0 and case["target_fps"] == bench.TARGET_FPS[name]
        assert case["fps_two_stages"] > 0 and case["target_met"] == (case["fps_two_stages"] >= case["target_fps"])
    assert r["node"] is None
    steady = r["steadiness"]
    assert len(steady["matmul_gflops"]) == 4 and all(g > 0 for g in steady["matmul_gflops"])
    assert r["floor"]["matmul_gflops"] == pytest.approx(max(steady["matmul_gflops"]), abs=0.05)
    text = capsys.readouterr().out
    assert "full pipeline" in text and "floor" in text and "machine speed over the run" in text


def test_a_gpu_is_judged_by_its_target_not_the_cpu_floor():
    def timings(median_8):
        return {str(b): {"median": median_8 * b / 8, "p95": median_8 * b / 4} for b in bench.BATCHES}
    nets = {"backends": {"onnxruntime:cpu int8": {"batch_ms": timings(16.0), "device": "cpu"},
                         "torch:cuda:0": {"batch_ms": timings(0.8), "device": "cuda:0"},
                         "torch:cuda:0 eager": {"batch_ms": timings(3.2), "device": "cuda:0"}}, "skipped": {}}
    bench.judge_networks(nets, floor_ms=2.0)
    cpu, graphs, eager = nets["backends"].values()
    assert cpu["floor_ratio"] == {"1": 1.0, "2": 1.0, "4": 1.0, "8": 1.0} and "target" not in cpu
    assert graphs["target"] == {"batch": 8, "median_ms_at_most": bench.GPU_TARGET_MS, "met": True}
    assert eager["target"]["met"] is False and "floor_ratio" not in eager
    report = {"model": "m", "networks": nets, "threads": 2,
              "floor": {"mflops_per_face": 1.0, "matmul_gflops": 1.0, "floor_ms_per_face": 2.0}}
    rows = {line.split("  ")[1].strip(): line for line in bench.format_networks(report) if "torch:cuda" in line}
    assert rows["torch:cuda:0"].endswith("target <= 1 ms at batch 8: met")
    assert rows["torch:cuda:0 eager"].endswith("target <= 1 ms at batch 8: NOT met")
    assert "(1.0x)" in next(line for line in bench.format_networks(report) if "onnxruntime:cpu int8" in line)


def test_a_run_whose_machine_slowed_down_says_so():
    steady = bench.steadiness([180.0, 176.5, 179.0, 171.0])
    assert steady == {"matmul_gflops": [180.0, 176.5, 179.0, 171.0], "spread": 0.05, "steady": True}
    assert bench.format_steadiness(steady).endswith("(spread 5%): steady")
    loaded = bench.steadiness([183.0, 21.3, 120.2, 137.0])
    assert loaded["steady"] is False and loaded["spread"] == pytest.approx(0.884, abs=1e-3)
    text = bench.format_steadiness(loaded)
    assert "21-183 GFLOP/s in 4 measurements" in text and "NOT steady" in text and "run fer-bench again" in text
    assert bench.steadiness([100.0, 100.0 * (1 - bench.STEADY_SPREAD) + 0.1])["steady"] is True
    assert bench.steadiness([100.0, 100.0 * (1 - bench.STEADY_SPREAD) - 0.1])["steady"] is False


def test_a_slow_spell_does_not_own_one_case_s_median():
    """The network cases are timed in rounds that visit each in turn: a spell of slow calls as long as one case's
    whole share (here the first 12 of 48 calls) leaves every case's median at the machine's quiet speed."""
    import time

    from fer_ros.tools.bench_perception import time_interleaved_ms
    count = {"n": 0}

    def call():
        count["n"] += 1
        if count["n"] <= 12:
            time.sleep(0.02)

    stats = time_interleaved_ms({str(b): call for b in (1, 2, 4, 8)}, repeats=12, rounds=6)
    assert count["n"] == 48
    for case in stats.values():
        assert case["median"] < 10.0 and case["p95"] >= 20.0  # each case saw part of the spell, none all of it
    # fewer calls than rounds: every call is still made once
    count["n"] = 100
    assert set(time_interleaved_ms({"a": call, "b": call}, repeats=2)) == {"a", "b"} and count["n"] == 104


def test_bench_without_a_model_says_what_to_do(tmp_path, capsys):
    assert bench.main(["--model", str(tmp_path / "none"), "--out", str(tmp_path / "b.json")]) == 2
    assert "model not found" in capsys.readouterr().err


@pytest.mark.parametrize("backends, says", [
    ("onnxruntme:cpu", "unknown backend 'onnxruntme' in 'onnxruntme:cpu'; use backend:device with a backend of "
                       "auto, onnxruntime, torch, tensorrt"),
    ("torch:cpu,onnxruntime:gpu", "unknown device 'gpu' in 'onnxruntime:gpu'"),
    (",", "must name at least one backend:device"),
])
def test_a_misspelt_backend_is_refused_before_anything_runs(tmp_path_factory, tmp_path, capsys, monkeypatch,
                                                            backends, says):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the benchmark ran")
    monkeypatch.setattr(bench, "matmul_gflops", must_not_run)
    monkeypatch.setattr(bench, "bench_perception", must_not_run)
    model = tiny_model_dir(tmp_path_factory.getbasetemp())
    rc = bench.main(["--model", str(model), "--backends", backends, "--out", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("fer-bench: --backends ") and says in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "b.json").exists()


def test_bench_node_measures_a_real_fer_node(tmp_path_factory):
    """The node section: fer_node started in its own process, fed a face at 30 Hz, answers with a latency."""
    import pytest
    pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not importable")
    pytest.importorskip("fer_msgs", reason="fer_msgs is not built (make setup)")
    model = tiny_model_dir(tmp_path_factory.getbasetemp())
    r = bench.bench_node(model, threads=1, duration_s=2.0, faces=(1,))
    case = r["cases"]["1_face"]
    assert "error" not in case, case
    assert case["answered"] > 0 and case["latency_ms_p95"] >= case["latency_ms_median"] > 0
    assert "fer_node fed 30 Hz" in bench.format_node(r)
