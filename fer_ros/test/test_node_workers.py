"""fer_node in this process with a recognizer whose stages only take time: the hand-over between its two workers
(at most two frames in the node, the newest taken), one stage after the other without it, a stop that finishes the
frames already started and ends a max_rate_hz wait, a new max_rate_hz that ends or keeps the wait, the compressed
topic under the remapped image topic and the debug image's under the remapped output topic, the frames' times (header
stamp, receive time for images stamped 0, also before /clock starts under use_sim_time, repeated stamps skipped), the
debug image's QoS, bad parameters refused at start and unknown ones named."""
from __future__ import annotations

import contextlib
import random
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")

from node_helpers import image_msg  # noqa: E402
from rclpy.context import Context  # noqa: E402

from fer_ros.runtime import BuiltRecognizer, SetupError  # noqa: E402
from fer_ros.slots import Handoff, LatestFrame  # noqa: E402


class _TimedStages:
    """A recognizer whose perceive and recognise only sleep, counting the frames between the two."""

    class_names = ("anger", "neutral")
    window_length = 3
    clip_input = "lbp"
    landmarker = None
    engine = SimpleNamespace(describe=lambda: "no engine (test)")

    def __init__(self, perceive_s: float, recognise_s: float) -> None:
        self.perceive_s, self.recognise_s = perceive_s, recognise_s
        self._lock = threading.Lock()
        self.in_node = self.most_in_node = 0
        self.perceived: list[float] = []
        self.recognised: list[float] = []

    def perceive(self, frame, stamp_s):
        with self._lock:
            self.in_node += 1
            self.most_in_node = max(self.most_in_node, self.in_node)
            self.perceived.append(stamp_s)
        time.sleep(self.perceive_s)
        return stamp_s

    def recognise(self, perception):
        time.sleep(self.recognise_s)
        with self._lock:
            self.in_node -= 1
            self.recognised.append(perception)
        return []

    def configure(self, **_):
        pass

    def close(self):
        pass


def _run_node(stages: _TimedStages, overlap: bool, frames: int = 60, period_s: float = 0.005):
    """Feed `frames` images to a FerNode as fast as a camera at 1/period_s would, then stop it; returns the stages."""
    from fer_ros.ros.node import FerNode
    ctx = Context()
    rclpy.init(context=ctx, args=["--ros-args", "-p", f"overlap_stages:={str(overlap).lower()}"])
    node = None
    try:
        node = FerNode(recognizer_factory=lambda *_: BuiltRecognizer(stages, "test", Path("test_model")),
                       context=ctx)
        for i in range(frames):
            node.image_callback(image_msg(np.zeros((16, 16, 3), np.uint8), int(round((100.0 + i * period_s) * 1e9)),
                                          encoding="rgb8"))
            time.sleep(period_s)
        node.close()
    finally:
        if node is not None:
            node.destroy_node()
        ctx.try_shutdown()
    return stages


def test_the_handoff_holds_one_frame_and_says_when_it_is_empty():
    box = Handoff()
    assert box.wait_empty(0.0) and box.take(0.0) is None
    box.put("frame 1")
    assert not box.wait_empty(0.01)
    with pytest.raises(RuntimeError, match="wait_empty first"):
        box.put("frame 2")
    taker = threading.Timer(0.05, box.take, args=(1.0,))
    taker.start()
    t0 = time.monotonic()
    assert box.wait_empty(30.0) and time.monotonic() - t0 < 15.0  # woken by the take, not by the timeout
    taker.join()


class _SeenSlots:
    """Stand-ins for the node's two mailboxes that log, in the order they happen, each frame the first worker takes
    from the newest-frame slot (with the newest frame stored at that moment) and each frame the second worker takes
    from the hand-over. Frames are named by their stamp (s), as the recognizer's stages see them."""

    def __init__(self) -> None:
        from fer_ros.ros.convert import stamp_to_s
        self.events: list[tuple] = []  # ("taken", stamp, newest stamp stored) or ("handed over", stamp)
        self.newest = None
        seen = self

        class Slot(LatestFrame):
            def put(self, item):
                with self._cond:
                    seen.newest = stamp_to_s(item[0].header.stamp)
                    return super().put(item)

            def take(self, timeout_s):
                with self._cond:
                    item = super().take(timeout_s)
                    if item is not None:
                        seen.events.append(("taken", stamp_to_s(item[0].header.stamp), seen.newest))
                    return item

        class Box(Handoff):
            def take(self, timeout_s):
                with self._cond:
                    item = super().take(timeout_s)
                    if item is not None:
                        seen.events.append(("handed over", item[1]))
                    return item

        self.Slot, self.Box = Slot, Box


