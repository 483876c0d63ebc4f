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
from fer_ros.tools import bench, bench_node  # noqa: E402


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
        assert case["fps_two_stages_mean"] > 0
    assert r["node"] is None
    steady = r["steadiness"]
    assert len(steady["matmul_gflops"]) == 4 and all(g > 0 for g in steady["matmul_gflops"])
    assert len(steady["cpu_share"]) == 4 and steady["cpu_share_min"] == min(steady["cpu_share"]) > 0
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
    quiet = [0.99, 1.0, 0.98, 0.99]
    steady = bench.steadiness([180.0, 176.5, 179.0, 171.0], quiet)
    assert steady == {"matmul_gflops": [180.0, 176.5, 179.0, 171.0], "spread": 0.05, "cpu_share": quiet,
                      "cpu_share_min": 0.98, "steady": True, "not_steady_because": []}
    assert bench.format_steadiness(steady).endswith("(spread 5%), the benchmark getting at least 98% of its cores' "
                                                    "time: steady")
    loaded = bench.steadiness([183.0, 21.3, 120.2, 137.0], quiet)
    assert loaded["steady"] is False and loaded["spread"] == pytest.approx(0.884, abs=1e-3)
    text = bench.format_steadiness(loaded)
    assert "21-183 GFLOP/s in 4 measurements" in text and "NOT steady (spread over 10%)" in text
    assert "run fer-bench again" in text
    assert bench.steadiness([100.0, 100.0 * (1 - bench.STEADY_SPREAD) + 0.1], quiet[:2])["steady"] is True
    assert bench.steadiness([100.0, 100.0 * (1 - bench.STEADY_SPREAD) - 0.1], quiet[:2])["steady"] is False
    # the rates steady, a share under STEADY_CPU_SHARE: a load all along
    shared = bench.steadiness([100.0, 100.0], [0.99, bench.STEADY_CPU_SHARE - 0.01])
    assert shared["steady"] is False and "NOT steady (CPU share under 85%)" in bench.format_steadiness(shared)
    assert bench.steadiness([100.0, 100.0], [0.99, bench.STEADY_CPU_SHARE])["steady"] is True
    # a spread just over the limit that rounds to it in the report still says why the run is not steady
    edge = bench.steadiness([100.0, 100.0 * (1 - bench.STEADY_SPREAD) - 1e-6], quiet[:2])
    assert edge["steady"] is False and edge["spread"] == pytest.approx(bench.STEADY_SPREAD)
    assert "NOT steady (spread over 10%)" in bench.format_steadiness(edge)


def test_a_load_on_every_core_all_along_is_not_steady():
    """Busy processes on every core (two per core) through all the matmul samples leave the rate steady but
    take cores from the benchmark: its CPU share says so."""
    import subprocess
    import time

    from fer_ros.tools.bench_perception import usable_cpus
    spin = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end:\n    pass\n"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2 * usable_cpus())]
    try:
        time.sleep(0.5)  # all of them running
        samples = [bench.matmul_rate(1, n=128, seconds=0.3) for _ in range(3)]
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait()
    s = bench.steadiness([x["gflops"] for x in samples], [x["cpu_share"] for x in samples])
    assert s["cpu_share_min"] < bench.STEADY_CPU_SHARE and s["steady"] is False, s
    assert "CPU share under 85%" in bench.format_steadiness(s)


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
    monkeypatch.setattr(bench, "matmul_rate", must_not_run)
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


