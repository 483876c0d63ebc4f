"""The node's building blocks without a running node: smoothing, FaceResult -> fer_msgs, REP-155 helpers,
parameters, the latest-frame slot, diagnostics, the debug drawing, and the launch file's and the node's checks of
their arguments."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fer_ros.annotate import draw_results, face_caption
from fer_ros.smoothing import ProbabilitySmoother

CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise", "neutral")


@dataclass
class _Result:
    """The FaceResult fields the ROS shell reads (see docs/architecture.md)."""

    id: int
    box: tuple
    points68: np.ndarray
    window_frames: int
    window_ready: bool
    has_neutral: bool
    probs: np.ndarray | None
    label: str
    confidence: float
    class_names: tuple
    track_age_s: float


def _result(face_id=3, ready=True, box=(100.4, 50.6, 180.2, 150.0)) -> _Result:
    probs = np.full(8, 0.05, np.float32)
    probs[4] = 0.65
    pts = np.stack([np.linspace(box[0], box[2], 68), np.linspace(box[1], box[3], 68)], 1).astype(np.float32)
    return _Result(face_id, box, pts, 3 if ready else 1, ready, ready, probs if ready else None,
                   "happy" if ready else "", 0.65 if ready else 0.0, CLASSES, 2.5)


# --- smoothing ---------------------------------------------------------------------------------------------------
def test_smoothing_off_returns_input():
    s = ProbabilitySmoother(0.0)
    p = np.array([0.2, 0.8], np.float32)
    np.testing.assert_array_equal(s.update(1, p, 0.0), p)
    assert len(s) == 0


def test_smoothing_follows_the_time_constant():
    s = ProbabilitySmoother(1.0)
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    np.testing.assert_array_equal(s.update(7, a, 10.0), a)
    out = s.update(7, b, 11.0)  # one time constant later: 1 - 1/e of the way
    np.testing.assert_allclose(out, [np.exp(-1.0), 1 - np.exp(-1.0)], rtol=1e-5)
    assert out.sum() == pytest.approx(1.0, abs=1e-6)
    # Same step at twice the frame rate gives the same result after the same time.
    s2 = ProbabilitySmoother(1.0)
    s2.update(7, a, 10.0)
    s2.update(7, b, 10.5)
    np.testing.assert_allclose(s2.update(7, b, 11.0), out, rtol=1e-5)


def test_smoothing_restarts_and_forgets():
    s = ProbabilitySmoother(0.5)
    s.update(1, np.array([1.0, 0.0]), 5.0)
    s.update(2, np.array([1.0, 0.0]), 5.0)
    np.testing.assert_array_equal(s.update(1, np.array([0.0, 1.0]), 4.0), [0.0, 1.0])  # time went back
    s.retain([2])
    assert len(s) == 1
    s.update(3, np.array([1.0, 0.0]), 5.0)
    s.forget_stale(5.0 + 10 * 0.5)  # ten time constants unseen: kept
    assert len(s) == 2
    s.update(3, np.array([1.0, 0.0]), 6.0)
    s.forget_stale(5.0 + 20 * 0.5 + 0.01)  # face 2: twenty; face 3 a little less
    assert len(s) == 1
    s.forget_stale(1.0)  # time went back: every average would restart
    assert len(s) == 0
    with pytest.raises(ValueError, match="time constant"):
        s.set_time_constant(-1.0)


# --- FaceResult -> fer_msgs ------------------------------------------------------------------------------------------
rclpy = pytest.importorskip("rclpy", reason="rclpy is needed for the message conversions")


def test_face_emotion_from_a_ready_result():
    from fer_ros.ros.convert import face_emotion
    msg = face_emotion(_result(), 640, 480)
    assert msg.face_id == 3 and msg.label == "happy" and msg.window_ready and msg.has_neutral_reference
    assert list(msg.class_names) == list(CLASSES)
    assert len(msg.scores) == 8 and sum(msg.scores) == pytest.approx(1.0, abs=1e-5)
    assert msg.confidence == pytest.approx(0.65)
    assert (msg.box.x_offset, msg.box.y_offset, msg.box.width, msg.box.height) == (100, 50, 81, 100)
    assert len(msg.landmarks) == 68 and msg.landmarks[0].x == pytest.approx(100.4, abs=1e-3)
    assert msg.landmarks[-1].z == 0.0 and msg.window_frames == 3 and msg.track_age_s == pytest.approx(2.5)


def test_face_emotion_while_warming_up_and_box_clipping():
    from fer_ros.ros.convert import face_emotion
    msg = face_emotion(_result(ready=False, box=(-20.0, 400.0, 50.0, 520.0)), 640, 480)
    assert not msg.window_ready and msg.label == "" and len(msg.scores) == 0 and msg.confidence == 0.0
    assert len(msg.class_names) == 8 and msg.window_frames == 1
    assert (msg.box.x_offset, msg.box.y_offset, msg.box.width, msg.box.height) == (0, 400, 50, 80)


def test_face_emotion_array_sorts_and_copies_header():
    from std_msgs.msg import Header
    from fer_ros.ros.convert import face_emotion_array, stamp_to_s
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 500_000_000
    out = face_emotion_array(header, [_result(9), _result(2)], 640, 480)
    assert [f.face_id for f in out.faces] == [2, 9]
    assert out.header.frame_id == "cam" and stamp_to_s(out.header.stamp) == pytest.approx(12.5)


def test_mismatched_scores_are_refused():
    from fer_ros.ros.convert import face_emotion
    r = _result()
    r.probs = np.ones(3, np.float32) / 3
    with pytest.raises(ValueError, match="3 scores for 8 class names"):
        face_emotion(r, 640, 480)


# --- REP-155 helpers ---------------------------------------------------------------------------------------------------
def test_rep155_mapping_and_valence_arousal():
    from fer_ros.ros.rep155 import EXPRESSION_LABEL, face_rep155_id, valence_arousal
    assert set(EXPRESSION_LABEL) == set(CLASSES)
    assert face_rep155_id(12) == "face12"
    onehot = np.eye(8)[CLASSES.index("happy")]
    assert valence_arousal(CLASSES, onehot)[0] > 0.5
    assert valence_arousal(CLASSES, np.eye(8)[CLASSES.index("sadness")])[0] < -0.5
    assert valence_arousal(CLASSES, np.eye(8)[CLASSES.index("neutral")]) == (0.0, 0.0)
    v, a = valence_arousal(CLASSES, np.full(8, 1 / 8))
    assert -1 <= v <= 1 and -1 <= a <= 1


def test_rep155_ids_of_two_nodes_differ():
    from fer_ros.ros.rep155 import face_rep155_id, rep155_id_prefix
    assert rep155_id_prefix("/fer_node") == "fer_node_2cd9502b_"
    assert rep155_id_prefix("/cam1/fer_node") == "cam1_fer_node_9c2455a2_"
    assert rep155_id_prefix("/robot/front/fer_node").startswith("robot_front_fer_node_")
    # names whose tokens join alike: the checksum keeps their ids apart
    nodes = ["/fer_node", "/cam1/fer_node", "/cam2/fer_node", "/cam1/fer_node_b", "/front/left/fer_node",
             "/front_left/fer_node", "/robot1/front/fer_node", "/robot1_front/fer_node", "/robot1/front_fer_node"]
    ids = [face_rep155_id(i, rep155_id_prefix(n)) for n in nodes for i in (1, 2, 12)]
    assert len(set(ids)) == len(ids)
    assert face_rep155_id(3, rep155_id_prefix("/cam1/fer_node")) == "cam1_fer_node_9c2455a2_face3"
    name_token = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # what a ROS topic name token may be
    assert all(name_token.match(i) and "__" not in i for i in ids)


def test_rep155_without_hri_msgs_is_none(monkeypatch):
    import sys
    from fer_ros.ros.rep155 import Rep155Publisher, import_hri_msgs
    monkeypatch.setitem(sys.modules, "hri_msgs", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "hri_msgs.msg", None)
    assert import_hri_msgs() is None
    assert Rep155Publisher.create(object()) is None  # the node says why (HRI_MSGS_MISSING)


# --- parameters --------------------------------------------------------------------------------------------------------
def test_parameter_checks():
    from fer_ros.ros.params import DESCRIPTIONS, FerParams, check
    from dataclasses import fields
    assert {f.name for f in fields(FerParams)} == set(DESCRIPTIONS)
    for f in fields(FerParams):
        assert check(f.name, getattr(FerParams(), f.name)) is None, f.name
    assert "one of" in check("backend", "tensorflow")
    assert "cuda" in check("device", "gpu0")
    assert check("device", "cuda:1") is None
    assert "finite" in check("smoothing_time_constant_s", float("nan"))


def test_a_face_timeout_of_0_is_refused_saying_what_it_means():
    """The parameter's range starts at 0 (ROS ranges are closed), but 0 drops every face before it is matched."""
    from fer_ros.ros.params import check
    problem = check("face_timeout_s", 0.0)
    assert problem is not None and problem.startswith("parameter face_timeout_s must be a number of seconds above 0")
    assert "a face unseen for longer than this is dropped" in problem and "\n" not in problem
    assert check("face_timeout_s", 0.05) is None


