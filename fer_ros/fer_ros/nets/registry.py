"""Models by name: `create_model(name, num_classes=..., **cfg)`. Every name builds an AGN3D (appearance +
geometric + fusion); the name picks the appearance network, `cfg` sizes the parts.

cfg keys: size (crop side S), frames (T), geo_channels, geo_size (G), app (dict for the appearance network),
geo (dict for the geometric network), flip_tta (average over the face and its mirror image at inference),
clip_input (the appearance clip's channels, preprocess.CLIP_INPUTS).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from fer_ros.nets.agn import AGN3D
from fer_ros.nets.appearance import C3DPaper, C3DRes, IR3DShallow
from fer_ros.nets.geometric import VGGPairs
from fer_ros.preprocess import BASE_CLIP_INPUT, clip_channels, clip_input_kinds

_APPEARANCE: dict[str, Callable[..., nn.Module]] = {
    "agn3d_c3d": C3DPaper,
    "agn3d_ir": IR3DShallow,
    "agn3d_res": C3DRes,
}


def list_models() -> list[str]:
    return sorted(_APPEARANCE)


def create_model(name: str, num_classes: int, size: int = 48, frames: int = 3, geo_channels: int = 2,
                 geo_size: int = 32, app: dict | None = None, geo: dict | None = None,
                 flip_tta: bool = False, clip_input: str = BASE_CLIP_INPUT) -> AGN3D:
    if name not in _APPEARANCE:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    appearance = _APPEARANCE[name](num_classes, size=size, frames=frames, in_channels=clip_channels(clip_input),
                                   **(app or {}))
    geometric = VGGPairs(num_classes, in_channels=geo_channels, size=geo_size, **(geo or {}))
    return AGN3D(appearance, geometric, num_classes, flip_tta=bool(flip_tta),
                 clip_kinds=clip_input_kinds(clip_input))
