"""Appearance networks: 3D CNNs over a clip of T face crops, (B, C, T, S, S) -> class logits (B, K); C = 1 for the
paper's LBP clip, more for the other clip inputs (preprocess.CLIP_INPUTS).

`c3d_paper` is the paper's experimental network: four 3x3x3 Conv3d, three 2x2x2-style MaxPool3d, one BatchNorm
and two fully connected layers with dropout. With T = 3 frames a 2x2x2 pool can halve time only once, so the
first and last pools are 1x2x2 (space only) and the middle one is 2x2x2 (time 3 -> 1).
`ir3d_shallow` is the full design's shallow 3D Inception-ResNet; it averages its features over time, then to a 3x3
grid in space (one 2D adaptive pool after a mean over time: the same values as a (1, 3, 3) adaptive 3D pool, in
operators the ONNX exporter translates).
`c3d_res` (agn3d_res, the shipped model's) keeps the 3D front of the paper's network -- 3x3x3 convolutions over
the T frames, a spatial pool, a convolution whose kernel spans the whole clip in time -- and continues with
residual 2D stages with BatchNorm and global average pooling, which learn faces in the wild from a few tens of
thousands of photos far better than the paper's plain stack with one BatchNorm, at the same cost.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fer_ros.nets.layers import ConvBNAct3d, InceptionResBlock3d, ResBlock2d, classifier


class C3DPaper(nn.Module):
    def __init__(self, num_classes: int, size: int = 48, frames: int = 3, widths=(32, 64, 128, 128),
                 hidden: int = 256, dropout: float = 0.5, in_channels: int = 1) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.features = nn.Sequential(
            ConvBNAct3d(in_channels, w1, norm=False),
            nn.MaxPool3d((1, 2, 2)),
            ConvBNAct3d(w1, w2, norm=False),
            nn.MaxPool3d((2, 2, 2)) if frames >= 2 else nn.MaxPool3d((1, 2, 2)),
            ConvBNAct3d(w2, w3, norm=False),
            ConvBNAct3d(w3, w4, norm=True),  # the one BatchNorm
            nn.MaxPool3d((1, 2, 2)),
        )
        t_out = frames // 2 if frames >= 2 else frames
        s_out = size // 8
        self.head = classifier(w4 * t_out * s_out * s_out, hidden, num_classes, dropout)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(clip))


class IR3DShallow(nn.Module):
    def __init__(self, num_classes: int, size: int = 48, frames: int = 3, stem: int = 32, blocks: int = 2,
                 hidden: int = 256, dropout: float = 0.5, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBNAct3d(in_channels, stem), nn.MaxPool3d((1, 2, 2)),
                                  ConvBNAct3d(stem, 2 * stem), nn.MaxPool3d((2, 2, 2)) if frames >= 2
                                  else nn.MaxPool3d((1, 2, 2)))
        self.blocks = nn.Sequential(*[InceptionResBlock3d(2 * stem, stem // 2) for _ in range(blocks)])
        self.head = classifier(2 * stem * 9, hidden, num_classes, dropout)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(clip))
        return self.head(F.adaptive_avg_pool2d(features.mean(2), 3))  # (B, C, 3, 3)


class C3DRes(nn.Module):
    """A 3D stem over the clip, then residual 2D stages: Conv3d 3x3x3 on the T frames, a 1x2x2 max-pool, a Conv3d
    whose kernel spans the whole clip in time (T x 3 x 3, so time is fused into the features), then one residual
    block per further width, each after a 2x2 max-pool, global average pooling and two FC layers with dropout."""

    def __init__(self, num_classes: int, size: int = 48, frames: int = 3, widths=(24, 48, 96, 192),
                 hidden: int = 256, dropout: float = 0.5, in_channels: int = 1) -> None:
        super().__init__()
        w = [int(x) for x in widths]
        self.frames = frames
        self.stem = nn.Sequential(
            ConvBNAct3d(in_channels, w[0]), nn.MaxPool3d((1, 2, 2)),
            ConvBNAct3d(w[0], w[1], kernel=(frames, 3, 3), padding=(0, 1, 1)))  # time: T -> 1
        blocks: list[nn.Module] = []
        for cin, cout in zip(w[1:-1], w[2:]):
            blocks += [nn.MaxPool2d(2), ResBlock2d(cin, cout)]
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), classifier(w[-1], hidden, num_classes, dropout))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.stem(clip)
        return self.head(self.stages(x.squeeze(2)))
