"""make soak's tool, run for a few seconds: it starts fer_node, mixes malformed messages into a real-face stream,
and reports memory, rate, latency, drops, rejections and the node's clean exit; interrupted, it stops the node and
says so in one line; a node that dies during it is a failure naming its exit code, its last line and its output
file. (The benchmark itself runs for minutes: `make soak`.)"""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")

from node_model import model_for_tests  # noqa: E402
from ros_helpers import interrupt_tool, isolated_ros_env, start_python  # noqa: E402


def test_a_short_soak_reports_every_figure(tmp_path, tmp_path_factory):
    model = model_for_tests(tmp_path_factory.getbasetemp())
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, "-m", "fer_ros.ros.soak", "--minutes", "0.2", "--mark-minutes", "0.1",
                          "--bad-every", "4", "--node-args", f"-p model_path:={model.path}", "--json", str(out)],
                         env=isolated_ros_env({"OMP_NUM_THREADS": "2"}), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    r = json.loads(out.read_text())
    assert "memory (RSS): start" in run.stdout and "after the mark" in run.stdout
    assert r["sent"]["malformed"] >= r["sent"]["malformed_kinds"]  # every kind sent at least once
    assert r["answered"] > 0 and r["output_rate_hz"] > 0 and r["faces_per_answer"] > 0.5
    assert 0 < r["latency_ms"]["median"] <= r["latency_ms"]["p95"]
    n = r["node"]
    assert 0 < n["rejected"] <= r["sent"]["malformed"]  # a malformed message replaced before its turn is a drop
    # Every message the node received was processed, dropped or rejected (give or take one in flight when the
    # counters were first read).
    assert abs(n["received"] - (n["processed"] + n["dropped"] + n["rejected"])) <= 2
    rss = r["rss_mib"]
    assert 100 < rss["start"] and rss["start"] <= rss["max"] and rss["end"] <= rss["max"]
    # The growth is worked out from the unrounded readings; each MiB figure is rounded to 0.1, which moves a
    # percentage recomputed from them by up to 100 * 0.1 / mark (plus the 0.01 of its own rounding).
    rounding = 100 * 0.1 / rss["mark"] + 0.01
    assert rss["growth_after_mark_pct"] == pytest.approx(100 * (rss["end"] - rss["mark"]) / rss["mark"],
                                                         abs=rounding)
    assert r["tracebacks"] == 0 and r["exit_code"] == 0
    assert 0 < r["rejected_warnings"] <= n["rejected"]


def test_bad_options_are_one_line_errors():
    run = subprocess.run([sys.executable, "-m", "fer_ros.ros.soak", "--minutes", "nan"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "--minutes" in run.stderr


@pytest.mark.parametrize("sig, when", [(signal.SIGINT, "measuring"), (signal.SIGTERM, "starting")])
def test_an_interrupted_soak_stops_the_node_and_says_so(tmp_path, tmp_path_factory, sig, when):
    model = model_for_tests(tmp_path_factory.getbasetemp())
    out_json = tmp_path / "soak.json"
    proc = start_python(["-m", "fer_ros.ros.soak", "--minutes", "0.5", "--startup-timeout-s", "120", "--node-args",
                         f"-p model_path:={model.path}", "--json", str(out_json)],
                        isolated_ros_env({"OMP_NUM_THREADS": "2"}))
    out, nodes, survivors = interrupt_tool(proc, sig, after="answered" if when == "measuring" else None)
    assert nodes, "the soak started no fer_node"
    if when == "measuring":
        assert f"fer_node (pid {nodes[0]}) answered" in out, out
    assert survivors == [], out  # the node did not outlive the soak
    assert proc.returncode == 130 and "Traceback" not in out, out
    last = out.strip().splitlines()[-1]
    if when == "measuring":
        assert last.startswith("fer-soak: interrupted after ") and str(out_json) in last, out
        r = json.loads(out_json.read_text())
        assert r["interrupted"] is True and 0 < r["duration_s"] < 30 and r["answered"] > 0
    else:
        assert last == "fer-soak: interrupted before fer_node answered: nothing measured", out
        assert not out_json.exists()


FAKE_NODE = """
import os, sys, time
import rclpy
from sensor_msgs.msg import Image
from fer_msgs.msg import FaceEmotionArray
rclpy.init(args=sys.argv)
node = rclpy.create_node("fake_fer_node")
pub = node.create_publisher(FaceEmotionArray, "emotion", 50)
first = []

def on_image(msg):
    first[:] = first or [time.monotonic()]
    if time.monotonic() - first[0] > 1.0:
        print("fake node: giving up", flush=True)
        os._exit(3)
    pub.publish(FaceEmotionArray(header=msg.header))

node.create_subscription(Image, "image", on_image, 10)
while True:
    rclpy.spin_once(node, timeout_sec=0.01)
"""


def test_a_node_that_dies_during_the_soak_is_a_failure_naming_its_last_line(tmp_path, monkeypatch, capsys):
    """A node that answers, then exits with code 3 during the soak: fer-soak fails (exit code 1) with one line that
    names the exit code, the node's last line of output and its output file; nothing is written."""
    pytest.importorskip("fer_msgs", reason="fer_msgs is not built (make setup)")
    import os
    import random

    from fer_ros.ros import latency_probe, soak
    script = tmp_path / "fake_node.py"
    script.write_text(FAKE_NODE)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    started = []

    def start(image_topic, emotion_topic, node_args=""):
        log_path = tmp_path / "fake_node.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True, stdout=log,
                                    stderr=subprocess.STDOUT)
        proc.log_path = str(log_path)
        started.append(proc)
        return proc
    monkeypatch.setattr(latency_probe, "start_node", start)
    out_json = tmp_path / "soak.json"
    try:
        rc = soak.main(["--minutes", "0.5", "--startup-timeout-s", "60", "--json", str(out_json)])
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last == ("fer-soak: fer_node exited with code 3: fake node: giving up; fer_node output: "
                                f"{tmp_path / 'fake_node.log'}"), err
    assert not out_json.exists() and "Traceback" not in err