def test_output_topic_must_be_a_valid_topic_name():
    from fer_ros.ros.params import check
    for topic in ("emotion", "/cam1/emotion", "~/emotion", "{node}/emotion", "emotion_2"):
        assert check("output_topic", topic) is None, topic
    for topic, reason in [("bad topic", "must not contain characters"), ("1emo", "must not start with a number"),
                          ("cam/2nd", "must not start with a number"), ("emotion/", "must not end with a forward"),
                          ("a//b", "repeated"), ("{camera}/emotion", "unknown substitution")]:
        problem = check("output_topic", topic)
        assert problem is not None and reason in problem and repr(topic) in problem, (topic, problem)
        assert problem.startswith("parameter output_topic is not a valid topic name")
        assert " at /" not in problem  # rcl's source location is left out


def test_a_parameter_the_node_does_not_have_is_named_with_the_closest_one():
    from fer_ros.ros.params import unknown_parameters
    assert unknown_parameters(["max_faces", "use_sim_time", "qos_overrides./emotion.publisher.depth",
                               "start_type_description_service"]) is None
    line = unknown_parameters(["max_face", "max_faces"])
    assert line.startswith("ignored parameter max_face (did you mean max_faces?): fer_node has no such parameter")
    assert "--help" in line and "\n" not in line
    line = unknown_parameters(["use_sim_tme", "zzz", "own_param"], declared=["own_param"])
    assert "parameters use_sim_tme (did you mean use_sim_time?), zzz: " in line and "own_param" not in line


