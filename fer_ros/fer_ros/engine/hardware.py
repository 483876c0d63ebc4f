"""What accelerators and runtimes this machine has, asked without failing: each probe returns None or False
when the library or the device is missing."""
from __future__ import annotations

import glob
import os
import platform
from functools import lru_cache


@lru_cache(maxsize=None)
def nvidia_driver_visible() -> bool:
    """True when this machine shows an NVIDIA driver: a /dev/nvidia* or Jetson /dev/nvhost-* device node,
    /proc/driver/nvidia, or libcuda on the loader path. Asked without importing torch (about 1.7 s), so that
    `auto` on a machine without one goes straight to the CPU backends."""
    if glob.glob("/dev/nvidia[0-9]*") or glob.glob("/dev/nvhost-*") or os.path.isdir("/proc/driver/nvidia"):
        return True
    import ctypes.util
    return ctypes.util.find_library("cuda") is not None


@lru_cache(maxsize=None)
def torch_cuda_devices() -> int:
    try:
        import torch
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 -- a broken CUDA install reads as no GPU
        return 0


def gpu_info(index: int = 0) -> dict | None:
    """{"name", "capability", "cuda"} of GPU `index` through torch, or None."""
    if torch_cuda_devices() <= index:
        return None
    import torch
    major, minor = torch.cuda.get_device_capability(index)
    return {"name": torch.cuda.get_device_name(index), "capability": f"{major}.{minor}",
            "cuda": torch.version.cuda}


@lru_cache(maxsize=None)
def ort_providers() -> tuple[str, ...]:
    try:
        import onnxruntime as ort
        return tuple(ort.get_available_providers())
    except Exception:  # noqa: BLE001
        return ()


def module_version(name: str) -> str | None:
    try:
        mod = __import__(name)
    except Exception:  # noqa: BLE001 -- not installed, or installed without its native libraries
        return None
    return str(getattr(mod, "__version__", "unknown"))


def cpu_context() -> dict:
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine()}


def parse_device(device: str) -> tuple[str, int]:
    """("cpu", 0), ("cuda", N) or ("auto", 0) from 'cpu', 'cuda', 'cuda:N', 'auto' or ''. ValueError otherwise."""
    d = (device or "auto").strip().lower()
    if d in ("cpu", "auto"):
        return d, 0
    if d == "cuda":
        return "cuda", 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return "cuda", int(d[5:])
    raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
