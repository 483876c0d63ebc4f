"""fer_msgs across processes: a FaceEmotionArray published by one process arrives field by field in another."""
from __future__ import annotations

import math
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from fer_msgs.msg import FaceEmotion, FaceEmotionArray  # noqa: E402

from ros_helpers import isolated_ros_env, start_python, stop, use_env  # noqa: E402

PUBLISHER = r"""
import sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
from fer_msgs.msg import FaceEmotion, FaceEmotionArray
from geometry_msgs.msg import Point

rclpy.init()
node = rclpy.create_node("fer_msgs_test_publisher")
qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
pub = node.create_publisher(FaceEmotionArray, "emotion", qos)
msg = FaceEmotionArray()
msg.header.stamp.sec = 1732400000
msg.header.stamp.nanosec = 123456789
msg.header.frame_id = "camera_optical"
for i in range(2):
    f = FaceEmotion()
    f.face_id = 7 + i
    f.label = "happy" if i == 0 else "surprise"
    f.confidence = 0.75 + 0.1 * i
    f.class_names = ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise", "neutral"]
    f.scores = [0.01, 0.02, 0.03, 0.04, 0.75 - 0.1 * i, 0.05, 0.05 + 0.1 * i, 0.05]
    f.box.x_offset, f.box.y_offset, f.box.width, f.box.height = 10 + i, 20, 64, 80
    f.landmarks = [Point(x=float(k) + i, y=2.0 * k, z=0.0) for k in range(68)]
    f.has_neutral_reference = bool(i)
    f.window_ready = True
    f.window_frames = 3
    f.track_age_s = 1.5 + i
    msg.faces.append(f)
deadline = time.time() + 20
while time.time() < deadline:
    pub.publish(msg)
    rclpy.spin_once(node, timeout_sec=0.1)
node.destroy_node()
rclpy.try_shutdown()
"""


def test_face_emotion_array_crosses_processes():
    env = isolated_ros_env()
    use_env(env)
    proc = start_python(["-c", PUBLISHER], env)
    got = []
    rclpy.init()
    try:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        node = rclpy.create_node("fer_msgs_test_subscriber")
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(FaceEmotionArray, "emotion", got.append, qos)
        deadline = time.time() + 20
        while not got and time.time() < deadline and proc.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
        _, out = stop(proc)
    assert got, f"no FaceEmotionArray received; publisher said:\n{out}"
    msg = got[0]
    assert isinstance(msg, FaceEmotionArray)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1732400000, 123456789)
    assert msg.header.frame_id == "camera_optical"
    assert len(msg.faces) == 2
    for i, f in enumerate(msg.faces):
        assert isinstance(f, FaceEmotion)
        assert f.face_id == 7 + i
        assert f.label == ("happy" if i == 0 else "surprise")
        assert math.isclose(f.confidence, 0.75 + 0.1 * i, rel_tol=1e-6)
        assert list(f.class_names) == ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise",
                                       "neutral"]
        expected = [0.01, 0.02, 0.03, 0.04, 0.75 - 0.1 * i, 0.05, 0.05 + 0.1 * i, 0.05]
        assert len(f.scores) == 8
        assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(f.scores, expected))
        assert (f.box.x_offset, f.box.y_offset, f.box.width, f.box.height) == (10 + i, 20, 64, 80)
        assert len(f.landmarks) == 68
        assert all((p.x, p.y, p.z) == (float(k) + i, 2.0 * k, 0.0) for k, p in enumerate(f.landmarks))
        assert f.has_neutral_reference is bool(i)
        assert f.window_ready is True
        assert f.window_frames == 3
        assert math.isclose(f.track_age_s, 1.5 + i, rel_tol=1e-6)


def test_capture_neutral_service_type():
    from fer_msgs.srv import CaptureNeutral
    req = CaptureNeutral.Request(face_ids=[1, 2])
    res = CaptureNeutral.Response(success=True, captured=[1], message="face 2 is not tracked")
    assert list(req.face_ids) == [1, 2] and list(res.captured) == [1] and res.success
