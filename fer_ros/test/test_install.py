"""The built packages are registered where ROS 2 tools look for them (the colcon install space)."""
from __future__ import annotations

import os
import pathlib

import pytest

ament_index = pytest.importorskip("ament_index_python.packages")


def test_fer_ros_registered_in_ament_index():
    prefix = pathlib.Path(ament_index.get_package_prefix("fer_ros"))
    share = pathlib.Path(ament_index.get_package_share_directory("fer_ros"))
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "fer_ros").is_file()
    assert (share / "package.xml").is_file()
    assert "<name>fer_ros</name>" in (share / "package.xml").read_text()
    # launch and config files where `ros2 launch fer_ros fer.launch.py` and the launch file look for them
    assert (share / "launch" / "fer.launch.py").is_file()
    assert (share / "config" / "fer.yaml").is_file()
    assert (share / "models" / "face_landmarker.task").is_file()
    # the node executable where `ros2 run fer_ros fer_node` looks: <prefix>/lib/fer_ros/
    exe = prefix / "lib" / "fer_ros" / "fer_node"
    assert exe.is_file() and os.access(exe, os.X_OK)


def test_fer_msgs_registered_with_its_interfaces():
    share = pathlib.Path(ament_index.get_package_share_directory("fer_msgs"))
    for name in ("msg/FaceEmotion.msg", "msg/FaceEmotionArray.msg", "srv/CaptureNeutral.srv"):
        assert (share / name).is_file(), name
    resources = ament_index.get_resources("rosidl_interfaces")
    assert "fer_msgs" in resources
