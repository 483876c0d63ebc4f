"""fer-replay end to end with the real pipeline: MediaPipe landmarks on a real face and a real (small, untrained)
model through the inference engine, as the node runs them. Checks counts, stamps, the model's classes and the
/emotion output bag; says nothing about accuracy (the model is untrained)."""
from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("fer_ros.engine", reason="the inference engine module is needed to load a model")

from bag_helpers import tiny_model_dir  # noqa: E402
from fer_ros.tools import replay  # noqa: E402
from fer_ros.tools.bagtools import list_topics, write_image_bag  # noqa: E402
from fer_ros.classes import class_names  # noqa: E402

N = 12


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.getbasetemp())


def test_real_face_through_the_real_pipeline(tmp_path, face_frame, model_dir, capsys):
    frame, region = face_frame
    info = write_image_bag(tmp_path / "bag", [frame] * N, rate_hz=10.0, storage="mcap", compressed="jpeg")
    rc = replay.main([str(tmp_path / "bag"), "--model", str(model_dir), "--backend", "onnxruntime",
                      "--out", str(tmp_path / "out"), "--out-bag", str(tmp_path / "emotion_bag"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames"]["processed"] == N and summary["frames"]["with_faces"] == N
    assert summary["faces"]["tracks"] == 1 and summary["faces"]["with_scores"] == N - 2
    assert summary["class_names"] == list(class_names("ckplus8"))
    assert summary["model"] == str(model_dir)
    with open(tmp_path / "out" / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["stamp_s"].replace(".", "")) for r in rows] == info.stamps_ns
    x0, y0, x1, y1 = region[0]
    box = [float(rows[-1][k]) for k in ("x0", "y0", "x1", "y1")]
    assert x0 - 20 <= box[0] < box[2] <= x1 + 20 and y0 - 20 <= box[1] < box[3] <= y1 + 20
    probs = [float(rows[-1][f"p_{n}"]) for n in class_names("ckplus8")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4) and rows[-1]["label"] in class_names("ckplus8")
    assert list_topics(tmp_path / "emotion_bag")["/emotion"] == ("fer_msgs/msg/FaceEmotionArray", N)
    assert "frames/s" in out and "face #" in out


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    write_image_bag(tmp_path / "bag", [], rate_hz=10.0)
    rc = replay.main([str(tmp_path / "bag"), "--model", str(tmp_path / "no_model"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "model not found" in err and "--model" in err
