"""TensorRT backend, through whichever of the two usual installs is present:

1. onnxruntime-gpu with its TensorRT execution provider (model.onnx; TensorRT builds the plan at load), or
2. torch-tensorrt (the torch model compiled with the dynamo frontend, saved as an exported program).

The built engine is cached (engine/cache.py) keyed by the ONNX file's sha256 (torch-tensorrt's, compiled from
model.pt, also by model.pt's sha256 and a hash of the network the manifest describes: arch, arch_cfg, classes,
input shapes), the GPU name and compute capability, the TensorRT and runtime versions, fp16 and the batch profile,
and rebuilt only when one of those changes. Where the GPU name (asked through PyTorch) or the TensorRT version (the
tensorrt module's) is not known, the engine is built at every load and not cached, since a plan kept under an
incomplete key could be reused by another GPU or TensorRT; the engine's notes say so. Batch profile: 1 to
MAX_FACES faces, tuned for OPT_FACES.

onnxruntime lists its TensorRT provider even where the TensorRT libraries are missing, and then runs the session
on CUDA or the CPU instead: such a session is refused (BackendUnavailable), and torch-tensorrt is tried where it is
installed. A build or warm-up that fails in the runtime (an unsupported layer, GPU memory) is a ModelError naming
the cause, so `auto` goes on to the next backend.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from fer_ros.engine import hardware
from fer_ros.engine.base import BackendUnavailable, Engine
from fer_ros.engine.cache import CacheEntry, default_root
from fer_ros.engine.onnxruntime_backend import OnnxRuntimeEngine, error_cause
from fer_ros.manifest import Manifest, ModelError, read_model_file

MAX_FACES = 32
OPT_FACES = 4
TS_FILE = "model.trt.ep"


def _unavailable_reason() -> str | None:
    if "TensorrtExecutionProvider" in hardware.ort_providers():
        return None
    if hardware.module_version("torch_tensorrt") is not None and hardware.torch_cuda_devices():
        return None
    bits = []
    bits.append("onnxruntime has no TensorrtExecutionProvider (providers: "
                f"{', '.join(hardware.ort_providers()) or 'none'})")
    if hardware.module_version("torch_tensorrt") is None:
        bits.append("torch_tensorrt is not installed")
    if not hardware.torch_cuda_devices():
        bits.append("PyTorch sees no CUDA GPU")
    return "; ".join(bits)


def available() -> tuple[bool, str]:
    reason = _unavailable_reason()
    return reason is None, reason or "TensorRT found"


def _context(manifest: Manifest, runtime: str, index: int, fp16: bool) -> dict:
    gpu = hardware.gpu_info(index) or {"name": "unknown", "capability": "unknown"}
    context = {"backend": f"tensorrt:{runtime}", "onnx_sha256": manifest.files["onnx"]["sha256"],
               "gpu": gpu["name"], "capability": gpu["capability"], "tensorrt": hardware.module_version("tensorrt"),
               "runtime": hardware.module_version(runtime.replace("-", "_")), "fp16": bool(fp16),
               "batch": [1, OPT_FACES, MAX_FACES]}
    if runtime == "torch_tensorrt":  # compiled from model.pt into the network the manifest describes, not model.onnx
        context["state_dict_sha256"] = manifest.files.get("state_dict", {}).get("sha256")
        context["network_sha256"] = network_digest(manifest)
    return context


def network_digest(manifest: Manifest) -> str:
    """sha256 of what torch-tensorrt's build reads from the manifest besides model.pt: the network (arch, arch_cfg,
    number of classes) and its input shapes."""
    network = {"arch": manifest.arch, "arch_cfg": manifest.arch_cfg, "classes": manifest.num_classes,
               "inputs": Engine(manifest).input_shapes()}
    return hashlib.sha256(json.dumps(network, sort_keys=True, default=str).encode()).hexdigest()


def _key_gaps(context: dict) -> list[str]:
    """What a plan's cache key lacks (an unknown GPU or TensorRT version), as the fix for each."""
    gaps = []
    if context["gpu"] in (None, "unknown") or context["capability"] in (None, "unknown"):
        gaps.append("the GPU name and compute capability (PyTorch with CUDA tells them)")
    if context["tensorrt"] in (None, "unknown"):
        gaps.append("the TensorRT version (the tensorrt Python module tells it)")
    return gaps


class OrtTensorRTEngine(OnnxRuntimeEngine):
    """An onnxruntime session whose graph runs in TensorRT: the onnxruntime engine with TensorRT's batch bound."""

    def __init__(self, manifest, session, device, fp16, cache_hit, notes) -> None:
        super().__init__(manifest, session, "tensorrt:onnxruntime", device, cache_hit, notes)
        self.fp16 = fp16
        self.max_batch = MAX_FACES


