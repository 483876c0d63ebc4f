"""Horizontal flip of the network inputs, for test-time augmentation (the model averages its logits over a face
and its mirror image). Both are exact: the flipped input equals what preprocessing makes of the flipped frame.

- Appearance clip (B, C, T, S, S), values LBP code / 255: flip the columns, then permute each code's bits
  (lbp.mirror_bit_order), written with Floor/Div/Mul only so it exports to ONNX.
- Difference image (B, 2, G, G): flip the columns and multiply each channel by difference_image.MIRROR_SIGN.
"""
from __future__ import annotations

import torch

from fer_ros.difference_image import MIRROR_SIGN
from fer_ros.lbp import mirror_bit_order


def flip_lbp_clip(clip: torch.Tensor) -> torch.Tensor:
    codes = torch.round(torch.flip(clip, dims=[-1]) * 255.0)
    out = torch.zeros_like(codes)
    for k, src in enumerate(mirror_bit_order()):
        bit = torch.floor(codes / float(2 ** src)) - 2.0 * torch.floor(codes / float(2 ** (src + 1)))
        out = out + bit * float(2 ** k)
    return out / 255.0


def flip_geo(geo: torch.Tensor) -> torch.Tensor:
    flipped = torch.flip(geo, dims=[-1])
    return torch.stack([flipped[:, c] * float(sign) for c, sign in enumerate(MIRROR_SIGN)], dim=1)
