"""launch_testing: `fer.launch.py` starts fer_node; frames with a real face go in, /emotion comes out.

launch_testing and launch_ros come with a ROS 2 install (not with the PyPI wheels): without them this file skips.
With them, pytest's launch_testing plugin (or `launch_test`) runs it.
"""
from __future__ import annotations

import os
import time
import unittest

import pytest

launch_testing = pytest.importorskip(
    "launch_testing", reason="launch_testing is not installed (it comes with a ROS 2 install, not from PyPI)")
pytest.importorskip("launch_ros", reason="launch_ros is not installed (it comes with a ROS 2 install, not from PyPI)")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import launch_testing.markers  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from fer_msgs.msg import FaceEmotionArray  # noqa: E402
from fer_ros.image_codec import encode_rgb8  # noqa: E402

from conftest import place_faces  # noqa: E402
from ros_helpers import isolated_ros_env, use_env  # noqa: E402

# The launched node inherits this process's environment: give the run a ROS domain of its own.
use_env(isolated_ros_env())

CAMERA_TOPIC = "/fer_launch_test/image"


@pytest.mark.launch_test
@launch_testing.markers.keep_alive
def generate_test_description():
    launch_file = os.path.join(get_package_share_directory("fer_ros"), "launch", "fer.launch.py")
    fer = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file),
        launch_arguments={"image": CAMERA_TOPIC, "debug_image": "false"}.items())
    return launch.LaunchDescription([fer, launch_testing.actions.ReadyToTest()])


def _face_image(stamp_ns: int) -> Image:
    from skimage import data
    frame, _ = place_faces(data.astronaut(), 1, scale=0.9)
    raw = encode_rgb8(frame, "bgr8")
    msg = Image(height=raw.height, width=raw.width, encoding=raw.encoding, is_bigendian=raw.is_bigendian,
                step=raw.step)
    msg.data = raw.data
    msg.header.frame_id = "launch_test_camera"
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


class TestFerLaunch(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("fer_launch_test")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.try_shutdown()

    def test_emotion_arrives_for_a_face(self, proc_output):
        got = []
        self.node.create_subscription(FaceEmotionArray, "/emotion", got.append, 10)
        pub = self.node.create_publisher(Image, CAMERA_TOPIC, QoSProfile(depth=1,
                                                                          reliability=ReliabilityPolicy.RELIABLE))
        sent = set()
        deadline = time.monotonic() + 90.0  # model loading on a small CPU takes a while
        while time.monotonic() < deadline and not any(m.faces and m.faces[0].window_ready for m in got):
            stamp_ns = 1_700_000_000_000_000_000 + len(sent) * 33_000_000
            pub.publish(_face_image(stamp_ns))
            sent.add(divmod(stamp_ns, 1_000_000_000))
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.assertTrue(got, "no FaceEmotionArray on /emotion")
        ready = [m for m in got if m.faces and m.faces[0].window_ready]
        self.assertTrue(ready, "no face with a full window was reported")
        msg = ready[-1]
        self.assertEqual(msg.header.frame_id, "launch_test_camera")
        self.assertIn((msg.header.stamp.sec, msg.header.stamp.nanosec), sent)
        face = msg.faces[0]
        self.assertEqual(len(face.scores), len(face.class_names))
        self.assertAlmostEqual(sum(face.scores), 1.0, places=3)
        self.assertIn(face.label, list(face.class_names))


@launch_testing.post_shutdown_test()
class TestFerShutdown(unittest.TestCase):

    def test_clean_exit(self, proc_info):
        # SIGINT from launch at shutdown: fer_node exits 0 (it catches ExternalShutdownException).
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