def test_one_repeat_is_refused_before_anything_runs(tmp_path_factory, tmp_path, capsys, monkeypatch):
    """The overlapped pipeline's rate comes from the intervals between frames: one repeat has none."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("the benchmark ran")
    for name in ("bench_perception", "bench_pipeline"):
        monkeypatch.setattr(bench, name, must_not_run)
    model = tiny_model_dir(tmp_path_factory.getbasetemp())
    rc = bench.main(["--model", str(model), "--repeats", "1", "--out", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == "fer-bench: --repeats must be >= 2, got 1"
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("option, value, says", [("--landmark-threads", "33", "0 to 32"),
                                                   ("--threads", "65", "1 to 64")])
def test_a_thread_count_fer_node_refuses_is_refused_before_anything_runs(tmp_path_factory, tmp_path, capsys,
                                                                          monkeypatch, option, value, says):
    """fer-bench times settings fer_node can run: its thread options take the node's ranges (SETTING_RANGES)."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("the benchmark ran")
    for name in ("bench_perception", "bench_pipeline"):
        monkeypatch.setattr(bench, name, must_not_run)
    model = tiny_model_dir(tmp_path_factory.getbasetemp())
    rc = bench.main(["--model", str(model), option, value, "--out", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"fer-bench: {option} must be {says}, got {value}"
    from fer_ros.ros.params import DESCRIPTIONS
    for name, (low, high) in bench.SETTING_RANGES.items():
        limits = DESCRIPTIONS[name][2]
        assert (limits.from_value, limits.to_value) == (low, high), name


def test_bench_json_is_strict(tmp_path_factory, tmp_path, monkeypatch):
    """Figures that are not finite (an infinite rate, a NaN latency) are written as null, never as NaN or
    Infinity, which JSON does not have."""
    nan, inf = float("nan"), float("inf")
    monkeypatch.setattr(bench, "matmul_rate", lambda threads: {"gflops": 100.0, "cpu_share": 1.0})
    monkeypatch.setattr(bench, "model_flops", lambda model_dir: 1_000_000)
    monkeypatch.setattr(bench, "bench_perception", lambda **kwargs: {
        "frame": "640x480", "crop_size": 48, "repeats": 2, "machine": {"cpus": 2}, "cases": {},
        "mesh_ms": {"median": 1.0}, "kernels_ms": {}, "target": {"value_ms": None}})
    monkeypatch.setattr(bench, "bench_networks", lambda *args: {"backends": {}, "skipped": {}})
    monkeypatch.setattr(bench, "bench_pipeline", lambda *args: {"backend": "b", "crop_size": 48, "cases": {
        "1_face": {"total_ms": {"median": 0.0, "p95": 0.0}, "fps_median": inf, "fps_at_p95": inf,
                   "fps_two_stages": inf, "fps_two_stages_mean": 1.0, "target_fps": 60.0, "target_met": True}}})
    monkeypatch.setattr(bench, "bench_node", lambda *args, **kwargs: {"rate_hz": 30.0, "cases": {"1_face": {
        "latency_ms_median": nan, "latency_ms_p95": nan, "emotion_rate_hz": 0.0}}})
    model = tiny_model_dir(tmp_path_factory.getbasetemp())
    out = tmp_path / "bench.json"
    assert bench.main(["--model", str(model), "--out", str(out), "--no-progress"]) == 0

    def refuse(constant):
        raise ValueError(f"bench.json holds {constant}, which is not JSON")
    r = json.loads(out.read_text(), parse_constant=refuse)
    assert r["pipeline"]["cases"]["1_face"]["fps_two_stages"] is None
    assert r["node"]["cases"]["1_face"]["latency_ms_median"] is None


def test_one_slow_frame_does_not_move_the_overlapped_rate(monkeypatch):
    """The overlapped pipeline's rate is one over the median interval between frames: one recognition of 300 ms
    among 20 ms ones leaves it near the rate without it (a mean over the run would drop it by a third)."""
    import time

    import fer_ros.landmarker
    import fer_ros.pipeline
    slow = {"call": None}

    class StubRecognizer:
        def __init__(self, **kwargs) -> None:
            self.calls = 0

        def perceive(self, frame, stamp_s):
            time.sleep(0.002)
            return {"stamp_s": stamp_s}

        def recognise(self, perception) -> None:
            self.calls += 1
            time.sleep(0.3 if self.calls == slow["call"] else 0.02)

        def close(self) -> None:
            pass

    monkeypatch.setattr(fer_ros.pipeline, "Recognizer", StubRecognizer)
    monkeypatch.setattr(fer_ros.landmarker, "MediaPipeLandmarker", lambda **kwargs: None)
    quiet = bench.rate_of_median(bench.two_stage_intervals(None, faces=1, frames=15, warmup=2))
    slow["call"] = 2 + 7  # the 7th frame timed
    with_slow_call = bench.rate_of_median(bench.two_stage_intervals(None, faces=1, frames=15, warmup=2))
    assert with_slow_call >= 0.8 * quiet, (with_slow_call, quiet)


FAKE_PROBE = """
import os, signal, subprocess, sys, time
from pathlib import Path
here = Path(os.environ["FAKE_PROBE_DIR"])
node = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
stop = []
signal.signal(signal.SIGINT, lambda *args: stop.append(1))
(here / "node.tmp").write_text(str(node.pid))
(here / "node.tmp").rename(here / "node.pid")
while not stop:
    time.sleep(0.05)
time.sleep(1.0)  # stopping the node takes a while, as fer_node's stop does
node.kill()
node.wait()
print("fer_node output: /tmp/fer_node_fake.log", file=sys.stderr)
print("latency_probe: interrupted: nothing measured", file=sys.stderr)
sys.exit(130)
"""


def fake_probe(tmp_path: Path) -> Path:
    """An executable that stands for the python bench_node starts the latency probe with: whatever its arguments,
    it runs a fake probe that starts a fake node (its pid in FAKE_PROBE_DIR/node.pid), runs until SIGINT, then
    takes 1 s to stop the node and exits with code 130."""
    import stat
    (tmp_path / "fake_probe.py").write_text(FAKE_PROBE)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "fake_probe.py"}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def node_pid(tmp_path: Path, timeout_s: float = 30.0) -> int:
    import time
    deadline = time.monotonic() + timeout_s
    while not (tmp_path / "node.pid").exists():
        assert time.monotonic() < deadline, "the fake probe started no node"
        time.sleep(0.05)
    return int((tmp_path / "node.pid").read_text())


def test_an_interrupted_bench_lets_the_probe_stop_its_node(tmp_path):
    """Ctrl-C (SIGINT to fer-bench alone) during the node section: the probe is stopped with SIGINT and given the
    time to stop its node, then fer-bench ends as interrupted."""
    pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not importable")
    pytest.importorskip("fer_msgs", reason="fer_msgs is not built (make setup)")
    import os
    import signal

    from ros_helpers import running, start_python, stop
    wrapper = fake_probe(tmp_path)
    # Ctrl-C as a terminal delivers it: a shell that starts jobs in the background has them ignore SIGINT, which
    # their children inherit
    code = ("import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"import sys\nsys.executable = {str(wrapper)!r}\nfrom pathlib import Path\n"
            "from fer_ros.tools import bench\ntry:\n"
            f"    bench.bench_node(Path({str(tmp_path)!r}), threads=1, duration_s=60.0, faces=(1,))\n"
            "except KeyboardInterrupt:\n    print('bench interrupted')\n    sys.exit(130)\nprint('bench finished')\n")
    proc = start_python(["-c", code], dict(os.environ, FAKE_PROBE_DIR=str(tmp_path)))
    pid = None
    try:
        pid = node_pid(tmp_path)
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "bench interrupted" in out and "Traceback" not in out, out
        assert not running(pid), "the fake node outlived the probe"
    finally:
        stop(proc, signal.SIGKILL)
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_probe_that_runs_too_long_is_stopped_and_is_that_case_s_error(tmp_path, monkeypatch):
    pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not importable")
    pytest.importorskip("fer_msgs", reason="fer_msgs is not built (make setup)")
    import os
    import signal

    from ros_helpers import running
    monkeypatch.setattr(sys, "executable", str(fake_probe(tmp_path)))
    monkeypatch.setenv("FAKE_PROBE_DIR", str(tmp_path))
    monkeypatch.setattr(bench_node, "PROBE_SLACK_S", 2.0)
    try:
        r = bench.bench_node(tmp_path, threads=1, duration_s=1.0, faces=(1,))
        case = r["cases"]["1_face"]
        assert case == {"error": "latency probe still running after 3 s: stopped (fer_node output: "
                                 "/tmp/fer_node_fake.log)"}
        assert "still running after 3 s: stopped" in bench.format_node(r)
        assert not running(node_pid(tmp_path, 0.0)), "the fake node outlived the probe"
    finally:
        if (tmp_path / "node.pid").exists() and running(node_pid(tmp_path, 0.0)):
            os.kill(node_pid(tmp_path, 0.0), signal.SIGKILL)


HUNG_PROBE = """
import signal, subprocess, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.SIG_IGN)  # hung: a stop request does nothing
node = subprocess.Popen(["sleep", "300"], start_new_session=True)
pid_file = Path(sys.argv[sys.argv.index("--node-pid-file") + 1])
(pid_file.parent / "node.seen").write_text(str(node.pid))  # for the test: the pid file goes once it is used
(pid_file.parent / "node.tmp").write_text(str(node.pid))
(pid_file.parent / "node.tmp").rename(pid_file)
print("fer_node output: /tmp/fer_node_hung.log", file=sys.stderr, flush=True)
time.sleep(300)
"""


def test_a_hung_probe_is_killed_and_so_is_its_node(tmp_path, monkeypatch):
    """A probe that ignores SIGINT, running too long, is killed after PROBE_STOP_WAIT_S; the node it started in a
    session of its own (named in its --node-pid-file) is killed after it instead of outliving it."""
    import os
    import signal
    import time

    from ros_helpers import running
    monkeypatch.setattr(bench_node, "PROBE_STOP_WAIT_S", 1.0)
    pid_file = tmp_path / "node.pid"
    cmd = [sys.executable, "-c", HUNG_PROBE, "--node-pid-file", str(pid_file)]
    pid = None
    try:
        t0 = time.monotonic()
        case = bench_node.run_probe(cmd, tmp_path / "probe.json", 3.0, pid_file)
        assert case == {"error": "latency probe still running after 3 s: stopped (fer_node output: "
                                 "/tmp/fer_node_hung.log)"}, case
        assert time.monotonic() - t0 < 30
        pid = int((tmp_path / "node.seen").read_text())
        deadline = time.monotonic() + 5.0
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(pid), "the node of the killed probe outlived it"
        assert not pid_file.exists()
    finally:
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGKILL)