def test_with_slow_networks_at_most_two_frames_are_in_the_node_and_each_is_the_newest(monkeypatch):
    from fer_ros.ros import node as node_module
    seen = _SeenSlots()
    monkeypatch.setattr(node_module, "LatestFrame", seen.Slot)
    monkeypatch.setattr(node_module, "Handoff", seen.Box)
    stages = _run_node(_TimedStages(perceive_s=0.01, recognise_s=0.04), overlap=True)
    assert stages.most_in_node == 2  # one landmarked while the other is in the networks, never a third waiting
    assert stages.in_node == 0 and stages.recognised == stages.perceived  # the stop finished both frames
    assert len(stages.recognised) >= 4 and stages.recognised == sorted(stages.recognised)
    # each frame recognised was the newest one stored when the first worker took it
    taken = [e for e in seen.events if e[0] == "taken"]
    assert [stamp for _, stamp, _ in taken] == stages.perceived
    assert all(stamp == newest for _, stamp, newest in taken), taken
    # and it was taken only once the second worker had taken the frame before it: a frame is landmarked right
    # before it is needed, not early, to wait in the hand-over while newer frames arrive
    assert [e[1] for e in seen.events if e[0] == "handed over"] == stages.recognised
    position = {event: i for i, event in enumerate(seen.events)}
    for previous, current in zip(taken, taken[1:]):
        assert position[("handed over", previous[1])] < position[current], seen.events


def test_one_stage_after_the_other_keeps_one_frame_in_the_node():
    stages = _run_node(_TimedStages(perceive_s=0.01, recognise_s=0.02), overlap=False, frames=30)
    assert stages.most_in_node == 1
    assert stages.in_node == 0 and stages.recognised == stages.perceived and len(stages.recognised) >= 3


# --- one node in this process, with a recognizer that takes no time ---------------------------------------------------
class _Recorder(_TimedStages):
    """A recognizer whose stages take no time; it remembers the stamps it was given and whether it was built and
    closed."""

    def __init__(self) -> None:
        super().__init__(perceive_s=0.0, recognise_s=0.0)
        self.built = self.closed = False

    def close(self):
        self.closed = True


