"""Preprocessed images of a dataset, computed once with the node's landmarker and crop and kept on disk.

For every image the cache holds the aligned gray crop (S, S) uint8 and the 68 landmarks in normalised crop
coordinates -- what augmentation and LBP start from -- and the landmarker's face blendshapes (the training-only
auxiliary target of `fer-train --aux-blendshapes`). The file is keyed by the images (relative names and
contents), the crop and the landmark scheme, so a changed dataset, crop or scheme makes a new one. Images in
which no face is found are marked and counted. Keep caches out of version control (they are made of the data).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_ros.crop import CropConfig
from fer_ros.landmark_scheme import SCHEME_SPEC


@dataclass
class ImageCache:
    paths: list[str]
    gray: np.ndarray     # (N, S, S) uint8 aligned crops
    points: np.ndarray   # (N, 68, 2) float32 normalised crop coordinates
    ok: np.ndarray       # (N,) bool: a face was found
    blendshapes: np.ndarray | None = None  # (N, B) float32 blendshape scores; B = 0 (or None): none
    blendshape_names: tuple[str, ...] = ()

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}


def cache_key(paths: list[Path], crop_cfg: CropConfig) -> str:
    """Digest of the images (names relative to their common folder, and contents), the crop and the landmark
    scheme, so the same data in another place reuses its cache and any changed image makes a new one."""
    h = hashlib.sha256()
    root = Path(os.path.commonpath([str(p) for p in paths])) if paths else Path(".")
    for p in paths:
        rel = p.relative_to(root) if p != root else Path(p.name)
        h.update(f"{rel}|{hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    # the cache holds crops and landmarks only: LBP and difference-image changes do not invalidate it
    h.update(json.dumps({"crop": crop_cfg.to_spec(), "landmark_scheme": SCHEME_SPEC, "contents": CACHE_CONTENTS},
                        sort_keys=True).encode())
    return h.hexdigest()[:20]


# What a cache file holds; part of its key, so a cache made before blendshapes were kept is made again.
CACHE_CONTENTS = ("gray", "points", "ok", "blendshapes")


def largest_face(faces):
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])) if faces else None


def build_cache(paths: list[Path], crop_cfg: CropConfig, cache_dir: str | Path | None,
                progress: bool = True, landmarker=None) -> ImageCache:
    """Load the cache for these images, or compute and save it (cache_dir None: compute only)."""
    paths = sorted(set(Path(p) for p in paths))
    file = None
    if cache_dir is not None:
        file = Path(cache_dir) / f"images-{cache_key(paths, crop_cfg)}.npz"
        if file.is_file():
            with np.load(file, allow_pickle=False) as z:
                # the cache lists the images where it was made; map them to where they are now, by order
                return ImageCache([str(p) for p in paths], z["gray"], z["points"], z["ok"], z["blendshapes"],
                                  tuple(str(n) for n in z["blendshape_names"]))
    import cv2

    from fer_ros.landmarker import MediaPipeLandmarker
    from fer_ros.preprocess import Preprocessor

    pre = Preprocessor(crop_cfg)
    s = pre.size
    gray = np.zeros((len(paths), s, s), np.uint8)
    points = np.zeros((len(paths), 68, 2), np.float32)
    ok = np.zeros(len(paths), bool)
    blend: list[np.ndarray | None] = [None] * len(paths)
    names: tuple[str, ...] = ()
    own = landmarker is None
    lm = landmarker or MediaPipeLandmarker(mode="image", max_faces=1)
    try:
        it = paths
        if progress:
            from tqdm import tqdm
            it = tqdm(paths, desc="landmarks + crops", unit="img")
        for i, p in enumerate(it):
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                continue
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            face = largest_face(lm.detect(rgb))
            if face is None:
                continue
            sample = pre.face_sample(rgb, face)
            gray[i], points[i], ok[i] = sample.gray, sample.points68, True
            if len(face.blendshapes) and (not names or tuple(face.blendshape_names) == names):
                blend[i], names = face.blendshapes, tuple(face.blendshape_names)
    finally:
        if own:
            lm.close()
    blendshapes = np.zeros((len(paths), len(names)), np.float32)
    if names and all(b is not None for b, o in zip(blend, ok) if o):
        for i, b in enumerate(blend):
            if b is not None:
                blendshapes[i] = b
    else:  # the landmarker gave none (or not for every face): no auxiliary target from this cache
        blendshapes, names = np.zeros((len(paths), 0), np.float32), ()
    cache = ImageCache([str(p) for p in paths], gray, points, ok, blendshapes, names)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, paths=np.array(cache.paths), gray=gray, points=points, ok=ok,
                            blendshapes=blendshapes, blendshape_names=np.array(names, dtype=str))
        tmp.replace(file)
    return cache