def model_without(base: Path, role: str) -> Path:
    """A copy of the tiny model in `base` whose manifest lists no `role` file ("onnx" or "state_dict") and whose
    directory does not hold it: a model fer_node loads (on the backend its other file serves)."""
    import shutil
    tiny = tiny_model_dir(base)
    out = base / f"tiny_model_without_{role}"
    if out.exists():
        return out
    shutil.copytree(tiny, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / manifest["files"].pop(role)["path"]).unlink()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def stub_sections(monkeypatch, rates=None) -> None:
    """fer-bench's timed sections and matmul samples as stubs (the networks and the FLOP count stay real): each
    matmul sample takes the next of `rates` (GFLOP/s; default 100 each)."""
    rates = iter(rates) if rates is not None else None
    monkeypatch.setattr(bench, "matmul_rate", lambda threads: {"gflops": next(rates) if rates else 100.0,
                                                               "cpu_share": 1.0})
    monkeypatch.setattr(bench, "bench_perception", lambda **kwargs: {
        "frame": "640x480", "crop_size": 48, "repeats": 2, "machine": {"cpus": 2}, "cases": {},
        "mesh_ms": {"median": 1.0}, "kernels_ms": {}, "target": {"value_ms": None}})
    monkeypatch.setattr(bench, "bench_pipeline", lambda *args: {"backend": "b", "crop_size": 48, "cases": {}})
    monkeypatch.setattr(bench, "bench_node", lambda *args, **kwargs: {"rate_hz": 30.0, "cases": {}})


