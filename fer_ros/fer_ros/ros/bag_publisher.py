"""fer-publish-bag (`ros2 run fer_ros publish_bag`): play a bag's messages onto ROS 2 topics at their recorded
timing, for a running fer_node (a replacement for `ros2 bag play` where rosbag2 is not installed, e.g. with ROS 2
from PyPI wheels).

    fer-publish-bag BAG                                      # all topics, as recorded
    fer-publish-bag BAG --remap /camera/image_raw:=/image    # under another name
    fer-publish-bag BAG --rate 0.5 --loop --qos sensor_data

Messages are published as recorded (raw CDR, no re-serialization), at the bag's receive times scaled by `rate`.
With `loop`, a pass starts one mean message period after the last message of the one before (LOOP_GAP_S for a
bag with a single message). Played topics that hold no message are an error.
A bag that ends early (a cut sqlite3 file, an MCAP file read up to its cut) is played once, also with `loop`.
With `emotion_topic` set, the player also listens to the node's fer_msgs/FaceEmotionArray output and matches each
answer to the image it answers by header stamp: the node's end-to-end latency (image published -> answer received,
ms) measured from outside the node (AnswerMatcher). A bag topic that would be published under the listened topic's
name (a bag recorded with the node's answers) is not played: its messages would be taken for answers.
`restamp` replaces the image header stamps by the publish time (for nodes that compare stamps with their clock,
and for bags whose stamps are zero or repeat, which answers cannot tell apart).
Ctrl-C, while waiting for subscribers, playing or listening for the last answers, ends the run with its report.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import math
import re
import sys
import threading
import time
from collections import OrderedDict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message

from fer_ros.argtypes import HelpFormatter, number, parse_args
from fer_ros.cdr_header import header_stamp
from fer_ros.ratelimit import LOGGER_NAME
from fer_ros.ros.params import FerParams, topic_name_reason
from fer_ros.ros.spin import RCLError, spin_until_shutdown
from fer_ros.tools.bagtools import IMAGE_TYPES, BagError, SalvagedMcap, open_bag

QOS_CHOICES = ("reliable", "best_effort", "sensor_data")
MAX_PENDING = 10_000  # images awaiting an answer that the latency measurement remembers
LOOP_GAP_S = 1.0  # with --loop, the pause (at rate 1) between passes of a bag that holds a single message
NO_STAMP = (0, 0)
NODE_NAME = "fer_bag_player"

log = logging.getLogger(LOGGER_NAME)


@dataclass
class PublishReport:
    """What the player did: messages sent per topic, topics it could not publish (type not importable), how late
    publishing ran behind the schedule (ms), whether the bag ended early, and the node's answers when listened to."""

    sent: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    max_late_ms: float = 0.0
    truncated: str | None = None
    interrupted: bool = False
    listening: bool = False
    images_sent: int = 0
    answered: int = 0
    latency_ms: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        total = sum(self.sent.values())
        lines = [f"published {total} messages in {self.duration_s:.2f} s"
                 + (": " + ", ".join(f"{t} {n}" for t, n in sorted(self.sent.items())) if self.sent else "")
                 + f" (at most {self.max_late_ms:.1f} ms behind schedule)"]
        for topic, why in sorted(self.skipped_topics.items()):
            lines.append(f"not published: {topic} ({why})")
        if self.truncated:
            lines.append(f"the bag ended early: {self.truncated}")
        if self.interrupted:
            lines.append("interrupted")
        if self.listening:
            lat = np.asarray(self.latency_ms, np.float64)
            line = f"node answered {self.answered}/{self.images_sent} images"
            if lat.size:
                line += (f"; latency ms (image published -> answer received): median {np.median(lat):.1f}, "
                         f"p90 {np.percentile(lat, 90):.1f}, max {lat.max():.1f}")
            lines.append(line)
        return "\n".join(lines)


def message_class(msgtype: str):
    """The rclpy message class of "pkg/msg/Name", or None when that package is not installed."""
    try:
        pkg, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ValueError, ImportError, AttributeError):
        return None


def make_qos(kind: str, depth: int) -> QoSProfile:
    """QoS for the publishers: reliable (like `ros2 bag play`'s usual default), best_effort or sensor_data."""
    if kind == "sensor_data":
        return QoSProfile(depth=depth, reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability)
    if kind not in QOS_CHOICES:
        raise ValueError(f"qos must be one of {QOS_CHOICES}, got {kind!r}")
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if kind == "reliable"
                      else ReliabilityPolicy.BEST_EFFORT)