def test_the_help_lists_every_parameter_with_its_default():
    from fer_ros.ros.params import DESCRIPTIONS, help_text
    text = help_text()
    for needed in ("--ros-args", "-p name:=value", "--params-file", "-r image:=", "use_sim_time"):
        assert needed in text, needed
    rows = {line.split()[0]: line.split()[1] for line in text.splitlines()
            if line.startswith("  ") and line.split()[0] in DESCRIPTIONS}
    assert set(rows) == set(DESCRIPTIONS)
    assert (rows["max_faces"], rows["backend"], rows["overlap_stages"], rows["max_rate_hz"]) == (
        "4", '"auto"', "true", "0.0")
    assert "min_face_size_px           40 (run time)" in text and "max_faces                  4\n" in text


def test_config_yaml_matches_the_declared_defaults():
    import yaml
    from pathlib import Path
    from dataclasses import asdict
    from fer_ros.ros.params import FerParams
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "fer.yaml").read_text())
    assert cfg["/**"]["ros__parameters"] == asdict(FerParams())


# --- the latest-frame slot -----------------------------------------------------------------------------------------------
def test_latest_frame_keeps_only_the_newest():
    from fer_ros.slots import LatestFrame
    slot = LatestFrame()
    drops = [slot.put(i) for i in range(200)]
    assert drops.count(True) == 199
    assert slot.take(0.0) == 199 and slot.take(0.0) is None


def test_latest_frame_wakes_a_waiting_worker():
    from fer_ros.slots import LatestFrame
    slot = LatestFrame()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(30.0)))
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    slot.put("frame")
    t.join(30.0)
    assert got == ["frame"] and time.monotonic() - t0 < 15.0  # woken by the put, not by the timeout


# --- diagnostics and drawing -------------------------------------------------------------------------------------------
def test_diagnostics_message():
    from diagnostic_msgs.msg import DiagnosticStatus
    from fer_ros.ros.stats import FrameStats, Period, diagnostics_msg
    st = FrameStats()
    for _ in range(3):
        st.add_received()
    msg = diagnostics_msg(st, st.take_period(), _zero_time(), "/cam1/fer_node", "onnxruntime")
    assert msg.status[0].level == DiagnosticStatus.WARN and "none was processed" in msg.status[0].message
    assert msg.status[0].name.startswith("/cam1/fer_node: ")
    st.add_received()
    st.add_dropped()
    st.add_processed(2, 40.0, 30.0)
    msg = diagnostics_msg(st, Period(1.0 / 15, received=1, processed=1), _zero_time(), "fer_node", "onnxruntime")
    values = {kv.key: kv.value for kv in msg.status[0].values}
    assert msg.status[0].level == DiagnosticStatus.OK
    assert values["frames_dropped"] == "1" and values["faces"] == "2" and values["backend"] == "onnxruntime"
    assert values["frame_rate_hz"] == "15.00" and values["latency_ms"] == "40.0"
    assert values["frames_received"] == "4" and values["frames_failed"] == "0" and values["frames_duplicate"] == "0"


