"""Measure a running fer_node: processed frame rate and end-to-end latency (image stamp -> /emotion receipt).

Publishes 640x480 frames with real faces (scikit-image's astronaut) at a fixed rate, stamped with the publish time,
and listens on /emotion: latency = receipt time - header.stamp of the image the message answers, in ms.

    python -m fer_ros.ros.latency_probe --start-node --duration-s 20          # starts fer_node itself
    python -m fer_ros.ros.latency_probe --image-topic /camera/image_raw      # against a node already running

Ctrl-C or SIGTERM stops the probe (and the node it started) with exit code 130. A node that exits, or gives no
answer to the frames sent while measuring, is a failure (exit code 1) that names the node's exit code and, for a
node the probe started, its output file; that file is removed after a run that measured. With --node-pid-file the
started node's pid is in that file while the node may run (fer-bench stops a node whose probe it had to kill).
"""
from __future__ import annotations

import argparse
import os
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fer_ros import strict_json
from fer_ros.argtypes import HelpFormatter, number, parse_args
from fer_ros.processes import stop_process, write_pid_file
from fer_ros.ros.params import FerParams


NODE_STOP_WAIT_S = 10.0  # how long a stopped fer_node gets to end before SIGKILL


@dataclass
class ProbeResult:
    """What the probe measured (rates in Hz, latencies in ms)."""

    sent: int
    answered: int
    duration_s: float
    publish_rate_hz: float
    emotion_rate_hz: float
    latency_ms_median: float
    latency_ms_p90: float
    latency_ms_p95: float
    latency_ms_max: float
    faces_per_frame: float
    ready_fraction: float


def ros_args_text(text: str) -> str:
    """An argparse type: `text` if shlex.split can split it (as start_node does), else ArgumentTypeError."""
    try:
        shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot be split as a shell would ({exc}), got {text!r}") from None
    return text


def get_args_parser() -> argparse.ArgumentParser:
    seconds = number(low=0.0, low_open=True, finite=True, says="a positive number of seconds")
    p = argparse.ArgumentParser(prog="python -m fer_ros.ros.latency_probe", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--image-topic", default="image",
                   help="topic fer_node reads (its `image`; relative names are in the root namespace)")
    p.add_argument("--emotion-topic", default=FerParams().output_topic,
                   help="topic fer_node publishes, named as its output_topic (relative: in the root namespace)")
    p.add_argument("--rate-hz", type=number(low=0.0, low_open=True, finite=True, says="a positive rate"),
                   default=30.0, help="frames published per second")
    p.add_argument("--duration-s", type=seconds, default=15.0, help="how long to measure, after warm-up")
    p.add_argument("--warmup-s", type=number(low=0.0, finite=True, says="a number of seconds >= 0"), default=3.0,
                   help="frames sent before measuring (windows fill)")
    p.add_argument("--faces", type=number(int, low=1, high=5, says="1 to 5"), default=1, help="faces per frame")
    p.add_argument("--encoding", default="bgr8", help="Image encoding to publish")
    p.add_argument("--start-node", action="store_true",
                   help="start fer_node (python -m fer_ros.ros.node) in a private ROS domain, stop it at the end")
    p.add_argument("--node-args", type=ros_args_text, default="",
                   help="extra --ros-args for the started node, e.g. '-p backend:=torch', split as a shell would "
                        "(quote a value with spaces: -p model_path:='my models/m'); default: none")
    p.add_argument("--node-pid-file", type=Path, default=None,
                   help="with --start-node: write the node's pid (it leads a process group) here, removed once the "
                        "node has stopped; default: none")
    p.add_argument("--startup-timeout-s", type=seconds, default=120.0, help="wait this long for the started node")
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here; default: only print it")
    return p


