"""The one front door to the recognizer: fer_node, fer-replay, fer-eval, fer-bench and the demo all build it here,
so an offline run and the node differ only in the settings they are given.

    settings = RecognizerSettings(model_path="", backend="auto", num_threads=2)   # fer_node's defaults
    recognizer, backend, model_dir = build_recognizer(settings)                    # SetupError says what to do
    smoother = ProbabilitySmoother(settings.smoothing_time_constant_s)
    results = smooth_results(recognizer.process(frame, stamp_s), smoother, stamp_s)

`open_engine(settings)` stops after the inference engine (fer-eval and fer-bench feed it directly). The default
model is `resources.default_model_dir()`; nothing else looks it up.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fer_ros.engine import BACKENDS  # noqa: F401  (the backends a setting may name)
from fer_ros.manifest import GET_A_MODEL, MANIFEST_NAME, manifest_path
from fer_ros.resources import default_model_dir
from fer_ros.smoothing import ProbabilitySmoother


@dataclass
class RecognizerSettings:
    """Everything a recognizer is built from (units in the names: _s seconds, _px pixels). The defaults are
    fer_node's (config/fer.yaml); fer_node's parameters are these plus its ROS fields (ros/params.py)."""

    model_path: str = ""                  # model directory or its manifest.json; "" = the shipped default
    backend: str = "auto"                 # auto | onnxruntime | torch | tensorrt
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    fp16: bool = False
    int8: bool = True                     # onnxruntime on the CPU runs the model's int8 graph where it has one
    engine_cache_dir: str = ""            # "" = $FER_ROS_ENGINE_CACHE or ~/.cache/fer_ros/engines
    num_threads: int = 2                  # CPU threads for inference; 0 = the backend's own choice
    max_faces: int = 4
    landmark_threads: int = 0             # faces landmarked side by side; 0 = one per core (at most 4)
    min_face_size_px: int = 40
    window_length: int = 0                # 0 = the model's own; anything else must equal it
    neutral_policy: str = "auto"          # face_state.NEUTRAL_POLICIES
    smoothing_time_constant_s: float = 0.0
    face_timeout_s: float = 1.0


#: The integer settings' ranges (low, high), said once: fer_node's parameter descriptors (ros/params.py) and the
#: tools that take the same setting (fer-bench) refuse what lies outside them.
SETTING_RANGES = {
    "num_threads": (0, 64),
    "max_faces": (1, 32),
    "landmark_threads": (0, 32),
    "min_face_size_px": (0, 4096),
    "window_length": (0, 64),
}


#: What each setting means, said once: fer_node's parameter descriptions (ros/params.py) and the option help of
#: fer-replay, fer-eval, fer-bench and the demo (add_setting_option) all use these words, and take their defaults
#: from RecognizerSettings.
SETTING_HELP = {
    "model_path": "model directory (manifest.json, model.onnx, model.pt); empty (the default) = the shipped "
                  "models/agn8_ferplus_kdef_ckplus",
    "backend": "inference backend: auto (TensorRT, then a CUDA backend, then the CPU), onnxruntime, torch or "
               "tensorrt",
    "device": "inference device: auto (a GPU when there is one), cpu, cuda or cuda:N",
    "fp16": "half-precision inference where the backend supports it (GPU)",
    "int8": "onnxruntime on the CPU runs the model's int8 graph (model.int8.onnx) where the model has one, about "
            "twice as fast; false = its fp32 graph",
    "engine_cache_dir": "where built engines (TensorRT plans, optimised ONNX graphs) are cached; empty (the "
                        "default) = $FER_ROS_ENGINE_CACHE or ~/.cache/fer_ros/engines",
    "num_threads": "CPU threads for inference (intra-op)",
    "max_faces": "most faces tracked per frame",
    "landmark_threads": "threads that landmark faces side by side (the faces already known, and the faces the "
                        "whole-frame pass misses, small ones, while it runs); 0 = one per core, at most 4; 1 = one "
                        "after another",
    "min_face_size_px": "faces with a box side smaller than this (px) are not reported",
    "window_length": "frames per face clip; 0 = the model's own (must equal it otherwise)",
    "neutral_policy": "how a face's neutral reference is chosen: auto (least_motion until the model calls a frame "
                      "neutral, then the frame it calls neutral with the highest probability), least_motion, "
                      "first_frame or manual (only when asked: fer_node's ~/capture_neutral service)",
    "smoothing_time_constant_s": "exponential smoothing of each face's scores, time constant in s; 0 = off",
    "face_timeout_s": "a face missing from the frames processed for longer than this (s) is dropped; if it "
                      "returns it gets a new id",
}


def add_setting_option(parser, name: str, *flags: str, **kwargs):
    """Add the command-line option of the RecognizerSettings field `name` to `parser` (or an argument group):
    `flags` (default --<name with dashes>), the setting's default (fer_node's) and its meaning (SETTING_HELP).
    `kwargs` add to or replace those (type=, choices=, help=); a bool setting is a store_true flag, or a
    --name/--no-name pair when it is on by default."""
    import argparse
    default = getattr(RecognizerSettings(), name)
    options = {"default": default, "help": SETTING_HELP[name]}
    if isinstance(default, bool):
        options["action"] = argparse.BooleanOptionalAction if default else "store_true"
    options.update(kwargs)
    return parser.add_argument(*(flags or ("--" + name.replace("_", "-"),)), **options)


class SetupError(RuntimeError):
    """A recognizer cannot be set up (missing or unusable model, bad setting, landmarker that cannot load); the
    message says what to do."""


class ModelNotFound(SetupError):
    """The model directory or its manifest.json does not exist."""


class BuiltRecognizer(NamedTuple):
    """What build_recognizer made: the pipeline, the backend running the model, the model's directory."""

    recognizer: Any
    backend: str
    model_dir: Path