class _Said:
    """Stands in for the node's logger: keeps every line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _keep(self, text, **_):
        self.lines.append(text)

    debug = info = warning = error = _keep


@contextlib.contextmanager
def _node(recognizer: _Recorder, *params: str, domain_id: int | None = None, remaps: tuple = ()):
    """A FerNode with `recognizer`, the parameters `params` ("name:=value") and the remappings `remaps`
    ("from:=to"); closed and destroyed after."""
    from fer_ros.ros.node import FerNode

    def build(*_):
        recognizer.built = True
        return BuiltRecognizer(recognizer, "test", Path("test_model"))

    ctx = Context()
    args = ["--ros-args", *[a for p in params for a in ("-p", p)], *[a for r in remaps for a in ("-r", r)]]
    rclpy.init(context=ctx, args=args, domain_id=domain_id)
    node = None
    try:
        node = FerNode(recognizer_factory=build, context=ctx)
        yield node
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        ctx.try_shutdown()


def _wait_until(done, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _frame(stamp_ns: int):
    return image_msg(np.zeros((16, 16, 3), np.uint8), stamp_ns, encoding="rgb8")


@pytest.mark.parametrize("param, words", [
    ("max_rate_hz:=5", ["max_rate_hz", "double", "5.0"]),  # an INTEGER for a DOUBLE parameter
    ("num_threads:=2.0", ["num_threads", "integer"]),
    ("output_topic:=bad topic", ["output_topic", "'bad topic'", "not a valid topic name"]),
    ("output_topic:=1emo", ["output_topic", "must not start with a number"]),
])
def test_a_bad_parameter_is_a_setup_error_before_the_recognizer_is_built(param, words):
    recognizer = _Recorder()
    with pytest.raises(SetupError) as error:
        with _node(recognizer, param):
            pass
    text = str(error.value)
    assert text.startswith("bad parameter: ") and all(w in text for w in words), text
    assert not recognizer.built


def test_the_recognizer_is_closed_when_the_node_cannot_start(monkeypatch):
    from fer_ros.ros.node import FerNode

    def fail(self, p):
        raise RuntimeError("cannot create the publishers (test)")
    monkeypatch.setattr(FerNode, "_apply_outputs", fail)
    recognizer = _Recorder()
    with pytest.raises(RuntimeError, match="cannot create the publishers"):
        with _node(recognizer):
            pass
    assert recognizer.built and recognizer.closed


def test_close_ends_a_max_rate_hz_wait_at_once():
    recognizer = _Recorder()
    with _node(recognizer, "max_rate_hz:=0.02") as node:
        node.image_callback(_frame(100_000_000_000))
        assert _wait_until(lambda: len(recognizer.recognised) == 1, 5.0)
        node.image_callback(_frame(101_000_000_000))  # the next frame may be processed only 50 s after the first
        time.sleep(0.5)  # the worker takes it and waits
        t0 = time.monotonic()
        node.close()
        took_s = time.monotonic() - t0
        assert took_s < 25.0, f"close() took {took_s:.1f} s"  # ended the wait, not waited it out
        assert recognizer.perceived == [100.0]  # the waiting frame is not processed after the stop


def _hold_frame_2_in_the_rate_wait(node) -> None:
    """Frame 1 (stamp 1 s) processed, then frame 2 (stamp 2 s) taken by the first worker, which now waits for
    max_rate_hz before it processes it."""
    taken, take = threading.Event(), node._slot.take

    def take_and_tell(timeout_s):
        item = take(timeout_s)
        if item is not None:
            taken.set()
        return item
    node._slot.take = take_and_tell
    node.image_callback(_frame(1_000_000_000))
    assert _wait_until(lambda: node.stats.processed == 1, 5.0)
    taken.clear()
    node.image_callback(_frame(2_000_000_000))
    assert taken.wait(5.0)  # the worker holds frame 2 and waits for max_rate_hz


@pytest.mark.parametrize("new_rate_hz", [0.0, 50.0])
def test_a_new_max_rate_hz_ends_a_wait_the_old_one_asked_for(monkeypatch, new_rate_hz):
    """The worker holds a frame and waits the 60 s that max_rate_hz 1/60 asks for; `ros2 param set max_rate_hz`
    to a higher rate (or 0, no limit) lets the frame through at once, not after the old wait."""
    from rclpy.parameter import Parameter
    recognizer = _Recorder()
    with _node(recognizer, f"max_rate_hz:={1 / 60}") as node:
        monkeypatch.setattr(node, "get_logger", lambda: _Said())
        _hold_frame_2_in_the_rate_wait(node)
        time.sleep(0.2)
        assert node.stats.processed == 1
        t0 = time.monotonic()
        assert node.set_parameters([Parameter("max_rate_hz", value=new_rate_hz)])[0].successful
        assert _wait_until(lambda: node.stats.processed == 2, 20.0), "the frame waited out the old rate"
        assert time.monotonic() - t0 < 20.0
        assert recognizer.perceived == [1.0, 2.0]


def test_a_lower_max_rate_hz_keeps_the_wait_and_close_still_ends_it(monkeypatch):
    from rclpy.parameter import Parameter
    recognizer = _Recorder()
    with _node(recognizer, "max_rate_hz:=0.5") as node:
        monkeypatch.setattr(node, "get_logger", lambda: _Said())
        node.image_callback(_frame(1_000_000_000))
        assert _wait_until(lambda: node.stats.processed == 1, 5.0)
        assert node.set_parameters([Parameter("max_rate_hz", value=1 / 60)])[0].successful
        node.image_callback(_frame(2_000_000_000))
        time.sleep(3.0)  # past the 2 s that max_rate_hz 0.5 asked for: 1/60 asks for 60 s
        assert node.stats.processed == 1
        t0 = time.monotonic()
        node.close()
        assert time.monotonic() - t0 < 20.0
        assert recognizer.perceived == [1.0]


def test_compressed_images_are_read_under_the_remapped_image_topic(monkeypatch):
    """`-r image:=image_raw` in the namespace /front: the node reads /front/image_raw and, as image_transport
    names it, /front/image_raw/compressed, and says both in its ready line."""
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CompressedImage
    from fer_ros.ros.node import FerNode
    said = _Said()
    monkeypatch.setattr(FerNode, "get_logger", lambda self: said)
    recognizer = _Recorder()
    with _node(recognizer, "subscribe_compressed:=true", domain_id=random.randint(1, 200),
               remaps=("__ns:=/front", "image:=image_raw")) as node:
        topics = sorted(sub.topic_name for sub in node.subscriptions)
        assert topics == ["/front/image_raw", "/front/image_raw/compressed"], topics
        ready = [line for line in said.lines if line.startswith("ready: ")]
        assert len(ready) == 1 and ("listening on /front/image_raw and /front/image_raw/compressed, publishing "
                                    "/front/emotion") in ready[0], said.lines
        camera = rclpy.create_node("camera", context=node.context)
        pub = camera.create_publisher(CompressedImage, "/front/image_raw/compressed", 10)
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        try:
            deadline = time.monotonic() + 20.0
            stamp_ns = 100_000_000_000
            while not recognizer.recognised and time.monotonic() < deadline:
                stamp_ns += 33_000_000
                pub.publish(_compressed(stamp_ns))
                executor.spin_once(timeout_sec=0.05)
        finally:
            executor.shutdown()
            camera.destroy_node()
        assert recognizer.recognised, "no compressed image arrived on /front/image_raw/compressed"


def test_images_stamped_zero_are_timed_by_their_receive_time(monkeypatch):
    recognizer = _Recorder()
    with _node(recognizer) as node:
        said = _Said()
        monkeypatch.setattr(node, "get_logger", lambda: said)
        for i in range(3):
            before_s = node.get_clock().now().nanoseconds * 1e-9
            node.image_callback(_frame(0))
            after_s = node.get_clock().now().nanoseconds * 1e-9
            assert _wait_until(lambda: node.stats.processed == i + 1, 5.0)
            assert before_s - 1e-3 <= recognizer.perceived[i] <= after_s + 1e-3, (before_s, recognizer.perceived)
        assert recognizer.recognised == recognizer.perceived
        assert np.all(np.diff(recognizer.perceived) > 0)  # the faces' clock moves on
        assert 0.0 <= node.stats.latency_ms < 5000.0  # from the receive time, not from 1970
        assert node.stats.rejected == 0
    warnings = [line for line in said.lines if "no stamp" in line]
    assert len(warnings) == 1, said.lines  # rate-limited
    assert "receive" in warnings[0] and "header.stamp" in warnings[0]


def test_an_image_repeating_the_previous_stamp_is_skipped(monkeypatch):
    recognizer = _Recorder()
    with _node(recognizer) as node:
        said = _Said()
        monkeypatch.setattr(node, "get_logger", lambda: said)
        for i, stamp_ns in enumerate([100_000_000_000, 100_000_000_000, 100_000_000_000, 100_500_000_000]):
            node.image_callback(_frame(stamp_ns))
            assert _wait_until(lambda: node.stats.processed + node.stats.rejected == i + 1, 5.0)
        assert recognizer.perceived == [100.0, 100.5]
        assert node.stats.rejected == 2 and node.stats.processed == 2
    warnings = [line for line in said.lines if "repeats the previous frame's" in line]
    assert len(warnings) == 1, said.lines  # rate-limited
    assert "100.000000000" in warnings[0]


def test_the_debug_image_reaches_reliable_and_best_effort_subscribers():
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    recognizer = _Recorder()
    with _node(recognizer, "publish_debug_image:=true", domain_id=random.randint(1, 200)) as node:
        assert node.debug_pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert node.debug_pub.qos_profile.depth == 1
        viewer = rclpy.create_node("viewer", context=node.context)
        got = {"reliable": [], "best_effort": []}
        viewer.create_subscription(Image, "/emotion/image", got["reliable"].append, 10)  # RViz2's default
        viewer.create_subscription(Image, "/emotion/image", got["best_effort"].append, qos_profile_sensor_data)
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(viewer)
        try:
            deadline = time.monotonic() + 10.0
            stamp_ns = 100_000_000_000
            while not (got["reliable"] and got["best_effort"]) and time.monotonic() < deadline:
                stamp_ns += 33_000_000
                node.process(_frame(stamp_ns))
                executor.spin_once(timeout_sec=0.05)
        finally:
            executor.shutdown()
            viewer.destroy_node()
    assert got["reliable"] and got["best_effort"], {k: len(v) for k, v in got.items()}


class _Gated(_Recorder):
    """A recognizer whose perceive waits for `go`; `close` notes whether a perceive was still running."""

    def __init__(self) -> None:
        super().__init__()
        self.go, self.in_perceive = threading.Event(), threading.Event()
        self.perceiving = False
        self.closed_during_perceive = None

    def perceive(self, frame, stamp_s):
        self.perceiving = True
        self.in_perceive.set()
        self.go.wait(30.0)
        self.perceiving = False
        return super().perceive(frame, stamp_s)

    def close(self):
        self.closed_during_perceive = self.perceiving
        super().close()


def test_a_frame_handed_over_as_the_first_worker_stops_is_still_recognised():
    """The second worker's empty take can end just before the first worker hands over its last frame and exits:
    that frame must still be recognised, not left behind."""
    recognizer = _Gated()
    with _node(recognizer) as node:
        perceiving, take = node._workers[0], node._handoff.take
        in_gap = threading.Event()

        def take_then_fall_behind(timeout_s):
            item = take(timeout_s)
            if item is None and not node._running:  # the second worker pauses right after an empty take
                in_gap.set()
                perceiving.join(10.0)
            return item
        node._handoff.take = take_then_fall_behind
        node.image_callback(_frame(5_000_000_000))
        assert recognizer.in_perceive.wait(5.0)
        closer = threading.Thread(target=node.close)
        closer.start()
        assert in_gap.wait(5.0)
        recognizer.go.set()  # the first worker hands the frame over and exits
        closer.join(20.0)
        assert not closer.is_alive()
        assert recognizer.recognised == [5.0]


def test_close_waits_for_a_slow_frame_before_closing_the_recognizer(monkeypatch):
    recognizer = _Gated()
    with _node(recognizer) as node:
        said = _Said()
        monkeypatch.setattr(node, "get_logger", lambda: said)
        node.image_callback(_frame(5_000_000_000))
        assert recognizer.in_perceive.wait(5.0)
        threading.Timer(6.0, recognizer.go.set).start()  # landmarking that takes longer than close's first wait
        node.close()
        assert recognizer.closed_during_perceive is False
        assert recognizer.recognised == [5.0]  # finished and recognised before the recognizer closed
        assert any("still processing a frame" in line for line in said.lines), said.lines


def _compressed(stamp_ns: int):
    import cv2
    from sensor_msgs.msg import CompressedImage
    ok, jpg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    msg = CompressedImage(format="jpeg")
    msg.data = jpg.tobytes()
    msg.header = _frame(stamp_ns).header
    return msg


def test_a_frame_on_both_transports_is_processed_once_without_a_warning(monkeypatch):
    """A camera publishing image and image/compressed (image_transport) sends each frame twice, with one header:
    the copy is a duplicate (counted, not stored), neither rejected nor blamed on the driver, and a late copy does
    not send the faces' clock back."""
    recognizer = _Gated()
    with _node(recognizer, "subscribe_compressed:=true") as node:
        said = _Said()
        monkeypatch.setattr(node, "get_logger", lambda: said)
        node.image_callback(_frame(1_000_000_000))
        assert recognizer.in_perceive.wait(5.0)  # the worker holds frame 1
        node.image_callback(_frame(2_000_000_000))
        node.compressed_callback(_compressed(2_000_000_000))  # a copy of the frame in the slot: not stored
        node.compressed_callback(_compressed(1_000_000_000))  # late, after frame 2 arrived
        recognizer.go.set()
        assert _wait_until(lambda: node.stats.processed == 2, 5.0)
        node.image_callback(_frame(3_000_000_000))
        assert _wait_until(lambda: node.stats.processed == 3, 5.0)
        node.compressed_callback(_compressed(3_000_000_000))  # after its copy was processed
        assert _wait_until(lambda: node.stats.duplicates + node.stats.rejected == 3, 5.0)
        time.sleep(0.1)
        assert recognizer.perceived == [1.0, 2.0, 3.0]
        assert (node.stats.rejected, node.stats.dropped, node.stats.duplicates) == (0, 0, 3)
        assert node.stats.received == 6
    assert not [line for line in said.lines if "repeats the previous frame's" in line], said.lines


