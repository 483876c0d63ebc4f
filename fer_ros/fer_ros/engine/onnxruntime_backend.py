"""ONNX Runtime backend: model.onnx on the CPU (default) or on CUDA with onnxruntime-gpu.

On the CPU, with int8 (the default of the node and the tools), it runs the model's int8 graph (model.int8.onnx,
quantize.py) where the manifest lists one: about half the time per face on an x86-64 CPU. A model without one
runs its fp32 graph, and the engine's notes say so.

The graph optimised by ONNX Runtime is cached (engine/cache.py), keyed by the ONNX file's sha256, the runtime
version and the processor, so later loads start from the optimised graph. The graph runs (and is optimised for the
cache) from the bytes whose sha256 was checked (manifest.read_model_file), not from the file read again.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fer_ros.engine import hardware
from fer_ros.engine.base import BackendUnavailable, Engine
from fer_ros.engine.cache import CacheEntry, default_root
from fer_ros.manifest import GET_A_MODEL, Manifest, ModelError, read_model_file
from fer_ros.quantize import INT8_ROLE

log = logging.getLogger("fer_ros.engine")
OPTIMISED = "model.optimised.onnx"


class OnnxRuntimeEngine(Engine):
    def __init__(self, manifest: Manifest, session, backend: str, device: str, cache_hit: bool | None,
                 notes: list[str], int8: bool = False) -> None:
        super().__init__(manifest=manifest, backend=backend, device=device, fp16=False, int8=int8,
                         cache_hit=cache_hit, notes=notes)
        self.session = session

    def _run(self, clip: np.ndarray, geo: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return self.session.run(["probs"], {"clip": clip, "geo": geo, "geo_valid": valid})[0]

    def close(self) -> None:
        self.session = None
        super().close()


def session_options(num_threads: int = 0):
    import onnxruntime as ort
    so = ort.SessionOptions()
    if num_threads > 0:
        so.intra_op_num_threads = num_threads
        so.inter_op_num_threads = 1
    # ONNX Runtime's worker threads otherwise spin for a while after each run, on the cores the landmarker's
    # threads need for the next frame: on a 2-core CPU a frame with three faces took 40.6-40.9 ms with spinning
    # and 35.4-36.5 ms without (one face: 0.5-1 ms more without).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only; our own messages say what matters
    return so


def provider_name(provider) -> str:
    """The name of an entry of an InferenceSession's provider list (a name or a (name, options) pair)."""
    return provider[0] if isinstance(provider, tuple) else provider


def check_provider(session, providers: list, device: str, missing: str):
    """`session` when it runs on the first of `providers`, the one asked for. onnxruntime lists an execution
    provider whose libraries are missing and then leaves it out of the session, which runs on the next one; that
    is BackendUnavailable naming `missing` (what the provider needs), not a silent change of device."""
    want, got = provider_name(providers[0]), list(session.get_providers())
    if got and got[0] == want:
        return session
    raise BackendUnavailable(f"onnxruntime could not start its {want} on {device} (the session would run on "
                             f"{', '.join(got) or 'no provider'}): {missing}")


def error_cause(exc: BaseException) -> str:
    """An exception as the cause in a one-line error message: its type and the first 300 characters of its text."""
    return f"{type(exc).__name__}: {str(exc).strip()[:300]}"


def _session(path: Path, so, providers: list, device: str = "cpu", data: bytes | None = None):
    """An InferenceSession of the graph `data` (where given, else the file `path`; `path` names it in messages) on
    the first of `providers` (no silent fallback to the others). ModelError when the graph does not load on the CPU
    (whatever provider was asked for: a GPU provider that fails on a graph the CPU loads is tried there to tell);
    BackendUnavailable when a GPU provider cannot start or fails on a graph the CPU loads."""
    import onnxruntime as ort
    want = provider_name(providers[0])
    source = str(path) if data is None else data
    try:
        session = ort.InferenceSession(source, sess_options=so, providers=providers, enable_fallback=0)
    except Exception as exc:  # noqa: BLE001 -- onnxruntime raises its own exception types
        cause = error_cause(exc)
        if want != "CPUExecutionProvider" and _loads_on_cpu(source):
            raise BackendUnavailable(f"{path}: onnxruntime's {want} could not run this graph on {device} ({cause}); "
                                     f"check the CUDA libraries onnxruntime-gpu needs, or use backend torch or "
                                     f"device cpu") from None
        raise ModelError(f"{path}: onnxruntime cannot load this graph ({cause}); re-export the model or "
                         f"{GET_A_MODEL}") from None
    return check_provider(session, providers, device, "the CUDA and cuDNN libraries onnxruntime-gpu needs are "
                          "missing or do not match it; install them, or use backend torch or device cpu")


