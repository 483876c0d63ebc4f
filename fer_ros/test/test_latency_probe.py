"""The latency probe with --start-node, interrupted: it stops the node it started and says so in one line."""
from __future__ import annotations

import os
import signal
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")

from node_model import model_for_tests  # noqa: E402
from ros_helpers import child_pids, isolated_ros_env, read_until, running, start_python, stop  # noqa: E402


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_probe_stops_its_node_and_says_so(tmp_path_factory, sig):
    model = model_for_tests(tmp_path_factory.getbasetemp())
    proc = start_python(["-m", "fer_ros.ros.latency_probe", "--start-node", "--warmup-s", "0", "--duration-s", "60",
                         "--startup-timeout-s", "120", "--node-args", f"-p model_path:={model.path}"],
                        isolated_ros_env({"OMP_NUM_THREADS": "2"}))
    nodes: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not nodes and proc.poll() is None and time.monotonic() < deadline:
            nodes = child_pids(proc.pid)
            time.sleep(0.05)
        assert nodes, "the probe started no fer_node"
        head = read_until(proc, "probing", 120)
        assert "probing" in head, head
        time.sleep(1.0)
        os.kill(proc.pid, sig)  # the probe alone, as a terminal's Ctrl-C or a service manager would
        rest, _ = proc.communicate(timeout=40)
        out = head + rest
        survivors = [pid for pid in nodes if running(pid)]
    finally:
        if proc.poll() is None:
            stop(proc)
        for pid in nodes:
            if running(pid):
                os.killpg(pid, signal.SIGKILL)
    assert survivors == [], out  # the node did not outlive the probe
    assert proc.returncode == 130 and "Traceback" not in out, out
    assert out.strip().splitlines()[-1] == "latency_probe: interrupted: nothing measured", out