def face_frame(faces: int = 1) -> np.ndarray:
    """A 640x480 frame with `faces` (1 to 5) copies of the astronaut's head (230 px, smaller where that many do
    not fit), side by side on gray."""
    import cv2
    from skimage import data
    side = min(230, (640 - 10 * (faces + 1)) // faces)
    head = cv2.resize(data.astronaut()[0:256, 96:352], (side, side), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 110, np.uint8)
    gap = (640 - faces * side) // (faces + 1)
    for i in range(faces):
        x0 = gap + i * (side + gap)
        frame[240 - side // 2:240 - side // 2 + side, x0:x0 + side] = head
    return frame


def start_node(image_topic: str, emotion_topic: str, node_args: str = "") -> subprocess.Popen:
    """fer_node (python -m fer_ros.ros.node) in its own process group and a private ROS domain, which this
    process joins too (before rclpy.init), with the --ros-args `node_args` split as a shell would (shlex.split: a
    quoted value keeps its spaces); its output goes to a file, `proc.log_path`."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(random.randint(1, 200))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    cmd = [sys.executable, "-m", "fer_ros.ros.node", "--ros-args", "-r", f"image:={image_topic}",
           "-p", f"output_topic:={emotion_topic}", *shlex.split(node_args)]
    log = tempfile.NamedTemporaryFile("w+", prefix="fer_node_", suffix=".log", delete=False)
    try:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    except BaseException:
        log.close()
        os.unlink(log.name)
        raise
    log.close()  # the node writes through its own descriptor
    proc.log_path = log.name
    return proc


def node_exit_message(proc: subprocess.Popen) -> str:
    """"fer_node exited with code N: <the last line of its output>" for a node that has exited."""
    try:
        tail = Path(proc.log_path).read_text(errors="replace").strip().splitlines()[-1:] or [""]
    except OSError:
        tail = [""]
    return f"fer_node exited with code {proc.returncode}: {tail[0]}"


def stop_node(proc: subprocess.Popen, say_output: bool = True) -> None:
    """SIGINT to the node's process group (SIGKILL after NODE_STOP_WAIT_S); with `say_output`, says where its
    output is."""
    if proc.poll() is None:
        if say_output:
            print(f"fer_node output: {proc.log_path}", file=sys.stderr)
        stop_process(proc, NODE_STOP_WAIT_S)


def wait_for_answer(node, send, emotion_topic: str, timeout_s: float,
                    node_proc: subprocess.Popen | None = None, stop: threading.Event | None = None) -> None:
    """Call send() every 0.2 s, spinning rclpy `node`, until fer_node answers on `emotion_topic` (it has loaded
    its model). TimeoutError after `timeout_s`; RuntimeError with its last line when `node_proc` exits first;
    KeyboardInterrupt when `stop` is set first."""
    import rclpy

    from fer_msgs.msg import FaceEmotionArray
    deadline = time.monotonic() + timeout_s
    got_first: list = []
    first_sub = node.create_subscription(FaceEmotionArray, emotion_topic, got_first.append, 10)
    try:
        while not got_first:
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            if node_proc is not None and node_proc.poll() is not None:
                raise RuntimeError(node_exit_message(node_proc))
            if time.monotonic() > deadline:
                raise TimeoutError(f"no message on {emotion_topic} within {timeout_s:.0f} s")
            send()
            rclpy.spin_once(node, timeout_sec=0.2)
    finally:
        node.destroy_subscription(first_sub)


def probe(args, node_proc: subprocess.Popen | None = None, stop: threading.Event | None = None) -> ProbeResult:
    """Run the measurement with rclpy (rclpy.init() must not have been called). `node_proc`: the fer_node this
    probe started, if any: RuntimeError with its exit code as soon as it exits. RuntimeError too when no answer to
    a frame sent while measuring comes back. Only answers to those frames count, each once: an answer to a warm-up
    frame or to an image another publisher sent on the same topic (a camera beside the probe) is left out. `stop`: set by the StopSignals in force (rclpy's own signal handlers
    are then not installed); KeyboardInterrupt once it is set, at any stage."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image
    from tqdm import tqdm

    from fer_msgs.msg import FaceEmotionArray
    from fer_ros.image_codec import encode_rgb8

    raw = encode_rgb8(face_frame(args.faces), args.encoding)
    rclpy.init(signal_handler_options=SignalHandlerOptions.ALL if stop is None else SignalHandlerOptions.NO)
    stop = stop if stop is not None else threading.Event()
    node = rclpy.create_node("fer_latency_probe")
    try:
        latencies, faces, ready, answered = [], [], [], 0
        measured_ns: set[int] = set()  # the stamps of the frames sent while measuring, not yet answered

        def emotion_callback(msg) -> None:
            nonlocal answered
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            if stamp_ns not in measured_ns:
                return  # an answer to a warm-up frame, to another publisher's image, or one already counted
            measured_ns.discard(stamp_ns)
            now_ns = node.get_clock().now().nanoseconds
            answered += 1
            latencies.append((now_ns - stamp_ns) * 1e-6)
            faces.append(len(msg.faces))
            ready.append(sum(f.window_ready for f in msg.faces))

        node.create_subscription(FaceEmotionArray, args.emotion_topic, emotion_callback, 50)
        pub = node.create_publisher(Image, args.image_topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        msg = Image(height=raw.height, width=raw.width, encoding=raw.encoding, is_bigendian=raw.is_bigendian,
                    step=raw.step)
        msg.data = raw.data
        msg.header.frame_id = "latency_probe"

        def send() -> int:
            now = node.get_clock().now()
            msg.header.stamp = now.to_msg()
            pub.publish(msg)
            return now.nanoseconds

        def check() -> None:
            """KeyboardInterrupt once a stop is requested; RuntimeError once the started node has exited."""
            if stop.is_set():
                raise KeyboardInterrupt
            if node_proc is not None and node_proc.poll() is not None:
                raise RuntimeError(node_exit_message(node_proc))

        period = 1.0 / args.rate_hz
        wait_for_answer(node, send, args.emotion_topic, args.startup_timeout_s, node_proc, stop)
        t_end = time.monotonic() + args.warmup_s
        while time.monotonic() < t_end:
            check()
            send()
            rclpy.spin_once(node, timeout_sec=period)
        sent = 0
        t0 = time.monotonic()
        next_t = t0
        total = max(1, int(args.duration_s * args.rate_hz))
        with tqdm(total=total, desc="probing", unit="frame") as bar:
            for _ in range(total):
                check()
                measured_ns.add(send())
                sent += 1
                bar.update(1)
                next_t += period
                while True:
                    left = next_t - time.monotonic()
                    if left <= 0:
                        break
                    rclpy.spin_once(node, timeout_sec=left)
        elapsed = time.monotonic() - t0
        t_end = time.monotonic() + 1.0  # the answers to the last frames
        while time.monotonic() < t_end:
            check()
            rclpy.spin_once(node, timeout_sec=0.05)
        if not answered:
            raise RuntimeError(f"no answer on {args.emotion_topic} to the {sent} frames sent in {elapsed:.1f} s of "
                               "measuring")
        lat = np.array(latencies)
        return ProbeResult(
            sent=sent, answered=answered, duration_s=round(elapsed, 3), publish_rate_hz=round(sent / elapsed, 2),
            emotion_rate_hz=round(answered / elapsed, 2), latency_ms_median=round(float(np.median(lat)), 1),
            latency_ms_p90=round(float(np.percentile(lat, 90)), 1),
            latency_ms_p95=round(float(np.percentile(lat, 95)), 1), latency_ms_max=round(float(lat.max()), 1),
            faces_per_frame=round(float(np.mean(faces)) if faces else 0.0, 2),
            ready_fraction=round(float(np.sum(ready)) / max(1, float(np.sum(faces))), 3))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def main(argv=None) -> int:
    args = parse_args(get_args_parser(), argv, "latency_probe: error")
    if args is None:
        return 2
    from fer_ros.ros.spin import StopSignals
    with StopSignals() as stop:
        proc = start_node(args.image_topic, args.emotion_topic, args.node_args) if args.start_node else None
        result = None
        try:
            if proc is not None and args.node_pid_file is not None:
                write_pid_file(args.node_pid_file, proc.pid)
            result = probe(args, proc, stop.requested)
        except TimeoutError as exc:
            failure, code = f"{exc}; is fer_node running and reading {args.image_topic}?", 1
        except RuntimeError as exc:
            failure, code = str(exc), 1
        except KeyboardInterrupt:
            failure, code = "interrupted: nothing measured", 130
        finally:
            stop.starting = False  # from here on a signal only repeats the request
            if proc is not None:
                stop_node(proc, say_output=False)
                if args.node_pid_file is not None:
                    args.node_pid_file.unlink(missing_ok=True)
    if result is None:
        if proc is not None:  # kept: what the node said is what tells why
            if code == 130:
                print(f"fer_node output: {proc.log_path}", file=sys.stderr)
            else:
                failure += f"; fer_node output: {proc.log_path}"
        print(f"latency_probe: {failure}", file=sys.stderr)
        return code
    if proc is not None:
        Path(proc.log_path).unlink(missing_ok=True)
    text = strict_json.dumps(asdict(result), indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
