"""The perception benchmark runs, reports every stage, and its CLI writes JSON."""
from __future__ import annotations

import json

import pytest

from fer_ros.tools.bench_perception import STAGES, astronaut_face_frame, bench_perception, format_perception, main


def test_bench_perception_small_run():
    result = bench_perception(repeats=3, warmup=1, face_counts=(1,), crop_size=48, landmark_threads=2)
    case = result["cases"]["1_face"]
    assert case["faces_found_median"] == 1
    assert set(STAGES) <= set(case["stages_ms"])
    assert case["stages_ms"]["landmarks"]["median"] > 0
    assert result["target"]["value_ms"] > 0 and isinstance(result["target"]["met"], bool)
    assert any(k.startswith("lbp_48") for k in result["kernels_ms"])
    assert result["mesh_ms"]["median"] > 0
    from fer_ros import mesh
    assert result["mesh_ms"]["source"] == ("litert" if mesh.available() else "mediapipe")  # what follows faces
    if mesh.available():  # one face: the solo network on the landmarker's 2 threads, as it follows a lone face
        assert result["mesh_ms"]["solo"]["threads"] == 2
        assert case["landmark_floor_ms"] == result["mesh_ms"]["solo"]["median"]
    else:  # one mesh, nothing beside it
        assert case["landmark_floor_ms"] == result["mesh_ms"]["median"]
    assert case["landmark_floor_ratio"] == case["stages_ms"]["landmarks"]["median"] / case["landmark_floor_ms"]
    json.dumps(result)
    assert "landmarks" in format_perception(result)


def test_the_landmark_floor_shares_the_faces_over_what_runs_at_once():
    from fer_ros.tools.bench_perception import landmark_floor_ms
    assert landmark_floor_ms(1, 10.0, threads=3, cpus=8) == 10.0  # one face: one mesh
    assert landmark_floor_ms(3, 10.0, threads=0, cpus=8) == 30.0  # no workers: one after another
    assert landmark_floor_ms(3, 10.0, threads=2, cpus=2) == 15.0  # two cores
    assert landmark_floor_ms(5, 10.0, threads=4, cpus=8) == 10.0  # five at once
    # one face on the solo network spread over the landmarker's threads: its time; more faces share the one-thread ones
    assert landmark_floor_ms(1, 10.0, threads=2, cpus=2, solo_median_ms=6.0) == 6.0
    assert landmark_floor_ms(3, 10.0, threads=2, cpus=2, solo_median_ms=6.0) == 15.0


def test_a_lone_face_s_floor_is_the_network_it_runs_on(monkeypatch):
    """With more than one landmark thread a lone face is followed on the solo network spread over them: that
    network, timed on as many threads, is its floor; with one thread, the one-thread mesh is."""
    from fer_ros import mesh
    from fer_ros.tools import bench_perception as bp
    if not mesh.available():
        pytest.skip("LiteRT is not installed: faces are followed by MediaPipe's FaceLandmarker, without a solo network")
    asked = []

    def stub_mesh_ms(repeats=30, warmup=5, solo_threads=1):  # the timings as figures, not measured
        asked.append(solo_threads)
        out = {"median": 10.0, "p95": 11.0, "source": "litert"}
        if solo_threads > 1:
            out["solo"] = {"median": 6.0, "p95": 7.0, "threads": solo_threads}
        return out
    monkeypatch.setattr(bp, "mesh_ms", stub_mesh_ms)
    for landmark_threads, floor in ((2, 6.0), (1, 10.0)):
        result = bench_perception(repeats=2, warmup=1, face_counts=(1,), crop_size=48,
                                  landmark_threads=landmark_threads)
        assert asked[-1] == landmark_threads and result["cases"]["1_face"]["landmark_floor_ms"] == floor
        assert ("face_mesh_solo" in format_perception(result)) is (landmark_threads > 1)


def test_the_floor_and_the_machine_count_the_cpus_this_process_may_use(monkeypatch):
    """Under an affinity mask or a CPU quota the floor shares the faces over the CPUs the process may use, and the
    machine's report says how many those are beside the machine's own count."""
    from fer_ros.tools import bench_perception as bp
    monkeypatch.setattr(bp, "usable_cpus", lambda: 1)
    monkeypatch.setattr(bp.os, "cpu_count", lambda: 8)
    assert bp.landmark_floor_ms(3, 10.0, threads=2) == 30.0  # one at a time on the one CPU
    info = bp.machine_info()
    assert info["usable_cpus"] == 1 and info["cpus"] == 8
    result = {"frame": "f", "crop_size": 48, "repeats": 2, "machine": info, "cases": {},
              "mesh_ms": {"median": 1.0}, "kernels_ms": {}, "target": {"value_ms": None}}
    assert format_perception(result).splitlines()[0].endswith("(1 of 8 CPUs usable)")


def test_frame_and_cli(tmp_path, capsys):
    assert astronaut_face_frame(3).shape == astronaut_face_frame(5).shape == (480, 640, 3)
    assert main(["--repeats", "0"]) == 2
    out = tmp_path / "bench.json"
    assert main(["--repeats", "2", "--warmup", "0", "--crop-size", "32", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["cases"]) == {"1_face", "3_faces", "5_faces"} and data["crop_size"] == 32


def test_a_json_that_cannot_be_written_is_refused_before_the_run(unwritable_out, monkeypatch, capsys):
    """--json is checked before the benchmark runs, not after it: one line naming the option."""
    from fer_ros.tools import bench_perception as bp

    def must_not_run(*args, **kwargs):
        raise AssertionError("the benchmark ran")
    monkeypatch.setattr(bp, "bench_perception", must_not_run)
    out, says = unwritable_out
    assert main(["--repeats", "2", "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"bench_perception: --json {out}: ") and says in err, err