def test_a_copy_arriving_during_a_max_rate_hz_wait_does_not_replace_its_original(monkeypatch):
    """With max_rate_hz set the worker takes a frame, then waits: the frame's copy on the other transport, arriving
    meanwhile, is a duplicate; the original (not the JPEG copy) is processed and nothing counts as dropped."""
    recognizer = _Recorder()
    with _node(recognizer, "subscribe_compressed:=true", "max_rate_hz:=1.0") as node:
        monkeypatch.setattr(node, "get_logger", lambda: _Said())
        decoded, decode = [], node._decode
        monkeypatch.setattr(node, "_decode", lambda msg: (decoded.append(type(msg).__name__), decode(msg))[1])
        _hold_frame_2_in_the_rate_wait(node)
        node.compressed_callback(_compressed(2_000_000_000))  # its copy, during the wait
        assert node.stats.processed == 1  # (still waiting: the copy came in the wait)
        assert _wait_until(lambda: node.stats.processed == 2, 5.0)
        time.sleep(0.1)
        assert recognizer.perceived == [1.0, 2.0]
        assert decoded == ["Image", "Image"]  # the original, not the copy
        assert (node.stats.rejected, node.stats.dropped, node.stats.duplicates) == (0, 0, 1)
        assert node.stats.received == 3


