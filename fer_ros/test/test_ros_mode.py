"""scripts/ros_mode.sh, which tells setup whether to build against a sourced system ROS 2 or the PyPI wheels. A shell
that sourced the project's own environment (scripts/env.sh) looks like a sourced ROS 2 (ROS_DISTRO, AMENT_PREFIX_PATH,
`ros2` on PATH) but is not one: taken for one, `make setup` would rebuild the venv against a ROS that is not there
and the colcon build would fail."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ros_mode.sh"


def mode(tmp_path: Path, **env: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    full = {"PATH": f"{bin_dir}:/usr/bin:/bin", **env}
    out = subprocess.run(["/bin/bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


def fake_ros2(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir(exist_ok=True)
    ros2 = tmp_path / "bin" / "ros2"
    ros2.write_text("#!/bin/sh\nexit 0\n")
    ros2.chmod(0o755)


def test_nothing_sourced_means_wheels(tmp_path):
    assert mode(tmp_path) == "wheels-jazzy"


def test_a_sourced_system_ros(tmp_path):
    fake_ros2(tmp_path)
    assert mode(tmp_path, ROS_DISTRO="humble", AMENT_PREFIX_PATH="/opt/ros/humble") == "system-humble"


def test_a_half_sourced_ros_is_not_a_system_ros(tmp_path):
    # a distro name left in the environment, with no prefix or no ros2 command, is not an install to build on
    assert mode(tmp_path, ROS_DISTRO="jazzy", AMENT_PREFIX_PATH="/opt/ros/jazzy") == "wheels-jazzy"
    fake_ros2(tmp_path)
    assert mode(tmp_path, ROS_DISTRO="jazzy") == "wheels-jazzy"


def test_the_projects_own_environment_keeps_the_wheels(tmp_path):
    fake_ros2(tmp_path)
    env = {"ROS_DISTRO": "jazzy", "AMENT_PREFIX_PATH": str(ROOT / ".venv"), "FER_ROS_FROM_WHEELS": "1"}
    assert mode(tmp_path, **env) == "wheels-jazzy"


def test_env_sh_in_wheels_mode_is_recognised(tmp_path):
    # source the real scripts/env.sh in a clean shell (no ROS sourced), then ask: still the wheels
    script = f". {ROOT / 'scripts' / 'env.sh'} --no-install && bash {SCRIPT}"
    out = subprocess.run(["/bin/bash", "-c", script], env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "wheels-jazzy"


def test_env_sh_after_a_half_sourced_ros_enters_wheels_mode(tmp_path):
    # a stray ROS_DISTRO (no ROS prefix, no ros2): env.sh must make the venv the ROS prefix, as setup.sh decided
    script = (f". {ROOT / 'scripts' / 'env.sh'} --no-install && echo \"$FER_ROS_FROM_WHEELS|$AMENT_PREFIX_PATH\" "
              f"&& bash {SCRIPT}")
    out = subprocess.run(["/bin/bash", "-c", script],
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ROS_DISTRO": "jazzy"},
                         capture_output=True, text=True, timeout=30, check=True)
    marker, prefixes = out.stdout.splitlines()[0].split("|")
    assert marker == "1" and str(ROOT / ".venv") in prefixes.split(":")
    assert out.stdout.splitlines()[1] == "wheels-jazzy"
