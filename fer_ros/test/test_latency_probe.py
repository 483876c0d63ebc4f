"""The latency probe with --start-node: interrupted, it stops the node it started and says so in one line; against a
fake node (a process that echoes each image's stamp), it counts only the answers to the frames it measured, fails
naming the node's exit code and output file when the node dies or falls silent, and ends at a stop requested while
the last answers come in."""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")
pytest.importorskip("fer_msgs", reason="fer_msgs is not built (make setup)")

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


# --- the probe against a fake fer_node: a process that echoes each image's header on /emotion ---------------------
FAKE_NODE = """
import os, sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from fer_msgs.msg import FaceEmotionArray
delay_s, answer_s, then, others = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rclpy.init(args=sys.argv)
node = rclpy.create_node("fake_fer_node")
pub = node.create_publisher(FaceEmotionArray, "emotion", 50)
pending, first = [], []

def on_image(msg):
    now = time.monotonic()
    first[:] = first or [now]
    if now - first[0] <= answer_s:
        pending.append((now + delay_s, msg.header))
    elif then == "exit":
        print("fake node: giving up", flush=True)
        os._exit(3)

node.create_subscription(Image, "image", on_image, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
while True:
    rclpy.spin_once(node, timeout_sec=0.005)
    while pending and pending[0][0] <= time.monotonic():
        header = pending.pop(0)[1]
        pub.publish(FaceEmotionArray(header=header))
        for k in range(others):  # answers to the images of a camera on the same topic, a few microseconds apart
            ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec + 1000 * (k + 1)
            header.stamp.sec, header.stamp.nanosec = divmod(ns, 1_000_000_000)
            header.frame_id = "camera"
            pub.publish(FaceEmotionArray(header=header))
"""


@pytest.fixture
def fake_node(tmp_path, monkeypatch):
    """fake_node(delay_s, answer_s, then) makes latency_probe.start_node start, as it starts fer_node (its own
    process group, a private ROS domain this process joins, its output in a file, `log_path`), a fake node that
    answers each image `delay_s` after it came, for `answer_s` after the first, then exits with code 3 ("exit") or
    stays silent ("silent"); with `others`, each answer is followed by that many answers to images the probe did
    not send. Returns the list of the processes started; each is killed at the end."""
    import os
    import random
    import subprocess

    from fer_ros.ros import latency_probe
    script = tmp_path / "fake_node.py"
    script.write_text(FAKE_NODE)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    started = []

    def make(delay_s: float = 0.0, answer_s: float = 3600.0, then: str = "silent", others: int = 0):
        def start(image_topic, emotion_topic, node_args=""):
            log_path = tmp_path / f"fake_node_{len(started)}.log"
            with open(log_path, "w") as log:
                proc = subprocess.Popen([sys.executable, str(script), str(delay_s), str(answer_s), then, str(others)],
                                        start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
            proc.log_path = str(log_path)
            started.append(proc)
            return proc
        monkeypatch.setattr(latency_probe, "start_node", start)
        return started
    yield make
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_only_answers_to_the_frames_measured_count(fake_node, tmp_path, capsys):
    """Answers come 0.5 s after their image: those to the last warm-up frames arrive while measuring and are left
    out, so no more answers are counted than frames sent. The node's output file goes once the run measured."""
    from fer_ros.ros import latency_probe
    started = fake_node(delay_s=0.5)
    out = tmp_path / "probe.json"
    rc = latency_probe.main(["--start-node", "--warmup-s", "1", "--duration-s", "1", "--json", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    r = strict_json(out.read_text())
    assert 0 < r["answered"] <= r["sent"], r
    assert r["emotion_rate_hz"] <= r["publish_rate_hz"] and r["latency_ms_median"] >= 500, r
    assert not Path(started[0].log_path).exists()


def test_answers_to_images_the_probe_did_not_send_are_not_counted(fake_node, tmp_path, capsys):
    """A camera publishing on the probe's image topic gets answers too: only the probe's own frames are timed."""
    from fer_ros.ros import latency_probe
    fake_node(others=3)
    out = tmp_path / "probe.json"
    rc = latency_probe.main(["--start-node", "--warmup-s", "0.5", "--duration-s", "1", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    r = strict_json(out.read_text())
    assert 0 < r["answered"] <= r["sent"] and r["emotion_rate_hz"] <= r["publish_rate_hz"], r


@pytest.mark.parametrize("then, warmup_s, says", [
    ("exit", "0", "fer_node exited with code 3: fake node: giving up"),  # dies while measured
    ("silent", "1", "no answer on emotion to the "),  # answers at the start only, then nothing
])
def test_a_node_that_dies_or_falls_silent_is_a_failure_naming_its_output(fake_node, tmp_path, capsys, then,
                                                                         warmup_s, says):
    from fer_ros.ros import latency_probe
    started = fake_node(answer_s=1.5 if then == "exit" else 0.3, then=then)
    out = tmp_path / "probe.json"
    rc = latency_probe.main(["--start-node", "--warmup-s", warmup_s, "--duration-s", "3", "--json", str(out)])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last.startswith("latency_probe: ") and says in last, err
    log = started[0].log_path
    assert last.endswith(f"; fer_node output: {log}") and Path(log).is_file(), err  # kept: it tells why
    assert not out.exists() and "Traceback" not in err


def test_a_stop_while_the_last_answers_come_in_ends_the_probe(fake_node, monkeypatch):
    """A stop requested as the last frame has been sent, while the probe waits for the last answers, ends it
    (KeyboardInterrupt) instead of waiting on and measuring."""
    import threading
    import time

    import tqdm

    from fer_ros.ros import latency_probe
    stop = threading.Event()
    ended = []

    class StopAtTheEnd(tqdm.tqdm):  # the probe's progress bar closes as the last frame is sent
        def __exit__(self, *exc):
            stop.set()
            ended.append(time.monotonic())
            return super().__exit__(*exc)

    monkeypatch.setattr(tqdm, "tqdm", StopAtTheEnd)
    fake_node()
    args = latency_probe.get_args_parser().parse_args(["--warmup-s", "0", "--duration-s", "0.5"])
    node = latency_probe.start_node(args.image_topic, args.emotion_topic)
    with pytest.raises(KeyboardInterrupt):
        latency_probe.probe(args, node, stop)
    assert ended and time.monotonic() - ended[0] < 0.9  # the wait for the last answers is 1 s


def test_the_started_node_gets_a_quoted_value_with_spaces_as_one_argument(tmp_path, monkeypatch):
    """--node-args is split as a shell would, as fer-bench quotes it: a model path with spaces stays one value; a
    quote left open is refused when the arguments are read."""
    import os
    import shlex
    import subprocess

    from fer_ros.argtypes import parse_args
    from fer_ros.ros import latency_probe
    monkeypatch.setenv("ROS_DOMAIN_ID", "0")  # start_node sets both for this process too: restored afterwards
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    started = []

    class NoProcess:  # stands for the node's process: nothing starts
        def __init__(self, cmd, **kwargs) -> None:
            started.append(cmd)
    monkeypatch.setattr(subprocess, "Popen", NoProcess)
    model = tmp_path / "my models" / "tiny model"
    proc = latency_probe.start_node("image", "emotion", shlex.join(["-p", f"model_path:={model}"]) +
                                    " -p num_threads:=1")
    os.unlink(proc.log_path)
    assert started[0][-4:] == ["-p", f"model_path:={model}", "-p", "num_threads:=1"]
    assert parse_args(latency_probe.get_args_parser(), ["--node-args", "-p model_path:='/my models"],
                      "latency_probe: error") is None
