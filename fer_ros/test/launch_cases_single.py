"""The single-camera launch test (test_launch_fer.py runs it where the launch stack is installed).

`ros2 launch fer_ros fer.launch.py` with a params file of its own and launch arguments that override it, fed 30
frames per second with a real face: /emotion carries the face with a label (under use_sim_time, with nothing on
/clock), every launch argument wins over the params file, and at the end launch's SIGINT stops the node cleanly: exit code 0, no ERROR line, no traceback.
"""
from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import launch
import launch_testing.actions
import launch_testing.markers
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from fer_msgs.msg import FaceEmotionArray

from launch_stack import (START_TIMEOUT_S, CleanStopChecks, ListenerTestCase, feeder, fer_launch,
                          ready_face)
from ros_helpers import isolated_ros_env, use_env

# The launched processes inherit this process's environment: give the run a ROS domain of its own.
use_env(isolated_ros_env())

CAMERA_TOPIC = "/fer_launch_test/image"
FRAME_ID = "launch_test_camera"
# The params file says one thing, the launch arguments another: the arguments must win.
PARAMS_FILE = """/**:
  ros__parameters:
    backend: "torch"
    publish_debug_image: false
    min_face_size_px: 30
    use_sim_time: false
"""


@pytest.mark.launch_test
@launch_testing.markers.keep_alive
def generate_test_description():
    params = Path(tempfile.mkdtemp(prefix="fer_launch_test_")) / "params.yaml"
    params.write_text(PARAMS_FILE)
    return launch.LaunchDescription([
        fer_launch(image=CAMERA_TOPIC, params_file=str(params), backend="onnxruntime", debug_image="true",
                   use_sim_time="true"),
        feeder({CAMERA_TOPIC: FRAME_ID}, rate_hz=30.0),
        launch_testing.actions.ReadyToTest(),
    ])


class TestSingleCamera(ListenerTestCase):

    @classmethod
    def listen_to(cls):
        cls.emotions = cls.listener.listen(FaceEmotionArray, "/emotion")
        cls.images = cls.listener.listen(Image, "/emotion/image", qos_profile_sensor_data)

    def test_a_face_in_gives_a_label_on_emotion(self):
        found = self.listener.spin_until(lambda: any(ready_face(m) for m in self.emotions), START_TIMEOUT_S)
        self.assertTrue(found, f"no face with a full window on /emotion ({len(self.emotions)} messages)")
        msg = next(m for m in reversed(self.emotions) if ready_face(m))
        self.assertEqual(msg.header.frame_id, FRAME_ID)
        face = next(f for f in msg.faces if f.window_ready)
        self.assertIn(face.label, list(face.class_names))
        self.assertEqual(len(face.scores), len(face.class_names))
        self.assertAlmostEqual(sum(face.scores), 1.0, places=3)
        self.assertAlmostEqual(face.confidence, max(face.scores), places=5)

    def test_launch_arguments_override_the_params_file(self):
        self.assertTrue(self.listener.spin_until(lambda: self.emotions, START_TIMEOUT_S), "fer_node did not start")
        values = self.listener.parameters("/fer_node", ["backend", "publish_debug_image", "min_face_size_px",
                                                        "use_sim_time"])
        self.assertEqual(values, {"backend": "onnxruntime",     # launch argument over the file's torch
                                  "publish_debug_image": True,  # launch argument over the file's false
                                  "min_face_size_px": 30,       # the file over the default 40
                                  "use_sim_time": True})        # launch argument over the file's false
        self.assertTrue(self.listener.spin_until(lambda: self.images, 20.0), "no annotated image on /emotion/image")
        self.assertEqual(self.images[-1].encoding, "rgb8")


@launch_testing.post_shutdown_test()
class TestCleanStop(CleanStopChecks, unittest.TestCase):
    """The node stops cleanly on launch's SIGINT."""
