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
    json.dumps(result)
    assert "landmarks" in format_perception(result)


def test_frame_and_cli(tmp_path, capsys):
    assert astronaut_face_frame(3).shape == astronaut_face_frame(5).shape == (480, 640, 3)
    assert main(["--repeats", "0"]) == 2
    out = tmp_path / "bench.json"
    assert main(["--repeats", "2", "--warmup", "0", "--crop-size", "32", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["cases"]) == {"1_face", "3_faces", "5_faces"} and data["crop_size"] == 32
