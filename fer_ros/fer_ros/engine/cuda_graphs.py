"""CUDA graphs for the torch backend on a GPU: the model's forward pass recorded once per batch size of a fixed
profile and replayed, so a call costs one graph launch instead of a kernel launch (and its Python dispatch) per
layer. At batch 1 to 8 the model's kernels are short, so launching them is most of the time eager PyTorch takes.

`GraphedModel(model, device, dtype, shapes)` records one graph per size in BATCH_PROFILE; a call with n faces
copies them into the static inputs of the smallest recorded size that holds n, zeroes the rows after them (a
padded row has no neutral reference), replays that graph and returns the first n rows of its output. The model
treats every face on its own (eval mode: BatchNorm uses its running statistics, dropout is off), so the padding
changes nothing. Larger batches are split by the engine (Engine.max_batch = the largest size).

Recording needs a CUDA device and a forward pass without host synchronisation (no `.item()`, no shape that
depends on values); torch_backend falls back to eager, and says why in the engine's notes, when it fails.
"""
from __future__ import annotations

import numpy as np

#: batch sizes recorded: fer_node's default max_faces (4) and fer-bench's largest batch (8) fit one replay
BATCH_PROFILE = (1, 2, 4, 8)
#: eager runs on a side stream before recording (lets cuDNN pick its algorithms and allocate its workspaces)
WARMUP_RUNS = 3
INPUTS = ("clip", "geo", "geo_valid")


def bucket(n: int, sizes: tuple[int, ...]) -> int:
    """The smallest of `sizes` (ascending) that holds `n` faces; ValueError when none does."""
    for size in sizes:
        if n <= size:
            return size
    raise ValueError(f"batch of {n} faces is larger than the largest recorded size {sizes[-1]}")


class GraphedModel:
    """The probabilities of `model` (an AGN3D in eval mode, on `device`, in `dtype`) through recorded graphs.

    shapes: per-sample input shapes by name (Engine.input_shapes()). Raises RuntimeError when a graph cannot be
    recorded."""

    def __init__(self, model, device, dtype, shapes: dict, sizes: tuple[int, ...] = BATCH_PROFILE) -> None:
        import torch
        self.sizes = tuple(sorted(set(int(s) for s in sizes)))
        if not self.sizes or self.sizes[0] < 1:
            raise ValueError(f"batch sizes must be >= 1, got {sizes}")
        self._graphs: list = []  # the recorded graphs, kept alive with their memory
        self._pool = None        # the memory pool the graphs share
        self._static: dict[int, tuple] = {}
        self._out: dict[int, object] = {}
        self._replay: dict[int, object] = {}
        with torch.no_grad():
            for size in reversed(self.sizes):  # largest first: the smaller graphs fit in its memory pool
                static = tuple(torch.zeros((size, *shapes[name]), device=device, dtype=dtype) for name in INPUTS)
                self._replay[size], self._out[size] = self._record(model, static)
                self._static[size] = static

    def _record(self, model, static: tuple):
        """(replay function, static output tensor) of one graph of `model` over the `static` inputs."""
        import torch
        device = static[0].device
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                model(*static)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = model(*static).probs
        self._pool = graph.pool()
        self._graphs.append(graph)
        return graph.replay, out

    def __call__(self, clip: np.ndarray, geo: np.ndarray, valid: np.ndarray):
        """(n, K) probabilities on the device (a tensor of its own, not the graph's output buffer) for n faces,
        n <= the largest recorded size."""
        import torch
        n = int(clip.shape[0])
        size = bucket(n, self.sizes)
        static = self._static[size]
        with torch.no_grad():
            for dst, src in zip(static, (clip, geo, valid)):
                dst[:n].copy_(torch.from_numpy(np.ascontiguousarray(src)), non_blocking=True)
                if n < size:
                    dst[n:].zero_()
            self._replay[size]()
            return self._out[size][:n].clone()

    def close(self) -> None:
        """Release the graphs and their memory."""
        self._replay.clear()
        self._out.clear()
        self._static.clear()
        self._graphs.clear()
        self._pool = None
