"""The two-camera launch test (test_launch_cameras.py runs it where the launch stack is installed).

`ros2 launch fer_ros fer.launch.py cameras:=cam_a,cam_b image:=image` starts one fer_node per camera, each in its
camera's namespace: /cam_a/fer_node reads /cam_a/image and answers on /cam_a/emotion, /cam_b/fer_node the same in
/cam_b, nothing goes to /emotion, each names itself on /diagnostics; both stop cleanly on launch's SIGINT.
"""
from __future__ import annotations

import unittest

import launch
import launch_testing.actions
import launch_testing.markers
import pytest
from diagnostic_msgs.msg import DiagnosticArray

from fer_msgs.msg import FaceEmotionArray

from launch_stack import (START_TIMEOUT_S, CleanStopChecks, ListenerTestCase, feeder, fer_launch,
                          ready_face)
from ros_helpers import isolated_ros_env, use_env

use_env(isolated_ros_env())

CAMERAS = {"cam_a": "cam_a_optical_frame", "cam_b": "cam_b_optical_frame"}  # namespace: frame_id of its images


@pytest.mark.launch_test
@launch_testing.markers.keep_alive
def generate_test_description():
    return launch.LaunchDescription([
        fer_launch(cameras=",".join(CAMERAS), image="image"),
        feeder({f"/{cam}/image": frame_id for cam, frame_id in CAMERAS.items()}, rate_hz=15.0),
        launch_testing.actions.ReadyToTest(),
    ])


class TestTwoCameras(ListenerTestCase):

    listener_name = "fer_cameras_test"

    @classmethod
    def listen_to(cls):
        cls.emotions = {cam: cls.listener.listen(FaceEmotionArray, f"/{cam}/emotion") for cam in CAMERAS}
        cls.root_emotions = cls.listener.listen(FaceEmotionArray, "/emotion")
        cls.diagnostics = cls.listener.listen(DiagnosticArray, "/diagnostics")

    def test_each_camera_is_answered_in_its_own_namespace(self):
        def both_ready():
            return all(any(ready_face(m) for m in got) for got in self.emotions.values())
        self.assertTrue(self.listener.spin_until(both_ready, START_TIMEOUT_S),
                        {cam: len(got) for cam, got in self.emotions.items()})
        for cam, frame_id in CAMERAS.items():
            got = self.emotions[cam]
            self.assertEqual({m.header.frame_id for m in got}, {frame_id}, f"/{cam}/emotion answers another camera")
            face = next(f for m in got for f in m.faces if f.window_ready)
            self.assertIn(face.label, list(face.class_names))
        self.assertEqual(self.root_emotions, [], "a camera's node published on /emotion")

    def test_each_node_names_itself_on_diagnostics(self):
        def both_named():
            names = {s.name.split(":")[0] for d in self.diagnostics for s in d.status}
            return {f"/{cam}/fer_node" for cam in CAMERAS} <= names
        self.assertTrue(self.listener.spin_until(both_named, START_TIMEOUT_S),
                        sorted({s.name for d in self.diagnostics for s in d.status}))


@launch_testing.post_shutdown_test()
class TestCleanStop(CleanStopChecks, unittest.TestCase):
    """Both nodes stop cleanly on launch's SIGINT."""
