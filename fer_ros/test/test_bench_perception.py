"""The perception benchmark runs, reports every stage, and its CLI writes JSON."""
from __future__ import annotations

import json

from fer_ros.tools.bench_perception import STAGES, astronaut_face_frame, bench_perception, format_perception, main


def test_bench_perception_small_run():
    result = bench_perception(repeats=3, warmup=1, face_counts=(1,), crop_size=48)
    case = result["cases"]["1_face"]
    assert case["faces_found_median"] == 1
    assert set(STAGES) <= set(case["stages_ms"])
    assert case["stages_ms"]["landmarks"]["median"] > 0
    assert result["target"]["value_ms"] > 0 and isinstance(result["target"]["met"], bool)
    assert any(k.startswith("lbp_48") for k in result["kernels_ms"])
    assert result["mesh_ms"]["median"] > 0
    from fer_ros import mesh
    assert result["mesh_ms"]["source"] == ("litert" if mesh.available() else "mediapipe")  # what follows faces
    assert case["landmark_floor_ms"] == result["mesh_ms"]["median"]  # one face: one mesh, nothing beside it
    assert case["landmark_floor_ratio"] == case["stages_ms"]["landmarks"]["median"] / case["landmark_floor_ms"]
    json.dumps(result)
    assert "landmarks" in format_perception(result)


def test_the_landmark_floor_shares_the_faces_over_what_runs_at_once():
    from fer_ros.tools.bench_perception import landmark_floor_ms
    assert landmark_floor_ms(1, 10.0, threads=3, cpus=8) == 10.0  # one face: one mesh
    assert landmark_floor_ms(3, 10.0, threads=0, cpus=8) == 30.0  # no workers: one after another
    assert landmark_floor_ms(3, 10.0, threads=2, cpus=2) == 15.0  # two cores
    assert landmark_floor_ms(5, 10.0, threads=4, cpus=8) == 10.0  # five at once


def test_frame_and_cli(tmp_path, capsys):
    assert astronaut_face_frame(3).shape == astronaut_face_frame(5).shape == (480, 640, 3)
    assert main(["--repeats", "0"]) == 2
    out = tmp_path / "bench.json"
    assert main(["--repeats", "2", "--warmup", "0", "--crop-size", "32", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["cases"]) == {"1_face", "3_faces", "5_faces"} and data["crop_size"] == 32
