"""PyTorch backend: the model rebuilt from its manifest and model.pt (loaded with weights_only=True), on the CPU
or a CUDA GPU; fp16 on the GPU. On a GPU the forward pass runs as CUDA graphs recorded for a fixed batch profile
(cuda_graphs.py) unless cuda_graphs is false or recording fails; the engine's notes say which."""
from __future__ import annotations

import numpy as np

from fer_ros.engine import hardware
from fer_ros.engine.base import BackendUnavailable, Engine
from fer_ros.engine.cuda_graphs import BATCH_PROFILE, GraphedModel
from fer_ros.engine.onnxruntime_backend import error_cause
from fer_ros.manifest import Manifest


class TorchEngine(Engine):
    def __init__(self, manifest: Manifest, model, torch_device, backend: str, device: str, fp16: bool,
                 notes: list[str]) -> None:
        super().__init__(manifest=manifest, backend=backend, device=device, fp16=fp16, notes=notes)
        self.model = model
        self.torch_device = torch_device
        self.graphed = None  # cuda_graphs.GraphedModel once use_cuda_graphs has recorded the model

    @property
    def dtype(self):
        import torch
        return torch.float16 if self.fp16 else torch.float32

    def _run(self, clip: np.ndarray, geo: np.ndarray, valid: np.ndarray) -> np.ndarray:
        import torch
        if self.graphed is not None:
            return self.graphed(clip, geo, valid).float().cpu().numpy()
        dtype = self.dtype
        with torch.inference_mode():
            args = [torch.from_numpy(a).to(self.torch_device, dtype=dtype, non_blocking=True)
                    for a in (clip, geo, valid)]
            probs = self.model(*args).probs
            return probs.float().cpu().numpy()

    def close(self) -> None:
        if self.graphed is not None:
            self.graphed.close()
            self.graphed = None
        self.model = None
        super().close()
        if self.torch_device.type == "cuda":
            import torch
            torch.cuda.empty_cache()


def use_cuda_graphs(engine: TorchEngine, sizes: tuple[int, ...] = BATCH_PROFILE) -> bool:
    """Record the engine's model as CUDA graphs for `sizes` and run it through them from now on (larger batches in
    parts of the largest size). False, with the reason in the engine's notes, when recording fails: the engine
    then stays eager."""
    try:
        graphed = GraphedModel(engine.model, engine.torch_device, engine.dtype, engine.input_shapes(), sizes)
    except RuntimeError as exc:
        engine.notes.append(f"CUDA graphs not recorded, eager instead ({type(exc).__name__}: {exc})")
        return False
    engine.graphed = graphed
    engine.max_batch = graphed.sizes[-1]
    engine.notes.append("CUDA graphs for batches of " + ", ".join(map(str, graphed.sizes)) + " faces")
    return True


def load(manifest: Manifest, device: str = "cpu", fp16: bool = False, num_threads: int = 0,
         cuda_graphs: bool = True) -> TorchEngine:
    if hardware.module_version("torch") is None:
        raise BackendUnavailable("backend torch: PyTorch is not installed; use backend onnxruntime")
    import torch

    from fer_ros.export import load_torch_model
    kind, index = hardware.parse_device(device)
    notes: list[str] = []
    if kind == "auto":
        kind = "cuda" if hardware.torch_cuda_devices() else "cpu"
    if kind == "cuda":
        n = hardware.torch_cuda_devices()
        if n <= index:
            raise BackendUnavailable(f"backend torch on cuda:{index}: PyTorch sees "
                                     f"{'no CUDA GPU' if n == 0 else f'{n} GPU(s)'} (torch {torch.__version__})",
                                     "use device cpu or backend auto")
        torch_device = torch.device("cuda", index)
    else:
        torch_device = torch.device("cpu")
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        if fp16:
            notes.append("fp16 ignored on the CPU")
            fp16 = False
    model, _ = load_torch_model(manifest.directory, manifest)
    try:
        model = model.to(torch_device)
        if fp16:
            model = model.half()
    except RuntimeError as exc:  # out of GPU memory, a CUDA error: the GPU cannot take the model now
        raise BackendUnavailable(f"backend torch on {torch_device}: the model cannot be put on the device "
                                 f"({error_cause(exc)})", "use device cpu or backend auto") from None
    engine = TorchEngine(manifest, model, torch_device, f"torch:{torch_device}", str(torch_device), fp16, notes)
    if torch_device.type == "cuda" and cuda_graphs:
        use_cuda_graphs(engine)
    return engine
