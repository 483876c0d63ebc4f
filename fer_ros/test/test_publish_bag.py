"""fer-publish-bag: every frame of a bag reaches a subscriber in another process, in order, at the recorded
pace; answers on /emotion are matched to the images they answer (the node's latency measured from outside), also
where stamps are zero or repeat, and never to the player's own messages (a bag's answer topic is not played); with
--loop the pace holds from one pass to the next; a salvaged MCAP bag ends early and is played once; Ctrl-C at any
stage gives the report; played topics with no message are a one-line error."""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is needed to publish")
sensor_msgs = pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs is needed to publish")
fer_msgs = pytest.importorskip("fer_msgs.msg", reason="fer_msgs must be built (make setup) for the answer test")

from bag_helpers import frame_number, numbered_frames  # noqa: E402
from ros_helpers import isolated_ros_env, start_python, stop, use_env  # noqa: E402

from fer_ros.tools.bagtools import (COMPRESSED_TYPE, IMAGE_TYPE, image_message, open_writer, typestore,  # noqa: E402
                                    write_image_bag)

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


def _images_bag(bag, topics: list[str], n: int = 2) -> None:
    """n frames at 25 Hz on each of `topics` (names as given, also those ROS 2 refuses: a bag converted from ROS 1)."""
    store = typestore()
    writer = open_writer(bag, "sqlite3", overwrite=True)
    conns = [writer.add_connection(topic, IMAGE_TYPE, typestore=store) for topic in topics]
    for i, frame in enumerate(numbered_frames(n)):
        t = 1_700_000_000_000_000_000 + i * 40_000_000
        for conn in conns:
            writer.write(conn, t, store.serialize_cdr(image_message(frame, t, "cam"), IMAGE_TYPE))
    writer.close()


def _refusal(capsys, argv: list[str]) -> str:
    """The one line fer-publish-bag `argv` prints as it refuses to play (exit status 2)."""
    from fer_ros.ros import bag_publisher
    rc = bag_publisher.main(argv)
    out, err = capsys.readouterr()
    assert rc == 2 and not out and err.endswith("\n") and err.count("\n") == 1, (rc, out, err)
    assert err.startswith("fer-publish-bag: error: "), err
    return err.strip()


@pytest.mark.parametrize("args, words", [
    (["--remap", "/cam/imag:=/image"], "--remap: bag {bag} has no topic /cam/imag; its topics: /cam/image "
                                       "(sensor_msgs/msg/Image)"),
    (["--remap", "/cam/image:=bad name"], "--remap /cam/image:=bad name: 'bad name' is not a valid ROS 2 topic name "
                                          "(topic name must not contain characters other than alphanumerics"),
    (["--emotion-topic", "9bad"], "--emotion-topic '9bad' is not a valid ROS 2 topic name (topic name token must not "
                                  "start with a number); give fer_node's output_topic"),
], ids=["remap of no bag topic", "remap target", "emotion topic"])
def test_a_remap_of_no_bag_topic_or_a_name_ros_refuses_is_one_line(tmp_path, ros_env, capsys, args, words):
    """A --remap of a topic the bag does not have (a typo: nothing would be renamed), a --remap target or an
    --emotion-topic that ROS 2 refuses as a topic name: one line saying what to change, exit status 2."""
    _images_bag(tmp_path / "bag", ["/cam/image"])
    line = _refusal(capsys, [str(tmp_path / "bag"), "--quiet", "--emotion-topic", "", *args])
    assert words.format(bag=tmp_path / "bag") in line, line


