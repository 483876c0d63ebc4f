"""The core's Python logging written through a ROS node's logger.

The recognizer, the landmarker and the engines log to the "fer_ros" Python logger (and its children, such as
"fer_ros.engine"): they are plain Python and know nothing of ROS. In fer_node those lines must carry the node's
name and severity, reach /rosout and follow --log-level, as the node's own lines do. LogBridge hands every record
of that logger to the node's logger while the node lives. fer_node runs one node per process; in a process with
several nodes each node's logger receives every line."""
from __future__ import annotations

import logging
from typing import Callable

from fer_ros.ratelimit import LOGGER_NAME


class RosLogHandler(logging.Handler):
    """Writes each record's message through `get_logger()` (an rclpy logger) at the record's severity."""

    def __init__(self, get_logger: Callable[[], object]) -> None:
        super().__init__(logging.DEBUG)
        self._get_logger = get_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            ros = self._get_logger()
            if record.levelno >= logging.CRITICAL:
                ros.fatal(text)
            elif record.levelno >= logging.ERROR:
                ros.error(text)
            elif record.levelno >= logging.WARNING:
                ros.warning(text)
            elif record.levelno >= logging.INFO:
                ros.info(text)
            else:
                ros.debug(text)
        except Exception:  # a log line must never stop the node
            self.handleError(record)


class LogBridge:
    """attach(): the "fer_ros" logger's records go to `get_logger()` (every level: the ROS logger's own severity
    decides what is written) and not to Python's handlers; when the last bridge detaches, the logger is put back
    as it was before the first attached."""

    _outer: tuple[int, bool] | None = None  # the logger's level and propagate before the first bridge

    def __init__(self, get_logger: Callable[[], object]) -> None:
        self.handler = RosLogHandler(get_logger)
        self.attached = False

    def attach(self) -> "LogBridge":
        logger = logging.getLogger(LOGGER_NAME)
        if not self.attached:
            if not _bridges(logger):
                LogBridge._outer = (logger.level, logger.propagate)
            logger.addHandler(self.handler)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
            self.attached = True
        return self

    def detach(self) -> None:
        if not self.attached:
            return
        logger = logging.getLogger(LOGGER_NAME)
        logger.removeHandler(self.handler)
        self.attached = False
        if not _bridges(logger) and LogBridge._outer is not None:
            logger.setLevel(LogBridge._outer[0])
            logger.propagate = LogBridge._outer[1]
            LogBridge._outer = None


def _bridges(logger: logging.Logger) -> list[RosLogHandler]:
    return [h for h in logger.handlers if isinstance(h, RosLogHandler)]
