"""Preprocessed images of a dataset, computed once with the node's landmarker and crop and kept on disk.

For every image the cache holds the aligned gray crop (S, S) uint8 and the 68 landmarks in normalised crop
coordinates -- what augmentation and LBP start from. The file is keyed by the images (relative names and contents),
the crop, the landmark scheme and how faces are found (`face_search`: the renditions tried, both landmarkers'
arguments, the landmarker model and the mediapipe release), so a change in any of them makes a new one.
Images in which no face is found are marked and counted. Keep caches out of version control (they are made of the
data).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from fer_ros.crop import CropConfig
from fer_ros.landmark_scheme import SCHEME_SPEC
from fer_ros.training.data.datasets import DatasetError


@dataclass
class ImageCache:
    paths: list[str]
    gray: np.ndarray     # (N, S, S) uint8 aligned crops
    points: np.ndarray   # (N, 68, 2) float32 normalised crop coordinates
    ok: np.ndarray       # (N,) bool: a face was found

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}


def cache_key(paths: list[Path], crop_cfg: CropConfig) -> str:
    """Digest of the images (names relative to their common folder, and contents), the crop, the landmark scheme
    and how faces are found (`face_search`), so the same data in another place reuses its cache and any changed
    image or face search makes a new one."""
    h = hashlib.sha256()
    root = Path(os.path.commonpath([str(p) for p in paths])) if paths else Path(".")
    for p in paths:
        rel = p.relative_to(root) if p != root else Path(p.name)
        h.update(f"{rel}|{hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    # the cache holds crops and landmarks only: LBP and difference-image changes do not invalidate it
    h.update(json.dumps({"crop": crop_cfg.to_spec(), "landmark_scheme": SCHEME_SPEC, "contents": CACHE_CONTENTS,
                         "face_search": face_search()}, sort_keys=True).encode())
    return h.hexdigest()[:20]


# What a cache file holds; part of its key with `face_search`, so a cache made otherwise is made again (under
# another file name: the old file stays where it is, unused).
CACHE_CONTENTS = ("gray", "points", "ok")

# A face that fills its whole image (a dataset's face crop, such as FER2013's 48x48 images) is often missed by the
# landmarker's detector, and which rendition of the image it finds the face on varies from face to face (a turned
# head, a hand over the chin, a face cut by the image's edge). `find_face` tries these in turn until one gives a
# face: (side, pad, equalise): the image scaled to `side` px on its longer side (never down), centred on a mid-gray
# canvas with `pad` of that side added on every edge, its contrast equalised (CLAHE) when `equalise`. Measured on
# the 3,191 images of FER+ Valid: the first rendition alone left 72 without a face; all of them, 41.
RETRIES = ((192, 0.5, False), (192, 0.75, False), (192, 1.0, False), (192, 0.25, False), (192, 0.5, True),
           (128, 0.5, False))
# ... and when none of them gives a face, the renditions once more with a landmarker whose face detection and
# presence thresholds are this low (the node's are 0.5): 27 of FER+ Valid's images left without a face, and with
# an earlier model 8 of the 14 faces it adds are right (fer-eval's headline 0.834 -> 0.837).
LENIENT_CONFIDENCE = 0.3
# The arguments of the MediaPipeLandmarker that build_cache finds faces with (the lenient one: these, with its
# detection and presence thresholds at LENIENT_CONFIDENCE); the others keep MediaPipeLandmarker's defaults.
LANDMARKER_ARGS = {"mode": "image", "max_faces": 1}


def landmarker_args(lenient: bool = False) -> dict:
    """Every argument, defaults included, of the MediaPipeLandmarker build_cache makes: the first one, or
    (lenient) the one that looks again where it and its renditions find no face."""
    from fer_ros.landmarker import MediaPipeLandmarker
    given = dict(LANDMARKER_ARGS)
    if lenient:
        given.update(min_detection_confidence=LENIENT_CONFIDENCE, min_presence_confidence=LENIENT_CONFIDENCE)
    params = inspect.signature(MediaPipeLandmarker).parameters.values()
    return {**{p.name: p.default for p in params if p.default is not inspect.Parameter.empty}, **given}


def face_search() -> dict:
    """How build_cache finds the faces, as the cache key records it: find_face's steps and renditions (RETRIES),
    the arguments of both landmarkers, the landmarker model (its sha256) and the mediapipe release that runs it."""
    from fer_ros import landmarker_model
    return {"find_face": "largest face, then on each of RETRIES, then on each with the lenient landmarker; "
                         "rendition points mapped back by pixel centres",
            "retries": [list(r) for r in RETRIES], "landmarker": landmarker_args(),
            "lenient_landmarker": landmarker_args(lenient=True),
            "landmarker_model_sha256": landmarker_model.LANDMARKER_MODEL_SHA256, "mediapipe": mediapipe_version()}


def mediapipe_version() -> str:
    """The installed mediapipe release ("not installed" where there is none)."""
    try:
        return metadata.version("mediapipe")
    except metadata.PackageNotFoundError:
        return "not installed"


def largest_face(faces):
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])) if faces else None


def _rendition(rgb: np.ndarray, side: int, pad: float, equalise: bool) -> tuple[np.ndarray, tuple[float, float], int]:
    """(canvas, (x scale, y scale), pad px) of one RETRIES entry; the scales are the scaled image's sides over the
    image's (rounding the scaled sides makes them differ a little from side / longer side, and from each other)."""
    import cv2
    h, w = rgb.shape[:2]
    scale = max(1.0, side / float(max(h, w)))
    img = rgb if scale == 1.0 else cv2.resize(rgb, (int(round(w * scale)), int(round(h * scale))),
                                              interpolation=cv2.INTER_CUBIC)
    if equalise:
        gray = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
        img = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    px = int(round(pad * max(img.shape[:2])))
    canvas = cv2.copyMakeBorder(img, px, px, px, px, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    return canvas, (img.shape[1] / float(w), img.shape[0] / float(h)), px


def find_face(landmarker, rgb: np.ndarray, lenient=None):
    """The largest face the landmarker finds in an RGB image; when it finds none, it looks again on each of the
    RETRIES renditions of the image in turn, then (`lenient`: a function giving a landmarker with lower
    thresholds, called only when needed) on each once more with that one, and maps the first face found back to
    the image's pixels (the crop is then cut from the image itself). None when none finds a face."""
    face = largest_face(landmarker.detect(rgb))
    if face is not None:
        return face
    face = _on_renditions(landmarker, rgb)
    if face is None and lenient is not None:
        face = _on_renditions(lenient(), rgb)
    return face


def _on_renditions(landmarker, rgb: np.ndarray):
    from fer_ros.landmarker import FaceLandmarks
    for side, pad, equalise in RETRIES:
        canvas, (sx, sy), px = _rendition(rgb, side, pad, equalise)
        face = largest_face(landmarker.detect(canvas))
        if face is not None:
            # cv2.resize puts the centre of image px x at scaled px (x + 0.5) * s - 0.5, and the landmarker's
            # points follow it: mapped back by its inverse (less the pad), the points found on 2x and 4x renditions
            # of a real face at 96 to 224 px land within 0.01 px of those found on the image itself
            pts = face.points478.copy()
            pts[:, 0] = (pts[:, 0] - px + 0.5) / sx - 0.5
            pts[:, 1] = (pts[:, 1] - px + 0.5) / sy - 0.5
            pts[:, 2] /= sx
            return FaceLandmarks.from_points478(pts, face.blendshapes, face.blendshape_names)
    return None


def cache_dir_problem(cache_dir: str | Path, option: str = "--cache-dir") -> str | None:
    """Why `cache_dir` cannot hold image caches, in one line for the tool's `option`: it is, or lies under,
    something other than a folder; None when it can (fer-train, fer-quantize and fer-eval check it before any
    image is read, so a cache that could not be saved is not found after the work of making it)."""
    cache_dir = Path(cache_dir)
    for path in (cache_dir, *cache_dir.parents):
        if path.is_dir():
            return None
        if path.exists() or path.is_symlink():
            what = f"{option} {path}" if path == cache_dir else f"{option} {cache_dir}: {path}"
            return f"{what} exists and is not a folder: delete it or choose another {option}"
    return None


class CacheError(DatasetError):
    """An image cache file that cannot be read; the message names it and says to delete it."""


def build_cache(paths: list[Path], crop_cfg: CropConfig, cache_dir: str | Path | None,
                progress: bool = True, landmarker=None) -> ImageCache:
    """Load the cache for these images, or compute and save it (cache_dir None: compute only); CacheError when
    its file cannot be read. Faces are found
    by `find_face` with `landmarker` (default: a MediaPipe one in IMAGE mode, and then a lenient one where it and
    its renditions find none)."""
    paths = sorted(set(Path(p) for p in paths))
    file = None
    if cache_dir is not None:
        file = Path(cache_dir) / f"images-{cache_key(paths, crop_cfg)}.npz"
        if file.is_file():
            try:
                with np.load(file, allow_pickle=False) as z:
                    # the cache lists the images where it was made; map them to where they are now, by order
                    return ImageCache([str(p) for p in paths], z["gray"], z["points"], z["ok"])
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
                raise CacheError(f"{file}: a damaged image cache file ({type(exc).__name__}: {exc}); delete it (the "
                                 f"next run makes it again) or choose another --cache-dir") from None
    import cv2

    from fer_ros.image_codec import read_image
    from fer_ros.landmarker import MediaPipeLandmarker
    from fer_ros.preprocess import Preprocessor

    pre = Preprocessor(crop_cfg)
    s = pre.size
    gray = np.zeros((len(paths), s, s), np.uint8)
    points = np.zeros((len(paths), 68, 2), np.float32)
    ok = np.zeros(len(paths), bool)
    own = landmarker is None
    lm = landmarker or MediaPipeLandmarker(**landmarker_args())
    made: list = []  # the lenient landmarker, made when first needed

    def lenient():
        if not made:
            made.append(MediaPipeLandmarker(**landmarker_args(lenient=True)))
        return made[0]
    try:
        it = paths
        if progress:
            from tqdm import tqdm
            it = tqdm(paths, desc="landmarks + crops", unit="img")
        for i, p in enumerate(it):
            img = read_image(p, cv2.IMREAD_COLOR)
            if img is None:
                continue
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            face = find_face(lm, rgb, lenient if own else None)
            if face is None:
                continue
            sample = pre.face_sample(rgb, face)
            gray[i], points[i], ok[i] = sample.gray, sample.points68, True
    finally:
        for task in made + ([lm] if own else []):
            task.close()
    cache = ImageCache([str(p) for p in paths], gray, points, ok)
    if file is not None:
        save_cache(cache, file)
    return cache


def save_cache(cache: ImageCache, file: Path) -> None:
    """Write the cache to `file`: to a file of its own in the same folder first, then renamed, so that processes
    saving the same cache at once (or a run stopped mid-write) never leave or read a partial file."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f"{file.stem}.{uuid.uuid4().hex}.tmp.npz")
    try:
        np.savez_compressed(tmp, paths=np.array(cache.paths), gray=cache.gray, points=cache.points, ok=cache.ok)
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
