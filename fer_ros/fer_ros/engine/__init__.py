"""Inference engines: one interface (`Engine.predict(clip, geo, geo_valid) -> probs`) over ONNX Runtime, PyTorch
and TensorRT. `load_engine(model_dir, backend, device, fp16, cache_dir, num_threads, int8, cuda_graphs)` checks
the model (manifest, sha256 of its files, class list and preprocessing against this code) and returns a ready
engine.

backend: "onnxruntime" (CPU default; CUDA with onnxruntime-gpu), "torch" (CPU or CUDA, fp16 and CUDA graphs on
CUDA), "tensorrt" (onnxruntime-gpu's TensorRT provider or torch-tensorrt; engine cached on disk), or "auto": TensorRT
where it loads, then a CUDA backend, then the CPU (onnxruntime, else torch), the GPU steps only where an NVIDIA
driver shows (hardware.nvidia_driver_visible, which imports nothing); `engine.notes` says what was tried
and why it picked what it did. device: "auto" (a GPU when there is one), "cpu", "cuda" or "cuda:N"; with backend
auto and device cpu only CPU backends are tried. int8 (default true): onnxruntime on the CPU runs the model's int8
graph where it has one (quantize.py); the other backends run fp32 (or fp16) whatever it says. cuda_graphs
(default true): torch on a GPU replays its forward pass as CUDA graphs (cuda_graphs.py); false runs it eagerly.
"""
from __future__ import annotations

from pathlib import Path

from fer_ros.engine import hardware
from fer_ros.engine.base import BackendUnavailable, Engine, EngineClosed, check_num_threads
from fer_ros.manifest import Manifest, ModelError, load_manifest

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")

__all__ = ["BACKENDS", "BackendUnavailable", "Engine", "EngineClosed", "ModelError", "load_engine",
           "available_backends", "check_num_threads"]


def available_backends() -> dict[str, str]:
    """backend -> "yes" or why not, for this machine (used by bench and diagnostics)."""
    from fer_ros.engine import tensorrt_backend
    out = {"onnxruntime": "yes" if hardware.module_version("onnxruntime") else "onnxruntime not installed",
           "torch": "yes" if hardware.module_version("torch") else "torch not installed"}
    ok, reason = tensorrt_backend.available()
    out["tensorrt"] = "yes" if ok else reason
    out["cuda"] = (f"yes ({hardware.torch_cuda_devices()} GPU(s) through torch)" if hardware.torch_cuda_devices()
                   else "no CUDA GPU visible to torch")
    return out


def _load_one(manifest: Manifest, backend: str, device: str, fp16: bool, cache_dir, num_threads: int,
              int8: bool = False, cuda_graphs: bool = True) -> Engine:
    if backend == "onnxruntime":
        from fer_ros.engine import onnxruntime_backend
        kind, index = hardware.parse_device(device)
        if kind == "auto":  # onnxruntime on a GPU only when asked for explicitly or through auto's CUDA step
            device = "cpu"
        return onnxruntime_backend.load(manifest, device, fp16, cache_dir, num_threads, int8=int8)
    if backend == "torch":
        from fer_ros.engine import torch_backend
        return torch_backend.load(manifest, device, fp16, num_threads, cuda_graphs=cuda_graphs)
    if backend == "tensorrt":
        from fer_ros.engine import tensorrt_backend
        kind, index = hardware.parse_device(device)
        return tensorrt_backend.load(manifest, "cuda:%d" % index if kind == "auto" else device, fp16, cache_dir,
                                     num_threads)
    raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")


def _load_auto(manifest: Manifest, device: str, fp16: bool, cache_dir, num_threads: int, int8: bool,
               cuda_graphs: bool) -> Engine:
    kind, index = hardware.parse_device(device)
    tried: list[str] = []
    no_onnx = "onnx" not in manifest.files
    no_onnx_note = "the model has no ONNX graph (manifest files: " + ", ".join(sorted(manifest.files)) + ")"
    no_driver = kind == "auto" and not hardware.nvidia_driver_visible()
    if no_driver:  # skip the GPU probes, which import torch
        tried.append("GPU backends: no NVIDIA driver on this machine (no /dev/nvidia*, /dev/nvhost-*, libcuda); "
                     "set device cuda to try them anyway")
    elif kind in ("auto", "cuda"):
        gpu = f"cuda:{index}"
        for backend, dev in (("tensorrt", gpu), ("onnxruntime", gpu), ("torch", gpu)):
            if no_onnx and backend in ("tensorrt", "onnxruntime"):
                tried.append(f"{backend} on {dev}: {no_onnx_note}")
                continue
            if backend == "onnxruntime" and "CUDAExecutionProvider" not in hardware.ort_providers():
                tried.append(f"{backend} on {dev}: this onnxruntime has no CUDA execution provider (providers: "
                             f"{', '.join(hardware.ort_providers()) or 'none'}); install onnxruntime-gpu for it")
                continue
            try:
                engine = _load_one(manifest, backend, dev, fp16, cache_dir, num_threads, cuda_graphs=cuda_graphs)
            except BackendUnavailable as exc:  # its reason only: its advice may name auto, which is choosing here
                tried.append(f"{backend} on {dev}: {exc.reason}")
                continue
            except ModelError as exc:  # a GPU runtime that fails on this graph: fall back, say so
                tried.append(f"{backend} on {dev} failed: {exc}")
                continue
            engine.notes[:0] = [f"auto picked {engine.backend}"] + [f"not {t}" for t in tried]
            return engine
        if kind == "cuda":
            raise BackendUnavailable(f"no backend can run on {device}: " + " | ".join(tried),
                                     "use device cpu (or device auto, which falls back to the CPU)")
    for backend in ("onnxruntime", "torch"):
        if no_onnx and backend == "onnxruntime":
            tried.append(f"{backend}: {no_onnx_note}")
            continue
        try:
            engine = _load_one(manifest, backend, "cpu", fp16, cache_dir, num_threads, int8)
        except BackendUnavailable as exc:
            tried.append(f"{backend}: {exc.reason}")
            continue
        why = ("device cpu requested" if kind == "cpu" else "no NVIDIA driver" if no_driver
               else "no GPU backend loaded")
        engine.notes[:0] = [f"auto picked {engine.backend} ({why})"] + [f"not {t}" for t in tried]
        return engine
    raise BackendUnavailable("no inference backend is installed: " + " | ".join(tried))


def load_engine(model: str | Path, backend: str = "auto", device: str = "auto", fp16: bool = False,
                cache_dir: str | Path | None = None, num_threads: int = 0, int8: bool = True,
                cuda_graphs: bool = True) -> Engine:
    """See the module docstring. Raises ModelError (a bad or missing model file: the message names it and says
    what to do), BackendUnavailable (the backend or device is not usable here) or ValueError (bad arguments: an
    unknown backend or device, num_threads that is not an integer >= 0)."""
    backend = (backend or "auto").strip().lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    hardware.parse_device(device)  # ValueError early for a misspelt device
    num_threads = check_num_threads(num_threads)
    manifest = load_manifest(model)
    if "onnx" not in manifest.files and backend in ("onnxruntime", "tensorrt"):
        raise ModelError(f"{manifest.directory / 'manifest.json'}: the model has no ONNX graph, which backend "
                         f"{backend} needs; re-export it with `fer-train --export` or use backend torch")
    if backend == "auto":
        return _load_auto(manifest, device, fp16, cache_dir, num_threads, int8, cuda_graphs)
    return _load_one(manifest, backend, device, fp16, cache_dir, num_threads, int8, cuda_graphs)
