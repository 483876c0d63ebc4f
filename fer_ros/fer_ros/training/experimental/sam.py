"""Sharpness-aware minimisation (SAM, Foret et al., ICLR 2021) as a step around any torch optimiser.

One SAM step: the loss's gradient g at the weights w, the weights moved uphill to w + rho g / ||g|| (||g|| over all
parameters together), the gradient taken again there, the weights put back to w, and the optimiser stepped with that
second gradient. It prefers weights whose whole neighbourhood has a low loss, at twice the cost of a plain step.
BatchNorm running statistics are left as the first pass made them: the pass at the moved weights does not count.

    loss = sam_step(optimizer, compute_loss, rho=0.05)   # compute_loss() -> scalar loss of the current batch
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch


def _params_with_grad(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


@contextmanager
def frozen_batchnorm_stats(modules: list[torch.nn.Module]) -> Iterator[None]:
    """Within the block, BatchNorm layers in training mode normalise with the batch but leave their running
    statistics unchanged (momentum 0)."""
    saved = []
    for root in modules:
        for m in root.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.momentum is not None:
                saved.append((m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None
                              else None))
                m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def sam_step(optimizer: torch.optim.Optimizer, compute_loss: Callable[[], torch.Tensor], rho: float,
             modules: list[torch.nn.Module] | None = None,
             after_backward: Callable[[], None] | None = None) -> torch.Tensor:
    """One optimiser step; returns the loss at the unmoved weights (what a plain step would report).

    rho 0 is a plain step: one forward, one backward. modules: the models whose BatchNorm statistics the second
    pass must not update. after_backward: called after each backward (e.g. to average gradients by hand)."""
    if rho < 0:
        raise ValueError(f"rho must be 0 or more, got {rho}")
    optimizer.zero_grad(set_to_none=True)
    loss = compute_loss()
    loss.backward()
    if after_backward is not None:
        after_backward()
    if rho > 0:
        params = _params_with_grad(optimizer)
        with torch.no_grad():
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
            scale = rho / (norm + 1e-12)
            saved = [p.detach().clone() for p in params]
            for p in params:
                p.add_(p.grad * scale)
        optimizer.zero_grad(set_to_none=True)
        with frozen_batchnorm_stats(modules or []):
            compute_loss().backward()
        if after_backward is not None:
            after_backward()
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.copy_(w)
    optimizer.step()
    return loss
