"""Horizontal flip of the network inputs, for test-time augmentation (the model averages its logits over a face
and its mirror image). The flipped difference image equals what preprocessing makes of the flipped frame; the
flipped clip equals it up to a horizontal shift of 1 px (the crop of the flipped frame is the flipped crop moved
one column right: the crop puts the eyes' midpoint at column size/2, not at the centre (size - 1)/2, and the
shipped weights are trained on that geometry).

- Appearance clip (B, C, T, S, S), channel by channel as its clip input made them (preprocess.CLIP_INPUTS):
  LBP codes / 255 (`lbp`): flip the columns, then look each code up in a 256-entry table of the codes with their
  bits permuted (lbp.mirror_bit_order; one Gather in ONNX); the gray level and its change (`gray_norm`,
  `delta_norm`): flip the columns.
- Difference image (B, 2, G, G): flip the columns and multiply each channel by difference_image.MIRROR_SIGN.
"""
from __future__ import annotations

import torch

from fer_ros.difference_image import MIRROR_SIGN
from fer_ros.lbp import mirror_bit_order
from fer_ros.preprocess import CHANNEL_WIDTH


def _mirrored_codes() -> torch.Tensor:
    """(256,) float32: entry c is the LBP code c with its bits permuted as a horizontal flip permutes them, / 255."""
    order = mirror_bit_order()
    table = [sum(((code >> src) & 1) << k for k, src in enumerate(order)) for code in range(256)]
    return torch.tensor(table, dtype=torch.float32) / 255.0


MIRRORED_CODES = _mirrored_codes()


def flip_lbp_clip(clip: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
    """`table`: MIRRORED_CODES already on the clip's device (a model's buffer), so that no call copies it there:
    a copy from host memory on every call would also stop the forward pass from being recorded as a CUDA graph."""
    codes = torch.round(torch.flip(clip, dims=[-1]) * 255.0).clamp(0, 255).long()
    table = (MIRRORED_CODES if table is None else table).to(device=clip.device, dtype=clip.dtype)
    return table.index_select(0, codes.reshape(-1)).reshape(codes.shape)


def flip_clip(clip: torch.Tensor, kinds: tuple[str, ...] = ("lbp",), table: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Mirror an appearance clip made by preprocess.clip_from_gray with these channel kinds (`table`: as for
    flip_lbp_clip)."""
    out, c = [], 0
    for kind in kinds:
        w = CHANNEL_WIDTH[kind]
        part = clip[:, c:c + w]
        if kind == "lbp":
            out.append(flip_lbp_clip(part, table))
        else:
            out.append(torch.flip(part, dims=[-1]))
        c += w
    return torch.cat(out, dim=1)


def flip_geo(geo: torch.Tensor) -> torch.Tensor:
    flipped = torch.flip(geo, dims=[-1])
    return torch.stack([flipped[:, c] * float(sign) for c, sign in enumerate(MIRROR_SIGN)], dim=1)