def _diagnosed(st, period=None, max_rate_hz: float = 0.0):
    from fer_ros.ros.stats import diagnostics_msg
    status = diagnostics_msg(st, period or st.take_period(), _zero_time(), "fer_node", "onnxruntime",
                             max_rate_hz).status[0]
    return status.level, status.message, {kv.key: kv.value for kv in status.values}


def test_diagnostics_judge_the_last_period_not_the_start():
    """After frames were processed, a period in which every image is rejected, every frame fails or no image
    arrives is no longer OK; the values stay the totals."""
    from diagnostic_msgs.msg import DiagnosticStatus
    from fer_ros.ros.stats import FrameStats
    st = FrameStats()
    for _ in range(10):
        st.add_received()
        st.add_processed(1, 40.0, 30.0)
    level, _, _ = _diagnosed(st)
    assert level == DiagnosticStatus.OK  # a healthy period
    for _ in range(10):  # the driver switched to an encoding the node does not read
        st.add_received()
        st.add_rejected()
    level, message, values = _diagnosed(st)
    assert level == DiagnosticStatus.WARN and "10 of 10 images" in message and "rejected" in message
    assert values["frames_received"] == "20" and values["frames_processed"] == "10"
    assert values["frames_rejected"] == "10"
    for _ in range(5):  # the recognizer fails on every frame
        st.add_received()
        st.add_failed()
    level, message, values = _diagnosed(st)
    assert level == DiagnosticStatus.ERROR and "failed" in message and values["frames_failed"] == "5"
    level, message, _ = _diagnosed(st)  # the camera stopped
    assert level == DiagnosticStatus.WARN and "no image" in message
    for _ in range(4):  # back to normal, with one failure: a warning, not an error
        st.add_received()
        st.add_processed(1, 40.0, 30.0)
    st.add_received()
    st.add_failed()
    level, message, _ = _diagnosed(st)
    assert level == DiagnosticStatus.WARN and "failed on 1 of 5 frames" in message
    st.add_received()
    st.add_processed(1, 40.0, 30.0)
    level, _, _ = _diagnosed(st)
    assert level == DiagnosticStatus.OK


def test_diagnostics_a_camera_slower_than_max_rate_hz_is_no_fault():
    from diagnostic_msgs.msg import DiagnosticStatus
    from fer_ros.ros.stats import FrameStats, Period
    st = FrameStats()
    camera_10hz = Period(1.0, received=10, processed=10)
    level, message, _ = _diagnosed(st, camera_10hz, max_rate_hz=30.0)
    assert level == DiagnosticStatus.OK, message
    slow = Period(1.0, received=30, processed=10, dropped=20)  # a 30 Hz camera, 10 processed of the 30 allowed
    level, message, _ = _diagnosed(st, slow, max_rate_hz=30.0)
    assert level == DiagnosticStatus.WARN and "10.0 Hz of 30.0 Hz" in message
    level, _, _ = _diagnosed(st, slow, max_rate_hz=10.0)  # ... of 10 allowed
    assert level == DiagnosticStatus.OK
    level, _, _ = _diagnosed(st, Period(1.0, received=1, processed=0), max_rate_hz=0.5)  # a frame every 2 s
    assert level == DiagnosticStatus.OK


def test_diagnostics_warn_of_image_stamps_far_from_the_nodes_clock():
    """Stamps days behind the node's clock (a bag played without --clock) or a minute ahead of it (a camera's own
    clock) are a warning that says so; a slow frame is not, nor is a period in which no frame was processed."""
    from diagnostic_msgs.msg import DiagnosticStatus
    from fer_ros.ros.stats import FrameStats, Period
    st = FrameStats()
    st.add_received()
    st.add_processed(1, 2.0e11, 30.0)
    level, message, values = _diagnosed(st)
    assert level == DiagnosticStatus.WARN and "2315 days behind this node's clock" in message, message
    assert "--clock" in message and values["latency_ms"] == "200000000000.0"
    st.add_received()
    st.add_processed(1, -60e3, 30.0)
    level, message, _ = _diagnosed(st)
    assert level == DiagnosticStatus.WARN and "60 s ahead of this node's clock" in message, message
    st.add_received()
    st.add_processed(1, 5 * 3600e3, 30.0)  # a camera still on another time zone's clock
    level, message, _ = _diagnosed(st)
    assert level == DiagnosticStatus.WARN and "5.0 h behind" in message, message
    st.add_received()
    st.add_processed(1, 900.0, 30.0)
    level, message, _ = _diagnosed(st)
    assert level == DiagnosticStatus.OK, message
    st.add_processed(1, 2.0e11, 30.0)
    level, message, _ = _diagnosed(st, Period(1.0, received=1, processed=0), max_rate_hz=0.5)
    assert level == DiagnosticStatus.OK, message


