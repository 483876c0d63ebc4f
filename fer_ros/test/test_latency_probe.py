"""The latency probe with --start-node, interrupted: it stops the node it started and says so in one line."""
from __future__ import annotations

import signal

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")

from node_model import model_for_tests  # noqa: E402
from ros_helpers import interrupt_tool, isolated_ros_env, start_python  # noqa: E402


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_probe_stops_its_node_and_says_so(tmp_path_factory, sig):
    model = model_for_tests(tmp_path_factory.getbasetemp())
    proc = start_python(["-m", "fer_ros.ros.latency_probe", "--start-node", "--warmup-s", "0", "--duration-s", "60",
                         "--startup-timeout-s", "120", "--node-args", f"-p model_path:={model.path}"],
                        isolated_ros_env({"OMP_NUM_THREADS": "2"}))
    out, nodes, survivors = interrupt_tool(proc, sig, after="probing")
    assert nodes, "the probe started no fer_node"
    assert "probing" in out, out
    assert survivors == [], out  # the node did not outlive the probe
    assert proc.returncode == 130 and "Traceback" not in out, out
    assert out.strip().splitlines()[-1] == "latency_probe: interrupted: nothing measured", out
