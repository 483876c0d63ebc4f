"""The node's running numbers (frames in, processed, dropped, rejected, duplicate, failed; rate; latency) and their
/diagnostics form."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

_COUNTERS = ("received", "processed", "dropped", "rejected", "duplicates", "failed")
# An image stamp further than this from the node's clock is not a slow frame but a clock that differs (s).
CLOCK_OFFSET_WARN_S = 10.0


@dataclass(frozen=True)
class Period:
    """The counters' increase over one diagnostics period of `seconds` (FrameStats.take_period)."""

    seconds: float
    received: int = 0
    processed: int = 0
    dropped: int = 0
    rejected: int = 0
    duplicates: int = 0
    failed: int = 0

    @property
    def rate_hz(self) -> float:
        """Frames processed per second."""
        return self.processed / max(self.seconds, 1e-9)

    @property
    def frames(self) -> int:
        """Images received, less the copies of a frame already received on the other transport."""
        return max(self.received - self.duplicates, 0)


@dataclass
class FrameStats:
    """Counters and timings, updated by the image callbacks and the workers (thread-safe)."""

    received: int = 0
    processed: int = 0
    dropped: int = 0   # frames overwritten by a newer one before they were processed
    rejected: int = 0  # malformed images, and images whose stamp repeats the previous frame's
    duplicates: int = 0  # copies of a frame already received on the other transport (image, image/compressed)
    failed: int = 0    # frames whose processing raised an error
    faces: int = 0     # faces in the last processed frame
    latency_ms: float = 0.0   # image stamp -> /emotion publish, last frame
    process_ms: float = 0.0   # decode + recognition + publish, last frame
    _period_start_s: float = field(default_factory=time.monotonic)
    _period_start_counts: tuple = (0,) * len(_COUNTERS)
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

    def add_duplicate(self) -> None:
        with self._lock:
            self.duplicates += 1

    def add_failed(self) -> None:
        with self._lock:
            self.failed += 1

    def add_processed(self, faces: int, latency_ms: float, process_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self.faces = faces
            self.latency_ms = latency_ms
            self.process_ms = process_ms

    def take_period(self) -> Period:
        """What the counters added since the previous call (since the start, at the first call)."""
        with self._lock:
            now = time.monotonic()
            counts = tuple(getattr(self, name) for name in _COUNTERS)
            period = Period(now - self._period_start_s,
                            *(c - c0 for c, c0 in zip(counts, self._period_start_counts)))
            self._period_start_s, self._period_start_counts = now, counts
            return period


def judge(period: Period, max_rate_hz: float = 0.0, latency_ms: float = 0.0) -> tuple[bytes, str]:
    """The status level and message of one diagnostics period.

    ERROR: frames failed and none was processed. WARN: no image arrived (the camera stopped); most images were
    rejected; some frames failed; images arrive but none was processed although two could have been; with
    `max_rate_hz` set, fewer than half of the frames expected were processed (the expected rate is the lower of
    max_rate_hz and the rate of usable images, so a camera slower than the cap is no fault); frames were processed
    and the last one's stamp (`latency_ms`: stamp to publish, by the node's clock) lies more than
    CLOCK_OFFSET_WARN_S behind or ahead of the node's clock. OK otherwise."""
    s = period.seconds
    usable = max(period.frames - period.rejected, 0)
    expected_hz = usable / max(s, 1e-9)
    if max_rate_hz > 0:
        expected_hz = min(expected_hz, max_rate_hz)
    if period.failed and not period.processed:
        return DiagnosticStatus.ERROR, (f"processing failed on every frame of the last {s:.1f} s "
                                        f"({period.failed} failed; see the node's log)")
    if period.received == 0:
        return DiagnosticStatus.WARN, f"no image in the last {s:.1f} s"
    if 2 * period.rejected > period.frames:
        return DiagnosticStatus.WARN, (f"{period.rejected} of {period.frames} images in the last {s:.1f} s were "
                                       "rejected (see the node's log)")
    if period.failed:
        return DiagnosticStatus.WARN, (f"processing failed on {period.failed} of {period.frames} frames in the "
                                       f"last {s:.1f} s (see the node's log)")
    if period.processed == 0 and expected_hz * s >= 2:
        return DiagnosticStatus.WARN, f"images arrive but none was processed in the last {s:.1f} s"
    if max_rate_hz > 0 and expected_hz * s >= 2 and period.rate_hz < 0.5 * expected_hz:
        return DiagnosticStatus.WARN, f"processing at {period.rate_hz:.1f} Hz of {expected_hz:.1f} Hz"
    if period.processed and abs(latency_ms) > CLOCK_OFFSET_WARN_S * 1e3:
        side = "behind" if latency_ms > 0 else "ahead of"
        return DiagnosticStatus.WARN, (f"image stamps are {_duration(abs(latency_ms) / 1e3)} {side} this node's clock: "
                                       "a bag played without --clock (play it with --clock and set use_sim_time), "
                                       "or a camera clock not synchronised with this machine's")
    return DiagnosticStatus.OK, ""


def _duration(seconds: float) -> str:
    """A long time span in the unit a person reads it in: 90 s, 5.0 h, 2315 days."""
    if seconds < 120.0:
        return f"{seconds:.0f} s"
    if seconds < 2 * 86400.0:
        return f"{seconds / 3600.0:.1f} h"
    return f"{seconds / 86400.0:.0f} days"


def diagnostics_msg(stats: FrameStats, period: Period, stamp, node_name: str, backend: str,
                    max_rate_hz: float = 0.0) -> DiagnosticArray:
    """One DiagnosticArray with the node's status: its level judged on `period` (see judge), its values the
    totals since the start and the period's frame rate."""
    status = DiagnosticStatus(name=f"{node_name}: facial expression recognition", hardware_id=backend)
    with stats._lock:
        values = {
            "frame_rate_hz": f"{period.rate_hz:.2f}",
            "latency_ms": f"{stats.latency_ms:.1f}",
            "process_ms": f"{stats.process_ms:.1f}",
            "frames_received": str(stats.received),
            "frames_processed": str(stats.processed),
            "frames_dropped": str(stats.dropped),
            "frames_rejected": str(stats.rejected),
            "frames_duplicate": str(stats.duplicates),
            "frames_failed": str(stats.failed),
            "faces": str(stats.faces),
            "backend": backend,
        }
        faces, latency_ms = stats.faces, stats.latency_ms
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    status.level, status.message = judge(period, max_rate_hz, latency_ms)
    if status.level == DiagnosticStatus.OK:
        status.message = f"{period.rate_hz:.1f} Hz, {faces} faces"
    out = DiagnosticArray()
    out.header.stamp = stamp
    out.status = [status]
    return out
