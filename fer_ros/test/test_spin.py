"""Spinning until shutdown: a signal that shuts the context down at any moment is a clean stop, never a crash; a
signal taken over by StopSignals only asks the loop to end. What rcl says about ROS arguments it cannot parse comes
down to one line."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from fer_ros.ros.spin import RCLError, StopSignals, ros_arguments_problem, spin, spin_until_shutdown  # noqa: E402


@pytest.fixture
def context():
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


class ShutdownMidWait(SingleThreadedExecutor):
    """The race a signal can cause: the context is valid when checked, shut down before the wait set is built."""

    def __init__(self, context, shut_down: bool = True):
        super().__init__(context=context)
        self.shut_down = shut_down
        self.calls = 0

    def spin_once(self, timeout_sec=None):
        self.calls += 1
        if self.shut_down:
            self._context.shutdown()
        raise RCLError("failed to initialize wait set: the given context is not valid")


def test_spin_runs_callbacks_until_shutdown_from_another_thread(context):
    node = rclpy.create_node("spin_test", context=context)
    ticks = []

    def tick():
        ticks.append(1)
        if len(ticks) == 3:
            threading.Thread(target=context.shutdown).start()

    node.create_timer(0.01, tick)
    worker = threading.Thread(target=spin, args=(node,))
    worker.start()
    worker.join(timeout=10.0)
    assert not worker.is_alive()
    assert len(ticks) >= 3
    node.destroy_node()


def test_spin_takes_a_shutdown_mid_wait_as_a_clean_stop(context):
    node = rclpy.create_node("spin_race", context=context)
    executor = ShutdownMidWait(context)
    spin(node, executor=executor)  # returns, does not raise
    assert executor.calls == 1 and not context.ok()
    node.destroy_node()


def test_spin_reraises_an_error_while_the_context_is_valid(context):
    node = rclpy.create_node("spin_error", context=context)
    with pytest.raises(RCLError):
        spin(node, executor=ShutdownMidWait(context, shut_down=False))
    node.destroy_node()


def test_spin_until_shutdown_ends_when_stop_is_set(context):
    node = rclpy.create_node("spin_stop", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    stop = threading.Event()
    worker = threading.Thread(target=spin_until_shutdown, args=(executor, context, stop, 0.02))
    worker.start()
    stop.set()
    worker.join(timeout=10.0)
    assert not worker.is_alive() and context.ok()
    executor.shutdown()
    node.destroy_node()


def test_spin_until_shutdown_takes_a_shutdown_mid_wait_as_a_clean_stop(context):
    """The bag publisher's answer spinner: an executor it owns, a stop event, a timeout."""
    node = rclpy.create_node("spin_bag", context=context)
    executor = ShutdownMidWait(context)
    executor.add_node(node)
    spin_until_shutdown(executor, context, threading.Event(), 0.05)
    assert executor.calls == 1
    node.destroy_node()


def _signal_self(sig) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # Python runs the handler at the next bytecode of the main thread


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_stop_signals_ask_for_a_stop_instead_of_stopping(sig):
    sig = getattr(signal, sig)
    before = signal.getsignal(sig)
    with StopSignals() as stop:
        stop.starting = False
        _signal_self(sig)
        assert stop.requested.is_set()
        _signal_self(sig)  # once running, a repeated signal only repeats the request
        assert stop.requested.is_set()
    assert signal.getsignal(sig) is before


def test_a_second_signal_while_starting_interrupts():
    with StopSignals() as stop:
        _signal_self(signal.SIGTERM)
        assert stop.requested.is_set()
        with pytest.raises(KeyboardInterrupt):
            _signal_self(signal.SIGINT)


def test_spin_until_shutdown_ends_on_a_signal(context):
    node = rclpy.create_node("spin_signal", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGINT))
    with StopSignals() as stop:
        stop.starting = False
        timer.start()
        spin_until_shutdown(executor, context, stop.requested, timeout_sec=0.05)
    assert stop.requested.is_set() and context.ok()  # the context is left for the caller to shut down
    executor.shutdown()
    node.destroy_node()


def test_rcl_errors_about_ros_arguments_come_down_to_their_first_line():
    said = ("failed to initialize rcl: Couldn't parse log level: '--log-level warning'. Error: Argument does not use "
            "a valid severity level, at /project/src/rcl/arguments.c:1858, at /project/src/rcl/arguments.c:441\n"
            "second line")
    assert ros_arguments_problem(said) == ("Couldn't parse log level: '--log-level warning'. Error: Argument does "
                                           "not use a valid severity level")
    assert ros_arguments_problem("") == "rcl could not parse them"


@pytest.mark.parametrize("rule, named", [
    ("image:=1bad", "'1bad' is not a valid topic name: topic name token must not start with a number"),
    ("fer_node:image:=cam/", "'cam/' is not a valid topic name: topic name must not end with a forward slash"),
    ("1bad:=image", "'1bad' is not a valid topic name: topic name token must not start with a number"),
    ("__ns:=1bad", "'1bad' is probably not a valid namespace"),
])
@pytest.mark.parametrize("flag", ["-r", "--remap"])
def test_a_remap_rule_rcl_cannot_parse_is_named_by_its_bad_name(rule, named, flag):
    said = (f"failed to initialize rcl: Couldn't parse remap rule: '{flag} {rule}'. Error: error not set, at "
            "/project/src/rcl/arguments.c:380")
    assert ros_arguments_problem(said) == f"Couldn't parse remap rule: '{flag} {rule}': {named}"
