"""Spinning until shutdown, where a signal at any moment is a clean stop.

rclpy's signal handler (SIGINT, SIGTERM) shuts the context down from the signal's thread. When that lands after the
executor has checked the context and before it builds its wait set, the executor raises ``RCLError`` ("the given
context is not valid") instead of returning: a clean stop reported as a crash. The loops here treat an RCLError
raised once the context is shut down as the stop it is, and re-raise it while the context is still valid.

A process with threads of its own that publish (fer_node's worker) needs more: the context must outlive them.
`StopSignals` takes SIGINT and SIGTERM over from rclpy (initialise with ``SignalHandlerOptions.NO``): a signal only
asks the spin loop to end, and the process then stops its threads, destroys its node and shuts the context down,
in that order. `init_ros` initialises rclpy so, and turns what rcl says about ROS arguments it cannot parse into one
line.
"""
from __future__ import annotations

import re
import signal
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.signals import SignalHandlerOptions

from fer_ros import native_stderr

RCLError = _rclpy.RCLError
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")  # the severities --log-level takes
ROS_ARGUMENTS_HELP = (f"write parameters as -p name:=value, remappings as -r from:=to, --log-level "
                      f"{'|'.join(LOG_LEVELS)}, --params-file with a file that exists")
REMAP_RULE = re.compile(r"(Couldn't parse remap rule: '(?:-r|--remap) ([^']*)')")
SPECIAL_NAMES = {"__ns": "namespace", "__node": "node name", "__name": "node name"}  # remappings of the node


def spin_until_shutdown(executor, context, stop: threading.Event | None = None,
                        timeout_sec: float | None = None) -> None:
    """Execute the executor's callbacks until the context is shut down (Ctrl-C, SIGTERM, rclpy.shutdown) or `stop`
    is set (checked every `timeout_sec` seconds; pass one with `stop`)."""
    try:
        while context.ok() and not (stop is not None and stop.is_set()):
            try:
                executor.spin_once(timeout_sec=timeout_sec)
            except RCLError:
                if context.ok():
                    raise
    except (ExternalShutdownException, KeyboardInterrupt):
        pass


def spin(node, executor=None) -> None:
    """rclpy.spin(node) with the clean stop above."""
    own_executor = executor is None
    if own_executor:
        executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        spin_until_shutdown(executor, node.context)
    finally:
        executor.remove_node(node)
        if own_executor:
            executor.shutdown()


class StopSignals:
    """Within the `with` block, SIGINT and SIGTERM set `requested` instead of stopping the process; the handlers
    that were there before come back at the end of the block.

    Pass `requested` as the `stop` of spin_until_shutdown (with a timeout, the longest a stop waits). A second
    signal while `starting` is true raises KeyboardInterrupt, so a start that takes long (a TensorRT engine build)
    can still be cut short; set `starting` to False once everything the stop must tear down exists."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.starting = True
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested.is_set() and self.starting:
            raise KeyboardInterrupt
        self.requested.set()

    def __enter__(self) -> "StopSignals":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def init_ros(argv=None) -> None:
    """rclpy.init with `argv` (None: sys.argv) and the signals left to the caller. runtime.SetupError, one line
    from rcl's reason, when rcl cannot parse the ROS arguments; what rcl writes to standard error while it tries is
    kept out of the terminal then (the reason says it), and written through otherwise."""
    from fer_ros.runtime import SetupError
    problem = None
    with native_stderr.capture() as said:
        try:
            rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        except _rclpy.UnknownROSArgsError as exc:
            problem = f"unknown ROS arguments {exc}"
        except _rclpy.RCLError as exc:
            problem = ros_arguments_problem(str(exc))
    if problem is not None:
        raise SetupError(f"bad ROS arguments: {problem}; {ROS_ARGUMENTS_HELP}")
    if said.text:
        sys.stderr.write(said.text)


def ros_arguments_problem(rcl_error: str) -> str:
    """The first line of rcl's error about the ROS arguments, without its prefix and its source locations; for a
    remap rule, the name in it that is not valid instead of rcl's reason."""
    lines = rcl_error.strip().splitlines()
    first = lines[0] if lines else "rcl could not parse them"
    first = first.removeprefix("failed to initialize rcl: ")
    first = re.sub(r",? at \S+:\d+", "", first).rstrip(" .,") or "rcl could not parse them"
    remap = REMAP_RULE.match(first)
    return f"{remap.group(1)}: {_remap_problem(remap.group(2))}" if remap else first


def _remap_problem(rule: str) -> str:
    """What is wrong with the remap rule `rule` ("from:=to", "node:from:=to"): the side that is not a valid topic
    name and why, or the target as probably not a valid name."""
    from fer_ros.ros.params import topic_name_reason
    source, _, target = rule.partition(":=")
    source = source.rsplit(":", 1)[-1]  # without the node name a rule may start with
    if source in SPECIAL_NAMES:
        return f"{target!r} is probably not a valid {SPECIAL_NAMES[source]}"
    for name in (target, source):
        reason = topic_name_reason(name)
        if reason:
            return f"{name!r} is not a valid topic name: {reason}"
    return f"{target!r} is probably not a valid topic name"