def _loads_on_cpu(source: str | bytes) -> bool:
    """Whether onnxruntime loads the graph `source` (a file name or the graph's bytes) on the CPU (a graph it
    cannot parse or check is the model's fault on every provider)."""
    import onnxruntime as ort
    try:
        ort.InferenceSession(source, sess_options=session_options(), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 -- onnxruntime raises its own exception types
        return False
    return True


def load(manifest: Manifest, device: str = "cpu", fp16: bool = False, cache_dir: str | Path | None = None,
         num_threads: int = 0, use_cache: bool = True, int8: bool = False) -> OnnxRuntimeEngine:
    if hardware.module_version("onnxruntime") is None:
        raise BackendUnavailable("backend onnxruntime: the onnxruntime package is not installed; "
                                 "`pip install onnxruntime` (or use backend torch)")
    kind, index = hardware.parse_device(device)
    notes: list[str] = []
    if kind == "cuda":
        if "CUDAExecutionProvider" not in hardware.ort_providers():
            raise BackendUnavailable(f"backend onnxruntime on {device}: this onnxruntime has no CUDA execution "
                                     f"provider (providers: {', '.join(hardware.ort_providers())}); install "
                                     f"onnxruntime-gpu, use backend torch with device cuda, or device cpu")
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        name, where = f"onnxruntime:cuda:{index}", f"cuda:{index}"
    else:
        providers = ["CPUExecutionProvider"]
        name, where = "onnxruntime:cpu", "cpu"
    if fp16:
        notes.append(f"fp16 ignored: onnxruntime on {'the CPU' if where == 'cpu' else 'CUDA'} runs the graph in the "
                     "precision it was saved in (use tensorrt or torch on a GPU for half precision)")
    role = "onnx"
    if int8:
        if kind == "cuda":
            notes.append("int8 graph not used: it is for the CPU; the fp32 graph runs on the GPU")
        elif INT8_ROLE not in manifest.files:
            notes.append("int8 asked for, but the model has no int8 graph (model.int8.onnx); running the fp32 "
                         "graph -- `fer-quantize` adds one")
        else:
            role = INT8_ROLE
    onnx_path = manifest.file(role)
    graph = read_model_file(manifest, role)
    quantized = role == INT8_ROLE
    session, cache_hit = _cached_session(manifest, role, onnx_path, graph, name, where, providers, num_threads,
                                         notes, cache_dir) if use_cache else (None, None)
    if session is None:
        session = _session(onnx_path, session_options(num_threads), providers, where, graph)
    engine = OnnxRuntimeEngine(manifest, session, name, device, cache_hit, notes, quantized)
    engine.check_graph(onnx_path, *graph_io(session))
    return engine


def graph_io(session) -> tuple[dict[str, list], dict[str, list]]:
    """The inputs and outputs of a session's graph: name -> shape (a dimension that is not fixed: a name or None)."""
    return ({i.name: list(i.shape) for i in session.get_inputs()},
            {o.name: list(o.shape) for o in session.get_outputs()})


def _cached_session(manifest: Manifest, role: str, onnx_path: Path, graph: bytes, name: str, where: str,
                    providers: list, num_threads: int, notes: list[str], cache_dir):
    """(session, cache hit) from the engine cache: the optimised graph it holds, or built now from `graph` (the
    checked bytes of `onnx_path`) and saved in it. (None, None), with the reason in `notes`, when the cache cannot
    be used."""
    import onnxruntime as ort
    context = {"backend": name, "onnx_sha256": manifest.files[role]["sha256"], "onnxruntime": ort.__version__,
               **hardware.cpu_context()}
    # the int8 and fp32 graphs keep an entry each (a new build drops the other entries of its kind only)
    entry = CacheEntry(Path(cache_dir) if cache_dir else default_root(), manifest.name,
                       "onnxruntime-int8" if role == INT8_ROLE else "onnxruntime", context)
    so = session_options(num_threads)
    # A cache that cannot be written or read (folder gone, disk full) is no fault of the model: the graph is
    # then loaded from the model file, which raises ModelError itself if the graph is at fault.
    try:
        if entry.is_valid():
            return _session(entry.file(OPTIMISED), so, providers, where), True
        if entry.refused:
            notes.append(f"engine cache entry not trusted ({entry.refused}); built again")
        entry.prepare()
        # The saved graph stops at the portable optimisations; the session that runs is made from it like a
        # cache hit's, with the processor-specific layouts on top (running the saving session itself would
        # leave them out: about twice the time per face on a 2-core x86-64 CPU).
        saving = session_options(num_threads)
        saving.optimized_model_filepath = str(entry.file(OPTIMISED))
        saving.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        _session(onnx_path, saving, providers, where, graph)  # writes the optimised graph
        entry.commit([OPTIMISED])
        return _session(entry.file(OPTIMISED), so, providers, where), False
    except (OSError, ModelError) as exc:
        notes.append(f"engine cache unusable ({exc}); loading without it")
        return None, None
