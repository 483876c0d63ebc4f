"""fer_node: camera images in, fer_msgs/FaceEmotionArray out.

The image callbacks only store the newest frame (a newer frame replaces an unprocessed one, which counts as a
drop; a copy of a frame on the other transport, image or its compressed sibling, counts as a duplicate and is not
stored), so the node never falls behind the camera. Two worker threads process it, one frame apart: the first
decodes the newest frame and finds its faces' landmarks (Recognizer.perceive), then hands it to the second, which
runs the rest (Recognizer.recognise) and publishes; while the second works on frame t the first landmarks frame
t+1, so the frame rate follows the slower stage, not their sum. The first worker takes the next frame only once
the second has taken the last one: at most two frames are in the node, one per stage, and nothing is landmarked
that cannot be used next. With the parameter overlap_stages false the first worker runs both stages, one after
the other. All results of one frame go out in one message on `emotion`, with the image header. Every name the node
reads and publishes is relative (`image`, `emotion`, `emotion/image`), so a namespace and remappings move all of
them: one node per camera, each in the camera's namespace. The compressed images are read, as image_transport names
them, from `<image>/compressed`, where <image> is the `image` topic after remapping (`-r image:=image_raw` reads
`image_raw` and `image_raw/compressed`).

Run:  ros2 run fer_ros fer_node --ros-args -r image:=/camera/image_raw
      python -m fer_ros.ros.node --ros-args -r __ns:=/cam1 -p model_path:=/path/to/model_dir
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CompressedImage, Image

from fer_msgs.msg import FaceEmotionArray
from fer_msgs.srv import CaptureNeutral

from fer_ros.image_codec import ImageDecodeError, compressed_msg_to_rgb8, encode_rgb8, image_msg_to_rgb8
from fer_ros.pipeline import repeats_stamp
from fer_ros.ratelimit import RateLimiter
from fer_ros.ros import params as fer_params
from fer_ros.ros.convert import face_emotion_array, stamp_to_s
from fer_ros.ros.log_bridge import LogBridge
from fer_ros.ros.rep155 import HRI_MSGS_MISSING, Rep155Publisher, import_hri_msgs
from fer_ros.ros.spin import StopSignals, init_ros, spin_until_shutdown
from fer_ros.ros.stats import FrameStats, diagnostics_msg
from fer_ros.runtime import SetupError, build_recognizer, describe, smooth_results
from fer_ros.slots import Handoff, LatestFrame
from fer_ros.smoothing import ProbabilitySmoother

WARN_PERIOD_S = 5.0  # rate limit of repeated warnings, per cause (bad frames, decoder messages, processing errors)
STOP_POLL_S = 0.1  # longest a stop request waits for the spin loop to notice it
RATE_WAIT_S = 1.0  # longest one wait for max_rate_hz before the worker works the wait out again
MODEL_OPTION = "the model_path parameter"  # what a missing-model error tells the user to set
# The debug image is for viewers such as RViz2, whose subscriptions are reliable by default: a reliable publisher
# serves reliable and best-effort subscribers alike; depth 1 keeps only the newest image for a slow one.
DEBUG_IMAGE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)


class FerNode(Node):
    """Subscribes to `image` (and `<image>/compressed`), publishes FaceEmotionArray on `output_topic`.

    The recognizer is runtime.build_recognizer(parameters); `recognizer_factory` (same signature) replaces it.
    `context`: the rclpy context the node lives in (None: the default one).
    Raises runtime.SetupError (a bad parameter, an unusable model) with a message that says what to do."""

    def __init__(self, recognizer_factory=None, context=None) -> None:
        super().__init__("fer_node", context=context)
        # The core's warnings (a stamp that went back, a frame too small for a face) carry the node's name.
        self._log_bridge = LogBridge(lambda: self.get_logger()).attach()
        try:
            self.params = fer_params.declare(self)
            unknown = fer_params.unknown_parameters(getattr(self, "_parameter_overrides", {}),
                                                    self.list_parameters([], 0).names)
            if unknown:
                self.get_logger().warning(unknown)
            built = (recognizer_factory or build_recognizer)(self.params, MODEL_OPTION)
        except (ValueError, ParameterException) as exc:
            self._log_bridge.detach()
            raise SetupError(f"bad parameter: {exc}") from None
        except BaseException:
            self._log_bridge.detach()
            raise
        self.recognizer, self.backend_name, self.model_dir = built
        try:
            for line in describe(built):
                self.get_logger().info(line)
            self._set_up()
        except BaseException:
            self.recognizer.close()  # the FaceLandmarker must be closed explicitly, also when the node cannot start
            self._log_bridge.detach()
            raise
        self._running = True
        self._handoff = Handoff()  # (message, stamp_s, frame, Perception, first stage s) between the workers
        self._workers = [threading.Thread(target=self._perceive_loop, name="fer_perceive", daemon=True),
                         threading.Thread(target=self._recognise_loop, name="fer_worker", daemon=True)]
        for worker in self._workers:
            worker.start()
        listening = self.resolve_topic_name("image") + (
            f" and {self._compressed_topic()}" if self.params.subscribe_compressed else "")
        self.get_logger().info(
            f"ready: model {self.model_dir}, backend {self.backend_name}, listening on {listening}, publishing "
            f"{self.resolve_topic_name(self.params.output_topic)}")

    def _set_up(self) -> None:
        """The node's state, publishers, subscriptions, service and timer (everything but the workers)."""
        self.smoother = ProbabilitySmoother(self.params.smoothing_time_constant_s)
        self.stats = FrameStats()
        self._slot = LatestFrame()
        self._lock = threading.Lock()  # guards the recognizer (worker vs. service) and the optional publishers
        self._last_processed_s = None  # monotonic time (s) the last frame's processing started
        self._system_clock = Clock(clock_type=ClockType.SYSTEM_TIME)  # the time while the node clock reads 0
        self._rate_wake = threading.Event()  # ends the first worker's max_rate_hz wait: close(), a new max_rate_hz
        self._last_stamp_s = None  # time (s) of the last frame given to the recognizer
        self._last_stored = None  # ((sec, nanosec), message type) of the last stamped image the callbacks stored
        self._limiter = RateLimiter(WARN_PERIOD_S)  # one line per cause every WARN_PERIOD_S

        self.emotion_pub = self.create_publisher(FaceEmotionArray, self.params.output_topic, 10)
        self.debug_pub = None
        self.rep155 = None
        if self.params.publish_rep155 and import_hri_msgs() is None:
            # The parameter is set to what the node does, so `ros2 param get` does not claim an output that is off.
            self.get_logger().warning(f"REP-155 output off: {HRI_MSGS_MISSING}; publish_rep155 is now false")
            self.params = replace(self.params, publish_rep155=False)
            self.set_parameters([Parameter("publish_rep155", value=False)])
        self._apply_outputs(self.params)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        qos = self._image_qos()
        self.create_subscription(Image, "image", self.image_callback, qos)
        if self.params.subscribe_compressed:
            self.create_subscription(CompressedImage, self._compressed_topic(), self.compressed_callback, qos)
        self.create_service(CaptureNeutral, "~/capture_neutral", self.capture_neutral_callback)
        # wall time: the status keeps coming under use_sim_time when /clock stops (a bag ended or paused)
        self.create_timer(self.params.diagnostics_period_s, self.diagnostics_callback,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self.parameters_callback)

    # --- callbacks (executor thread) -------------------------------------------------------------------------
    def image_callback(self, msg: Image) -> None:
        self._store(msg)

    def compressed_callback(self, msg: CompressedImage) -> None:
        self._store(msg)

    def _store(self, msg) -> None:
        """Put the image in the slot for the workers (replacing an unprocessed frame counts as a drop). A camera
        that publishes both transports (image and <image>/compressed, as image_transport does) sends every frame
        twice, with one header: an image on the other transport than the image stored last, whose stamp is not
        newer than that one's, is a copy of a frame already stored (or of an older one). It is counted as a
        duplicate and not stored, so the original stays in the slot and is the one processed. This is the only
        place copies are recognised; images without a stamp are never taken for copies."""
        self.stats.add_received()
        stamp = msg.header.stamp
        key = None if stamp.sec == 0 and stamp.nanosec == 0 else (stamp.sec, stamp.nanosec)
        if (key is not None and self._last_stored is not None and type(msg) is not self._last_stored[1]
                and key <= self._last_stored[0]):
            self.stats.add_duplicate()
            return
        self._last_stored = (key, type(msg)) if key is not None else None
        if self._slot.put((msg, self._receive_time(msg))):
            self.stats.add_dropped()

    def _receive_time(self, msg):
        """The node's time now (_now) for a message whose header carries no stamp (its frame's time); None for the
        others, which are timed by their stamp."""
        stamp = msg.header.stamp
        return self._now().to_msg() if stamp.sec == 0 and stamp.nanosec == 0 else None

    def _now(self):
        """The node clock's time; the system clock's, with a warning, while the node clock reads 0 (use_sim_time
        before anything came on /clock), so frames without a stamp do not all get time 0."""
        now = self.get_clock().now()
        if now.nanoseconds != 0:
            return now
        self._warn("clock at 0", "the node's clock reads 0 (use_sim_time is true and nothing has come on /clock "
                                 "yet): images without a stamp, and the latency, are timed by the system clock "
                                 "until it starts")
        return self._system_clock.now()

    def capture_neutral_callback(self, request, response):
        wanted = [int(i) for i in request.face_ids]
        with self._lock:
            captured, missing = self.recognizer.capture_neutral(wanted or None)
        response.captured = [int(i) for i in captured]
        response.success = bool(captured)
        response.message = (f"captured {sorted(response.captured)}" if captured else "no face captured") + (
            f"; not tracked: {sorted(missing)}" if missing else "")
        return response

    def diagnostics_callback(self) -> None:
        period = self.stats.take_period()
        self.diag_pub.publish(diagnostics_msg(self.stats, period, self.get_clock().now().to_msg(),
                                              self.get_fully_qualified_name(),
                                              self.backend_name, self.params.max_rate_hz))

    def parameters_callback(self, changes) -> SetParametersResult:
        for p in changes:
            problem = fer_params.check(p.name, p.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        new = replace(self.params, **{p.name: p.value for p in changes if hasattr(self.params, p.name)})
        if new.publish_rep155 and self.rep155 is None and import_hri_msgs() is None:
            return SetParametersResult(successful=False, reason=f"publish_rep155 cannot be true: {HRI_MSGS_MISSING}")
        with self._lock:
            try:
                self.recognizer.configure(min_face_size_px=new.min_face_size_px, face_timeout_s=new.face_timeout_s,
                                          neutral_policy=new.neutral_policy)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self.smoother.set_time_constant(new.smoothing_time_constant_s)
            self._apply_outputs(new)
            self.params = new
        if any(p.name == "max_rate_hz" for p in changes):
            self._rate_wake.set()  # the first worker works its wait out again with the new rate
        return SetParametersResult(successful=True)

    # --- worker threads ----------------------------------------------------------------------------------------
    def _perceive_loop(self) -> None:
        while self._running:
            # The next frame is taken only once the second worker has taken the last one, so it is the newest
            # frame when its landmarking starts, and it waits for the networks at most as long as they take.
            if self.params.overlap_stages and not self._handoff.wait_empty(timeout_s=0.2):
                continue
            arrived = self._slot.take(timeout_s=0.2)
            if arrived is None:
                continue
            if self._wait_for_rate():
                if not self._running:
                    break
                newer = self._slot.take(timeout_s=0.0)  # a newer frame, never a copy (_store keeps those out)
                if newer is not None:
                    arrived = newer
                    self.stats.add_dropped()
            try:
                started = self._perceive(*arrived)
                if started is not None and not self.params.overlap_stages:
                    self._recognise(*started)  # one stage after the other, on this thread
                    continue
            except Exception as exc:  # a bad frame or a failing stage must not stop the node
                self._say_failed(exc)
                continue
            if started is not None:
                self._handoff.put(started)

    def _recognise_loop(self) -> None:
        perceiving = self._workers[0]
        while True:
            # read before the take: a frame the first worker hands over and exits after is then still taken
            perceiving_before = perceiving.is_alive()
            started = self._handoff.take(timeout_s=0.2)
            if started is None:
                if self._running or perceiving_before:
                    continue
                return  # stopping, and the first worker has handed over its last frame
            try:
                self._recognise(*started)
            except Exception as exc:  # a failing stage must not stop the node
                self._say_failed(exc)

    def _say_failed(self, exc: Exception) -> None:
        self.stats.add_failed()
        text = f"processing a frame failed: {type(exc).__name__}: {exc}"
        try:
            self._error(f"failed: {type(exc).__name__}", text)
        except Exception as log_exc:  # noqa: BLE001 -- logging must never end a worker
            print(f"fer_node: could not log ({type(log_exc).__name__}: {log_exc}): {text}", file=sys.stderr)

    # rclpy holds each line that calls a logger to one severity (it raises for another), so each severity goes
    # through a call site of its own, never through one shared line as RateLimiter.say's
    def _warn(self, key: str, text: str) -> None:
        self._limiter.say(key, text, lambda line: self.get_logger().warning(line))

    def _error(self, key: str, text: str) -> None:
        self._limiter.say(key, text, lambda line: self.get_logger().error(line))

    def _wait_for_rate(self) -> bool:
        """Wait until max_rate_hz lets the next frame be processed; True when there was a wait. The wait is worked
        out again whenever max_rate_hz changes, and ends at once when the node stops (close())."""
        waited = False
        while True:
            self._rate_wake.clear()  # before reading the rate: a change from here on ends the wait below
            wait_s = self._rate_wait_s()
            if wait_s <= 0 or not self._running:
                return waited
            self._rate_wake.wait(min(wait_s, RATE_WAIT_S))  # a rate near 0 asks for more than a wait can take
            waited = True

    def _rate_wait_s(self) -> float:
        if self.params.max_rate_hz <= 0 or self._last_processed_s is None:
            return 0.0
        return self._last_processed_s + 1.0 / self.params.max_rate_hz - time.monotonic()

    def process(self, msg) -> None:
        """Decode one image message, recognise, publish /emotion (and the optional outputs): both workers' stages
        one after the other."""
        started = self._perceive(msg, self._receive_time(msg))
        if started is not None:
            self._recognise(*started)

    def _perceive(self, msg, received):
        """First stage: decode and landmark. `received`: when a message whose header carries no stamp arrived
        (builtin_interfaces/Time, node clock; see _receive_time), its frame's time. (message, stamp_s, frame,
        Perception or None for a frame the recognizer cannot use (it warned; an empty message goes out), this
        stage's time in s), or None for a message refused (counted and warned about): malformed or oversized, or at the time of
        the previous frame (pipeline.repeats_stamp, the recognizer's rule, checked here before the image is decoded;
        copies on the other transport never get here: _store drops them)."""
        t0 = time.monotonic()
        self._last_processed_s = t0
        stamp = msg.header.stamp
        if stamp.sec == 0 and stamp.nanosec == 0:
            self._warn("no stamp", f"images on {self._topic_of(msg)} carry no stamp (header.stamp is 0): "
                              "the node uses the time it receives them instead; the camera driver should set "
                              "header.stamp")
            stamp = received
        stamp_s = stamp_to_s(stamp)
        if repeats_stamp(stamp_s, self._last_stamp_s):
            self.stats.add_rejected()
            self._warn("repeated stamp", f"skipped an image on {self._topic_of(msg)}: its stamp "
                              f"{stamp.sec}.{stamp.nanosec:09d} s repeats the previous frame's, and one moment must "
                              "not count twice in a face's window; the camera driver should give every image the "
                              "time it was taken")
            return None
        try:
            frame = self._decode(msg)
        except ImageDecodeError as exc:
            self.stats.add_rejected()
            hint = "; raise the parameter max_image_pixels to accept it" if exc.cause == "too large" else ""
            self._warn(f"rejected: {exc.cause}", f"rejected image on {self._topic_of(msg)}: {exc}{hint}")
            return None
        self._last_stamp_s = stamp_s
        perception = self.recognizer.perceive(frame, stamp_s)
        return msg, stamp_s, frame, perception, time.monotonic() - t0

    def _recognise(self, msg, stamp_s: float, frame: np.ndarray, perception, perceive_s: float) -> None:
        """Second stage: the rest of the recognizer, then publish. `stamp_s`: the frame's time (its header stamp,
        or the receive time when it has none); the messages carry the image's own header. `perceive_s`: the first
        stage's time, which with this stage's makes the frame's processing time (the wait between them left out)."""
        t1 = time.monotonic()
        with self._lock:
            results = [] if perception is None else self.recognizer.recognise(perception)
            results = smooth_results(results, self.smoother, stamp_s)
            height, width = frame.shape[:2]
            self.emotion_pub.publish(face_emotion_array(msg.header, results, width, height))
            now = self._now()
            latency_ms = (now.nanoseconds * 1e-9 - stamp_s) * 1e3
            if self.debug_pub is not None:
                self._publish_debug(msg.header, frame, results)
            if self.rep155 is not None:
                self.rep155.publish(msg.header, results, stamp_s)
        self.stats.add_processed(len(results), latency_ms, (perceive_s + time.monotonic() - t1) * 1e3)

    def _decode(self, msg) -> np.ndarray:
        """The message's (H, W, 3) RGB frame; ImageDecodeError for a malformed or oversized one. What the JPEG
        and PNG libraries say about a frame they decode anyway is a rate-limited warning."""
        limit = self.params.max_image_pixels
        if not isinstance(msg, CompressedImage):
            return image_msg_to_rgb8(msg, max_pixels=limit)

        def decoder_said(text: str) -> None:
            self._warn("decoder warning", f"image on {self._topic_of(msg)}: {text}")
        return compressed_msg_to_rgb8(msg, max_pixels=limit, on_warning=decoder_said)

    def _publish_debug(self, header, frame: np.ndarray, results) -> None:
        from fer_ros.annotate import draw_results
        raw = encode_rgb8(draw_results(frame, results), "rgb8")
        img = Image(header=header, height=raw.height, width=raw.width, encoding=raw.encoding,
                    is_bigendian=raw.is_bigendian, step=raw.step)
        img.data = raw.data
        self.debug_pub.publish(img)

    # --- helpers -----------------------------------------------------------------------------------------------
    def _image_qos(self) -> QoSProfile:
        if self.params.image_qos == "sensor_data":
            qos = QoSProfile(depth=self.params.image_qos_depth, reliability=qos_profile_sensor_data.reliability,
                             durability=qos_profile_sensor_data.durability)
        else:
            reliability = (ReliabilityPolicy.RELIABLE if self.params.image_qos == "reliable"
                           else ReliabilityPolicy.BEST_EFFORT)
            qos = QoSProfile(depth=self.params.image_qos_depth, reliability=reliability)
        return qos

    def _apply_outputs(self, p: fer_params.FerParams) -> None:
        """Create or destroy the optional publishers to match `p`."""
        if p.publish_debug_image and self.debug_pub is None:
            self.debug_pub = self.create_publisher(Image, self._debug_topic(p.output_topic), DEBUG_IMAGE_QOS)
        elif not p.publish_debug_image and self.debug_pub is not None:
            self.destroy_publisher(self.debug_pub)
            self.debug_pub = None
        if p.publish_rep155 and self.rep155 is None:
            self.rep155 = Rep155Publisher.create(self, forget_after_s=p.face_timeout_s)
        elif not p.publish_rep155 and self.rep155 is not None:
            self.rep155.close()
            self.rep155 = None
        if self.rep155 is not None:
            self.rep155.forget_after_s = p.face_timeout_s

    def _debug_topic(self, output_topic: str) -> str:
        """The debug image's topic: `/image` under the output topic after remapping (a remapping of `emotion` moves
        both)."""
        return self.resolve_topic_name(output_topic) + "/image"

    def _compressed_topic(self) -> str:
        """The compressed images' topic: `/compressed` under the `image` topic after remapping, as image_transport
        names it (a remapping of `image` moves both)."""
        return self.resolve_topic_name("image") + "/compressed"

    def _topic_of(self, msg) -> str:
        return self._compressed_topic() if isinstance(msg, CompressedImage) else self.resolve_topic_name("image")

    def close(self) -> None:
        """Stop the workers once they have finished the frames they hold, then release the recognizer (the
        FaceLandmarker must be closed explicitly, and never under a frame it is landmarking)."""
        self._running = False
        self._rate_wake.set()
        self._slot.close()
        for worker in self._workers:
            worker.join(timeout=5.0)
            if worker.is_alive():
                self.get_logger().warning(f"stopping: {worker.name} is still processing a frame; waiting for it")
                worker.join()
        with self._lock:
            self.recognizer.close()
        self._log_bridge.detach()


def take_options(argv=None) -> int | None:
    """fer_node's own command line, what `argv` (None: sys.argv) holds besides the ROS arguments: with -h or
    --help the usage is printed (exit code 0); anything else is refused with one line (2); None when there is
    nothing, and the node starts."""
    given = remove_ros_args(sys.argv if argv is None else argv)[1:]
    if not given:
        return None
    if "-h" in given or "--help" in given:
        print(fer_params.help_text())
        return 0
    print(f"fer_node takes no options (got {' '.join(given)}): set parameters with --ros-args -p name:=value; "
          "fer_node --help lists them", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    """Run fer_node until SIGINT or SIGTERM (exit code 0); 2 when it cannot start (the message says why: a bad
    ROS argument, an option (fer_node takes none but --help), a bad parameter, an unusable model).

    A signal ends the spin loop; the workers then finish the frames they hold (the second publishing its frame
    while the context is still valid), the node is destroyed and only then is the context shut down."""
    with StopSignals() as stop:
        node = executor = None
        try:
            init_ros(argv)
            code = take_options(argv)
            if code is not None:
                return code
            node = FerNode()
            executor = SingleThreadedExecutor(context=node.context)
            executor.add_node(node)
            stop.starting = False
            spin_until_shutdown(executor, node.context, stop.requested, timeout_sec=STOP_POLL_S)
        except SetupError as exc:
            print(f"fer_node: {exc}", file=sys.stderr)
            return 2
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            stop.starting = False  # from here on a signal only repeats the request
            if node is not None:
                node.close()
            if executor is not None:
                executor.shutdown()
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
