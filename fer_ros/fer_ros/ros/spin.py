"""Spinning a node until shutdown, where a signal at any moment is a clean stop.

rclpy's signal handler (SIGINT, SIGTERM) shuts the context down from the signal's thread. When that lands after the
executor has checked the context and before it builds its wait set, ``rclpy.spin`` raises ``RCLError`` ("the given
context is not valid") instead of returning: a clean stop reported as a crash. ``spin`` here treats an RCLError raised
once the context is shut down as the stop it is, and re-raises it while the context is still valid.
"""
from __future__ import annotations

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

RCLError = _rclpy.RCLError


def spin(node, executor=None) -> None:
    """Execute the node's callbacks until its context is shut down (Ctrl-C, SIGTERM, rclpy.shutdown)."""
    context = node.context
    own_executor = executor is None
    if own_executor:
        executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        while context.ok():
            try:
                executor.spin_once()
            except RCLError:
                if context.ok():
                    raise
    except ExternalShutdownException:
        pass
    finally:
        executor.remove_node(node)
        if own_executor:
            executor.shutdown()
