"""Horizontal flip of the network inputs, for test-time augmentation (the model averages its logits over a face
and its mirror image). Both are exact: the flipped input equals what preprocessing makes of the flipped frame.

- Appearance clip (B, C, T, S, S), channel by channel as its clip input made them (preprocess.CLIP_INPUTS):
  LBP codes / 255 (`lbp`, `neutral_lbp`): flip the columns, then permute each code's bits (lbp.mirror_bit_order),
  written with Floor/Div/Mul only so it exports to ONNX; the 8 bit planes (`lbp_bits`): flip the columns and
  permute the planes; gray levels and their change (`gray`, `gray_delta`): flip the columns.
- Difference image (B, 2, G, G): flip the columns and multiply each channel by difference_image.MIRROR_SIGN.
"""
from __future__ import annotations

import torch

from fer_ros.difference_image import MIRROR_SIGN
from fer_ros.lbp import mirror_bit_order
from fer_ros.preprocess import CHANNEL_WIDTH


def flip_lbp_clip(clip: torch.Tensor) -> torch.Tensor:
    codes = torch.round(torch.flip(clip, dims=[-1]) * 255.0)
    out = torch.zeros_like(codes)
    for k, src in enumerate(mirror_bit_order()):
        bit = torch.floor(codes / float(2 ** src)) - 2.0 * torch.floor(codes / float(2 ** (src + 1)))
        out = out + bit * float(2 ** k)
    return out / 255.0


def flip_clip(clip: torch.Tensor, kinds: tuple[str, ...] = ("lbp",)) -> torch.Tensor:
    """Mirror an appearance clip made by preprocess.clip_from_gray with these channel kinds."""
    out, c = [], 0
    for kind in kinds:
        w = CHANNEL_WIDTH[kind]
        part = clip[:, c:c + w]
        if kind in ("lbp", "neutral_lbp"):
            out.append(flip_lbp_clip(part))
        elif kind == "lbp_bits":
            flipped = torch.flip(part, dims=[-1])
            out.append(torch.stack([flipped[:, src] for src in mirror_bit_order()], dim=1))
        else:
            out.append(torch.flip(part, dims=[-1]))
        c += w
    return torch.cat(out, dim=1)


def flip_geo(geo: torch.Tensor) -> torch.Tensor:
    flipped = torch.flip(geo, dims=[-1])
    return torch.stack([flipped[:, c] * float(sign) for c, sign in enumerate(MIRROR_SIGN)], dim=1)
