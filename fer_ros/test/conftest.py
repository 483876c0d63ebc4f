"""Shared test fixtures: real-face frames made from scikit-image's astronaut (the only real face the tests use)."""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile

import numpy as np
import pytest

from collect_guard import pytest_pycollect_makemodule  # noqa: F401  (a hook: module-level skips stay local)

# Keep tests light on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Built inference engines go to a per-run folder, not the user's or the project's cache (subprocesses inherit this),
# so no test meets an engine an earlier run built.
os.environ["FER_ROS_ENGINE_CACHE"] = tempfile.mkdtemp(prefix="fer_ros_engine_cache_")
atexit.register(shutil.rmtree, os.environ["FER_ROS_ENGINE_CACHE"], ignore_errors=True)  # removed when pytest ends


class LoggerRecords(logging.Handler):
    """Every record one logger handles, caught by a handler on that logger itself."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    @property
    def text(self) -> str:
        return "\n".join(self.messages)


@pytest.fixture
def fer_warnings():
    """The warnings (and worse) logged on the "fer_ros" logger during the test: `.messages`, `.text`, `.records`.

    The handler sits on that logger, so the records are caught whether or not they propagate to the root logger,
    where caplog listens: importing `launch` (launch_testing's pytest plugin does) makes its LaunchLogger, which
    does not propagate, the class of every logger made afterwards."""
    logger = logging.getLogger("fer_ros")
    handler = LoggerRecords()
    level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def break_mediapipe(monkeypatch):
    """break_mediapipe(error): every later import of mediapipe raises `error` (e.g. the OSError of a missing
    libEGL.so.1, or an ImportError), for testing what the tools say then."""
    import builtins
    real_import = builtins.__import__

    def apply(error: Exception) -> None:
        def fake_import(name, *args, **kwargs):
            if name.startswith("mediapipe"):
                raise error
            return real_import(name, *args, **kwargs)
        monkeypatch.setattr(builtins, "__import__", fake_import)
    return apply


NO_LIBEGL = OSError("libEGL.so.1: cannot open shared object file: No such file or directory")


@pytest.fixture(params=["a directory", "under a file"])
def unwritable_out(request, tmp_path):
    """(path, what its refusal says) for an output file that cannot be written: an existing folder, or a path under
    a file. The tools check it (argtypes.out_problem) before their long run."""
    if request.param == "a directory":
        out = tmp_path / "out"
        out.mkdir()
        return out, "is a directory; name a file"
    (tmp_path / "a_file").write_text("")
    return tmp_path / "a_file" / "out.json", "cannot be written"


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    """skimage.data.astronaut(): 512x512 RGB uint8, one real smiling face."""
    from skimage import data
    return data.astronaut()


def place_faces(face_rgb: np.ndarray, count: int = 1, size=(480, 640), scale: float = 0.5) -> tuple[np.ndarray, list]:
    """Place `count` copies of the top-left 256x256 head region of the astronaut, scaled by `scale`, side by side
    on a gray (H, W) canvas. Returns the RGB frame and the list of (x0, y0, x1, y1) pasted regions in px."""
    import cv2
    head = face_rgb[0:256, 96:352]  # the astronaut's head and shoulders
    side = int(round(256 * scale))
    head = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
    h, w = size
    frame = np.full((h, w, 3), 110, np.uint8)
    regions = []
    gap = (w - count * side) // (count + 1)
    if gap < 0:
        raise ValueError("faces do not fit in the frame")
    y0 = (h - side) // 2
    for i in range(count):
        x0 = gap + i * (side + gap)
        frame[y0:y0 + side, x0:x0 + side] = head
        regions.append((x0, y0, x0 + side, y0 + side))
    return frame, regions


def face_grid(face_rgb: np.ndarray, rows: int, cols: int, side: int, size=(480, 640)) -> tuple[np.ndarray, list]:
    """`rows` x `cols` copies of the astronaut's head region (`side` px square), evenly spread on a gray (H, W)
    canvas: the same face, only shifted. Returns the RGB frame and the (x0, y0, x1, y1) pasted regions."""
    import cv2
    head = cv2.resize(face_rgb[0:256, 96:352], (side, side), interpolation=cv2.INTER_AREA)
    h, w = size
    gap_x, gap_y = (w - cols * side) // (cols + 1), (h - rows * side) // (rows + 1)
    if gap_x < 0 or gap_y < 0:
        raise ValueError("faces do not fit in the frame")
    frame = np.full((h, w, 3), 110, np.uint8)
    regions = []
    for r in range(rows):
        for c in range(cols):
            x0, y0 = gap_x + c * (side + gap_x), gap_y + r * (side + gap_y)
            frame[y0:y0 + side, x0:x0 + side] = head
            regions.append((x0, y0, x0 + side, y0 + side))
    return frame, regions


@pytest.fixture(scope="session")
def face_frame(astronaut_rgb):
    """A 640x480 RGB frame with one real face, and its pasted region."""
    frame, regions = place_faces(astronaut_rgb, 1, scale=0.9)
    return frame, regions


@pytest.fixture(scope="session")
def faces3_frame(astronaut_rgb):
    """A 640x480 RGB frame with three copies of the real face side by side, and their pasted regions."""
    frame, regions = place_faces(astronaut_rgb, 3, scale=0.7)
    return frame, regions


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    """Folder of the generated datasets and the small trained model shared by the training and fer-eval tests
    (each made once per test run; see eval_helpers)."""
    return tmp_path_factory.getbasetemp() / "fer_eval"


@pytest.fixture(scope="session")
def model8(base):
    """A tiny ckplus8 3DAGN trained for two epochs by fer-train on generated class-folder data, exported."""
    from eval_helpers import trained_model
    return trained_model(base, "ckplus8")


def record_whole_frame_passes(lm) -> list:
    """Wrap a VIDEO-mode MediaPipeLandmarker's whole-frame FaceLandmarkers ("_landmarker", "_one_face") so that
    each call appends its name to the returned list."""
    used = []
    for name in ("_landmarker", "_one_face"):
        task = getattr(lm, name)
        if task is None:
            continue

        class Recorded:  # the MediaPipe task, with a note of each whole-frame call
            def detect_for_video(self, image, ts_ms, task=task, name=name):
                used.append(name)
                return task.detect_for_video(image, ts_ms)

            def close(self, task=task):
                task.close()
        setattr(lm, name, Recorded())
    return used
