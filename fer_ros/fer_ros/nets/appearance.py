"""Appearance networks: 3D CNNs over a clip of T face crops, (B, C, T, S, S) -> class logits (B, K); C = 1 for the
paper's LBP clip, more for the other clip inputs (preprocess.CLIP_INPUTS).

`c3d_paper` is the paper's experimental network: four 3x3x3 Conv3d, three 2x2x2-style MaxPool3d, one BatchNorm
and two fully connected layers with dropout. With T = 3 frames a 2x2x2 pool can halve time only once, so the
first and last pools are 1x2x2 (space only) and the middle one is 2x2x2 (time 3 -> 1).
`ir3d_shallow` is the full design's shallow 3D Inception-ResNet.
"""
from __future__ import annotations

import torch
from torch import nn

from fer_ros.nets.layers import ConvBNAct3d, InceptionResBlock3d, classifier


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
        self.pool = nn.AdaptiveAvgPool3d((1, 3, 3))
        self.head = classifier(2 * stem * 9, hidden, num_classes, dropout)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(self.stem(clip))))
