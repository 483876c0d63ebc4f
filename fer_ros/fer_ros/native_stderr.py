"""What native libraries print to the process's standard error while a block runs, captured instead of printed.

libjpeg and libpng report corrupt data by writing to file descriptor 2 themselves ("Corrupt JPEG data: ...",
"libpng error: ..."), past Python's logging and past ROS's logger, so a stream of bad images floods the terminal
between the rate-limited warnings. `capture()` points descriptor 2 at a scratch file for the duration of a block
and hands back what was written, for the caller to put into its own message.

The redirection is process-wide: a line another thread writes to standard error during the block lands in the
capture too, so callers keep the block short (one decode) and report the captured text rather than drop it.
Blocks are serialised by a lock; they must not be nested.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from typing import Iterator

STDERR_FD = 2
MAX_TEXT = 2000  # characters of captured text kept (a decoder repeating itself says nothing new after that)

_lock = threading.Lock()
_scratch = None  # one reusable scratch file, made on first use


class Captured:
    """The text written to standard error during a `capture()` block (empty until the block ends)."""

    def __init__(self) -> None:
        self.text = ""

    def lines(self) -> list[str]:
        """The non-empty lines of the text, stripped."""
        return [line.strip() for line in self.text.splitlines() if line.strip()]


@contextlib.contextmanager
def capture() -> Iterator[Captured]:
    """Capture what is written to file descriptor 2 inside the block. When descriptor 2 cannot be redirected
    (closed, or no scratch file can be made), the block runs with standard error left as it is."""
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
                captured.text = _scratch.read(4 * MAX_TEXT).decode("utf-8", "replace")[:MAX_TEXT]


def _flush_python_stderr() -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):  # a closed or broken sys.stderr
        pass
