"""Ensembles: several independently trained copies of a network, averaged.

`MeanOf([net_1, ..., net_M])(x)` is the mean of the members' outputs. An ensembled 3DAGN averages the appearance
networks' logits l1 and the geometric networks' pair logits, then selects the top-2 pair and fuses as one model
does (nets/agn.py): the ensemble is a better appearance network and a better set of pair decisions, not a vote of
finished predictions. Members are trained alone, each with its own seed (fer-train --ensemble), and joined with
`join_members`; `create_model(..., members=M)` builds the same structure empty, for loading a saved state dict.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fer_ros.nets.agn import AGN3D


class MeanOf(nn.Module):
    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) == 0:
            raise ValueError("MeanOf needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members[0](x)
        for m in self.members[1:]:
            out = out + m(x)
        return out / float(len(self.members))


def join_members(models: Sequence[AGN3D]) -> AGN3D:
    """One AGN3D whose appearance and geometric networks are the means of the given trained models' networks
    (flip_tta as the first model's). A single model is returned as it is."""
    if len(models) == 1:
        return models[0]
    k = {m.num_classes for m in models}
    if len(k) != 1:
        raise ValueError(f"ensemble members disagree on the number of classes: {sorted(k)}")
    joined = AGN3D(MeanOf([m.appearance for m in models]), MeanOf([m.geometric for m in models]), k.pop(),
                   flip_tta=models[0].flip_tta, clip_kinds=models[0].clip_kinds)
    # the new model's own buffers (the pair table) start on the CPU: put them where the members are
    return joined.to(next(models[0].parameters()).device)
