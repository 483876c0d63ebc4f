"""fer_node in a subprocess, driven from this process over ROS 2: real faces in, /emotion out.

One node serves the tests of this module (starting one costs several seconds on a small CPU). test_node_faces.py
starts a node of its own for each of its tests: several faces and a stop on SIGTERM, a stop on SIGINT under load.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")

from sensor_msgs.msg import CompressedImage  # noqa: E402

from fer_msgs.srv import CaptureNeutral  # noqa: E402

from node_helpers import NodeProcess, box_center_inside, image_msg, ready, running_node, stamp_ns  # noqa: E402
from node_model import model_for_tests  # noqa: E402
from ros_helpers import isolated_ros_env  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return model_for_tests(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def fer(model_dir):
    """(node process, client) sharing a private ROS domain."""
    with running_node(["-p", f"model_path:={model_dir.path}", "-p", "subscribe_compressed:=true",
                       "-p", "diagnostics_period_s:=0.5", "-p", "min_face_size_px:=20"]) as pair:
        yield pair


def test_one_real_face(fer, face_frame, model_dir):
    node, client = fer
    frame, regions = face_frame
    msg = client.send_until(frame, ready, timeout_s=30.0)
    assert msg is not None, f"no /emotion with a ready face; node said:\n{node.output}"
    assert msg.header.frame_id == "test_camera"
    assert len(msg.faces) == 1
    face = msg.faces[0]
    assert box_center_inside(face.box, regions[0]), (face.box, regions[0])
    assert 40 <= face.box.width <= regions[0][2] - regions[0][0] + 20
    assert list(face.class_names) == list(model_dir.class_names)
    assert len(face.scores) == len(face.class_names)
    assert sum(face.scores) == pytest.approx(1.0, abs=1e-4)
    assert face.label == face.class_names[int(np.argmax(face.scores))]
    assert face.confidence == pytest.approx(max(face.scores), abs=1e-5)
    assert len(face.landmarks) == 68
    xs = [p.x for p in face.landmarks]
    assert regions[0][0] <= min(xs) and max(xs) <= regions[0][2]
    assert face.window_frames >= 1
    # The id stays the same for the same face.
    later = client.send_until(frame, ready, timeout_s=10.0)
    assert later is not None and later.faces[0].face_id == face.face_id
    assert later.faces[0].track_age_s >= face.track_age_s
    if model_dir.shipped:  # the shipped model on a still, smiling face
        assert later.faces[0].label == "happy", list(zip(later.faces[0].class_names, later.faces[0].scores))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "yuv422", "yuv422_yuy2"])
def test_every_colour_encoding_finds_the_face(fer, face_frame, encoding):
    node, client = fer
    frame, regions = face_frame
    msg = client.send_until(frame, lambda m: len(m.faces) == 1, timeout_s=10.0, encoding=encoding)
    assert msg is not None, f"no face found in a {encoding} frame; node said:\n{node.output[-3000:]}"
    assert box_center_inside(msg.faces[0].box, regions[0])


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "16UC1"])
def test_mono_encodings_are_processed(fer, face_frame, encoding):
    # The landmarker may or may not find a face in a gray frame; what matters here is that the frame is decoded
    # and answered, not rejected. (test_image_codec checks the pixels of every encoding.)
    node, client = fer
    frame, regions = face_frame
    rejected = sum("rejected image" in line for line in node.lines[:])
    msg = client.send_until(frame, lambda m: True, timeout_s=10.0, encoding=encoding)
    assert msg is not None, f"a {encoding} frame was not answered; node said:\n{node.output[-3000:]}"
    assert sum("rejected image" in line for line in node.lines[:]) == rejected
    for face in msg.faces:
        assert box_center_inside(face.box, regions[0])


def test_compressed_image(fer, face_frame):
    import cv2
    node, client = fer
    frame, regions = face_frame
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format="jpeg")
    msg.data = jpg.tobytes()
    msg.header.frame_id = "compressed_camera"
    deadline = time.monotonic() + 10.0
    got = None
    while got is None and time.monotonic() < deadline:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(client.stamp(), 1_000_000_000)
        client.compressed_pub.publish(msg)
        client.spin_for(0.1)
        got = next((m for m in client.emotions if m.header.frame_id == "compressed_camera" and m.faces), None)
    assert got is not None, node.output[-3000:]
    assert box_center_inside(got.faces[0].box, regions[0])


def test_malformed_input_is_rejected_and_the_node_keeps_running(fer, face_frame):
    import cv2
    from fer_ros.ros.malformed import bad_images, to_message
    node, client = fer
    frame, regions = face_frame
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    bad = bad_images(jpg.tobytes())
    before = len(node.lines)
    rss_before = node.rss_mib()
    node.reset_peak_rss()
    for item in bad:
        msg = to_message(item)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(client.stamp(), 1_000_000_000)
        (client.image_pub if item.compressed_format is None else client.compressed_pub).publish(msg)
        client.spin_for(0.3)  # one at a time, so none is replaced before it is looked at
    msg = client.send_until(frame, lambda m: len(m.faces) == 1, timeout_s=10.0)
    assert msg is not None and node.proc.poll() is None, node.output[-3000:]
    said = node.lines[before:]
    warnings = [line for line in said if "rejected image" in line]
    # One line per cause within the rate limit's period: a repeated cause is held back, a new one is not.
    assert len(warnings) == len({item.cause for item in bad}), "one warning per cause:\n" + "\n".join(warnings)
    assert any("larger than" in w and "max_image_pixels" in w for w in warnings), warnings
    assert any("libpng error" in w for w in warnings), "the decoder's own words belong in the warning"
    assert not [line for line in said if "libpng" in line and "rejected image" not in line], said
    assert "Traceback" not in node.output
    assert node.peak_rss_mib() - rss_before < 300.0, "a refused image must not allocate what it declares"
    client.spin_for(1.2)  # a diagnostics period
    values = {kv.key: kv.value for kv in client.diagnostics[-1].status[0].values}
    assert int(values["frames_rejected"]) == len(bad)


def test_capture_neutral_service(fer, face_frame):
    node, client = fer
    frame, _ = face_frame
    msg = client.send_until(frame, lambda m: len(m.faces) == 1, timeout_s=10.0)
    assert msg is not None
    assert client.capture.wait_for_service(timeout_sec=5.0)
    face_id = msg.faces[0].face_id
    future = client.capture.call_async(CaptureNeutral.Request(face_ids=[face_id, 9999]))
    rclpy.spin_until_future_complete(client.node, future, timeout_sec=10.0)
    res = future.result()
    assert res is not None and res.success and list(res.captured) == [face_id]
    assert "9999" in res.message
    after = client.send_until(frame, lambda m: len(m.faces) == 1 and m.faces[0].has_neutral_reference,
                              timeout_s=10.0)
    assert after is not None and after.faces[0].face_id == face_id


def _set_param(client, name, value):
    from rcl_interfaces.msg import Parameter, ParameterValue, ParameterType
    from rcl_interfaces.srv import SetParameters
    cli = client.node.create_client(SetParameters, "/fer_node/set_parameters")
    assert cli.wait_for_service(timeout_sec=5.0)
    if isinstance(value, bool):
        pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
    future = cli.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=pv)]))
    rclpy.spin_until_future_complete(client.node, future, timeout_sec=10.0)
    client.node.destroy_client(cli)
    return future.result().results[0]


def test_parameters_at_run_time_and_debug_image(fer, face_frame):
    node, client = fer
    assert not _set_param(client, "smoothing_time_constant_s", -1.0).successful
    assert _set_param(client, "smoothing_time_constant_s", 0.5).successful
    assert _set_param(client, "publish_debug_image", True).successful
    frame, _ = face_frame
    deadline = time.monotonic() + 10.0
    while not client.debug_images and time.monotonic() < deadline:
        client.send(frame)
        client.spin_for(0.1)
    assert client.debug_images, node.output[-3000:]
    img = client.debug_images[-1]
    assert (img.height, img.width, img.encoding) == (480, 640, "rgb8")
    drawn = np.frombuffer(bytes(img.data), np.uint8).reshape(480, 640, 3)
    assert not np.array_equal(drawn, frame)  # boxes and labels are drawn
    assert _set_param(client, "publish_debug_image", False).successful
    assert _set_param(client, "smoothing_time_constant_s", 0.0).successful


def test_frame_flood_keeps_the_node_current_with_bounded_memory(fer, face_frame):
    node, client = fer
    frame, _ = face_frame
    assert client.send_until(frame, ready, timeout_s=10.0) is not None
    rss_before = node.rss_mib()
    node.reset_peak_rss()
    first = len(client.emotions)
    msgs = [image_msg(frame, client.stamp()) for _ in range(200)]
    t0 = time.monotonic()
    for m in msgs:  # as fast as this process can publish
        client.image_pub.publish(m)
    flood_s = time.monotonic() - t0
    last_ns = stamp_ns(msgs[-1].header.stamp)
    deadline = time.monotonic() + 15.0
    while client.answered(last_ns) is None and time.monotonic() < deadline:
        client.image_pub.publish(msgs[-1])  # best-effort delivery may lose the last one: repeat it
        client.spin_for(0.2)
    assert client.answered(last_ns) is not None, "the newest frame was never processed"
    answers = [stamp_ns(m.header.stamp) for m in client.emotions[first:]]
    flood = {stamp_ns(m.header.stamp) for m in msgs}
    answered_flood = [ns for ns in answers if ns in flood]
    assert answered_flood == sorted(answered_flood), "answers went back in time"
    assert len(set(answered_flood)) < 150, f"{len(set(answered_flood))} of 200 frames processed in {flood_s:.2f} s"
    rss_after = node.rss_mib()
    assert rss_after - rss_before < 100.0, (rss_before, rss_after)
    client.spin_for(1.2)
    values = {kv.key: kv.value for kv in client.diagnostics[-1].status[0].values}
    assert int(values["frames_dropped"]) > 0


def _start_refused(param: str) -> str:
    """The one line a node started with `-p param` prints before it exits with code 2."""
    return _start_refused_with(["-p", param])


def _start_refused_with(ros_args: list[str]) -> str:
    """The one line a node started with `--ros-args *ros_args` prints before it exits with code 2."""
    node = NodeProcess(ros_args)
    try:
        node.proc.wait(timeout=30.0)
    finally:
        code, out = node.stop(signal.SIGKILL)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 2, out
    assert len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


def test_missing_model_exits_with_one_clear_line(tmp_path):
    missing = tmp_path / "no_such_model"
    line = _start_refused(f"model_path:={missing}")
    assert str(missing) in line and "model_path" in line


@pytest.mark.parametrize("param, words", [("max_rate_hz:=5", ["max_rate_hz", "5.0"]),
                                          ("output_topic:=1emo", ["output_topic", "'1emo'"])])
def test_a_bad_parameter_exits_with_one_clear_line(param, words):
    line = _start_refused(param)
    assert line.startswith("fer_node: bad parameter: ") and all(w in line for w in words), line


@pytest.mark.parametrize("ros_args, words", [
    (["-p", "max_faces=3"], ["'-p max_faces=3'", "-p name:=value"]),          # = for :=
    (["--log-level", "warning"], ["'--log-level warning'", "debug|info|warn|error|fatal"]),
    (["--params-file", "/no/such/fer.yaml"], ["/no/such/fer.yaml", "a file that exists"]),
    (["--no-such-flag"], ["--no-such-flag"]),
    (["-r", "image:=1bad"], ["'-r image:=1bad'", "'1bad' is not a valid topic name", "must not start with a number"]),
])
def test_bad_ros_arguments_exit_with_one_clear_line(ros_args, words):
    line = _start_refused_with(ros_args)
    assert line.startswith("fer_node: bad ROS arguments: ") and all(w in line for w in words), line


def _run_node_command(*args: str) -> subprocess.CompletedProcess:
    """`python -m fer_ros.ros.node *args`, to its end (it must not start a node)."""
    return subprocess.run([sys.executable, "-m", "fer_ros.ros.node", *args], env=isolated_ros_env(),
                          capture_output=True, text=True, timeout=60.0)


def test_help_prints_the_usage_and_every_parameter_and_exits_0():
    from fer_ros.ros.params import DESCRIPTIONS
    done = _run_node_command("--help")
    assert done.returncode == 0 and done.stderr == "", done
    assert done.stdout.startswith("usage: ") and "--ros-args" in done.stdout and "-p name:=value" in done.stdout
    assert all(f"  {name} " in done.stdout for name in DESCRIPTIONS), done.stdout
    assert _run_node_command("-h", "--ros-args", "-p", "max_faces:=2").returncode == 0


def test_an_option_is_refused_with_one_line():
    done = _run_node_command("--backend", "torch", "--ros-args", "-p", "max_faces:=2")
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.splitlines() == ["fer_node takes no options (got --backend torch): set parameters with "
                                        "--ros-args -p name:=value; fer_node --help lists them"], done.stderr
