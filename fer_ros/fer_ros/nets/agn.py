"""3DAGN: fusion of the appearance and the geometric network.

    l1 = appearance(clip)                        (B, K)
    (a, b) = top-2 classes of l1, a < b
    pair logits = geometric(geo)[pair(a, b)]     (B, 2), zero where geo_valid == 0
    l2 = pair logits placed at classes a and b   (B, K), zero elsewhere
    l3 = l1 + l2;  probs = softmax(l3)

Loss L = L1 + L2 + L3: cross-entropy of l1, of the pair decisions' 2-way logits (target: which of the two is the
true class) and of l3. L2 trains every pair that holds the true class, as K (K - 1) / 2 separate 2-way models would
each be trained on the samples of their two classes: a sample of class t gives K - 1 pair targets (t against each
other class), averaged. Any of them may be the pair the appearance network's top-2 picks at inference, so each must
be able to decide. l3 (and so L3) always uses the top-2 pair, exactly as at inference, so the label never leaks into
the fused output.
With flip_tta, the model in eval mode averages l1 and the pair logits over the face and its mirror image (see
nets/flip.py; clip_kinds, the clip input's channel kinds, say how each clip channel mirrors); training always sees
one view (flips come from augmentation).
Top-2, the pair lookup and the placement use topk/gather/scatter only, so the model exports to ONNX with just the
batch dimension dynamic.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fer_ros.nets.flip import MIRRORED_CODES, flip_clip, flip_geo
from fer_ros.nets.geometric import pairs


@dataclass
class AGNOutput:
    l1: torch.Tensor          # (B, K) appearance logits
    pair_index: torch.Tensor  # (B,) index into pairs(K)
    pair_classes: torch.Tensor  # (B, 2) the pair's classes (a < b)
    pair_logits: torch.Tensor  # (B, 2) the pair's logits, zero where geo_valid == 0
    l2: torch.Tensor          # (B, K) pair logits placed at their classes
    l3: torch.Tensor          # (B, K) fused logits
    probs: torch.Tensor       # (B, K) softmax(l3)
    all_pairs: torch.Tensor   # (B, P, 2) every pair's logits (both views averaged with flip_tta)
    train_pair_logits: torch.Tensor | None = None   # (B, K-1, 2) every pair holding the true class; training only
    train_pair_target: torch.Tensor | None = None   # (B, K-1) 1 where the true class is the pair's second class


def other_classes(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K-1): for each sample, the classes other than its target, in ascending order."""
    others = torch.arange(num_classes, device=target.device).expand(len(target), num_classes)
    return others[others != target[:, None]].view(len(target), num_classes - 1)


