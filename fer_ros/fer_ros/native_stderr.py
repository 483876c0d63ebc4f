"""What native libraries print to the process's standard error while a block runs, captured instead of printed.

libjpeg and libpng report corrupt data by writing to file descriptor 2 themselves ("Corrupt JPEG data: ...",
"libpng error: ..."), past Python's logging and past ROS's logger, so a stream of bad images floods the terminal
between the rate-limited warnings. `capture()` points descriptor 2 at a scratch file for the duration of a block
and hands back what was written, for the caller to put into its own message.

MediaPipe, TensorFlow Lite and LiteRT also print a page of informational lines each time a face landmarker starts or
stops ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires a model with a single signature", ...),
the same on every machine, in front of whatever a tool or node has to say. `library_chatter()` runs such a block,
drops those lines and writes everything else back to standard error; FER_ROS_NATIVE_LOGS=1 keeps them all.
MediaPipe's tasks say one more such line on their first frame: `FirstCallsQuiet` runs that first call in the block.

The redirection is process-wide: a line another thread writes to standard error during the block lands in the
capture too, so callers keep the block short (one decode) and report the captured text rather than drop it.
Blocks are serialised by a lock; capture() blocks must not be nested.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

STDERR_FD = 2
MAX_TEXT = 2000  # characters of captured text kept (a decoder repeating itself says nothing new after that)
PASS_THROUGH_MAX = 1 << 20  # characters library_chatter() writes back (far more than a start-up prints)

# What the landmarker's libraries print when they start and stop: informational lines (abseil/glog's I level,
# TensorFlow Lite's and LiteRT's "INFO:"), abseil's note that it logs before InitGoogle(), and three warnings that
# describe how MediaPipe configures its own graphs. Errors, other warnings and anything else pass.
CHATTER = re.compile(
    r"^(INFO: |I\d{4} |WARNING: Logging before InitGoogle\(\)"
    r"|W\d{4} .*\b(face_landmarker_graph\.cc|inference_feedback_manager\.cc|inference_runner_litert\.cc):\d+\])")

_lock = threading.Lock()
_scratch = None  # one reusable scratch file, made on first use
_chatter = threading.local()  # whether this thread is inside a library_chatter() block


class Captured:
    """The text written to standard error during a `capture()` block (empty until the block ends)."""

    def __init__(self) -> None:
        self.text = ""

    def lines(self) -> list[str]:
        """The non-empty lines of the text, stripped."""
        return [line.strip() for line in self.text.splitlines() if line.strip()]


@contextlib.contextmanager
def capture(max_text: int = MAX_TEXT) -> Iterator[Captured]:
    """Capture what is written to file descriptor 2 inside the block (its first `max_text` characters). When
    descriptor 2 cannot be redirected (closed, or no scratch file can be made), the block runs with standard error
    left as it is."""
    global _scratch
    captured = Captured()
    with _lock:
        saved = None
        try:
            saved = os.dup(STDERR_FD)  # first: with descriptor 2 closed, the scratch file must not become it
            if _scratch is None:
                _scratch = tempfile.TemporaryFile()
            _scratch.seek(0)
            _scratch.truncate()
            _flush_python_stderr()
            os.dup2(_scratch.fileno(), STDERR_FD)
        except OSError:
            if saved is not None:
                os.close(saved)
            saved = None
        try:
            yield captured
        finally:
            if saved is not None:
                _flush_python_stderr()
                os.dup2(saved, STDERR_FD)
                os.close(saved)
                _scratch.seek(0)
                captured.text = _scratch.read(4 * max_text).decode("utf-8", "replace")[:max_text]


@contextlib.contextmanager
def library_chatter() -> Iterator[Captured]:
    """Run a block that starts or stops the landmarker's native libraries: their start-up lines (CHATTER) are
    dropped, every other line written to descriptor 2 meanwhile (an error, another thread's log line) is written
    back, in order, when the block ends. The yielded object holds the dropped lines. With FER_ROS_NATIVE_LOGS=1 in
    the environment nothing is captured. Blocks may nest (the outer one sorts); like capture(), a block must not
    hold a capture() of its own thread."""
    dropped = Captured()
    if os.environ.get("FER_ROS_NATIVE_LOGS") == "1" or getattr(_chatter, "active", False):
        yield dropped  # kept everything, or nested in an outer block of this thread, which sorts the lines
        return
    caught = Captured()
    _chatter.active = True
    try:
        with capture(PASS_THROUGH_MAX) as caught:
            yield dropped
    finally:
        _chatter.active = False
        keep, drop = [], []
        for line in caught.text.splitlines(keepends=True):
            (drop if CHATTER.match(line) else keep).append(line)
        dropped.text = "".join(drop)
        if keep:
            _flush_python_stderr()
            data = memoryview("".join(keep).encode("utf-8", "replace"))
            try:
                while data:
                    data = data[os.write(STDERR_FD, data):]
            except OSError:  # descriptor 2 closed: there is nowhere to write
                pass


def _flush_python_stderr() -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):  # a closed or broken sys.stderr
        pass


class FirstCallsQuiet:
    """A native library object (a MediaPipe task) whose first call of each of `methods` prints start-up lines: that
    call runs inside library_chatter(), later ones as they are. Every other attribute is the object's own. Like the
    task it wraps, it serves one thread at a time."""

    def __init__(self, target, methods: tuple[str, ...] = ("detect", "detect_for_video")) -> None:
        self._target = target
        self._pending = set(methods)  # methods not called yet

    def __getattr__(self, name: str):
        attr = getattr(self._target, name)
        if name not in self._pending:
            return attr

        def first_call(*args, **kwargs):
            with library_chatter():
                out = attr(*args, **kwargs)
            self._pending.discard(name)
            setattr(self, name, attr)  # later calls go straight to the task's method
            return out
        return first_call
