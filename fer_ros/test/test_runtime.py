"""The recognizer's front door (fer_ros.runtime): settings with fer_node's defaults, the model lookup and its
errors, the recognizer built as the node builds it, and the one score smoothing of the node and replay."""
from __future__ import annotations

import re
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from perception_helpers import ScriptedLandmarker, place, template68
from fer_ros.classes import class_names
from fer_ros.pipeline import FaceResult
from fer_ros.resources import default_model_dir
from fer_ros.runtime import (ModelNotFound, RecognizerSettings, SetupError, build_recognizer, open_engine,
                             resolve_model_dir, smooth_results)
from fer_ros.smoothing import ProbabilitySmoother

CK8 = class_names("ckplus8")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from bag_helpers import tiny_model_dir
    return tiny_model_dir(tmp_path_factory.getbasetemp())


def test_settings_defaults_are_the_nodes():
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "fer.yaml").read_text())
    node = cfg["/**"]["ros__parameters"]
    settings = asdict(RecognizerSettings())
    assert {k: node[k] for k in settings} == settings


def test_model_lookup(tmp_path):
    assert resolve_model_dir("") == default_model_dir()
    shipped = default_model_dir()
    assert resolve_model_dir(shipped / "manifest.json") == shipped
    with pytest.raises(ModelNotFound) as exc:
        resolve_model_dir(tmp_path / "nothing", "the model_path parameter")
    message = str(exc.value)
    assert message.startswith("model not found: ") and str(tmp_path / "nothing" / "manifest.json") in message
    assert "set the model_path parameter to a model directory" in message
    assert isinstance(exc.value, SetupError)


def test_a_model_file_names_its_model_as_load_engine_takes_it(tiny_model):
    """A path to model.onnx (any file of the model) names the model beside it, for the lookup as for load_engine."""
    assert resolve_model_dir(tiny_model / "model.onnx") == tiny_model
    assert resolve_model_dir(str(tiny_model / "manifest.json")) == tiny_model
    engine, model_dir = open_engine(RecognizerSettings(model_path=str(tiny_model / "model.onnx"), backend="onnxruntime",
                                                       num_threads=1))
    try:
        assert model_dir == tiny_model and engine.class_names == CK8
    finally:
        engine.close()


@pytest.mark.parametrize("num_threads", [-3, "2", 2.5, False])
def test_num_threads_that_is_not_an_integer_of_zero_or_more_is_a_setup_error(tiny_model, num_threads):
    with pytest.raises(SetupError, match=rf"^num_threads must be an integer >= 0 \(0 = the backend's own choice\), "
                                         rf"got {re.escape(repr(num_threads))}$"):
        open_engine(RecognizerSettings(model_path=str(tiny_model), backend="onnxruntime", num_threads=num_threads))


def test_an_unusable_backend_is_a_setup_error(tiny_model):
    with pytest.raises(SetupError, match="cannot load the model in .* with backend 'tensorflow'"):
        open_engine(RecognizerSettings(model_path=str(tiny_model), backend="tensorflow"))


def test_build_recognizer_applies_the_settings(tiny_model):
    landmarker = ScriptedLandmarker(lambda i, stamp: [place(template68(), (32, 24), 12)])
    settings = RecognizerSettings(model_path=str(tiny_model), backend="onnxruntime", max_faces=2,
                                  min_face_size_px=5, neutral_policy="first_frame", face_timeout_s=0.5)
    recognizer, backend, model_dir = build_recognizer(settings, landmarker=landmarker)
    try:
        assert model_dir == tiny_model and backend.startswith("onnxruntime")
        assert recognizer.class_names == CK8 and recognizer.window_length == 3
        assert recognizer.max_faces == 2 and recognizer.min_face_size_px == 5
        assert recognizer.neutral_policy == "first_frame" and recognizer.tracker.timeout_s == 0.5
        frame = np.full((48, 64, 3), 120, np.uint8)
        results = [recognizer.process(frame, 0.1 * i) for i in range(3)][-1]
        assert len(results) == 1 and results[0].window_ready and results[0].probs.shape == (8,)
    finally:
        recognizer.close()
    assert landmarker.closed


