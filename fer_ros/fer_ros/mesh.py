"""The face mesh network on its own: a known face followed from frame to frame without MediaPipe's graph.

MediaPipe's FaceLandmarker runs the bundle's `face_landmarks_detector.tflite` (478 points from a 256x256 view of
the face) inside a graph whose per-call cost on a CPU is about as large again as the network's (image conversion,
landmark objects built in Python, a thread hand-over per call). `MeshNetwork` runs the same network through LiteRT's
interpreter on a view of the face cut from the frame by `roi_from_points`: the face's previous points, turned
upright by the line through the outer eye corners and enlarged 1.5 times (on the astronaut the network then finds
MediaPipe's points to 0.74% of the outer-eye distance on average). A face
whose presence score falls below the threshold is reported lost, and the caller finds it again by detection.

`available()` says whether LiteRT can be imported; `MeshNetwork.from_bundle(bundle bytes)` builds one interpreter
(not thread-safe; LiteRT releases the GIL while it runs, so two can run at once); `MeshFollower` holds one per
thread and follows a frame's known faces side by side.
"""
from __future__ import annotations

import io
import math
import queue
import threading
import zipfile
from dataclasses import dataclass

import cv2
import numpy as np

from fer_ros.tiles import box_of, iou

MESH_MODEL_NAME = "face_landmarks_detector.tflite"
INPUT_SIDE = 256  # the network's square input (px)
ROI_SCALE = 1.5  # the view's side over the longer side of the points' box
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 33, 263  # mesh indices whose line sets the view's rotation
# A view is kept from frame to frame while the new one would move its centre or change its side by less than this
# share of its side and turn it by less than ROI_HOLD_RAD: a still face then gets exactly the same points again.
# The landmarker holds a small face's crop by the same share.
ROI_HOLD = 0.05
ROI_HOLD_RAD = 0.05
# The network finds the same points on a view off the face's centre by up to a tenth of its side (within 1% of the
# eye distance); further off, its points drift towards the view's centre. A face that moved more than this share of
# its view since the last frame is landmarked a second time, on the view its first points give.
ROI_REDO = 0.1


