"""launch_testing: two cameras, one fer_node each in its camera's namespace, through `ros2 launch fer_ros
fer.launch.py cameras:=...` (launch_cases_cameras.py).

Where the launch stack is missing, this module holds one test that skips and names the missing piece.
"""
from __future__ import annotations

import pytest

from launch_stack import missing_launch_stack

MISSING = missing_launch_stack()

if MISSING:
    def test_two_cameras_launch():
        pytest.skip(MISSING)
else:
    from launch_cases_cameras import TestCleanStop, TestTwoCameras, generate_test_description  # noqa: F401
