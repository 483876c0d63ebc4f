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


@pytest.mark.parametrize("tool", ["fer-train", "fer-eval", "fer-replay", "fer-make-bag", "fer-bench",
                                  "fer-publish-bag", "fer-soak"])
def test_command_line_tools_installed_with_help(tool):
    """Each tool is where `ros2 run fer_ros` looks (lib/fer_ros) and answers --help."""
    import subprocess
    import sys
    prefix = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    found = [pathlib.Path(p) / "lib" / "fer_ros" / tool for p in prefix if (pathlib.Path(p) / "lib" / "fer_ros" / tool).is_file()]
    if not found:
        pytest.skip("fer_ros is not in an install space on AMENT_PREFIX_PATH (source scripts/env.sh)")
    proc = subprocess.run([sys.executable, str(found[0]), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_shipped_files_are_found_without_a_ros_environment(monkeypatch):
    """The core is usable from a plain script: with no AMENT_PREFIX_PATH the source tree is the answer."""
    from fer_ros import resources
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    candidates = resources.shipped_candidates("fer_ros", "models", resources.DEFAULT_MODEL)
    assert candidates == [resources.SOURCE_ROOT / "fer_ros" / "models" / resources.DEFAULT_MODEL]
    assert (resources.default_model_dir() / "manifest.json").is_file()