def test_a_bag_topic_ros_refuses_is_played_under_a_name_remap_gives(tmp_path, ros_env, capsys):
    """A bag topic named as ROS 1 allows (/cam-1/image) cannot be published under its name: one line says so and
    gives the --remap that plays it, which does."""
    _images_bag(tmp_path / "bag", ["/cam/image", "/cam-1/image", "/2cam/image"])
    argv = [str(tmp_path / "bag"), "--quiet", "--emotion-topic", ""]
    line = _refusal(capsys, argv)
    assert "has topic names that ROS 2 refuses: /2cam/image (topic name token must not start with a number); " \
           "/cam-1/image (topic name must not contain characters other than alphanumerics" in line, line
    remap = line.split("give each a valid name with --remap ")[1].split(", or leave it out with --publish-topics")[0]
    assert remap == "/2cam/image:=/_2cam/image /cam-1/image:=/cam_1/image", line
    from fer_ros.ros import bag_publisher
    assert bag_publisher.main([*argv, "--remap", *remap.split()]) == 0
    out = capsys.readouterr().out
    assert "published 6 messages in" in out and ": /2cam/image 2, /cam-1/image 2, /cam/image 2 (" in out, out


def test_a_topic_not_played_for_its_type_is_skipped_whatever_its_name(tmp_path, ros_env, capsys):
    """A bag topic whose message type is not installed is skipped, not played: a name ROS 2 refuses (ROS 1's
    /ros1-node/plane) does not stop the topics that are played."""
    from fer_ros.ros import bag_publisher
    plane_type = "shape_msgs/msg/Plane"
    if bag_publisher.message_class(plane_type) is not None:
        pytest.skip(f"{plane_type} is installed here: the topic would be played")
    _images_bag(tmp_path / "bag", ["/cam/image"])
    bag2 = tmp_path / "bag2"
    store = typestore()
    writer = open_writer(bag2, "sqlite3", overwrite=True)
    image = writer.add_connection("/cam/image", IMAGE_TYPE, typestore=store)
    plane = writer.add_connection("/ros1-node/plane", plane_type, typestore=store)
    t = 1_700_000_000_000_000_000
    writer.write(image, t, store.serialize_cdr(image_message(next(iter(numbered_frames(1))), t, "cam"), IMAGE_TYPE))
    writer.write(plane, t, store.serialize_cdr(store.types[plane_type](coef=np.zeros(4)), plane_type))
    writer.close()
    assert bag_publisher.main([str(bag2), "--quiet", "--emotion-topic", ""]) == 0
    out = capsys.readouterr().out
    assert "/cam/image 1" in out and "/ros1-node/plane" in out, out


@pytest.mark.parametrize("topic, remap", [("/a//b", "/a/b"), ("/cam/image/", "/cam/image"), ("/1cam", "/_1cam")])
def test_the_remap_a_refused_bag_topic_is_given_is_a_valid_name(topic, remap):
    from fer_ros.ros.bag_publisher import NODE_NAME, BagError, _check_names, topic_name_reason
    with pytest.raises(BagError) as refused:
        _check_names("B", {topic: IMAGE_TYPE}, [topic], {}, None)
    assert f"--remap {topic}:={remap}, or leave" in str(refused.value), refused.value
    assert topic_name_reason(remap, NODE_NAME) is None


def test_a_tiny_rate_waits_a_second_at_a_time(monkeypatch):
    """At --rate 1e-12 the second message is due some 4e10 s after the first, more than time.sleep takes: the
    player waits for it a second at a time (until Ctrl-C), on a fake clock here."""
    from types import SimpleNamespace

    from fer_ros.ros import bag_publisher
    clock, sleeps, sent = [100.0], [], []

    def sleep(s: float) -> None:
        sleeps.append(s)
        if s > 9e9:
            raise OverflowError("timestamp out of range for platform time_t")  # as time.sleep does
        if len(sleeps) == 5:
            raise KeyboardInterrupt
        clock[0] += s
    monkeypatch.setattr(bag_publisher, "time", SimpleNamespace(monotonic=lambda: clock[0], sleep=sleep))
    conn = SimpleNamespace(topic="/chatter", msgtype="std_msgs/msg/String")
    reader = SimpleNamespace(messages=lambda connections: iter([(conn, 0, b""), (conn, 40_000_000, b"")]))
    node = SimpleNamespace(publishers_by_topic={conn.topic: None},
                           publish_raw=lambda topic, raw, stamp, restamp: sent.append(clock[0]))
    report = bag_publisher.PublishReport()
    with pytest.raises(KeyboardInterrupt):
        bag_publisher._play_once(reader, [conn], node, 1e-12, False, report, False)
    assert sent == [100.0] and sleeps == [1.0] * 5 and report.max_late_ms == 0.0, (sent, sleeps, report)


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