def available() -> bool:
    """Whether LiteRT's Python interpreter can be imported."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except Exception:  # ImportError, or a native library that does not load
        return False
    return True


@dataclass(frozen=True)
class Roi:
    """A square, rotated view of the frame: centre (px), side (px), and the unit vector of its x axis in the
    frame (the face's eye line)."""
    cx: float
    cy: float
    side: float
    ax: float
    ay: float

    def to_frame(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) points in the network's input pixels -> frame pixels."""
        s = self.side / INPUT_SIDE
        u = uv[:, 0] - INPUT_SIDE / 2.0
        v = uv[:, 1] - INPUT_SIDE / 2.0
        x = self.cx + s * (u * self.ax - v * self.ay)
        y = self.cy + s * (u * self.ay + v * self.ax)
        return np.stack([x, y], axis=1)

    def inverse_affine(self) -> np.ndarray:
        """The 2x3 matrix that maps the network's input pixels to frame pixels (cv2.WARP_INVERSE_MAP)."""
        s = self.side / INPUT_SIDE
        a, b = s * self.ax, s * self.ay
        c = INPUT_SIDE / 2.0
        return np.array([[a, -b, self.cx - a * c + b * c],
                         [b, a, self.cy - b * c - a * c]], np.float64)

    def offset(self, other: "Roi") -> float:
        """How far `other` lies from this view: the larger of its centre's distance and its side's change, over
        this view's side."""
        return max(math.hypot(other.cx - self.cx, other.cy - self.cy), abs(other.side - self.side)) / self.side

    def close_to(self, other: "Roi") -> bool:
        """Whether `other` differs from this view by less than ROI_HOLD (centre, side) and ROI_HOLD_RAD."""
        turn = abs(math.atan2(self.ax * other.ay - self.ay * other.ax, self.ax * other.ax + self.ay * other.ay))
        return self.offset(other) <= ROI_HOLD and turn <= ROI_HOLD_RAD


def roi_from_points(points: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """The view the network should see next for a face with these (478, 2+) frame points: centred on their box,
    `scale` times its longer side, its x axis along the outer eye corners."""
    xy = np.asarray(points, np.float64)[:, :2]
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    ex, ey = xy[RIGHT_EYE_OUTER] - xy[LEFT_EYE_OUTER]
    norm = math.hypot(ex, ey)
    ax, ay = (ex / norm, ey / norm) if norm > 1e-6 else (1.0, 0.0)
    return Roi(cx=(x0 + x1) / 2.0, cy=(y0 + y1) / 2.0, side=max(x1 - x0, y1 - y0, 1.0) * scale, ax=ax, ay=ay)


class MeshNetwork:
    """One LiteRT interpreter of the mesh network. `landmark(frame, roi) -> (points478 (478, 3) frame px,
    presence in [0, 1])`; not thread-safe (one per thread)."""

    def __init__(self, model: bytes, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter
        self._interpreter = Interpreter(model_content=model, num_threads=int(threads))
        self._interpreter.allocate_tensors()
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1 or list(inputs[0]["shape"]) != [1, INPUT_SIDE, INPUT_SIDE, 3]:
            raise ValueError(f"{MESH_MODEL_NAME}: expected one input of shape (1, {INPUT_SIDE}, {INPUT_SIDE}, 3), "
                             f"got {[list(i['shape']) for i in inputs]}")
        self._input = inputs[0]["index"]
        self._points = self._presence = None
        for out in self._interpreter.get_output_details():
            size = int(np.prod(out["shape"]))
            if size == 478 * 3:
                self._points = out["index"]
            elif size == 1 and len(out["shape"]) == 4:
                self._presence = out["index"]
        if self._points is None or self._presence is None:
            raise ValueError(f"{MESH_MODEL_NAME}: no 478x3 points output and presence score among its outputs")

    @classmethod
    def from_bundle(cls, bundle: bytes, threads: int = 1) -> "MeshNetwork":
        """The mesh network of a face_landmarker.task bundle (its bytes)."""
        with zipfile.ZipFile(io.BytesIO(bundle)) as z:
            return cls(z.read(MESH_MODEL_NAME), threads)

    def follow(self, frame: np.ndarray, roi: Roi, min_presence: float = 0.5) -> tuple[np.ndarray, float, Roi]:
        """(points478, presence, the view they were found on): `landmark` on `roi`, and, when the face is there
        (presence at least `min_presence`), once more on the view its points give when that lies more than ROI_REDO
        away (a face that moved fast)."""
        points, presence = self.landmark(frame, roi)
        if presence >= min_presence:
            again = roi_from_points(points)
            if roi.offset(again) > ROI_REDO:
                return (*self.landmark(frame, again), again)
        return points, presence, roi

    def landmark(self, frame: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """(points478 (478, 3) frame px, presence score in [0, 1]) of the face the view `roi` of the RGB frame
        holds."""
        view = cv2.warpAffine(frame, roi.inverse_affine(), (INPUT_SIDE, INPUT_SIDE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        # written into the interpreter's own (aligned) input buffer: no copy, and no reallocation warning
        np.multiply(view, np.float32(1.0 / 255.0), out=self._interpreter.tensor(self._input)()[0],
                    casting="unsafe")
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._points).reshape(478, 3)
        logit = float(self._interpreter.get_tensor(self._presence).reshape(()))
        points = np.empty((478, 3), np.float32)
        points[:, :2] = roi.to_frame(raw[:, :2].astype(np.float64))
        points[:, 2] = raw[:, 2] * (roi.side / INPUT_SIDE)
        return points, 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))

    def close(self) -> None:
        self._interpreter = None


class MeshFollower:
    """`count` mesh networks, one per thread that may follow a face at once (the landmarker's pool threads and
    the calling one), each on one core; and, with `solo_threads` above 1, one more that spreads a lone face over
    that many cores. `follow(frame, tracks, pool)` -> [(points478, view)]: the faces of `tracks` ([(last points478,
    last view or None)]) that the network still finds (presence at least `min_presence`), each on its last view
    while the view its last points give is close to it (a still face sees exactly the same view again), else on
    that new view; a face that came to lie on another one's place is dropped."""

    def __init__(self, bundle: bytes, count: int, min_presence: float = 0.5, solo_threads: int = 1) -> None:
        self.min_presence = float(min_presence)
        self._networks = [MeshNetwork.from_bundle(bundle) for _ in range(max(1, int(count)))]
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for net in self._networks:
            self._free.put(net)
        # one face: its mesh is the whole of the stage's work, so it gets the cores the faces would share
        self._solo = MeshNetwork.from_bundle(bundle, int(solo_threads)) if int(solo_threads) > 1 else None
        self._solo_lock = threading.Lock()

    def _one(self, frame: np.ndarray, track: tuple, solo: bool = False) -> tuple[np.ndarray, float, Roi]:
        points, view = track
        new = roi_from_points(points)
        if view is not None and view.close_to(new):
            new = view
        if solo:
            with self._solo_lock:
                return self._solo.follow(frame, new, self.min_presence)
        net = self._free.get()  # one network per thread at a time
        try:
            return net.follow(frame, new, self.min_presence)
        finally:
            self._free.put(net)

    def follow(self, frame: np.ndarray, tracks: list, pool=None) -> list[tuple[np.ndarray, Roi]]:
        if self._solo is not None and len(tracks) == 1:
            results = [self._one(frame, tracks[0], solo=True)]
        elif pool is not None and len(tracks) > 1:
            rest = [pool.submit(self._one, frame, t) for t in tracks[1:]]
            try:
                first = self._one(frame, tracks[0])
            finally:
                others = [f.result() for f in rest]  # waited for even when the first one failed
            results = [first] + others
        else:
            results = [self._one(frame, t) for t in tracks]
        out, boxes = [], []
        for points, presence, view in results:
            box = box_of(points)
            if presence < self.min_presence or any(iou(box, b) > 0.5 for b in boxes):
                continue
            out.append((points, view))
            boxes.append(box)
        return out

    def close(self) -> None:
        for net in self._networks + ([self._solo] if self._solo is not None else []):
            net.close()
        self._networks, self._solo = [], None
