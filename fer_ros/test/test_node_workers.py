"""fer_node's two workers, in this process with a recognizer whose stages only take time: the hand-over between
them (at most two frames in the node, the newest taken), one stage after the other without it, and a stop that
finishes the frames already started."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")

from node_helpers import image_msg  # noqa: E402
from rclpy.context import Context  # noqa: E402

from fer_ros.runtime import BuiltRecognizer  # noqa: E402
from fer_ros.slots import Handoff  # noqa: E402


class _TimedStages:
    """A recognizer whose perceive and recognise only sleep, counting the frames between the two."""

    class_names = ("anger", "neutral")
    window_length = 3
    clip_input = "lbp"
    landmarker = None
    engine = SimpleNamespace(describe=lambda: "no engine (test)")

    def __init__(self, perceive_s: float, recognise_s: float) -> None:
        self.perceive_s, self.recognise_s = perceive_s, recognise_s
        self._lock = threading.Lock()
        self.in_node = self.most_in_node = 0
        self.perceived: list[float] = []
        self.recognised: list[float] = []

    def perceive(self, frame, stamp_s):
        with self._lock:
            self.in_node += 1
            self.most_in_node = max(self.most_in_node, self.in_node)
            self.perceived.append(stamp_s)
        time.sleep(self.perceive_s)
        return stamp_s

    def recognise(self, perception):
        time.sleep(self.recognise_s)
        with self._lock:
            self.in_node -= 1
            self.recognised.append(perception)
        return []

    def configure(self, **_):
        pass

    def close(self):
        pass


def _run_node(stages: _TimedStages, overlap: bool, frames: int = 60, period_s: float = 0.005):
    """Feed `frames` images to a FerNode as fast as a camera at 1/period_s would, then stop it; returns the stages."""
    from fer_ros.ros.node import FerNode
    ctx = Context()
    rclpy.init(context=ctx, args=["--ros-args", "-p", f"overlap_stages:={str(overlap).lower()}"])
    node = None
    try:
        node = FerNode(recognizer_factory=lambda *_: BuiltRecognizer(stages, "test", Path("test_model")),
                       context=ctx)
        for i in range(frames):
            node.image_callback(image_msg(np.zeros((16, 16, 3), np.uint8), int(round((100.0 + i * period_s) * 1e9)),
                                          encoding="rgb8"))
            time.sleep(period_s)
        node.close()
    finally:
        if node is not None:
            node.destroy_node()
        ctx.try_shutdown()
    return stages


def test_the_handoff_holds_one_frame_and_says_when_it_is_empty():
    box = Handoff()
    assert box.wait_empty(0.0) and box.take(0.0) is None
    box.put("frame 1")
    assert not box.wait_empty(0.01)
    with pytest.raises(RuntimeError, match="wait_empty first"):
        box.put("frame 2")
    taker = threading.Timer(0.05, box.take, args=(1.0,))
    taker.start()
    t0 = time.monotonic()
    assert box.wait_empty(2.0) and time.monotonic() - t0 < 1.0  # woken by the take, not by the timeout
    taker.join()


def test_with_slow_networks_at_most_two_frames_are_in_the_node_and_each_is_the_newest():
    stages = _run_node(_TimedStages(perceive_s=0.01, recognise_s=0.04), overlap=True)
    assert stages.most_in_node == 2  # one landmarked while the other is in the networks, never a third waiting
    assert stages.in_node == 0 and stages.recognised == stages.perceived  # the stop finished both frames
    assert len(stages.recognised) >= 4 and stages.recognised == sorted(stages.recognised)
    # the first worker takes a frame only when the second takes the last one: a frame is landmarked right before
    # it is needed, so between two recognised frames the camera sent several (the newest is taken)
    steps = np.diff(stages.recognised) / 0.005
    assert np.median(steps) >= 4


def test_one_stage_after_the_other_keeps_one_frame_in_the_node():
    stages = _run_node(_TimedStages(perceive_s=0.01, recognise_s=0.02), overlap=False, frames=30)
    assert stages.most_in_node == 1
    assert stages.in_node == 0 and stages.recognised == stages.perceived and len(stages.recognised) >= 3