class TorchTensorRTEngine(Engine):
    def __init__(self, manifest, module, torch_device, device, fp16, cache_hit, notes) -> None:
        super().__init__(manifest=manifest, backend="tensorrt:torch_tensorrt", device=device, fp16=fp16,
                         cache_hit=cache_hit, notes=notes, max_batch=MAX_FACES)
        self.module = module
        self.torch_device = torch_device

    def _run(self, clip, geo, valid) -> np.ndarray:
        import torch
        with torch.inference_mode():
            args = [torch.from_numpy(a).to(self.torch_device) for a in (clip, geo, valid)]
            return self.module(*args).float().cpu().numpy()

    def close(self) -> None:
        self.module = None
        super().close()


def _shape_profile(engine_shapes: dict, batch: int) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in (batch, *shape))}" for name, shape in engine_shapes.items())


def _load_ort(manifest, index, fp16, entry: CacheEntry | None, notes, num_threads: int = 0) -> OrtTensorRTEngine:
    """The onnxruntime TensorRT provider's engine (`num_threads` for the session's CPU part, 0: onnxruntime's
    choice); `entry` None builds it without caching it."""
    import onnxruntime as ort

    from fer_ros.engine.onnxruntime_backend import check_provider, graph_io, session_options
    hit = entry is not None and entry.is_valid()
    if entry is not None and not hit:
        if entry.refused:
            notes.append(f"engine cache entry not trusted ({entry.refused}); built again")
        entry.prepare()
    shapes = Engine(manifest).input_shapes()
    trt_options = {
        "device_id": index, "trt_fp16_enable": bool(fp16),
        "trt_profile_min_shapes": _shape_profile(shapes, 1),
        "trt_profile_opt_shapes": _shape_profile(shapes, OPT_FACES),
        "trt_profile_max_shapes": _shape_profile(shapes, MAX_FACES),
    }
    if entry is not None:
        trt_options.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(entry.path),
                            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(entry.path)})
    providers = [("TensorrtExecutionProvider", trt_options), ("CUDAExecutionProvider", {"device_id": index}),
                 "CPUExecutionProvider"]
    try:  # no fallback: a session that is not TensorRT's must not run as "tensorrt"
        session = ort.InferenceSession(str(manifest.file("onnx")), sess_options=session_options(num_threads),
                                       providers=providers, enable_fallback=0)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{manifest.file('onnx')}: TensorRT could not build an engine ({error_cause(exc)})") from None
    check_provider(session, providers, f"cuda:{index}", "the TensorRT libraries (libnvinfer) it needs are missing "
                   "or do not match this onnxruntime; install TensorRT (on a Jetson it comes with JetPack), or use "
                   "backend torch or onnxruntime")
    engine = OrtTensorRTEngine(manifest, session, f"cuda:{index}", fp16, hit if entry is not None else None, notes)
    engine.check_graph(manifest.file("onnx"), *graph_io(session))
    if not hit:  # the plan is built on the first run of each profile: build it now, then record it
        try:
            _warm(engine, OPT_FACES)
        except Exception as exc:  # noqa: BLE001 -- onnxruntime's Fail, EPFail, ... derive from Exception only
            raise ModelError(f"{manifest.file('onnx')}: TensorRT could not build or run an engine on cuda:{index} "
                             f"({error_cause(exc)}); use backend torch or onnxruntime") from None
        if entry is not None:
            # onnxruntime read the graph from its file: it is cached under the manifest's sha256 only if the file
            # still has it (ModelError otherwise)
            read_model_file(manifest, "onnx")
            if any(p.is_file() and p.suffix == ".engine" for p in entry.path.iterdir()):
                entry.commit()
            else:
                engine.cache_hit = None
                notes.append(f"TensorRT wrote no engine file to {entry.path}: not cached, built again at the next "
                             f"load")
    return engine


