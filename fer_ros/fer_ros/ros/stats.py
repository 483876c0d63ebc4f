"""The node's running numbers (frames in, processed, dropped, rejected; rate; latency) and their /diagnostics
form."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


@dataclass
class FrameStats:
    """Counters and timings, updated by the image callback and the worker (thread-safe)."""

    received: int = 0
    processed: int = 0
    dropped: int = 0   # frames overwritten by a newer one before they were processed
    rejected: int = 0  # malformed images, and images whose stamp repeats the previous frame's
    faces: int = 0     # faces in the last processed frame
    latency_ms: float = 0.0   # image stamp -> /emotion publish, last frame
    process_ms: float = 0.0   # decode + recognition + publish, last frame
    _window_start_s: float = field(default_factory=time.monotonic)
    _window_processed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_received(self) -> None:
        with self._lock:
            self.received += 1

    def add_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n

    def add_rejected(self) -> None:
        with self._lock:
            self.rejected += 1

    def add_processed(self, faces: int, latency_ms: float, process_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self._window_processed += 1
            self.faces = faces
            self.latency_ms = latency_ms
            self.process_ms = process_ms

    def take_rate_hz(self) -> float:
        """Frames processed per second since the previous call."""
        with self._lock:
            now = time.monotonic()
            elapsed = max(now - self._window_start_s, 1e-9)
            rate = self._window_processed / elapsed
            self._window_start_s, self._window_processed = now, 0
            return rate


def diagnostics_msg(stats: FrameStats, stamp, node_name: str, backend: str, rate_hz: float,
                    expected_rate_hz: float = 0.0) -> DiagnosticArray:
    """One DiagnosticArray with the node's status: WARN when nothing was processed while frames arrive, or when
    the rate is below half of `expected_rate_hz` (if set)."""
    status = DiagnosticStatus(name=f"{node_name}: facial expression recognition", hardware_id=backend)
    with stats._lock:
        values = {
            "frame_rate_hz": f"{rate_hz:.2f}",
            "latency_ms": f"{stats.latency_ms:.1f}",
            "process_ms": f"{stats.process_ms:.1f}",
            "frames_received": str(stats.received),
            "frames_processed": str(stats.processed),
            "frames_dropped": str(stats.dropped),
            "frames_rejected": str(stats.rejected),
            "faces": str(stats.faces),
            "backend": backend,
        }
        waiting = stats.received > 0 and stats.processed == 0
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    if waiting:
        status.level, status.message = DiagnosticStatus.WARN, "frames arrive but none was processed yet"
    elif expected_rate_hz > 0 and rate_hz < 0.5 * expected_rate_hz:
        status.level, status.message = DiagnosticStatus.WARN, f"processing at {rate_hz:.1f} Hz"
    else:
        status.level, status.message = DiagnosticStatus.OK, f"{rate_hz:.1f} Hz, {stats.faces} faces"
    out = DiagnosticArray()
    out.header.stamp = stamp
    out.status = [status]
    return out
