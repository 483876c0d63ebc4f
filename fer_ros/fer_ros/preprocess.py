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


def make_clip(samples: Sequence[FaceSample]) -> np.ndarray:
    """(1, T, S, S) float32 appearance input in [0, 1]: the samples' LBP codes / 255, oldest first."""
    if len(samples) == 0:
        raise ValueError("make_clip needs at least one sample")
    stack = np.stack([s.lbp for s in samples]).astype(np.float32)
    stack *= 1.0 / 255.0
    return stack[None]


def make_geo(neutral_points: np.ndarray | None, peak_points: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """(geo (C, G, G) float32, valid): the difference image neutral -> peak (both (68, 2) normalised crop
    coordinates) and valid = 1; or zeros and valid = 0 when there is no neutral reference."""
    if neutral_points is None:
        return difference_image.empty(), np.float32(0.0)
    return difference_image.render(neutral_points, peak_points), np.float32(1.0)


DEFAULT_WINDOW_LENGTH = 3


def PREPROCESS_SPEC(cfg: CropConfig, window_length: int = DEFAULT_WINDOW_LENGTH) -> dict:  # noqa: N802
    """Everything training and inference must agree on, for the model manifest (named like the *_SPEC constants;
    a function because it depends on the crop config and the clip length T)."""
    return {
        "crop": cfg.to_spec(),
        "lbp": dict(LBP_SPEC),
        "landmark_scheme": dict(SCHEME_SPEC),
        "difference_image": dict(difference_image.GEO_SPEC),
        "clip": {"channels": 1, "frames": int(window_length), "value": "lbp / 255", "order": "oldest first"},
    }


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