def _zero_time():
    from builtin_interfaces.msg import Time
    return Time()


def test_draw_results_marks_every_face():
    frame = np.full((240, 320, 3), 110, np.uint8)
    out = draw_results(frame, [_result(1, box=(20, 40, 100, 140)), _result(2, ready=False, box=(180, 40, 260, 140))])
    assert out.shape == frame.shape and not np.array_equal(out, frame)
    assert (frame == 110).all()  # the input is not drawn on
    assert not np.array_equal(out[40, 20:100], frame[40, 20:100])  # the top edge of the first box
    assert face_caption(_result(1)) == "#1* happy 65%"
    assert "warming up" in face_caption(_result(2, ready=False))


def test_face_caption_is_what_its_docstring_says():
    doc = " ".join(face_caption.__doc__.split())
    assert face_caption(_result(2, ready=False)) == "#2 warming up (1)"
    assert '"#<id> warming up (<frames>)"' in doc and '"#<id> <label> <pct>%"' in doc
    assert "<frames>/<T>" not in doc


def _caption_pixels(out):
    """Rows and columns of the caption's text: the only near-black pixels on a grey frame drawn without landmarks."""
    return np.nonzero((out < 40).all(axis=2))


def test_draw_results_keeps_the_caption_of_a_face_as_tall_as_the_frame_inside_it():
    import cv2
    frame = np.full((288, 352, 3), 110, np.uint8)
    rows, cols = _caption_pixels(draw_results(frame, [_result(1, box=(40, 0, 300, 288))], landmarks=False))
    (tw, th), _ = cv2.getTextSize(face_caption(_result(1)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    assert rows.size and cols.max() - cols.min() + 1 >= tw - 4 and rows.max() - rows.min() + 1 >= th - 2


def test_draw_results_shows_the_whole_caption_of_a_face_at_the_frame_s_edge():
    import cv2
    frame = np.full((288, 352, 3), 110, np.uint8)
    (tw, _), _ = cv2.getTextSize(face_caption(_result(1)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    for box in ((300, 100, 352, 200), (-60, 100, 20, 200)):  # the right edge, the left edge
        _, cols = _caption_pixels(draw_results(frame, [_result(1, box=box)], landmarks=False))
        assert cols.size and cols.max() - cols.min() + 1 >= tw - 4, box


def test_rep155_publisher_topics_and_forgetting():
    # hri_msgs is not a dependency; stand-in message classes with its field names exercise the publisher logic.
    from types import SimpleNamespace
    from std_msgs.msg import Header
    from fer_ros.ros.rep155 import Rep155Publisher

    class _Msg(SimpleNamespace):
        pass

    hri = SimpleNamespace(IdsList=lambda: _Msg(header=None, ids=[]),
                          Expression=lambda: _Msg(header=None, expression="", valence=0.0, arousal=0.0,
                                                  confidence=0.0))
    hri.IdsList.__name__, hri.Expression.__name__ = "IdsList", "Expression"
    published: dict[str, list] = {}

    class _Pub:
        def __init__(self, topic):
            self.topic = topic
            published.setdefault(topic, [])

        def publish(self, msg):
            published[self.topic].append(msg)

    class _Node:
        destroyed: list = []

        def create_publisher(self, _type, topic, _qos):
            return _Pub(topic)

        def destroy_publisher(self, pub):
            self.destroyed.append(pub.topic)

    node = _Node()
    rep = Rep155Publisher(node, hri, forget_after_s=1.0, id_prefix="cam1_fer_node_")
    rep.publish(Header(), [_result(4), _result(2, ready=False)], stamp_s=10.0)
    assert published["/humans/faces/tracked"][-1].ids == ["cam1_fer_node_face2", "cam1_fer_node_face4"]
    expr = published["/humans/faces/cam1_fer_node_face4/expression"][-1]
    assert expr.expression == "happy" and expr.confidence == pytest.approx(0.65) and expr.valence > 0
    assert "/humans/faces/cam1_fer_node_face2/expression" not in published  # window not full: no expression yet
    rep.publish(Header(), [], stamp_s=10.5)  # a short miss keeps the topic
    assert node.destroyed == []
    rep.publish(Header(), [], stamp_s=11.6)  # gone longer than forget_after_s
    assert node.destroyed == ["/humans/faces/cam1_fer_node_face4/expression"]
    rep.close()
    assert node.destroyed[-1] == "/humans/faces/tracked"


# --- the launch file's arguments ---------------------------------------------------------------------------------------
LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "fer.launch.py"


def _launch_module():
    """fer.launch.py of this source tree, loaded as a module."""
    import importlib.util
    pytest.importorskip("launch_ros", reason="launch_ros is not installed")
    spec = importlib.util.spec_from_file_location("fer_launch_under_test", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch_nodes(module, **arguments):
    """The nodes fer.launch.py starts with these launch arguments (the others at their defaults)."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    context = LaunchContext()
    for entity in module.generate_launch_description().entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = arguments.get(entity.name, "".join(
                s.text for s in entity.default_value))
    return module._nodes(context)


def test_the_launch_file_refuses_a_log_level_that_is_not_a_ros_severity(tmp_path):
    from launch.actions import DeclareLaunchArgument
    module = _launch_module()
    params = tmp_path / "fer.yaml"
    params.write_text("/**:\n  ros__parameters:\n    max_faces: 2\n")
    with pytest.raises(ValueError, match=r"log_level must be one of debug, info, warn, error, fatal, got 'warning'"):
        _launch_nodes(module, log_level="warning", params_file=str(params))
    assert len(_launch_nodes(module, log_level="WARN", params_file=str(params))) == 1
    assert module._log_level(" Error ") == "error"
    described = {e.name: e.description for e in module.generate_launch_description().entities
                 if isinstance(e, DeclareLaunchArgument)}
    assert all(level in described["log_level"] for level in module.LOG_LEVELS)


def test_the_launch_file_refuses_a_params_file_that_does_not_exist(tmp_path):
    module = _launch_module()
    missing = tmp_path / "no_such.yaml"
    with pytest.raises(ValueError, match=r"params_file '.*no_such\.yaml' is not a file: give the path of a "):
        _launch_nodes(module, params_file=str(missing))


def test_the_launch_file_names_a_debug_image_value_that_is_not_a_bool():
    module = _launch_module()
    with pytest.raises(ValueError, match=r"^debug_image must be true or false, got 'maybe'$"):
        _launch_nodes(module, debug_image="maybe")
    assert len(_launch_nodes(module, debug_image=" On ")) == 1


def test_the_launch_file_passes_use_sim_time_over_the_params_file_when_given(monkeypatch):
    module = _launch_module()
    monkeypatch.setattr(module, "Node", lambda **kw: kw)  # the arguments each node would be started with
    for given, value in (("true", True), (" False ", False)):
        (node,) = _launch_nodes(module, use_sim_time=given)
        assert node["parameters"][-1] == {"use_sim_time": value}, (given, node["parameters"])
    (node,) = _launch_nodes(module)  # not given: the params file's value
    assert not any(isinstance(p, dict) and "use_sim_time" in p for p in node["parameters"]), node["parameters"]
    with pytest.raises(ValueError, match=r"^use_sim_time must be true or false, got 'sim'$"):
        _launch_nodes(module, use_sim_time="sim")


def test_the_launch_file_refuses_an_image_that_is_not_a_topic_name():
    module = _launch_module()
    for image, reason in (("1bad", "must not start with a number"), ("a//b", "repeated"),
                          ("camera/", "must not end with a forward slash")):
        with pytest.raises(ValueError) as error:
            _launch_nodes(module, image=image)
        line = str(error.value)
        assert line.startswith(f"image {image!r} is not a valid topic name: ") and reason in line, line
        assert "\n" not in line
    assert len(_launch_nodes(module, image="color/image_raw", cameras="front,rear")) == 2


def test_the_launch_file_and_the_node_agree_on_the_log_levels():
    pytest.importorskip("rclpy", reason="rclpy is not installed")
    from fer_ros.ros.spin import LOG_LEVELS
    assert _launch_module().LOG_LEVELS == LOG_LEVELS