class AnswerMatcher:
    """The node's answers matched to the images they answer, by header stamp (fer_node copies the image's header
    into its answer); thread-safe.

    Images are counted as fer_node answers them, one answer per distinct stamp: an image whose stamp is not zero
    and was sent before in the same pass (the same frame on another transport), or repeats the stamp of the image
    just before, is not counted and gets no send time; each image stamped zero counts (fer_node times it by its
    arrival). Per stamp, a FIFO of the send times of the counted images: an answer is timed from the oldest
    unanswered image of its stamp; an answer with none is not counted. At most `max_pending` unanswered images
    are remembered (the oldest are forgotten)."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: OrderedDict[tuple[int, int], deque] = OrderedDict()  # stamp -> send times (monotonic s)
        self._pending_count = 0
        self._in_pass: OrderedDict[tuple[int, int], None] = OrderedDict()  # stamps sent in this pass (the latest)
        self._last: tuple[int, int] | None = None
        self.images = 0
        self.latency_ms: list[float] = []

    def new_pass(self) -> None:
        """A new pass over the bag: its stamps count again (fer_node answers them again, but for a repeat of the
        image just before)."""
        with self._lock:
            self._in_pass.clear()

    def sent(self, stamp: tuple[int, int], at: float) -> str | None:
        """Notes an image with header stamp `stamp` published at monotonic time `at`. Returns "zero" for a stamp
        of 0, "repeat" for an image not counted (its stamp was sent before), else None."""
        with self._lock:
            if stamp != NO_STAMP and (stamp in self._in_pass or stamp == self._last):
                self._last = stamp
                return "repeat"
            self._last = stamp
            if stamp != NO_STAMP:
                self._in_pass[stamp] = None
                if len(self._in_pass) > self.max_pending:
                    self._in_pass.popitem(last=False)
            self.images += 1
            self._pending.setdefault(stamp, deque()).append(at)
            self._pending_count += 1
            if self._pending_count > self.max_pending:  # unanswered images: forget the oldest (bounded memory)
                self._pop(next(iter(self._pending)))
            return "zero" if stamp == NO_STAMP else None

    def answered(self, stamp: tuple[int, int], at: float) -> None:
        """Notes an answer with header stamp `stamp` received at monotonic time `at`."""
        with self._lock:
            if stamp in self._pending:
                self.latency_ms.append(1e3 * (at - self._pop(stamp)))

    def _pop(self, stamp: tuple[int, int]) -> float:
        """The oldest send time of `stamp`, taken out."""
        sends = self._pending[stamp]
        at = sends.popleft()
        if not sends:
            del self._pending[stamp]
        self._pending_count -= 1
        return at

    @property
    def pending(self) -> int:
        """Images counted and not answered yet."""
        with self._lock:
            return self._pending_count

    def results(self) -> tuple[int, list[float]]:
        """(images counted, latencies of the answers matched to them, ms)."""
        with self._lock:
            return self.images, list(self.latency_ms)


class BagPlayer(Node):
    """One publisher per played topic (optionally renamed) and an optional listener on the node's output. A topic
    whose published name (resolved and remapped) is the listened one is not played (`skipped` says so)."""

    def __init__(self, topics: dict[str, str], qos: QoSProfile, remap: dict[str, str] | None = None,
                 emotion_topic: str | None = None, context=None) -> None:
        super().__init__(NODE_NAME, context=context)
        remap = remap or {}
        self.publishers_by_topic: dict[str, Any] = {}
        self.classes: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.answers = AnswerMatcher()
        self._warned = False
        self._passes = 0
        listened = None
        if emotion_topic:
            from fer_msgs.msg import FaceEmotionArray
            listened = self.create_subscription(FaceEmotionArray, emotion_topic, self.emotion_callback, 100).topic_name
        self.answers_listened = listened is not None
        for topic, msgtype in topics.items():
            name = remap.get(topic, topic)
            if listened is not None and self.resolve_topic_name(name) == listened:
                self.skipped[topic] = (f"the node's answers are listened to on {listened}, and the player's own "
                                       "messages there would be taken for them; --emotion-topic '' plays it")
                continue
            cls = message_class(msgtype)
            if cls is None:
                self.skipped[topic] = f"message type {msgtype} is not installed"
                continue
            self.classes[topic] = cls
            self.publishers_by_topic[topic] = self.create_publisher(cls, name, qos)

    def emotion_callback(self, msg) -> None:
        self.answers.answered((int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)), time.monotonic())

    def subscriber_count(self) -> int:
        """Fewest subscribers over the played topics (the publisher waits for each topic to have enough)."""
        counts = [p.get_subscription_count() for p in self.publishers_by_topic.values()]
        return min(counts) if counts else 0

    def new_pass(self, restamp: bool) -> None:
        """Before each pass over the bag."""
        self._passes += 1
        self.answers.new_pass()
        if self._passes == 2 and not restamp:
            self._warn_stamps("the images of every pass after the first carry the stamps of the first pass, so an "
                              "answer is timed from the oldest unanswered image of its stamp, in whichever pass")

    def publish_raw(self, topic: str, raw: bytes, image_stamp: tuple[int, int] | None, restamp: bool) -> None:
        pub = self.publishers_by_topic[topic]
        if restamp and image_stamp is not None:
            msg = deserialize_message(raw, self.classes[topic])
            msg.header.stamp = self.get_clock().now().to_msg()
            image_stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
            data: Any = msg
        else:
            data = raw
        kind = None if image_stamp is None else self.answers.sent(image_stamp, time.monotonic())
        if kind and not restamp:
            if kind == "zero":
                self._warn_stamps(f"images on {topic} carry no stamp (header.stamp is 0), so answers cannot tell "
                                  "them apart: each is timed from the oldest unanswered image")
            elif kind == "repeat":
                self._warn_stamps(f"an image on {topic} has the stamp {image_stamp[0]}.{image_stamp[1]:09d} s of an "
                                  "image played before (the same frame on another transport, or a repeated stamp): "
                                  "it is counted once, as fer_node answers it once")
        pub.publish(data)

    def _warn_stamps(self, what: str) -> None:
        """One warning per run about stamps that do not tell the images apart (the first such case)."""
        if not self._warned and self.answers_listened:
            self._warned = True
            log.warning(f"fer-publish-bag: {what}; --restamp gives every image its publish time as its stamp")


def _check_names(bag, available: dict, wanted: Sequence[str], remap: dict, emotion_topic: str | None) -> None:
    """BagError for a topic to play or remap that the bag does not have, and for a name rcl refuses: --emotion-topic,
    a --remap target, a bag topic played (its type installed) and not remapped (with a --remap to give each)."""
    for what, names in (("", wanted), ("--remap: ", remap)):
        if missing := [t for t in names if t not in available]:
            raise BagError(f"{what}bag {bag} has no topic {', '.join(missing)}; its topics: "
                           + ", ".join(f"{t} ({m})" for t, m in sorted(available.items())))
    named = [(f"--emotion-topic {emotion_topic!r}", emotion_topic, "give fer_node's output_topic (emotion, "
              "/cam1/emotion), or '' to not listen")] if emotion_topic else []
    for what, name, todo in named + [(f"--remap {a}:={b}: {b!r}", b, "give a valid name after :=")
                                     for a, b in remap.items()]:
        if why := topic_name_reason(name, NODE_NAME):
            raise BagError(f"{what} is not a valid ROS 2 topic name ({why}); {todo}")
    played = [t for t in wanted if t not in remap and message_class(available[t])]  # a type not installed: skipped
    if bad := {t: why for t in played if (why := topic_name_reason(t, NODE_NAME))}:
        fix = " ".join(t + ":=" + re.sub(r"[^\w/]|(?:^|(?<=/))(?=\d)", "_", re.sub("/+", "/", t).rstrip("/"), 0, re.A)
                       for t in bad)
        said = "; ".join(f"{t} ({why})" for t, why in bad.items())
        raise BagError(f"bag {bag} has topic names that ROS 2 refuses: {said}; give each a valid name with --remap "
                       f"{fix}, or leave it out with --publish-topics")


def play(bag: str | Path, *, topics: Sequence[str] | None = None, rate: float = 1.0, loop: bool = False,
         qos: str = "reliable", depth: int = 10, wait_for_subscribers: int = 0, wait_timeout_s: float = 30.0,
         remap: dict[str, str] | None = None, restamp: bool = False, emotion_topic: str | None = None,
         linger_s: float = 1.0, progress: bool = False, ros_args: Sequence[str] | None = None) -> PublishReport:
    """Publish the bag (all topics, or `topics`) at recorded timing / `rate`; returns what was sent.

    `wait_for_subscribers`: before the first message, wait (up to `wait_timeout_s`) until every played topic has at
    least this many subscribers. `linger_s`: keep listening this long after the last message (answers in flight).
    Ctrl-C (or a shutdown of rclpy) while waiting, playing or lingering ends the run: the report says "interrupted".
    BagError for a bag that cannot be opened, a topic or name _check_names refuses, played topics with no message."""
    if not (math.isfinite(rate) and rate > 0):
        raise BagError(f"--rate must be a positive factor, got {rate}")
    reader = open_bag(bag)
    report = PublishReport(listening=bool(emotion_topic))
    try:
        available = {c.topic: c.msgtype for c in reader.connections}
        wanted = list(topics) if topics else sorted(available)
        _check_names(bag, available, wanted, remap or {}, emotion_topic)
        context = rclpy.Context()
        # Only the ROS arguments given: rcl never reads this tool's own command line, whose --remap FROM:=TO it
        # would take as a remapping of the player's own topics (the listened answers among them).
        rclpy.init(args=["--ros-args", *ros_args] if ros_args else [], context=context)
        try:
            node = BagPlayer({t: available[t] for t in wanted}, make_qos(qos, depth), remap, emotion_topic,
                             context=context)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            stop_spinning = threading.Event()
            spinner = threading.Thread(target=spin_until_shutdown, args=(executor, context, stop_spinning, 0.05),
                                       daemon=True)
            spinner.start()
            try:
                report.skipped_topics = dict(node.skipped)
                if not node.publishers_by_topic:
                    raise BagError("none of the bag's topics can be published: " + "; ".join(
                        f"{t}: {why}" for t, why in node.skipped.items()))
                connections = [c for c in reader.connections if c.topic in node.publishers_by_topic]
                with _interruptible(report, context):
                    _wait_for_subscribers(node, wait_for_subscribers, wait_timeout_s)
                    t_start = time.monotonic()
                    try:
                        _play_passes(bag, reader, connections, node, rate, loop, restamp, report, progress)
                    finally:
                        report.duration_s = time.monotonic() - t_start
                    if emotion_topic:
                        end = time.monotonic() + linger_s
                        while time.monotonic() < end and node.answers.pending:
                            time.sleep(0.02)
                report.images_sent, report.latency_ms = node.answers.results()
                report.answered = len(report.latency_ms)
            finally:
                stop_spinning.set()
                spinner.join(timeout=5.0)
                executor.shutdown(timeout_sec=1.0)
                node.destroy_node()
        finally:
            context.try_shutdown()
    finally:
        reader.close()
    return report


@contextmanager
def _interruptible(report: PublishReport, context):
    """A `with` block that Ctrl-C (KeyboardInterrupt) or a shutdown of the context (ExternalShutdownException, or
    RCLError once it is shut down) ends, marking the report interrupted."""
    try:
        yield
    except (KeyboardInterrupt, ExternalShutdownException):
        report.interrupted = True
    except RCLError:
        if context.ok():
            raise
        report.interrupted = True


def _wait_for_subscribers(node: BagPlayer, wanted: int, timeout_s: float) -> None:
    """Wait until every played topic has `wanted` subscribers (0: do not wait); BagError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while wanted > 0 and node.subscriber_count() < wanted:
        if time.monotonic() > deadline:
            raise BagError(f"no subscriber appeared within {timeout_s:g} s (wanted {wanted} on every played topic)")
        time.sleep(0.02)


