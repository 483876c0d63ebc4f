"""Spinning until shutdown, where a signal at any moment is a clean stop.

rclpy's signal handler (SIGINT, SIGTERM) shuts the context down from the signal's thread. When that lands after the
executor has checked the context and before it builds its wait set, the executor raises ``RCLError`` ("the given
context is not valid") instead of returning: a clean stop reported as a crash. The loops here treat an RCLError
raised once the context is shut down as the stop it is, and re-raise it while the context is still valid.

A process with threads of its own that publish (fer_node's worker) needs more: the context must outlive them.
`StopSignals` takes SIGINT and SIGTERM over from rclpy (initialise with ``SignalHandlerOptions.NO``): a signal only
asks the spin loop to end, and the process then stops its threads, destroys its node and shuts the context down,
in that order.
"""
from __future__ import annotations

import signal
import threading

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

RCLError = _rclpy.RCLError


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