def test_num_threads_0_leaves_the_choice_to_the_backend():
    from fer_ros.ros.params import DESCRIPTIONS
    recognizer = _Recorder()
    with _node(recognizer, "num_threads:=0") as node:
        assert node.params.num_threads == 0
    assert "0 = the backend's own choice" in DESCRIPTIONS["num_threads"][0]


class _Levels:
    """Stands in for the node's logger: keeps every line with its level."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level):
        return lambda text, **_: self.lines.append((level, text))


def test_publish_rep155_without_hri_msgs_is_refused(monkeypatch):
    import sys
    from rclpy.parameter import Parameter
    from fer_ros.ros.node import FerNode
    monkeypatch.setitem(sys.modules, "hri_msgs", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "hri_msgs.msg", None)
    said = _Levels()
    monkeypatch.setattr(FerNode, "get_logger", lambda self: said)
    with _node(_Recorder()) as node:
        result = node.set_parameters([Parameter("publish_rep155", value=True)])[0]
        assert not result.successful and "hri_msgs" in result.reason
        assert node.rep155 is None and node.get_parameter("publish_rep155").value is False
    assert not [line for line in said.lines if "hri_msgs" in line[1]], said.lines
    with _node(_Recorder(), "publish_rep155:=true") as node:  # at start: one warning, and the parameter is false
        assert node.get_parameter("publish_rep155").value is False and node.rep155 is None
        assert node.set_parameters([Parameter("min_face_size_px", value=20)])[0].successful
        assert node.set_parameters([Parameter("publish_rep155", value=False)])[0].successful
    said_rep155 = [line for line in said.lines if "hri_msgs" in line[1]]
    assert len(said_rep155) == 1 and said_rep155[0][0] == "warning", said.lines


class _Failing(_Recorder):
    """A recognizer whose second stage fails on every frame."""

    def recognise(self, perception):
        raise RuntimeError("recognition failed (test)")


def test_frames_that_fail_are_counted_and_make_the_status_an_error(monkeypatch):
    from diagnostic_msgs.msg import DiagnosticStatus
    recognizer = _Failing()
    with _node(recognizer) as node:
        monkeypatch.setattr(node, "get_logger", lambda: _Said())
        published = []
        monkeypatch.setattr(node, "diag_pub", SimpleNamespace(publish=published.append))
        for stamp_ns in (1_000_000_000, 2_000_000_000):
            node.image_callback(_frame(stamp_ns))
            assert _wait_until(lambda: len(recognizer.perceived) == stamp_ns // 1_000_000_000, 5.0)
        assert _wait_until(lambda: node.stats.failed == 2, 5.0)
        node.diagnostics_callback()
    status = published[-1].status[0]
    assert status.level == DiagnosticStatus.ERROR and "failed" in status.message, status
    assert {kv.key: kv.value for kv in status.values}["frames_failed"] == "2"


class _Levels:
    """Stands in for the node's logger: keeps (severity, line)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level):
        if level not in ("debug", "info", "warning", "error", "fatal"):
            raise AttributeError(level)
        return lambda text, **_: self.lines.append((level, text))


