"""Geometric network: a VGG16-style 2D CNN over the landmark difference image (B, C, G, G), with one 2-way
decision per pair of classes.

Choice: the convolutional trunk and the first fully connected layer are shared by all class pairs; each pair
(i, j), i < j, keeps its own 2-way output layer (rows of one Linear), so every pair still makes its own decision
while the trunk learns from all sequences. Output: (B, P, 2) with P = K (K - 1) / 2 pairs in `pairs(K)` order.
"""
from __future__ import annotations

from itertools import combinations

import torch
from torch import nn

from fer_ros.nets.layers import ConvBNAct2d, classifier

# VGG16's five stages of 2, 2, 3, 3, 3 convolutions, each followed by 2x2 max pooling.
VGG16_STAGES = (2, 2, 3, 3, 3)


def pairs(num_classes: int) -> list[tuple[int, int]]:
    """All class pairs (i, j), i < j, in the order of the geometric network's outputs."""
    return list(combinations(range(num_classes), 2))


class VGGPairs(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 2, size: int = 32, width: int = 16,
                 hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for stage, n in enumerate(VGG16_STAGES):
            cout = width * min(2 ** stage, 8)
            for _ in range(n):
                layers.append(ConvBNAct2d(cin, cout))
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        s_out = size // 32
        self.num_pairs = len(pairs(num_classes))
        self.head = classifier(cin * s_out * s_out, hidden, 2 * self.num_pairs, dropout)

    def forward(self, geo: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(geo)).view(-1, self.num_pairs, 2)
