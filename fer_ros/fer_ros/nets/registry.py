"""Models by name: `create_model(name, num_classes=..., **cfg)`. Every name builds an AGN3D (appearance +
geometric + fusion); the name picks the appearance network, `cfg` sizes the parts.

cfg keys: size (crop side S), frames (T), geo_channels, geo_size (G), app (dict for the appearance network),
geo (dict for the geometric network), flip_tta (average over the face and its mirror image at inference).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from fer_ros.nets.agn import AGN3D
from fer_ros.nets.appearance import C3DPaper, IR3DShallow
from fer_ros.nets.geometric import VGGPairs

_APPEARANCE: dict[str, Callable[..., nn.Module]] = {
    "agn3d_c3d": C3DPaper,
    "agn3d_ir": IR3DShallow,
}


def list_models() -> list[str]:
    return sorted(_APPEARANCE)


def create_model(name: str, num_classes: int, size: int = 48, frames: int = 3, geo_channels: int = 2,
                 geo_size: int = 64, app: dict | None = None, geo: dict | None = None,
                 flip_tta: bool = False) -> AGN3D:
    if name not in _APPEARANCE:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    appearance = _APPEARANCE[name](num_classes, size=size, frames=frames, **(app or {}))
    geometric = VGGPairs(num_classes, in_channels=geo_channels, size=geo_size, **(geo or {}))
    return AGN3D(appearance, geometric, num_classes, flip_tta=bool(flip_tta))