def resolve_model_dir(model_path: str | Path | None, option: str = "--model") -> Path:
    """The model directory `model_path` names (the directory, its manifest.json or another of its files, as
    load_engine takes them; empty: the shipped default). ModelNotFound names the missing file and `option`, the
    setting that chooses the model."""
    directory = Path(model_path).expanduser() if model_path else default_model_dir()
    if directory.is_file() or directory.name == MANIFEST_NAME:  # a file of the model: the manifest's own rule
        directory = manifest_path(directory).parent
    if not (directory / "manifest.json").is_file():
        raise ModelNotFound(f"model not found: {directory / 'manifest.json'} does not exist; set {option} to a "
                            f"model directory (manifest.json + model.onnx) -- {GET_A_MODEL}")
    return directory


def open_engine(settings: RecognizerSettings, option: str = "--model"):
    """(engine, model directory): the settings' model loaded by the inference engine with their backend, device,
    precision, cache folder and threads. SetupError when the model or the backend is unusable."""
    from fer_ros.engine import check_num_threads, load_engine
    from fer_ros.manifest import ModelError

    try:
        check_num_threads(settings.num_threads)
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    model_dir = resolve_model_dir(settings.model_path, option)
    try:
        engine = load_engine(model_dir, backend=settings.backend, device=settings.device, fp16=settings.fp16,
                             cache_dir=settings.engine_cache_dir or None, num_threads=settings.num_threads,
                             int8=settings.int8)
    except (ModelError, OSError, ValueError, RuntimeError, ImportError) as exc:
        raise SetupError(f"cannot load the model in {model_dir} with backend {settings.backend!r}: {exc}") from None
    return engine, model_dir


def build_recognizer(settings: RecognizerSettings, option: str = "--model", landmarker=None) -> BuiltRecognizer:
    """The perception pipeline the node runs: the settings' model (open_engine) behind a MediaPipe landmarker in
    VIDEO mode (or `landmarker`, which the recognizer then owns), with the settings' face limits and neutral
    policy. SetupError when something is unusable; nothing stays open then."""
    from fer_ros.landmarker import LandmarkerError, MediaPipeLandmarker
    from fer_ros.pipeline import Recognizer

    engine, model_dir = open_engine(settings, option)
    try:
        if landmarker is None:
            landmarker = MediaPipeLandmarker(mode="video", max_faces=settings.max_faces,
                                             threads=settings.landmark_threads)
        recognizer = Recognizer(landmarker=landmarker, engine=engine, max_faces=settings.max_faces,
                                face_timeout_s=settings.face_timeout_s, neutral_policy=settings.neutral_policy,
                                min_face_size_px=settings.min_face_size_px)
    except (LandmarkerError, ValueError) as exc:
        if landmarker is not None:
            landmarker.close()
        engine.close()
        raise SetupError(str(exc)) from None
    if settings.window_length and settings.window_length != recognizer.window_length:
        recognizer.close()
        engine.close()
        raise SetupError(f"window_length {settings.window_length} does not match the model's "
                         f"{recognizer.window_length} frames; set it to 0 (use the model's)")
    # e.g. "onnxruntime:cpu int8", as /diagnostics and the results say
    label = getattr(engine, "label", None) or getattr(engine, "backend", settings.backend)
    return BuiltRecognizer(recognizer, str(label), model_dir)


def describe(built: BuiltRecognizer) -> list[str]:
    """Log lines about a built recognizer: what runs the model, and the model's classes and clip."""
    rec = built.recognizer
    lines = [f"inference: {rec.engine.describe()}",
             f"model {built.model_dir.name}: classes {', '.join(rec.class_names)}, {rec.window_length} frames per "
             f"clip ({rec.clip_input}), backend {built.backend}"]
    describe_landmarks = getattr(rec.landmarker, "describe", None)
    if callable(describe_landmarks):
        lines.append(describe_landmarks())
    return lines


def smooth_results(results: list, smoother: ProbabilitySmoother, stamp_s: float) -> list:
    """The per-face score smoothing of fer_node and fer-replay: every scored face's probabilities averaged over
    time (label and confidence follow the average); results are returned unchanged when smoothing is off. A face
    missing from `results` (a frame whose landmarks missed it, its track alive) keeps its average until it would
    no longer weigh in (ProbabilitySmoother.forget_stale); track ids are never reused, so a face that comes back
    after its track was dropped starts a new one."""
    smoother.forget_stale(stamp_s)
    if smoother.time_constant_s <= 0:
        return results
    out = []
    for r in results:
        if r.window_ready and r.probs is not None:
            probs = smoother.update(int(r.id), r.probs, stamp_s)
            best = int(np.argmax(probs))
            r = replace(r, probs=probs, label=r.class_names[best], confidence=float(probs[best]))
        out.append(r)
    return out