class _WarnsOnStampBack(_Recorder):
    """Logs as the core does (the "fer_ros" logger, rate-limited) when a frame's stamp goes back."""

    def __init__(self) -> None:
        super().__init__()
        from fer_ros.ratelimit import RateLimiter
        self._warn = RateLimiter(5.0)
        self._last = None

    def perceive(self, frame, stamp_s):
        if self._last is not None and stamp_s < self._last:
            self._warn.warning("time back", f"frame stamp went back from {self._last:.3f} s to {stamp_s:.3f} s")
        self._last = stamp_s
        return super().perceive(frame, stamp_s)


def test_the_cores_log_lines_are_written_by_the_nodes_logger_at_their_severity(monkeypatch):
    import logging
    core = logging.getLogger("fer_ros")
    before = (core.level, core.propagate, list(core.handlers))
    recognizer = _WarnsOnStampBack()
    with _node(recognizer) as node:
        said = _Levels()
        monkeypatch.setattr(node, "get_logger", lambda: said)
        for i, stamp_ns in enumerate([100_000_000_000, 100_100_000_000, 50_000_000_000]):
            node.image_callback(_frame(stamp_ns))
            assert _wait_until(lambda: node.stats.processed == i + 1, 5.0)
        core.info("engine: graph loaded")
        core.debug("engine: detail")
        assert ("warning", "frame stamp went back from 100.100 s to 50.000 s") in said.lines, said.lines
        assert ("info", "engine: graph loaded") in said.lines  # not dropped by Python's WARNING default
        assert ("debug", "engine: detail") in said.lines  # the ROS logger's --log-level decides
    assert (core.level, core.propagate, list(core.handlers)) == before  # the logger is as it was after close


