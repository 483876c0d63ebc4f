"""The one preprocessing path from a frame and a face's landmarks to the network inputs, shared by training,
evaluation, replay and the node.

face (FaceLandmarks) -> aligned gray crop (crop.py) -> LBP codes (lbp.py) + landmarks in normalised crop
coordinates; T samples -> appearance clip; neutral + newest sample -> difference image (difference_image.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fer_ros import difference_image
from fer_ros.crop import CropConfig, align_crop
from fer_ros.landmark_scheme import SCHEME_SPEC
from fer_ros.landmarker import FaceLandmarks
from fer_ros.lbp import LBP_SPEC, lbp


@dataclass
class FaceSample:
    """One face in one frame, preprocessed. lbp, gray: (S, S) uint8. points68: (68, 2) float32 in crop coordinates
    normalised to [0, 1] (points near the crop edge may fall slightly outside)."""

    lbp: np.ndarray
    gray: np.ndarray
    points68: np.ndarray


class Preprocessor:
    """Frame + FaceLandmarks -> FaceSample with one CropConfig (take it from the model manifest)."""

    def __init__(self, crop_cfg: CropConfig = CropConfig()) -> None:
        self.crop_cfg = crop_cfg

    @property
    def size(self) -> int:
        """S, the crop side (px)."""
        return int(self.crop_cfg.size)

    def face_sample(self, image: np.ndarray, face: FaceLandmarks | np.ndarray) -> FaceSample:
        """Preprocess one face of an (H, W, 3) RGB or (H, W) gray uint8 frame. `face` is a FaceLandmarks or its
        (68, 2) frame-px points."""
        points = face.points68 if isinstance(face, FaceLandmarks) else np.asarray(face, np.float32)
        aligned = align_crop(image, points, self.crop_cfg)
        norm = (aligned.points68 / float(self.crop_cfg.size)).astype(np.float32)
        return FaceSample(lbp=lbp(aligned.gray), gray=aligned.gray, points68=norm)


# Appearance clip inputs: name -> its channels, each (C_k, T, S, S) float32 computed from the clip's aligned gray
# frames and the neutral reference's gray crop (the newest frame stands in when there is none: no change).
#   lbp          LBP code / 255 of each frame (the paper's input)
#   gray_norm    frame standardised over its crop (zero mean, unit deviation), / 3 and clipped to [-1, 1]: the gray
#                level without the light's overall brightness and contrast
#   delta_norm   (gray_norm of the frame - gray_norm of the neutral reference), clipped to [-1, 1]: the change
#                from the neutral face, without the change of the light's brightness and contrast
CLIP_INPUTS: dict[str, tuple[str, ...]] = {
    "lbp+gray_norm+delta_norm": ("lbp", "gray_norm", "delta_norm"),
    "lbp": ("lbp",),
}
CHANNEL_WIDTH = {"lbp": 1, "gray_norm": 1, "delta_norm": 1}
# The paper's input, and what a manifest without a clip input was made with. (fer-train's --clip-input default is the
# shipped recipe's.)
BASE_CLIP_INPUT = "lbp"


def clip_input_kinds(name: str) -> tuple[str, ...]:
    if name not in CLIP_INPUTS:
        raise ValueError(f"unknown clip input {name!r}; known: {', '.join(CLIP_INPUTS)}")
    return CLIP_INPUTS[name]


def clip_channels(name: str) -> int:
    """C, the appearance clip's channel count for a clip input."""
    return sum(CHANNEL_WIDTH[k] for k in clip_input_kinds(name))


def clip_from_gray(name: str, grays: np.ndarray, neutral_gray: np.ndarray | None = None,
                   lbps: np.ndarray | None = None) -> np.ndarray:
    """(C, T, S, S) float32 appearance input from (T, S, S) uint8 aligned gray frames (oldest first) and the neutral
    reference's (S, S) uint8 crop (None: the newest frame). lbps: the frames' LBP codes when already computed."""
    grays = np.asarray(grays)
    if lbps is None:
        lbps = np.stack([lbp(g) for g in grays])
    ref = grays[-1] if neutral_gray is None else np.asarray(neutral_gray)
    parts = []
    for kind in clip_input_kinds(name):
        if kind == "lbp":
            parts.append(lbps.astype(np.float32)[None] * (1.0 / 255.0))
        elif kind == "gray_norm":
            parts.append(np.clip(_standardise(grays) * (1.0 / 3.0), -1.0, 1.0)[None])
        elif kind == "delta_norm":
            d = _standardise(grays) - _standardise(ref[None])
            parts.append(np.clip(d * (1.0 / 3.0), -1.0, 1.0)[None])
    return np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)


