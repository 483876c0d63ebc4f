"""fer-publish-bag: every frame of a bag reaches a subscriber in another process, in order, at the recorded
pace; answers on /emotion are matched to the images they answer (the node's latency measured from outside); with
--loop the pace holds from one pass to the next; played topics with no message are a one-line error."""
from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is needed to publish")
sensor_msgs = pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs is needed to publish")
fer_msgs = pytest.importorskip("fer_msgs.msg", reason="fer_msgs must be built (make setup) for the answer test")

from bag_helpers import frame_number, numbered_frames  # noqa: E402
from ros_helpers import isolated_ros_env, start_python, stop, use_env  # noqa: E402

from fer_ros.tools.bagtools import IMAGE_TYPE, open_writer, typestore, write_image_bag  # noqa: E402

N_FRAMES = 25
RATE_HZ = 25.0


@pytest.fixture
def ros_env():
    env = isolated_ros_env()
    use_env(env)
    return env


@pytest.mark.parametrize("storage, compressed", [("sqlite3", None), ("mcap", "png")])
def test_publish_delivers_every_frame_in_order(tmp_path, ros_env, storage, compressed):
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from fer_msgs.msg import FaceEmotionArray

    from fer_ros.image_codec import compressed_msg_to_rgb8, image_msg_to_rgb8

    info = write_image_bag(tmp_path / "bag", numbered_frames(N_FRAMES, (120, 160)), rate_hz=RATE_HZ,
                           storage=storage, compressed=compressed, topic="/cam/image")
    msg_type = CompressedImage if compressed else Image
    decode = compressed_msg_to_rgb8 if compressed else image_msg_to_rgb8
    received: list[tuple[int, int, float]] = []  # (frame number, stamp ns, receipt time)

    rclpy.init()
    try:
        node = Node("publish_test_subscriber")
        answer_pub = node.create_publisher(FaceEmotionArray, "/emotion", 10)

        def callback(msg) -> None:
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            received.append((frame_number(decode(msg)), stamp_ns, time.monotonic()))
            answer_pub.publish(FaceEmotionArray(header=msg.header))  # a node that answers every image

        node.create_subscription(msg_type, info.topic, callback,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        proc = start_python(["-m", "fer_ros.ros.bag_publisher", str(tmp_path / "bag"), "--quiet",
                             "--wait-for-subscribers", "1", "--wait-timeout-s", "30", "--linger-s", "3"],
                            ros_env)
        try:
            deadline = time.monotonic() + 60
            while len(received) < N_FRAMES and time.monotonic() < deadline and proc.poll() is None:
                rclpy.spin_once(node, timeout_sec=0.05)
            end = time.monotonic() + 5  # keep answering until the player has read the answers and exits
            while proc.poll() is None and time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.05)
            rc = proc.wait(timeout=20)
            out = proc.stdout.read()
        finally:
            _, tail = stop(proc)
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
    assert rc == 0, out + tail
    assert [r[0] for r in received] == list(range(N_FRAMES)), out
    assert [r[1] for r in received] == info.stamps_ns
    # the recorded pace: 24 intervals of 40 ms, not as fast as possible (a starved machine may only be slower)
    span = received[-1][2] - received[0][2]
    assert span > 0.6 * (N_FRAMES - 1) / RATE_HZ, span
    assert f"published {N_FRAMES} messages" in out
    assert f"node answered {N_FRAMES}/{N_FRAMES} images; latency ms" in out, out


def test_publish_bad_input_is_one_line(tmp_path, ros_env):
    from fer_ros.ros import bag_publisher
    write_image_bag(tmp_path / "bag", numbered_frames(2))
    proc = start_python(["-m", "fer_ros.ros.bag_publisher", str(tmp_path / "bag"), "--publish-topics", "/nope"],
                        ros_env)
    try:
        rc = proc.wait(timeout=60)
        out = proc.stdout.read()
    finally:
        stop(proc)
    assert rc == 2 and "has no topic /nope" in out and "Traceback" not in out
    assert bag_publisher.main([str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("loop", [True, False])
def test_publish_topics_with_no_message_is_one_line(tmp_path, ros_env, loop):
    writer = open_writer(tmp_path / "bag", "sqlite3", overwrite=True)
    writer.add_connection("/cam/image", IMAGE_TYPE, typestore=typestore())
    writer.close()
    proc = start_python(["-m", "fer_ros.ros.bag_publisher", str(tmp_path / "bag"), "--quiet", "--emotion-topic", "",
                         *(["--loop"] if loop else [])], ros_env)
    try:
        rc = proc.wait(timeout=30)
        out = proc.stdout.read()
    finally:
        _, tail = stop(proc)
    assert rc == 2, tail
    assert out.strip() == f"fer-publish-bag: error: bag {tmp_path / 'bag'} holds no message on /cam/image"


@pytest.mark.parametrize("n_frames, rate_hz", [(1, None), (4, 10.0)])
def test_loop_keeps_the_bag_pace_between_passes(tmp_path, ros_env, n_frames, rate_hz):
    """A pass starts one message period after the last message of the one before (a second, at rate 1, for a
    single message), not at once: the gaps between publish times (--restamp) hold across passes."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    info = write_image_bag(tmp_path / "bag", numbered_frames(n_frames), rate_hz=rate_hz or RATE_HZ,
                           topic="/cam/image")
    period_s = 1.0 if rate_hz is None else 1.0 / rate_hz
    wanted = 3 * n_frames + 1  # three passes and the start of a fourth
    stamps: list[float] = []  # publish times (s), from the restamped headers

    def callback(msg) -> None:
        stamps.append(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)

    rclpy.init()
    try:
        node = Node("loop_test_subscriber")
        node.create_subscription(Image, info.topic, callback,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        proc = start_python(["-m", "fer_ros.ros.bag_publisher", str(tmp_path / "bag"), "--quiet", "--loop",
                             "--restamp", "--emotion-topic", "", "--wait-for-subscribers", "1"], ros_env)
        try:
            deadline = time.monotonic() + 30
            while len(stamps) < wanted and time.monotonic() < deadline and proc.poll() is None:
                rclpy.spin_once(node, timeout_sec=0.05)
        finally:
            rc, out = stop(proc)
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
    assert len(stamps) >= wanted, out
    gaps = [b - a for a, b in zip(stamps[:wanted], stamps[1:wanted])]
    # every gap at least about one period (a starved machine may only make it longer); a pass started at once
    # gave a gap of about 0
    assert min(gaps) > 0.3 * period_s, gaps
    assert rc == 0 and "interrupted" in out, out
