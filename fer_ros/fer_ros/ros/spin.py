"""Spinning until shutdown, where a signal at any moment is a clean stop.

rclpy's signal handler (SIGINT, SIGTERM) shuts the context down from the signal's thread. When that lands after the
executor has checked the context and before it builds its wait set, the executor raises ``RCLError`` ("the given
context is not valid") instead of returning: a clean stop reported as a crash. The loops here treat an RCLError
raised once the context is shut down as the stop it is, and re-raise it while the context is still valid.
"""
from __future__ import annotations

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