def _standardise(grays: np.ndarray) -> np.ndarray:
    """(N, S, S) gray crops -> float32, each with zero mean and unit standard deviation (a flat crop stays 0)."""
    g = grays.astype(np.float32)
    mean = g.mean(axis=(1, 2), keepdims=True)
    std = g.std(axis=(1, 2), keepdims=True)
    return (g - mean) / np.maximum(std, 4.0)


def make_clip(samples: Sequence[FaceSample], clip_input: str = BASE_CLIP_INPUT,
              neutral_gray: np.ndarray | None = None) -> np.ndarray:
    """(C, T, S, S) float32 appearance input of the samples (oldest first) for a clip input (CLIP_INPUTS; "lbp":
    (1, T, S, S) LBP codes / 255). neutral_gray: the neutral reference's aligned gray crop (None: no reference)."""
    if len(samples) == 0:
        raise ValueError("make_clip needs at least one sample")
    return clip_from_gray(clip_input, np.stack([s.gray for s in samples]), neutral_gray,
                          lbps=np.stack([s.lbp for s in samples]))


def make_geo(neutral_points: np.ndarray | None, peak_points: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """(geo (C, G, G) float32, valid): the difference image neutral -> peak (both (68, 2) normalised crop
    coordinates) and valid = 1; or zeros and valid = 0 when there is no neutral reference."""
    if neutral_points is None:
        return difference_image.empty(), np.float32(0.0)
    return difference_image.render(neutral_points, peak_points), np.float32(1.0)


DEFAULT_WINDOW_LENGTH = 3

def PREPROCESS_SPEC(cfg: CropConfig, window_length: int = DEFAULT_WINDOW_LENGTH,  # noqa: N802
                    clip_input: str = BASE_CLIP_INPUT) -> dict:
    """Everything training and inference must agree on, for the model manifest (named like the *_SPEC constants;
    a function because it depends on the crop config, the clip length T and the clip input)."""
    return {
        "crop": cfg.to_spec(),
        "lbp": dict(LBP_SPEC),
        "landmark_scheme": dict(SCHEME_SPEC),
        "difference_image": dict(difference_image.GEO_SPEC),
        "clip": {"input": clip_input, "kinds": list(clip_input_kinds(clip_input)),
                 "channels": clip_channels(clip_input), "frames": int(window_length), "order": "oldest first"},
    }


def spec_clip_input(spec: dict) -> str:
    """The clip input a manifest's preprocessing spec names (manifests without one were made with "lbp")."""
    return str(spec.get("clip", {}).get("input", BASE_CLIP_INPUT))


def check_preprocess_spec(spec: dict) -> None:
    """Raise ValueError unless a manifest's preprocessing spec matches what this code computes (LBP, landmark
    scheme and difference image name/version/parameters, and a crop this code can rebuild)."""
    problems = []
    for key, mine in (("lbp", LBP_SPEC), ("landmark_scheme", SCHEME_SPEC), ("difference_image", difference_image.GEO_SPEC)):
        theirs = spec.get(key)
        if theirs is None:
            problems.append(f"{key} missing")
        elif dict(theirs) != dict(mine):
            problems.append(f"{key} {theirs.get('name')} v{theirs.get('version')} != this code's "
                            f"{mine['name']} v{mine['version']} (or different parameters)")
    clip = spec.get("clip", {})
    name = spec_clip_input(spec)
    if name not in CLIP_INPUTS:
        problems.append(f"clip input {name!r} unknown to this code (known: {', '.join(CLIP_INPUTS)})")
    elif clip.get("channels", clip_channels(name)) != clip_channels(name):
        problems.append(f"clip input {name!r} has {clip_channels(name)} channels here, the manifest's "
                        f"clip.channels says {clip.get('channels')!r}")
    crop = spec.get("crop")
    if crop is None:
        problems.append("crop missing")
    else:
        try:
            rebuilt = CropConfig.from_spec(crop).to_spec()
        except (TypeError, ValueError) as exc:
            problems.append(f"crop unusable: {exc}")
        else:
            if rebuilt != dict(crop):
                problems.append("crop spec differs from this code's crop definition")
    if problems:
        raise ValueError("the model's preprocessing does not match this fer_ros: " + "; ".join(problems)
                         + "; retrain the model or use the fer_ros version it was trained with")