def _play_passes(bag, reader, connections, node: BagPlayer, rate: float, loop: bool, restamp: bool,
                 report: PublishReport, progress: bool) -> None:
    """One pass over the bag, or with `loop` pass after pass, until the bag turns out to end early (a storage error
    while reading, or an MCAP file salvaged up to its cut: report.truncated). BagError for played topics with no
    message."""
    next_start = None
    while True:
        node.new_pass(restamp)
        published, next_start = _play_once(reader, connections, node, rate, restamp, report, progress, next_start)
        if not report.truncated and isinstance(reader, SalvagedMcap) and reader.problem:
            report.truncated = f"the MCAP file has no valid end ({reader.problem})"
        if report.truncated:
            return
        if published == 0:
            raise BagError(f"bag {bag} holds no message on " + ", ".join(sorted(node.publishers_by_topic)))
        if not loop:
            return


def _play_once(reader, connections, node: BagPlayer, rate: float, restamp: bool, report: PublishReport,
               progress: bool, start_at: float | None = None) -> tuple[int, float | None]:
    """One pass over the bag: its first message at monotonic time `start_at` (None: at once), the others at their
    recorded offsets from it / `rate`. Returns how many messages it published and when the next pass should start:
    one mean message period after the last message (LOOP_GAP_S for a single message or messages all recorded at
    once), scaled by `rate`; None when it published nothing."""
    it = reader.messages(connections=connections)
    t0_bag: int | None = None
    t_last, published, t0_wall = 0, 0, 0.0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(unit="msg", desc="publishing")
    try:
        while True:
            try:
                conn, timestamp, raw = next(it)
            except StopIteration:
                break
            except Exception as exc:  # truncated storage
                report.truncated = f"{type(exc).__name__}: {exc}"
                break
            if conn.topic not in node.publishers_by_topic:
                continue
            if t0_bag is None:
                t0_bag, t0_wall = timestamp, (time.monotonic() if start_at is None else start_at)
            due = t0_wall + (timestamp - t0_bag) * 1e-9 / rate
            report.max_late_ms = max(report.max_late_ms, 1e3 * (time.monotonic() - due))
            while (wait := due - time.monotonic()) > 0:  # a second at a time: time.sleep overflows near 1e10 s
                time.sleep(min(wait, 1.0))
            raw = bytes(raw)
            node.publish_raw(conn.topic, raw, header_stamp(raw) if conn.msgtype in IMAGE_TYPES else None, restamp)
            published += 1
            t_last = timestamp
            report.sent[conn.topic] = report.sent.get(conn.topic, 0) + 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if published == 0:
        return 0, None
    span_s = (t_last - t0_bag) * 1e-9
    gap_s = span_s / (published - 1) if published > 1 and span_s > 0 else LOOP_GAP_S
    return published, t0_wall + (span_s + gap_s) / rate


