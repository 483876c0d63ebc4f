"""Helpers for the fer_node tests: a node subprocess whose output is collected, and a test-side rclpy client."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ros_helpers import isolated_ros_env, stop, use_env

START_TIMEOUT_S = 60.0  # loading the model and the landmarker on a busy 2-core machine
T0_NS = 1_732_400_000_000_000_000


class NodeProcess:
    """`python -m fer_ros.ros.node --ros-args ...` in its own process group; output lines gathered by a thread."""

    def __init__(self, ros_args: list[str], env: dict | None = None) -> None:
        self.env = env or isolated_ros_env({"OMP_NUM_THREADS": "2"})
        self.proc = subprocess.Popen([sys.executable, "-m", "fer_ros.ros.node", "--ros-args", *ros_args],
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout_s: float) -> bool:
        """True once a line containing `text` was printed; False on timeout or when the process ended."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.lines)):
                return True
            if self.proc.poll() is not None:
                self._reader.join(2.0)
                return any(text in line for line in self.lines)
            time.sleep(0.05)
        return False

    def rss_mib(self) -> float:
        """Resident memory of the node process (MiB), from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS")

    def reset_peak_rss(self) -> None:
        """Start the node's peak resident memory (VmHWM) afresh from its present size."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def peak_rss_mib(self) -> float:
        """The node's peak resident memory (MiB) since it started or since reset_peak_rss()."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmHWM")

    def stop(self, sig) -> tuple[int, str]:
        """Send `sig` to the process group and wait (kill after 15 s); returns (returncode, all output)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=15.0)
        except subprocess.TimeoutExpired:
            stop(self.proc, sig=9)
        self._reader.join(5.0)
        return self.proc.returncode, self.output


def image_msg(frame_rgb8: np.ndarray, stamp_ns: int, encoding: str = "bgr8", frame_id: str = "test_camera"):
    """A sensor_msgs/Image of `frame_rgb8` in `encoding`, stamped `stamp_ns` (ns)."""
    from sensor_msgs.msg import Image
    from fer_ros.image_codec import encode_rgb8
    raw = encode_rgb8(frame_rgb8, encoding)
    msg = Image(height=raw.height, width=raw.width, encoding=raw.encoding, is_bigendian=raw.is_bigendian,
                step=raw.step)
    msg.data = raw.data
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def box_center_inside(box, region) -> bool:
    """Is the centre of RegionOfInterest `box` inside the (x0, y0, x1, y1) region?"""
    cx = box.x_offset + box.width / 2.0
    cy = box.y_offset + box.height / 2.0
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]


def ready(msg) -> bool:
    """Every face of this FaceEmotionArray had a full window (and there is at least one)."""
    return bool(msg.faces) and all(f.window_ready for f in msg.faces)


class Client:
    """The test side: publishes images on <namespace>/image, collects <namespace>/emotion, <namespace>/emotion/image
    and /diagnostics (the names a fer_node in `namespace` uses)."""

    def __init__(self, namespace: str = "") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image
        from fer_msgs.msg import FaceEmotionArray
        from fer_msgs.srv import CaptureNeutral
        ns = namespace.rstrip("/")
        self.node = rclpy.create_node("fer_node_test_client")
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, f"{ns}/image", reliable)
        self.compressed_pub = self.node.create_publisher(CompressedImage, f"{ns}/image/compressed", reliable)
        self.emotions: list = []
        self.debug_images: list = []
        self.diagnostics: list = []
        self.node.create_subscription(FaceEmotionArray, f"{ns}/emotion", self.emotions.append, 100)
        self.node.create_subscription(Image, f"{ns}/emotion/image", self.debug_images.append,
                                      qos_profile_sensor_data)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.capture = self.node.create_client(CaptureNeutral, f"{ns}/fer_node/capture_neutral")
        self.next_ns = T0_NS

    def stamp(self) -> int:
        self.next_ns += 33_333_333
        return self.next_ns

    def send(self, frame: np.ndarray, encoding: str = "bgr8") -> int:
        ns = self.stamp()
        self.image_pub.publish(image_msg(frame, ns, encoding))
        return ns

    def spin_for(self, seconds: float) -> None:
        import rclpy
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.02)

    def answered(self, ns: int):
        for msg in self.emotions:
            if stamp_ns(msg.header.stamp) == ns:
                return msg
        return None

    def send_until(self, frame, done, timeout_s: float, encoding: str = "bgr8", period_s: float = 0.1):
        """Send `frame` every `period_s` until done(msg) holds for an answer to one of these frames; returns it."""
        sent = set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sent.add(self.send(frame, encoding))
            self.spin_for(period_s)
            for msg in reversed(self.emotions):
                if stamp_ns(msg.header.stamp) in sent and done(msg):
                    return msg
        return None


@contextlib.contextmanager
def feeding(client: Client, frame: np.ndarray, rate_hz: float = 30.0):
    """While the block runs, a thread publishes `frame` on the client's image topic at `rate_hz`, as a camera does
    (the load under which a node must still stop cleanly). Yields the list of the stamps sent (ns)."""
    sent: list[int] = []
    done = threading.Event()

    def publish() -> None:
        next_t = time.monotonic()
        while not done.is_set():
            ns = client.stamp()
            client.image_pub.publish(image_msg(frame, ns))
            sent.append(ns)
            next_t += 1.0 / rate_hz
            done.wait(max(0.0, next_t - time.monotonic()))

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        done.set()
        thread.join(5.0)


def error_lines(output: str) -> list[str]:
    """The lines of a node's output that report an error or a traceback."""
    return [line for line in output.splitlines() if "ERROR" in line or "Traceback" in line]


@contextlib.contextmanager
def running_node(ros_args: list[str], namespace: str = ""):
    """Start fer_node with `ros_args` in a private ROS domain, join that domain with rclpy in this process, wait
    for the node's "ready:" line; yields (NodeProcess, Client), the client talking to a node in `namespace`.
    Always shuts rclpy down and kills the node."""
    import pytest
    import rclpy
    node = NodeProcess(ros_args)
    client = None
    try:
        use_env(node.env)
        rclpy.init()
        client = Client(namespace)
        if not node.wait_for_line("ready:", START_TIMEOUT_S):
            pytest.fail(f"fer_node did not start within {START_TIMEOUT_S:.0f} s:\n{node.output}")
        yield node, client
    finally:
        if client is not None:
            client.node.destroy_node()
        rclpy.try_shutdown()
        node.stop(9)