def _play_to_the_end(bag, args: list[str], ros_env, subscribe, until=lambda: False,
                     timeout_s: float = 60.0) -> tuple[int, str]:
    """fer-publish-bag `bag` `args`, spun beside a node that `subscribe(node)` gives its subscriptions until the
    player ends or `until()` holds (then it is stopped as by Ctrl-C); (exit status, output)."""
    from rclpy.node import Node
    rclpy.init()
    try:
        node = Node("played_bag_subscriber")
        subscribe(node)
        proc = start_python(["-m", "fer_ros.ros.bag_publisher", str(bag), *args], ros_env)
        try:
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None and not until() and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.05)
            for _ in range(10):
                rclpy.spin_once(node, timeout_sec=0.05)
        finally:
            rc, out = stop(proc)
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return rc, out


@pytest.mark.parametrize("n_frames, rate_hz", [(1, None), (4, 10.0)])
def test_loop_keeps_the_bag_pace_between_passes(tmp_path, ros_env, n_frames, rate_hz):
    """A pass starts one message period after the last message of the one before (a second, at rate 1, for a
    single message), not at once: the gaps between publish times (--restamp) hold across passes."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    info = write_image_bag(tmp_path / "bag", numbered_frames(n_frames), rate_hz=rate_hz or RATE_HZ,
                           topic="/cam/image")
    period_s = 1.0 if rate_hz is None else 1.0 / rate_hz
    wanted = 3 * n_frames + 1  # three passes and the start of a fourth
    stamps: list[float] = []  # publish times (s), from the restamped headers

    def callback(msg) -> None:
        stamps.append(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)

    def subscribe(node):
        node.create_subscription(Image, info.topic, callback,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    rc, out = _play_to_the_end(tmp_path / "bag", ["--quiet", "--loop", "--restamp", "--emotion-topic", "",
                                                  "--wait-for-subscribers", "1"], ros_env, subscribe,
                               until=lambda: len(stamps) >= wanted, timeout_s=30)
    assert len(stamps) >= wanted, out
    gaps = [b - a for a, b in zip(stamps[:wanted], stamps[1:wanted])]
    # every gap at least about one period (a starved machine may only make it longer); a pass started at once
    # gave a gap of about 0
    assert min(gaps) > 0.3 * period_s, gaps
    assert rc == 0 and "interrupted" in out, out


def _answers_bag(bag, n: int, emotion_topic: str) -> None:
    """A bag as `fer-replay --out-bag` writes one: n images on /cam/image (20 Hz) and an answer to each on
    `emotion_topic`, 30 ms after it."""
    store = typestore()
    answer_type = "fer_msgs/msg/FaceEmotionArray"
    writer = open_writer(bag, "mcap", overwrite=True)
    images = writer.add_connection("/cam/image", IMAGE_TYPE, typestore=store)
    answers = writer.add_connection(emotion_topic, answer_type, typestore=store)
    for i, frame in enumerate(numbered_frames(n)):
        t = 1_700_000_000_000_000_000 + i * 50_000_000
        image = image_message(frame, t, "cam")
        writer.write(images, t, store.serialize_cdr(image, IMAGE_TYPE))
        answer = store.types[answer_type](header=image.header, faces=[])
        writer.write(answers, t + 30_000_000, store.serialize_cdr(answer, answer_type))
    writer.close()


@pytest.mark.parametrize("recorded, remap", [("/emotion", []), ("/recorded/emotion", ["--remap",
                                                                                       "/recorded/emotion:=emotion"])])
def test_the_topic_answers_are_listened_on_is_not_played(tmp_path, ros_env, recorded, remap):
    """A bag that holds answers (played as recorded, or renamed onto the listened topic): with no node running,
    nothing answers; the player says in one line that it leaves that topic out and publishes nothing there."""
    from sensor_msgs.msg import Image
    from fer_msgs.msg import FaceEmotionArray

    n = 12
    _answers_bag(tmp_path / "bag", n, recorded)
    images, answers = [], []

    def subscribe(node):
        node.create_subscription(Image, "/cam/image", images.append, 100)
        node.create_subscription(FaceEmotionArray, "/emotion", answers.append, 100)
    rc, out = _play_to_the_end(tmp_path / "bag", ["--quiet", "--wait-for-subscribers", "1", "--linger-s", "0.5",
                                                  *remap], ros_env, subscribe)
    assert rc == 0, out
    assert len(images) == n and not answers, out
    assert f"published {n} messages in" in out and f": /cam/image {n} (" in out, out
    assert f"\nnot published: {recorded} (the node's answers are listened to on /emotion" in out, out
    assert f"node answered 0/{n} images" in out, out


def test_remapping_the_recorded_answers_leaves_the_listened_topic_where_it_is(tmp_path, ros_env):
    """--remap /emotion:=/emotion_recorded renames the bag's answers only: they are played on /emotion_recorded,
    and the player still listens for a node's answers on /emotion (the tool's --remap is not a ROS remapping of
    its own node)."""
    from sensor_msgs.msg import Image
    from fer_msgs.msg import FaceEmotionArray

    n = 12
    _answers_bag(tmp_path / "bag", n, "/emotion")
    recorded, answers = [], []

    def subscribe(node):
        node.create_subscription(Image, "/cam/image", lambda _: None, 100)
        node.create_subscription(FaceEmotionArray, "/emotion_recorded", recorded.append, 100)
        node.create_subscription(FaceEmotionArray, "/emotion", answers.append, 100)
    rc, out = _play_to_the_end(tmp_path / "bag", ["--wait-for-subscribers", "1", "--linger-s", "0.5", "--remap",
                                                  "/emotion:=/emotion_recorded"], ros_env, subscribe)
    assert rc == 0, out
    assert len(recorded) == n and not answers, out
    assert "not published" not in out and "remap rule" not in out, out
    assert f"node answered 0/{n} images" in out, out


def _stamp_bag(bag, n: int, case: str) -> None:
    """n frames at 20 Hz on /cam/image: stamped zero ("zero"), or stamped and also on /cam/image/compressed with
    the same stamp, 1 ms later ("both")."""
    store = typestore()
    writer = open_writer(bag, "sqlite3", overwrite=True)
    raw = writer.add_connection("/cam/image", IMAGE_TYPE, typestore=store)
    comp = writer.add_connection("/cam/image/compressed", COMPRESSED_TYPE, typestore=store) if case == "both" else None
    for i, frame in enumerate(numbered_frames(n)):
        t = 1_700_000_000_000_000_000 + i * 50_000_000
        stamp = 0 if case == "zero" else t
        writer.write(raw, t, store.serialize_cdr(image_message(frame, stamp, "cam"), IMAGE_TYPE))
        if comp is not None:
            writer.write(comp, t + 1_000_000,
                         store.serialize_cdr(image_message(frame, stamp, "cam", compressed="png"), COMPRESSED_TYPE))
    writer.close()


@pytest.mark.parametrize("case", ["zero", "both"])
def test_answers_are_matched_by_stamp_where_stamps_are_zero_or_repeat(tmp_path, ros_env, case):
    """A node answering 150 ms after each image, once per stamp as fer_node does (each image without a stamp; a
    frame on both transports once): every image counts once, each answer is timed from the image it answers (the
    oldest unanswered one of its stamp), and one warning suggests --restamp."""
    from rclpy.node import Node
    from sensor_msgs.msg import CompressedImage, Image
    from fer_msgs.msg import FaceEmotionArray

    n, delay_s = 20, 0.15
    _stamp_bag(tmp_path / "bag", n, case)
    due: list[tuple[float, object]] = []  # (when to answer, header)
    seen: set[tuple[int, int]] = set()

    def on_image(msg) -> None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if key == (0, 0) or key not in seen:
            seen.add(key)
            due.append((time.monotonic() + delay_s, msg.header))

    rclpy.init()
    try:
        node = Node("stamp_test_node")
        answer_pub = node.create_publisher(FaceEmotionArray, "/emotion", 100)
        node.create_subscription(Image, "/cam/image", on_image, 100)
        node.create_subscription(CompressedImage, "/cam/image/compressed", on_image, 100)
        proc = start_python(["-m", "fer_ros.ros.bag_publisher", str(tmp_path / "bag"), "--quiet",
                             "--wait-for-subscribers", "1", "--linger-s", "3"], ros_env)
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.01)
                while due and due[0][0] <= time.monotonic():
                    answer_pub.publish(FaceEmotionArray(header=due.pop(0)[1]))
        finally:
            rc, out = stop(proc)
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
    assert rc == 0, out
    assert f"node answered {n}/{n} images; latency ms" in out, out
    median = float(out.split("median ")[1].split(",")[0])
    assert median >= 1e3 * delay_s, out
    assert out.count("--restamp gives every image its publish time") == 1, out


@pytest.mark.parametrize("stage", ["waiting for subscribers", "lingering"])
def test_ctrl_c_while_waiting_or_lingering_gives_the_report(tmp_path, ros_env, stage):
    """Ctrl-C before the first message (no subscriber yet) or while listening for the last answers ends the run as
    Ctrl-C while playing does: "interrupted" and the report, exit status 0."""
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    info = write_image_bag(tmp_path / "bag", numbered_frames(3), rate_hz=RATE_HZ, topic="/cam/image")
    received = []
    rclpy.init()
    try:
        node = Node("ctrl_c_test_node")
        proc = start_python(["-m", "fer_ros.ros.bag_publisher", str(tmp_path / "bag"), "--quiet",
                             "--wait-for-subscribers", "1", "--wait-timeout-s", "120", "--linger-s", "120"], ros_env)
        try:
            deadline = time.monotonic() + 60
            if stage == "lingering":
                node.create_subscription(Image, info.topic, received.append, 100)
                while len(received) < 3 and time.monotonic() < deadline and proc.poll() is None:
                    rclpy.spin_once(node, timeout_sec=0.05)
            else:  # the player's publisher is up: it waits for a subscriber
                while not node.count_publishers(info.topic) and time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.05)
            time.sleep(1.0)
            assert proc.poll() is None, proc.stdout.read()
        finally:
            rc, out = stop(proc)
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
    played = 3 if stage == "lingering" else 0
    assert rc == 0 and "Traceback" not in out, out
    assert f"published {played} messages in" in out and "\ninterrupted\n" in out, out
    assert f"node answered 0/{played} images" in out, out


@pytest.mark.parametrize("loop", [False, True])
def test_a_salvaged_mcap_bag_ends_early_and_is_played_once(tmp_path, ros_env, loop):
    """An MCAP bag read up to its cut (a killed recorder's) says that it ended early, as a cut sqlite3 bag does,
    and with --loop is played once rather than again and again."""
    from fer_ros.tools.bagtools import SalvagedMcap, open_bag
    write_image_bag(tmp_path / "bag", numbered_frames(20), rate_hz=50.0, topic="/cam/image", storage="mcap")
    path = next((tmp_path / "bag").glob("*.mcap"))
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size * 0.6)])
    (tmp_path / "bag" / "metadata.yaml").unlink()
    reader = open_bag(tmp_path / "bag", warn_salvaged=False)
    assert isinstance(reader, SalvagedMcap) and reader.problem
    salvaged = sum(c.msgcount for c in reader.connections)
    reader.close()
    assert 0 < salvaged < 20
    proc = start_python(["-m", "fer_ros.ros.bag_publisher", str(tmp_path / "bag"), "--quiet", "--emotion-topic", "",
                         *(["--loop"] if loop else [])], ros_env)
    try:
        try:
            rc = proc.wait(timeout=30)
        except Exception:
            rc = None
    finally:
        _, out = stop(proc)
    assert rc == 0, out
    assert f"published {salvaged} messages in" in out, out
    assert "\nthe bag ended early: the MCAP file has no valid end (bag.mcap: " in out and "interrupted" not in out, out