class _FailsFrom3s(_Recorder):
    """A recognizer whose first stage fails on frames stamped 3 s or later."""

    def perceive(self, frame, stamp_s):
        super().perceive(frame, stamp_s)
        if stamp_s >= 3.0:
            raise RuntimeError("landmarking failed (test)")
        return stamp_s


def test_a_warning_then_failing_frames_keep_both_workers_with_the_real_logger(capfd):
    """rclpy holds each line that logs to one severity: a rejected image (a warning) and then failing frames (errors)
    must each be logged and counted, and the workers keep taking frames."""
    recognizer = _FailsFrom3s()
    with _node(recognizer, domain_id=random.randint(1, 200)) as node:
        node.image_callback(_frame(1_000_000_000))
        assert _wait_until(lambda: node.stats.processed == 1, 5.0)
        bad = _frame(2_000_000_000)
        bad.encoding = "rgb9"
        node.image_callback(bad)  # rejected: a warning
        assert _wait_until(lambda: node.stats.rejected == 1, 5.0)
        for s in (3, 4, 5):
            node.image_callback(_frame(s * 1_000_000_000))
            assert _wait_until(lambda: len(recognizer.perceived) == s - 1, 5.0), recognizer.perceived
        assert _wait_until(lambda: node.stats.failed == 3, 5.0), node.stats.failed
        node.image_callback(bad)  # and a warning after the errors
        assert _wait_until(lambda: node.stats.rejected == 2, 5.0)
        assert node.stats.failed == 3 and all(w.is_alive() for w in node._workers)
    said = capfd.readouterr().err.splitlines()
    assert any("[ERROR]" in line and "processing a frame failed: RuntimeError" in line for line in said), said
    assert any("[WARN]" in line and "rejected image" in line for line in said), said


def test_the_processing_time_is_the_two_stages_own_time():
    """process_ms on /diagnostics: the first stage's time plus the second's, not the wait between them."""
    with _node(_Recorder()) as node:
        node._recognise(_frame(1_000_000_000), 1.0, np.zeros((16, 16, 3), np.uint8), None, 0.05)
        assert 50.0 <= node.stats.process_ms < 1000.0, node.stats.process_ms


