"""Small reusable blocks of the 3DAGN networks. Imports no model module."""
from __future__ import annotations

import torch
from torch import nn


class ConvBNAct3d(nn.Sequential):
    """Conv3d (same padding unless `padding` is given) -> optional BatchNorm3d -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel=3, norm: bool = True, padding=None) -> None:
        k = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
        pad = tuple(x // 2 for x in k) if padding is None else padding
        layers: list[nn.Module] = [nn.Conv3d(cin, cout, k, padding=pad, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm3d(cout))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ConvBNAct2d(nn.Sequential):
    """Conv2d 3x3 (same padding) -> optional BatchNorm2d -> ReLU."""

    def __init__(self, cin: int, cout: int, norm: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class InceptionResBlock3d(nn.Module):
    """A shallow 3D Inception-ResNet block: 1x1x1, 1x1x1->3x3x3 and 1x1x1->3x3x3->3x3x3 branches, concatenated,
    projected back with a 1x1x1 conv, scaled and added to the input."""

    def __init__(self, channels: int, branch: int, scale: float = 0.3) -> None:
        super().__init__()
        self.b0 = ConvBNAct3d(channels, branch, 1)
        self.b1 = nn.Sequential(ConvBNAct3d(channels, branch, 1), ConvBNAct3d(branch, branch, 3))
        self.b2 = nn.Sequential(ConvBNAct3d(channels, branch, 1), ConvBNAct3d(branch, branch, 3),
                                ConvBNAct3d(branch, branch, 3))
        self.project = nn.Conv3d(3 * branch, channels, 1)
        self.scale = scale
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.b0(x), self.b1(x), self.b2(x)], dim=1)
        return self.act(x + self.scale * self.project(y))


def classifier(in_features: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    """Two fully connected layers with dropout (the paper's head)."""
    return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, out))


class ResBlock2d(nn.Module):
    """Two 3x3 Conv2d-BN with ReLU and a residual connection (a 1x1 conv-BN projection when the width changes)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shortcut(x) + self.conv2(self.conv1(x)))
