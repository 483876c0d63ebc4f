"""What every inference backend is: `Engine.predict(clip, geo, geo_valid) -> probs` on one batch of faces.

clip (B, 1, T, S, S) LBP clips, geo (B, C, G, G) difference images, geo_valid (B,) 1 where a neutral reference
exists: the network inputs preprocess.Preprocessor makes. All faces of a frame go through both networks in one
call (the exported graph holds both, so one run is one batch per network). Returns softmax(l3), (B, K) float32.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fer_ros.difference_image import SIZE as GEO_SIZE
from fer_ros.manifest import GET_A_MODEL, Manifest, ModelError

MAX_BATCH = 256  # the exported ONNX graph's batch bound; larger batches are split


class BackendUnavailable(RuntimeError):
    """The backend (or its device) cannot run on this machine; the message says why and what to use instead.
    `reason` is the why alone (the message without `advice`), for a caller that picks the backend itself (auto)."""

    def __init__(self, reason: str, advice: str = "") -> None:
        super().__init__(f"{reason}; {advice}" if advice else reason)
        self.reason = reason


class EngineClosed(RuntimeError):
    """predict on an engine after its close(): the runtime's resources are released; load the model again."""


def check_num_threads(num_threads) -> int:
    """`num_threads` as the int it must be (>= 0, 0 = the backend's own choice); ValueError naming the setting
    otherwise (a bool, a float or a string included)."""
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 0:
        raise ValueError(f"num_threads must be an integer >= 0 (0 = the backend's own choice), got {num_threads!r}")
    return int(num_threads)


@dataclass
class Engine:
    """Base of the backends. Subclasses implement `_run(clip, geo, valid) -> probs` on float32 arrays."""

    manifest: Manifest
    backend: str = ""                      # e.g. "onnxruntime:cpu", "torch:cuda:0", "tensorrt:onnxruntime"
    device: str = "cpu"
    fp16: bool = False
    int8: bool = False                     # the model's int8 graph (quantize.py) runs
    cache_hit: bool | None = None          # None: this backend keeps no on-disk cache
    notes: list[str] = field(default_factory=list)  # why this backend/device was chosen, what was ignored
    max_batch: int = MAX_BATCH             # larger batches are run in parts
    closed: bool = field(default=False, init=False)  # close() has released the runtime: predict raises EngineClosed

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.manifest.class_names)

    @property
    def window_length(self) -> int:
        return self.manifest.window_length

    @property
    def preprocess_spec(self) -> dict:
        return dict(self.manifest.preprocess)

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample input shapes (without the batch dimension) from the manifest."""
        cfg = self.manifest.arch_cfg
        s, t = int(cfg.get("size", self.manifest.crop_size)), int(cfg.get("frames", self.window_length))
        c, g = int(cfg.get("geo_channels", 2)), int(cfg.get("geo_size", GEO_SIZE))
        return {"clip": (self.manifest.clip_channels, t, s, s), "geo": (c, g, g), "geo_valid": ()}

    def check_graph(self, path, inputs: dict[str, list], outputs: dict[str, list]) -> None:
        """ModelError unless a graph's inputs (name -> shape, batch first; a dimension that is not fixed is a name
        or None) are the manifest's (input_shapes), with a batch that is not fixed (a frame has any number of
        faces), and its `probs` output gives one probability per class."""
        want = self.input_shapes()
        problems = [f"input {name!r} is not one the network takes" for name in inputs if name not in want]
        for name, shape in want.items():
            got = inputs.get(name)
            if got is None:
                problems.append(f"no input {name!r}")
            elif len(got) != len(shape) + 1 or any(isinstance(g, int) and g != w for g, w in zip(got[1:], shape)):
                problems.append(f"input {name!r} is {_dims(got)}, the manifest's network takes "
                                f"{_dims(['B', *shape])}")
            elif isinstance(got[0], int):
                problems.append(f"input {name!r} has a fixed batch of {got[0]}; the graph must take any number of "
                                f"faces")
        probs = outputs.get("probs")
        if probs is None:
            problems.append("no output 'probs'")
        elif len(probs) != 2 or isinstance(probs[1], int) and probs[1] != len(self.class_names):
            problems.append(f"output 'probs' is {_dims(probs)}, one probability per class of the manifest's "
                            f"{len(self.class_names)} is (B, {len(self.class_names)})")
        if problems:
            raise ModelError(f"{path}: the graph does not fit its manifest ({'; '.join(problems)}); re-export the "
                             f"model or {GET_A_MODEL}")

    def predict(self, clip, geo, geo_valid) -> np.ndarray:
        """(B, K) float32 probabilities; ValueError naming the input when a shape does not fit the model or a value
        is not finite; EngineClosed after close()."""
        if self.closed:
            raise EngineClosed(f"engine closed: model {self.manifest.name!r} on {self.backend or 'its backend'} was "
                               f"closed and runs no more; load it again")
        clip = np.ascontiguousarray(clip, dtype=np.float32)
        geo = np.ascontiguousarray(geo, dtype=np.float32)
        valid = np.ascontiguousarray(geo_valid, dtype=np.float32).reshape(-1)
        shapes = self.input_shapes()
        for name, arr in (("clip", clip), ("geo", geo)):
            if arr.ndim != len(shapes[name]) + 1 or tuple(arr.shape[1:]) != shapes[name]:
                raise ValueError(f"{name} has shape {arr.shape}, model {self.manifest.name!r} takes "
                                 f"(B, {', '.join(map(str, shapes[name]))})")
        b = clip.shape[0]
        if geo.shape[0] != b or valid.shape[0] != b:
            raise ValueError(f"batch sizes differ: clip {b}, geo {geo.shape[0]}, geo_valid {valid.shape[0]}")
        for name, arr in (("clip", clip), ("geo", geo), ("geo_valid", valid)):
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} holds values that are not finite (NaN or infinity); the network takes "
                                 f"finite numbers only")
        if b == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        parts = [self._run(clip[i:i + self.max_batch], geo[i:i + self.max_batch],
                           valid[i:i + self.max_batch]) for i in range(0, b, self.max_batch)]
        return np.ascontiguousarray(np.concatenate(parts) if len(parts) > 1 else parts[0], dtype=np.float32)

    def _run(self, clip: np.ndarray, geo: np.ndarray, valid: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def precision(self) -> str:
        """The arithmetic the network runs in: "int8", "fp16" or "fp32"."""
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"

    @property
    def label(self) -> str:
        """The backend and, when it is not fp32, the precision: "onnxruntime:cpu int8", "torch:cuda:0 fp16"."""
        return self.backend if self.precision == "fp32" else f"{self.backend} {self.precision}"

    def describe(self) -> str:
        """One line for logs: backend, precision, cache state, notes."""
        bits = [self.backend, self.precision]
        if self.cache_hit is not None:
            bits.append("cached engine reused" if self.cache_hit else "engine built and cached")
        text = ", ".join(bits)
        return text + (f" ({'; '.join(self.notes)})" if self.notes else "")

    def close(self) -> None:
        """Release the runtime's resources (sessions, GPU memory); predict raises EngineClosed from then on."""
        self.closed = True


def _dims(shape) -> str:
    """A shape as (B, 3, 48, 48), a dimension that is not fixed by its name."""
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