class AGN3D(nn.Module):
    def __init__(self, appearance: nn.Module, geometric: nn.Module, num_classes: int, flip_tta: bool = False,
                 clip_kinds: tuple[str, ...] = ("lbp",)) -> None:
        super().__init__()
        self.clip_kinds = tuple(clip_kinds)
        self.appearance = appearance
        self.geometric = geometric
        self.num_classes = num_classes
        self.flip_tta = flip_tta
        table = torch.zeros(num_classes, num_classes, dtype=torch.long)
        for p, (i, j) in enumerate(pairs(num_classes)):
            table[i, j] = p
            table[j, i] = p
        self.register_buffer("pair_table", table.view(-1), persistent=False)
        # the LBP mirror table moves with the model (.to, .half), so a forward pass copies nothing from the host
        self.register_buffer("mirrored_codes", MIRRORED_CODES.clone(), persistent=False)

    def select_pair(self, l1: torch.Tensor) -> torch.Tensor:
        """(B, 2) classes (a, b), a < b: the top-2 of l1."""
        top2 = torch.topk(l1, 2, dim=1).indices
        return torch.stack([top2.min(dim=1).values, top2.max(dim=1).values], dim=1)

    def true_class_pairs(self, all_pairs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each sample, the 2-way logits of the K - 1 pairs (target, other) (B, K-1, 2), and their targets
        (B, K-1): 1 where the true class is the pair's second (larger) class."""
        k = self.num_classes
        others = other_classes(target, k)
        pair_index = self.pair_table[target[:, None] * k + others]  # (B, K-1)
        logits = torch.gather(all_pairs, 1, pair_index[..., None].expand(-1, -1, 2))
        return logits, (target[:, None] > others).long()

    def _pair_logits(self, all_pairs: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        pair_index = torch.index_select(self.pair_table, 0, classes[:, 0] * self.num_classes + classes[:, 1])
        logits = torch.gather(all_pairs, 1, pair_index[:, None, None].expand(-1, 1, 2)).squeeze(1)
        return pair_index, logits * valid.to(logits.dtype)[:, None]

    def _flip_clip(self, clip: torch.Tensor) -> torch.Tensor:
        return flip_clip(clip, self.clip_kinds, self.mirrored_codes)

    def forward(self, clip: torch.Tensor, geo: torch.Tensor, geo_valid: torch.Tensor,
                target: torch.Tensor | None = None) -> AGNOutput:
        both = self.flip_tta and not self.training
        l1 = _views(self.appearance, clip, self._flip_clip if both else None)
        all_pairs = _views(self.geometric, geo, flip_geo if both else None)  # (B, P, 2)
        classes = self.select_pair(l1)
        pair_index, pair_logits = self._pair_logits(all_pairs, classes, geo_valid)
        l2 = torch.zeros_like(l1).scatter(1, classes, pair_logits)
        l3 = l1 + l2
        out = AGNOutput(l1, pair_index, classes, pair_logits, l2, l3, torch.softmax(l3, dim=1), all_pairs)
        if target is not None:
            out.train_pair_logits, out.train_pair_target = self.true_class_pairs(all_pairs, target)
        return out


def _views(net: nn.Module, x: torch.Tensor, flip=None) -> torch.Tensor:
    """net(x), or the mean of net over x and flip(x) in one batch."""
    if flip is None:
        return net(x)
    y = net(torch.cat([x, flip(x)], dim=0))
    return 0.5 * (y[:x.shape[0]] + y[x.shape[0]:])


def agn_loss(out: AGNOutput, target: torch.Tensor, geo_valid: torch.Tensor,
             weights: tuple[float, float, float] = (1.0, 1.0, 1.0), soft_target: torch.Tensor | None = None,
             pair_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """L = L1 + L2 + L3 (optionally weighted). L1 and L3: cross-entropy of l1 and l3 against the target class, or
    against soft_target (B, K) (a distribution over the classes, e.g. annotators' votes) when given. L2: the mean
    2-way cross-entropy over the samples with a neutral reference (and pair_mask > 0.5 where given): over every
    pair holding the true class when the forward pass had a target, else over the top-2 pair where it holds the
    true class. Returns (loss, {"l1":..., "l2":..., "l3":...} as floats)."""
    ce_target = target if soft_target is None else soft_target
    loss1 = F.cross_entropy(out.l1, ce_target)
    loss3 = F.cross_entropy(out.l3, ce_target)
    valid = geo_valid > 0.5
    if pair_mask is not None:
        valid = valid & (pair_mask > 0.5)
    if out.train_pair_logits is not None:
        logits, pair_target = out.train_pair_logits[valid], out.train_pair_target[valid]
    else:
        in_pair = out.pair_classes == target[:, None]
        mask = in_pair.any(dim=1) & valid
        logits, pair_target = out.pair_logits[mask], in_pair[mask][:, 1].long()
    if len(logits):
        loss2 = F.cross_entropy(logits.reshape(-1, 2), pair_target.reshape(-1))
    else:
        loss2 = out.pair_logits.sum() * 0.0
    loss = weights[0] * loss1 + weights[1] * loss2 + weights[2] * loss3
    return loss, {"l1": loss1.item(), "l2": loss2.item(), "l3": loss3.item()}


class ProbsOnly(nn.Module):
    """Inference wrapper: (clip, geo, geo_valid) -> probs; what export.py writes to ONNX."""

    def __init__(self, model: AGN3D) -> None:
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor, geo: torch.Tensor, geo_valid: torch.Tensor) -> torch.Tensor:
        return self.model(clip, geo, geo_valid).probs