def _load_torch_trt(manifest, index, fp16, entry: CacheEntry | None, notes) -> TorchTensorRTEngine:
    """torch-tensorrt's engine; `entry` None builds it without caching it."""
    import torch
    import torch_tensorrt

    from fer_ros.export import load_torch_model
    from fer_ros.nets.agn import ProbsOnly
    dev = torch.device("cuda", index)
    if entry is not None and entry.is_valid():
        module = torch.export.load(str(entry.file(TS_FILE))).module()
        return TorchTensorRTEngine(manifest, module, dev, str(dev), fp16, True, notes)
    if entry is not None:
        if entry.refused:
            notes.append(f"engine cache entry not trusted ({entry.refused}); built again")
        entry.prepare()
    model, _ = load_torch_model(manifest.directory, manifest)
    wrapper = ProbsOnly(model).eval().to(dev)
    shapes = Engine(manifest).input_shapes()
    inputs = [torch_tensorrt.Input(min_shape=(1, *s), opt_shape=(OPT_FACES, *s), max_shape=(MAX_FACES, *s),
                                   dtype=torch.float32) for s in shapes.values()]
    precisions = {torch.float16, torch.float32} if fp16 else {torch.float32}
    compiled = torch_tensorrt.compile(wrapper, ir="dynamo", inputs=inputs, enabled_precisions=precisions)
    if entry is None:
        return TorchTensorRTEngine(manifest, compiled, dev, str(dev), fp16, None, notes)
    examples = [torch.rand(OPT_FACES, *s, device=dev) for s in shapes.values()]
    torch_tensorrt.save(compiled, str(entry.file(TS_FILE)), output_format="exported_program", inputs=examples)
    problem = saved_program_problem(entry.file(TS_FILE), list(shapes.values()), dev)
    if problem is not None:  # kept, it would fail at the next start on a frame with another number of faces
        entry.file(TS_FILE).unlink(missing_ok=True)
        notes.append(f"engine not cached: {problem}; built again at the next load")
        return TorchTensorRTEngine(manifest, compiled, dev, str(dev), fp16, None, notes)
    entry.commit([TS_FILE])
    return TorchTensorRTEngine(manifest, compiled, dev, str(dev), fp16, False, notes)


def saved_program_problem(path: Path, shapes: list[tuple], device) -> str | None:
    """None when the exported program saved at `path` runs a batch of 1 and of MAX_FACES faces (inputs of
    `shapes` without their batch dimension, on `device`); otherwise what went wrong. How torch-tensorrt saves a
    program compiled for a range of batch sizes differs between its versions: one that keeps only the example
    batch it was saved with is refused here rather than cached."""
    import torch
    doing = "does not load"
    try:
        module = torch.export.load(str(path)).module()
        for batch in (1, MAX_FACES):
            doing = f"does not run {batch} faces"
            module(*[torch.zeros(batch, *s, device=device) for s in shapes])
    except Exception as exc:  # noqa: BLE001 -- torch.export's guards raise several types
        return f"the saved torch-tensorrt program {doing} ({error_cause(exc)})"
    return None


def _warm(engine: Engine, batch: int) -> None:
    shapes = engine.input_shapes()
    rng = np.random.default_rng(0)
    engine.predict(rng.random((batch, *shapes["clip"]), np.float32), rng.random((batch, *shapes["geo"]), np.float32),
                   np.ones(batch, np.float32))


def load(manifest: Manifest, device: str = "cuda", fp16: bool = False, cache_dir: str | Path | None = None,
         num_threads: int = 0) -> Engine:
    kind, index = hardware.parse_device(device)
    if kind == "cpu":
        raise BackendUnavailable("backend tensorrt runs on an NVIDIA GPU, not on device cpu; use device cuda, "
                                 "or backend onnxruntime for the CPU")
    reason = _unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(f"backend tensorrt is not available here: {reason}", "on a Jetson, TensorRT comes "
                                 "with JetPack (see README, Jetson); elsewhere use backend auto, torch or onnxruntime")
    root = Path(cache_dir) if cache_dir else default_root()
    notes: list[str] = []

    def entry_for(runtime: str, family: str) -> CacheEntry | None:
        context = _context(manifest, runtime, index, fp16)
        gaps = _key_gaps(context)
        if gaps:
            notes.append("engine not cached, built at every load: its cache key would lack " + " and ".join(gaps))
            return None
        return CacheEntry(root, manifest.name, family, context)

    try:
        if "TensorrtExecutionProvider" in hardware.ort_providers():
            try:
                return _load_ort(manifest, index, fp16, entry_for("onnxruntime", "tensorrt-ort"), notes,
                                 num_threads=num_threads)
            except BackendUnavailable as exc:  # the provider is listed but cannot start: torch-tensorrt may
                if hardware.module_version("torch_tensorrt") is None or not hardware.torch_cuda_devices():
                    raise
                notes.append(f"not tensorrt:onnxruntime: {exc}")
        return _load_torch_trt(manifest, index, fp16, entry_for("torch_tensorrt", "tensorrt-torch"), notes)
    except PermissionError as exc:  # from CacheEntry.prepare: a TensorRT engine is only built into a private folder
        raise BackendUnavailable(f"backend tensorrt needs a private engine cache: {exc}") from None
    except (BackendUnavailable, ModelError):
        raise
    except Exception as exc:  # noqa: BLE001 -- torch-tensorrt's compile raises RuntimeError, AssertionError, ...
        raise ModelError(f"backend tensorrt on cuda:{index} could not build or load an engine for model "
                         f"{manifest.name!r} ({error_cause(exc)}); use backend torch or onnxruntime") from None
