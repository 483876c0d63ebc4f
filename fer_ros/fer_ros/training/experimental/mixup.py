"""Mixup for 3DAGN training batches (`fer-train --mixup ALPHA`).

Every sample of a batch is blended with another sample of the same batch (a random permutation): the appearance
clip and the geometric difference image both become lam * a + (1 - lam) * b, with one lam ~ Beta(alpha, alpha) per
batch, folded to lam >= 0.5 so the first sample always dominates. The loss is the same blend of the 3DAGN loss
taken against either label: L1 and L3 against a's and b's class, and L2 over the pairs that hold a's class and
those that hold b's (the pair decisions of the one forward pass, read out for each label). A blend has a neutral
reference only if both of its samples have one.

The draws (lam and the permutation) come from a numpy generator the caller seeds; fer-train seeds one per epoch.

    mixed = mix_batch(clip, geo, valid, y, alpha, rng)
    out = model(mixed.clip, mixed.geo, mixed.valid, target=mixed.y_a)
    loss, parts = mixup_loss(model, out, mixed, lambda o, t, v: agn_loss(o, t, v))
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass
class MixedBatch:
    clip: torch.Tensor    # (B, C, T, H, W) blended appearance clips
    geo: torch.Tensor     # (B, C, H, W) blended difference images
    valid: torch.Tensor   # (B,) 1 where both blended samples had a neutral reference
    y_a: torch.Tensor     # (B,) the dominant sample's class
    y_b: torch.Tensor     # (B,) the other sample's class
    lam: float            # share of the dominant sample, in [0.5, 1]


def draw_lambda(alpha: float, rng: np.random.Generator) -> float:
    """lam ~ Beta(alpha, alpha), folded to [0.5, 1]."""
    if not alpha > 0:
        raise ValueError(f"mixup alpha must be above 0, got {alpha}")
    lam = float(rng.beta(alpha, alpha))
    return max(lam, 1.0 - lam)


def mix_batch(clip: torch.Tensor, geo: torch.Tensor, valid: torch.Tensor, y: torch.Tensor, alpha: float,
              rng: np.random.Generator) -> MixedBatch:
    lam = draw_lambda(alpha, rng)
    perm = torch.from_numpy(rng.permutation(len(y))).to(y.device)
    return MixedBatch(clip=lam * clip + (1.0 - lam) * clip[perm], geo=lam * geo + (1.0 - lam) * geo[perm],
                      valid=torch.minimum(valid, valid[perm]), y_a=y, y_b=y[perm], lam=lam)


def mixup_loss(model: torch.nn.Module, out, mixed: MixedBatch,
               loss_fn: Callable[[object, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict]]
               ) -> tuple[torch.Tensor, dict]:
    """lam * loss_fn(out, y_a) + (1 - lam) * loss_fn(out read for y_b). `out` is the forward pass of the blended
    batch with target y_a; model is the AGN3D (not a DDP wrapper) that gives the pairs holding y_b."""
    loss_a, parts_a = loss_fn(out, mixed.y_a, mixed.valid)
    if mixed.lam >= 1.0:
        return loss_a, parts_a
    pair_logits, pair_target = model.true_class_pairs(out.all_pairs, mixed.y_b)
    out_b = dataclasses.replace(out, train_pair_logits=pair_logits, train_pair_target=pair_target)
    loss_b, parts_b = loss_fn(out_b, mixed.y_b, mixed.valid)
    lam = mixed.lam
    return lam * loss_a + (1.0 - lam) * loss_b, {k: lam * parts_a[k] + (1.0 - lam) * parts_b[k] for k in parts_a}