def remap_pair(text: str) -> tuple[str, str]:
    """An argparse type: "FROM:=TO" -> (FROM, TO)."""
    if ":=" not in text:
        raise argparse.ArgumentTypeError(f"takes FROM:=TO, got {text!r}")
    src, dst = text.split(":=", 1)
    return src, dst


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-publish-bag", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("bag", type=Path, help="rosbag2 bag folder (sqlite3 or mcap)")
    p.add_argument("--publish-topics", nargs="+", default=None, help="topics to play; default: all of the bag's")
    p.add_argument("--rate", type=number(low=0.0, low_open=True, finite=True, says="a positive factor"), default=1.0,
                   help="playback speed factor")
    p.add_argument("--loop", action="store_true",
                   help="play again and again until interrupted, each pass one mean message period after the last")
    p.add_argument("--qos", choices=QOS_CHOICES, default="reliable", help="publisher QoS")
    p.add_argument("--qos-depth", type=number(int, low=1, says=">= 1"), default=10, help="publisher history depth")
    p.add_argument("--remap", nargs="+", type=remap_pair, default=None, metavar="FROM:=TO",
                   help="publish a topic under another name; default: every topic under its own")
    p.add_argument("--wait-for-subscribers", type=number(int, low=0, says=">= 0"), default=0, metavar="N",
                   help="wait until every played topic has N subscribers before starting; 0 = do not wait")
    p.add_argument("--wait-timeout-s", type=number(low=0.0, finite=True, says="a number of seconds >= 0"),
                   default=30.0, help="how long to wait for subscribers")
    p.add_argument("--restamp", action="store_true", help="set image header stamps to the publish time")
    p.add_argument("--emotion-topic", default=FerParams().output_topic,
                   help="the FaceEmotionArray topic to listen to for answers, named as fer_node's output_topic "
                        "(relative: in the root namespace, so /emotion; /cam1/emotion for a node in the namespace "
                        "cam1); empty to not listen")
    p.add_argument("--linger-s", type=number(low=0.0, finite=True, says="a number of seconds >= 0"), default=1.0,
                   help="listen this long for answers after the last image")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(get_args_parser(), argv, "fer-publish-bag: error")
    if args is None:
        return 2
    try:
        report = play(args.bag, topics=args.publish_topics, rate=args.rate, loop=args.loop, qos=args.qos,
                      depth=args.qos_depth, wait_for_subscribers=args.wait_for_subscribers,
                      wait_timeout_s=args.wait_timeout_s, remap=dict(args.remap or []), restamp=args.restamp,
                      emotion_topic=args.emotion_topic or None, linger_s=args.linger_s, progress=not args.quiet)
    except BagError as exc:
        print(f"fer-publish-bag: error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