@pytest.mark.parametrize("role, runs, not_run, says", [
    ("onnx", "torch:cpu", "onnxruntime:cpu", "the model has no ONNX graph"),
    ("state_dict", "onnxruntime:cpu", "torch:cpu", "the manifest lists no 'state_dict' file"),
])
def test_a_model_with_one_of_its_files_is_benched_on_what_serves_it(tmp_path_factory, tmp_path, monkeypatch, capsys,
                                                                    role, runs, not_run, says):
    """A model with its ONNX graph alone or its state dict alone, which fer_node runs: the backend its files cannot
    serve is listed as not run, with the reason, the others are timed, and its FLOPs are counted all the same (the
    weights do not change them); asked for no backends, fer-bench leaves out those it cannot serve."""
    from fer_ros.manifest import load_manifest
    base = tmp_path_factory.getbasetemp()
    model = model_without(base, role)
    stub_sections(monkeypatch)
    out = tmp_path / "bench.json"
    rc = bench.main(["--model", str(model), "--repeats", "2", "--threads", "1", "--backends",
                     "onnxruntime:cpu,torch:cpu", "--out", str(out), "--no-progress", "--no-node"])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(out.read_text())
    assert list(r["networks"]["backends"]) == [runs] and list(r["networks"]["skipped"]) == [not_run]
    assert says in r["networks"]["skipped"][not_run]
    assert f"{not_run:<26} not run: " in capsys.readouterr().out
    assert r["floor"]["mflops_per_face"] == bench.model_flops(tiny_model_dir(base)) / 1e6
    assert list(r["networks"]["backends"][runs]["floor_ratio"]) == ["1", "2", "4", "8"]
    assert ("onnxruntime", "cpu") in bench.default_backends() and ("torch", "cpu") in bench.default_backends()
    served = bench.default_backends(load_manifest(model))
    assert served and all(backend == runs.split(":")[0] for backend, _ in served)


def test_the_flops_of_an_arch_cfg_that_builds_no_network_are_a_model_error(tmp_path_factory, tmp_path):
    """torch's own refusal of a layer (a negative width) is the ModelError the report's floor notes, no traceback."""
    import shutil

    from fer_ros.manifest import ModelError
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir(tmp_path_factory.getbasetemp()), model)
    data = json.loads((model / "manifest.json").read_text())
    data["arch_cfg"]["app"]["hidden"] = -1
    (model / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"manifest.json: arch 'agn3d_c3d' with its arch_cfg does not build a "
                                         r"network \(RuntimeError"):
        bench.model_flops(model)