def test_a_window_length_other_than_the_models_is_refused(tiny_model):
    landmarker = ScriptedLandmarker(lambda i, stamp: [])
    settings = RecognizerSettings(model_path=str(tiny_model), backend="onnxruntime", window_length=5)
    with pytest.raises(SetupError, match="window_length 5 does not match the model's 3 frames; set it to 0"):
        build_recognizer(settings, landmarker=landmarker)
    assert landmarker.closed


def _result(face_id: int, probs, ready: bool = True) -> FaceResult:
    probs = np.asarray(probs, np.float32) if probs is not None else None
    best = int(np.argmax(probs)) if probs is not None else 0
    return FaceResult(id=face_id, box=(0.0, 0.0, 10.0, 10.0), points68=np.zeros((68, 2), np.float32),
                      window_frames=3, window_ready=ready, has_neutral=False, probs=probs,
                      label=CK8[best] if probs is not None else "", confidence=float(probs[best]) if probs is not None
                      else 0.0, class_names=CK8)


def test_smoothing_off_leaves_results_alone():
    results = [_result(1, np.eye(8)[2])]
    assert smooth_results(results, ProbabilitySmoother(0.0), 1.0) is results


def test_smoothing_averages_scores_and_the_label_follows():
    smoother = ProbabilitySmoother(1.0)
    first = smooth_results([_result(1, np.eye(8)[2]), _result(2, None, ready=False)], smoother, 0.0)
    assert first[0].label == CK8[2] and first[1].probs is None and len(smoother) == 1
    second = smooth_results([_result(1, np.eye(8)[5])], smoother, 1.0)[0]
    alpha = 1.0 - np.exp(-1.0)
    assert second.probs[5] == pytest.approx(alpha) and second.probs[2] == pytest.approx(1.0 - alpha)
    assert second.label == CK8[5] and second.confidence == pytest.approx(alpha)
    smooth_results([replace(second, id=3)], smoother, 2.0)
    assert len(smoother) == 2  # face 1 missing from a frame: its average is kept
    smooth_results([replace(second, id=3)], smoother, 22.5)
    assert len(smoother) == 1  # gone 21.5 time constants, when it would weigh nothing: forgotten


def test_a_face_missed_by_one_frame_keeps_its_average():
    """The landmarker missing a face in one frame (its track lives on) does not restart its smoothed scores: one
    noisy frame after the miss moves the average as it would without the miss."""
    steady, noisy = np.full(8, 0.02, np.float32), np.full(8, 0.02, np.float32)
    steady[2], noisy[5] = 0.86, 0.86

    def last_after(miss: bool):
        smoother, t = ProbabilitySmoother(2.0), 0.0
        for _ in range(60):
            smooth_results([_result(1, steady)], smoother, t)
            t += 1 / 30
        if miss:
            assert smooth_results([], smoother, t) == []
        t += 1 / 30
        return smooth_results([_result(1, noisy)], smoother, t)[0]
    missed, seen = last_after(miss=True), last_after(miss=False)
    assert missed.label == seen.label == CK8[2]
    np.testing.assert_allclose(missed.probs, seen.probs, rtol=1e-6)
    smoother = ProbabilitySmoother(2.0)
    smooth_results([_result(1, steady)], smoother, 0.0)
    smooth_results([], smoother, 40.0)
    assert len(smoother) == 1  # 20 time constants: still kept
    smooth_results([], smoother, 40.1)
    assert len(smoother) == 0  # memory stays bounded


def test_a_frame_with_scores_or_a_stamp_that_are_not_numbers_does_not_spoil_the_average():
    smoother = ProbabilitySmoother(1.0)
    smoother.update(1, np.array([0.2, 0.8], np.float32), 0.0)
    bad = smoother.update(1, np.array([np.nan, 0.5], np.float32), 0.1)
    assert np.isnan(bad[0])  # passed on as it is
    smoother.update(1, np.array([0.9, 0.1], np.float32), float("nan"))
    after = smoother.update(1, np.array([0.6, 0.4], np.float32), 0.2)
    later = smoother.update(1, np.array([0.6, 0.4], np.float32), 0.3)
    assert np.isfinite(after).all() and np.isfinite(later).all()
    assert np.allclose(later, [0.6, 0.4], atol=1e-6)  # the average started again from finite scores