def test_the_status_keeps_coming_under_sim_time_without_a_clock(monkeypatch):
    """Under use_sim_time with no /clock (a bag that ended or never played) /diagnostics still says what is wrong."""
    from rclpy.executors import SingleThreadedExecutor
    with _node(_Recorder(), "use_sim_time:=true", "diagnostics_period_s:=0.2",
               domain_id=random.randint(1, 200)) as node:
        published = []
        monkeypatch.setattr(node, "diag_pub", SimpleNamespace(publish=published.append))
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        try:
            deadline = time.monotonic() + 5.0
            while len(published) < 2 and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
        finally:
            executor.remove_node(node)
            executor.shutdown()
    assert len(published) >= 2 and "no image" in published[-1].status[0].message, published


def test_a_max_rate_hz_near_0_never_stops_the_first_worker(monkeypatch):
    """1e-11 Hz asks for a wait longer than a thread can wait at once: the worker waits on, and a new max_rate_hz
    still lets the frame through. The first frame waits for no frame before it."""
    from rclpy.parameter import Parameter
    recognizer = _Recorder()
    with _node(recognizer, "max_rate_hz:=0.00000000001") as node:
        monkeypatch.setattr(node, "get_logger", lambda: _Said())
        node.image_callback(_frame(1_000_000_000))
        assert _wait_until(lambda: node.stats.processed == 1, 5.0)
        node.image_callback(_frame(2_000_000_000))
        time.sleep(0.3)  # the worker takes frame 2 and waits
        assert node.stats.processed == 1 and node._workers[0].is_alive()
        assert node.set_parameters([Parameter("max_rate_hz", value=0.0)])[0].successful
        assert _wait_until(lambda: node.stats.processed == 2, 5.0)
        assert recognizer.perceived == [1.0, 2.0]


def test_the_debug_image_follows_a_remapping_of_the_output_topic():
    with _node(_Recorder(), "publish_debug_image:=true", remaps=("__ns:=/cam1", "emotion:=/face/emotion")) as node:
        assert node.emotion_pub.topic_name == "/face/emotion"
        assert node.debug_pub.topic_name == "/face/emotion/image"
    with _node(_Recorder(), "publish_debug_image:=true", remaps=("__ns:=/cam1",)) as node:
        assert node.debug_pub.topic_name == "/cam1/emotion/image"


def test_images_without_a_stamp_are_timed_by_the_system_clock_until_the_sim_clock_starts(monkeypatch):
    """Under use_sim_time with nothing on /clock the node clock reads 0: frames without a stamp get the system
    clock's time, not 0 each (which would make every frame after the first a repeat), and a warning says why."""
    recognizer = _Recorder()
    with _node(recognizer, "use_sim_time:=true", domain_id=random.randint(1, 200)) as node:
        said = _Said()
        monkeypatch.setattr(node, "get_logger", lambda: said)
        assert node.get_clock().now().nanoseconds == 0
        for i in range(3):
            before_s = time.time()
            node.image_callback(_frame(0))
            after_s = time.time()
            assert _wait_until(lambda: node.stats.processed + node.stats.rejected == i + 1, 5.0)
            assert node.stats.rejected == 0, said.lines
            assert before_s - 1e-3 <= recognizer.perceived[i] <= after_s + 1e-3, (before_s, recognizer.perceived)
        assert np.all(np.diff(recognizer.perceived) > 0)
        assert 0.0 <= node.stats.latency_ms < 5000.0
    warnings = [line for line in said.lines if "clock reads 0" in line]
    assert len(warnings) == 1 and "use_sim_time" in warnings[0] and "/clock" in warnings[0], said.lines


def test_a_parameter_the_node_does_not_have_is_named_at_start(monkeypatch):
    from fer_ros.ros.node import FerNode
    said = _Levels()
    monkeypatch.setattr(FerNode, "get_logger", lambda self: said)
    with _node(_Recorder(), "max_face:=2", "use_sim_time:=false", "min_face_size_px:=30") as node:
        assert node.params.min_face_size_px == 30
    named = [line for line in said.lines if "max_face" in line[1]]
    assert named == [("warning", "ignored parameter max_face (did you mean max_faces?): fer_node has no such "
                                 "parameter; fer_node --help lists them")], said.lines