def test_the_floor_uses_every_matmul_sample_the_run_reports(tmp_path_factory, tmp_path, monkeypatch):
    """The floor's rate is the highest of all the samples steadiness lists, the one after the node section too, and
    the CPU backends are judged against that floor; it is the fp32 arithmetic's floor, which int8 can run under."""
    stub_sections(monkeypatch, rates=[100.0, 110.0, 120.0, 130.0, 500.0])  # the 5th: after the node section
    monkeypatch.setattr(bench, "model_flops", lambda model_dir: 1_000_000)
    monkeypatch.setattr(bench, "bench_networks", lambda *args: {"backends": {"onnxruntime:cpu int8": {
        "batch_ms": {str(b): {"median": 0.001 * b, "p95": 0.002 * b} for b in bench.BATCHES}, "device": "cpu"}},
        "skipped": {}})
    out = tmp_path / "bench.json"
    assert bench.main(["--model", str(tiny_model_dir(tmp_path_factory.getbasetemp())), "--out", str(out),
                       "--no-progress"]) == 0
    r = json.loads(out.read_text())
    assert r["steadiness"]["matmul_gflops"] == [100.0, 110.0, 120.0, 130.0, 500.0]
    assert r["floor"]["matmul_gflops"] == max(r["steadiness"]["matmul_gflops"]) == 500.0
    assert r["floor"]["floor_ms_per_face"] == pytest.approx(1e6 / 500e9 * 1e3)
    ratio = r["networks"]["backends"]["onnxruntime:cpu int8"]["floor_ratio"]
    assert ratio == pytest.approx({str(b): 0.5 for b in bench.BATCHES})  # int8 under the fp32 floor
    assert "fp32 arithmetic" in r["floor"]["what"] and "no backend can beat it" not in r["floor"]["what"]


def test_an_out_that_cannot_be_written_is_refused_before_anything_runs(tmp_path_factory, unwritable_out, capsys,
                                                                       monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the benchmark ran")
    for name in ("matmul_rate", "bench_perception", "model_flops", "bench_networks", "bench_pipeline", "bench_node"):
        monkeypatch.setattr(bench, name, must_not_run)
    out, says = unwritable_out
    rc = bench.main(["--model", str(tiny_model_dir(tmp_path_factory.getbasetemp())), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"fer-bench: --out {out}: ") and says in err, err
    assert len(err.strip().splitlines()) == 1


def test_the_out_check_makes_a_missing_folder_and_leaves_a_file_as_it_was(tmp_path):
    from fer_ros.argtypes import out_problem
    out = tmp_path / "new" / "bench.json"
    assert out_problem(out) is None and out.parent.is_dir() and not out.exists()
    out.write_text("an earlier report\n")
    assert out_problem(out) is None and out.read_text() == "an earlier report\n"


def test_every_tool_that_writes_a_report_checks_it_with_one_definition():
    """fer-bench, fer-soak and bench_perception refuse an output they cannot write with the same check."""
    from fer_ros import argtypes
    from fer_ros.ros import soak
    from fer_ros.tools import bench_perception
    assert bench.out_problem is soak.out_problem is bench_perception.out_problem is argtypes.out_problem


def test_two_backend_cases_that_run_the_same_are_timed_once(tmp_path_factory):
    """auto:cpu runs what onnxruntime:cpu runs (the same backend, device and precision): one row, the other case
    listed as not run, saying which row it is; a backend:device named twice is one case."""
    model = tiny_model_dir(tmp_path_factory.getbasetemp())
    r = bench.bench_networks(model, [("onnxruntime", "cpu"), ("auto", "cpu"), ("onnxruntime", "cpu")], 2, 1,
                             progress=False)
    assert list(r["backends"]) == ["onnxruntime:cpu"]
    assert r["skipped"] == {"auto:cpu": "runs as onnxruntime:cpu, timed already"}


def test_bench_node_gives_a_model_path_with_spaces_as_one_argument(tmp_path, monkeypatch):
    """The node's --ros-args reach the probe quoted as a shell would, so a path with spaces stays one value."""
    import shlex
    pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not importable")
    pytest.importorskip("fer_msgs", reason="fer_msgs is not built (make setup)")
    commands = []
    monkeypatch.setattr(bench_node, "run_probe", lambda cmd, *args: commands.append(cmd) or {"error": "not run"})
    model = tmp_path / "my models" / "tiny model"
    bench.bench_node(model, threads=2, duration_s=1.0, faces=(3,), landmark_threads=1)
    cmd = commands[0]
    assert shlex.split(cmd[cmd.index("--node-args") + 1]) == [
        "-p", f"model_path:={model}", "-p", "num_threads:=2", "-p", "max_faces:=5", "-p", "landmark_threads:=1"]
